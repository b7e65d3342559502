"""Alert delivery: every undelivered row of `mlops.alert_events` goes out once, oldest first.

`deliver_pending` reads the pending events with their alert rows, turns each into an
`AlertMessage` and hands it to a sender (a webhook, or the log when none is configured).

Several processes deliver: the run that raised an alert (at the end of its step, so the alert
goes out within seconds) and the notification sensor (the catch-all and the retrier). Each
event is claimed before it is sent, in one conditional UPDATE, for longer than a send can take
(`claim_seconds`); whoever does not get the claim leaves the event, and the later events of
the same alert, to the holder. So concurrent deliverers never post the same event twice.

Beyond that, delivery is at-least-once with an idempotency key. Every payload carries the event
id as `idempotency_key` (and the webhook request as an `Idempotency-Key` header), the same on
every re-delivery, so a receiver can drop duplicates. Duplicates happen only when a send times
out after the receiver got it, or when the process dies between a successful send and the
update that records it (its claim then expires and the event is sent again). Within one call an
event is sent at most `max_attempts` times, and a read timeout is not retried in the same call
at all (the receiver may already have it).

A delivery that fails for a reason that may pass (connection refused, timeout, 5xx, 429) keeps
the event pending with `attempts` and `last_error` updated; the batch stops there so later
events do not overtake it while the channel is down, and the next call retries it. An event
that cannot succeed (it cannot be formatted, the webhook answers 4xx, or it failed
`max_event_attempts` times) is marked failed with its reason (`failed_at`, `last_error`) and
the batch goes on: one bad event never blocks the events behind it.

The webhook URL is a secret (Slack incoming-webhook URLs embed their token), so no error,
log line or repr produced here contains it.

Failed Dagster asset checks become alerts of kind `asset_check` through `record_asset_checks`,
so they reach people through the same events and the same delivery.

No Dagster imports here: the sensors in `mlops_assets.defs.alerts` are thin wrappers.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from mlops_assets.lib.notify_format import AlertMessage, idempotency_key, plain_text, slack_payload
from mlops_assets.lib.redact import redact
from mlops_assets.storage.alerts import add_event, open_alert, utcnow
from mlops_assets.storage.warehouse import Transaction, Warehouse, sql_file

if TYPE_CHECKING:  # requests is imported where a webhook is posted, not at start-up
    import requests

Row = Mapping[str, Any]
Sender = Callable[[AlertMessage], None]
MessageBuilder = Callable[[Row], AlertMessage]

# The Dagster asset a notification links to, per alert kind (asset-check alerts carry their own).
ASSET_FOR_KIND: dict[str, tuple[str, ...] | None] = {
    "performance": ("production_metrics",),
    "drift": ("feature_drift_report",),
    "mlflow_service": None,
    # A buffered training run MLflow refused: the fix starts at the training run.
    "mlflow_replay": ("training_run",),
}
MAX_ERROR_CHARS = 1000
MAX_BODY_CHARS = 200
MAX_RETRY_AFTER_SECONDS = 30.0
# Failed calls (ticks) after which a retryable failure is given up, so it cannot block forever.
MAX_EVENT_ATTEMPTS = 20
# Added to the longest a send can take when claiming an event (database round trips, a pause).
CLAIM_MARGIN_SECONDS = 60.0
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class DeliveryError(RuntimeError):
    """A notification could not be delivered. The message never contains the webhook URL.

    `retryable` is False when sending the same request again cannot help (a 4xx answer)."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


# --------------------------------------------------------------------------- senders


def _check_webhook_url(url: str) -> None:
    # Errors never echo the URL: it is the secret.
    if not isinstance(url, str) or not url:
        raise ValueError("webhook URL is empty")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"webhook URL must be an http(s) URL with a host (scheme {parts.scheme or 'missing'!r})"
        )


