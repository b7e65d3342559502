from __future__ import annotations

import datetime

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from mlops_assets.lib.demo_data import (
    CATEGORICAL_FEATURES,
    CATEGORY_LEVELS,
    FEATURES,
    NOMINAL_SD,
    NUMERIC_FEATURES,
    ODDS_COLUMN,
    TARGET,
    DriftSchedule,
    production_day,
    training_history,
)

END = datetime.date(2025, 3, 1)
DRIFT_DAY = END + datetime.timedelta(days=7)
COLUMNS = ["match_id", "match_date", *FEATURES, TARGET]
DRIFTED_NUMERIC = {"home_goals_avg": 1.0, "away_goals_avg": 1.0, "rest_days_diff": -1.0}
UNDRIFTED_INPUTS = [
    c for c in FEATURES if c not in DRIFTED_NUMERIC and c not in {"league", ODDS_COLUMN}
]


def _day(offset: int) -> datetime.date:
    return END + datetime.timedelta(days=offset)


def _model_input(frame: pd.DataFrame) -> pd.DataFrame:
    x = frame[list(FEATURES)].copy()
    for name in CATEGORICAL_FEATURES:
        x[name] = pd.Categorical(x[name], categories=CATEGORY_LEVELS[name])
    return x


def _roi(prob: np.ndarray, odds: np.ndarray, outcome: np.ndarray) -> float:
    bets = prob * odds > 1.0
    assert bets.sum() > 50, "too few value bets for a meaningful ROI"
    profit = np.where(outcome[bets] == 1, odds[bets] - 1.0, -1.0)
    return float(profit.sum() / bets.sum())


def _score(model: lgb.LGBMClassifier, frame: pd.DataFrame) -> tuple[float, float]:
    prob = model.predict_proba(_model_input(frame))[:, 1]
    outcome = frame[TARGET].to_numpy()
    accuracy = float(((prob > 0.5).astype(int) == outcome).mean())
    return accuracy, _roi(prob, frame[ODDS_COLUMN].to_numpy(), outcome)


def _fit(frame: pd.DataFrame) -> lgb.LGBMClassifier:
    model = lgb.LGBMClassifier(
        n_estimators=100,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=40,
        random_state=0,
        n_jobs=1,
        verbose=-1,
    )
    return model.fit(_model_input(frame), frame[TARGET])


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return training_history(n_rows=8000, seed=7, end=END)


@pytest.fixture(scope="module")
def model(history: pd.DataFrame) -> lgb.LGBMClassifier:
    return _fit(history)


def test_feature_catalogue_is_consistent() -> None:
    assert set(FEATURES.values()) == {"numeric", "categorical"}
    assert [n for n, k in FEATURES.items() if k == "numeric"] == NUMERIC_FEATURES
    assert [n for n, k in FEATURES.items() if k == "categorical"] == CATEGORICAL_FEATURES
    assert FEATURES[ODDS_COLUMN] == "numeric"
    assert TARGET not in FEATURES
    assert len(NUMERIC_FEATURES) >= 8
    assert len(CATEGORICAL_FEATURES) >= 3
    assert set(CATEGORY_LEVELS) == set(CATEGORICAL_FEATURES)
    assert len(CATEGORY_LEVELS["league"]) == 6


def test_training_history_is_reproducible_per_seed() -> None:
    first = training_history(n_rows=500, seed=3, end=END)
    pd.testing.assert_frame_equal(first, training_history(n_rows=500, seed=3, end=END))
    other = training_history(n_rows=500, seed=4, end=END)
    assert not first[NUMERIC_FEATURES].equals(other[NUMERIC_FEATURES])


def test_production_day_is_reproducible_per_seed() -> None:
    first = production_day(day=_day(2), n_rows=300, seed=3)
    pd.testing.assert_frame_equal(first, production_day(day=_day(2), n_rows=300, seed=3))
    other = production_day(day=_day(2), n_rows=300, seed=4)
    assert not first[NUMERIC_FEATURES].equals(other[NUMERIC_FEATURES])
    next_day = production_day(day=_day(3), n_rows=300, seed=3)
    assert not first[NUMERIC_FEATURES].equals(next_day[NUMERIC_FEATURES])


def test_production_day_does_not_depend_on_generation_order() -> None:
    drift = DriftSchedule(feature_drift_from=_day(2), concept_drift_from=_day(3))
    days = [_day(k) for k in range(1, 6)]
    forward = {d: production_day(day=d, n_rows=200, drift=drift) for d in days}
    training_history(n_rows=100, end=END)
    backward = {d: production_day(day=d, n_rows=200, drift=drift) for d in reversed(days)}
    for d in days:
        pd.testing.assert_frame_equal(forward[d], backward[d])
    # A datetime stands for its calendar day.
    at_noon = datetime.datetime.combine(days[2], datetime.time(12, 0))
    pd.testing.assert_frame_equal(
        production_day(day=at_noon, n_rows=200, drift=drift), forward[days[2]]
    )


