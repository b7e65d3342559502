"""Seeded, reproducible demo data: football matches with bookmaker odds on the home win.

Each row is one match. The target ``outcome`` is 1 when the home team wins (a draw or an away
win is 0). ``odds_home`` is the decimal price a bookmaker offers on the home win; it is a model
input and also what a stake of 1 would pay out, so a model's value bets can be scored by ROI.

How the truth is built
    A latent logit combines the features with some non-linearity and interactions that a
    linear model misses: the Elo effect is damped in rain and snow, form and goal-average gaps
    saturate (``tanh``), the rest-day gap is clipped, and home advantage depends on the league
    and on the kickoff slot. An unobserved per-match term (injuries, team news) is added, and
    the outcome is a Bernoulli draw of ``sigmoid(logit)``.

How the odds are built
    The bookmaker prices a linear approximation of the truth with one home advantage for all
    leagues, knows part of the unobserved team news, adds its own noise and then a 5% margin:
    ``odds = 1 / (p_book * 1.05)``, rounded to two decimals. A model that learns the
    interactions the bookmaker ignores finds a few value bets with a small positive ROI; a
    model that does not, loses about the margin.

Feature drift (``DriftSchedule.feature_drift_from``)
    Numeric: ``home_goals_avg`` and ``away_goals_avg`` rise and ``rest_days_diff`` falls, each
    by ``feature_shift_sd`` times that feature's nominal standard deviation (``NOMINAL_SD``).
    Categorical: the ``eredivisie`` share of ``league`` rises by 15 percentage points, the
    other leagues giving up share in proportion. No other input column is drifted; the truth
    is unchanged (covariate shift only), so ``odds_home`` and ``outcome`` move only as far as
    the drifted inputs move them, which is a little because the two goal averages rise
    together.

Concept drift (``DriftSchedule.concept_drift_from``)
    Inputs keep their distribution but the relationship changes: the Elo effect is reversed
    and home advantage shrinks, as if a new rule favoured underdogs playing away. The
    bookmaker adapts only part of the way, so a model trained before the change both loses
    accuracy and bets into prices that are now right where it is wrong.

Both drifts grow linearly over ``ramp_days`` days from their start day: with the default of
three, the first drifted day carries a third of the full effect, the third day all of it.

Determinism
    Every day draws from its own random stream keyed on ``(seed, day)``, so a day's frame does
    not depend on which other days were generated or in what order. Drift is applied on top of
    the same underlying draws, so a drifted day and the same day without drift are paired match
    for match, which keeps drift comparisons free of sampling noise.
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
_ELO_COEF = 0.70  # per 100 Elo points
_FORM_COEF = 0.45
_GOALS_COEF = 0.60
_REST_COEF = 0.10
_KNOWN_NEWS_SD = 0.6
_UNKNOWN_NEWS_SD = 0.6

_BOOK_MARGIN = 0.05
_MAX_ODDS = 30.0
_BOOK_DETAIL = 0.0
# Least-squares slopes of the truth's tanh terms over the typical range of the gaps.
_BOOK_FORM_COEF = 0.75 * _FORM_COEF
_BOOK_GOALS_COEF = 0.8 * _GOALS_COEF
_BOOK_NOISE_SD = 0.2
_BOOK_CAL_SHIFT = 0.01
_BOOK_CAL_SLOPE = 0.88
# How much of a concept change the bookmaker has priced in.
_BOOK_CONCEPT_ADAPTATION = 1.0

# At full concept strength the Elo effect becomes this multiple of its old value, and home
# advantage shrinks with the league and kickoff effects turned around, so the edges a model
# learned before the change now point the wrong way.
_CONCEPT_ELO_FACTOR = -0.6
_CONCEPT_LEAGUE_HOME_ADV = np.array([0.10, -0.05, 0.0, 0.20, -0.10, 0.30])
_CONCEPT_KICKOFF_HOME_ADV = np.array([0.15, 0.0, -0.20])

_TRAINING_STREAM = 0
_PRODUCTION_STREAM = 1
_HISTORY_DAYS = 365


@dataclass(frozen=True)
class DriftSchedule:
    """When and how strongly `production_day` drifts; the default is no drift at all."""

    feature_drift_from: datetime.date | None = None
    concept_drift_from: datetime.date | None = None
    feature_shift_sd: float = 0.75
    concept_strength: float = 1.0
    ramp_days: int = 3

    def feature_fraction(self, day: datetime.date) -> float:
        """Share of the full feature drift in force on `day` (0 before it starts)."""
        return _ramp(self.feature_drift_from, day, self.ramp_days)

    def concept_fraction(self, day: datetime.date) -> float:
        """Effective concept strength on `day`: `concept_strength` times the ramp share."""
        return self.concept_strength * _ramp(self.concept_drift_from, day, self.ramp_days)


def _ramp(start: datetime.date | None, day: datetime.date, ramp_days: int) -> float:
    if start is None or day < start:
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
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream, key]))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pick(u: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Index into `shares` for each uniform draw; nearby shares keep most rows on the same pick."""
    edges = np.cumsum(shares)
    edges[-1] = 1.0
    return np.minimum(np.searchsorted(edges, u, side="right"), len(shares) - 1)


