"""production_predictions, production_metrics (with its checks) and performance_alerts, on the
real model trained once by the package fixture, for fixed days.

Decision recorded here (test_prediction_from_an_unknown_version_is_scored_with_the_day):
production_metrics judges every prediction row of the day against the *active* model's
baseline and stamps the metric rows with the active model's version and run; the
model_version column of the inference log is not used to filter. A row from a version that
is not in mlops.training_runs is therefore scored with the day, and nothing crashes.
"""

import datetime as dt
import math

import dagster as dg
import pytest

from mlops_assets.cli import main
from mlops_assets.defs.partitions import MODELS
from mlops_assets.defs.production.assets import MONITORED
from mlops_assets.lib.metrics import METRICS
from mlops_assets_tests.production.conftest import (
    MODEL,
    Platform,
    traffic,
    unique_model,
    write_levels,
)

PREDICTION_COLUMNS = (
    "prediction_date, model_name, model_version, training_local_run_id, mlflow_run_id, "
    "features_json, prediction, odds, outcome, predicted_at, settled_at"
)


def _date(day: str) -> dt.date:
    return dt.date.fromisoformat(day)


def _predictions(platform: Platform, day: str, model: str = MODEL) -> list[dict]:
    return platform.wh.query(
        "SELECT * FROM mlops.production_predictions WHERE model_name = :m "
        "AND prediction_date = :d ORDER BY prediction_id",
        {"m": model, "d": _date(day)},
    )


