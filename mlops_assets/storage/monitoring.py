"""Warehouse reads and writes for the production side: active model, baselines, metrics, alerts."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlops_assets.lib.alert_policy import AlertPolicy, AlertState, DayEvaluation, step
from mlops_assets.storage.alerts import add_event, open_alert, utcnow
from mlops_assets.storage.mlflow_buffer import backfill_replayed_ids
from mlops_assets.storage.warehouse import (
    IndexRepairedError,
    Warehouse,
    frame_from_parquet,
    sql_file,
)

if TYPE_CHECKING:  # pandas is imported by the callers that build frames, not at start-up
    import pandas as pd


class UnknownModelError(LookupError):
    """No trained (and baselined) run exists for the model name asked for."""


@dataclass(frozen=True)
class ActiveModel:
    model_name: str
    model_version: str | None
    local_run_id: str
    mlflow_experiment_id: str | None
    mlflow_run_id: str | None
    metrics: dict[str, float | None]
    metric_std: dict[str, float]
    features: dict[str, str]
    n_validation: int
    reference_blob: bytes
    # The calibrator and reference band for estimated metrics (lib.estimation), or None.
    estimation: dict | None = None

    @property
    def run_ref(self) -> str:
        """The MLflow run id, or the local id while the run waits for replay."""
        return self.mlflow_run_id or self.local_run_id

    def reference(self) -> pd.DataFrame:
        return frame_from_parquet(self.reference_blob)


def active_model(warehouse: Warehouse, model_name: str) -> ActiveModel:
    """The champion run of `model_name` (else its latest baselined run) with its baseline."""
    rows = warehouse.query(sql_file("queries/select_active_model"), {"model": model_name})
    if not rows:
        known = [
            r["model_name"]
            for r in warehouse.query(
                "SELECT DISTINCT model_name FROM mlops.training_baselines ORDER BY model_name"
            )
        ]
        raise UnknownModelError(
            f"no baselined training run for model {model_name!r}; "
            f"known models: {', '.join(known) or 'none (materialize training_baseline first)'}"
        )
    r = rows[0]
    return ActiveModel(
        model_name=r["model_name"],
        model_version=r["model_version"],
        local_run_id=r["local_run_id"],
        mlflow_experiment_id=r["mlflow_experiment_id"],
        mlflow_run_id=r["mlflow_run_id"],
        metrics=json.loads(r["metrics_json"]),
        metric_std=json.loads(r["metric_std_json"]),
        features=json.loads(r["features_json"]),
        n_validation=int(r["n_validation"]),
        reference_blob=bytes(r["reference_sample"]),
        estimation=json.loads(r["estimation_json"]) if r.get("estimation_json") else None,
    )


def replace_partition(
    warehouse: Warehouse,
    table: str,
    *,
    model: str,
    day: dt.date,
    day_column: str,
    rows: pd.DataFrame,
) -> None:
    """Delete-then-insert one (model, day) slice in one transaction: reruns replace, never add.

    If the embedded engine finds the table's index broken (a writer killed mid-transaction),
    it rebuilds the table and rolls back; the slice is then written once more."""
    for attempt in (1, 2):
        try:
            with warehouse.transaction() as tx:
                tx.execute(
                    f"DELETE FROM {table} WHERE model_name = :m AND {day_column} = :d",  # noqa: S608
                    {"m": model, "d": day},
                )
                tx.insert_frame(table, rows)
                # Rows carry the ids read when the asset started; a replay since then missed them.
                backfill_replayed_ids(tx, _local_ids(rows))
            return
        except IndexRepairedError:
            if attempt == 2:
                raise


def evaluate_alerts(
    warehouse: Warehouse,
    *,
    kind: str,
    model: ActiveModel,
    evaluations: dict[str, DayEvaluation],
    policy: AlertPolicy,
    estimated: set[str] | frozenset[str] = frozenset(),
    detail: str = "",
) -> list[dict]:
    """Advance each (model, kind, metric) alert by one day; returns the state changes.

    An alert belongs to the version that was in service when it fired. Once another version
    is judged, the open alerts of the versions it replaced are resolved as superseded (a
    streak against one baseline says nothing about another), and the version in service
    opens its own if it breaches too: open alerts always refer to the version in service."""
    changes = []
    with warehouse.transaction() as tx:
        changes += _supersede(tx, kind=kind, model=model)
        for metric, today in evaluations.items():
            rows = tx.query(
                "SELECT * FROM mlops.ml_performance_alerts WHERE model_name = :m AND kind = :k "
                "AND metric = :metric AND status IN ('open', 'acknowledged') "
                "ORDER BY alert_id DESC LIMIT 1",
                {"m": model.model_name, "k": kind, "metric": metric},
            )
            previous = _state(rows[0]) if rows else None
            transition = step(previous, today, policy)
            if transition.state is None:
                continue
            context = {
                "model_version": model.model_version,
                "training_local_run_id": model.local_run_id,
                "mlflow_experiment_id": model.mlflow_experiment_id,
                "mlflow_run_id": model.mlflow_run_id,
            }
            s = transition.state
            if transition.event == "opened":
                alert_id = open_alert(
                    tx,
                    kind=kind,
                    model_name=model.model_name,
                    metric=metric,
                    severity=s.severity,
                    observed=today.observed,
                    baseline=today.baseline,
                    threshold=today.threshold,
                    degradation=today.degradation,
                    breach_days=s.breach_days,
                    ok_days=s.ok_days,
                    first_seen=s.first_seen,
                    last_seen=s.last_seen,
                    message=f"{metric} {today.level} on {today.day}"
                    + (" (estimated: labels pending)" if metric in estimated else "")
                    + detail,
                    **context,
                )
                tx.execute(
                    "UPDATE mlops.ml_performance_alerts SET last_evaluated = :d "
                    "WHERE alert_id = :a",
                    {"d": today.day, "a": alert_id},
                )
            else:
                alert_id = rows[0]["alert_id"]
                tx.execute(
                    sql_file("queries/update_alert_state"),
                    {
                        "a": alert_id,
                        "severity": s.severity,
                        "status": s.status,
                        "observed": s.observed,
                        "threshold": s.threshold,
                        "degradation": today.degradation,
                        "baseline": today.baseline,
                        "breach_days": s.breach_days,
                        "ok_days": s.ok_days,
                        "last_seen": s.last_seen,
                        "last_evaluated": s.last_evaluated or today.day,
                        "t": utcnow(),
                        "resolved": s.status == "resolved",
                        **context,
                    },
                )
                if transition.event in ("escalated", "resolved"):
                    add_event(tx, alert_id, transition.event, s.severity)
            changes.append(
                {
                    "alert_id": alert_id,
                    "metric": metric,
                    "event": transition.event,
                    "severity": s.severity,
                    "status": s.status,
                }
            )
        if model.mlflow_run_id is None:  # read before its replay (see `_local_ids`)
            backfill_replayed_ids(tx, [model.local_run_id])
    return changes


def _supersede(tx, *, kind: str, model: ActiveModel) -> list[dict]:
    """Resolve the model's open `kind` alerts raised against another training run."""
    rows = tx.query(
        sql_file("queries/select_superseded_alerts"),
        {"m": model.model_name, "k": kind, "run": model.local_run_id},
    )
    now = utcnow()
    in_service = (
        f"version {model.model_version}"
        if model.model_version
        else f"run {model.run_ref} (version pending)"
    )
    for row in rows:
        reason = f"superseded: {in_service} is in service"
        tx.execute(
            sql_file("queries/resolve_superseded_alert"),
            {"t": now, "a": row["alert_id"], "msg": f"{row['message'] or ''} ({reason})".strip()},
        )
        # A resolution to its receivers (the event types they know); the message says why.
        add_event(tx, row["alert_id"], "resolved", row["severity"])
    return [
        {
            "alert_id": r["alert_id"],
            "metric": r["metric"],
            "event": "superseded",
            "severity": r["severity"],
            "status": "resolved",
        }
        for r in rows
    ]


