"""production_predictions, production_metrics (with its checks) and performance_alerts, on the
real model trained once by the package fixture, for fixed days whose traffic the test writes
into the contract's sources as the serving system would (`platform.serve`).

Decision recorded here (test_prediction_from_an_unknown_version_is_scored_with_the_day):
production_metrics judges every prediction row of the day against the *active* model's
baseline and stamps the metric rows with the active model's version and run; the
model_version column of the inference log is not used to filter. A row from a version that
is not in mlops.training_runs is therefore scored with the day, and nothing crashes.
"""

import datetime as dt
import math

import dagster as dg
import pandas as pd
import pytest

from mlops_assets import demo_serving
from mlops_assets.cli import main
from mlops_assets.defs.partitions import MODELS
from mlops_assets.defs.production.assets import MONITORABLE
from mlops_assets.lib import demo_data
from mlops_assets.lib.contract import ModelCatalog
from mlops_assets.platform import catalog_of, default_models
from mlops_assets_tests.production.conftest import (
    MIN_LABELLED,
    MODEL,
    PRODUCTION,
    TRAINING,
    Platform,
    unique_model,
    write_levels,
)

LOG = f'inference."{MODEL}__predictions"'
LABELS = f'inference."{MODEL}__labels"'


def _date(day: str) -> dt.date:
    return dt.date.fromisoformat(day)


def _monitored(platform: Platform, model: str = MODEL) -> list[str]:
    return list(platform.catalog.get(model).monitored_metrics())