def _copy_prediction(platform: Platform, day: str, new_id: str, **changes: object) -> None:
    """One more prediction row for the day, copied from an existing one with `changes`."""
    row = _predictions(platform, day)[0]
    row |= {"prediction_id": new_id, **changes}
    columns = list(row)
    platform.wh.execute(
        f"INSERT INTO mlops.production_predictions ({', '.join(columns)}) "  # noqa: S608
        f"VALUES ({', '.join(':' + c for c in columns)})",
        row,
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _meta(evaluation: dg.AssetCheckEvaluation, key: str) -> object:
    return evaluation.metadata[key].value


# ---------------------------------------------------------------- production_predictions


def test_predictions_log_the_day_for_the_active_model_and_reruns_replace(platform):
    day = "2026-02-02"
    result = platform.materialize(
        ["production_predictions"], day=day, run_config=traffic(n_rows=400)
    )
    rows = _predictions(platform, day)
    assert len(rows) == 400
    assert {r["model_version"] for r in rows} == {platform.run.model_version}
    assert {r["training_local_run_id"] for r in rows} == {platform.run.local_run_id}
    assert {r["mlflow_run_id"] for r in rows} == {platform.run.mlflow_run_id}
    assert all(0.0 <= r["probability"] <= 1.0 for r in rows)
    assert all(r["prediction"] == int(r["probability"] >= 0.5) for r in rows)
    # A past day with the default one-day label delay is settled.
    assert all(r["outcome"] in (0, 1) for r in rows)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows"].value == 400
    assert metadata["model_version"].value == platform.run.model_version

    platform.materialize(["production_predictions"], day=day, run_config=traffic(n_rows=400))
    again = _predictions(platform, day)
    assert [r["prediction_id"] for r in again] == [r["prediction_id"] for r in rows]
    assert [r["probability"] for r in again] == [r["probability"] for r in rows]

    platform.materialize(["production_predictions"], day=day, run_config=traffic(n_rows=250))
    assert len(_predictions(platform, day)) == 250


# ---------------------------------------------------------------- production_metrics


def test_metrics_are_ok_on_a_day_without_drift(platform):
    day = "2026-02-04"
    result = platform.materialize(
        ["production_predictions", "production_metrics"], day=day, run_config=traffic()
    )
    rows = platform.metric_rows(day)
    assert set(rows) == set(METRICS)
    for metric in MONITORED:
        row = rows[metric]
        assert row["level"] == "ok", row
        assert row["value"] is not None and row["note"] is None
        assert row["baseline_value"] == pytest.approx(platform.run.metrics[metric])
        assert row["n_settled"] == 400 and row["n_predictions"] == 400
        assert row["model_version"] == platform.run.model_version
        assert row["mlflow_run_id"] == platform.run.mlflow_run_id
    checks = _checks(result)
    assert set(checks) == {f"{m}_within_baseline" for m in MONITORED}
    for metric in MONITORED:
        check = checks[f"{metric}_within_baseline"]
        assert check.passed is True
        assert check.severity == dg.AssetCheckSeverity.WARN
        assert _meta(check, "level") == "ok"
        assert _meta(check, "observed") == pytest.approx(rows[metric]["value"])


def test_concept_drift_is_critical_on_accuracy_and_checks_carry_the_numbers(platform):
    day = "2026-02-12"
    # Concept drift at full strength (it ramps up over three days), on enough rows that the
    # noise-aware thresholds shrink to the absolute levels.
    result = platform.materialize(
        ["production_predictions", "production_metrics"],
        day=day,
        run_config=traffic(n_rows=3000, concept_drift_from="2026-02-01"),
    )
    rows = platform.metric_rows(day)
    accuracy = rows["accuracy"]
    assert accuracy["level"] == "critical", accuracy
    assert accuracy["degradation_abs"] == pytest.approx(
        platform.run.metrics["accuracy"] - accuracy["value"]
    )
    assert accuracy["degradation_abs"] > accuracy["critical_threshold"]
    assert accuracy["critical_threshold"] >= accuracy["warning_threshold"] > 0

    checks = _checks(result)
    for metric in MONITORED:
        row, check = rows[metric], checks[f"{metric}_within_baseline"]
        assert _meta(check, "level") == row["level"]
        assert check.passed is (row["level"] == "ok")
        expected = (
            dg.AssetCheckSeverity.ERROR
            if row["level"] == "critical"
            else dg.AssetCheckSeverity.WARN
        )
        assert check.severity == expected, metric
        assert _meta(check, "observed") == pytest.approx(row["value"])
        assert _meta(check, "baseline") == pytest.approx(platform.run.metrics[metric])
        assert _meta(check, "threshold") == pytest.approx(row["warning_threshold"])
        assert _meta(check, "critical_threshold") == pytest.approx(row["critical_threshold"])
        assert _meta(check, "degradation") == pytest.approx(row["degradation_abs"])
        assert _meta(check, "model_name") == MODEL and _meta(check, "day") == day
    failed = checks["accuracy_within_baseline"]
    assert failed.passed is False and failed.severity == dg.AssetCheckSeverity.ERROR


def test_an_empty_day_has_no_verdict_and_no_zero_metrics(platform):
    day = "2026-02-15"  # nothing was ever predicted for this day
    result = platform.materialize(
        ["production_metrics"], day=day, run_config={"ops": {"production_metrics": {}}}
    )
    rows = platform.metric_rows(day)
    assert set(rows) == set(METRICS)
    for row in rows.values():
        assert row["level"] == "insufficient_data"
        assert row["value"] is None  # never a made-up 0.0
        assert row["note"] == "no predictions for this day"
        assert row["n_predictions"] == 0 and row["n_settled"] == 0
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["status"].value == "no predictions for this day"
    assert not set(METRICS) & set(metadata)
    assert all(c.passed for c in result.get_asset_check_evaluations())


def test_a_day_without_settled_labels_has_no_verdict(platform):
    day = "2026-02-16"
    platform.materialize(
        ["production_predictions", "production_metrics"],
        day=day,
        run_config=traffic(n_rows=300, label_delay_days=100_000),
    )
    assert all(r["outcome"] is None for r in _predictions(platform, day))
    rows = platform.metric_rows(day)
    for row in rows.values():
        assert row["level"] == "insufficient_data"
        assert row["value"] is None
        assert row["note"] == "only 0 settled rows (< 100): no verdict"
        assert row["n_predictions"] == 300 and row["n_settled"] == 0


@pytest.fixture(scope="module")
def scored_day(platform) -> str:
    day = "2026-02-17"
    platform.materialize(
        ["production_predictions", "production_metrics"], day=day, run_config=traffic()
    )
    return day


@pytest.mark.parametrize(
    ("probability", "problem"),
    [
        (math.nan, "prob contains 1 NaN/inf value(s) of 401"),
        (math.inf, "prob contains 1 NaN/inf value(s) of 401"),
        (-math.inf, "prob contains 1 NaN/inf value(s) of 401"),
        (1.5, "prob contains 1 value(s) outside [0, 1]"),
        (-0.2, "prob contains 1 value(s) outside [0, 1]"),
    ],
    ids=["nan", "inf", "-inf", "above-1", "below-0"],
)
def test_bad_probabilities_fail_the_run_and_keep_the_previous_metrics(
    platform, scored_day, probability, problem
):
    before = platform.metric_rows(scored_day)
    assert before["accuracy"]["level"] == "ok" and before["accuracy"]["n_predictions"] == 400
    _copy_prediction(platform, scored_day, "bad-row", probability=probability)
    try:
        with pytest.raises(dg.Failure) as failure:
            platform.materialize(
                ["production_metrics"],
                day=scored_day,
                run_config={"ops": {"production_metrics": {"config": {"min_settled": 100}}}},
            )
    finally:
        platform.wh.execute(
            "DELETE FROM mlops.production_predictions WHERE prediction_id = 'bad-row'"
        )
    message = str(failure.value)
    assert message.startswith(f"bad production data for {MODEL} on {scored_day}: "), message
    assert problem in message
    # Nothing half-written: the day's metric rows are the ones from before, byte for byte.
    assert platform.metric_rows(scored_day) == before


@pytest.mark.parametrize(
    "asset",
    ["production_predictions", "production_metrics", "performance_alerts", "feature_drift_report"],
)
def test_an_unknown_model_partition_fails_naming_the_known_models(platform, asset):
    platform.instance.add_dynamic_partitions(MODELS.name, ["no_such_model"])
    with pytest.raises(dg.Failure) as failure:
        platform.materialize([asset], day="2026-02-19", model="no_such_model")
    message = str(failure.value)
    assert "no baselined training run for model 'no_such_model'" in message
    assert "known models: " in message and MODEL in message.split("known models: ")[1]
    assert platform.wh.query(
        "SELECT count(*) AS n FROM mlops.production_predictions WHERE model_name = 'no_such_model'"
    ) == [{"n": 0}]


def test_prediction_from_an_unknown_version_is_scored_with_the_day(platform):
    day = "2026-02-18"
    platform.materialize(["production_predictions"], day=day, run_config=traffic())
    known = {
        r["model_version"]
        for r in platform.wh.query(
            "SELECT model_version FROM mlops.training_runs WHERE model_name = :m", {"m": MODEL}
        )
    }
    assert "999" not in known
    _copy_prediction(
        platform, day, "bogus-version", model_version="999", training_local_run_id="local-unknown"
    )
    result = platform.materialize(
        ["production_metrics"],
        day=day,
        run_config={"ops": {"production_metrics": {"config": {"min_settled": 100}}}},
    )
    assert result.success
    rows = platform.metric_rows(day)
    accuracy = rows["accuracy"]
    # The stray row counts with the day; the verdict is stamped with the active model.
    assert accuracy["n_predictions"] == 401 and accuracy["n_settled"] == 401
    assert {r["model_version"] for r in rows.values()} == {platform.run.model_version}
    assert {r["training_local_run_id"] for r in rows.values()} == {platform.run.local_run_id}
    assert accuracy["level"] in ("ok", "warning", "critical")


# ---------------------------------------------------------------- performance_alerts


def _alert_config(escalate_after_days: int = 3, resolve_after_days: int = 2) -> dict:
    return {
        "ops": {
            "performance_alerts": {
                "config": {
                    "escalate_after_days": escalate_after_days,
                    "resolve_after_days": resolve_after_days,
                }
            }
        }
    }


def _evaluate_day(platform, model, day, levels=None, **policy) -> dict:
    write_levels(platform, model, day, levels)
    result = platform.materialize(
        ["performance_alerts"], day=day, model=model, run_config=_alert_config(**policy)
    )
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    return {k: v.value for k, v in metadata.items()}


def _alerts(platform, model) -> list[dict]:
    return platform.wh.query(
        "SELECT * FROM mlops.ml_performance_alerts WHERE model_name = :m AND kind = 'performance' "
        "ORDER BY alert_id",
        {"m": model},
    )


def _events(platform, alert_id) -> list[tuple[str, str]]:
    rows = platform.wh.query(
        "SELECT event_type, severity FROM mlops.alert_events WHERE alert_id = :a ORDER BY event_id",
        {"a": alert_id},
    )
    return [(r["event_type"], r["severity"]) for r in rows]


def test_alerts_are_deduplicated_per_model_and_metric(platform):
    model = unique_model("dedupe")
    platform.clone_model(model)
    first = _evaluate_day(platform, model, "2026-03-01", {"accuracy": "warning"})
    assert first["opened"] == 1
    rerun = _evaluate_day(platform, model, "2026-03-01", {"accuracy": "warning"})
    assert rerun["opened"] == 0
    [alert] = _alerts(platform, model)
    assert alert["breach_days"] == 1
    assert _events(platform, alert["alert_id"]) == [("opened", "warning")]

    _evaluate_day(platform, model, "2026-03-02", {"accuracy": "warning", "f1": "critical"})
    _evaluate_day(platform, model, "2026-03-03", {"accuracy": "warning"}, escalate_after_days=5)
    # Re-running an earlier day after later ones changes nothing either.
    _evaluate_day(platform, model, "2026-03-02", {"accuracy": "warning", "f1": "critical"})

    alerts = _alerts(platform, model)
    assert [(a["metric"], a["status"], a["severity"]) for a in alerts] == [
        ("accuracy", "open", "warning"),
        ("f1", "open", "critical"),
    ]
    accuracy, f1 = alerts
    assert accuracy["breach_days"] == 3
    assert (accuracy["first_seen"], accuracy["last_seen"]) == (
        _date("2026-03-01"),
        _date("2026-03-03"),
    )
    # f1 breached on 03-02 only; 03-03 was in bounds, one of the two days resolution needs.
    assert (f1["first_seen"], f1["ok_days"]) == (_date("2026-03-02"), 1)
    assert _events(platform, accuracy["alert_id"]) == [("opened", "warning")]
    assert _events(platform, f1["alert_id"]) == [("opened", "critical")]
    assert accuracy["training_local_run_id"] == f"{platform.run.local_run_id}-{model}"


def test_a_lasting_warning_escalates_and_ok_days_resolve_it(platform):
    model = unique_model("escalate")
    platform.clone_model(model)
    warn = {"accuracy": "warning"}
    for day in ("2026-03-01", "2026-03-02"):
        _evaluate_day(platform, model, day, warn)
    [alert] = _alerts(platform, model)
    assert (alert["severity"], alert["breach_days"]) == ("warning", 2)

    changes = _evaluate_day(platform, model, "2026-03-03", warn)
    assert changes["escalated"] == 1
    [alert] = _alerts(platform, model)
    assert (alert["severity"], alert["status"], alert["breach_days"]) == ("critical", "open", 3)
    assert _events(platform, alert["alert_id"]) == [
        ("opened", "warning"),
        ("escalated", "critical"),
    ]

    _evaluate_day(platform, model, "2026-03-04")
    # A day without a verdict neither extends nor breaks the recovery streak.
    _evaluate_day(platform, model, "2026-03-05", {"accuracy": "insufficient_data"})
    [alert] = _alerts(platform, model)
    assert (alert["status"], alert["ok_days"], alert["resolved_at"]) == ("open", 1, None)

    changes = _evaluate_day(platform, model, "2026-03-06")
    assert changes["resolved"] == 1
    [alert] = _alerts(platform, model)
    assert alert["status"] == "resolved" and alert["resolved_at"] is not None
    assert _events(platform, alert["alert_id"])[-1] == ("resolved", "critical")

    # A breach after resolution is a new alert.
    _evaluate_day(platform, model, "2026-03-07", warn)
    alerts = _alerts(platform, model)
    assert [(a["status"], a["severity"]) for a in alerts] == [
        ("resolved", "critical"),
        ("open", "warning"),
    ]


def test_an_acknowledged_alert_is_quiet_until_it_escalates(platform, capsys):
    model = unique_model("ack")
    platform.clone_model(model)
    warn = {"accuracy": "warning"}
    _evaluate_day(platform, model, "2026-03-01", warn)
    [alert] = _alerts(platform, model)
    alert_id = alert["alert_id"]

    home = str(platform.home)
    assert main(["--home", home, "ack", str(alert_id), "--by", "oncall"]) == 0
    assert capsys.readouterr().out.strip() == (f"alert {alert_id} ({model}/accuracy) acknowledged")
    [alert] = _alerts(platform, model)
    assert alert["status"] == "acknowledged" and alert["acknowledged_by"] == "oncall"
    assert alert["acknowledged_at"] is not None

    _evaluate_day(platform, model, "2026-03-02", warn)
    [alert] = _alerts(platform, model)
    assert (alert["status"], alert["breach_days"]) == ("acknowledged", 2)
    assert _events(platform, alert_id) == [("opened", "warning")]

    _evaluate_day(platform, model, "2026-03-03", warn)
    [alert] = _alerts(platform, model)
    assert (alert["status"], alert["severity"]) == ("acknowledged", "critical")
    assert _events(platform, alert_id) == [("opened", "warning"), ("escalated", "critical")]

    assert main(["--home", home, "ack", "999999"]) == 1
    assert "no alert with id 999999" in capsys.readouterr().err
