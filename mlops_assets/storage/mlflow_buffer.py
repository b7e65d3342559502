"""The durable MLflow write-ahead buffer, kept in the warehouse.

Every training run writes its params, tags, metrics and artifact location here first; the
replayer then copies them into MLflow. Because every write is a committed transaction in a
database every process reaches, a `kill -9` at any point leaves either the whole write or none
of it, and the run worker, the daemon's sensor and the CLI all see the same buffer.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mlops_assets.lib.redact import redact, redact_optional
from mlops_assets.storage.warehouse import Transaction, Warehouse, split_statements, sql_file

RECORDING, PENDING, REPLAYED, PARKED = "recording", "pending", "replayed", "parked"
# A run whose recording process died before it finished: what it recorded is kept for
# inspection but never replayed (a half-recorded run would look like a real one in MLflow).
ABANDONED = "abandoned"
# How long a lease lasts without being renewed. A recording renews it on every write and a
# replay at every step; a process on this host is also known dead as soon as its pid is gone.
RECORDING_LEASE_S = 1800.0
REPLAY_LEASE_S = 300.0


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
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    abandoned_reason: str | None = None


@dataclass(frozen=True)
class BufferSummary:
    pending_runs: int
    parked_runs: int
    recording_runs: int
    pending_metrics: int
    abandoned_runs: int
    oldest_pending_age_s: float | None
    runs: tuple[BufferedRun, ...]


def now_ms() -> int:
    return int(time.time() * 1000)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def new_lease_owner() -> str:
    """`host:pid:nonce`: unique per tracker; tells whether the holder is a dead local process."""
    import uuid

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """True only when the owner is a process on this host that no longer exists."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by another user
        return False
    return False


