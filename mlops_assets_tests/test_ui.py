"""After a real materialization, the webserver shows every asset in its group, the checks with
their results, the sensors and the schedules (asserted through its GraphQL API)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator

import dagster as dg
import pytest

from mlops_assets import demo_serving as serving
from mlops_assets.defs.partitions import MODELS, partition_key
from mlops_assets.defs.production.assets import checked_metrics
from mlops_assets.lib import demo_data
from mlops_assets.platform import catalog_of, demo_models, platform_definitions
from mlops_assets.resources import MLflowResource, NotifierResource, WarehouseResource
from mlops_assets_tests.test_webserver import (
    LOCATION,
    Webserver,
    make_dagster_home,
    running_webserver,
)

pytestmark = [pytest.mark.slow, pytest.mark.mlflow_server]
ASSETS = platform_definitions(demo_models())

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
    "inference_log_sensor",
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
CHECK_EXECUTIONS_QUERY = """
query CheckExecutions($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 20) {
    status
    evaluation {
      success
      metadataEntries { label ... on TextMetadataEntry { text } }
    }
  }
}
"""
PARTITIONS_QUERY = """
query Partitions($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode { partitionKeysByDimension { name partitionKeys } }
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


# The checks that every production_metrics partition reports: one per metric that one of
# the demo's models monitors (not one per metric any task could monitor).
METRIC_CHECKS = {f"{m}_within_baseline" for m in checked_metrics(catalog_of([demo_models()]))}
DEMO_MODELS = (serving.MATCH, serving.WINE)
DAY = (dt.date.today() - dt.timedelta(days=2)).isoformat()


def _materialize_the_demo_models(instance: dg.DagsterInstance, home, tracking_uri: str) -> None:
    """Both demo models trained (match_outcome here, wine_cultivar registered by its team's
    script), one day of traffic served and labelled, and the day monitored for both, with the
    partitions the inference_log_sensor asks for; wine_cultivar's run last."""
    from mlops_assets.demo import PRODUCTION, TRAINING, _match_predictor, _pick_up, demo_catalog

    warehouse = WarehouseResource(home=str(home))
    mlflow_resource = MLflowResource(warehouse=warehouse, tracking_uri=tracking_uri)
    catalog = demo_catalog()
    resources = {
        "warehouse": warehouse,
        "mlflow": mlflow_resource,
        "notifier": NotifierResource(),
        "models": catalog,
    }
    wh = warehouse.get()
    day = dt.date.fromisoformat(DAY)
    serving.load_match_history(wh, end=day - dt.timedelta(days=1), n_rows=1500)
    _, wine_model = serving.train_and_register_wine(tracking_uri, wh)
    instance.add_dynamic_partitions(MODELS.name, list(DEMO_MODELS))

    def materialize(keys, partition):
        return dg.materialize(
            [ASSETS.get_assets_def(dg.AssetKey(k)) for k in keys],
            resources=resources,
            instance=instance,
            partition_key=partition,
        )

    trained = {name: materialize(TRAINING, name) for name in DEMO_MODELS}
    first = trained[serving.MATCH].output_for_node("training_run")
    predictor = _match_predictor(mlflow_resource.runtime(), first, catalog)
    traffic = serving.serve_matches(wh, predictor, day, drift=demo_data.DriftSchedule())
    serving.settle_matches(wh, traffic)
    served = serving.serve_wine(home, wine_model, day, drift_from=None)
    serving.label_wine(home, served, day)
    requests, _ = _pick_up(instance, resources, catalog, None)
    requested = {str(r.partition_key) for r in requests}
    assert requested == {str(partition_key(DAY, name)) for name in DEMO_MODELS}, requested
    for name in DEMO_MODELS:
        materialize(PRODUCTION, partition_key(DAY, name))


@pytest.fixture(scope="module")
def materialized_ui(tmp_path_factory: pytest.TempPathFactory, mlflow_server) -> Iterator[Webserver]:
    root = tmp_path_factory.mktemp("ui")
    dagster_home = make_dagster_home(root / "dagster_home", "telemetry:\n  enabled: false\n")
    home = root / "mlops_home"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MLOPS_") and k not in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME")
    }
    env["MLOPS_HOME"] = str(home)
    mlflow_server.start()
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        _materialize_the_demo_models(instance, home, mlflow_server.uri)
    finally:
        instance.dispose()
    with running_webserver(dagster_home, env=env) as server:
        yield server


