"""feature_drift_report on a quiet day and on a day with feature drift (fixed days, real model,
traffic written into the contract's sources by the serving system)."""

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.lib.contract import ModelCatalog
from mlops_assets.lib.demo_data import FEATURES
from mlops_assets_tests.production.conftest import MODEL

# What DriftSchedule.feature_drift_from moves (mlops_assets.lib.demo_data docstring).
DRIFTED = {"home_goals_avg", "away_goals_avg", "rest_days_diff", "league"}
QUIET_DAY = "2026-02-20"
DRIFT_DAY = "2026-02-24"  # drift starts 02-21 and is at full strength from 02-23


def _drift_rows(platform, day: str) -> dict[str, dict]:
    rows = platform.wh.query(
        "SELECT * FROM mlops.ml_feature_drift_detection WHERE model_name = :m "
        "AND partition_date = :d",
        {"m": MODEL, "d": dt.date.fromisoformat(day)},
    )
    return {r["feature"]: r for r in rows}


def _report(platform, day: str, engine: str | None = None) -> tuple[dict, dg.AssetCheckEvaluation]:
    """Materialize the day's report with the contract's engine, or a variant using `engine`."""
    catalog = None
    if engine is not None:
        contract = platform.catalog.get(MODEL)
        variant = contract.model_copy(
            update={"drift": contract.drift.model_copy(update={"engine": engine})}
        )
        catalog = ModelCatalog([variant])
    # The drift alert is folded by performance_alerts, from the rows the report stored.
    result = platform.materialize(
        ["feature_drift_report", "performance_alerts"], day=day, catalog=catalog
    )
    metadata = {}
    for event in result.get_asset_materialization_events():
        metadata[event.materialization.asset_key.to_user_string()] = {
            k: v.value for k, v in event.materialization.metadata.items()
        }
    [check] = result.get_asset_check_evaluations()
    report = metadata["feature_drift_report"]
    return report | {"alert_changes": metadata["performance_alerts"]["drift_alert_changes"]}, check


@pytest.fixture(scope="module")
def quiet(platform):
    platform.serve(QUIET_DAY, n_rows=1000)
    platform.materialize(["production_predictions"], day=QUIET_DAY)
    metadata, check = _report(platform, QUIET_DAY)
    return metadata, check, _drift_rows(platform, QUIET_DAY)


@pytest.fixture(scope="module")
def drifted(platform):
    platform.serve(DRIFT_DAY, n_rows=2000, feature_drift_from="2026-02-21")
    platform.materialize(["production_predictions"], day=DRIFT_DAY)
    metadata, check = _report(platform, DRIFT_DAY)  # the contract's default engine: scipy
    return metadata, check, _drift_rows(platform, DRIFT_DAY)


def test_a_quiet_day_raises_no_drift_alert(platform, quiet):
    metadata, check, rows = quiet
    assert metadata["dataset_verdict"] in ("no_drift", "possible_drift")
    assert set(rows) == set(FEATURES)
    assert {r["dataset_verdict"] for r in rows.values()} == {metadata["dataset_verdict"]}
    assert not [f for f, r in rows.items() if r["verdict"] == "drift"]
    assert metadata["share_drifted"] == 0.0
    assert not [c for c in metadata["alert_changes"] if c["event"] in ("opened", "escalated")]
    assert platform.wh.query(
        "SELECT count(*) AS n FROM mlops.ml_performance_alerts WHERE model_name = :m "
        "AND kind = 'drift' AND first_seen = :d",
        {"m": MODEL, "d": dt.date.fromisoformat(QUIET_DAY)},
    ) == [{"n": 0}]
    assert check.passed is (metadata["dataset_verdict"] == "no_drift")


def test_feature_drift_flags_the_drifted_features(platform, drifted):
    metadata, check, rows = drifted
    top = [t["feature"] for t in metadata["top_drifting"]]
    assert set(top[: len(DRIFTED)]) == DRIFTED, metadata["top_drifting"]
    assert {f for f, r in rows.items() if r["verdict"] == "drift"} == DRIFTED
    # 4 of 12 features drifted: below the dataset share of 0.5, so "possible drift".
    assert metadata["share_drifted"] == pytest.approx(len(DRIFTED) / len(FEATURES))
    assert metadata["dataset_verdict"] == "possible_drift"
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["verdict"].value == "possible_drift"
    for row in rows.values():
        assert row["baseline_mlflow_run_id"] == platform.run.mlflow_run_id
        assert row["baseline_local_run_id"] == platform.run.local_run_id
        assert row["model_version"] == platform.run.model_version
        assert row["n_current"] == 2000
    assert metadata["baseline_mlflow_run_id"] == platform.run.mlflow_run_id
    # Where the partition's time went, from the first read to the rows written.
    seconds = metadata["seconds"]
    assert list(seconds) == [
        "read_reference", "read_and_test", "test", "impact", "render", "log_report", "write",
        "total",
    ]  # fmt: skip
    assert seconds["total"] == pytest.approx(sum(seconds.values()) - seconds["total"], abs=0.01)
    assert seconds["impact"] > 0  # a drifted day's impact ranking scores the model
    # Some features truly drifted: a warning-level drift alert for the model.
    alerts = platform.wh.query(
        "SELECT metric, severity, status, first_seen FROM mlops.ml_performance_alerts "
        "WHERE model_name = :m AND kind = 'drift'",
        {"m": MODEL},
    )
    assert alerts == [
        {
            "metric": "dataset_drift",
            "severity": "warning",
            "status": "open",
            "first_seen": dt.date.fromisoformat(DRIFT_DAY),
        }
    ]