# Each local run id column beside the column that holds its run's MLflow id.
_RUN_ID_OF = {
    "training_local_run_id": "mlflow_run_id",
    "baseline_local_run_id": "baseline_mlflow_run_id",
}


def _local_ids(rows: pd.DataFrame) -> set[str]:
    """The local ids of rows written without their run's MLflow id (the model was read
    before its replay): only they can have missed the replay's back-fill. Rows that carry
    the id need none, and the back-fill rewrites every row of the run in six tables that
    grow by the day (on PostgreSQL, a dead copy of each at every write)."""
    found: set[str] = set()
    for column, run_id in _RUN_ID_OF.items():
        if column in rows.columns:
            pending = rows[column].notna()
            if run_id in rows.columns:
                pending &= rows[run_id].isna()
            found |= {str(v) for v in rows.loc[pending, column].unique()}
    return found


def _state(row: dict) -> AlertState:
    return AlertState(
        status=row["status"],
        severity=row["severity"],
        first_seen=_as_date(row["first_seen"]),
        last_seen=_as_date(row["last_seen"]),
        breach_days=int(row["breach_days"]),
        ok_days=int(row["ok_days"]),
        observed=row["observed"] if row["observed"] is not None else float("nan"),
        threshold=row["threshold"] if row["threshold"] is not None else float("nan"),
        acknowledged=row["status"] == "acknowledged",
        notified_severity=row["severity"],
        last_evaluated=_as_date(row["last_evaluated"]) if row["last_evaluated"] else None,
    )


