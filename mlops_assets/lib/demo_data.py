"""Seeded, reproducible demo data: football matches with bookmaker odds on the home win.

Each row is one match. The target ``outcome`` is 1 when the home team wins (a draw or an away
win is 0). ``odds_home`` is the decimal price a bookmaker offers on the home win; it is a model
input and also what a stake of 1 would return, so a model's value bets can be scored by ROI.

How the truth is built
    A latent logit combines the features with non-linearity and interactions that a linear
    model misses: the Elo effect is damped in rain and snow, the form and goal-average gaps
    saturate (``tanh``), the rest-day gap is clipped, and home advantage depends on the league
    and the kickoff slot. Two unobserved per-match terms (team news) are added, and the
    outcome is a Bernoulli draw of ``sigmoid(logit)``.

How the odds are built
    The bookmaker knows one of the two team-news terms but prices the rest with shortcuts: one
    average home advantage, an average weather effect and straight lines instead of the
    saturating terms, plus a little noise of its own. Its probability is shrunk towards even
    money so that it stays calibrated, then a 5% margin is added:
    ``odds = 1 / (p_book * 1.05)``, rounded to two decimals and kept within [1.01, 30].
    A model that learns the shortcuts' errors finds value bets with a small positive ROI.

Feature drift (``DriftSchedule.feature_drift_from``)
    Numeric: ``home_goals_avg`` and ``away_goals_avg`` rise and ``rest_days_diff`` falls, each
    by ``feature_shift_sd`` times the feature's nominal standard deviation (``NOMINAL_SD``).
    Categorical: the ``eredivisie`` share of ``league`` rises by 15 percentage points (8% ->
    23%), the other leagues giving up share in proportion. No other input is moved directly.
    The truth is unchanged (covariate shift only), so ``odds_home`` and ``outcome`` move only
    through the drifted inputs: slightly, because the two goal averages rise together.

Concept drift (``DriftSchedule.concept_drift_from``)
    Inputs keep their distribution but the relationship changes: the Elo effect is reversed
    (underdogs prosper) and the league and kickoff home-advantage patterns turn around. The
    bookmaker prices in 80% of the change, so a model trained before it loses accuracy and
    bets into prices that are right where the model is wrong.

Both drifts grow linearly over ``ramp_days`` days from their start day: with the default of
three, the first drifted day carries a third of the full effect and the third day all of it.

Determinism
    `training_history` draws from a stream keyed on ``(seed, end)`` and each production day
    from its own stream keyed on ``(seed, day)``, so a day's frame does not depend on which
    other days were generated or in what order. Drift is applied on top of the same draws, so
    a drifted day and the same day without drift are paired match for match, which keeps
    drift comparisons free of sampling noise.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "CATEGORICAL_FEATURES",
    "CATEGORY_LEVELS",
    "FEATURES",
    "NOMINAL_SD",
    "NUMERIC_FEATURES",
    "ODDS_COLUMN",
    "TARGET",
    "DriftSchedule",
    "production_day",
    "training_history",
]

TARGET = "outcome"
ODDS_COLUMN = "odds_home"

FEATURES: dict[str, str] = {
    "home_elo": "numeric",
    "away_elo": "numeric",
    "elo_diff": "numeric",
    "home_form": "numeric",
    "away_form": "numeric",
    "home_goals_avg": "numeric",
    "away_goals_avg": "numeric",
    "rest_days_diff": "numeric",
    ODDS_COLUMN: "numeric",
    "league": "categorical",
    "weather": "categorical",
    "kickoff_slot": "categorical",
}
NUMERIC_FEATURES: list[str] = [name for name, kind in FEATURES.items() if kind == "numeric"]
CATEGORICAL_FEATURES: list[str] = [name for name, kind in FEATURES.items() if kind == "categorical"]

_LEAGUES = ("premier", "laliga", "seriea", "bundesliga", "ligue1", "eredivisie")
_LEAGUE_SHARES = np.array([0.24, 0.20, 0.18, 0.16, 0.14, 0.08])
# Home advantage differs by league in the truth; the bookmaker uses one value for all, which is
# one of the edges a tree model can learn.
_LEAGUE_HOME_ADV = np.array([0.25, 0.55, 0.45, 0.10, 0.65, -0.10])
_WEATHER = ("clear", "cloudy", "rain", "snow")
_WEATHER_SHARES = np.array([0.45, 0.30, 0.20, 0.05])
# Heavy pitches level the game: the stronger side's edge counts for less.
_WEATHER_ELO_FACTOR = np.array([1.0, 0.9, 0.45, 0.2])
_KICKOFF = ("early", "afternoon", "evening")
_KICKOFF_SHARES = np.array([0.25, 0.45, 0.30])
_KICKOFF_HOME_ADV = np.array([-0.25, 0.0, 0.30])

# Every level a categorical feature can take, for callers that build pandas categories.
CATEGORY_LEVELS: dict[str, tuple[str, ...]] = {
    "league": _LEAGUES,
    "weather": _WEATHER,
    "kickoff_slot": _KICKOFF,
}

_ELO_MEAN, _ELO_SD = 1500.0, 110.0
_GOALS_SD = 0.56
# Each side rests 2..7 days, uniformly: the gap's sd is sqrt(2 * (6**2 - 1) / 12).
_REST_SD = 2.42

# Standard deviations the feature shift is measured in; they follow from the generator below
# (e.g. goal averages: sqrt((0.004 * 110) ** 2 + 0.35 ** 2)).
NOMINAL_SD: dict[str, float] = {
    "home_goals_avg": _GOALS_SD,
    "away_goals_avg": _GOALS_SD,
    "rest_days_diff": _REST_SD,
}
_SHIFT_SIGN = {"home_goals_avg": 1.0, "away_goals_avg": 1.0, "rest_days_diff": -1.0}
_DRIFT_LEAGUE = "eredivisie"
_DRIFT_LEAGUE_SHARE_GAIN = 0.15

_BASE_LOGIT = -0.75
_ELO_COEF = 0.55  # per 100 Elo points
_FORM_COEF = 0.40
_GOALS_COEF = 0.50
_REST_COEF = 0.10
_KNOWN_NEWS_SD = 0.6
_UNKNOWN_NEWS_SD = 0.6

_BOOK_MARGIN = 0.05
_MIN_ODDS, _MAX_ODDS = 1.01, 30.0
# Least-squares slopes of the truth's tanh terms over the usual range of the gaps.
_BOOK_FORM_COEF = 0.75 * _FORM_COEF
_BOOK_GOALS_COEF = 0.8 * _GOALS_COEF
_BOOK_NOISE_SD = 0.2
# The bookmaker cannot see the unknown news nor its own shortcuts' errors; without shrinking,
# its prices would be overconfident. Tuned so that a logistic fit of outcome on the
# bookmaker's logit has a slope close to 1.
_BOOK_SHRINK = 0.88
# Share of a concept change the bookmaker has already priced in.
_BOOK_CONCEPT_ADAPTATION = 0.8

# At full concept strength the Elo effect becomes this multiple of its old value, and the league
# and kickoff home advantages turn around, so the edges a model learned before the change now
# point the wrong way. A concept change that only lowered home advantage would push the home-win
# rate down, which makes "no home win" easier to predict and barely hurts accuracy.
_CONCEPT_ELO_FACTOR = -1.0
_CONCEPT_LEAGUE_HOME_ADV = np.array([0.40, 0.25, 0.30, 0.50, 0.20, 0.60])
_CONCEPT_KICKOFF_HOME_ADV = np.array([0.15, 0.0, -0.20])

_TRAINING_STREAM = 0
_PRODUCTION_STREAM = 1
_HISTORY_DAYS = 365


@dataclass(frozen=True)
class DriftSchedule:
    """When and how strongly `production_day` drifts; the default is no drift at all.

    ``feature_shift_sd`` sizes the numeric feature shift in nominal standard deviations (the
    league-share change does not scale with it). ``concept_strength`` 1 is a change big enough
    to cost a model trained before it well over 6 accuracy points and turn its ROI clearly
    negative; 0 disables concept drift. ``ramp_days`` of 0 or 1 means no ramp.
    """

    feature_drift_from: datetime.date | None = None
    concept_drift_from: datetime.date | None = None
    feature_shift_sd: float = 0.75
    concept_strength: float = 1.0
    ramp_days: int = 3

    def __post_init__(self) -> None:
        if not np.isfinite(self.feature_shift_sd):
            raise ValueError(f"feature_shift_sd must be finite, got {self.feature_shift_sd}")
        if not (np.isfinite(self.concept_strength) and self.concept_strength >= 0.0):
            raise ValueError(f"concept_strength must be >= 0, got {self.concept_strength}")
        if self.ramp_days < 0:
            raise ValueError(f"ramp_days must be >= 0, got {self.ramp_days}")

    def feature_fraction(self, day: datetime.date) -> float:
        """Share of the full feature drift in force on `day` (0 before it starts)."""
        return _ramp(self.feature_drift_from, day, self.ramp_days)

    def concept_fraction(self, day: datetime.date) -> float:
        """Effective concept strength on `day`: `concept_strength` times the ramp share."""
        return self.concept_strength * _ramp(self.concept_drift_from, day, self.ramp_days)


def _ramp(start: datetime.date | None, day: datetime.date, ramp_days: int) -> float:
    if start is None:
        return 0.0
    start, day = _as_date(start), _as_date(day)
    if day < start:
        return 0.0
    if ramp_days <= 1:
        return 1.0
    return min(1.0, ((day - start).days + 1) / ramp_days)


def _as_date(value: datetime.date) -> datetime.date:
    # datetime is a subclass of date; drop the time so equal days seed equal streams.
    if isinstance(value, datetime.datetime):
        return value.date()
    if not isinstance(value, datetime.date):
        raise TypeError(f"expected a datetime.date, got {type(value).__name__}")
    return value


def _rng(seed: int, stream: int, key: int) -> np.random.Generator:
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream, key]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pick(u: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Index into `shares` for each uniform draw."""
    edges = np.cumsum(shares)
    edges[-1] = 1.0
    return np.minimum(np.searchsorted(edges, u, side="right"), len(shares) - 1)


