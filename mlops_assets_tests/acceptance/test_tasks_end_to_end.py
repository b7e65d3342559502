"""Issue 9 acceptance: a multiclass and a regression model trained here, end to end on both
warehouse engines, declared in YAML with a scikit-learn estimator by dotted path.

The multiclass model's serving system writes a warehouse table (labels in another table); the
regression model's writes Parquet batches (labels in Parquet files). Each gets a healthy day and a
degraded day (labels shuffled): metrics per task metric, NULL (never 0) for another task's
columns, an alert on the degraded day, and the curated views queryable.
"""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pandas as pd
import pytest

from mlops_assets_tests.acceptance.conftest import (
    DRIFT,
    LIFECYCLE,
    PRODUCTION,
    TRAINING,
    UserPlatform,
)

HEALTHY, DEGRADED = dt.date(2026, 4, 6), dt.date(2026, 4, 7)
ROWS_PER_DAY = 600
MULTICLASS_METRICS = {
    "accuracy",
    "f1_macro",
    "f1_weighted",
    "precision_macro",
    "recall_macro",
    "log_loss",
    "roc_auc_ovr",
}
REGRESSION_METRICS = {"mae", "rmse", "r2"}


def _predictor(user: UserPlatform, name: str, run):
    """The serving system's copy of the champion the platform trained (from MLflow's store)."""
    from mlops_assets.platform import catalog_of, default_models
    from mlops_assets.runtime import build_runtime
    from mlops_assets.storage.models import Predictor

    contract = catalog_of(default_models()).get(name)  # the YAML in MLOPS_MODELS_PATH
    model_dir = build_runtime().mlflow_config.artifact_root / run.local_run_id / "model"
    return Predictor(contract, model_dir)


def _day_rows(pool: pd.DataFrame, day: dt.date, prefix: str) -> pd.DataFrame:
    rng = np.random.default_rng(day.toordinal())
    rows = pool.sample(n=ROWS_PER_DAY, replace=True, random_state=day.toordinal())
    rows = rows.reset_index(drop=True)
    rows.insert(
        0,
        "ts",
        pd.Timestamp(day) + pd.to_timedelta(rng.integers(0, 86_399, ROWS_PER_DAY), unit="s"),
    )
    rows.insert(0, "rid", [f"{prefix}-{day:%Y%m%d}-{i:05d}" for i in range(ROWS_PER_DAY)])
    return rows


def _shuffled(values: pd.Series, day: dt.date) -> pd.Series:
    rng = np.random.default_rng(day.toordinal() + 1)
    return pd.Series(rng.permutation(values.to_numpy()), index=values.index)


def _alerts(user: UserPlatform, name: str) -> list[dict]:
    return user.wh.query(
        "SELECT metric, severity, status, model_version FROM mlops.ml_performance_alerts "
        "WHERE model_name = :m AND kind = 'performance'",
        {"m": name},
    )


def _lifecycle_checks(user: UserPlatform, name: str, version: str) -> dict:
    user.materialize_unpartitioned(LIFECYCLE)
    health = user.wh.query(
        "SELECT * FROM mlops.ml_model_health_status WHERE model_name = :m", {"m": name}
    )
    assert len(health) == 1, health
    lifecycle = user.wh.query_readonly(
        f"SELECT * FROM curated.unified_model_lifecycle WHERE model_name = '{name}'"  # noqa: S608
    )
    assert {r["metric_date"] for r in lifecycle} >= {HEALTHY, DEGRADED}
    alerts = user.wh.query_readonly(
        f"SELECT * FROM curated.unified_monitoring_alerts WHERE model_name = '{name}'"  # noqa: S608
    )
    assert alerts and {str(a["model_version"]) for a in alerts} == {version}
    user.wh.query_readonly(
        "SELECT * FROM curated.feature_drift_with_training_context "  # noqa: S608
        f"WHERE model_name = '{name}'"
    )
    return health[0]


