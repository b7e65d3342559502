"""Found by walking the README as a new user (issues 10 and 13, "from outside").

One registered MLflow model served by two systems, so declared twice (one YAML per source):
each declaration must get its own baseline and its own drift reports. Before, both used the
MLflow run id as their run's key, so the second declaration's baseline row was dropped
silently (its training succeeded, the sensor said "no baseline yet" forever) and its drift
report replaced the first's in one MLflow run.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from mlops_assets_tests.acceptance.conftest import DRIFT, PRODUCTION, TRAINING, UserPlatform
from mlops_assets_tests.acceptance.test_registered_sklearn import _cancer, _register

DAY = dt.date(2026, 3, 2)


def _declare(user: UserPlatform, name: str, registered: str) -> None:
    user.declare(
        name,
        {
            "name": name,
            "task": "binary",
            "model": {"registered": {"name": registered, "alias": "champion"}},
            "columns": {
                "id": "req_id",
                "timestamp": "scored_at",
                "target": "diagnosis",
                "probability": "p_benign",
                "labelled_at": "labelled_at",
            },
            "baseline": {"source": {"table": "dwh.cancer_validation"}, "n_boot": 20},
            "production": {
                "predictions": {"table": f"serving.{name}_predictions"},
                "labels": {"table": f"serving.{name}_labels"},
            },
            "monitoring": {"min_labelled": 50},
        },
    )


@pytest.mark.parametrize("engine", ["embedded", "postgres"])
def test_one_registered_model_declared_twice_keeps_two_baselines(user: UserPlatform):
    from sklearn.linear_model import LogisticRegression

    from mlops_assets.storage.monitoring import active_model

    frame, features = _cancer()
    features = features[:5]
    train, valid = frame.iloc[:330], frame.iloc[330:]
    model = LogisticRegression(max_iter=2000).fit(train[features], train["diagnosis"])
    import os

    version = _register(os.environ["MLOPS_MLFLOW_TRACKING_URI"], "cancer", model, valid, features)
    user.write_table("dwh.cancer_validation", valid[[*features, "diagnosis"]], replace=True)
    names = ("cancer_eu", "cancer_us")
    for name in names:
        _declare(user, name, "cancer")
        user.materialize(TRAINING, model=name)

    wh = user.wh
    for name in names:
        active = active_model(wh, name)
        assert active.mlflow_run_id == version.run_id
        assert active.model_name == name
    runs = wh.query("SELECT model_name, is_champion FROM mlops.training_runs ORDER BY 1")
    assert runs == [{"model_name": n, "is_champion": True} for n in names]

    served = valid.iloc[:120].reset_index(drop=True)
    for name in names:
        out = served[features].copy()
        out.insert(0, "scored_at", pd.Timestamp(DAY) + pd.Timedelta(hours=9))
        out.insert(0, "req_id", [f"{name}-{i}" for i in range(len(served))])
        out["p_benign"] = model.predict_proba(served[features])[:, 1]
        user.write_table(f"serving.{name}_predictions", out)
        user.materialize([*PRODUCTION, *DRIFT], model=name, day=DAY)
    reports = wh.query(
        "SELECT DISTINCT model_name, report_path FROM mlops.ml_feature_drift_detection "
        "ORDER BY model_name"
    )
    assert [r["model_name"] for r in reports] == list(names)
    # Each declaration's report lives in its own MLflow monitoring run.
    assert reports[0]["report_path"] != reports[1]["report_path"], reports
