"""The demo end to end on the embedded default, judged by what it leaves behind.

Only outcomes that stay true as the story grows are asserted: the first training run is
tracked in MLflow with its params and metrics, the warehouse row and the baseline point at it,
the registered model is baselined on its registry version, every training run ends up with an
MLflow id, both models' partitions are on the instance, and the data stays in the given data
directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.settings import load_settings
from mlops_assets.storage.warehouse import DuckDBWarehouse, Warehouse, frame_from_parquet
from mlops_assets_tests.test_demo_story import MATCH, WINE, check_story

DEMO_MODELS = (MATCH, WINE)

TRAINING_PARAMS = {"n_estimators", "learning_rate", "num_leaves", "min_child_samples"}
HELD_OUT_METRICS = ("accuracy", "f1", "roc_auc")

# The demo runs once for the module and takes minutes (a local mlflow server, its production
# days, an outage with the breaker's recovery wait): allow more than the default 600 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the demo once for this module, with MLOPS_HOME pointing elsewhere (home wins)."""
    with pytest.MonkeyPatch.context() as mp:
        for key in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI"):
            mp.delenv(key, raising=False)
        for key in [k for k in os.environ if k.startswith("MLOPS_")]:
            mp.delenv(key)
        root = tmp_path_factory.mktemp("demo")
        env_home = root / "env-home"
        mp.setenv("MLOPS_HOME", str(env_home))
        home = root / "home"
        lines: list[str] = []

        from mlops_assets.demo import run_demo

        result = run_demo(home=str(home), echo=lines.append)
        settings = load_settings(home=str(home))
    return {
        "result": result,
        "home": home.resolve(),
        "env_home": env_home,
        "output": lines,
        "warehouse": DuckDBWarehouse(settings.embedded_path),
    }


def _first_run(demo: dict):
    run = demo["result"].first_run
    assert run is not None, "the demo returned no first training run"
    return run


