"""Circuit-breaker state in the warehouse, shared by every process that talks to MLflow."""

from __future__ import annotations

import contextlib
import threading

from mlops_assets.lib.breaker import BreakerEvent, BreakerState, Transition
from mlops_assets.lib.redact import redact_optional
from mlops_assets.storage.warehouse import Warehouse, sql_file

_FIELDS = tuple(BreakerState.__dataclass_fields__)


class SqlBreakerStore:
    """`BreakerStore` over the warehouse: read-modify-write in one transaction.

    PostgreSQL locks the row (`FOR UPDATE`) so concurrent processes take turns; DuckDB allows a
    single writing process per file, which serialises processes, but threads of one process
    share the database and would conflict on the row: they take turns on a lock per file. The
    locks are held only for this bookkeeping, never while the protected MLflow call runs.
    """

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self._lock_clause = " FOR UPDATE" if warehouse.engine == "postgres" else ""
        self._thread_lock = (
            _file_lock(warehouse.describe())
            if warehouse.engine == "embedded"
            else contextlib.nullcontext()
        )

    def transact(self, name: str, fn: Transition) -> BreakerState:
        with self._thread_lock, self.warehouse.transaction() as tx:
            tx.execute(
                "INSERT INTO mlops.circuit_breakers (name, state, failure_count, "
                "half_open_in_flight, half_open_successes) VALUES (:n, 'closed', 0, 0, 0) "
                "ON CONFLICT (name) DO NOTHING",
                {"n": name},
            )
            rows = tx.query(
                "SELECT * FROM mlops.circuit_breakers WHERE name = :n" + self._lock_clause,
                {"n": name},
            )
            new_state, events = fn(_state(rows[0]))
            tx.execute(
                sql_file("queries/update_circuit_breaker"),
                {"n": name, **{f: getattr(new_state, f) for f in _FIELDS}},
            )
            tx.executemany(
                "INSERT INTO mlops.circuit_breaker_events "
                "(name, occurred_at, from_state, to_state, reason, error) "
                "VALUES (:name, :at, :from_state, :to_state, :reason, :error)",
                [_event_row(e) for e in events],
            )
        return new_state

    def read(self, name: str) -> BreakerState:
        rows = self.warehouse.query(
            "SELECT * FROM mlops.circuit_breakers WHERE name = :n", {"n": name}
        )
        return _state(rows[0]) if rows else BreakerState()

    def events(self, name: str, limit: int = 20) -> list[BreakerEvent]:
        rows = self.warehouse.query(
            "SELECT name, occurred_at, from_state, to_state, reason, error "
            "FROM mlops.circuit_breaker_events WHERE name = :n "
            "ORDER BY event_id DESC LIMIT :limit",
            {"n": name, "limit": limit},
        )
        return [
            BreakerEvent(
                name=r["name"],
                at=r["occurred_at"],
                from_state=r["from_state"],
                to_state=r["to_state"],
                reason=r["reason"],
                error=r["error"],
            )
            for r in reversed(rows)
        ]


_FILE_LOCKS: dict[str, threading.Lock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(key: str) -> threading.Lock:
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.Lock())


def _state(row: dict) -> BreakerState:
    return BreakerState(**{f: row[f] for f in _FIELDS})


def _event_row(event: BreakerEvent) -> dict:
    return {
        "name": event.name,
        "at": event.at,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "reason": event.reason,
        "error": redact_optional(event.error),
    }
