"""Issue 10 acceptance: the inference_log_sensor picks up what serving systems write, on both
warehouse engines.

The sensor of the real code location is ticked with `dg.build_sensor_context` on a persistent
Dagster instance (a temporary DAGSTER_HOME), its cursor passed from tick to tick as the daemon
passes it; a "daemon restart" is a new instance object on the same home with the stored cursor.
Predictions arrive as Parquet batches (the int-coded categorical `region` written as int64),
labels two days later in a warehouse table with a `labelled_at` column.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_assets_tests.acceptance.conftest import (
    DRIFT,
    PRODUCTION,
    TRAINING,
    UserPlatform,
    new_instance,
)

# Label pick-up looks back 90 days from today: the days are recent ones.
TODAY = dt.date.today()
D0, D1, D2, D3 = (TODAY - dt.timedelta(days=n) for n in (12, 10, 9, 8))
ROWS = 300
FEATURES = ["x0", "x1", "region"]


def _population(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    region = rng.integers(0, 4, n)
    x0, x1 = rng.normal(size=n), rng.normal(size=n)
    logit = 1.5 * x0 - x1 + 0.6 * (region == 2)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"x0": x0, "x1": x1, "region": region, "y": y})


class Ticker:
    """Ticks the sensor the way the daemon does: stored cursor in, new cursor out."""

    def __init__(self, user: UserPlatform, name: str):
        self.user, self.name, self.cursor = user, name, None

    def tick(self) -> tuple[set[str], str | None]:
        from mlops_assets.defs.production.sensors import inference_log_sensor

        defs = self.user.defs()
        with dg.build_sensor_context(
            instance=self.user.instance,
            cursor=self.cursor,
            resources={k: defs.resources[k] for k in ("warehouse", "models")},
        ) as context:
            result = inference_log_sensor(context)
        self.cursor = result.cursor
        skip = result.skip_reason.skip_message if result.skip_reason else None
        days = set()
        for request in result.run_requests or []:
            keys = request.partition_key.keys_by_dimension
            if keys["model"] == self.name:
                days.add(keys["date"])
        return days, skip

    def run(self, days: set[str]) -> None:
        for day in sorted(days):
            self.user.materialize([*PRODUCTION, *DRIFT], model=self.name, day=day)


def _batch(user: UserPlatform, name: str, frame: pd.DataFrame, file: str, model) -> pd.DataFrame:
    """The serving system scores rows and writes one Parquet batch (region stays int64)."""
    proba = model.predict_proba(frame[FEATURES].astype(float))[:, 1]
    out = frame[["rid", "ts", *FEATURES]].assign(p_yes=proba)
    folder = user.home / "serving" / name
    folder.mkdir(parents=True, exist_ok=True)
    out.to_parquet(folder / file, index=False)
    return out


def _day(frame: pd.DataFrame, day: dt.date, name: str, start: int = 0) -> pd.DataFrame:
    rows = frame.sample(n=ROWS, replace=True, random_state=day.toordinal()).reset_index(drop=True)
    rows["ts"] = pd.Timestamp(day) + pd.to_timedelta(np.arange(ROWS) * 60, unit="s")
    rows["rid"] = [f"{name}-{day:%m%d}-{start + i:04d}" for i in range(ROWS)]
    return rows


def test_sensor_picks_up_predictions_and_late_labels(user: UserPlatform):
    from sklearn.linear_model import LogisticRegression

    name = f"churn_{uuid.uuid4().hex[:6]}"
    history = _population(4000, seed=1)
    # The data team's table keeps region as a float column (1.0), serving writes int (1).
    user.write_table("lake.churn_history", history.astype({"region": float}), replace=True)
    user.declare(
        name,
        {
            "name": name,
            "task": "binary",
            "model": {
                "train": {
                    "source": {"table": "lake.churn_history"},
                    "estimator": "sklearn.linear_model.LogisticRegression",
                }
            },
            "columns": {
                "id": "rid",
                "timestamp": "ts",
                "target": "y",
                "probability": "p_yes",
                "labelled_at": "labelled_at",
                "features": {"x0": "numeric", "x1": "numeric", "region": "categorical"},
            },
            "baseline": {"n_boot": 50, "reference_rows": 1000},
            "production": {
                "predictions": {"parquet": f"serving/{name}"},
                "labels": {"table": f"serving.{name}_labels"},
            },
            "monitoring": {"min_labelled": 100},
        },
    )
    serving_model = LogisticRegression().fit(history[FEATURES].astype(float), history["y"])
    ticker = Ticker(user, name)
    user.add_models([name])

    # Predictions before any baseline: skipped, naming the model; the cursor stays put.
    early = _day(history, D1, name)
    _batch(user, name, early, "batch-001.parquet", serving_model)
    days, skip = ticker.tick()
    assert days == set()
    assert skip and name in skip and "baseline" in skip, skip
    assert name not in json.loads(ticker.cursor or "{}")

    user.materialize(TRAINING, model=name)

    # New predictions for two days -> exactly those two partitions.
    late_d2 = _day(history, D2, name)
    _batch(user, name, late_d2, "batch-002.parquet", serving_model)
    days, skip = ticker.tick()
    assert days == {D1.isoformat(), D2.isoformat()}, skip
    ticker.run(days)
    assert ticker.tick()[0] == set()  # nothing new: nothing requested
    unlabelled = user.metrics(name, D1)["accuracy"]
    # No labels yet: the metric is estimated from the calibrated probabilities, and says so.
    assert unlabelled["basis"] == "estimated" and unlabelled["value"] is not None
    assert unlabelled["n_settled"] == 0

    # Daemon restart: a new instance on the same DAGSTER_HOME, the stored cursor.
    user.instance.dispose()
    user.instance = new_instance(user.dagster_home)
    assert user.instance.has_dynamic_partition("models", name)
    # An out-of-order batch: an older day arrives after newer ones.
    old = _day(history, D0, name)
    _batch(user, name, old, "batch-003.parquet", serving_model)
    days, _ = ticker.tick()
    assert days == {D0.isoformat()}
    ticker.run(days)

    # Re-delivered rows (same ids, a new file): the day again, and no duplicates.
    _batch(user, name, early, "batch-004-retry.parquet", serving_model)
    days, _ = ticker.tick()
    assert days == {D1.isoformat()}
    ticker.run(days)
    table = f'inference."{name}__predictions"'
    count = user.wh.query(
        f"SELECT COUNT(*) AS n, COUNT(DISTINCT prediction_id) AS d FROM {table} "  # noqa: S608
        "WHERE prediction_date = :d",
        {"d": D1},
    )[0]
    assert count == {"n": ROWS, "d": ROWS}

    # Labels two days later -> the days with unlabelled predictions, then a verdict for D1.
    labels = pd.DataFrame(
        {"rid": early["rid"], "y": early["y"], "labelled_at": pd.Timestamp(D1 + dt.timedelta(2))}
    )
    user.write_table(f"serving.{name}_labels", labels)
    days, _ = ticker.tick()
    assert D1.isoformat() in days and days <= {d.isoformat() for d in (D0, D1, D2)}
    ticker.run(days)
    judged = user.metrics(name, D1)["accuracy"]
    assert judged["level"] in ("ok", "warning", "critical") and judged["value"] is not None
    assert judged["n_settled"] == ROWS

    # The int-coded categorical: int64 in Parquet, float in the reference; no drift.
    region = user.wh.query(
        "SELECT verdict FROM mlops.ml_feature_drift_detection WHERE model_name = :m "
        "AND partition_date = :d AND feature = 'region'",
        {"m": name, "d": D1},
    )
    assert region and region[0]["verdict"] != "drift", region
    stored = user.wh.query(
        f"SELECT DISTINCT region FROM {table} ORDER BY 1"  # noqa: S608
    )
    assert [r["region"] for r in stored] == ["0", "1", "2", "3"]

    # A batch with bad rows: good rows land, bad ones are quarantined with reasons, WARN.
    bad_day = _day(history, D3, name)
    out = bad_day[["rid", "ts", *FEATURES]].assign(
        p_yes=serving_model.predict_proba(bad_day[FEATURES].astype(float))[:, 1]
    )
    out.loc[0, "rid"] = None
    out.loc[1, "p_yes"] = 1.7
    out.loc[2, "x0"] = np.nan  # a missing numeric feature is allowed (drift counts it)
    out.to_parquet(user.home / "serving" / name / "batch-005.parquet", index=False)
    days, _ = ticker.tick()
    assert days == {D3.isoformat()}
    result = user.materialize(PRODUCTION, model=name, day=D3)
    check = {c.check_name: c for c in result.get_asset_check_evaluations()}["no_quarantined_rows"]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["quarantined_predictions"].value == 2
    reasons = user.wh.query(
        "SELECT reason, batch_id FROM mlops.quarantine WHERE model_name = :m ORDER BY reason",
        {"m": name},
    )
    assert len(reasons) == 2, reasons
    assert any("id rid missing" in r["reason"] for r in reasons), reasons
    assert any("p_yes outside [0, 1]" in r["reason"] for r in reasons), reasons
    assert all(r["batch_id"] for r in reasons)
    landed = user.wh.query(
        f"SELECT COUNT(*) AS n FROM {table} WHERE prediction_date = :d",  # noqa: S608
        {"d": D3},
    )[0]["n"]
    assert landed == ROWS - 2


@pytest.mark.parametrize("engine", ["embedded"])
def test_a_model_without_baseline_is_named_and_its_cursor_waits(user: UserPlatform):
    """Predictions in a table source before the model has a baseline: tick after tick the
    skip reason names the model and its cursor does not advance (nothing is lost)."""
    name = f"pending_{uuid.uuid4().hex[:6]}"
    frame = _population(50, seed=3)
    user.write_table("lake.pending_history", frame, replace=True)
    user.declare(
        name,
        {
            "name": name,
            "task": "binary",
            "model": {"train": {"source": {"table": "lake.pending_history"}}},
            "columns": {
                "id": "rid",
                "timestamp": "ts",
                "target": "y",
                "probability": "p_yes",
                "features": {"x0": "numeric", "x1": "numeric", "region": "categorical"},
            },
            "production": {"predictions": {"table": f"serving.{name}_predictions"}},
        },
    )
    rows = _day(frame, D1, name).assign(p_yes=0.5)[["rid", "ts", *FEATURES, "p_yes"]]
    user.write_table(f"serving.{name}_predictions", rows)
    ticker = Ticker(user, name)
    for _ in range(2):
        days, skip = ticker.tick()
        assert days == set()
        assert skip and f"{name}: no baseline yet" in skip, skip
        assert name not in json.loads(ticker.cursor or "{}")


@pytest.mark.parametrize("engine", ["postgres"])
def test_a_writer_that_commits_last_below_the_mark_is_picked_up_with_a_lookback(
    user: UserPlatform,
):
    """Two serving writers insert into a PostgreSQL table whose `written_at` defaults to
    now(), the start of each transaction (the outcome, `y`, comes later). The one that began
    first commits after a tick has seen the other's rows: with `lookback_seconds` in the
    model's YAML, the next tick requests their day alone, and the run stores them."""
    import psycopg

    name = f"late_{uuid.uuid4().hex[:6]}"
    history = _population(600, seed=5)
    user.write_table("lake.late_history", history, replace=True)
    table = f"serving.{name}_predictions"
    user.wh.execute("CREATE SCHEMA IF NOT EXISTS serving")
    user.wh.execute(
        f"CREATE TABLE {table} (rid TEXT, ts TIMESTAMP, x0 DOUBLE PRECISION, "
        "x1 DOUBLE PRECISION, region BIGINT, p_yes DOUBLE PRECISION, y INTEGER, "
        "written_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    user.declare(
        name,
        {
            "name": name,
            "task": "binary",
            "model": {"train": {"source": {"table": "lake.late_history"}}},
            "columns": {
                "id": "rid",
                "timestamp": "ts",
                "target": "y",
                "probability": "p_yes",
                "loaded_at": "written_at",
                "features": {"x0": "numeric", "x1": "numeric", "region": "categorical"},
            },
            "baseline": {"n_boot": 20, "reference_rows": 300},
            "production": {"predictions": {"table": table, "lookback_seconds": 120}},
        },
    )
    user.materialize(TRAINING, model=name)
    ticker = Ticker(user, name)
    insert = (
        f"INSERT INTO {table} (rid, ts, x0, x1, region, p_yes) "  # noqa: S608
        "SELECT 'r-' || %s || '-' || i, %s + i * interval '1 minute', 0.1, -0.2, i %% 4, 0.7 "
        "FROM generate_series(1, 50) AS i"
    )
    dsn = user.wh.dsn
    with psycopg.connect(dsn) as slow, psycopg.connect(dsn) as quick:
        slow.execute(insert, ("slow", dt.datetime.combine(D1, dt.time(8))))  # not committed
        quick.execute(insert, ("quick", dt.datetime.combine(D2, dt.time(8))))
        quick.commit()
        days, _ = ticker.tick()
        assert days == {D2.isoformat()}
        ticker.run(days)
        slow.commit()
    days, _ = ticker.tick()
    assert days == {D1.isoformat()}
    ticker.run(days)
    assert ticker.tick()[0] == set()
    stored = user.wh.query(
        f'SELECT prediction_date AS d, COUNT(*) AS n FROM inference."{name}__predictions" '  # noqa: S608
        "GROUP BY 1 ORDER BY 1"
    )
    assert [(r["d"], r["n"]) for r in stored] == [(D1, 50), (D2, 50)]
