"""Issue 11 findings 1-3: alerts configured by environment reach the webhook through the real
`Definitions`; every alert kind the code writes can be delivered; one bad event never blocks
the rest; re-deliveries carry the same idempotency key and a read timeout is not retried
within one tick."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.lib.notify_format import ALERT_KINDS
from mlops_assets.resources import WarehouseResource
from mlops_assets.storage.notify import WebhookSender, deliver_pending, message_builder
from mlops_assets.storage.warehouse import Warehouse
from mlops_assets_tests.alerts.test_notify import (
    SECRET_PATH,
    WebhookServer,
    events,
    open_test_alert,
    recorder,
)

PACKAGE = Path(__file__).resolve().parents[2] / "mlops_assets"
SQL = Path(__file__).resolve().parents[2] / "sql"
BUILD = message_builder(mlflow_ui_url=None, dagster_ui_url="http://dagster.internal:3000")


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def warehouse(mlops_home: Path) -> Warehouse:
    return WarehouseResource().get()


def kinds_written_by_the_code() -> set[str]:
    """Every literal alert kind in the package: `kind="..."` keyword arguments and
    `kind = '...'` comparisons inside SQL (in .sql files and in Python strings)."""
    found: set[str] = set()
    sql_literal = re.compile(r"\bkind\s*=\s*'([a-z_]+)'")
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _callee(node) not in NOT_ALERT_CALLS:
                for kw in node.keywords:
                    value = kw.value
                    if kw.arg == "kind" and isinstance(value, ast.Constant):
                        found.add(str(value.value))
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found |= set(sql_literal.findall(node.value))
    for path in SQL.rglob("*.sql"):
        found |= set(sql_literal.findall(path.read_text()))
    # `kind=` is also a drift-statistics field ("numeric"/"categorical"), not an alert kind.
    return found - {"numeric", "categorical"}


# Calls whose `kind=` is a sort algorithm (numpy, pandas), not an alert kind.
NOT_ALERT_CALLS = {"argsort", "sort", "sort_values", "sort_index"}


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def test_the_scan_finds_the_kinds_known_to_be_written():
    # Guards the scanner itself: these four are written by name in storage/ and defs/.
    assert {"performance", "drift", "mlflow_service", "mlflow_replay", "asset_check"} <= (
        kinds_written_by_the_code()
    )


def test_every_kind_the_code_writes_is_delivered(warehouse: Warehouse, webhook: WebhookServer):
    kinds = sorted(kinds_written_by_the_code())
    assert set(kinds) <= set(ALERT_KINDS)
    for kind in kinds:
        open_test_alert(
            warehouse,
            kind=kind,
            metric=f"m_{kind}",
            message="Asset check c on a/b failed" if kind == "asset_check" else "detail",
        )
    sender = WebhookSender(webhook.url, sleep=recorder()[1])

    report = deliver_pending(warehouse, sender=sender, build_message=BUILD)

    assert report.failed == () and len(report.delivered) == len(kinds)
    texts = " ".join(body["text"] for body in webhook.accepted)
    assert "MLflow replay alert opened" in texts


def test_refused_and_unformattable_events_are_failed_and_do_not_block(
    warehouse: Warehouse, webhook: WebhookServer
):
    open_test_alert(warehouse, kind="not_a_kind", metric="a")
    open_test_alert(warehouse, metric="b")  # the receiver refuses this one (HTTP 400)
    open_test_alert(warehouse, kind="mlflow_replay", metric="replay_parked")
    bad, refused, replay = (e["event_id"] for e in events(warehouse))
    webhook.script = [(400, {})]
    sender = WebhookSender(webhook.url, max_attempts=3, sleep=recorder()[1])

    report = deliver_pending(warehouse, sender=sender, build_message=BUILD)

    assert report.delivered == (replay,)
    assert report.failed == (bad, refused) and report.given_up == (bad, refused)
    assert report.remaining == 0
    assert webhook.requests == 2  # a 4xx is not retried
    rows = {e["event_id"]: e for e in events(warehouse)}
    assert "HTTP 400" in rows[refused]["last_error"] and rows[refused]["failed_at"] is not None
    assert "unknown alert kind" in rows[bad]["last_error"]
    assert SECRET_PATH not in rows[refused]["last_error"]


def test_retryable_failures_are_given_up_after_the_configured_ticks(
    warehouse: Warehouse, webhook: WebhookServer
):
    open_test_alert(warehouse, metric="a")
    open_test_alert(warehouse, metric="b")
    first, second = (e["event_id"] for e in events(warehouse))
    webhook.script = [(500, {}), (500, {})]
    sender = WebhookSender(webhook.url, max_attempts=1, sleep=recorder()[1])

    one = deliver_pending(warehouse, sender=sender, build_message=BUILD, max_event_attempts=2)
    assert one.failed == (first,) and one.given_up == () and one.delivered == ()
    two = deliver_pending(warehouse, sender=sender, build_message=BUILD, max_event_attempts=2)
    assert two.given_up == (first,) and two.delivered == (second,)
    assert "gave up after 2" in events(warehouse)[0]["last_error"]


def test_timeouts_redeliver_with_the_same_idempotency_key(
    warehouse: Warehouse, webhook: WebhookServer
):
    open_test_alert(warehouse)
    [event] = events(warehouse)
    webhook.delay = 1.0
    sender = WebhookSender(webhook.url, timeout=0.3, max_attempts=3, sleep=recorder()[1])

    slow = deliver_pending(warehouse, sender=sender, build_message=BUILD)

    # One copy in this call, although three attempts are allowed: it may have arrived.
    assert slow.failed == (event["event_id"],) and webhook.requests == 1
    webhook.delay = 0.0
    fast = deliver_pending(warehouse, sender=sender, build_message=BUILD)
    assert fast.delivered == (event["event_id"],) and webhook.requests == 2
    assert deliver_pending(warehouse, sender=sender, build_message=BUILD).nothing_to_do

    key = f"mlops-alert-event-{event['event_id']}"
    assert [h.get("Idempotency-Key") for h in webhook.headers] == [key, key]
    assert [body["idempotency_key"] for _, body in webhook.received] == [key, key]
    assert webhook.received[0][1] == webhook.received[1][1]


def test_env_webhook_reaches_the_receiver_through_the_real_definitions(
    mlops_home: Path, monkeypatch: pytest.MonkeyPatch, webhook: WebhookServer
):
    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    from mlops_assets.definitions import defs as load_defs

    defs = load_defs()
    sensor = defs.resolve_sensor_def("alert_notification_sensor")
    open_test_alert(WarehouseResource().get(), kind="mlflow_replay", metric="replay_parked")
    open_test_alert(WarehouseResource().get(), kind="from_the_future", metric="x")
    open_test_alert(WarehouseResource().get(), metric="roc_auc")

    with dg.build_sensor_context(
        resources=defs.resources, instance=dg.DagsterInstance.ephemeral()
    ) as context:
        result = sensor(context)

    # The unformattable event is marked failed; the tick succeeds and delivers the others.
    assert "delivered 2" in result.skip_reason.skip_message
    assert "1 marked failed" in result.skip_reason.skip_message
    assert len(webhook.accepted) == 2
    assert json.loads(result.cursor)["delivered"] == 2
    rows = events(WarehouseResource().get())
    assert [e["delivered_at"] is not None for e in rows] == [True, False, True]
    assert rows[1]["failed_at"] is not None and "from_the_future" in rows[1]["last_error"]