def _blend(before: np.ndarray, after: np.ndarray, weight: float) -> np.ndarray:
    return before + (after - before) * weight


def _league_shares(feature_fraction: float) -> np.ndarray:
    if feature_fraction <= 0.0:
        return _LEAGUE_SHARES
    target = _LEAGUES.index(_DRIFT_LEAGUE)
    gain = _DRIFT_LEAGUE_SHARE_GAIN * feature_fraction
    others = np.ones(len(_LEAGUES), dtype=bool)
    others[target] = False
    shares = _LEAGUE_SHARES.copy()
    shares[others] *= (1.0 - shares[target] - gain) / shares[others].sum()
    shares[target] += gain
    return shares


def _simulate(
    rng: np.random.Generator, n: int, *, feature_fraction: float, shift_sd: float, concept: float
) -> pd.DataFrame:
    """One batch of matches; every random draw happens before drift is applied."""
    z = rng.standard_normal((n, 9))
    u = rng.random((n, 4))
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

    league = _pick(u[:, 0], _league_shares(feature_fraction))
    weather = _pick(u[:, 1], _WEATHER_SHARES)
    kickoff = _pick(u[:, 2], _KICKOFF_SHARES)

    shift = shift_sd * feature_fraction
    home_goals = home_goals + _SHIFT_SIGN["home_goals_avg"] * shift * NOMINAL_SD["home_goals_avg"]
    away_goals = away_goals + _SHIFT_SIGN["away_goals_avg"] * shift * NOMINAL_SD["away_goals_avg"]
    rest_diff = rest_diff + _SHIFT_SIGN["rest_days_diff"] * shift * NOMINAL_SD["rest_days_diff"]
    elo_diff = home_elo - away_elo

    def structure(concept_now: float, detail: float) -> np.ndarray:
        elo_factor = 1.0 + (_CONCEPT_ELO_FACTOR - 1.0) * concept_now
        league_adv = _blend(_LEAGUE_HOME_ADV, _CONCEPT_LEAGUE_HOME_ADV, concept_now)
        kickoff_adv = _blend(_KICKOFF_HOME_ADV, _CONCEPT_KICKOFF_HOME_ADV, concept_now)
        exact = (
            league_adv[league]
            + kickoff_adv[kickoff]
            + elo_factor * _ELO_COEF * _WEATHER_ELO_FACTOR[weather] * elo_diff / 100.0
            + _FORM_COEF * np.tanh(home_form - away_form)
            + _GOALS_COEF * np.tanh(home_goals - away_goals)
        )
        if detail >= 1.0:
            return exact
        # The bookmaker's shortcut: one home advantage, an average weather effect, straight lines.
        simple = (
            league_adv @ _LEAGUE_SHARES
            + kickoff_adv @ _KICKOFF_SHARES
            + elo_factor * _ELO_COEF * (_WEATHER_ELO_FACTOR @ _WEATHER_SHARES) * elo_diff / 100.0
            + _BOOK_FORM_COEF * (home_form - away_form)
            + _BOOK_GOALS_COEF * (home_goals - away_goals)
        )
        return detail * exact + (1.0 - detail) * simple

    rest_term = _REST_COEF * np.clip(rest_diff, -3.0, 3.0)
    true_logit = _BASE_LOGIT + structure(concept, 1.0) + rest_term + known_news + unknown_news
    outcome = (u[:, 3] < _sigmoid(true_logit)).astype(np.int64)

    book_view = (
        structure(_BOOK_CONCEPT_ADAPTATION * concept, _BOOK_DETAIL)
        + _REST_COEF * rest_diff
        + known_news
        + book_noise
    )
    # Shrinking by what the bookmaker cannot see keeps its prices calibrated on average.
    p_book = _sigmoid(_BOOK_CAL_SLOPE * (_BASE_LOGIT + book_view) + _BOOK_CAL_SHIFT)
    odds = np.clip(np.round(1.0 / (p_book * (1.0 + _BOOK_MARGIN)), 2), 1.01, _MAX_ODDS)

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
    drift: DriftSchedule = DriftSchedule(),  # noqa: B008 - frozen, so a shared default is safe
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
