"""The main job's whole story on PostgreSQL; `check_story` is shared with test_demo.py, which
runs the same story on the embedded default. Two models: match_outcome (binary, trained here)
and wine_cultivar (multiclass, registered in MLflow by its team's plain script).

Real parts throughout: a real `mlflow server` that the demo starts, kills and restarts, a real
Dagster instance, and the real warehouse engine. Assertions are on outcomes a user would check.
"""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from mlops_assets.demo import DEMO_DAYS, run_demo
from mlops_assets.runtime import build_runtime
from mlops_assets.storage.tracking import LOCAL_RUN_TAG

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _story(home, dsn=None):
    lines: list[str] = []
    result = run_demo(home=str(home), postgres_dsn=dsn, echo=lines.append)
    runtime = build_runtime(home=str(home), backend="postgres" if dsn else None, dsn=dsn)
    return result, runtime.warehouse, "\n".join(lines)


MATCH, WINE = "match_outcome", "wine_cultivar"


def _runs(wh, model: str) -> list[dict]:
    return wh.query(
        "SELECT local_run_id, model_version, mlflow_run_id, tracking_status, origin, "
        "started_at FROM mlops.training_runs WHERE model_name = :m ORDER BY started_at",
        {"m": model},
    )


def check_story(result, wh, text):
    first, outage = result.first_run, result.outage_run
    # 1. MLflow up: both models trained (match_outcome here, wine_cultivar resolved from the
    # registry its team's script wrote to), both tracked at once.
    assert first.model_name == MATCH
    assert first.tracking_status == "TRACKED" and first.mlflow_run_id
    wine_runs = _runs(wh, WINE)
    assert len(wine_runs) == 1, wine_runs
    wine = wine_runs[0]
    assert wine["origin"] == "registered" and wine["tracking_status"] == "TRACKED"
    assert wine["mlflow_run_id"] and wine["model_version"]
    assert [r["origin"] for r in _runs(wh, MATCH)] == ["trained", "trained"]

    # Both monitored every one of the demo's days.
    monitored = {
        r["model_name"]: r["n"]
        for r in wh.query(
            "SELECT model_name, count(DISTINCT metric_date) AS n FROM mlops.production_metrics "
            "GROUP BY model_name"
        )
    }
    assert monitored == {MATCH: DEMO_DAYS, WINE: DEMO_DAYS}, monitored
    assert len(result.days) == DEMO_DAYS
    for model in (MATCH, WINE):
        levels = result.day_levels[model]
        assert set(levels) == set(result.days), model
        # Nothing before the drift; the last day is critical for both.
        assert all(levels[d] == "ok" for d in result.days if d < result.drift_from), (
            model,
            levels,
        )
        assert levels[result.days[-2]] == "critical", (model, levels)
    # The last day's labels are pending: its metrics are estimated, said so.
    estimated = wh.query(
        "SELECT DISTINCT model_name FROM mlops.production_metrics "
        "WHERE metric_date = :d AND basis = 'estimated'",
        {"d": result.days[-1]},
    )
    assert {r["model_name"] for r in estimated} == {MATCH, WINE}
    assert "estimated" in text
    # An estimate alone may warn but not page: the stored level is capped (the default cap,
    # warning) where the warehouse, the health table and the story show it.
    capped = wh.query(
        "SELECT model_name, metric, level, note FROM mlops.production_metrics "
        "WHERE basis = 'estimated' AND level = 'critical'"
    )
    assert capped == [], capped

    # Alerts fire for both models only once drift is switched on, some critical, each
    # attributed to the version that was serving when it was raised.
    assert result.alerts, text
    assert {a["model_name"] for a in result.alerts} == {MATCH, WINE}, result.alerts
    assert all(a["first_seen"] >= result.drift_from for a in result.alerts), result.alerts
    assert any(a["severity"] == "critical" for a in result.alerts)
    in_service = {MATCH: first.model_version, WINE: wine["model_version"]}
    for alert in result.alerts:
        assert alert["model_version"] == in_service[alert["model_name"]], alert

    # 2. MLflow down: the retrain finished on a local id and the breaker opened.
    assert outage.model_name == MATCH
    assert outage.tracking_status == "PENDING" and outage.mlflow_run_id is None
    before = result.pending_before_replay
    # The retrain, and the monitoring run of the drift report of the day re-scored meanwhile.
    assert before["pending_runs"] == 2 and before["breaker"] == "open"
    assert before["training_runs"][0]["mlflow_run_id"] is None
    assert before["training_runs"][0]["tracking_status"] == "PENDING"

    # 3. MLflow back: the real id is in every table that holds the run, and no training run
    # of either model is left with only a local id.
    real = wh.query(
        "SELECT mlflow_run_id, mlflow_experiment_id, tracking_status, model_version "
        "FROM mlops.training_runs WHERE local_run_id = :id",
        {"id": outage.local_run_id},
    )[0]
    assert real["tracking_status"] == "TRACKED" and real["mlflow_run_id"]
    assert result.replayed == [real["mlflow_run_id"]]
    local_only = wh.query(
        "SELECT model_name, local_run_id FROM mlops.training_runs "
        "WHERE mlflow_run_id IS NULL OR tracking_status <> 'TRACKED'"
    )
    assert local_only == []
    for table, id_column, local_column in (
        ("mlops.training_baselines", "baseline_mlflow_run_id", "local_run_id"),
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

    # After the retrain, match_outcome's open alerts all belong to the version in service;
    # version 1's were resolved as superseded and stay attributed to version 1.
    match_alerts = wh.query(
        "SELECT model_version, training_local_run_id, status, message "
        "FROM mlops.ml_performance_alerts WHERE model_name = :m",
        {"m": MATCH},
    )
    still_open = [a for a in match_alerts if a["status"] != "resolved"]
    assert all(a["training_local_run_id"] == outage.local_run_id for a in still_open), still_open
    old = [a for a in match_alerts if a["training_local_run_id"] == first.local_run_id]
    assert old, match_alerts
    for alert in old:
        assert alert["status"] == "resolved" and "superseded" in alert["message"], alert
        assert alert["model_version"] == first.model_version, alert

    # Health rows for both models: match_outcome's two versions, wine_cultivar's one.
    health = wh.query(
        "SELECT * FROM mlops.ml_model_health_status ORDER BY model_name, model_version"
    )
    by_model = {m: [h for h in health if h["model_name"] == m] for m in (MATCH, WINE)}
    assert len(by_model[MATCH]) == 2 and len(by_model[WINE]) == 1, health
    assert [h["pending_replay"] for h in health] == [False] * len(health)
    assert by_model[MATCH][-1]["active_mlflow_run_ids"] == f'["{real["mlflow_run_id"]}"]'
    assert by_model[WINE][0]["active_mlflow_run_ids"] == f'["{wine["mlflow_run_id"]}"]'
    assert {h["overall_status"] for h in by_model[MATCH]} <= {"CRITICAL", "WARNING"}
    assert by_model[WINE][0]["overall_status"] in ("CRITICAL", "WARNING")

    # The two showcase queries return the demo's rows on this engine.
    trouble, critical = result.showcase.values()
    assert trouble and all(r["overall_status"] in ("CRITICAL", "WARNING") for r in trouble)
    degradations = [r["accuracy_degradation"] for r in trouble]
    assert degradations == sorted(degradations, reverse=True)
    assert critical and all(r["degradation_from_training_best"] > 5.0 for r in critical)
    served_runs = (first.mlflow_run_id, real["mlflow_run_id"], wine["mlflow_run_id"])
    assert all(r["mlflow_run_id"] in served_runs for r in critical)

    # MLflow holds both runs trained here exactly once, each tagged with its local id, and
    # two match_outcome versions; the wine team's own registration is untouched.
    stores = sorted(result.home.rglob("mlflow.db"))
    assert len(stores) == 1, stores
    client = MlflowClient(tracking_uri=f"sqlite:///{stores[0]}")
    experiment = client.get_experiment_by_name("mlops_assets")
    every_run = client.search_runs([experiment.experiment_id], max_results=1000)
    # Drift reports have monitoring runs of their own, each a child of a training run.
    monitoring = [r for r in every_run if r.data.tags.get("mlops.kind") == "monitoring"]
    runs = [r for r in every_run if r not in monitoring]
    assert sorted(r.data.tags[LOCAL_RUN_TAG] for r in runs) == sorted(
        [first.local_run_id, outage.local_run_id]
    )
    assert monitoring
    # Monitoring runs of the registered wine model hang under its registry run (the platform
    # keys that run per declaration: one registered version may be declared twice).
    assert {r.data.tags["mlops.parent_local_run_id"] for r in monitoring} <= {
        first.local_run_id,
        outage.local_run_id,
        wine["local_run_id"],
    }
    wine_monitoring = [r for r in monitoring if r.data.tags["mlops.model_name"] == WINE]
    assert wine_monitoring
    assert {r.data.tags["mlflow.parentRunId"] for r in wine_monitoring} == {wine["mlflow_run_id"]}
    replayed_run = client.get_run(real["mlflow_run_id"])
    assert replayed_run.info.status == "FINISHED"
    assert replayed_run.data.metrics["accuracy"] == pytest.approx(outage.metrics["accuracy"])
    # Every buffered metric reached MLflow exactly once.
    for key in replayed_run.data.metrics:
        assert len(client.get_metric_history(real["mlflow_run_id"], key)) == 1, key
    versions = client.search_model_versions(f"name = '{MATCH}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert {v.run_id for v in versions} == {first.mlflow_run_id, real["mlflow_run_id"]}
    wine_versions = client.search_model_versions(f"name = '{WINE}'")
    assert [(str(v.version), v.run_id) for v in wine_versions] == [
        (wine["model_version"], wine["mlflow_run_id"])
    ]
    champion = client.get_model_version_by_alias(WINE, "champion")
    assert str(champion.version) == wine["model_version"]


def test_story_on_postgres(mlops_home, monkeypatch, pg_dsn):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    result, wh, text = _story(mlops_home, pg_dsn)
    assert wh.engine == "postgres"
    check_story(result, wh, text)
