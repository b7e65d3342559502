"""Sensors that get alerts to people.

`alert_notification_sensor` delivers every undelivered alert event (performance, drift, MLflow
service, asset check) through the notifier: the webhook when one is configured, else the log.
Monitoring runs deliver the alerts they raise themselves, at the end of the step that raised
them (`mlops_assets.defs.alerts.hooks`); for those the sensor is the retrier and catch-all.
Both claim each event before sending it, so an event is posted once even when both try.

`asset_check_failure_sensor` turns failed asset checks into `asset_check` alerts. A failed
check does not fail its run, so run-failure sensors never see it; this sensor reads the
instance's event log for check evaluations newer than its cursor instead.
"""

import datetime as dt
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from mlops_assets.lib.contract import ModelCatalog
from mlops_assets.resources import MLflowResource, NotifierResource, WarehouseResource
from mlops_assets.storage.notify import (
    CheckOutcome,
    DeliveryError,
    DeliveryReport,
    LogSender,
    RoutingSender,
    Sender,
    WebhookSender,
    claim_seconds,
    deliver_pending,
    message_builder,
    record_asset_checks,
)

NOTIFY_INTERVAL_SECONDS = 30
NOTIFY_BATCH = 50
# The daemon gives one sensor evaluation 60 s by default; stop starting sends well before.
NOTIFY_BUDGET_SECONDS = 40.0

CHECK_INTERVAL_SECONDS = 60
CHECK_BATCH = 500
# On its first tick the sensor looks this far back, rather than alerting on all history.
CHECK_INITIAL_LOOKBACK = dt.timedelta(days=1)
# Run-sharded SQLite storage (plain `dagster dev`) has no global event order: read by
# timestamp with this overlap and skip events already seen.
CHECK_OVERLAP_SECONDS = 300.0
# A check whose metadata has this key already has its own alert path (e.g. "performance").
ALERTED_AS_KEY = "alerted_as"

_SEVERITY = {dg.AssetCheckSeverity.WARN: "warning", dg.AssetCheckSeverity.ERROR: "critical"}


# --------------------------------------------------------------------------- notifications


def _notify_cursor(raw: str | None) -> dict[str, Any]:
    # Informational: the warehouse (delivered_at) is what decides what is sent.
    state = {"last_event_id": None, "delivered": 0}
    if raw:
        try:
            loaded = json.loads(raw)
        except ValueError:
            loaded = {}
        if isinstance(loaded, dict):
            state.update({k: loaded[k] for k in state if k in loaded})
    return state


def _sender(
    notifier: NotifierResource,
    log: Any,
    models: ModelCatalog | None = None,
    *,
    max_attempts: int | None = None,
) -> Sender:
    # The resource field, else MLOPS_ALERT_WEBHOOK_URL read now (at tick time, not import).
    url = notifier.resolved_webhook_url()
    attempts = max_attempts or notifier.max_attempts
    default: Sender = LogSender(log)
    if url:
        default = WebhookSender(url, timeout=notifier.timeout_seconds, max_attempts=attempts)
    routes: dict[str, Sender] = {}
    floors: dict[str, str] = {}
    for contract in models or ():
        floors[contract.name] = contract.alerts.severity_floor
        variable = contract.alerts.webhook_env
        # A model's own webhook, read from its variable at tick time like the default one.
        own = os.environ.get(variable) if variable else None
        if own:
            routes[contract.name] = WebhookSender(
                own, timeout=notifier.timeout_seconds, max_attempts=attempts
            )
    return RoutingSender(default, routes=routes, floors=floors)


def deliver_alerts(
    *,
    warehouse: WarehouseResource,
    notifier: NotifierResource,
    mlflow: MLflowResource,
    models: ModelCatalog | None,
    log: Any,
    budget_seconds: float,
    max_attempts: int | None = None,
) -> DeliveryReport:
    """Deliver pending alert events through the configured senders, within the budget."""
    attempts = max_attempts or notifier.max_attempts
    build = message_builder(
        mlflow_ui_url=mlflow.runtime().mlflow_config.link_base,
        dagster_ui_url=notifier.dagster_ui_url,
    )
    return deliver_pending(
        warehouse.get(),
        sender=_sender(notifier, log, models, max_attempts=attempts),
        build_message=build,
        limit=NOTIFY_BATCH,
        deadline=time.monotonic() + budget_seconds,
        max_event_attempts=notifier.max_event_attempts,
        claim_for=claim_seconds(notifier.timeout_seconds, attempts),
    )