def _blend(before: np.ndarray, after: np.ndarray, weight: float) -> np.ndarray:
    return before + (after - before) * weight


def _drift_league(league: np.ndarray, u: np.ndarray, feature_fraction: float) -> np.ndarray:
    """Move matches into the drift league so its share gains the full amount at fraction 1.

    Only matches that change league move, and only into the drift league, so the drifted frame
    stays paired with the undrifted one; the other leagues lose share in proportion.
    """
    target = _LEAGUES.index(_DRIFT_LEAGUE)
    move_rate = _DRIFT_LEAGUE_SHARE_GAIN * feature_fraction / (1.0 - _LEAGUE_SHARES[target])
    return np.where(u < move_rate, target, league)


def _simulate(
    rng: np.random.Generator, n: int, *, feature_fraction: float, shift_sd: float, concept: float
) -> pd.DataFrame:
    """One batch of matches; every random draw happens before drift is applied."""
    z = rng.standard_normal((n, 9))
    u = rng.random((n, 5))
    rest = rng.integers(2, 8, size=(n, 2))

    home_elo = np.round(_ELO_MEAN + _ELO_SD * z[:, 0], 1)
    away_elo = np.round(_ELO_MEAN + _ELO_SD * z[:, 1], 1)
    home_form = np.clip(1.35 + 0.0045 * (home_elo - _ELO_MEAN) + 0.45 * z[:, 2], 0.0, 3.0)
    away_form = np.clip(1.35 + 0.0045 * (away_elo - _ELO_MEAN) + 0.45 * z[:, 3], 0.0, 3.0)
    home_goals = np.clip(1.45 + 0.004 * (home_elo - _ELO_MEAN) + 0.35 * z[:, 4], 0.2, None)
    away_goals = np.clip(1.20 + 0.004 * (away_elo - _ELO_MEAN) + 0.35 * z[:, 5], 0.2, None)
    rest_diff = (rest[:, 0] - rest[:, 1]).astype(float)
    known_news = _KNOWN_NEWS_SD * z[:, 6]
    unknown_news = _UNKNOWN_NEWS_SD * z[:, 7]
    book_noise = _BOOK_NOISE_SD * z[:, 8]

    league = _drift_league(_pick(u[:, 0], _LEAGUE_SHARES), u[:, 4], feature_fraction)
    weather = _pick(u[:, 1], _WEATHER_SHARES)
    kickoff = _pick(u[:, 2], _KICKOFF_SHARES)

    shift = shift_sd * feature_fraction
    home_goals = home_goals + _SHIFT_SIGN["home_goals_avg"] * shift * NOMINAL_SD["home_goals_avg"]
    away_goals = away_goals + _SHIFT_SIGN["away_goals_avg"] * shift * NOMINAL_SD["away_goals_avg"]
    rest_diff = rest_diff + _SHIFT_SIGN["rest_days_diff"] * shift * NOMINAL_SD["rest_days_diff"]
    elo_diff = home_elo - away_elo

    def structure(concept_now: float, *, bookmaker: bool) -> np.ndarray:
        elo_effect = _ELO_COEF * (1.0 + (_CONCEPT_ELO_FACTOR - 1.0) * concept_now) / 100.0
        league_adv = _blend(_LEAGUE_HOME_ADV, _CONCEPT_LEAGUE_HOME_ADV, concept_now)
        kickoff_adv = _blend(_KICKOFF_HOME_ADV, _CONCEPT_KICKOFF_HOME_ADV, concept_now)
        if bookmaker:
            return (
                league_adv @ _LEAGUE_SHARES
                + kickoff_adv @ _KICKOFF_SHARES
                + elo_effect * (_WEATHER_ELO_FACTOR @ _WEATHER_SHARES) * elo_diff
                + _BOOK_FORM_COEF * (home_form - away_form)
                + _BOOK_GOALS_COEF * (home_goals - away_goals)
                + _REST_COEF * rest_diff
            )
        return (
            league_adv[league]
            + kickoff_adv[kickoff]
            + elo_effect * _WEATHER_ELO_FACTOR[weather] * elo_diff
            + _FORM_COEF * np.tanh(home_form - away_form)
            + _GOALS_COEF * np.tanh(home_goals - away_goals)
            + _REST_COEF * np.clip(rest_diff, -3.0, 3.0)
        )

    true_logit = _BASE_LOGIT + structure(concept, bookmaker=False) + known_news + unknown_news
    outcome = (u[:, 3] < _sigmoid(true_logit)).astype(np.int64)

    book_logit = (
        _BASE_LOGIT
        + structure(_BOOK_CONCEPT_ADAPTATION * concept, bookmaker=True)
        + known_news
        + book_noise
    )
    p_book = _sigmoid(_BOOK_SHRINK * book_logit)
    odds = np.clip(np.round(1.0 / (p_book * (1.0 + _BOOK_MARGIN)), 2), _MIN_ODDS, _MAX_ODDS)

    return pd.DataFrame(
        {
            "home_elo": home_elo,
            "away_elo": away_elo,
            "elo_diff": elo_diff,
            "home_form": home_form,
            "away_form": away_form,
            "home_goals_avg": home_goals,
            "away_goals_avg": away_goals,
            "rest_days_diff": rest_diff,
            ODDS_COLUMN: odds,
            "league": np.asarray(_LEAGUES, dtype=object)[league],
            "weather": np.asarray(_WEATHER, dtype=object)[weather],
            "kickoff_slot": np.asarray(_KICKOFF, dtype=object)[kickoff],
            TARGET: outcome,
        }
    )


