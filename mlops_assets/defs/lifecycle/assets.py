"""Lifecycle: the health table and the curated views that put training and production together."""

import datetime as dt
import json
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:  # pandas is imported where a frame is built, not when the code location loads
    import pandas as pd

from mlops_assets.resources import WarehouseResource
from mlops_assets.storage.warehouse import split_statements, sql_file

GROUP = "lifecycle"
UPSTREAM = ["performance_alerts", "feature_drift_report", "training_baseline"]


@dg.asset(group_name=GROUP, deps=UPSTREAM)
def ml_model_health_status(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """One row per model version: overall status, latest metrics, open alerts, drift, MLflow ids."""
    import pandas as pd

    wh = warehouse.get()
    rows = wh.query(sql_file("queries/select_model_health"))
    open_alerts: dict[str, list[dict]] = {}
    for alert in wh.query(sql_file("queries/select_open_alerts_by_run")):
        open_alerts.setdefault(alert["training_local_run_id"], []).append(alert)
    health = pd.DataFrame(
        [_health_row(r, rows, open_alerts.get(r["local_run_id"], [])) for r in rows]
    )
    with wh.transaction() as tx:
        tx.execute("DELETE FROM mlops.ml_model_health_status")
        tx.insert_frame("mlops.ml_model_health_status", health)
    return dg.MaterializeResult(
        metadata={
            "rows": len(health),
            "preview": dg.MetadataValue.md(_markdown(health)),
            "critical": int((health["overall_status"] == "CRITICAL").sum()) if len(health) else 0,
        }
    )


def _alert_reason(alerts: list[dict], severity: str) -> str:
    """'accuracy, f1 (performance), dataset_drift (drift) since 2026-11-22'."""
    chosen = [a for a in alerts if a["severity"] == severity]
    by_kind: dict[str, list[str]] = {}
    for a in chosen:
        by_kind.setdefault(a["kind"], []).append(a["metric"])
    parts = [f"{', '.join(metrics)} ({kind})" for kind, metrics in by_kind.items()]
    since = min(str(a["first_seen"]) for a in chosen)
    return f"{severity} alert(s) open: {'; '.join(parts)} since {since}"


def _health_row(r: dict, all_rows: list[dict], alerts: list[dict] | None = None) -> dict:
    same_model = [x for x in all_rows if x["model_name"] == r["model_name"]]
    champion = next((x["model_version"] for x in same_model if x["is_champion"]), None)
    alerts = alerts or []
    if r["n_critical"]:
        status = "CRITICAL"
        reason = (
            _alert_reason(alerts, "critical")
            if any(a["severity"] == "critical" for a in alerts)
            else f"{r['n_critical']} critical alert(s) open"
        )
    elif r["worst_level"] == 2:
        status, reason = (
            "CRITICAL",
            f"a metric is past its critical threshold on {r['metric_date']}",
        )
    elif r["n_warning"]:
        status = "WARNING"
        reason = (
            _alert_reason(alerts, "warning")
            if any(a["severity"] == "warning" for a in alerts)
            else f"{r['n_warning']} warning alert(s) open"
        )
    elif r["worst_level"] == 1:
        status, reason = "WARNING", f"a metric is past its warning threshold on {r['metric_date']}"
    elif r["metric_date"] is None:
        status, reason = "UNKNOWN", "no production metrics yet"
    else:
        status, reason = "HEALTHY", "metrics within thresholds, no open alerts"
    return {
        "model_name": r["model_name"],
        "model_version": str(r["model_version"]),
        "overall_status": status,
        "status_reason": reason,
        "latest_metric_date": r["metric_date"],
        "latest_accuracy": r["accuracy"],
        "baseline_accuracy": r["baseline_accuracy"],
        "latest_roi": r["roi"],
        "baseline_roi": r["baseline_roi"],
        "open_alerts_info": int(r["n_info"]),
        "open_alerts_warning": int(r["n_warning"]),
        "open_alerts_critical": int(r["n_critical"]),
        "latest_drift_share": r["drift_share"],
        "latest_drift_verdict": r["drift_verdict"],
        "last_trained_at": r["finished_at"],
        "champion_version": champion,
        "active_mlflow_run_ids": json.dumps([r["run_ref"]]),
        "pending_replay": r["tracking_status"] != "TRACKED",
        "updated_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
    }


def _view_asset(name: str) -> dg.AssetsDefinition:
    @dg.asset(name=name, group_name=GROUP, deps=[*UPSTREAM, "ml_model_health_status"])
    def _view(warehouse: WarehouseResource) -> dg.MaterializeResult:
        wh = warehouse.get()
        with wh.transaction() as tx:
            for statement in split_statements(sql_file(f"views/{name}")):
                tx.execute(statement)
            count = tx.query(f"SELECT count(*) AS n FROM curated.{name}")[0]["n"]  # noqa: S608
            preview = tx.query_df(f"SELECT * FROM curated.{name} LIMIT 10")  # noqa: S608
        return dg.MaterializeResult(
            metadata={"rows": int(count), "preview": dg.MetadataValue.md(_markdown(preview))}
        )

    _view.__doc__ = f"The view curated.{name} (sql/views/{name}.sql)."
    return _view


VIEWS = (
    "unified_model_lifecycle",
    "unified_monitoring_alerts",
    "feature_drift_with_training_context",
)
view_assets = [_view_asset(name) for name in VIEWS]


def _markdown(frame: "pd.DataFrame") -> str:
    if frame.empty:
        return "(no rows)"
    head = frame.head(10).astype(str)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in head.itertuples(index=False)]
    return "\n".join(lines)
