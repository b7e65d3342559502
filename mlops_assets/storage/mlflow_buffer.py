"""The durable MLflow write-ahead buffer, kept in the warehouse.

Every training run writes its params, tags, metrics and artifact location here first; the
replayer then copies them into MLflow. Because every write is a committed transaction in a
database every process reaches, a `kill -9` at any point leaves either the whole write or none
of it, and the run worker, the daemon's sensor and the CLI all see the same buffer.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mlops_assets.lib.redact import redact, redact_optional
from mlops_assets.storage.warehouse import Warehouse, sql_file

RECORDING, PENDING, REPLAYED, PARKED = "recording", "pending", "replayed", "parked"


@dataclass(frozen=True)
class MetricPoint:
    key: str
    value: float
    timestamp_ms: int
    step: int = 0


@dataclass(frozen=True)
class BufferedRun:
    local_run_id: str
    experiment_name: str
    run_name: str
    registered_model_name: str | None
    model_artifact_path: str | None
    artifact_dir: str | None
    start_time_ms: int
    end_time_ms: int | None
    run_status: str
    state: str
    mlflow_experiment_id: str | None
    mlflow_run_id: str | None
    model_version: str | None
    params_done: bool
    tags_done: bool
    artifacts_done: bool
    model_registered: bool
    run_terminated: bool
    attempts: int
    last_error: str | None
    created_at: dt.datetime


@dataclass(frozen=True)
class BufferSummary:
    pending_runs: int
    parked_runs: int
    recording_runs: int
    pending_metrics: int
    oldest_pending_age_s: float | None
    runs: tuple[BufferedRun, ...]


def now_ms() -> int:
    return int(time.time() * 1000)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class MlflowBuffer:
    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    # ------------------------------------------------------------------ writing

    def open_run(
        self,
        *,
        local_run_id: str,
        experiment_name: str,
        run_name: str,
        registered_model_name: str | None,
        artifact_dir: str | None,
        start_time_ms: int,
    ) -> None:
        self.warehouse.execute(
            sql_file("queries/insert_buffer_run"),
            {
                "local_run_id": local_run_id,
                "experiment_name": experiment_name,
                "run_name": run_name,
                "registered_model_name": registered_model_name,
                "artifact_dir": artifact_dir,
                "start_time_ms": start_time_ms,
                "state": RECORDING,
                "created_at": utcnow(),
            },
        )

    def add_params(self, local_run_id: str, params: Mapping[str, object]) -> None:
        rows = [{"id": local_run_id, "k": k, "v": str(v)} for k, v in params.items()]
        with self.warehouse.transaction() as tx:
            tx.executemany(sql_file("queries/insert_buffer_param"), rows)

    def add_tags(self, local_run_id: str, tags: Mapping[str, object]) -> None:
        rows = [{"id": local_run_id, "k": k, "v": str(v)} for k, v in tags.items()]
        with self.warehouse.transaction() as tx:
            tx.executemany(sql_file("queries/upsert_buffer_tag"), rows)

    def add_metrics(self, local_run_id: str, points: Iterable[MetricPoint]) -> int:
        import pandas as pd

        points = list(points)
        if not points:
            return 0
        with self.warehouse.transaction() as tx:
            start = tx.query(
                "SELECT coalesce(max(seq), 0) AS s FROM mlops.mlflow_buffer_metrics "
                "WHERE local_run_id = :id",
                {"id": local_run_id},
            )[0]["s"]
            frame = pd.DataFrame(
                {
                    "local_run_id": local_run_id,
                    "seq": range(int(start) + 1, int(start) + 1 + len(points)),
                    "key": [p.key for p in points],
                    "value": [float(p.value) for p in points],
                    "timestamp_ms": [int(p.timestamp_ms) for p in points],
                    "step": [int(p.step) for p in points],
                }
            )
            return tx.insert_frame("mlops.mlflow_buffer_metrics", frame)

    def set_model_artifact(self, local_run_id: str, artifact_path: str) -> None:
        self.warehouse.execute(
            "UPDATE mlops.mlflow_buffer_runs SET model_artifact_path = :p WHERE local_run_id = :id",
            {"p": artifact_path, "id": local_run_id},
        )

    def finish(self, local_run_id: str, *, status: str, end_time_ms: int) -> None:
        self.warehouse.execute(
            "UPDATE mlops.mlflow_buffer_runs SET run_status = :status, end_time_ms = :end, "
            "state = :state WHERE local_run_id = :id AND state = :recording",
            {
                "status": status,
                "end": end_time_ms,
                "state": PENDING,
                "id": local_run_id,
                "recording": RECORDING,
            },
        )

    # ------------------------------------------------------------------ reading

    def get(self, local_run_id: str) -> BufferedRun | None:
        rows = self.warehouse.query(
            "SELECT * FROM mlops.mlflow_buffer_runs WHERE local_run_id = :id",
            {"id": local_run_id},
        )
        return _run(rows[0]) if rows else None

    def pending(self, limit: int | None = None) -> list[BufferedRun]:
        """Runs waiting for MLflow, oldest first."""
        rows = self.warehouse.query(
            "SELECT * FROM mlops.mlflow_buffer_runs WHERE state = :s ORDER BY created_at, "
            "local_run_id",
            {"s": PENDING},
        )
        runs = [_run(r) for r in rows]
        return runs[:limit] if limit else runs

    def params(self, local_run_id: str) -> dict[str, str]:
        rows = self.warehouse.query(
            "SELECT key, value FROM mlops.mlflow_buffer_params WHERE local_run_id = :id "
            "ORDER BY key",
            {"id": local_run_id},
        )
        return {r["key"]: r["value"] for r in rows}

    def tags(self, local_run_id: str) -> dict[str, str]:
        rows = self.warehouse.query(
            "SELECT key, value FROM mlops.mlflow_buffer_tags WHERE local_run_id = :id ORDER BY key",
            {"id": local_run_id},
        )
        return {r["key"]: r["value"] for r in rows}

    def summary(self) -> BufferSummary:
        with self.warehouse.transaction() as tx:
            runs = [
                _run(r)
                for r in tx.query(
                    "SELECT * FROM mlops.mlflow_buffer_runs WHERE state <> :s ORDER BY created_at",
                    {"s": REPLAYED},
                )
            ]
            unsent = tx.query(
                "SELECT count(*) AS n FROM mlops.mlflow_buffer_metrics m "
                "JOIN mlops.mlflow_buffer_runs r ON r.local_run_id = m.local_run_id "
                "WHERE m.sent_at IS NULL AND r.state <> :s",
                {"s": REPLAYED},
            )[0]["n"]
        pending = [r for r in runs if r.state == PENDING]
        oldest = min((r.created_at for r in pending), default=None)
        return BufferSummary(
            pending_runs=len(pending),
            parked_runs=sum(r.state == PARKED for r in runs),
            recording_runs=sum(r.state == RECORDING for r in runs),
            pending_metrics=int(unsent),
            oldest_pending_age_s=(utcnow() - oldest).total_seconds() if oldest else None,
            runs=tuple(runs),
        )

    # ------------------------------------------------------------------ replay ledger

    def set_flag(self, local_run_id: str, flag: str) -> None:
        if flag not in {
            "params_done",
            "tags_done",
            "artifacts_done",
            "model_registered",
            "run_terminated",
        }:
            raise ValueError(f"unknown replay step {flag!r}")
        self.warehouse.execute(
            f"UPDATE mlops.mlflow_buffer_runs SET {flag} = TRUE WHERE local_run_id = :id",
            {"id": local_run_id},
        )

    def set_mlflow_ids(self, local_run_id: str, *, experiment_id: str, run_id: str) -> None:
        self.warehouse.execute(
            "UPDATE mlops.mlflow_buffer_runs SET mlflow_experiment_id = :e, mlflow_run_id = :r "
            "WHERE local_run_id = :id",
            {"e": experiment_id, "r": run_id, "id": local_run_id},
        )

    def set_model_version(self, local_run_id: str, version: str) -> None:
        self.warehouse.execute(
            "UPDATE mlops.mlflow_buffer_runs SET model_version = :v, model_registered = TRUE "
            "WHERE local_run_id = :id",
            {"v": version, "id": local_run_id},
        )

    def record_attempt(self, local_run_id: str, error: str | None) -> None:
        self.warehouse.execute(
            "UPDATE mlops.mlflow_buffer_runs SET attempts = attempts + 1, last_error = :e "
            "WHERE local_run_id = :id",
            {"e": redact_optional(error), "id": local_run_id},
        )

    def park(self, local_run_id: str, error: str) -> None:
        """MLflow refused the run (a 4xx): stop retrying it and raise an alert, atomically."""
        from mlops_assets.storage.alerts import SERVICE_MODEL, open_alert

        error = redact(error)  # stored in last_error and in the alert text
        with self.warehouse.transaction() as tx:
            tx.execute(
                "UPDATE mlops.mlflow_buffer_runs SET state = :s, last_error = :e "
                "WHERE local_run_id = :id",
                {"s": PARKED, "e": error, "id": local_run_id},
            )
            tx.execute(
                "UPDATE mlops.training_runs SET tracking_status = 'PARKED' "
                "WHERE local_run_id = :id",
                {"id": local_run_id},
            )
            rows = tx.query(
                "SELECT registered_model_name, mlflow_experiment_id, mlflow_run_id "
                "FROM mlops.mlflow_buffer_runs WHERE local_run_id = :id",
                {"id": local_run_id},
            )
            run = rows[0] if rows else {}
            today = utcnow().date()
            # Its own kind: `mlflow_service` alerts track availability and are resolved when
            # the breaker closes, which does nothing for a run MLflow refused.
            open_alert(
                tx,
                kind="mlflow_replay",
                model_name=run.get("registered_model_name") or SERVICE_MODEL,
                metric="replay_parked",
                severity="warning",
                first_seen=today,
                last_seen=today,
                message=f"MLflow refused buffered run {local_run_id}; it is parked until "
                f"fixed: {error}",
                training_local_run_id=local_run_id,
                mlflow_experiment_id=run.get("mlflow_experiment_id"),
                mlflow_run_id=run.get("mlflow_run_id"),
            )

    def in_flight_metrics(self, local_run_id: str) -> list[tuple[int, MetricPoint]]:
        """Metrics claimed by a replay that may or may not have reached MLflow."""
        rows = self.warehouse.query(
            "SELECT seq, key, value, timestamp_ms, step FROM mlops.mlflow_buffer_metrics "
            "WHERE local_run_id = :id AND claimed_at IS NOT NULL AND sent_at IS NULL ORDER BY seq",
            {"id": local_run_id},
        )
        return [(r["seq"], _point(r)) for r in rows]

    def claim_metrics(
        self,
        local_run_id: str,
        limit: int,
        *,
        after_seq: int = 0,
        sent: tuple[int, int] | None = None,
    ) -> list[tuple[int, MetricPoint]]:
        """Mark up to `limit` unsent metrics as in flight (one transaction) and return them.

        `sent` = (first, last) seq of the previous claim, which MLflow has acknowledged: it is
        marked sent in the same transaction (each transaction costs a connection, ~25 ms on the
        embedded engine). `after_seq` tells where the previous claim ended, so neither
        statement walks the rows already done (on PostgreSQL that made each claim slower than
        the last).
        """
        with self.warehouse.transaction() as tx:
            if sent is not None:
                tx.execute(
                    _MARK_SENT,
                    {"t": utcnow(), "id": local_run_id, "first": sent[0], "last": sent[1]},
                )
            frame = tx.query_df(
                "SELECT seq, key, value, timestamp_ms, step FROM mlops.mlflow_buffer_metrics "
                "WHERE local_run_id = :id AND seq > :after AND claimed_at IS NULL "
                "ORDER BY seq LIMIT :n",
                {"id": local_run_id, "after": after_seq, "n": limit},
            )
            if frame.empty:
                return []
            seqs = frame["seq"].tolist()
            tx.execute(
                "UPDATE mlops.mlflow_buffer_metrics SET claimed_at = :t "
                "WHERE local_run_id = :id AND seq > :after AND seq <= :last "
                "AND claimed_at IS NULL",
                {"t": utcnow(), "id": local_run_id, "after": after_seq, "last": seqs[-1]},
            )
        # Columns to Python values in bulk: row-by-row conversion cost more than the claim.
        columns = zip(
            frame["key"].tolist(),
            frame["value"].tolist(),
            frame["timestamp_ms"].tolist(),
            frame["step"].tolist(),
            strict=True,
        )
        return [
            (int(seq), MetricPoint(str(k), float(v), int(t), int(st)))
            for seq, (k, v, t, st) in zip(seqs, columns, strict=True)
        ]

    def mark_metrics_sent(self, local_run_id: str, up_to_seq: int, from_seq: int = 1) -> None:
        self.warehouse.execute(
            _MARK_SENT, {"t": utcnow(), "id": local_run_id, "first": from_seq, "last": up_to_seq}
        )

    def complete(
        self, local_run_id: str, *, experiment_id: str, run_id: str, model_version: str | None
    ) -> None:
        """Mark the run replayed and put the real MLflow ids into every table, atomically."""
        params = {
            "id": local_run_id,
            "e": experiment_id,
            "r": run_id,
            "v": model_version,
            "t": utcnow(),
        }
        from mlops_assets.storage.warehouse import split_statements

        with self.warehouse.transaction() as tx:
            for statement in split_statements(sql_file("queries/update_mlflow_ids")):
                tx.execute(statement, params)


_MARK_SENT = (
    "UPDATE mlops.mlflow_buffer_metrics SET sent_at = :t WHERE local_run_id = :id "
    "AND seq >= :first AND seq <= :last AND claimed_at IS NOT NULL AND sent_at IS NULL"
)


def _point(row: Mapping[str, object]) -> MetricPoint:
    return MetricPoint(
        key=str(row["key"]),
        value=float(row["value"]),  # type: ignore[arg-type]
        timestamp_ms=int(row["timestamp_ms"]),  # type: ignore[call-overload]
        step=int(row["step"]),  # type: ignore[call-overload]
    )


def _run(row: Mapping[str, object]) -> BufferedRun:
    return BufferedRun(**{f: row[f] for f in BufferedRun.__dataclass_fields__})  # type: ignore[arg-type]