def _mlflow_client_for(home: Path, run_id: str):
    """The MLflow store under the data directory that holds `run_id` (the demo's server keeps
    a sqlite backend there; where exactly may change)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    stores = sorted(home.rglob("mlflow.db"))
    assert stores, f"no MLflow sqlite store under {home}"
    for store in stores:
        client = MlflowClient(tracking_uri=f"sqlite:///{store}")
        try:
            return client, client.get_run(run_id)
        except MlflowException:
            continue
    raise AssertionError(f"MLflow run {run_id} is in none of {stores}")


def test_first_training_run_is_tracked(demo: dict):
    run = _first_run(demo)
    assert run.tracking_status == "TRACKED"
    assert run.mlflow_run_id
    wh: Warehouse = demo["warehouse"]
    rows = wh.query(
        "SELECT model_name, mlflow_run_id, mlflow_experiment_id, tracking_status, status, "
        "accuracy, f1, roc_auc FROM mlops.training_runs WHERE local_run_id = :id",
        {"id": run.local_run_id},
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["model_name"] == run.model_name
    assert row["mlflow_run_id"] == run.mlflow_run_id
    assert row["mlflow_experiment_id"] == run.mlflow_experiment_id
    assert row["tracking_status"] == "TRACKED"
    assert row["status"] == "FINISHED"
    for metric in HELD_OUT_METRICS:
        assert row[metric] == pytest.approx(run.metrics[metric])
        assert 0.0 <= row[metric] <= 1.0


def test_mlflow_run_has_the_params_and_metrics(demo: dict):
    run = _first_run(demo)
    client, mlflow_run = _mlflow_client_for(demo["home"], run.mlflow_run_id)
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.info.experiment_id == run.mlflow_experiment_id
    assert set(mlflow_run.data.params) >= TRAINING_PARAMS
    row = demo["warehouse"].query(
        "SELECT accuracy, f1, roc_auc, params_json FROM mlops.training_runs "
        "WHERE local_run_id = :id",
        {"id": run.local_run_id},
    )[0]
    for metric in HELD_OUT_METRICS:
        assert mlflow_run.data.metrics[metric] == pytest.approx(row[metric])
    params = json.loads(row["params_json"])
    for name in TRAINING_PARAMS:
        assert mlflow_run.data.params[name] == str(params[name])
    # The model was registered from this run.
    if run.model_version:
        version = client.get_model_version(run.model_name, run.model_version)
        assert version.run_id == run.mlflow_run_id


def test_baseline_has_a_reference_sample_for_the_run(demo: dict):
    run = _first_run(demo)
    rows = demo["warehouse"].query(
        "SELECT baseline_mlflow_run_id, metrics_json, features_json, reference_rows, "
        "reference_sample, n_validation FROM mlops.training_baselines WHERE local_run_id = :id",
        {"id": run.local_run_id},
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["baseline_mlflow_run_id"] == run.mlflow_run_id
    assert row["reference_rows"] > 0
    assert row["n_validation"] > 0
    reference = frame_from_parquet(row["reference_sample"])
    assert len(reference) == row["reference_rows"]
    assert set(json.loads(row["features_json"])) <= set(reference.columns)
    metrics = json.loads(row["metrics_json"])
    assert metrics["accuracy"] == pytest.approx(run.metrics["accuracy"])


def test_every_training_run_ends_up_in_mlflow(demo: dict):
    rows = demo["warehouse"].query(
        "SELECT local_run_id, mlflow_run_id, tracking_status FROM mlops.training_runs"
    )
    assert rows
    assert [r for r in rows if not r["mlflow_run_id"] or r["tracking_status"] != "TRACKED"] == []
    assert len({r["mlflow_run_id"] for r in rows}) == len(rows)


def test_dagster_instance_under_home_has_the_materializations(demo: dict):
    instance = dg.DagsterInstance.from_config(str(demo["home"] / "dagster"))
    try:
        for key in ("training_dataset", "training_run", "training_baseline"):
            partitions = instance.get_materialized_partitions(dg.AssetKey(key))
            assert partitions == set(DEMO_MODELS), f"{key} on the demo's instance: {partitions}"
        assert set(instance.get_dynamic_partitions("models")) == set(DEMO_MODELS)
        materialized = instance.get_materialized_partitions(dg.AssetKey("production_metrics"))
        assert {key.split("|")[-1] for key in materialized} == set(DEMO_MODELS)
    finally:
        instance.dispose()


def test_the_registered_model_is_baselined_on_its_registry_version(demo: dict):
    wh: Warehouse = demo["warehouse"]
    run = wh.query(
        "SELECT local_run_id, mlflow_run_id, model_version, origin, task "
        "FROM mlops.training_runs WHERE model_name = 'wine_cultivar'"
    )
    assert len(run) == 1 and run[0]["origin"] == "registered" and run[0]["task"] == "multiclass"
    baseline = wh.query(
        "SELECT baseline_mlflow_run_id, model_version, metrics_json FROM "
        "mlops.training_baselines WHERE local_run_id = :id",
        {"id": run[0]["local_run_id"]},
    )
    assert len(baseline) == 1
    assert baseline[0]["baseline_mlflow_run_id"] == run[0]["mlflow_run_id"]
    assert baseline[0]["model_version"] == run[0]["model_version"]
    assert {"accuracy", "f1_macro", "log_loss"} <= set(json.loads(baseline[0]["metrics_json"]))


def test_data_stays_in_the_given_home(demo: dict):
    assert (demo["home"] / "warehouse.duckdb").is_file()
    assert not demo["env_home"].exists(), "the demo wrote into MLOPS_HOME instead of --home"
    assert any(str(demo["home"]) in line for line in demo["output"])


def test_whole_story_outcomes(demo: dict):
    """Alerts only once drift starts, pending ids before replay, real ids after, counts in MLflow,
    and the two showcase queries on this engine."""
    check_story(demo["result"], demo["warehouse"], "\n".join(demo["output"]))
    text = "\n".join(demo["output"])
    assert "MLflow goes down" in text and "flush sensor tick: replayed" in text


def test_status_command_prints_the_health_table(demo: dict, capsys: pytest.CaptureFixture):
    from mlops_assets.cli import main

    assert main(["--home", str(demo["home"]), "status"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "match_outcome" in line]
    assert len(lines) == 2, out  # versions 1 and 2
    assert "CRITICAL" in lines[0]
    assert demo["result"].first_run.mlflow_run_id in lines[0]
    wine = [line for line in out.splitlines() if "wine_cultivar" in line]
    assert len(wine) == 1, out
    assert "CRITICAL" in wine[0] or "WARNING" in wine[0]