def _check_evaluations(server: Webserver, check: str, model: str) -> list[dict]:
    """The evaluations of a production_metrics check for `model` on DAY, newest first (found
    by the model and day the check reports in its metadata)."""
    data = server.graphql(
        CHECK_EXECUTIONS_QUERY, {"key": {"path": ["production_metrics"]}, "check": check}
    )
    evaluations = [e["evaluation"] for e in data["assetCheckExecutions"] if e["evaluation"]]
    return [e for e in evaluations if _text(e, "model_name") == model and _text(e, "day") == DAY]


def _text(evaluation: dict, label: str) -> str | None:
    for entry in evaluation["metadataEntries"]:
        if entry["label"] == label:
            return entry.get("text")
    return None


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
    quarantine = checks["production_predictions"]["no_quarantined_rows"]
    assert quarantine["executionForLatestMaterialization"]["status"] == "SUCCEEDED"
    metric_checks = checks["production_metrics"]
    assert set(metric_checks) == METRIC_CHECKS | {"yesterday_metrics_fresh"}
    drift = checks["feature_drift_report"]["no_dataset_drift"]
    assert drift["executionForLatestMaterialization"]["status"] in ("SUCCEEDED", "FAILED")


@pytest.mark.parametrize(
    ("model", "monitored", "not_monitored"),
    [
        (serving.MATCH, ["accuracy", "roc_auc", "roi"], ["f1_macro"]),
        (serving.WINE, ["accuracy", "f1_macro"], ["roc_auc", "roi"]),
    ],
)
def test_metric_checks_judge_monitored_metrics_and_pass_the_others(
    materialized_ui: Webserver, model: str, monitored: list[str], not_monitored: list[str]
):
    for metric in monitored:
        evaluations = _check_evaluations(materialized_ui, f"{metric}_within_baseline", model)
        assert len(evaluations) == 1, (model, metric, evaluations)
        # Judged: the verdict carries a level, and no "not monitored" note.
        assert _text(evaluations[0], "level") is not None, (model, metric, evaluations)
        assert _text(evaluations[0], "status") is None
    task = "binary" if model == serving.MATCH else "multiclass"
    for metric in not_monitored:
        evaluations = _check_evaluations(materialized_ui, f"{metric}_within_baseline", model)
        assert len(evaluations) == 1, (model, metric, evaluations)
        assert evaluations[0]["success"] is True
        assert _text(evaluations[0], "status") == f"not monitored for {model} ({task})"
    # No demo model monitors a regression metric: no check for it at all.
    assert "mae_within_baseline" not in METRIC_CHECKS


def test_partitions_include_the_demo_models(materialized_ui: Webserver):
    data = materialized_ui.graphql(PARTITIONS_QUERY, {"key": {"path": ["training_run"]}})
    node = data["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    keys = {k for d in node["partitionKeysByDimension"] for k in d["partitionKeys"]}
    assert keys == set(DEMO_MODELS)
    data = materialized_ui.graphql(PARTITIONS_QUERY, {"key": {"path": ["production_metrics"]}})
    dimensions = {
        d["name"]: set(d["partitionKeys"])
        for d in data["assetNodeOrError"]["partitionKeysByDimension"]
    }
    assert dimensions["model"] == set(DEMO_MODELS)
    assert DAY in dimensions["date"]


def test_materializations_are_visible(materialized_ui: Webserver):
    for key in ("training_run", "production_metrics", "feature_drift_report"):
        data = materialized_ui.graphql(MATERIALIZATIONS_QUERY, {"key": {"path": [key]}})
        asset = data["assetOrError"]
        assert asset["__typename"] == "Asset", (key, asset)
        # One materialization per demo model.
        assert len(asset["assetMaterializations"]) >= len(DEMO_MODELS), key


def test_sensors_and_schedules_are_listed(materialized_ui: Webserver):
    selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
    data = materialized_ui.graphql(AUTOMATION_QUERY, {"selector": selector})
    sensors = {s["name"]: s for s in data["sensorsOrError"]["results"]}
    assert set(sensors) == EXPECTED_SENSORS
    assert all(s["sensorState"]["status"] == "RUNNING" for s in sensors.values())
    schedules = {s["name"]: s["cronSchedule"] for s in data["schedulesOrError"]["results"]}
    assert schedules == EXPECTED_SCHEDULES