@dg.sensor(
    name="alert_notification_sensor",
    minimum_interval_seconds=NOTIFY_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Delivers alert events (opened, escalated, resolved) to the webhook or the log.",
)
def alert_notification_sensor(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    notifier: NotifierResource,
    mlflow: MLflowResource,
    models: dg.ResourceParam[ModelCatalog],
) -> dg.SensorResult:
    state = _notify_cursor(context.cursor)
    report = deliver_alerts(
        warehouse=warehouse,
        notifier=notifier,
        mlflow=mlflow,
        models=models,
        log=context.log,
        budget_seconds=NOTIFY_BUDGET_SECONDS,
    )
    for event_id, error in zip(report.failed, report.errors, strict=True):
        if event_id in report.given_up:
            context.log.error(f"alert event {event_id} marked failed, not retried: {error}")
    if set(report.failed) - set(report.given_up):
        # A broken alert channel must show as a failed tick, not a quiet skip. The event stays
        # undelivered in the warehouse and is retried on the next tick.
        raise DeliveryError(
            f"delivered {len(report.delivered)} alert event(s), then event(s) "
            f"{list(report.failed)} failed ({report.remaining} still undelivered): "
            + "; ".join(report.errors)
        )
    if report.nothing_to_do:
        reason = "no undelivered alert events"
        if report.held:
            reason = f"{len(report.held)} alert event(s) being sent by another process (a run)"
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=json.dumps(state))
    if report.delivered:
        state["last_event_id"] = report.last_delivered_event_id
    state["delivered"] = int(state["delivered"] or 0) + len(report.delivered)
    summary = f"delivered {len(report.delivered)} alert event(s), {report.remaining} pending"
    if report.given_up:
        summary += f", {len(report.given_up)} marked failed {list(report.given_up)}"
    context.log.info(summary)
    return dg.SensorResult(
        skip_reason=dg.SkipReason(summary),
        cursor=json.dumps(state),
    )


# --------------------------------------------------------------------------- asset checks


@dataclass
class _CheckCursor:
    """Global storage: the last storage id read. Run-sharded SQLite: a timestamp and the
    (run id, storage id) pairs already read within the overlap window."""

    storage_id: int | None = None
    timestamp: float | None = None
    seen: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, raw: str | None) -> "_CheckCursor":
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(
                storage_id=data.get("storage_id"),
                timestamp=data.get("timestamp"),
                seen=tuple((str(r), int(s)) for r, s in data.get("seen", ())),
            )
        except (ValueError, TypeError, AttributeError):
            return cls()

    def dump(self) -> str:
        data: dict[str, Any] = {}
        if self.storage_id is not None:
            data["storage_id"] = self.storage_id
        if self.timestamp is not None:
            data["timestamp"] = self.timestamp
            data["seen"] = [list(pair) for pair in self.seen]
        return json.dumps(data)


