"""Business value of predictions: none, the betting ROI (binary), or a cost/value matrix.

Business metrics are higher-is-better: ROI is profit per unit staked, and a cost matrix holds
values (a cost is a negative value), so "more is better" holds for both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mlops_assets.lib import metrics as _m
from mlops_assets.lib.metrics import MetricInputError

#: (warning, critical) degradation of ``business_value`` as fractions of the matrix span;
#: a drop of a few percent of the best-minus-worst value per prediction mirrors the accuracy
#: levels (0.04 / 0.07), since each prediction that turns wrong moves the mean by at most span/n.
COST_MATRIX_LEVELS: tuple[float, float] = (0.03, 0.06)

#: ROI per unit staked is scale-free, so its levels are absolute.
ROI_LEVELS: tuple[float, float] = (0.10, 0.20)


@dataclass(frozen=True, eq=False)
class Roi:
    """Betting ROI (binary only): stake one unit when P(positive) * odds > 1 + value_margin.

    ``odds`` are decimal odds per row (aligned with y_true); a won bet returns odds - 1, a lost
    bet -1. The metric is ``roi`` (profit per unit staked); MetricResult.n_bets counts bets.
    """

    odds: np.ndarray
    value_margin: float = 0.0

    def __post_init__(self) -> None:
        _m._check_finite_number("value_margin", self.value_margin, low=0.0, high=math.inf)


@dataclass(frozen=True, eq=False)
class CostMatrix:
    """Value of each (actual row, predicted column) outcome; metric ``business_value``.

    ``business_value`` is the mean value per prediction. For a binary task the classes are
    "0" and "1" (in either order); for multiclass they must cover every label that occurs.
    Class names are compared as strings (0 and "0" are the same class).
    """

    classes: tuple[str, ...]
    values: list[list[float]]
    _matrix: np.ndarray = field(init=False, repr=False)
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        raw = tuple(self.classes)
        if len(raw) < 2 or any(c is None or c == "" for c in raw):
            raise MetricInputError(
                f"cost matrix classes must be at least 2 non-empty names, got {raw!r}"
            )
        # labels are compared as strings (a YAML list [0, 1] names classes "0" and "1")
        classes = tuple(str(c) for c in raw)
        repeated = sorted({c for c in classes if classes.count(c) > 1})
        if repeated:
            raise MetricInputError(f"cost matrix classes must be unique; repeated: {repeated}")
        k = len(classes)
        rows = list(self.values)
        if len(rows) != k or any(
            isinstance(row, str | bytes) or not hasattr(row, "__len__") or len(row) != k
            for row in rows
        ):
            raise MetricInputError(
                f"cost matrix values must be {k} rows of {k} numbers (actual rows, predicted "
                f"columns, in the order of classes {classes!r})"
            )
        try:
            matrix = np.asarray(rows, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise MetricInputError(f"cost matrix values must be numeric: {error}") from error
        not_finite = int(np.count_nonzero(~np.isfinite(matrix)))
        if not_finite:
            raise MetricInputError(f"cost matrix values contain {not_finite} NaN/inf value(s)")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "_matrix", matrix)
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(classes)})

    @property
    def matrix(self) -> np.ndarray:
        """The values as a (k, k) float array (a copy)."""
        return self._matrix.copy()

    @property
    def span(self) -> float:
        """Best minus worst cell: the range a mean value per prediction can move in."""
        return float(self._matrix.max() - self._matrix.min())

    def positions(self, name: str, labels: np.ndarray) -> np.ndarray:
        """Row/column index of each label; a label outside ``classes`` is an error naming it."""
        uniques, inverse = np.unique(labels, return_inverse=True)
        missing = [str(u) for u in uniques if str(u) not in self._index]
        if missing:
            raise MetricInputError(
                f"{name} has label(s) {missing[:5]} not in the cost matrix classes {self.classes!r}"
            )
        lookup = np.array([self._index[str(u)] for u in uniques], dtype=np.int64)
        return lookup[inverse.reshape(-1)]

    def mean_value(self, actual: np.ndarray, predicted: np.ndarray) -> float:
        """Mean value per prediction for matrix positions ``actual`` and ``predicted``."""
        return float(self._matrix[actual, predicted].mean())


BusinessValue = Roi | CostMatrix


def business_metric(business: BusinessValue) -> str:
    return "roi" if isinstance(business, Roi) else "business_value"


def roi_value(
    y: np.ndarray, p: np.ndarray, odds: np.ndarray, value_margin: float
) -> tuple[float | None, int, str | None]:
    """(roi, n_bets, note); the note explains a None roi."""
    value, n_bets = _m._roi(y, p, odds, value_margin)
    note = None if value is not None else _no_bets_note(value_margin)
    return value, n_bets, note


def _no_bets_note(value_margin: float) -> str:
    return f"no bets: prob * odds never exceeded {1.0 + value_margin:g}"


__all__ = [
    "COST_MATRIX_LEVELS",
    "ROI_LEVELS",
    "BusinessValue",
    "CostMatrix",
    "Roi",
    "business_metric",
    "roi_value",
]