def _redact(text: str, url: str) -> str:
    """Remove the URL and any piece of its path or query from `text` (a server may echo them)."""
    parts = urlsplit(url)
    secrets = {url, url.rstrip("/"), parts.path, parts.query, parts.netloc}
    secrets |= {p for p in parts.path.split("/") if len(p) >= 4}
    secrets |= {p for p in re.split(r"[&=]", parts.query) if len(p) >= 4}
    for secret in sorted((s for s in secrets if s and s != "/"), key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    return redact(text)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


class NotSent(Exception):  # noqa: N818 - a routing decision, not an error
    """The route decided not to send this event (e.g. below the model's severity floor)."""


_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class RoutingSender:
    """Per-model routing: the model's own sender (its webhook) else the default, and the
    model's severity floor: an event below it is not sent and is recorded as such."""

    def __init__(
        self,
        default: Sender,
        *,
        routes: Mapping[str, Sender] | None = None,
        floors: Mapping[str, str] | None = None,
    ):
        self.default = default
        self.routes = dict(routes or {})
        self.floors = dict(floors or {})

    def __call__(self, message: AlertMessage) -> None:
        model = message.model_name or ""
        floor = self.floors.get(model, "info")
        if _SEVERITY_RANK.get(message.severity, 2) < _SEVERITY_RANK[floor]:
            raise NotSent(
                f"not sent: severity {message.severity} is below the severity floor "
                f"{floor} of model {model}"
            )
        self.routes.get(model, self.default)(message)


class WebhookSender:
    """POSTs the Slack-compatible payload of each message as JSON.

    Connection errors, connect timeouts, 5xx and 429 are retried up to `max_attempts` times in
    total, sleeping `backoff_base * 2**(n-1)` seconds after the n-th failed attempt (or the
    server's Retry-After, capped at 30 s, when longer). A read timeout is not retried here: the
    receiver may have the request already, and the caller retries it later with the same
    `Idempotency-Key`. Other answers (4xx, redirects) fail at once and for good: repeating the
    same request cannot change them. Failure raises `DeliveryError`.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        max_attempts: int = 3,
        backoff_base: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ):
        _check_webhook_url(url)
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        if backoff_base < 0:
            raise ValueError(f"backoff_base must be >= 0, got {backoff_base!r}")
        self._url = url
        self.timeout = float(timeout)
        self.max_attempts = int(max_attempts)
        self.backoff_base = float(backoff_base)
        self._sleep = sleep

    def __repr__(self) -> str:
        return (
            f"WebhookSender(url=<secret>, timeout={self.timeout:g}, "
            f"max_attempts={self.max_attempts})"
        )

    def __call__(self, message: AlertMessage) -> None:
        key = idempotency_key(message)
        self.post(slack_payload(message), headers={"Idempotency-Key": key} if key else None)

    def post(self, payload: Mapping[str, Any], *, headers: Mapping[str, str] | None = None) -> None:
        """Send one JSON body; return on any 2xx, raise `DeliveryError` otherwise."""
        import requests

        problem = "not attempted"
        attempt = 0
        final = False  # True: no later call can succeed with the same request
        for attempt in range(1, self.max_attempts + 1):  # noqa: B007 - reported after the loop
            retryable, wait = True, 0.0
            try:
                response = requests.post(
                    self._url,
                    json=dict(payload),
                    headers=dict(headers or {}),
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.ConnectTimeout:
                problem = f"could not connect to the webhook within {self.timeout:g} s"
            except requests.Timeout:
                # Sent, but no answer: the receiver may have it, so no second copy now.
                problem = f"no answer within {self.timeout:g} s"
                retryable = False
            except requests.ConnectionError:
                problem = "could not connect to the webhook"
            except requests.RequestException as error:
                # The exception text names the URL; its type is enough to act on.
                problem = f"request failed ({type(error).__name__})"
                retryable, final = False, True
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return
                body = " ".join(response.text.split())[:MAX_BODY_CHARS]
                problem = f"HTTP {status}" + (f": {_redact(body, self._url)}" if body else "")
                retryable = status >= 500 or status == 429
                final = not retryable
                if status in (429, 503):
                    wait = _retry_after(response) or 0.0
            if not retryable or attempt == self.max_attempts:
                break
            self._sleep(max(self.backoff_base * 2 ** (attempt - 1), wait))
        # Raised outside every `except` block, so no chained exception carries the URL along.
        raise DeliveryError(
            f"webhook delivery failed after {attempt} attempt(s): {problem}", retryable=not final
        )


class _Logger(Protocol):
    def info(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def warning(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...
    def error(self, msg: str, *args: Any, **kwargs: Any) -> Any: ...


class LogSender:
    """Writes each notification to a logger as plain text (used when no webhook is set);
    critical alerts at ERROR level, warnings at WARNING, resolutions and info at INFO."""

    def __init__(self, logger: _Logger | None = None):
        self.logger = logger or logging.getLogger("mlops_assets.alerts")

    def __call__(self, message: AlertMessage) -> None:
        text = redact(plain_text(message))
        if message.event == "resolved" or message.severity == "info":
            self.logger.info(text)
        elif message.severity == "warning":
            self.logger.warning(text)
        else:
            self.logger.error(text)


# --------------------------------------------------------------------------- messages


def safe_base_url(url: str | None) -> str | None:
    """`url` if it can be shown in a notification as a link base, else None.

    A tracking URI with credentials or a query string would make every `AlertMessage` invalid
    and block delivery; such a base is dropped so alerts still go out, without links.
    """
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        return None
    return url.rstrip("/")


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _date(value: Any) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def message_from_row(
    row: Row, *, mlflow_ui_url: str | None = None, dagster_ui_url: str | None = None
) -> AlertMessage:
    """The notification for one row of `select_undelivered_alert_events`."""
    kind = row["kind"]
    if kind == "asset_check":
        asset_key = asset_key_from_message(row.get("message"))
    elif kind in ASSET_FOR_KIND:
        asset_key = ASSET_FOR_KIND[kind]
    else:
        raise ValueError(f"unknown alert kind {kind!r}")
    run_id, run_pending = row.get("mlflow_run_id"), False
    if run_id is None and row.get("training_local_run_id"):
        # The training run exists only in the outage buffer: show its local id, unlinked.
        run_id, run_pending = row["training_local_run_id"], True
    observed, baseline = _float(row.get("observed")), _float(row.get("baseline"))
    degradation = _float(row.get("degradation"))
    degradation_rel = None
    if kind == "performance" and degradation is not None and baseline:
        degradation_rel = degradation / abs(baseline)
    return AlertMessage(
        alert_id=str(row["alert_id"]),
        kind=kind,
        event=row["event_type"],
        severity=row["event_severity"],
        metric=row["metric"],
        first_seen=_date(row["first_seen"]),
        last_seen=_date(row["last_seen"]),
        model_name=None if kind in ("mlflow_service",) else row.get("model_name"),
        model_version=row.get("model_version"),
        observed=observed,
        baseline=baseline,
        threshold=_float(row.get("threshold")),
        degradation=degradation,
        degradation_rel=degradation_rel,
        mlflow_ui_url=safe_base_url(mlflow_ui_url),
        experiment_id=row.get("mlflow_experiment_id"),
        run_id=run_id,
        run_pending=run_pending,
        dagster_ui_url=safe_base_url(dagster_ui_url),
        asset_key=asset_key,
        # Alert texts quote error messages, which may quote a URI with its password.
        detail=None if row.get("message") is None else redact(row["message"]),
        event_id=int(row["event_id"]) if row.get("event_id") is not None else None,
    )


def message_builder(
    *, mlflow_ui_url: str | None = None, dagster_ui_url: str | None = None
) -> MessageBuilder:
    """`message_from_row` with the UI link bases bound (unusable bases are dropped)."""
    mlflow_base, dagster_base = safe_base_url(mlflow_ui_url), safe_base_url(dagster_ui_url)

    def build(row: Row) -> AlertMessage:
        return message_from_row(row, mlflow_ui_url=mlflow_base, dagster_ui_url=dagster_base)

    return build


# --------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class DeliveryReport:
    """What one `deliver_pending` call did. Event ids are in the order they were handled."""

    delivered: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()
    errors: tuple[str, ...] = ()  # one per failed event, same order; never the webhook URL
    remaining: int = 0  # events still undelivered (and not given up) after the call
    given_up: tuple[int, ...] = ()  # failed events marked failed for good (a subset of failed)
    held: tuple[int, ...] = ()  # events another deliverer had claimed: left to it

    @property
    def last_delivered_event_id(self) -> int | None:
        return self.delivered[-1] if self.delivered else None

    @property
    def nothing_to_do(self) -> bool:
        return not self.delivered and not self.failed


def _describe(error: Exception) -> str:
    # Only DeliveryError promises a URL-free message; other texts are redacted here.
    text = str(error) if isinstance(error, DeliveryError) else f"{type(error).__name__}: {error}"
    return redact(text)[:MAX_ERROR_CHARS]


def claim_seconds(timeout: float, max_attempts: int) -> float:
    """How long to claim an event for: longer than one `WebhookSender` call can take with
    these settings (every attempt timing out, every pause the longest Retry-After)."""
    longest_send = timeout * max_attempts + MAX_RETRY_AFTER_SECONDS * (max_attempts - 1)
    return longest_send + CLAIM_MARGIN_SECONDS


DEFAULT_CLAIM_SECONDS = claim_seconds(5.0, 3)


def new_claim_owner() -> str:
    """`host:pid:nonce`: names the deliverer in `alert_events.claimed_by`."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _claim(warehouse: Warehouse, event_id: int, owner: str, seconds: float) -> bool:
    now = time.time()
    params = {"event_id": event_id, "owner": owner, "expires": now + seconds, "now": now}
    for attempt in range(20):
        try:
            return bool(warehouse.query(sql_file("queries/notify_claim_event"), params))
        except Exception as error:  # noqa: BLE001 - only DuckDB's write conflict is retried
            # Two threads of one process updating the same row on the embedded engine: someone
            # else is claiming it; the retry sees their claim.
            if "conflict" not in str(error).lower() or attempt == 19:
                raise
            time.sleep(0.01 * (attempt + 1))
    return False


def deliver_pending(
    warehouse: Warehouse,
    *,
    sender: Sender,
    build_message: MessageBuilder,
    limit: int = 100,
    deadline: float | None = None,
    max_event_attempts: int = MAX_EVENT_ATTEMPTS,
    owner: str | None = None,
    claim_for: float = DEFAULT_CLAIM_SECONDS,
) -> DeliveryReport:
    """Send up to `limit` pending alert events, oldest first, each through `sender`.

    Each event is claimed for `claim_for` seconds (as `owner`) before it is sent. An event
    another deliverer holds is skipped, and so are the later events of its alert, which keeps
    each alert's events in order. A sent event gets `delivered_at`. An event whose message
    cannot be built, or whose send fails for good (`DeliveryError.retryable` False, or any other
    exception from the sender), is marked failed with its reason and the batch goes on. A
    retryable send failure increments `attempts`, stores `last_error` and ends the batch (the
    channel is likely down; the next call retries it first); on its `max_event_attempts`-th
    failure it is marked failed instead. `deadline` is a `time.monotonic()` value after which
    no further send starts.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if max_event_attempts < 1:
        raise ValueError(f"max_event_attempts must be >= 1, got {max_event_attempts}")
    owner = owner or new_claim_owner()
    rows = warehouse.query(sql_file("queries/select_undelivered_alert_events"), {"limit": limit})
    delivered: list[int] = []
    failed: list[int] = []
    given_up: list[int] = []
    errors: list[str] = []
    held: list[int] = []
    held_alerts: set[int] = set()
    for row in rows:
        if deadline is not None and time.monotonic() >= deadline:
            break
        event_id = int(row["event_id"])
        alert_id = int(row["alert_id"])
        if alert_id in held_alerts:
            held.append(event_id)
            continue
        if not _claim(warehouse, event_id, owner, claim_for):
            if _still_pending(warehouse, event_id):  # else already sent or given up by another
                held.append(event_id)
                held_alerts.add(alert_id)
            continue
        try:
            message = build_message(row)
        except Exception as error:  # noqa: BLE001 - any formatting failure is recorded
            reason = f"cannot build the notification: {_describe(error)}"[:MAX_ERROR_CHARS]
            _give_up(warehouse, event_id, reason)
            failed.append(event_id)
            given_up.append(event_id)
            errors.append(reason)
            continue
        try:
            sender(message)
        except NotSent as note:
            _give_up(warehouse, event_id, str(note)[:MAX_ERROR_CHARS])
            continue
        except Exception as error:  # noqa: BLE001 - recorded on the event
            reason = _describe(error)
            retryable = isinstance(error, DeliveryError) and error.retryable
            failed.append(event_id)
            if retryable and int(row.get("attempts") or 0) + 1 < max_event_attempts:
                _record_failure(warehouse, event_id, reason)
                errors.append(reason)
                break
            if retryable:
                reason = f"gave up after {max_event_attempts} failed calls: {reason}"
            _give_up(warehouse, event_id, reason[:MAX_ERROR_CHARS])
            given_up.append(event_id)
            errors.append(reason[:MAX_ERROR_CHARS])
            continue
        warehouse.execute(
            sql_file("queries/notify_mark_delivered"), {"event_id": event_id, "at": utcnow()}
        )
        delivered.append(event_id)
    remaining = warehouse.query(sql_file("queries/notify_count_undelivered"))[0]["n"]
    return DeliveryReport(
        tuple(delivered),
        tuple(failed),
        tuple(errors),
        int(remaining),
        tuple(given_up),
        tuple(held),
    )


def _still_pending(warehouse: Warehouse, event_id: int) -> bool:
    return bool(warehouse.query(sql_file("queries/notify_event_pending"), {"event_id": event_id}))


def _record_failure(warehouse: Warehouse, event_id: int, reason: str) -> None:
    warehouse.execute(
        sql_file("queries/notify_record_failure"), {"event_id": event_id, "error": reason}
    )


def _give_up(warehouse: Warehouse, event_id: int, reason: str) -> None:
    warehouse.execute(
        sql_file("queries/notify_mark_failed"),
        {"event_id": event_id, "error": reason, "at": utcnow()},
    )


# --------------------------------------------------------------------------- asset checks

# The alerts table has no asset column: an asset-check alert names its asset and check in the
# first words of `message`, which is also the text people read. Check names are identifiers.
_CHECK_MESSAGE = re.compile(r"^Asset check (?P<check>\S+) on (?P<asset>.+?) (?:failed|passed)")


def asset_check_message(
    asset_key: Sequence[str],
    check_name: str,
    *,
    passed: bool,
    partition: str | None = None,
    description: str | None = None,
) -> str:
    text = f"Asset check {check_name} on {'/'.join(asset_key)} {'passed' if passed else 'failed'}"
    if partition:
        text += f" (partition {partition})"
    if description:
        text += f": {description}"
    return text


def asset_key_from_message(message: str | None) -> tuple[str, ...] | None:
    """The asset path an asset-check alert's message names (None if it names none)."""
    match = _CHECK_MESSAGE.match(message or "")
    return tuple(match["asset"].split("/")) if match else None


@dataclass(frozen=True)
class CheckOutcome:
    """One asset-check evaluation, without Dagster types. `severity`: warning | critical."""

    asset_key: tuple[str, ...]
    check_name: str
    passed: bool
    severity: str
    at: dt.datetime  # naive UTC
    model_name: str | None = None  # else the asset path names the alert
    model_version: str | None = None
    description: str | None = None
    partition: str | None = None
    observed: float | None = None
    baseline: float | None = None
    threshold: float | None = None
    degradation: float | None = None

    def __post_init__(self) -> None:
        if self.severity not in _SEVERITY_RANK:
            raise ValueError(
                f"severity must be one of {tuple(_SEVERITY_RANK)}, got {self.severity!r}"
            )
        if not self.asset_key or not all(self.asset_key):
            raise ValueError(f"asset_key must be non-empty strings, got {self.asset_key!r}")

    @property
    def alert_model(self) -> str:
        return self.model_name or "/".join(self.asset_key)


@dataclass
class CheckReport:
    opened: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return len(self.opened) + len(self.updated) + len(self.resolved)


def _current_check_alert(tx: Transaction, outcome: CheckOutcome) -> Row | None:
    rows = tx.query(
        sql_file("queries/notify_select_open_check_alerts"),
        {"model_name": outcome.alert_model, "metric": outcome.check_name},
    )
    for row in rows:
        if asset_key_from_message(row["message"]) == outcome.asset_key:
            return row
    return None


def record_asset_checks(warehouse: Warehouse, outcomes: Sequence[CheckOutcome]) -> CheckReport:
    """Fold check evaluations (oldest first) into `asset_check` alerts, in one transaction.

    A failure opens an alert, or - when one is open or acknowledged for the same asset, check
    and model - moves its `last_seen` forward (a new `escalated` event only if the severity
    rose). A pass resolves the open alert, if any (a `resolved` event).
    """
    report = CheckReport()
    if not outcomes:
        return report
    with warehouse.transaction() as tx:
        for outcome in outcomes:
            current = _current_check_alert(tx, outcome)
            message = asset_check_message(
                outcome.asset_key,
                outcome.check_name,
                passed=outcome.passed,
                partition=outcome.partition,
                description=outcome.description,
            )
            day = outcome.at.date()
            if outcome.passed:
                if current is not None:
                    tx.execute(
                        sql_file("queries/notify_resolve_alert"),
                        {"alert_id": current["alert_id"], "at": outcome.at, "message": message},
                    )
                    add_event(tx, current["alert_id"], "resolved", current["severity"])
                    report.resolved.append(int(current["alert_id"]))
                continue
            values = {
                "observed": outcome.observed,
                "baseline": outcome.baseline,
                "threshold": outcome.threshold,
                "degradation": outcome.degradation,
            }
            if current is None:
                alert_id = open_alert(
                    tx,
                    kind="asset_check",
                    model_name=outcome.alert_model,
                    model_version=outcome.model_version,
                    metric=outcome.check_name,
                    severity=outcome.severity,
                    first_seen=day,
                    last_seen=day,
                    message=message,
                    **values,
                )
                report.opened.append(alert_id)
                continue
            alert_id = int(current["alert_id"])
            severity = current["severity"]
            raised = _SEVERITY_RANK[outcome.severity] > _SEVERITY_RANK.get(severity, 0)
            if raised:
                severity = outcome.severity
            tx.execute(
                sql_file("queries/notify_update_check_alert"),
                {
                    "alert_id": alert_id,
                    "severity": severity,
                    "day": day,
                    "at": outcome.at,
                    "message": message,
                    **values,
                },
            )
            report.updated.append(alert_id)
            if raised:
                add_event(tx, alert_id, "escalated", severity)
                report.escalated.append(alert_id)
    return report