def _finish(frame: pd.DataFrame, match_ids: list[str], dates: np.ndarray) -> pd.DataFrame:
    frame.insert(0, "match_date", pd.to_datetime(dates).astype("datetime64[ns]"))
    frame.insert(0, "match_id", pd.Series(match_ids, dtype=object))
    return frame


def training_history(*, n_rows: int = 8000, seed: int = 7, end: datetime.date) -> pd.DataFrame:
    """`n_rows` drift-free matches dated over the 365 days before `end` (never on `end`).

    Rows are sorted by date; `match_id` is ``h<yyyymmdd>-<n>`` and never collides with the ids
    of `production_day`.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows}")
    end = _as_date(end)
    rng = _rng(seed, _TRAINING_STREAM, end.toordinal())
    days_back = np.sort(rng.integers(1, _HISTORY_DAYS + 1, size=n_rows))[::-1]
    frame = _simulate(rng, n_rows, feature_fraction=0.0, shift_sd=0.0, concept=0.0)
    dates = np.array([end - datetime.timedelta(days=int(d)) for d in days_back])
    match_ids = [f"h{d:%Y%m%d}-{i:06d}" for i, d in enumerate(dates)]
    return _finish(frame, match_ids, dates)


def production_day(
    *,
    day: datetime.date,
    n_rows: int = 1000,
    seed: int = 7,
    drift: DriftSchedule = DriftSchedule(),
) -> pd.DataFrame:
    """`n_rows` matches played on `day`, with whatever drift `drift` puts in force that day.

    `match_id` is ``m<yyyymmdd>-<n>``, unique across days.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows}")
    day = _as_date(day)
    rng = _rng(seed, _PRODUCTION_STREAM, day.toordinal())
    frame = _simulate(
        rng,
        n_rows,
        feature_fraction=drift.feature_fraction(day),
        shift_sd=drift.feature_shift_sd,
        concept=drift.concept_fraction(day),
    )
    match_ids = [f"m{day:%Y%m%d}-{i:05d}" for i in range(n_rows)]
    return _finish(frame, match_ids, np.full(n_rows, day))
