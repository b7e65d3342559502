"""The main job's whole story on PostgreSQL; `check_story` is shared with test_demo.py, which
runs the same story on the embedded default.

Real parts throughout: a real `mlflow server` that the demo starts, kills and restarts, a real
Dagster instance, and the real warehouse engine. Assertions are on outcomes a user would check.
"""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from mlops_assets.demo import run_demo
from mlops_assets.runtime import build_runtime
from mlops_assets.storage.tracking import LOCAL_RUN_TAG

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _story(home, dsn=None):
    lines: list[str] = []
    result = run_demo(home=str(home), postgres_dsn=dsn, echo=lines.append)
    runtime = build_runtime(home=str(home), backend="postgres" if dsn else None, dsn=dsn)
    return result, runtime.warehouse, "\n".join(lines)


def check_story(result, wh, text):
    first, outage = result.first_run, result.outage_run
    # 1. MLflow up: tracked at once.
    assert first.tracking_status == "TRACKED" and first.mlflow_run_id
    # Alerts fire only once drift is switched on, and some become critical.
    assert result.alerts, text
    assert all(a["first_seen"] >= result.drift_from for a in result.alerts), result.alerts
    assert any(a["severity"] == "critical" for a in result.alerts)
    assert all(result.day_levels[d] == "ok" for d in result.days if d < result.drift_from)
    assert result.day_levels[result.days[-1]] == "critical"

    # 2. MLflow down: the retrain finished on a local id and the breaker opened.
    assert outage.tracking_status == "PENDING" and outage.mlflow_run_id is None
    before = result.pending_before_replay
    # The retrain, and the monitoring run of the drift report of the day re-scored meanwhile.
    assert before["pending_runs"] == 2 and before["breaker"] == "open"
    assert before["training_runs"][0]["mlflow_run_id"] is None
    assert before["training_runs"][0]["tracking_status"] == "PENDING"

    # 3. MLflow back: the real id is in every table that holds the run.
    real = wh.query(
        "SELECT mlflow_run_id, mlflow_experiment_id, tracking_status, model_version "
        "FROM mlops.training_runs WHERE local_run_id = :id",
        {"id": outage.local_run_id},
    )[0]
    assert real["tracking_status"] == "TRACKED" and real["mlflow_run_id"]
    assert result.replayed == [real["mlflow_run_id"]]
    for table, id_column, local_column in (
        ("mlops.training_baselines", "baseline_mlflow_run_id", "local_run_id"),
        ("mlops.production_predictions", "mlflow_run_id", "training_local_run_id"),
        ("mlops.production_metrics", "mlflow_run_id", "training_local_run_id"),
        ("mlops.ml_feature_drift_detection", "baseline_mlflow_run_id", "baseline_local_run_id"),
    ):
        ids = {
            r["i"]
            for r in wh.query(
                f"SELECT DISTINCT {id_column} AS i FROM {table} WHERE {local_column} = :id",
                {"id": outage.local_run_id},
            )
        }
        assert ids == {real["mlflow_run_id"]}, (table, ids)
    health = wh.query("SELECT * FROM mlops.ml_model_health_status ORDER BY model_version")
    assert [h["pending_replay"] for h in health] == [False, False]
    assert health[-1]["active_mlflow_run_ids"] == f'["{real["mlflow_run_id"]}"]'
    assert {h["overall_status"] for h in health} <= {"CRITICAL", "WARNING"}

    # The two showcase queries return the demo's rows on this engine.
    trouble, critical = result.showcase.values()
    assert trouble and all(r["overall_status"] in ("CRITICAL", "WARNING") for r in trouble)
    degradations = [r["accuracy_degradation"] for r in trouble]
    assert degradations == sorted(degradations, reverse=True)
    assert critical and all(r["degradation_from_training_best"] > 5.0 for r in critical)
    assert all(r["mlflow_run_id"] in (first.mlflow_run_id, real["mlflow_run_id"]) for r in critical)

    # MLflow holds both runs exactly once, each tagged with its local id, and two versions.
    client = MlflowClient(tracking_uri=f"sqlite:///{result.home / 'mlflow-server' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mlops_assets")
    every_run = client.search_runs([experiment.experiment_id], max_results=1000)
    # Drift reports have monitoring runs of their own, each a child of a training run.
    monitoring = [r for r in every_run if r.data.tags.get("mlops.kind") == "monitoring"]
    runs = [r for r in every_run if r not in monitoring]
    assert sorted(r.data.tags[LOCAL_RUN_TAG] for r in runs) == sorted(
        [first.local_run_id, outage.local_run_id]
    )
    assert monitoring
    assert {r.data.tags["mlops.parent_local_run_id"] for r in monitoring} <= {
        first.local_run_id,
        outage.local_run_id,
    }
    replayed_run = client.get_run(real["mlflow_run_id"])
    assert replayed_run.info.status == "FINISHED"
    assert replayed_run.data.metrics["accuracy"] == pytest.approx(outage.metrics["accuracy"])
    history = client.get_metric_history(real["mlflow_run_id"], "valid_log_loss")
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps)) > 0
    versions = client.search_model_versions("name = 'match_outcome'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert {v.run_id for v in versions} == {first.mlflow_run_id, real["mlflow_run_id"]}


def test_story_on_postgres(mlops_home, monkeypatch, pg_dsn):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    result, wh, text = _story(mlops_home, pg_dsn)
    assert wh.engine == "postgres"
    check_story(result, wh, text)