def _check_frame(frame: pd.DataFrame, n_rows: int) -> None:
    assert list(frame.columns) == COLUMNS
    assert len(frame) == n_rows
    assert not frame.isna().any().any()
    assert frame["match_id"].is_unique
    assert frame["match_id"].map(type).eq(str).all()
    assert frame["match_date"].dtype == "datetime64[ns]"
    assert (frame["match_date"] == frame["match_date"].dt.normalize()).all()
    for name in NUMERIC_FEATURES:
        assert frame[name].dtype == np.float64, name
        assert np.isfinite(frame[name]).all(), name
    for name in CATEGORICAL_FEATURES:
        assert frame[name].dtype == object, name
        assert set(frame[name]) <= set(CATEGORY_LEVELS[name]), name
    assert pd.api.types.is_integer_dtype(frame[TARGET])
    assert set(frame[TARGET].unique()) <= {0, 1}
    np.testing.assert_allclose(frame["elo_diff"], frame["home_elo"] - frame["away_elo"])


def test_training_history_shape_and_dates(history: pd.DataFrame) -> None:
    _check_frame(history, 8000)
    dates = history["match_date"].dt.date
    assert dates.min() >= END - datetime.timedelta(days=365)
    assert dates.max() < END
    assert dates.nunique() > 330
    assert history["match_date"].is_monotonic_increasing
    for name in CATEGORICAL_FEATURES:
        assert set(history[name]) == set(CATEGORY_LEVELS[name]), name


def test_production_day_shape_and_ids(history: pd.DataFrame) -> None:
    frames = [production_day(day=_day(k), n_rows=400) for k in range(3)]
    for k, frame in enumerate(frames):
        _check_frame(frame, 400)
        assert (frame["match_date"].dt.date == _day(k)).all()
    ids = pd.concat([history["match_id"], *(f["match_id"] for f in frames)])
    assert ids.is_unique


def test_outcome_rate_is_plausible(history: pd.DataFrame) -> None:
    assert 0.35 <= history[TARGET].mean() <= 0.6
    day = production_day(day=_day(1), n_rows=2000)
    assert 0.35 <= day[TARGET].mean() <= 0.6


def test_odds_carry_a_bookmaker_margin_of_about_five_percent(history: pd.DataFrame) -> None:
    odds = history[ODDS_COLUMN]
    assert (odds > 1.0).all()
    assert odds.median() == pytest.approx(2.1, abs=0.5)
    # Odds must be informative, not just a constant price: short odds win far more often.
    short = history[TARGET][odds < odds.quantile(0.25)].mean()
    long = history[TARGET][odds > odds.quantile(0.75)].mean()
    assert short - long > 0.4
    implied_margin = (1.0 / odds).mean() / history[TARGET].mean() - 1.0
    assert 0.02 <= implied_margin <= 0.09


def test_nominal_sd_matches_the_generated_spread(history: pd.DataFrame) -> None:
    for name, sd in NOMINAL_SD.items():
        assert history[name].std() == pytest.approx(sd, rel=0.1), name


def test_drift_schedule_ramps_linearly() -> None:
    schedule = DriftSchedule(
        feature_drift_from=_day(8), concept_drift_from=_day(10), concept_strength=0.6
    )
    assert [schedule.feature_fraction(_day(k)) for k in (7, 8, 9, 10, 20)] == pytest.approx(
        [0.0, 1 / 3, 2 / 3, 1.0, 1.0]
    )
    assert [schedule.concept_fraction(_day(k)) for k in (9, 10, 12, 30)] == pytest.approx(
        [0.0, 0.2, 0.6, 0.6]
    )
    assert DriftSchedule().feature_fraction(_day(100)) == 0.0
    assert DriftSchedule(feature_drift_from=_day(1), ramp_days=1).feature_fraction(_day(1)) == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [{"concept_strength": -0.1}, {"ramp_days": -1}, {"feature_shift_sd": float("nan")}],
)
def test_drift_schedule_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DriftSchedule(**kwargs)


