"""Classification metrics estimated without labels, from the model's calibrated probabilities.

Confidence-based performance estimation (the idea behind NannyML's CBPE): if P(class | x) is
calibrated, every prediction contributes its probability of being right to the expected
confusion matrix, and accuracy, precision, recall, F1, ROC AUC and business value follow from
that matrix. It stays valid under covariate shift (inputs move, P(y | x) does not) and cannot
see concept drift (P(y | x) itself changes); realised metrics replace estimates once labels
arrive. Regression has no such estimate: a predicted value carries no distribution of its
error.

Three steps, numpy plus scikit-learn's isotonic regression:

1. :func:`fit_calibrator` on the baseline's validation data: one isotonic regression per
   class (the positive class for binary, one-vs-rest for multiclass, rows renormalised to sum
   1), stored as its knots (scikit-learn's ``X_thresholds_``/``y_thresholds_``, linear between
   knots, constant beyond the ends), so it round-trips through JSON and applies with
   ``np.interp``.
2. :func:`estimate` on a batch of predictions: expected confusion matrix and metrics. The
   predicted label comes from the raw scores (as the realised metrics do); the calibrated
   probabilities only say how likely each label is. ROC AUC is the expected number of
   correctly ranked positive/negative pairs over the expected number of pairs (a ratio of
   expectations, computed in one sort); with the 0/1 labels in place of the probabilities it
   is exactly the Mann-Whitney AUC that the realised metric reports.
3. :func:`reference_band` on labelled reference data: the spread of (realised - estimated) over
   chunks of a given size, so that an :class:`Estimate` carries ``lower``/``upper`` rescaled
   to its own batch size.

Metric names equal the realised ones: binary accuracy/precision/recall/f1/roc_auc, multiclass
accuracy/f1_macro/precision_macro/recall_macro/roc_auc_ovr, plus ``roi`` (binary, with odds)
or ``business_value`` (cost matrix). :func:`realised_metrics` computes the realised values with
the same code path (the one-hot labels in place of the calibrated probabilities), with the
averaging rules of scikit-learn's ``zero_division=np.nan``: a class whose precision or recall
is undefined is left out of the macro mean.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression

Kind = Literal["binary", "multiclass"]

BINARY_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc")
MULTICLASS_METRICS: tuple[str, ...] = (
    "accuracy",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    "roc_auc_ovr",
)
# Metrics bounded to [0, 1]; a band is clipped to the range a metric can take.
_UNIT_METRICS = frozenset(BINARY_METRICS + MULTICLASS_METRICS)

#: fewer validation rows than this cannot support a monotone fit worth storing
MIN_ROWS = 50
#: each calibrated class needs this many rows in and out of it (one-vs-rest)
MIN_CLASS_ROWS = 10
#: sums of multiclass probability rows may drift this far from 1 (float32 softmax)
PROBA_SUM_TOLERANCE = 1e-3
#: bands are estimate +- z * std, as NannyML's 3-sigma confidence band
DEFAULT_Z = 3.0

_FORMAT_VERSION = 1
_METHOD = "isotonic"


class EstimationError(ValueError):
    """Inputs cannot be calibrated or estimated; the message names the field and the counts."""


# --------------------------------------------------------------------------- validation


def _proba_array(proba: object, name: str = "proba") -> np.ndarray:
    try:
        array = np.asarray(proba, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise EstimationError(f"{name} must be numeric: {error}") from error
    if array.ndim not in (1, 2):
        raise EstimationError(f"{name} must be 1-D (binary) or 2-D (n, k), got {array.shape}")
    if array.shape[0] == 0:
        raise EstimationError(f"{name} is empty: no predictions")
    not_finite = int(np.count_nonzero(~np.isfinite(array)))
    if not_finite:
        raise EstimationError(f"{name} contains {not_finite} NaN/inf value(s)")
    outside = int(np.count_nonzero((array < 0.0) | (array > 1.0)))
    if outside:
        raise EstimationError(
            f"{name} contains {outside} value(s) outside [0, 1] "
            f"(min {array.min():.6g}, max {array.max():.6g})"
        )
    if array.ndim == 2:
        if array.shape[1] < 2:
            raise EstimationError(f"{name} needs at least 2 columns, got shape {array.shape}")
        sums = array.sum(axis=1)
        off = np.flatnonzero(np.abs(sums - 1.0) > PROBA_SUM_TOLERANCE)
        if off.size:
            row = int(off[0])
            raise EstimationError(
                f"{name} rows must sum to 1 (tolerance {PROBA_SUM_TOLERANCE:g}); {off.size} "
                f"row(s) do not, e.g. row {row} sums to {sums[row]:.6g}"
            )
    return array


def _scores(proba: np.ndarray, kind: Kind, n_classes: int) -> np.ndarray:
    """Binary: P(positive) as 1-D; multiclass: the (n, k) array, checked against the classes."""
    if kind == "binary":
        if proba.ndim == 2:
            if proba.shape[1] != 2:
                raise EstimationError(
                    f"binary proba must be 1-D P(positive) or have 2 columns, got {proba.shape}"
                )
            return proba[:, 1]
        return proba
    if proba.ndim != 2 or proba.shape[1] != n_classes:
        raise EstimationError(
            f"multiclass proba must have shape (n, {n_classes}) in the order of the "
            f"calibrator's classes, got {proba.shape}"
        )
    return proba


def _class_names(classes: Sequence[object] | None, k: int) -> tuple[str, ...]:
    if classes is None:
        return tuple(str(i) for i in range(k))
    if isinstance(classes, str) or not hasattr(classes, "__iter__"):
        raise EstimationError(f"classes must be a sequence of class names, got {classes!r}")
    names = tuple(str(c) for c in classes)
    if len(names) != k:
        raise EstimationError(f"classes names {len(names)} classes but proba has {k} column(s)")
    if len(set(names)) != len(names):
        raise EstimationError(f"classes must be unique, got {names!r}")
    return names


def _labels(y_true: object, classes: tuple[str, ...], n: int) -> np.ndarray:
    """Class index per row; numbers equal to an integer are read as that integer's name."""
    array = np.asarray(y_true)
    if array.ndim != 1:
        raise EstimationError(f"y_true must be one-dimensional, got shape {array.shape}")
    if array.size != n:
        raise EstimationError(f"length mismatch: y_true has {array.size} values, proba has {n}")
    if array.dtype.kind in "fc":
        if not np.all(np.isfinite(array)):
            raise EstimationError("y_true contains NaN/inf labels")
        if np.all(array == np.round(array)):
            array = array.astype(np.int64)
    if array.dtype.kind == "b":
        array = array.astype(np.int64)
    uniques, inverse = np.unique(array.astype(str), return_inverse=True)
    index = {c: i for i, c in enumerate(classes)}
    unknown = [u for u in uniques if u not in index]
    if unknown:
        raise EstimationError(
            f"y_true has {len(unknown)} label(s) not in classes {classes!r}: e.g. {unknown[:5]}"
        )
    lookup = np.array([index[u] for u in uniques], dtype=np.int64)
    return lookup[inverse.reshape(-1)]