def test_html_report_is_self_contained_and_logged_to_its_own_monitoring_run(
    platform, drifted, tmp_path
):
    from mlflow.tracking import MlflowClient

    metadata, _, rows = drifted
    name = f"drift_{DRIFT_DAY}.html"
    assert metadata["logged_to_mlflow"] == "yes"
    # The report lives in MLflow, not in the data directory of the host that computed it.
    assert not (platform.home / "reports").exists()
    uri = metadata["report"]
    assert {r["report_path"] for r in rows.values()} == {uri}
    import mlflow.artifacts

    html = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(tmp_path / "via_uri"), tracking_uri=platform.tracking_uri
        )
    ).read_text()
    assert "<svg" in html and DRIFT_DAY in html
    lowered = html.lower()
    for external in ("<script src=", "<script", "http", "<link", "@import", "url("):
        assert external not in lowered, external

    # A monitoring run of its own, child of the training run, holding only this day's file;
    # the training run is left finished and gets no report.
    client = MlflowClient(tracking_uri=platform.tracking_uri)
    training = client.get_run(platform.run.mlflow_run_id)
    assert training.info.status == "FINISHED"
    assert "drift_reports" not in {a.path for a in client.list_artifacts(training.info.run_id)}
    monitoring = client.search_runs(
        [training.info.experiment_id],
        filter_string=f"tags.`mlops.kind` = 'monitoring' and "
        f"tags.`mlops.parent_local_run_id` = '{platform.run.local_run_id}' and "
        f"tags.`mlops.monitoring_day` = '{DRIFT_DAY}'",
    )
    assert len(monitoring) == 1
    assert monitoring[0].data.tags["mlflow.parentRunId"] == training.info.run_id
    logged = [a.path for a in client.list_artifacts(monitoring[0].info.run_id)]
    assert uri == f"runs:/{monitoring[0].info.run_id}/{name}"
    assert logged == [name]
    copy = client.download_artifacts(monitoring[0].info.run_id, logged[0], str(tmp_path))
    assert Path(copy).read_text() == html


def test_the_contract_engine_is_scipy_and_alibi_gives_its_p_values_and_verdicts(platform, drifted):
    assert platform.catalog.get(MODEL).drift.engine == "scipy"
    scipy_metadata, _, scipy_rows = drifted
    alibi_metadata, _ = _report(platform, DRIFT_DAY, engine="alibi")
    alibi_rows = _drift_rows(platform, DRIFT_DAY)
    assert set(scipy_rows) == set(alibi_rows) == set(FEATURES)
    for feature, alibi in alibi_rows.items():
        scipy = scipy_rows[feature]
        # alibi-detect keeps p-values as float32; that rounding is the only difference.
        assert scipy["p_value"] == pytest.approx(alibi["p_value"], abs=1e-6), feature
        assert scipy["p_value_adjusted"] == pytest.approx(alibi["p_value_adjusted"], abs=1e-6)
        assert scipy["statistic"] == pytest.approx(alibi["statistic"], rel=1e-6), feature
        assert scipy["verdict"] == alibi["verdict"], feature
    assert alibi_metadata["dataset_verdict"] == scipy_metadata["dataset_verdict"]
    assert alibi_metadata["share_drifted"] == scipy_metadata["share_drifted"]
    # Re-running the day replaced its rows and did not count the day twice for the alert.
    assert not [c for c in alibi_metadata["alert_changes"] if c["event"] is not None]


def test_a_day_without_predictions_has_no_drift_verdict(platform):
    day = "2026-02-27"  # nothing was served for this day
    metadata, check = _report(platform, day)
    assert metadata["dataset_verdict"] == "no_verdict"
    assert metadata["rows_current"] == 0
    assert check.passed is True
    assert metadata["alert_changes"] == []


def test_drifted_features_are_ranked_by_what_their_shift_costs(platform, drifted):
    metadata, _, rows = drifted
    assert metadata["impact_ranking"] == "by estimated accuracy recovered"
    impacts = {f: r["impact"] for f, r in rows.items() if r["impact"] is not None}
    # Every drifted feature has an impact; a feature that did not move has none.
    assert set(impacts) >= DRIFTED
    assert all(rows[f]["impact"] is None for f in rows if rows[f]["verdict"] == "no_drift")
    ranked = [t["feature"] for t in metadata["top_drifting"] if t["impact"] is not None]
    assert ranked == sorted(ranked, key=lambda f: -impacts[f])
    message = platform.wh.query(
        "SELECT message FROM mlops.ml_performance_alerts WHERE model_name = :m AND kind = 'drift'",
        {"m": MODEL},
    )[0]["message"]
    costliest = sorted(impacts, key=lambda f: -impacts[f])[0]
    assert "costliest shifts: " + costliest in message