def _as_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def acknowledge_alert(warehouse: Warehouse, alert_id: int, *, by: str) -> dict:
    """Record an acknowledgement; an acknowledged alert is re-notified only if it escalates."""
    with warehouse.transaction() as tx:
        rows = tx.query(
            "SELECT alert_id, status, severity, model_name, metric FROM "
            "mlops.ml_performance_alerts WHERE alert_id = :a",
            {"a": alert_id},
        )
        if not rows:
            raise LookupError(f"no alert with id {alert_id}")
        if rows[0]["status"] == "resolved":
            raise ValueError(f"alert {alert_id} is already resolved")
        tx.execute(
            "UPDATE mlops.ml_performance_alerts SET status = 'acknowledged', "
            "acknowledged_at = :t, acknowledged_by = :by, updated_at = :t WHERE alert_id = :a",
            {"t": utcnow(), "by": by, "a": alert_id},
        )
    return {**rows[0], "status": "acknowledged"}


def prediction_ids(warehouse: Warehouse, plan, day: dt.date) -> list[str]:
    """Ids of one day's logged predictions (`plan`: the model's inference-log layout)."""
    rows = warehouse.query(
        f"SELECT prediction_id FROM {plan.predictions_table} "  # noqa: S608 - layout names
        "WHERE prediction_date = :d",
        {"d": day},
    )
    return [r["prediction_id"] for r in rows]


def unlabelled_days(warehouse: Warehouse, plan, *, since: dt.date) -> list[dt.date]:
    """Days since `since` that still have predictions without a label: where new labels land."""
    rows = warehouse.query(
        f"SELECT DISTINCT p.prediction_date AS d FROM {plan.predictions_table} p "  # noqa: S608
        f"LEFT JOIN {plan.labels_table} l ON l.prediction_id = p.prediction_id "
        "WHERE l.prediction_id IS NULL AND p.prediction_date >= :since ORDER BY 1",
        {"since": since},
    )
    return [_as_date(r["d"]) for r in rows]


# Columns that differ between two computations of the same results: when and by which run they
# were written, surrogate keys, and the model's own name and local run id (so a model's copy
# under another name compares equal).
_BOOKKEEPING = frozenset(
    {
        "model_name",
        "computed_at",
        "created_at",
        "updated_at",
        "resolved_at",
        "acknowledged_at",
        "alert_id",
        "report_path",
        "training_local_run_id",
        "baseline_local_run_id",
    }
)


def monitoring_results(
    warehouse: Warehouse, *, model: str, first: dt.date, last: dt.date
) -> dict[str, list[dict]]:
    """A model's metric rows, drift rows and alerts (with their events) for days first..last,
    without bookkeeping columns: equal whichever runs computed them, one day or many per run."""
    results = {}
    for kind in ("metrics", "drift", "alerts"):
        rows = warehouse.query(
            sql_file(f"queries/select_monitoring_{kind}"),
            {"m": model, "first": first, "last": last},
        )
        results[kind] = [{k: v for k, v in r.items() if k not in _BOOKKEEPING} for r in rows]
    return results
