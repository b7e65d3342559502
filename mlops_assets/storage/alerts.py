"""Alert rows and their delivery events in the warehouse (one path for every kind of alert)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from mlops_assets.lib.breaker import BreakerEvent
from mlops_assets.lib.redact import redact
from mlops_assets.storage.warehouse import Transaction, Warehouse, sql_file

SERVICE_MODEL = "mlflow"  # service alerts are not about a model; this fills model_name


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def open_alert(tx: Transaction, *, event_type: str = "opened", **row: Any) -> int:
    """Insert an alert row and its first delivery event; returns the alert id."""
    now = utcnow()
    defaults = {
        "model_version": None,
        "observed": None,
        "baseline": None,
        "threshold": None,
        "degradation": None,
        "breach_days": 1,
        "ok_days": 0,
        "message": None,
        "training_local_run_id": None,
        "mlflow_experiment_id": None,
        "mlflow_run_id": None,
        "status": "open",
        "created_at": now,
        "updated_at": now,
    }
    params = {**defaults, **row}
    alert_id = tx.query(sql_file("queries/insert_alert"), params)[0]["alert_id"]
    add_event(tx, alert_id, event_type, params["severity"])
    return int(alert_id)


def add_event(tx: Transaction, alert_id: int, event_type: str, severity: str) -> None:
    tx.execute(
        "INSERT INTO mlops.alert_events (alert_id, event_type, severity, created_at) "
        "VALUES (:a, :e, :s, :t)",
        {"a": alert_id, "e": event_type, "s": severity, "t": utcnow()},
    )


def record_service_alert(warehouse: Warehouse, event: BreakerEvent) -> None:
    """MLflow outage -> a critical `mlflow_service` alert; recovery resolves it."""
    at = dt.datetime.fromtimestamp(event.at, dt.UTC).replace(tzinfo=None)
    with warehouse.transaction() as tx:
        current = tx.query(
            "SELECT alert_id FROM mlops.ml_performance_alerts WHERE kind = 'mlflow_service' "
            "AND metric = 'availability' AND status IN ('open', 'acknowledged') "
            "ORDER BY alert_id DESC LIMIT 1"
        )
        if event.to_state == "open":
            message = redact(f"MLflow circuit breaker opened: {event.reason}. {event.error or ''}")
            message = message.strip()
            if current:
                tx.execute(
                    "UPDATE mlops.ml_performance_alerts SET last_seen = :d, updated_at = :t, "
                    "message = :m WHERE alert_id = :a",
                    {"d": at.date(), "t": at, "m": message, "a": current[0]["alert_id"]},
                )
                return
            open_alert(
                tx,
                kind="mlflow_service",
                model_name=SERVICE_MODEL,
                metric="availability",
                severity="critical",
                first_seen=at.date(),
                last_seen=at.date(),
                message=message,
            )
        elif event.to_state == "closed" and current:
            tx.execute(
                "UPDATE mlops.ml_performance_alerts SET status = 'resolved', resolved_at = :t, "
                "updated_at = :t, message = :m WHERE alert_id = :a",
                {
                    "t": at,
                    "m": f"MLflow reachable again: {event.reason}",
                    "a": current[0]["alert_id"],
                },
            )
            add_event(tx, current[0]["alert_id"], "resolved", "critical")
