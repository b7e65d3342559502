"""The demo's users: a data science team and the serving systems of their two models.

Nothing here is part of the platform. It plays the parts a real user plays, the way a real user
would: history loaded into a warehouse table, a scikit-learn model trained and registered with
a plain MLflow script, and serving systems that score traffic and write predictions (and,
later, labels) into the sources the models' YAML declarations name.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_assets.lib import demo_data
from mlops_assets.storage.warehouse import Warehouse

WINE = "wine_cultivar"
MATCH = "match_outcome"


def write_table(wh: Warehouse, table: str, frame: pd.DataFrame, *, replace: bool = False) -> None:
    """Append `frame` to `table`, creating it from the frame's dtypes the first time."""
    schema, name = table.split(".")
    types = {c: _sql_type(frame[c]) for c in frame.columns}
    columns = ", ".join(f'"{c}" {t}' for c, t in types.items())
    with wh.transaction() as tx:
        tx.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        if replace:
            tx.execute(f'DROP TABLE IF EXISTS "{schema}"."{name}"')
        tx.execute(f'CREATE TABLE IF NOT EXISTS "{schema}"."{name}" ({columns})')
        tx.insert_frame(table, frame)


def _sql_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "BOOLEAN"
    if pd.api.types.is_integer_dtype(series):
        return "BIGINT"
    if pd.api.types.is_float_dtype(series):
        return "DOUBLE PRECISION"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "TIMESTAMP"
    return "TEXT"


# ------------------------------------------------------------------ match_outcome (binary)


def load_match_history(wh: Warehouse, *, end: dt.date, n_rows: int = 8000, seed: int = 7) -> int:
    """The football data team's history table, which the model's recipe trains on."""
    frame = demo_data.training_history(n_rows=n_rows, seed=seed, end=end)
    write_table(wh, "demo.match_history", frame, replace=True)
    return len(frame)


def serve_matches(
    wh: Warehouse, predictor, day: dt.date, *, drift: demo_data.DriftSchedule, n_rows: int = 1000
) -> pd.DataFrame:
    """Score the day's matches and write them to demo.match_predictions (no outcomes yet)."""
    traffic = demo_data.production_day(day=day, n_rows=n_rows, seed=7, drift=drift)
    scores = predictor.score(traffic)
    rows = traffic[["match_id", "match_date", *demo_data.FEATURES]].assign(p_home_win=scores.proba)
    write_table(wh, "demo.match_predictions", rows)
    return traffic


def settle_matches(wh: Warehouse, traffic: pd.DataFrame) -> None:
    """Results arrive after the matches: demo.match_results, joined by match id."""
    results = traffic[["match_id", demo_data.TARGET]].assign(
        settled_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)
    )
    write_table(wh, "demo.match_results", results)


# ------------------------------------------------------------------ wine_cultivar (multiclass)


def _wine() -> pd.DataFrame:
    from sklearn.datasets import load_wine

    data = load_wine(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace("/", "_").replace(" ", "_"))
    return frame.rename(columns={"target": "cultivar"})


def train_and_register_wine(tracking_uri: str, wh: Warehouse) -> tuple[str, object]:
    """The data science team's own script: plain scikit-learn and MLflow, no platform code.

    Returns the registered version (the alias `champion` points at it) and the fitted model,
    which the team's serving system uses. Validation rows go to
    demo.wine_validation, which the model's YAML names as its baseline source.
    """
    import mlflow
    import sklearn
    import skops
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = _wine().sample(frac=1.0, random_state=3).reset_index(drop=True)
    features = [c for c in frame.columns if c != "cultivar"]
    train, valid = frame.iloc[:110], frame.iloc[110:]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.5))
    model.fit(train[features], train["cultivar"])
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("wine_team")
    with mlflow.start_run(run_name="wine-logreg"):
        mlflow.log_params({"C": 0.5, "model": "logistic regression"})
        mlflow.log_metric("valid_accuracy", float(model.score(valid[features], valid["cultivar"])))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(valid[features], model.predict(valid[features])),
            registered_model_name=WINE,
            # Pinned as teams do; left out, MLflow infers them by loading the model in a
            # subprocess (seconds the demo would spend on the team's side of the story).
            pip_requirements=[
                f"scikit-learn=={sklearn.__version__}",
                f"skops=={skops.__version__}",
            ],
        )
    version = str(info.registered_model_version)
    mlflow.MlflowClient().set_registered_model_alias(WINE, "champion", version)
    write_table(
        wh,
        "demo.wine_validation",
        valid.assign(cultivar=valid["cultivar"].astype(str)),
        replace=True,
    )
    return version, model


def serve_wine(
    home: Path, model, day: dt.date, *, drift_from: dt.date | None, n_rows: int = 400
) -> pd.DataFrame:
    """Score the day's requests and write one Parquet batch; labels come later (label_wine)."""
    rng = np.random.default_rng(day.toordinal())
    base = _wine()
    rows = base.sample(n=n_rows, replace=True, random_state=day.toordinal()).reset_index(drop=True)
    features = [c for c in rows.columns if c != "cultivar"]
    noise = rng.normal(0, 0.05, size=(n_rows, len(features))) * rows[features].std().to_numpy()
    rows[features] = rows[features].to_numpy() + noise
    if drift_from and day >= drift_from:
        # A new supplier's barrels: more alcohol and colour, which the model reads as cultivar 0.
        rows["alcohol"] += 0.9
        rows["color_intensity"] += 2.0
    proba = model.predict_proba(rows[features])
    classes = [str(c) for c in model.classes_]
    out = rows[features].copy()
    out.insert(
        0,
        "requested_at",
        pd.Timestamp(day) + pd.to_timedelta(rng.integers(0, 86_399, n_rows), unit="s"),
    )
    out.insert(0, "request_id", [f"w{day:%Y%m%d}-{i:05d}" for i in range(n_rows)])
    for i, cls in enumerate(classes):
        out[f"p_class_{cls}"] = proba[:, i]
    out["predicted_cultivar"] = np.asarray(classes)[proba.argmax(axis=1)]
    folder = home / "demo_serving" / WINE / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    out.to_parquet(folder / f"batch-{day:%Y%m%d}.parquet", index=False)
    return rows.assign(request_id=out["request_id"])


def label_wine(home: Path, served: pd.DataFrame, day: dt.date) -> None:
    folder = home / "demo_serving" / WINE / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    labels = pd.DataFrame(
        {"request_id": served["request_id"], "cultivar": served["cultivar"].astype(str)}
    )
    labels.to_parquet(folder / f"labels-{day:%Y%m%d}.parquet", index=False)