def _logged(platform: Platform, day: str) -> list[dict]:
    """The day's rows of the inference log, with their labels (NULL until labelled)."""
    return platform.wh.query(
        f"SELECT p.*, l.y_true FROM {LOG} p "  # noqa: S608 - the test's own table names
        f"LEFT JOIN {LABELS} l ON l.prediction_id = p.prediction_id "
        "WHERE p.prediction_date = :d ORDER BY p.prediction_id",
        {"d": _date(day)},
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _meta(evaluation: dg.AssetCheckEvaluation, key: str) -> object:
    return evaluation.metadata[key].value


def _output_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == asset
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


# ---------------------------------------------------------------- production_predictions


def test_predictions_log_the_day_for_the_active_model_and_reruns_replace(platform):
    day = "2026-02-02"
    traffic = platform.serve(day, n_rows=400)
    result = platform.materialize(["production_predictions"], day=day)
    rows = _logged(platform, day)
    assert [r["prediction_id"] for r in rows] == sorted(traffic["match_id"])
    assert {r["model_version"] for r in rows} == {platform.run.model_version}
    assert all(0.0 <= r["proba"] <= 1.0 for r in rows)
    # The log keeps what serving wrote; the label is the contract's threshold on it.
    served = platform.wh.query(
        "SELECT match_id, p_home_win FROM demo.match_predictions WHERE match_id = ANY(:ids)",
        {"ids": list(traffic["match_id"])},
    )
    assert {r["match_id"]: r["p_home_win"] for r in served} == {
        r["prediction_id"]: r["proba"] for r in rows
    }
    assert all(r["y_pred"] == ("1" if r["proba"] >= 0.5 else "0") for r in rows)
    # The results were written: every row is labelled, joined by id.
    outcomes = dict(zip(traffic["match_id"], traffic[demo_data.TARGET].astype(int), strict=True))
    assert {r["prediction_id"]: r["y_true"] for r in rows} == {
        k: str(v) for k, v in outcomes.items()
    }
    metadata = _output_metadata(result, "production_predictions")
    assert (metadata["rows"], metadata["rows_stored"], metadata["rows_quarantined"]) == (
        400,
        400,
        0,
    )
    assert (metadata["labels_received"], metadata["labels_quarantined"]) == (400, 0)
    assert metadata["model_version"] == platform.run.model_version
    assert metadata["mlflow_run_id"] == platform.run.mlflow_run_id
    assert _checks(result)["no_quarantined_rows"].passed is True

    platform.materialize(["production_predictions"], day=day)
    again = _logged(platform, day)
    assert [r["prediction_id"] for r in again] == [r["prediction_id"] for r in rows]
    assert [r["proba"] for r in again] == [r["proba"] for r in rows]
    assert [r["y_true"] for r in again] == [r["y_true"] for r in rows]


def test_a_redelivered_batch_does_not_duplicate_the_day(platform):
    day = "2026-02-03"
    first = platform.serve(day, n_rows=300)
    second = platform.serve(day, n_rows=300)  # the serving system writes the same batch again
    assert list(first["match_id"]) == list(second["match_id"])
    assert platform.wh.query(
        "SELECT count(*) AS n FROM demo.match_predictions WHERE CAST(match_date AS DATE) = :d",
        {"d": _date(day)},
    ) == [{"n": 600}]
    result = platform.materialize(PRODUCTION, day=day)
    rows = _logged(platform, day)
    assert len(rows) == 300 and len({r["prediction_id"] for r in rows}) == 300
    accuracy = platform.metric_rows(day)["accuracy"]
    assert (accuracy["n_predictions"], accuracy["n_settled"]) == (300, 300)
    metadata = _output_metadata(result, "production_predictions")
    # An identical second delivery is a re-delivery: stored once, nothing to quarantine.
    assert (metadata["rows"], metadata["rows_stored"]) == (600, 300)
    assert metadata["rows_quarantined"] == 0
    assert all(
        c.passed
        for c in result.get_asset_check_evaluations()
        if c.check_name == "no_quarantined_rows"
    )


def test_conflicting_rows_under_one_id_keep_the_last_and_quarantine_once(platform):
    day = "2026-02-04"
    served = platform.serve(day, n_rows=200)
    changed = (
        served[["match_id", "match_date", *demo_data.FEATURES]].head(20).assign(p_home_win=0.99)
    )
    demo_serving.write_table(platform.wh, "demo.match_predictions", changed)
    for _ in range(2):  # a rerun reads the same conflicting rows again
        result = platform.materialize(PRODUCTION, day=day)
    metadata = _output_metadata(result, "production_predictions")
    assert (metadata["rows_stored"], metadata["rows_quarantined"]) == (200, 20)
    quarantined = platform.wh.query(
        "SELECT count(*) AS n FROM mlops.quarantine WHERE model_name = :m AND kind = 'prediction' "
        "AND row_id LIKE :p AND reason LIKE '%duplicate id within the batch%'",
        {"m": MODEL, "p": f"m{_date(day):%Y%m%d}-%"},
    )
    assert quarantined == [{"n": 20}]  # not 40: a rerun replaces its earlier record


# ---------------------------------------------------------------- production_metrics


def test_metrics_are_ok_on_a_day_without_drift(platform):
    day = "2026-02-04"
    platform.serve(day, n_rows=400)
    result = platform.materialize(PRODUCTION, day=day)
    rows = platform.metric_rows(day)
    monitored = _monitored(platform)
    assert set(monitored) <= set(rows)
    for metric in monitored:
        row = rows[metric]
        assert row["level"] == "ok", row
        assert row["value"] is not None and row["note"] is None
        assert row["baseline_value"] == pytest.approx(platform.run.metrics[metric])
        assert row["n_settled"] == 400 and row["n_predictions"] == 400
        assert row["model_version"] == platform.run.model_version
        assert row["mlflow_run_id"] == platform.run.mlflow_run_id
    checks = _checks(result)
    # One check per metric a declared model monitors (the demo's: this binary model and a
    # multiclass one), not one per metric any task could monitor.
    declared = {m for c in catalog_of(default_models()) for m in c.monitored_metrics()}
    assert set(monitored) <= declared and "f1_macro" in declared and "mae" not in declared
    metric_checks = {c for c in checks if c.endswith("_within_baseline")}
    assert metric_checks == {f"{m}_within_baseline" for m in declared}
    for metric in declared:
        check = checks[f"{metric}_within_baseline"]
        assert check.passed is True, metric
        if metric in monitored:
            assert check.severity == dg.AssetCheckSeverity.WARN
            assert _meta(check, "level") == "ok"
            assert _meta(check, "observed") == pytest.approx(rows[metric]["value"])
        else:
            assert _meta(check, "status") == f"not monitored for {MODEL} (binary)"


def test_concept_drift_is_critical_on_accuracy_and_checks_carry_the_numbers(platform):
    day = "2026-02-12"
    # Concept drift at full strength (it ramps up over three days), on enough rows that the
    # noise-aware thresholds shrink to the absolute levels.
    platform.serve(day, n_rows=3000, concept_drift_from="2026-02-01")
    result = platform.materialize(PRODUCTION, day=day)
    rows = platform.metric_rows(day)
    accuracy = rows["accuracy"]
    assert accuracy["level"] == "critical", accuracy
    assert accuracy["degradation_abs"] == pytest.approx(
        platform.run.metrics["accuracy"] - accuracy["value"]
    )
    assert accuracy["degradation_abs"] > accuracy["critical_threshold"]
    assert accuracy["critical_threshold"] >= accuracy["warning_threshold"] > 0

    checks = _checks(result)
    for metric in _monitored(platform):
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
    # A model of its own whose serving system never wrote anything: not even its inference
    # log tables exist yet.
    model = unique_model("empty")
    platform.clone_model(model, own_sources=True)
    day = "2026-02-15"
    result = platform.materialize(["production_metrics"], day=day, model=model)
    rows = platform.metric_rows(day, model)
    assert set(_monitored(platform, model)) <= set(rows)
    for row in rows.values():
        assert row["level"] == "insufficient_data"
        assert row["value"] is None  # never a made-up 0.0
        assert row["note"] == "no predictions for this day"
        assert row["n_predictions"] == 0 and row["n_settled"] == 0
    metadata = _output_metadata(result, "production_metrics")
    assert metadata["status"] == "no predictions for this day"
    assert not set(MONITORABLE) & set(metadata)
    # Where the partition's time went, from the first read to the rows written.
    seconds = metadata["seconds"]
    # The estimate's lap comes after the computation when it ran on a thread beside it.
    assert list(seconds)[:2] == ["read_model", "read"] and list(seconds)[-2:] == ["write", "total"]
    assert set(seconds) == {"read_model", "read", "estimate", "compute", "write", "total"}
    assert seconds["total"] == pytest.approx(sum(seconds.values()) - seconds["total"], abs=0.01)
    assert all(c.passed for c in result.get_asset_check_evaluations())


@pytest.fixture(scope="module")
def unlabelled_day(platform) -> tuple[str, pd.DataFrame]:
    """A day served without results: the matches have not been played yet."""
    day = "2026-02-16"
    traffic = platform.serve(day, n_rows=300, settle=False)
    platform.materialize(PRODUCTION, day=day)
    return day, traffic


def test_a_day_without_labels_is_estimated_from_calibrated_probabilities(platform, unlabelled_day):
    day, _ = unlabelled_day
    logged = _logged(platform, day)
    assert len(logged) == 300 and all(r["y_true"] is None for r in logged)
    rows = platform.metric_rows(day)
    for metric in ("accuracy", "f1", "roc_auc"):
        row = rows[metric]
        assert row["basis"] == "estimated", row
        assert row["value"] is not None and row["value"] == row["estimated_value"]
        assert row["estimated_lower"] <= row["value"] <= row["estimated_upper"]
        assert row["estimation_error"] is None
        assert row["level"] in ("ok", "warning", "critical")
        assert row["n_predictions"] == 300 and row["n_settled"] == 0
    # Log loss needs the labels themselves: no estimate, said so, never a made-up 0.
    assert rows["log_loss"]["value"] is None
    assert rows["log_loss"]["note"] == "not estimable without labels (labels pending)"


def test_without_estimation_a_day_without_labels_has_no_verdict(platform, unlabelled_day):
    day, _ = unlabelled_day
    model = unique_model("noestimate")
    base = platform.catalog.get("match_outcome")
    platform.clone_model(model, monitoring=base.monitoring.model_copy(update={"estimate": False}))
    platform.materialize(PRODUCTION, day=day, model=model)
    rows = platform.metric_rows(day, model=model)
    assert set(_monitored(platform)) <= set(rows)
    for row in rows.values():
        assert row["level"] == "insufficient_data"
        assert row["value"] is None and row["basis"] is None
        assert row["note"] == f"only 0 labelled rows (< {MIN_LABELLED}): no verdict"


def test_late_labels_re_evaluate_the_day(platform, unlabelled_day):
    day, traffic = unlabelled_day
    demo_serving.settle_matches(platform.wh, traffic)  # the results come in days later
    result = platform.materialize(PRODUCTION, day=day)
    assert _output_metadata(result, "production_predictions")["labels_received"] == 300
    assert len(_logged(platform, day)) == 300
    rows = platform.metric_rows(day)
    for metric in _monitored(platform):
        row = rows[metric]
        assert row["level"] in ("ok", "warning", "critical"), row
        assert row["basis"] == "realised"
        assert row["value"] is not None and row["note"] is None
        assert row["n_predictions"] == 300 and row["n_settled"] == 300
    # The day's estimate is kept beside the realised value, with its error.
    accuracy = rows["accuracy"]
    assert accuracy["estimated_value"] is not None
    assert accuracy["estimation_error"] == pytest.approx(
        accuracy["value"] - accuracy["estimated_value"]
    )


def _append_served_row(platform: Platform, day: str, new_id: str, **changes: object) -> None:
    """One more row in the serving system's predictions table, copied from one of the day's."""
    frame = platform.wh.query_df(
        "SELECT * FROM demo.match_predictions WHERE CAST(match_date AS DATE) = :d "
        "ORDER BY match_id LIMIT 1",
        {"d": _date(day)},
    )
    frame["match_id"] = new_id
    for column, value in changes.items():
        frame[column] = value
    demo_serving.write_table(platform.wh, "demo.match_predictions", frame)


@pytest.fixture(scope="module")
def served_day(platform) -> str:
    day = "2026-02-17"
    platform.serve(day, n_rows=400)
    return day


@pytest.mark.parametrize(
    ("probability", "reason"),
    [
        (math.nan, "probability p_home_win missing or not a number"),
        (math.inf, "probability p_home_win outside [0, 1]"),
        (-math.inf, "probability p_home_win outside [0, 1]"),
        (1.5, "probability p_home_win outside [0, 1]"),
        (-0.2, "probability p_home_win outside [0, 1]"),
    ],
    ids=["nan", "inf", "-inf", "above-1", "below-0"],
)
def test_bad_probabilities_are_quarantined_and_the_good_rows_land(
    platform, served_day, probability, reason
):
    bad_id = f"bad-{_suffix(probability)}"
    _append_served_row(platform, served_day, bad_id, p_home_win=probability)
    try:
        result = platform.materialize(PRODUCTION, day=served_day)
    finally:
        platform.wh.execute("DELETE FROM demo.match_predictions WHERE match_id = :i", {"i": bad_id})
    check = _checks(result)["no_quarantined_rows"]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    assert _meta(check, "quarantined_predictions") == 1
    assert _meta(check, "quarantined_labels") == 0
    assert "mlops.quarantine" in _meta(check, "where")
    [row] = platform.wh.query(
        "SELECT reason, kind, source FROM mlops.quarantine WHERE model_name = :m AND row_id = :i",
        {"m": MODEL, "i": bad_id},
    )
    assert row["reason"] == reason and row["kind"] == "prediction"
    # The day's good rows landed and were judged; the bad one is in neither.
    logged = _logged(platform, served_day)
    assert len(logged) == 400 and bad_id not in {r["prediction_id"] for r in logged}
    accuracy = platform.metric_rows(served_day)["accuracy"]
    assert accuracy["n_predictions"] == 400 and accuracy["level"] == "ok"


def _suffix(value: float) -> str:
    return {math.inf: "inf", -math.inf: "minus-inf"}.get(value, str(value).replace(".", "_"))


def test_a_batch_missing_a_column_fails_naming_the_column_and_the_model(platform):
    model = unique_model("nocolumn")
    contract = platform.clone_model(model, own_sources=True)
    day = "2026-02-18"
    traffic = demo_data.production_day(day=_date(day), n_rows=50)
    # The serving system forgot the probability column altogether.
    rows = traffic[["match_id", "match_date", *demo_data.FEATURES]]
    demo_serving.write_table(platform.wh, contract.production.predictions.table, rows)
    with pytest.raises(dg.Failure) as failure:
        platform.materialize(["production_predictions"], day=day, model=model)
    message = str(failure.value)
    assert f"model {model}:" in message and "'p_home_win'" in message, message
    assert contract.production.predictions.table in message
    assert not platform.wh.query(
        "SELECT DISTINCT metric_date FROM mlops.production_metrics WHERE model_name = :m",
        {"m": model},
    )


def test_a_labels_table_that_does_not_exist_yet_means_no_labels(platform):
    model = unique_model("nolabels")
    contract = platform.clone_model(model, own_sources=True)
    day = "2026-02-18"
    traffic = demo_data.production_day(day=_date(day), n_rows=50)
    rows = traffic[["match_id", "match_date", *demo_data.FEATURES]].assign(p_home_win=0.5)
    demo_serving.write_table(platform.wh, contract.production.predictions.table, rows)
    result = platform.materialize(["production_predictions"], day=day, model=model)
    metadata = _output_metadata(result, "production_predictions")
    labels = contract.production.labels.table
    assert metadata["rows_stored"] == 50 and metadata["labels_received"] == 0
    assert metadata["labels"] == f"no labels yet: table {labels} does not exist"


def test_a_declared_model_without_a_baseline_fails_saying_so(platform):
    model = unique_model("untrained")
    platform.catalog.add(platform.catalog.get(MODEL).model_copy(update={"name": model}))
    platform.instance.add_dynamic_partitions(MODELS.name, [model])
    with pytest.raises(dg.Failure) as failure:
        platform.materialize(["production_metrics"], day="2026-02-19", model=model)
    message = str(failure.value)
    assert f"no baselined training run for model {model!r}" in message, message


@pytest.mark.parametrize(
    "asset",
    ["production_predictions", "production_metrics", "performance_alerts", "feature_drift_report"],
)
def test_an_unknown_model_partition_fails_naming_the_declared_models(platform, asset):
    platform.instance.add_dynamic_partitions(MODELS.name, ["no_such_model"])
    with pytest.raises(dg.Failure) as failure:
        platform.materialize([asset], day="2026-02-19", model="no_such_model")
    message = str(failure.value)
    assert "'no_such_model'" in message and "declared: " in message, message
    assert MODEL in message.split("declared: ")[1]


@pytest.mark.parametrize(
    "asset",
    ["production_predictions", "production_metrics", "performance_alerts", "feature_drift_report"],
)
def test_a_trained_model_no_longer_declared_fails_naming_the_declared_models(platform, asset):
    # Its runs and baseline are still in the warehouse, but its contract was removed.
    model = unique_model("undeclared")
    platform.clone_model(model)
    only_demo = ModelCatalog([platform.catalog.get(MODEL)])
    with pytest.raises(dg.Failure) as failure:
        platform.materialize([asset], day="2026-02-19", model=model, catalog=only_demo)
    message = str(failure.value)
    assert f"model {model!r} is not declared; declared: {MODEL}" in message, message


def test_prediction_from_an_unknown_version_is_scored_with_the_day(platform):
    day = "2026-02-21"
    platform.serve(day, n_rows=400)
    platform.materialize(["production_predictions"], day=day)
    known = {
        r["model_version"]
        for r in platform.wh.query(
            "SELECT model_version FROM mlops.training_runs WHERE model_name = :m", {"m": MODEL}
        )
    }
    assert "999" not in known
    # A row logged by a version this platform never trained, and its label.
    wh = platform.wh
    row = wh.query(
        f"SELECT * FROM {LOG} WHERE prediction_date = :d ORDER BY prediction_id LIMIT 1",  # noqa: S608
        {"d": _date(day)},
    )[0]
    label = wh.query(
        f"SELECT * FROM {LABELS} WHERE prediction_id = :i",  # noqa: S608
        {"i": row["prediction_id"]},
    )[0]
    for table, values in ((LOG, row), (LABELS, label)):
        values = values | {"prediction_id": "bogus-version"}
        if table == LOG:
            values["model_version"] = "999"
        columns = list(values)
        wh.execute(
            f"INSERT INTO {table} ({', '.join(chr(34) + c + chr(34) for c in columns)}) "  # noqa: S608
            f"VALUES ({', '.join(':' + c for c in columns)})",
            values,
        )
    result = platform.materialize(["production_metrics"], day=day)
    assert result.success
    rows = platform.metric_rows(day)
    accuracy = rows["accuracy"]
    # The stray row counts with the day; the verdict is stamped with the active model.
    assert accuracy["n_predictions"] == 401 and accuracy["n_settled"] == 401
    assert {r["model_version"] for r in rows.values()} == {platform.run.model_version}
    assert {r["training_local_run_id"] for r in rows.values()} == {platform.run.local_run_id}
    assert accuracy["level"] in ("ok", "warning", "critical")


# ---------------------------------------------------------------- performance_alerts


def _evaluate_day(platform, model, day, levels=None) -> dict:
    write_levels(platform, model, day, levels)
    result = platform.materialize(["performance_alerts"], day=day, model=model)
    return _output_metadata(result, "performance_alerts")


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
    # Escalation after five days: here a lasting warning stays a warning.
    contract = platform.catalog.get(MODEL)
    platform.clone_model(
        model, monitoring=contract.monitoring.model_copy(update={"escalate_after_days": 5})
    )
    first = _evaluate_day(platform, model, "2026-03-01", {"accuracy": "warning"})
    assert first["opened"] == 1
    rerun = _evaluate_day(platform, model, "2026-03-01", {"accuracy": "warning"})
    assert rerun["opened"] == 0
    [alert] = _alerts(platform, model)
    assert alert["breach_days"] == 1
    assert _events(platform, alert["alert_id"]) == [("opened", "warning")]

    _evaluate_day(platform, model, "2026-03-02", {"accuracy": "warning", "f1": "critical"})
    _evaluate_day(platform, model, "2026-03-03", {"accuracy": "warning"})
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


def test_an_alert_on_estimates_alone_obeys_the_severity_cap(platform):
    model = unique_model("estimated")
    platform.clone_model(model)  # estimated_severity_cap: warning (the default)
    day = "2026-03-20"
    write_levels(platform, model, day, {"accuracy": "critical"}, basis="estimated")
    result = platform.materialize(["performance_alerts"], day=day, model=model)
    assert _output_metadata(result, "performance_alerts")["opened"] == 1
    [alert] = _alerts(platform, model)
    assert (alert["metric"], alert["severity"]) == ("accuracy", "warning")
    assert "(estimated: labels pending)" in alert["message"]
    # The labels arrive and confirm it: the realised critical verdict pages.
    write_levels(platform, model, day, {"accuracy": "critical"})
    platform.materialize(["performance_alerts"], day=day, model=model)
    [alert] = _alerts(platform, model)
    assert alert["severity"] == "critical"


def test_the_severity_cap_is_the_contracts(platform):
    model = unique_model("capinfo")
    contract = platform.catalog.get(MODEL)
    platform.clone_model(
        model,
        monitoring=contract.monitoring.model_copy(update={"estimated_severity_cap": "critical"}),
    )
    day = "2026-03-21"
    write_levels(platform, model, day, {"accuracy": "critical"}, basis="estimated")
    platform.materialize(["performance_alerts"], day=day, model=model)
    [alert] = _alerts(platform, model)
    assert alert["severity"] == "critical"


def test_after_a_retrain_open_alerts_belong_to_the_version_in_service(platform):
    """An alert stays attributed to the version that fired it; once a retrained version is
    judged, the old version's open alerts are resolved as superseded, and the new version
    opens its own if it breaches too."""
    model = unique_model("retrain")
    platform.clone_model(model)
    write_levels(platform, model, "2026-04-01", {"accuracy": "critical", "f1": "warning"})
    platform.materialize(["performance_alerts"], day="2026-04-01", model=model)
    old = {a["metric"]: a for a in _alerts(platform, model)}
    assert set(old) == {"accuracy", "f1"}
    old_run = old["accuracy"]["training_local_run_id"]

    retrained = platform.materialize(TRAINING, partition=model).output_for_node("training_run")
    assert retrained.local_run_id != old_run and retrained.model_version
    # The next day only accuracy still breaches (f1 is not even evaluated: insufficient data).
    write_levels(platform, model, "2026-04-02", {"accuracy": "critical", "f1": "insufficient_data"})
    result = platform.materialize(["performance_alerts"], day="2026-04-02", model=model)

    alerts = _alerts(platform, model)
    by_run = {
        run: [a for a in alerts if a["training_local_run_id"] == run]
        for run in (old_run, retrained.local_run_id)
    }
    for alert in by_run[old_run]:
        assert alert["status"] == "resolved", alert
        assert alert["model_version"] == old["accuracy"]["model_version"]
        assert f"superseded: version {retrained.model_version} is in service" in alert["message"]
        assert _events(platform, alert["alert_id"])[-1][0] == "resolved"
    [current] = by_run[retrained.local_run_id]
    assert (current["metric"], current["status"]) == ("accuracy", "open")
    assert current["model_version"] == retrained.model_version
    assert current["first_seen"] == dt.date(2026, 4, 2)
    open_alerts = [a for a in alerts if a["status"] != "resolved"]
    assert [a["alert_id"] for a in open_alerts] == [current["alert_id"]]
    changes = _output_metadata(result, "performance_alerts")
    assert changes["opened"] == 1
