"""Exactly-once delivery when several processes deliver at once (the run that raised the alerts
and the notification sensor), on both warehouse engines, against a real webhook on loopback.

Each deliverer is its own process, as in production (run worker, code server): on the embedded
engine they take turns on the DuckDB file, on PostgreSQL they race on the rows.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_assets.storage.alerts import add_event
from mlops_assets.storage.notify import (
    WebhookSender,
    claim_seconds,
    deliver_pending,
    message_builder,
)
from mlops_assets.storage.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse, sql_file
from mlops_assets_tests.alerts.test_notify import WebhookServer, events, open_test_alert

BUILD = message_builder(mlflow_ui_url=None, dagster_ui_url="http://dagster.internal:3000")
DELIVERERS = 3


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(engine, file or DSN) of a migrated warehouse that other processes can open."""
    if request.param == "embedded":
        where = str(tmp_path / "warehouse.duckdb")
    else:
        where = request.getfixturevalue("pg_dsn")
    _open(request.param, where).migrate()
    return request.param, where


def _open(engine: str, where: str) -> Warehouse:
    return DuckDBWarehouse(Path(where)) if engine == "embedded" else PostgresWarehouse(where)


def _deliver(engine: str, where: str, url: str, start: Any, out: Any) -> None:
    """One deliverer process: waits for the common start, then delivers what is pending."""
    warehouse = _open(engine, where)
    sender = WebhookSender(url, timeout=5, max_attempts=1)
    start.wait()
    report = deliver_pending(warehouse, sender=sender, build_message=BUILD)
    out.put({"delivered": list(report.delivered), "held": list(report.held)})


def _alerts_with_two_events(wh: Warehouse, n: int) -> list[int]:
    alert_ids = [open_test_alert(wh, metric=f"metric_{i}") for i in range(n)]
    with wh.transaction() as tx:
        for alert_id in alert_ids:
            add_event(tx, alert_id, "escalated", "critical")
    return alert_ids


def _key(headers: dict[str, str]) -> str:
    return headers["Idempotency-Key"]


def test_concurrent_deliverers_post_each_event_once(
    location: tuple[str, str], webhook: WebhookServer
):
    engine, where = location
    wh = _open(engine, where)
    _alerts_with_two_events(wh, 4)
    ids = [e["event_id"] for e in events(wh)]
    # A slow receiver keeps every deliverer busy at the same time.
    webhook.delay = 0.3
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    workers = [
        context.Process(target=_deliver, args=(engine, where, webhook.url, start, out))
        for _ in range(DELIVERERS)
    ]
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # let every process import and connect before the common start
    start.set()
    reports = [out.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    posted = Counter(_key(h) for h in webhook.headers)
    assert sorted(posted) == sorted(f"mlops-alert-event-{i}" for i in ids)
    assert set(posted.values()) == {1}, f"duplicate posts: {posted}"
    delivered = [e for r in reports for e in r["delivered"]]
    assert sorted(delivered) == ids, reports
    assert all(e["delivered_at"] is not None for e in events(wh))
    # Per alert, "opened" still arrives before "escalated", whoever sent them.
    order = [(body["idempotency_key"], body) for _, body in webhook.received]
    seen: dict[str, int] = {}
    for position, (key, _) in enumerate(order):
        seen[key] = position
    by_alert: dict[int, list[int]] = {}
    for e in events(wh):
        by_alert.setdefault(e["alert_id"], []).append(e["event_id"])
    for first, second in by_alert.values():
        assert seen[f"mlops-alert-event-{first}"] < seen[f"mlops-alert-event-{second}"]


def _claim(wh: Warehouse, event_id: int, owner: str, expires_in: float) -> bool:
    now = time.time()
    params = {"event_id": event_id, "owner": owner, "expires": now + expires_in, "now": now}
    return bool(wh.query(sql_file("queries/notify_claim_event"), params))


def test_an_event_claimed_elsewhere_is_left_with_its_alert_until_the_claim_expires(
    location: tuple[str, str], webhook: WebhookServer
):
    engine, where = location
    wh = _open(engine, where)
    held_alert, free_alert = _alerts_with_two_events(wh, 2)
    by_alert: dict[int, list[int]] = {}
    for e in events(wh):
        by_alert.setdefault(e["alert_id"], []).append(e["event_id"])
    opened, escalated = by_alert[held_alert]
    # Another process (a run) is sending the "opened" event of the first alert right now.
    assert _claim(wh, opened, "run-process", expires_in=60)
    assert not _claim(wh, opened, "someone-else", expires_in=60)
    sender = WebhookSender(webhook.url, timeout=5, max_attempts=1)

    report = deliver_pending(wh, sender=sender, build_message=BUILD)

    # The other alert goes out; the held alert's later event waits behind its first one.
    assert report.delivered == tuple(by_alert[free_alert])
    assert report.held == (opened, escalated)
    assert report.remaining == 2 and report.nothing_to_do is False
    assert [_key(h) for h in webhook.headers] == [
        f"mlops-alert-event-{i}" for i in by_alert[free_alert]
    ]

    # The holder died without sending: its claim runs out and the events go out, in order.
    wh.execute(
        "UPDATE mlops.alert_events SET claim_expires_at = :past WHERE event_id = :e",
        {"past": time.time() - 1, "e": opened},
    )
    again = deliver_pending(wh, sender=sender, build_message=BUILD)
    assert again.delivered == (opened, escalated) and again.held == ()
    assert [_key(h) for h in webhook.headers][-2:] == [
        f"mlops-alert-event-{opened}",
        f"mlops-alert-event-{escalated}",
    ]
    assert all(e["delivered_at"] is not None for e in events(wh))
    claims = wh.query("SELECT claimed_by, claim_expires_at FROM mlops.alert_events")
    assert all(c["claimed_by"] is None and c["claim_expires_at"] is None for c in claims)


def test_a_failed_send_releases_its_claim_for_the_next_deliverer(
    location: tuple[str, str], webhook: WebhookServer
):
    engine, where = location
    wh = _open(engine, where)
    open_test_alert(wh)
    webhook.fail_with = 503
    sender = WebhookSender(webhook.url, timeout=5, max_attempts=1)
    first = deliver_pending(wh, sender=sender, build_message=BUILD)
    assert first.delivered == () and len(first.failed) == 1
    [event] = wh.query("SELECT claimed_by, attempts FROM mlops.alert_events")
    assert event["claimed_by"] is None and event["attempts"] == 1
    webhook.fail_with = None
    # Released, so another process may send it at once instead of waiting for the claim.
    second = deliver_pending(wh, sender=sender, build_message=BUILD)
    assert second.delivered == first.failed


def test_the_claim_outlasts_the_longest_send():
    # Three attempts that each time out after 5 s, with the longest Retry-After between them.
    assert claim_seconds(5.0, 3) > 3 * 5.0 + 2 * 30.0
    assert claim_seconds(60.0, 10) > 10 * 60.0 + 9 * 30.0
