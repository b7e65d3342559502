"""Issue 9 acceptance: a scikit-learn model trained and registered in MLflow by the user's own
plain MLflow script, monitored by a YAML declaration alone.

The "user" here writes no platform code: a data team's script trains a classifier on
scikit-learn's breast-cancer data and registers it (default serialization, alias champion),
writes validation rows into a warehouse table, and a serving system writes predictions with its
own column names into another table, with labels two days later in a third. The platform is the
real code location (`mlops_assets.definitions.defs()`) reading the YAML folder that
MLOPS_MODELS_PATH names, against a real `mlflow server`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import numpy as np
import pandas as pd
import pytest

from mlops_assets_tests.acceptance.conftest import DRIFT, PRODUCTION, TRAINING, UserPlatform

DAYS = [dt.date(2026, 3, 2), dt.date(2026, 3, 3)]
OUTAGE_DAY = dt.date(2026, 3, 4)
ROWS_PER_DAY = 300
BINARY_METRICS = ("accuracy", "f1", "roc_auc", "log_loss")


def _cancer() -> tuple[pd.DataFrame, list[str]]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    frame = frame.rename(columns={"target": "diagnosis"})
    features = [c for c in frame.columns if c != "diagnosis"]
    return frame.sample(frac=1.0, random_state=11).reset_index(drop=True), features


def _register(tracking_uri: str, name: str, model, valid: pd.DataFrame, features: list[str]):
    """The data team's script: plain MLflow, default serialization, alias champion."""
    import mlflow
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"team_{name}")
    with mlflow.start_run(run_name=name):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(valid[features], model.predict(valid[features])),
            registered_model_name=name,
            # MLflow 3's default format is skops, which refuses tree node storage unless the
            # author vouches for it; the flavour records the list and loading honours it.
            skops_trusted_types=["sklearn.tree._tree.Tree"],
        )
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, "champion", version)
    return client.get_model_version(name, version)


def _declare(user: UserPlatform, name: str, **columns) -> None:
    user.declare(
        name,
        {
            "name": name,
            "task": "binary",
            "model": {"registered": {"name": name, "alias": "champion"}},
            "columns": {
                "id": "req_id",
                "timestamp": "scored_at",
                "target": "diagnosis",
                "labelled_at": "labelled_at",
                **columns,
            },
            "baseline": {"source": {"table": f"dwh.{name}_validation"}, "n_boot": 50},
            "production": {
                "predictions": {"table": f"serving.{name}_predictions"},
                "labels": {"table": f"serving.{name}_labels"},
            },
            "monitoring": {"min_labelled": 100},
        },
    )


def _serve(
    user: UserPlatform, name: str, rows: pd.DataFrame, features: list[str], day: dt.date, outputs
) -> pd.DataFrame:
    """The serving system: the day's requests scored and written with its own column names."""
    rng = np.random.default_rng(day.toordinal())
    picked = rows.sample(n=ROWS_PER_DAY, replace=True, random_state=day.toordinal())
    picked = picked.reset_index(drop=True)
    out = picked[features].copy()
    out.insert(
        0,
        "scored_at",
        pd.Timestamp(day) + pd.to_timedelta(rng.integers(0, 86_399, ROWS_PER_DAY), unit="s"),
    )
    out.insert(0, "req_id", [f"{name}-{day:%Y%m%d}-{i:04d}" for i in range(ROWS_PER_DAY)])
    for column, values in outputs(picked[features]).items():
        out[column] = values
    user.write_table(f"serving.{name}_predictions", out)
    return picked.assign(req_id=out["req_id"])


def _label(user: UserPlatform, name: str, served: pd.DataFrame, day: dt.date) -> None:
    """Diagnoses confirmed two days after the predictions."""
    labels = pd.DataFrame(
        {
            "req_id": served["req_id"],
            "diagnosis": served["diagnosis"].astype(int),
            "labelled_at": pd.Timestamp(day + dt.timedelta(days=2)),
        }
    )
    user.write_table(f"serving.{name}_labels", labels)