class LeaseLostError(RuntimeError):
    """Another process took over the run's lease (ours expired): stop writing to MLflow."""


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
        owner: str,
        lease_s: float = RECORDING_LEASE_S,
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
                "owner": owner,
                "expires": time.time() + lease_s,
            },
        )

    def add_params(self, local_run_id: str, params: Mapping[str, object]) -> None:
        rows = [{"id": local_run_id, "k": k, "v": str(v)} for k, v in params.items()]
        with self.warehouse.transaction() as tx:
            tx.executemany(sql_file("queries/insert_buffer_param"), rows)
            _heartbeat(tx, local_run_id)

    def add_tags(self, local_run_id: str, tags: Mapping[str, object]) -> None:
        rows = [{"id": local_run_id, "k": k, "v": str(v)} for k, v in tags.items()]
        with self.warehouse.transaction() as tx:
            tx.executemany(sql_file("queries/upsert_buffer_tag"), rows)
            _heartbeat(tx, local_run_id)

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
            _heartbeat(tx, local_run_id)
            return tx.insert_frame("mlops.mlflow_buffer_metrics", frame)

    def set_model_artifact(self, local_run_id: str, artifact_path: str) -> None:
        self.warehouse.execute(
            "UPDATE mlops.mlflow_buffer_runs SET model_artifact_path = :p WHERE local_run_id = :id",
            {"p": artifact_path, "id": local_run_id},
        )

    def finish(self, local_run_id: str, *, status: str, end_time_ms: int, owner: str) -> None:
        """The recording is complete: the run becomes pending and its lease free, so whoever
        comes first replays it (the recording process right away, usually). A run reaped as
        abandoned while its owner was in fact alive (a lease that ran out on another host) is
        taken back by that owner."""
        self.warehouse.execute(
            "UPDATE mlops.mlflow_buffer_runs SET run_status = :status, end_time_ms = :end, "
            "state = :state, lease_owner = NULL, lease_expires_at = NULL, "
            "abandoned_reason = NULL "
            "WHERE local_run_id = :id AND lease_owner = :owner "
            "AND state IN (:recording, :abandoned)",
            {
                "status": status,
                "end": end_time_ms,
                "state": PENDING,
                "id": local_run_id,
                "owner": owner,
                "recording": RECORDING,
                "abandoned": ABANDONED,
            },
        )

    def reopen_artifacts(self, local_run_id: str) -> None:
        """New files in a run's artifact folder: upload the folder again on the next replay."""
        self.warehouse.execute(
            "UPDATE mlops.mlflow_buffer_runs SET artifacts_done = FALSE, "
            "state = CASE WHEN state = :replayed THEN :pending ELSE state END "
            "WHERE local_run_id = :id",
            {"replayed": REPLAYED, "pending": PENDING, "id": local_run_id},
        )

    # ------------------------------------------------------------------ leases

    def acquire(self, local_run_id: str, owner: str, lease_s: float = REPLAY_LEASE_S) -> bool:
        """Take the replay lease of a pending run in one conditional UPDATE; True when taken.

        Free, expired, or already ours: taken. Two processes asking at once cannot both get
        it (PostgreSQL re-checks the WHERE clause on the locked row; DuckDB has one writer).
        """
        now = time.time()
        params = {"owner": owner, "exp": now + lease_s, "id": local_run_id, "pending": PENDING}
        rows = self._update_returning(
            "UPDATE mlops.mlflow_buffer_runs SET lease_owner = :owner, lease_expires_at = :exp "
            "WHERE local_run_id = :id AND state = :pending AND (lease_owner IS NULL "
            "OR lease_owner = :owner OR lease_expires_at IS NULL OR lease_expires_at < :now) "
            "RETURNING local_run_id",
            {**params, "now": now},
        )
        if rows:
            return True
        # Held by a process of this host that is gone: take it over without waiting for expiry
        # (conditional on that same holder, so only one taker wins).
        current = self.get(local_run_id)
        if current is None or current.state != PENDING or not owner_is_dead(current.lease_owner):
            return False
        rows = self._update_returning(
            "UPDATE mlops.mlflow_buffer_runs SET lease_owner = :owner, lease_expires_at = :exp "
            "WHERE local_run_id = :id AND state = :pending AND lease_owner = :dead "
            "RETURNING local_run_id",
            {**params, "dead": current.lease_owner},
        )
        return bool(rows)

    def renew(self, local_run_id: str, owner: str, lease_s: float = REPLAY_LEASE_S) -> None:
        """Extend our lease; raises `LeaseLostError` when another process holds it now."""
        rows = self._update_returning(
            "UPDATE mlops.mlflow_buffer_runs SET lease_expires_at = :exp "
            "WHERE local_run_id = :id AND lease_owner = :owner RETURNING local_run_id",
            {"exp": time.time() + lease_s, "id": local_run_id, "owner": owner},
        )
        if not rows:
            holder = self.get(local_run_id)
            raise LeaseLostError(
                f"lease on {local_run_id} lost to "
                f"{holder.lease_owner if holder else 'nobody (run deleted)'}"
            )

    def release(self, local_run_id: str, owner: str) -> None:
        self.warehouse.execute(
            "UPDATE mlops.mlflow_buffer_runs SET lease_owner = NULL, lease_expires_at = NULL "
            "WHERE local_run_id = :id AND lease_owner = :owner",
            {"id": local_run_id, "owner": owner},
        )

    def _update_returning(self, sql: str, params: Mapping[str, object]) -> list[dict]:
        """An UPDATE ... RETURNING; on the embedded engine two threads of one process updating
        the same row conflict, which means someone else is changing it: retry briefly."""
        for attempt in range(20):
            try:
                return self.warehouse.query(sql, params)
            except Exception as error:  # noqa: BLE001 - only DuckDB's write conflict is retried
                if "conflict" not in str(error).lower() or attempt == 19:
                    raise
                time.sleep(0.01 * (attempt + 1))
        return []

    def reap_dead_recordings(self, lease_s: float = RECORDING_LEASE_S) -> list[str]:
        """Mark runs whose recording process died as `abandoned`, with the reason.

        Dead means: the owner is a process of this host that no longer exists, or the lease
        ran out (the recorder renews it on every write), or (rows from before leases existed)
        no owner and older than a lease. The UPDATE is conditional on the lease it judged,
        so a recorder that renewed in between keeps its run."""
        now = time.time()
        rows = self.warehouse.query(
            "SELECT local_run_id, lease_owner, lease_expires_at, created_at "
            "FROM mlops.mlflow_buffer_runs WHERE state = :s",
            {"s": RECORDING},
        )
        reaped = []
        for r in rows:
            owner, expires = r["lease_owner"], r["lease_expires_at"]
            if owner_is_dead(owner):
                reason = f"recording process {owner} is gone"
            elif expires is not None and expires < now:
                reason = f"recording lease of {owner} expired {now - expires:.0f}s ago"
            elif owner is None and (utcnow() - r["created_at"]).total_seconds() > lease_s:
                reason = "recording never finished and has no owner (written before leases)"
            else:
                continue
            counts = self.warehouse.query(
                "SELECT count(*) AS n FROM mlops.mlflow_buffer_metrics WHERE local_run_id = :id",
                {"id": r["local_run_id"]},
            )[0]
            reason += (
                f"; the run never finished, so it is not replayed "
                f"({counts['n']} metric points kept in the buffer)"
            )
            done = self._update_returning(
                "UPDATE mlops.mlflow_buffer_runs SET state = :abandoned, abandoned_reason = "
                ":reason, last_error = :reason, run_status = 'FAILED' "
                "WHERE local_run_id = :id AND state = :recording "
                "AND coalesce(lease_owner, '') = coalesce(:owner, '') "
                "AND coalesce(lease_expires_at, -1) = coalesce(:expires, -1) "
                "RETURNING local_run_id",
                {
                    "abandoned": ABANDONED,
                    "reason": reason,
                    "id": r["local_run_id"],
                    "recording": RECORDING,
                    "owner": owner,
                    "expires": expires,
                },
            )
            reaped += [d["local_run_id"] for d in done]
        return reaped

    # ------------------------------------------------------------------ reading

    def get(self, local_run_id: str) -> BufferedRun | None:
        rows = self.warehouse.query(
            "SELECT * FROM mlops.mlflow_buffer_runs WHERE local_run_id = :id",
            {"id": local_run_id},
        )
        return _run(rows[0]) if rows else None

    def pending(self, limit: int | None = None) -> list[BufferedRun]:
        """Runs waiting for MLflow, oldest first (leased ones included: `acquire` decides)."""
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
        """What waits for MLflow. Recordings whose process died are marked abandoned first,
        so they are shown as such and never counted as pending."""
        self.reap_dead_recordings()
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
                "WHERE m.sent_at IS NULL AND r.state NOT IN (:replayed, :abandoned)",
                {"replayed": REPLAYED, "abandoned": ABANDONED},
            )[0]["n"]
        pending = [r for r in runs if r.state == PENDING]
        oldest = min((r.created_at for r in pending), default=None)
        return BufferSummary(
            pending_runs=len(pending),
            parked_runs=sum(r.state == PARKED for r in runs),
            recording_runs=sum(r.state == RECORDING for r in runs),
            pending_metrics=int(unsent),
            abandoned_runs=sum(r.state == ABANDONED for r in runs),
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

    def record_attempt(self, local_run_id: str, error: str | None, *, owner: str) -> None:
        """A replay stopped on an outage: count it and release the lease for the next try."""
        self.warehouse.execute(
            "UPDATE mlops.mlflow_buffer_runs SET attempts = attempts + 1, last_error = :e, "
            "lease_owner = NULL, lease_expires_at = NULL "
            "WHERE local_run_id = :id AND (lease_owner = :owner OR lease_owner IS NULL)",
            {"e": redact_optional(error), "id": local_run_id, "owner": owner},
        )

    def park(self, local_run_id: str, error: str) -> None:
        """MLflow refused the run (a 4xx): stop retrying it and raise an alert, atomically."""
        from mlops_assets.storage.alerts import SERVICE_MODEL, open_alert

        error = redact(error)  # stored in last_error and in the alert text
        with self.warehouse.transaction() as tx:
            tx.execute(
                "UPDATE mlops.mlflow_buffer_runs SET state = :s, last_error = :e, "
                "lease_owner = NULL, lease_expires_at = NULL WHERE local_run_id = :id",
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
        with self.warehouse.transaction() as tx:
            for statement in split_statements(sql_file("queries/update_mlflow_ids")):
                tx.execute(statement, params)
            for statement in split_statements(sql_file("queries/backfill_mlflow_ids")):
                tx.execute(statement, params)


def backfill_replayed_ids(tx: Transaction, local_run_ids: Iterable[str]) -> None:
    """Rows written under a local id after that run was replayed get the real ids now, in the
    writer's own transaction (the replay's back-fill ran before these rows existed)."""
    for local_run_id in sorted({i for i in local_run_ids if i}):
        rows = tx.query(
            "SELECT mlflow_experiment_id, mlflow_run_id, model_version "
            "FROM mlops.mlflow_buffer_runs WHERE local_run_id = :id AND state = :s",
            {"id": local_run_id, "s": REPLAYED},
        )
        if not rows or not rows[0]["mlflow_run_id"]:
            continue
        params = {
            "id": local_run_id,
            "e": rows[0]["mlflow_experiment_id"],
            "r": rows[0]["mlflow_run_id"],
            "v": rows[0]["model_version"],
        }
        for statement in split_statements(sql_file("queries/backfill_mlflow_ids")):
            tx.execute(statement, params)


def _heartbeat(tx: Transaction, local_run_id: str) -> None:
    """A write to a run being recorded proves its recorder alive: extend the lease."""
    tx.execute(
        "UPDATE mlops.mlflow_buffer_runs SET lease_expires_at = :exp "
        "WHERE local_run_id = :id AND state = :recording",
        {"exp": time.time() + RECORDING_LEASE_S, "id": local_run_id, "recording": RECORDING},
    )


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