def _check_records(
    instance: dg.DagsterInstance, cursor: _CheckCursor, now: float
) -> tuple[list[Any], _CheckCursor]:
    """Check-evaluation records newer than the cursor, oldest first, and the next cursor."""
    storage = instance.event_log_storage
    first_tick_after = now - CHECK_INITIAL_LOOKBACK.total_seconds()
    event_type = dg.DagsterEventType.ASSET_CHECK_EVALUATION
    if not storage.is_run_sharded:
        # Storage ids are global and increasing (PostgreSQL, consolidated SQLite, in-memory).
        if cursor.storage_id is None:
            records_filter = dg.EventRecordsFilter(
                event_type=event_type, after_timestamp=first_tick_after
            )
        else:
            records_filter = dg.EventRecordsFilter(
                event_type=event_type, after_cursor=cursor.storage_id
            )
        # The storage method: `DagsterInstance.get_event_records` is deprecated in 1.13.
        records = list(storage.get_event_records(records_filter, CHECK_BATCH, True))
        last = records[-1].storage_id if records else cursor.storage_id
        return records, _CheckCursor(storage_id=last)
    # Storage ids repeat across run shards and the storage ignores id cursors, so read a
    # window by timestamp (no limit: the window is small) and drop what was already read.
    since = cursor.timestamp if cursor.timestamp is not None else first_tick_after
    records_filter = dg.EventRecordsFilter(
        event_type=event_type, after_timestamp=since - CHECK_OVERLAP_SECONDS
    )
    found = storage.get_event_records(records_filter, None, True)
    seen = set(cursor.seen)
    fresh = [r for r in found if (r.run_id, r.storage_id) not in seen]
    fresh.sort(key=lambda r: (r.timestamp, r.storage_id))
    newest = max([since, *(r.timestamp for r in found)])
    keep = {(r.run_id, r.storage_id) for r in found if r.timestamp > newest - CHECK_OVERLAP_SECONDS}
    return fresh, _CheckCursor(timestamp=newest, seen=tuple(sorted(keep)))


def _metadata_value(metadata: Any, key: str) -> Any:
    value = metadata.get(key)
    return getattr(value, "value", value)


def _metadata_number(metadata: Any, key: str) -> float | None:
    value = _metadata_value(metadata, key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _metadata_text(metadata: Any, key: str) -> str | None:
    value = _metadata_value(metadata, key)
    return str(value) if value not in (None, "") else None


def check_outcome(record: Any) -> CheckOutcome | None:
    """The outcome in one ASSET_CHECK_EVALUATION record; None when it is alerted elsewhere."""
    evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
    metadata = evaluation.metadata or {}
    if _metadata_text(metadata, ALERTED_AS_KEY):
        return None
    at = dt.datetime.fromtimestamp(record.timestamp, dt.UTC).replace(tzinfo=None)
    return CheckOutcome(
        asset_key=tuple(evaluation.asset_key.path),
        check_name=evaluation.check_name,
        passed=bool(evaluation.passed),
        severity=_SEVERITY.get(evaluation.severity, "critical"),
        at=at,
        model_name=_metadata_text(metadata, "model_name"),
        model_version=_metadata_text(metadata, "model_version"),
        description=evaluation.description,
        partition=evaluation.partition,
        observed=_metadata_number(metadata, "observed"),
        baseline=_metadata_number(metadata, "baseline"),
        threshold=_metadata_number(metadata, "threshold"),
        degradation=_metadata_number(metadata, "degradation"),
    )


def _outcomes(records: Sequence[Any]) -> list[CheckOutcome]:
    return [o for o in (check_outcome(r) for r in records) if o is not None]


@dg.sensor(
    name="asset_check_failure_sensor",
    minimum_interval_seconds=CHECK_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Opens an asset_check alert for each failed asset check; resolves it on a pass.",
)
def asset_check_failure_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult:
    cursor = _CheckCursor.parse(context.cursor)
    records, next_cursor = _check_records(context.instance, cursor, time.time())
    outcomes = _outcomes(records)
    # Recorded before the cursor moves: a crash in between re-reads the same evaluations,
    # which only moves last_seen of the same alerts again.
    report = record_asset_checks(warehouse.get(), outcomes)
    if report.changed:
        context.log.info(
            f"asset checks: opened {report.opened}, updated {report.updated}, "
            f"escalated {report.escalated}, resolved {report.resolved}"
        )
        reason = (
            f"{len(report.opened)} opened, {len(report.updated)} updated, "
            f"{len(report.resolved)} resolved asset_check alert(s)"
        )
    elif records:
        reason = f"{len(records)} check evaluation(s), no alert change"
    else:
        reason = "no new asset check evaluations"
    return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=next_cursor.dump())


sensors = [alert_notification_sensor, asset_check_failure_sensor]