@pytest.mark.parametrize("engine", ["embedded"])
def test_registered_sklearn_classifier_is_monitored_by_yaml_alone(
    user, running_mlflow, monkeypatch
):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    name = f"cancer_{uuid.uuid4().hex[:8]}"
    frame, features = _cancer()
    train, valid = frame.iloc[:330], frame.iloc[330:]
    model = make_pipeline(
        StandardScaler(), RandomForestClassifier(n_estimators=40, max_depth=4, random_state=0)
    )
    model.fit(train[features], train["diagnosis"])
    version = _register(running_mlflow.uri, name, model, valid, features)
    user.write_table(f"dwh.{name}_validation", valid, replace=True)
    _declare(user, name, probability="p_benign", prediction="predicted")
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", running_mlflow.uri)

    result = user.materialize(TRAINING, model=name)
    run = result.output_for_node("training_run")
    assert run.mlflow_run_id == version.run_id
    rows = user.wh.query(
        "SELECT mlflow_run_id, model_version, origin, is_champion, task "
        "FROM mlops.training_runs WHERE model_name = :m",
        {"m": name},
    )
    assert rows == [
        {
            "mlflow_run_id": version.run_id,
            "model_version": version.version,
            "origin": "registered",
            "is_champion": True,
            "task": "binary",
        }
    ]
    baseline = user.wh.query(
        "SELECT baseline_mlflow_run_id, metrics_json, features_json "
        "FROM mlops.training_baselines WHERE model_name = :m",
        {"m": name},
    )[0]
    assert baseline["baseline_mlflow_run_id"] == version.run_id
    # Features came from the registered model's signature, not from the YAML.
    assert sorted(json.loads(baseline["features_json"])) == sorted(features)
    baseline_metrics = json.loads(baseline["metrics_json"])
    assert baseline_metrics["accuracy"] == pytest.approx(
        float(model.score(valid[features], valid["diagnosis"]))
    )
    # Cached by run id under the data directory, for monitoring without MLflow.
    assert (user.home / "models" / version.run_id / "MLmodel").exists()

    def outputs(x: pd.DataFrame) -> dict:
        p = model.predict_proba(x)[:, list(model.classes_).index(1)]
        return {"p_benign": p, "predicted": (p >= 0.5).astype(int)}

    for day in DAYS:
        served = _serve(user, name, valid, features, day, outputs)
        _label(user, name, served, day)
        user.materialize([*PRODUCTION, *DRIFT], model=name, day=day)
        metrics = user.metrics(name, day)
        assert set(BINARY_METRICS) <= set(metrics)
        for metric in BINARY_METRICS:
            row = metrics[metric]
            assert row["value"] is not None, row
            assert row["baseline_value"] == pytest.approx(baseline_metrics[metric])
            assert row["mlflow_run_id"] == version.run_id
            assert row["model_version"] == version.version
            assert row["n_settled"] == ROWS_PER_DAY and row["n_predictions"] == ROWS_PER_DAY
            assert row["level"] in ("ok", "warning", "critical")
        # Unchanged data scored by the same model: no critical verdict.
        assert metrics["accuracy"]["level"] != "critical", metrics["accuracy"]

    # MLflow goes down: a new day is still monitored, from the cached model and the warehouse.
    running_mlflow.stop()
    try:
        served = _serve(user, name, valid, features, OUTAGE_DAY, outputs)
        _label(user, name, served, OUTAGE_DAY)
        user.materialize([*PRODUCTION, *DRIFT], model=name, day=OUTAGE_DAY)
        metrics = user.metrics(name, OUTAGE_DAY)
        assert metrics["accuracy"]["value"] is not None
        assert metrics["accuracy"]["mlflow_run_id"] == version.run_id
        drift = user.wh.query(
            "SELECT COUNT(*) AS n FROM mlops.ml_feature_drift_detection WHERE model_name = :m "
            "AND partition_date = :d",
            {"m": name, "d": OUTAGE_DAY},
        )
        assert drift[0]["n"] > 0
    finally:
        running_mlflow.start()


def _labels_only_model():
    """A pyfunc model whose predict returns labels: no predict_proba anywhere."""
    import mlflow.pyfunc

    class Threshold(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return (model_input["worst_radius"] < 16.8).astype(int).to_numpy()

    return Threshold()


@pytest.mark.parametrize("engine", ["embedded"])
def test_pyfunc_model_returning_labels_gets_null_probability_metrics_with_a_note(
    user, running_mlflow, monkeypatch
):
    import mlflow
    from mlflow.models import infer_signature

    name = f"cancer_rule_{uuid.uuid4().hex[:8]}"
    frame, features = _cancer()
    valid = frame.iloc[300:]
    mlflow.set_tracking_uri(running_mlflow.uri)
    mlflow.set_experiment(f"team_{name}")
    python_model = _labels_only_model()
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            signature=infer_signature(valid[features], np.zeros(len(valid), dtype=int)),
            registered_model_name=name,
        )
    client = mlflow.MlflowClient(tracking_uri=running_mlflow.uri)
    client.set_registered_model_alias(name, "champion", str(info.registered_model_version))
    user.write_table(f"dwh.{name}_validation", valid, replace=True)
    _declare(user, name, prediction="predicted")
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", running_mlflow.uri)

    run = user.materialize(TRAINING, model=name).output_for_node("training_run")
    assert run.metrics["accuracy"] is not None and run.metrics["accuracy"] > 0.8
    assert run.metrics.get("roc_auc") is None and run.metrics.get("log_loss") is None

    def outputs(x: pd.DataFrame) -> dict:
        return {"predicted": (x["worst_radius"] < 16.8).astype(int).to_numpy()}

    day = DAYS[0]
    served = _serve(user, name, valid, features, day, outputs)
    _label(user, name, served, day)
    user.materialize(PRODUCTION, model=name, day=day)
    metrics = user.metrics(name, day)
    assert metrics["accuracy"]["value"] is not None
    assert metrics["accuracy"]["level"] in ("ok", "warning", "critical")
    for metric in ("roc_auc", "log_loss"):
        row = metrics[metric]
        assert row["value"] is None, row  # never a made-up number
        assert row["note"], row
        assert row["level"] not in ("warning", "critical")
