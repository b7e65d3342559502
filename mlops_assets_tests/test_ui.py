"""After a real materialization, the webserver shows every asset in its group, the checks with
their results, the sensors and the schedules (asserted through its GraphQL API)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import dagster as dg
import pytest

from mlops_assets.defs.partitions import partition_key
from mlops_assets.resources import MLflowResource, NotifierResource, WarehouseResource
from mlops_assets_tests.test_webserver import (
    LOCATION,
    Webserver,
    make_dagster_home,
    running_webserver,
)

pytestmark = pytest.mark.slow

EXPECTED_GROUPS = {
    "training_dataset": "training",
    "training_run": "training",
    "training_baseline": "training",
    "production_predictions": "production",
    "production_metrics": "production",
    "performance_alerts": "production",
    "feature_drift_report": "drift",
    "ml_model_health_status": "lifecycle",
    "unified_model_lifecycle": "lifecycle",
    "unified_monitoring_alerts": "lifecycle",
    "feature_drift_with_training_context": "lifecycle",
}
EXPECTED_SENSORS = {
    "mlflow_buffer_flush_sensor",
    "alert_notification_sensor",
    "asset_check_failure_sensor",
}
EXPECTED_SCHEDULES = {
    "daily_monitoring_schedule": "0 6 * * *",
    "weekly_retraining_schedule": "0 3 * * 1",
    "metrics_freshness_schedule": "15 * * * *",
}

ASSETS_QUERY = """
query Assets {
  assetNodes {
    assetKey { path }
    groupName
    assetChecksOrError {
      __typename
      ... on AssetChecks {
        checks { name blocking executionForLatestMaterialization { status } }
      }
    }
  }
}
"""
MATERIALIZATIONS_QUERY = """
query Materializations($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(limit: 5) { runId } }
  }
}
"""
AUTOMATION_QUERY = """
query Automation($selector: RepositorySelector!) {
  sensorsOrError(repositorySelector: $selector) {
    __typename
    ... on Sensors { results { name sensorState { status } } }
  }
  schedulesOrError(repositorySelector: $selector) {
    __typename
    ... on Schedules { results { name cronSchedule scheduleState { status } } }
  }
}
"""


@pytest.fixture(scope="module")
def materialized_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webserver]:
    root = tmp_path_factory.mktemp("ui")
    dagster_home = make_dagster_home(root / "dagster_home", "telemetry:\n  enabled: false\n")
    home = root / "mlops_home"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MLOPS_") and k not in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME")
    }
    env["MLOPS_HOME"] = str(home)
    from mlops_assets.definitions import defs

    warehouse = WarehouseResource(home=str(home))
    resources = {
        "warehouse": warehouse,
        "mlflow": MLflowResource(warehouse=warehouse),
        "notifier": NotifierResource(),
    }
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        keys = ("training_dataset", "training_run", "training_baseline")
        dg.materialize(
            [defs.get_assets_def(dg.AssetKey(k)) for k in keys],
            resources=resources,
            instance=instance,
            run_config={
                "ops": {
                    "training_dataset": {"config": {"n_rows": 1500}},
                    "training_run": {"config": {"n_estimators": 30}},
                }
            },
        )
        day = (dt.date.today() - dt.timedelta(days=2)).isoformat()
        production = (
            "production_predictions",
            "production_metrics",
            "performance_alerts",
            "feature_drift_report",
        )
        dg.materialize(
            [defs.get_assets_def(dg.AssetKey(k)) for k in production],
            resources=resources,
            instance=instance,
            partition_key=partition_key(day, "match_outcome"),
            run_config={"ops": {"production_metrics": {"config": {"min_settled": 100}}}},
        )
    finally:
        instance.dispose()
    with running_webserver(dagster_home, env=env) as server:
        yield server


def test_every_asset_is_in_its_group(materialized_ui: Webserver):
    nodes = materialized_ui.graphql(ASSETS_QUERY)["assetNodes"]
    groups = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}
    assert {k: groups.get(k) for k in EXPECTED_GROUPS} == EXPECTED_GROUPS


def test_checks_show_their_latest_results(materialized_ui: Webserver):
    nodes = materialized_ui.graphql(ASSETS_QUERY)["assetNodes"]
    checks = {
        "/".join(n["assetKey"]["path"]): {
            c["name"]: c for c in n["assetChecksOrError"].get("checks", [])
        }
        for n in nodes
    }
    gate = checks["training_run"]["champion_gate"]
    assert gate["blocking"] is True
    assert gate["executionForLatestMaterialization"]["status"] == "SUCCEEDED"
    metric_checks = checks["production_metrics"]
    assert {"accuracy_within_baseline", "roi_within_baseline"} <= set(metric_checks)
    assert "yesterday_metrics_fresh" in metric_checks
    executed = metric_checks["accuracy_within_baseline"]["executionForLatestMaterialization"]
    assert executed["status"] in ("SUCCEEDED", "FAILED")
    drift = checks["feature_drift_report"]["no_dataset_drift"]
    assert drift["executionForLatestMaterialization"]["status"] in ("SUCCEEDED", "FAILED")


def test_materializations_are_visible(materialized_ui: Webserver):
    for key in ("training_run", "production_metrics", "feature_drift_report"):
        data = materialized_ui.graphql(MATERIALIZATIONS_QUERY, {"key": {"path": [key]}})
        asset = data["assetOrError"]
        assert asset["__typename"] == "Asset", (key, asset)
        assert len(asset["assetMaterializations"]) >= 1, key


def test_sensors_and_schedules_are_listed(materialized_ui: Webserver):
    selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
    data = materialized_ui.graphql(AUTOMATION_QUERY, {"selector": selector})
    sensors = {s["name"]: s for s in data["sensorsOrError"]["results"]}
    assert set(sensors) == EXPECTED_SENSORS
    assert all(s["sensorState"]["status"] == "RUNNING" for s in sensors.values())
    schedules = {s["name"]: s["cronSchedule"] for s in data["schedulesOrError"]["results"]}
    assert schedules == EXPECTED_SCHEDULES