def test_multiclass_trained_here_from_a_table(user: UserPlatform):
    from sklearn.datasets import make_classification

    name = f"segment_{uuid.uuid4().hex[:6]}"
    x, y = make_classification(
        n_samples=3000,
        n_features=6,
        n_informative=5,
        n_redundant=0,
        n_classes=3,
        class_sep=1.2,
        random_state=4,
    )
    features = [f"f{i}" for i in range(6)]
    frame = pd.DataFrame(x, columns=features).assign(segment=[f"s{v}" for v in y])
    user.write_table("lake.segment_history", frame, replace=True)
    classes = ["s0", "s1", "s2"]
    user.declare(
        name,
        {
            "name": name,
            "task": "multiclass",
            "model": {
                "train": {
                    "source": {"table": "lake.segment_history"},
                    "estimator": "sklearn.linear_model.LogisticRegression",
                    "params": {"max_iter": 300},
                }
            },
            "classes": classes,
            "columns": {
                "id": "rid",
                "timestamp": "ts",
                "target": "segment",
                "prediction": "predicted_segment",
                "probabilities": {c: f"p_{c}" for c in classes},
                "labelled_at": "labelled_at",
                "features": dict.fromkeys(features, "numeric"),
            },
            "baseline": {"n_boot": 50, "reference_rows": 500},
            "production": {
                "predictions": {"table": "serving.segment_predictions"},
                "labels": {"table": "serving.segment_labels"},
            },
            "monitoring": {"min_labelled": 200},
        },
    )
    run = user.materialize(TRAINING, model=name).output_for_node("training_run")
    assert run.tracking_status == "TRACKED" and run.model_version
    assert set(run.metrics) >= MULTICLASS_METRICS
    predictor = _predictor(user, name, run)

    for day in (HEALTHY, DEGRADED):
        rows = _day_rows(frame, day, name)
        scores = predictor.score(rows[features])
        out = rows[["rid", "ts", *features]].copy()
        for i, c in enumerate(classes):
            out[f"p_{c}"] = scores.proba[:, i]
        out["predicted_segment"] = np.asarray(classes)[scores.proba.argmax(axis=1)]
        user.write_table("serving.segment_predictions", out)
        truth = rows["segment"] if day == HEALTHY else _shuffled(rows["segment"], day)
        user.write_table(
            "serving.segment_labels",
            pd.DataFrame(
                {
                    "rid": rows["rid"],
                    "segment": truth,
                    "labelled_at": pd.Timestamp(day + dt.timedelta(days=2)),
                }
            ),
        )
        user.materialize([*PRODUCTION, *DRIFT], model=name, day=day)

    healthy = user.metrics(name, HEALTHY)
    assert set(healthy) >= MULTICLASS_METRICS
    for metric in MULTICLASS_METRICS:
        assert healthy[metric]["value"] is not None, healthy[metric]
    assert healthy["accuracy"]["level"] == "ok", healthy["accuracy"]
    # Binary-only and regression metrics are not rows of a multiclass model's day.
    assert not {"roc_auc", "f1", "roi", "mae", "r2"} & set(healthy)
    degraded = user.metrics(name, DEGRADED)
    assert degraded["accuracy"]["level"] == "critical", degraded["accuracy"]
    alerts = _alerts(user, name)
    assert any(a["metric"] == "accuracy" and a["severity"] == "critical" for a in alerts), alerts

    run_row = user.wh.query(
        "SELECT accuracy, roi, roc_auc, f1 FROM mlops.training_runs WHERE model_name = :m",
        {"m": name},
    )[0]
    assert run_row["accuracy"] == pytest.approx(run.metrics["accuracy"])
    assert run_row["roi"] is None and run_row["roc_auc"] is None and run_row["f1"] is None
    health = _lifecycle_checks(user, name, run.model_version)
    assert health["overall_status"] == "CRITICAL"
    assert health["latest_accuracy"] == pytest.approx(degraded["accuracy"]["value"])
    assert health["latest_roi"] is None


def test_regression_trained_here_from_parquet(user: UserPlatform):
    from sklearn.datasets import load_diabetes

    name = f"progression_{uuid.uuid4().hex[:6]}"
    data = load_diabetes(as_frame=True)
    frame = data.frame.rename(columns={"target": "progression"})
    features = [c for c in frame.columns if c != "progression"]
    user.write_table("lake.diabetes_history", frame, replace=True)
    predictions = user.home / "serving" / "predictions"
    labels = user.home / "serving" / "labels"
    user.declare(
        name,
        {
            "name": name,
            "task": "regression",
            "model": {
                "train": {
                    "source": {"table": "lake.diabetes_history"},
                    "estimator": "sklearn.ensemble.RandomForestRegressor",
                    "params": {"n_estimators": 40, "max_depth": 5, "random_state": 0},
                }
            },
            "columns": {
                "id": "rid",
                "timestamp": "ts",
                "target": "progression",
                "prediction": "predicted_progression",
                "features": dict.fromkeys(features, "numeric"),
            },
            "baseline": {"n_boot": 50},
            # A relative folder is under the data directory (MLOPS_HOME).
            "production": {
                "predictions": {"parquet": "serving/predictions"},
                "labels": {"parquet": "serving/labels"},
            },
            "monitoring": {"min_labelled": 200},
        },
    )
    run = user.materialize(TRAINING, model=name).output_for_node("training_run")
    assert run.tracking_status == "TRACKED" and run.model_version
    assert set(run.metrics) >= REGRESSION_METRICS
    predictor = _predictor(user, name, run)
    predictions.mkdir(parents=True)
    labels.mkdir(parents=True)
    for day in (HEALTHY, DEGRADED):
        rows = _day_rows(frame, day, name)
        out = rows[["rid", "ts", *features]].assign(
            predicted_progression=predictor.score(rows[features]).score
        )
        out.to_parquet(predictions / f"batch-{day:%Y%m%d}.parquet", index=False)
        truth = rows["progression"] if day == HEALTHY else _shuffled(rows["progression"], day)
        pd.DataFrame({"rid": rows["rid"], "progression": truth}).to_parquet(
            labels / f"labels-{day:%Y%m%d}.parquet", index=False
        )
        user.materialize([*PRODUCTION, *DRIFT], model=name, day=day)

    healthy = user.metrics(name, HEALTHY)
    assert set(healthy) >= REGRESSION_METRICS
    for metric in REGRESSION_METRICS:
        assert healthy[metric]["value"] is not None, healthy[metric]
        assert healthy[metric]["level"] != "critical", healthy[metric]
    assert not {"accuracy", "roc_auc", "f1", "log_loss", "roi"} & set(healthy)
    degraded = user.metrics(name, DEGRADED)
    assert degraded["mae"]["value"] > healthy["mae"]["value"]
    assert degraded["mae"]["level"] == "critical", degraded["mae"]
    alerts = _alerts(user, name)
    assert any(a["severity"] == "critical" for a in alerts), alerts

    run_row = user.wh.query(
        "SELECT accuracy, roi, roc_auc, f1, log_loss, precision_score, recall "
        "FROM mlops.training_runs WHERE model_name = :m",
        {"m": name},
    )[0]
    assert set(run_row.values()) == {None}, run_row  # classification columns: NULL, never 0
    health = _lifecycle_checks(user, name, run.model_version)
    assert health["overall_status"] == "CRITICAL"
    assert health["latest_accuracy"] is None and health["baseline_accuracy"] is None
    assert health["latest_roi"] is None
