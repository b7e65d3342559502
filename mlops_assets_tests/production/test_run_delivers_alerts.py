"""The monitoring run posts the alerts it raises (issue 10 item 3), and the notification sensor,
ticking after it, posts none of them again.

The real `daily_monitoring` job of the code location runs one degraded day of a model of its
own, with the webhook a real HTTP server on loopback. No sensor ticks during the run, so what
the server holds when the run returns was sent by the run.
"""

import json
from collections import Counter
from collections.abc import Iterator

import dagster as dg
import pytest

from mlops_assets.defs.alerts.hooks import ALERTING_STEPS
from mlops_assets.defs.alerts.sensors import NOTIFY_BATCH, alert_notification_sensor
from mlops_assets.defs.partitions import partition_key
from mlops_assets.defs.schedules import daily_monitoring_job
from mlops_assets.resources import NotifierResource
from mlops_assets_tests.alerts.test_notify import WebhookServer, open_test_alert
from mlops_assets_tests.production.conftest import unique_model

DAY = "2026-03-12"  # a day no other test of the package serves


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    try:
        yield server
    finally:
        server.stop()


def _posts_about(webhook: WebhookServer, model: str) -> list[dict]:
    return [body for body in webhook.accepted if model in json.dumps(body)]


def test_the_monitoring_run_delivers_its_alerts_and_the_sensor_does_not_repeat_them(
    platform, webhook
):
    from mlops_assets.definitions import defs as load_defs

    model = unique_model("run_posts")
    platform.clone_model(model)
    platform.serve(
        DAY, n_rows=1500, feature_drift_from="2026-03-01", concept_drift_from="2026-03-01"
    )
    real = load_defs()
    resources = {
        **platform.resources,
        "notifier": NotifierResource(webhook_url=webhook.url, max_attempts=1),
    }
    definitions = dg.Definitions(
        assets=list(real.assets or []),
        asset_checks=list(real.asset_checks or []),
        jobs=[daily_monitoring_job],
        resources=resources,
    )
    job = definitions.resolve_job_def("daily_monitoring")
    assert {node.name for node in job.graph.node_defs} >= ALERTING_STEPS
    # At least a full batch of older events still pending (the channel was down, say): the
    # run's own alerts, raised by one step, are behind them and must still leave with the run.
    [pending] = platform.wh.query(
        "SELECT count(*) AS n FROM mlops.alert_events "
        "WHERE delivered_at IS NULL AND failed_at IS NULL"
    )
    for n in range(max(0, NOTIFY_BATCH - pending["n"])):
        open_test_alert(platform.wh, model_name=f"older_backlog_{n}")

    result = job.execute_in_process(
        partition_key=partition_key(DAY, model), instance=platform.instance
    )

    assert result.success
    posted = _posts_about(webhook, model)
    headlines = [body["blocks"][0]["text"]["text"] for body in posted]
    assert any("performance alert opened" in h for h in headlines), headlines
    assert any("drift alert opened" in h for h in headlines), headlines
    pending = platform.wh.query(
        "SELECT e.event_id FROM mlops.alert_events AS e "
        "JOIN mlops.ml_performance_alerts AS a ON a.alert_id = e.alert_id "
        "WHERE a.model_name = :m AND e.delivered_at IS NULL",
        {"m": model},
    )
    assert pending == []
    hook_runs = [
        e
        for e in result.all_events
        if e.event_type_value == "HOOK_COMPLETED" and e.step_key in ALERTING_STEPS
    ]
    assert {e.step_key for e in hook_runs} == ALERTING_STEPS

    # The sensor's next tick finds nothing of this model left to send.
    with dg.build_sensor_context(
        cursor=None, resources=resources, instance=platform.instance
    ) as context:
        alert_notification_sensor(context)
    assert len(_posts_about(webhook, model)) == len(posted)
    keys = Counter(body["idempotency_key"] for body in _posts_about(webhook, model))
    assert set(keys.values()) == {1}, keys
    assert DAY in json.dumps(posted)
