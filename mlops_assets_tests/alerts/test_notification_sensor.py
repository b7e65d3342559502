"""The alert sensors, ticked by hand with real resources, a real webhook server on loopback and
real Dagster instances (in-memory storage, and the run-sharded SQLite storage of `dagster dev`).

No `from __future__ import annotations`: this module defines Dagster assets.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mlops_assets.defs.alerts.sensors import (
    alert_notification_sensor,
    asset_check_failure_sensor,
    sensors,
)
from mlops_assets.lib.contract import ModelCatalog
from mlops_assets.resources import MLflowResource, NotifierResource, WarehouseResource
from mlops_assets.storage.notify import DeliveryError, asset_key_from_message
from mlops_assets.storage.warehouse import Warehouse
from mlops_assets_tests.alerts.test_notify import (
    SECRET_PATH,
    WebhookServer,
    assert_no_secret,
    events,
    open_test_alert,
)

ASSET = dg.AssetKey(["monitoring", "scored"])


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_resource(
    request: pytest.FixtureRequest, mlops_home: Path, monkeypatch: pytest.MonkeyPatch
) -> WarehouseResource:
    if request.param == "embedded":
        return WarehouseResource(home=str(mlops_home))
    monkeypatch.setenv("MLOPS_WAREHOUSE_DSN", request.getfixturevalue("pg_dsn"))
    return WarehouseResource(home=str(mlops_home), backend="postgres")


@pytest.fixture
def warehouse(warehouse_resource: WarehouseResource) -> Warehouse:
    return warehouse_resource.get()


def notify_resources(wr: WarehouseResource, webhook_url: str | None, **notifier: Any) -> dict:
    return {
        "warehouse": wr,
        "mlflow": MLflowResource(warehouse=wr, tracking_uri="http://mlflow.internal:5000"),
        "notifier": NotifierResource(
            webhook_url=webhook_url, dagster_ui_url="http://dagster.internal:3000", **notifier
        ),
        "models": ModelCatalog(),
    }


def tick(sensor: dg.SensorDefinition, cursor: str | None, resources: dict, instance=None):
    with dg.build_sensor_context(
        cursor=cursor, resources=resources, instance=instance or dg.DagsterInstance.ephemeral()
    ) as context:
        return sensor(context)


def test_sensors_are_exported_and_running_by_default():
    assert [s.name for s in sensors] == ["alert_notification_sensor", "asset_check_failure_sensor"]
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors)
    assert alert_notification_sensor.required_resource_keys == {
        "warehouse",
        "notifier",
        "mlflow",
        "models",
    }
    assert asset_check_failure_sensor.required_resource_keys == {"warehouse"}


# --------------------------------------------------------------------------- notifications


def test_notification_sensor_delivers_once_and_skips_when_idle(
    warehouse_resource: WarehouseResource, warehouse: Warehouse, webhook: WebhookServer
):
    open_test_alert(warehouse, metric="roc_auc")
    open_test_alert(warehouse, metric="log_loss", mlflow_run_id=None)
    ids = [e["event_id"] for e in events(warehouse)]
    resources = notify_resources(warehouse_resource, webhook.url)

    first = tick(alert_notification_sensor, None, resources)

    assert json.loads(first.cursor) == {"last_event_id": ids[-1], "delivered": 2}
    assert "delivered 2" in first.skip_reason.skip_message
    bodies = webhook.accepted
    assert len(bodies) == 2
    payload = json.dumps(bodies[0])
    assert "http://mlflow.internal:5000/#/experiments/7/runs/0a1b2c3d" in payload
    assert "http://dagster.internal:3000/assets/production_metrics" in payload
    assert "local-0001 (pending replay to MLflow)" in json.dumps(bodies[1])

    second = tick(alert_notification_sensor, first.cursor, resources)
    assert second.skip_reason.skip_message == "no undelivered alert events"
    assert json.loads(second.cursor) == json.loads(first.cursor)
    assert webhook.requests == 2


def test_notification_sensor_fails_the_tick_without_leaking_the_url(
    warehouse_resource: WarehouseResource, warehouse: Warehouse, webhook: WebhookServer
):
    open_test_alert(warehouse)
    webhook.fail_with = 503
    resources = notify_resources(warehouse_resource, webhook.url, max_attempts=1)

    with pytest.raises(DeliveryError) as caught:
        tick(alert_notification_sensor, None, resources)

    assert "HTTP 503" in str(caught.value) and "1 still undelivered" in str(caught.value)
    assert_no_secret(str(caught.value), webhook.url)
    [event] = events(warehouse)
    assert event["delivered_at"] is None and event["attempts"] == 1
    assert_no_secret(event["last_error"], webhook.url)

    webhook.fail_with = None
    result = tick(alert_notification_sensor, None, resources)
    assert json.loads(result.cursor)["delivered"] == 1
    assert len(webhook.accepted) == 1
    assert tick(alert_notification_sensor, result.cursor, resources).skip_reason.skip_message == (
        "no undelivered alert events"
    )
    assert len(webhook.accepted) == 1


def test_notification_sensor_logs_when_no_webhook_is_set(
    warehouse_resource: WarehouseResource, warehouse: Warehouse
):
    open_test_alert(warehouse, severity="critical")
    result = tick(alert_notification_sensor, None, notify_resources(warehouse_resource, None))
    assert json.loads(result.cursor)["delivered"] == 1
    assert all(e["delivered_at"] is not None for e in events(warehouse))


# --------------------------------------------------------------------------- asset checks


class ChecksConfig(dg.Config):
    row_count: str = "WARN"  # PASS | WARN | ERROR
    freshness: str = "ERROR"


def _result(name: str, outcome: str, **metadata: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=ASSET,
        check_name=name,
        passed=outcome == "PASS",
        severity=dg.AssetCheckSeverity.ERROR if outcome == "ERROR" else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=None if outcome == "PASS" else f"{name} is off",
    )


@dg.asset(
    key=ASSET,
    check_specs=[
        dg.AssetCheckSpec("row_count", asset=ASSET),
        dg.AssetCheckSpec("freshness", asset=ASSET),
        dg.AssetCheckSpec("auc_within_baseline", asset=ASSET),
    ],
)
def scored(config: ChecksConfig) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        check_results=[
            _result("row_count", config.row_count, model_name="match_outcome", observed=12),
            _result("freshness", config.freshness),
            # Already alerted as a performance alert: the sensor leaves it alone.
            _result("auc_within_baseline", "ERROR", alerted_as="performance"),
        ]
    )


def materialize(instance: dg.DagsterInstance, **config: str) -> None:
    result = dg.materialize(
        [scored],
        instance=instance,
        run_config={"ops": {"monitoring__scored": {"config": config}}},
    )
    assert result.success  # failed checks do not fail the run


@pytest.fixture(params=["in_memory", "sqlite_run_sharded"])
def instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    if request.param == "in_memory":
        inst = dg.DagsterInstance.ephemeral()
    else:
        home = tmp_path / "dagster_home"
        home.mkdir()
        inst = dg.DagsterInstance.local_temp(str(home))
        assert inst.event_log_storage.is_run_sharded
    try:
        yield inst
    finally:
        inst.dispose()


def check_alerts(wh: Warehouse) -> list[dict[str, Any]]:
    return wh.query(
        "SELECT alert_id, model_name, metric, severity, status, observed, message, breach_days "
        "FROM mlops.ml_performance_alerts WHERE kind = 'asset_check' ORDER BY metric"
    )


def test_failed_checks_become_alerts_once(
    instance: dg.DagsterInstance,
    warehouse_resource: WarehouseResource,
    warehouse: Warehouse,
    webhook: WebhookServer,
):
    resources = {"warehouse": warehouse_resource}
    empty = tick(asset_check_failure_sensor, None, resources, instance)
    assert empty.skip_reason.skip_message == "no new asset check evaluations"
    assert check_alerts(warehouse) == []

    materialize(instance, row_count="WARN", freshness="ERROR")
    first = tick(asset_check_failure_sensor, empty.cursor, resources, instance)

    freshness, row_count = check_alerts(warehouse)
    assert (row_count["model_name"], row_count["severity"]) == ("match_outcome", "warning")
    assert row_count["observed"] == 12.0
    assert (freshness["model_name"], freshness["severity"]) == ("monitoring/scored", "critical")
    assert asset_key_from_message(freshness["message"]) == ("monitoring", "scored")
    assert "freshness is off" in freshness["message"]
    assert [e["event_type"] for e in events(warehouse)] == ["opened", "opened"]
    assert "2 opened" in first.skip_reason.skip_message

    # The same evaluations again: nothing new.
    second = tick(asset_check_failure_sensor, first.cursor, resources, instance)
    assert second.skip_reason.skip_message == "no new asset check evaluations"
    assert len(check_alerts(warehouse)) == 2 and len(events(warehouse)) == 2

    # A new failing run updates the same alerts; the warning that became an error escalates.
    materialize(instance, row_count="ERROR", freshness="ERROR")
    third = tick(asset_check_failure_sensor, second.cursor, resources, instance)
    freshness, row_count = check_alerts(warehouse)
    assert row_count["severity"] == "critical" and freshness["breach_days"] == 2
    assert [e["event_type"] for e in events(warehouse)] == ["opened", "opened", "escalated"]

    # Passing checks resolve them.
    materialize(instance, row_count="PASS", freshness="PASS")
    tick(asset_check_failure_sensor, third.cursor, resources, instance)
    assert {a["status"] for a in check_alerts(warehouse)} == {"resolved"}
    assert [e["event_type"] for e in events(warehouse)][3:] == ["resolved", "resolved"]

    # They go out through the same delivery path as every other alert.
    notify = notify_resources(warehouse_resource, webhook.url)
    tick(alert_notification_sensor, None, notify)
    heads = [body["blocks"][0]["text"]["text"] for body in webhook.accepted]
    assert len(heads) == 5
    assert "[WARNING] Asset check alert opened: row_count on match_outcome" in heads[0]
    assert "[CRITICAL] Asset check alert opened: freshness on monitoring/scored" in heads[1]
    assert "Asset check alert escalated: row_count" in heads[2]
    assert "http://dagster.internal:3000/assets/monitoring/scored" in json.dumps(webhook.accepted)
    assert SECRET_PATH not in json.dumps(webhook.accepted)