def _check_number(name: str, value: object, *, low: float, high: float) -> float:
    if not (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    ):
        raise EstimationError(f"{name} must be a finite number in [{low}, {high}], got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- calibration


def _isotonic(score: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (x, y) of the isotonic regression of target on score (linear between knots)."""
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    fitted.fit(score, target)
    return fitted.X_thresholds_.astype(np.float64), fitted.y_thresholds_.astype(np.float64)


@dataclass(frozen=True, eq=False)
class Calibrator:
    """Monotone maps from raw to calibrated probabilities, one per calibrated column.

    Binary: one map for P(positive) (``classes[1]``). Multiclass: one map per class, rows
    renormalised. ``knots_x[c]``/``knots_y[c]`` are the map of column ``c``: linear between
    knots, constant beyond the first and last.
    """

    kind: Kind
    classes: tuple[str, ...]
    knots_x: tuple[np.ndarray, ...]
    knots_y: tuple[np.ndarray, ...]
    n_rows: int

    def calibrate(self, proba: object) -> np.ndarray:
        """Calibrated P(positive) (binary, 1-D) or (n, k) class probabilities (multiclass)."""
        scores = _scores(_proba_array(proba), self.kind, len(self.classes))
        return self._apply(scores)

    def _apply(self, scores: np.ndarray) -> np.ndarray:
        if self.kind == "binary":
            return np.interp(scores, self.knots_x[0], self.knots_y[0])
        out = np.column_stack(
            [
                np.interp(scores[:, c], kx, ky)
                for c, (kx, ky) in enumerate(zip(self.knots_x, self.knots_y, strict=True))
            ]
        )
        sums = out.sum(axis=1, keepdims=True)
        # Every one-vs-rest map can reach 0 at its low end; a row that lands on 0 for all
        # classes has no calibrated answer, and the raw row is the best one left.
        return np.divide(out, sums, out=scores.copy(), where=sums > 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT_VERSION,
            "method": _METHOD,
            "kind": self.kind,
            "classes": list(self.classes),
            "n_rows": self.n_rows,
            "maps": [
                {"x": kx.tolist(), "y": ky.tolist()}
                for kx, ky in zip(self.knots_x, self.knots_y, strict=True)
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        if not isinstance(data, Mapping):
            raise EstimationError(f"calibrator must be a JSON object, got {type(data).__name__}")
        if data.get("format") != _FORMAT_VERSION or data.get("method") != _METHOD:
            raise EstimationError(
                f"calibrator format/method {data.get('format')!r}/{data.get('method')!r} "
                f"is not {_FORMAT_VERSION}/{_METHOD!r}"
            )
        kind = data.get("kind")
        if kind not in ("binary", "multiclass"):
            raise EstimationError(f"calibrator kind must be binary or multiclass, got {kind!r}")
        classes = data.get("classes")
        if not isinstance(classes, list) or len(classes) < 2:
            raise EstimationError(f"calibrator classes must be a list of >= 2, got {classes!r}")
        classes_t = _class_names(classes, len(classes))
        maps = data.get("maps")
        expected = 1 if kind == "binary" else len(classes_t)
        if not isinstance(maps, list) or len(maps) != expected:
            raise EstimationError(f"calibrator maps must be a list of {expected} map(s)")
        xs, ys = [], []
        for i, item in enumerate(maps):
            try:
                kx = np.asarray(item["x"], dtype=np.float64)
                ky = np.asarray(item["y"], dtype=np.float64)
            except (KeyError, TypeError, ValueError) as error:
                raise EstimationError(
                    f"calibrator maps[{i}] needs numeric x and y: {error}"
                ) from error
            ok = (
                kx.ndim == 1
                and kx.shape == ky.shape
                and kx.size >= 1
                and np.all(np.isfinite(kx))
                and np.all(np.isfinite(ky))
                and np.all(np.diff(kx) >= 0)
                and np.all(np.diff(ky) >= 0)
                and ky.min() >= 0.0
                and ky.max() <= 1.0
            )
            if not ok:
                raise EstimationError(
                    f"calibrator maps[{i}] must hold equal-length x (non-decreasing) and "
                    "y (non-decreasing, in [0, 1])"
                )
            xs.append(kx)
            ys.append(ky)
        n_rows = data.get("n_rows")
        if not isinstance(n_rows, int) or n_rows < 1:
            raise EstimationError(f"calibrator n_rows must be a positive integer, got {n_rows!r}")
        return cls(
            kind=kind, classes=classes_t, knots_x=tuple(xs), knots_y=tuple(ys), n_rows=n_rows
        )

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as error:
            raise EstimationError(f"calibrator JSON cannot be parsed: {error}") from error
        return cls.from_dict(data)


def fit_calibrator(
    y_true: object, proba: object, classes: Sequence[object] | None = None
) -> Calibrator:
    """Fit the calibration maps on labelled validation data (the baseline's held-out rows).

    ``proba`` is P(positive) as 1-D (binary), or (n, k) with one column per class (k == 2 is
    binary, column 1 positive). ``classes`` names the columns; by default "0", "1", ... so that
    integer labels match. Raises EstimationError when the data are too small or a class has
    too few rows in or out of it to fit a map.
    """
    array = _proba_array(proba)
    k = 2 if array.ndim == 1 else array.shape[1]
    kind: Kind = "binary" if k == 2 else "multiclass"
    names = _class_names(classes, k)
    scores = _scores(array, kind, k)
    n = int(scores.shape[0])
    y = _labels(y_true, names, n)
    if n < MIN_ROWS:
        raise EstimationError(f"calibration needs at least {MIN_ROWS} labelled rows, got {n}")
    counts = np.bincount(y, minlength=k)
    columns = [1] if kind == "binary" else list(range(k))
    for c in columns:
        inside, outside = int(counts[c]), n - int(counts[c])
        if min(inside, outside) < MIN_CLASS_ROWS:
            raise EstimationError(
                f"calibration of class {names[c]!r} needs at least {MIN_CLASS_ROWS} rows of it "
                f"and {MIN_CLASS_ROWS} of other classes; got {inside} and {outside}"
            )
    xs, ys = [], []
    for c in columns:
        column = scores if kind == "binary" else scores[:, c]
        kx, ky = _isotonic(column, (y == c).astype(np.float64))
        xs.append(kx)
        ys.append(ky)
    return Calibrator(kind=kind, classes=names, knots_x=tuple(xs), knots_y=tuple(ys), n_rows=n)


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Band:
    """Std of (realised - estimated) per metric over reference chunks of ``chunk_size`` rows."""

    chunk_size: int
    std: dict[str, float]
    n_chunks: int

    def to_dict(self) -> dict[str, Any]:
        return {"chunk_size": self.chunk_size, "std": dict(self.std), "n_chunks": self.n_chunks}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Band:
        try:
            chunk_size = int(data["chunk_size"])
            std = {str(k): float(v) for k, v in dict(data["std"]).items()}
            n_chunks = int(data["n_chunks"])
        except (KeyError, TypeError, ValueError) as error:
            raise EstimationError(f"band needs chunk_size, std and n_chunks: {error}") from error
        bad = [k for k, v in std.items() if not (math.isfinite(v) and v >= 0)]
        if chunk_size < 1 or bad:
            raise EstimationError(
                f"band chunk_size must be >= 1 and std finite >= 0 (bad: {bad}), "
                f"got chunk_size {chunk_size}"
            )
        return cls(chunk_size=chunk_size, std=std, n_chunks=n_chunks)

    def half_width(self, metric: str, n: int, z: float = DEFAULT_Z) -> float | None:
        """z * std rescaled from ``chunk_size`` to ``n`` rows (noise shrinks as 1/sqrt(n))."""
        std = self.std.get(metric)
        if std is None:
            return None
        return z * std * math.sqrt(self.chunk_size / n)


@dataclass(frozen=True)
class Estimate:
    """Estimated metrics for one batch of ``n`` predictions.

    ``confusion`` is the expected confusion matrix (rows actual, columns predicted, in the
    order of ``classes``). ``lower``/``upper`` hold the band for each metric the band knows
    (empty without a band). A ``None`` value is explained in ``notes``.
    """

    kind: Kind
    classes: tuple[str, ...]
    n: int
    values: dict[str, float | None]
    lower: dict[str, float] = field(default_factory=dict)
    upper: dict[str, float] = field(default_factory=dict)
    confusion: tuple[tuple[float, ...], ...] = ()
    expected_bets: int = 0
    notes: dict[str, str] = field(default_factory=dict)


def _expected_auc(score: np.ndarray, p: np.ndarray) -> float | None:
    """E[correctly ranked pairs] / E[positive-negative pairs], pairs of distinct rows.

    With p in {0, 1} this is exactly the Mann-Whitney AUC with ties counted one half.
    """
    _, group = np.unique(score, return_inverse=True)
    pos = np.bincount(group, weights=p)
    neg = np.bincount(group, weights=1.0 - p)
    neg_below = np.cumsum(neg) - neg
    self_pairs = float(np.sum(p * (1.0 - p)))
    pairs = float(pos.sum() * neg.sum()) - self_pairs
    if pairs <= 1e-12:
        return None
    ranked = float(np.sum(pos * (neg_below + 0.5 * neg))) - 0.5 * self_pairs
    return ranked / pairs


def _business_kind(business: object | None) -> str | None:
    if business is None:
        return None
    if hasattr(business, "odds"):
        return "roi"
    if hasattr(business, "classes") and (
        hasattr(business, "matrix") or hasattr(business, "values")
    ):
        return "business_value"
    raise EstimationError(
        "business must have odds and value_margin (ROI) or classes and matrix (cost matrix), "
        f"got {type(business).__name__}"
    )


def _cost_matrix(business: object, classes: tuple[str, ...]) -> np.ndarray:
    """The value matrix reordered to ``classes`` (actual rows, predicted columns)."""
    raw = business.matrix if hasattr(business, "matrix") else business.values  # type: ignore[attr-defined]
    matrix = np.asarray(raw, dtype=np.float64)
    names = tuple(str(c) for c in business.classes)  # type: ignore[attr-defined]
    k = len(names)
    if matrix.shape != (k, k) or not np.all(np.isfinite(matrix)):
        raise EstimationError(f"cost matrix must be {k} x {k} finite values, got {matrix.shape}")
    missing = [c for c in classes if c not in names]
    if missing:
        raise EstimationError(f"cost matrix classes {names!r} lack model class(es) {missing}")
    order = [names.index(c) for c in classes]
    return matrix[np.ix_(order, order)]


def _metrics(
    kind: Kind,
    classes: tuple[str, ...],
    scores: np.ndarray,
    target: np.ndarray,
    *,
    threshold: float,
    business: object | None,
) -> tuple[dict[str, float | None], np.ndarray, int, dict[str, str]]:
    """Metrics from the expected (target = calibrated p) or realised (target = one-hot) matrix.

    Binary: scores and target are 1-D P(positive); multiclass: (n, k).
    """
    values: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    n = scores.shape[0]
    if kind == "binary":
        predicted = scores >= threshold
        tp = float(target[predicted].sum())
        fp = float(np.count_nonzero(predicted)) - tp
        fn = float(target[~predicted].sum())
        tn = float(np.count_nonzero(~predicted)) - fn
        confusion = np.array([[tn, fp], [fn, tp]])
        values["accuracy"] = (tp + tn) / n
        if tp + fp > 0:
            values["precision"] = tp / (tp + fp)
        else:
            values["precision"] = None
            notes["precision"] = f"no positive predictions at threshold {threshold:g}"
        if tp + fn > 1e-12:
            values["recall"] = tp / (tp + fn)
        else:
            values["recall"] = None
            notes["recall"] = "no positive labels expected"
        if 2 * tp + fp + fn > 1e-12:
            values["f1"] = 2 * tp / (2 * tp + fp + fn)
        else:
            values["f1"] = None
            notes["f1"] = "no positive labels and no positive predictions"
        values["roc_auc"] = _expected_auc(scores, target)
        if values["roc_auc"] is None:
            notes["roc_auc"] = "only one class"
    else:
        k = len(classes)
        predicted_idx = np.argmax(scores, axis=1)
        confusion = np.zeros((k, k))
        for c in range(k):
            confusion[:, c] = target[predicted_idx == c].sum(axis=0)
        tp = np.diag(confusion)
        support = confusion.sum(axis=1)
        n_pred = confusion.sum(axis=0)
        values["accuracy"] = float(tp.sum() / n)
        eps = 1e-12
        present = (support + n_pred) > eps
        values["f1_macro"] = float(np.mean(2 * tp[present] / (support + n_pred)[present]))
        predicted_any = n_pred > eps
        values["precision_macro"] = float(np.mean(tp[predicted_any] / n_pred[predicted_any]))
        in_truth = support > eps
        values["recall_macro"] = float(np.mean(tp[in_truth] / support[in_truth]))
        aucs = [_expected_auc(scores[:, c], target[:, c]) for c in range(k)]
        defined = [a for a in aucs if a is not None]
        if defined:
            values["roc_auc_ovr"] = float(np.mean(defined))
        else:
            values["roc_auc_ovr"] = None
            notes["roc_auc_ovr"] = "fewer than 2 classes"

    n_bets = 0
    metric = _business_kind(business)
    if metric == "roi":
        if kind != "binary":
            raise EstimationError("roi (odds) is for binary models; use a cost matrix instead")
        odds = np.asarray(business.odds, dtype=np.float64)  # type: ignore[attr-defined]
        margin = _check_number(
            "value_margin", getattr(business, "value_margin", 0.0), low=0.0, high=math.inf
        )
        if odds.shape != (n,) or not np.all(np.isfinite(odds)) or np.any(odds <= 1.0):
            raise EstimationError(
                f"odds must be {n} finite decimal odds > 1 aligned with proba, got shape "
                f"{odds.shape}"
            )
        # The bet is the model's decision (raw score); its outcome is what calibration expects.
        bets = scores * odds > 1.0 + margin
        n_bets = int(np.count_nonzero(bets))
        if n_bets:
            values["roi"] = float(np.mean(target[bets] * odds[bets] - 1.0))
        else:
            values["roi"] = None
            notes["roi"] = f"no bets: prob * odds never exceeded {1.0 + margin:g}"
    elif metric == "business_value":
        matrix = _cost_matrix(business, classes)
        values["business_value"] = float(np.sum(confusion * matrix) / n)
    return values, confusion, n_bets, notes


def _one_hot(y: np.ndarray, kind: Kind, k: int) -> np.ndarray:
    if kind == "binary":
        return (y == 1).astype(np.float64)
    out = np.zeros((y.size, k))
    out[np.arange(y.size), y] = 1.0
    return out


def estimate(
    calibrator: Calibrator,
    proba: object,
    *,
    threshold: float = 0.5,
    business: object | None = None,
    band: Band | None = None,
    z: float = DEFAULT_Z,
) -> Estimate:
    """Estimated metrics of one batch of predictions, without labels.

    ``proba`` as for :func:`fit_calibrator`, columns in the calibrator's class order.
    ``threshold`` applies to binary models (positive when P(positive) >= threshold).
    ``business`` is ``lib.tasks.business.Roi`` (anything with ``odds`` per row and
    ``value_margin``; binary only) or ``CostMatrix`` (``classes`` and ``matrix``, actual rows,
    predicted columns). With ``band``, ``lower``/``upper`` are the estimate -+ z * band std,
    rescaled to this batch's size and clipped to the metric's range.
    """
    if not isinstance(calibrator, Calibrator):
        raise EstimationError(f"calibrator must be a Calibrator, got {type(calibrator).__name__}")
    threshold = _check_number("threshold", threshold, low=0.0, high=1.0)
    z = _check_number("z", z, low=0.0, high=math.inf)
    scores = _scores(_proba_array(proba), calibrator.kind, len(calibrator.classes))
    target = calibrator._apply(scores)
    values, confusion, n_bets, notes = _metrics(
        calibrator.kind,
        calibrator.classes,
        scores,
        target,
        threshold=threshold,
        business=business,
    )
    n = int(scores.shape[0])
    lower: dict[str, float] = {}
    upper: dict[str, float] = {}
    if band is not None:
        for metric, value in values.items():
            half = band.half_width(metric, n, z)
            if value is None or half is None:
                continue
            low, high = value - half, value + half
            if metric in _UNIT_METRICS:
                low, high = max(low, 0.0), min(high, 1.0)
            elif metric == "roi":
                low = max(low, -1.0)
            lower[metric], upper[metric] = low, high
    return Estimate(
        kind=calibrator.kind,
        classes=calibrator.classes,
        n=n,
        values=values,
        lower=lower,
        upper=upper,
        confusion=tuple(tuple(float(v) for v in row) for row in confusion),
        expected_bets=n_bets,
        notes=notes,
    )


def realised_metrics(
    calibrator: Calibrator,
    y_true: object,
    proba: object,
    *,
    threshold: float = 0.5,
    business: object | None = None,
) -> dict[str, float | None]:
    """The realised counterparts of :func:`estimate`'s metrics (same names, same rules).

    ``calibrator`` only supplies the task kind and class order; the labels are used as they are.
    """
    threshold = _check_number("threshold", threshold, low=0.0, high=1.0)
    scores = _scores(_proba_array(proba), calibrator.kind, len(calibrator.classes))
    y = _labels(y_true, calibrator.classes, scores.shape[0])
    target = _one_hot(y, calibrator.kind, len(calibrator.classes))
    values, _, _, _ = _metrics(
        calibrator.kind,
        calibrator.classes,
        scores,
        target,
        threshold=threshold,
        business=business,
    )
    return values


def reference_band(
    calibrator: Calibrator,
    y_true: object,
    proba: object,
    chunk_size: int,
    *,
    threshold: float = 0.5,
    business: object | None = None,
    n_chunks: int = 200,
    seed: int = 0,
) -> Band:
    """Std of (realised - estimated) per metric over ``n_chunks`` bootstrap chunks.

    Chunks of ``chunk_size`` rows are drawn with replacement from the labelled reference rows
    (rows keep their label, so each chunk carries the label noise a real batch would). Pass
    rows the calibrator was *not* fitted on where there are enough: on its own fitting rows
    the calibration error is hidden and the band comes out slightly narrow. A metric that
    fewer than 2 chunks could compute is left out of the band, not given a made-up width.
    """
    if not isinstance(chunk_size, numbers.Integral) or chunk_size < 2:
        raise EstimationError(f"chunk_size must be an integer >= 2, got {chunk_size!r}")
    if not isinstance(n_chunks, numbers.Integral) or n_chunks < 2:
        raise EstimationError(f"n_chunks must be an integer >= 2, got {n_chunks!r}")
    threshold = _check_number("threshold", threshold, low=0.0, high=1.0)
    scores = _scores(_proba_array(proba), calibrator.kind, len(calibrator.classes))
    n = int(scores.shape[0])
    y = _labels(y_true, calibrator.classes, n)
    if n < MIN_ROWS:
        raise EstimationError(f"reference_band needs at least {MIN_ROWS} labelled rows, got {n}")
    target_true = _one_hot(y, calibrator.kind, len(calibrator.classes))
    target_cal = calibrator._apply(scores)
    odds = None
    if _business_kind(business) == "roi":
        odds = np.asarray(business.odds, dtype=np.float64)  # type: ignore[attr-defined]
        if odds.shape != (n,):
            raise EstimationError(f"odds must have {n} values aligned with proba, got {odds.shape}")

    rng = np.random.default_rng(seed)
    diffs: dict[str, list[float]] = {}
    for _ in range(int(n_chunks)):
        idx = rng.integers(0, n, size=int(chunk_size))
        chunk_business = business
        if odds is not None:
            chunk_business = _ChunkOdds(odds[idx], getattr(business, "value_margin", 0.0))
        common = {"threshold": threshold, "business": chunk_business}
        real, _, _, _ = _metrics(
            calibrator.kind, calibrator.classes, scores[idx], target_true[idx], **common
        )
        est, _, _, _ = _metrics(
            calibrator.kind, calibrator.classes, scores[idx], target_cal[idx], **common
        )
        for metric, value in real.items():
            if value is not None and est.get(metric) is not None:
                diffs.setdefault(metric, []).append(value - est[metric])  # type: ignore[operator]
    std = {m: float(np.std(d, ddof=1)) for m, d in diffs.items() if len(d) >= 2}
    return Band(chunk_size=int(chunk_size), std=std, n_chunks=int(n_chunks))


@dataclass(frozen=True)
class _ChunkOdds:
    odds: np.ndarray
    value_margin: float


__all__ = [
    "BINARY_METRICS",
    "MULTICLASS_METRICS",
    "Band",
    "Calibrator",
    "Estimate",
    "EstimationError",
    "estimate",
    "fit_calibrator",
    "realised_metrics",
    "reference_band",
]