def test_feature_drift_shifts_only_the_documented_features_from_its_day() -> None:
    drift = DriftSchedule(feature_drift_from=DRIFT_DAY, feature_shift_sd=0.75, ramp_days=3)
    before = DRIFT_DAY - datetime.timedelta(days=1)
    pd.testing.assert_frame_equal(
        production_day(day=before, drift=drift), production_day(day=before)
    )

    for offset, fraction in [(0, 1 / 3), (2, 1.0), (10, 1.0)]:
        day = DRIFT_DAY + datetime.timedelta(days=offset)
        clean = production_day(day=day, n_rows=3000)
        drifted = production_day(day=day, n_rows=3000, drift=drift)
        pd.testing.assert_frame_equal(drifted[UNDRIFTED_INPUTS], clean[UNDRIFTED_INPUTS])
        for name, sign in DRIFTED_NUMERIC.items():
            shift_in_sd = (drifted[name].mean() - clean[name].mean()) / NOMINAL_SD[name]
            assert shift_in_sd == pytest.approx(sign * 0.75 * fraction, abs=0.02), (name, offset)
        gain = (drifted["league"] == "eredivisie").mean() - (clean["league"] == "eredivisie").mean()
        assert gain == pytest.approx(0.15 * fraction, abs=0.03), offset
        # Only matches that moved league may have moved into the growing one.
        moved = drifted["league"] != clean["league"]
        assert (drifted.loc[moved, "league"] == "eredivisie").all()
        # Covariate shift only: odds move through the inputs, and only a little.
        assert abs(drifted[ODDS_COLUMN].median() - clean[ODDS_COLUMN].median()) < 0.3


def test_concept_drift_keeps_inputs_but_changes_outcomes() -> None:
    drift = DriftSchedule(concept_drift_from=DRIFT_DAY, ramp_days=1)
    before = DRIFT_DAY - datetime.timedelta(days=1)
    pd.testing.assert_frame_equal(
        production_day(day=before, drift=drift), production_day(day=before)
    )
    clean = production_day(day=DRIFT_DAY, n_rows=2000)
    drifted = production_day(day=DRIFT_DAY, n_rows=2000, drift=drift)
    inputs = [c for c in FEATURES if c != ODDS_COLUMN]
    pd.testing.assert_frame_equal(drifted[inputs], clean[inputs])
    assert (drifted[TARGET] != clean[TARGET]).mean() > 0.1
    assert 0.35 <= drifted[TARGET].mean() <= 0.6
    # Under the old relation stronger home sides win more; after the change they win less.
    stronger = clean["elo_diff"] > 100
    weaker = clean["elo_diff"] < -100
    assert clean[TARGET][stronger].mean() > clean[TARGET][weaker].mean() + 0.2
    assert drifted[TARGET][stronger].mean() < drifted[TARGET][weaker].mean()


def test_lightgbm_learns_the_history(history: pd.DataFrame) -> None:
    # Hold out the latest quarter, as a time-ordered split would in production.
    cut = int(len(history) * 0.75)
    model = _fit(history.iloc[:cut])
    accuracy, roi = _score(model, history.iloc[cut:])
    assert accuracy >= 0.62
    assert accuracy <= 0.80, "the task became too easy for the demo"
    # A decent model finds some value against a 5% margin, but no gold mine.
    assert -0.05 <= roi <= 0.25


def test_full_concept_drift_hurts_a_model_trained_before_it(model: lgb.LGBMClassifier) -> None:
    drift = DriftSchedule(concept_drift_from=DRIFT_DAY, concept_strength=1.0, ramp_days=1)
    days = [DRIFT_DAY + datetime.timedelta(days=k) for k in range(3)]
    clean = pd.concat([production_day(day=d) for d in days], ignore_index=True)
    drifted = pd.concat([production_day(day=d, drift=drift) for d in days], ignore_index=True)
    clean_accuracy, clean_roi = _score(model, clean)
    drifted_accuracy, drifted_roi = _score(model, drifted)
    assert clean_accuracy >= 0.62
    assert clean_accuracy - drifted_accuracy >= 0.06
    assert drifted_roi < clean_roi
    assert drifted_roi < -0.05


def test_partial_concept_drift_hurts_less_than_full(model: lgb.LGBMClassifier) -> None:
    schedule = DriftSchedule(concept_drift_from=DRIFT_DAY, ramp_days=3)
    clean_accuracy, _ = _score(model, production_day(day=DRIFT_DAY, n_rows=3000))
    first_accuracy, _ = _score(model, production_day(day=DRIFT_DAY, n_rows=3000, drift=schedule))
    full_day = DRIFT_DAY + datetime.timedelta(days=2)
    full_accuracy, _ = _score(model, production_day(day=full_day, n_rows=3000, drift=schedule))
    assert full_accuracy < first_accuracy < clean_accuracy
