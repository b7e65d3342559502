"""Production monitoring maths for the match-outcome classifier (P(home win)).

Everything here is a pure function of arrays and numbers. A metric that cannot be computed on
the given data is reported as ``None`` with a note: a silent ``0.0`` would look like a real
(and catastrophic) score and would raise alerts for the wrong reason.

Betting convention: one unit is staked on the home win whenever the model sees value,
``prob * odds > 1 + value_margin``; a won bet returns ``odds - 1`` profit, a lost bet ``-1``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

METRICS: tuple[str, ...] = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
    "roi",
)

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": True,
    "log_loss": False,
    "roi": True,
}

Severity = Literal["ok", "warning", "critical"]

ArrayLike = Sequence[float] | np.ndarray

# log(0) is -inf; clipping to machine epsilon keeps the loss finite for a confidently wrong
# prediction and matches scikit-learn's float64 behaviour.
_LOG_LOSS_EPS = float(np.finfo(np.float64).eps)


class MetricInputError(ValueError):
    """The inputs cannot be scored; the message names the problem and the offending counts."""


@dataclass(frozen=True)
class MetricResult:
    """Metric values over ``n`` predictions; ``None`` values are explained in ``notes``."""

    values: dict[str, float | None]
    n: int
    n_bets: int
    notes: dict[str, str] = field(default_factory=dict)


def _check_metric(metric: str, higher_is_better: bool | None = None) -> None:
    # Without a direction the metric must be one of this module's binary metrics; with one,
    # the caller (a task from lib.tasks) owns the metric list and the name is only a label.
    if higher_is_better is None:
        if metric not in HIGHER_IS_BETTER:
            raise MetricInputError(
                f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}"
            )
        return
    if not isinstance(higher_is_better, bool):
        raise MetricInputError(
            f"higher_is_better for {metric!r} must be True or False, got {higher_is_better!r}"
        )
    if not isinstance(metric, str) or not metric:
        raise MetricInputError(f"metric must be a non-empty name, got {metric!r}")


def _as_1d(name: str, values: object) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise MetricInputError(f"{name} must be numeric: {error}") from error
    if array.ndim != 1:
        raise MetricInputError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _check_finite_number(name: str, value: float, *, low: float, high: float) -> None:
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and low <= value <= high):
        raise MetricInputError(f"{name} must be a finite number in [{low}, {high}], got {value!r}")


def _validate_binary_labels(name: str, values: object) -> np.ndarray:
    labels = _as_1d(name, values)
    bad_labels = ~np.isin(labels, (0.0, 1.0))
    n_bad = int(np.count_nonzero(bad_labels))
    if n_bad:
        examples = sorted({float(v) for v in labels[bad_labels][:5]}, key=str)
        raise MetricInputError(
            f"{name} must contain only 0/1 labels; found {n_bad} other value(s), e.g. {examples}"
        )
    return labels


def _validate_prob(p: np.ndarray, name: str = "prob") -> None:
    not_finite = int(np.count_nonzero(~np.isfinite(p)))
    if not_finite:
        raise MetricInputError(f"{name} contains {not_finite} NaN/inf value(s) of {p.size}")
    outside = int(np.count_nonzero((p < 0.0) | (p > 1.0)))
    if outside:
        raise MetricInputError(
            f"{name} contains {outside} value(s) outside [0, 1] "
            f"(min {p.min():.6g}, max {p.max():.6g})"
        )


def _validate_odds(odds: object, n: int) -> np.ndarray:
    o = _as_1d("odds", odds)
    if o.size != n:
        raise MetricInputError(f"length mismatch: y_true has {n} values, odds has {o.size}")
    odds_not_finite = int(np.count_nonzero(~np.isfinite(o)))
    if odds_not_finite:
        raise MetricInputError(f"odds contains {odds_not_finite} NaN/inf value(s) of {o.size}")
    # Decimal odds include the stake, so they are always above 1; lower values are almost
    # certainly fractional or implied-probability odds fed in by mistake.
    too_low = int(np.count_nonzero(o <= 1.0))
    if too_low:
        raise MetricInputError(
            f"odds must be decimal odds > 1; {too_low} value(s) are <= 1 (min {o.min():.6g})"
        )
    return o


def _validate(
    y_true: object, prob: object, odds: object | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    y = _as_1d("y_true", y_true)
    p = _as_1d("prob", prob)
    if y.size != p.size:
        raise MetricInputError(f"length mismatch: y_true has {y.size} values, prob has {p.size}")
    if y.size == 0:
        raise MetricInputError("empty input: no predictions to score")
    _validate_prob(p)
    y = _validate_binary_labels("y_true", y)
    if odds is None:
        return y, p, None
    return y, p, _validate_odds(odds, y.size)


def _roi(
    y: np.ndarray, p: np.ndarray, o: np.ndarray, value_margin: float
) -> tuple[float | None, int]:
    bets = p * o > 1.0 + value_margin
    n_bets = int(np.count_nonzero(bets))
    if n_bets == 0:
        return None, 0
    profit = np.where(y[bets] == 1.0, o[bets] - 1.0, -1.0)
    return float(profit.sum() / n_bets), n_bets


def _roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    # Mann-Whitney U: the probability that a random positive outranks a random negative,
    # with ties counting one half (average ranks).
    # scipy.stats costs ~0.3 s to import; the code location loads this module at start-up.
    from scipy.stats import rankdata

    ranks = rankdata(p)
    n_pos = int(np.count_nonzero(y == 1.0))
    n_neg = y.size - n_pos
    rank_sum = float(ranks[y == 1.0].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _label_metrics(
    actual: np.ndarray,
    predicted: np.ndarray,
    values: dict[str, float | None],
    notes: dict[str, str],
    *,
    no_prediction_note: str,
    no_positive_note: str = "no positive labels (no home wins) in y_true",
) -> None:
    """accuracy, precision, recall, f1 from boolean actual/predicted positives, into values."""
    n = int(actual.size)
    tp = int(np.count_nonzero(predicted & actual))
    fp = int(np.count_nonzero(predicted & ~actual))
    fn = int(np.count_nonzero(~predicted & actual))
    n_pos = tp + fn

    values["accuracy"] = float(np.count_nonzero(predicted == actual) / n)

    if tp + fp == 0:
        values["precision"] = None
        notes["precision"] = no_prediction_note
    else:
        values["precision"] = tp / (tp + fp)

    if n_pos == 0:
        values["recall"] = None
        notes["recall"] = no_positive_note
    else:
        values["recall"] = tp / n_pos

    # 2TP / (2TP + FP + FN) is defined whenever anything was predicted or present; a model that
    # misses every real positive genuinely scores 0 here, which is not a failure to compute.
    if 2 * tp + fp + fn == 0:
        values["f1"] = None
        notes["f1"] = "no positive labels and no positive predictions"
    else:
        values["f1"] = 2 * tp / (2 * tp + fp + fn)


def _prob_metrics(
    y: np.ndarray, p: np.ndarray, values: dict[str, float | None], notes: dict[str, str]
) -> None:
    """roc_auc and log_loss of P(positive) against 0/1 labels, into values."""
    n = int(y.size)
    actual = y == 1.0
    n_pos = int(np.count_nonzero(actual))
    if n_pos == 0 or n_pos == n:
        values["roc_auc"] = None
        notes["roc_auc"] = f"only one class in y_true ({'1' if n_pos else '0'} for all {n} rows)"
    else:
        values["roc_auc"] = _roc_auc(y, p)

    clipped = np.clip(p, _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS)
    losses = np.where(actual, -np.log(clipped), -np.log1p(-clipped))
    values["log_loss"] = float(losses.mean())


def _compute(
    y: np.ndarray,
    p: np.ndarray,
    o: np.ndarray | None,
    threshold: float,
    value_margin: float,
) -> MetricResult:
    values: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    n = int(y.size)

    _label_metrics(
        y == 1.0,
        p >= threshold,
        values,
        notes,
        no_prediction_note=f"no positive predictions at threshold {threshold:g}",
    )
    _prob_metrics(y, p, values, notes)

    n_bets = 0
    if o is None:
        values["roi"] = None
        notes["roi"] = "no odds supplied"
    else:
        values["roi"], n_bets = _roi(y, p, o, value_margin)
        if values["roi"] is None:
            notes["roi"] = f"no bets: prob * odds never exceeded {1.0 + value_margin:g}"

    return MetricResult(values=values, n=n, n_bets=n_bets, notes=notes)


def classification_metrics(
    y_true: ArrayLike,
    prob: ArrayLike,
    *,
    odds: ArrayLike | None = None,
    threshold: float = 0.5,
    value_margin: float = 0.0,
) -> MetricResult:
    """Every metric in ``METRICS`` for one batch; a home win is predicted when prob >= threshold.

    Raises MetricInputError for inputs that cannot be scored (NaN/inf or out-of-range
    probabilities, non-0/1 labels, bad odds, length mismatch, empty input).
    """
    _check_finite_number("threshold", threshold, low=0.0, high=1.0)
    _check_finite_number("value_margin", value_margin, low=0.0, high=math.inf)
    y, p, o = _validate(y_true, prob, odds)
    return _compute(y, p, o, threshold, value_margin)


def roi(
    y_true: ArrayLike, prob: ArrayLike, odds: ArrayLike, *, value_margin: float = 0.0
) -> tuple[float | None, int]:
    """(ROI per unit staked, number of bets); ROI is None when the model placed no bet."""
    if odds is None:
        raise MetricInputError("odds are required to compute roi")
    _check_finite_number("value_margin", value_margin, low=0.0, high=math.inf)
    y, p, o = _validate(y_true, prob, odds)
    assert o is not None
    return _roi(y, p, o, value_margin)


def bootstrap_metric_std(
    y_true: ArrayLike,
    prob: ArrayLike,
    *,
    odds: ArrayLike | None = None,
    n_boot: int = 200,
    sample_size: int | None = None,
    seed: int = 0,
    threshold: float = 0.5,
    value_margin: float = 0.0,
) -> dict[str, float]:
    """Standard deviation of each metric over bootstrap resamples of ``sample_size`` rows.

    Used to size alert thresholds to the noise a batch of that size carries. A metric is left
    out when fewer than two resamples could compute it (e.g. roi without odds), because a
    made-up std would either mute or trigger alerts.
    """
    if not isinstance(n_boot, numbers.Integral) or n_boot < 2:
        raise MetricInputError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    _check_finite_number("threshold", threshold, low=0.0, high=1.0)
    _check_finite_number("value_margin", value_margin, low=0.0, high=math.inf)
    y, p, o = _validate(y_true, prob, odds)
    size = y.size if sample_size is None else sample_size
    if not isinstance(size, numbers.Integral) or size < 1:
        raise MetricInputError(f"sample_size must be a positive integer, got {sample_size!r}")

    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {metric: [] for metric in METRICS}
    for _ in range(n_boot):
        idx = rng.integers(0, y.size, size=size)
        result = _compute(y[idx], p[idx], None if o is None else o[idx], threshold, value_margin)
        for metric, value in result.values.items():
            if value is not None:
                samples[metric].append(value)
    return {
        metric: float(np.std(values, ddof=1))
        for metric, values in samples.items()
        if len(values) >= 2
    }


def thresholds_for(
    metric: str,
    *,
    baseline: float,
    baseline_std: float | None,
    n_current: int,
    n_baseline: int,
    warning_abs: float,
    critical_abs: float,
    k_warning: float = 2.0,
    k_critical: float = 3.0,
    higher_is_better: bool | None = None,
) -> tuple[float, float]:
    """(warning, critical) degradation thresholds, as positive amounts in the worse direction.

    Each is the larger of the configured absolute level and ``k`` standard deviations of the
    metric at the current batch size. The std measured on ``n_baseline`` rows is rescaled by
    sqrt(n_baseline / n_current) since sampling noise grows as 1/sqrt(n): a day with few
    matches gets wider thresholds instead of alerting on noise. ``baseline_std=None`` (noise
    unknown) falls back to the absolute levels. ``baseline`` is only checked for sanity, so
    callers can pass one baseline record unchanged. ``higher_is_better`` admits a metric of any
    task (see lib.tasks); without it the metric must be one of ``METRICS``.
    """
    _check_metric(metric, higher_is_better)
    _check_finite_number("baseline", baseline, low=-math.inf, high=math.inf)
    for name, count in (("n_current", n_current), ("n_baseline", n_baseline)):
        if not isinstance(count, numbers.Integral) or count < 1:
            raise MetricInputError(f"{name} must be a positive integer, got {count!r}")
    for name, value in (
        ("warning_abs", warning_abs),
        ("critical_abs", critical_abs),
        ("k_warning", k_warning),
        ("k_critical", k_critical),
    ):
        _check_finite_number(name, value, low=0.0, high=math.inf)
    if critical_abs < warning_abs:
        raise MetricInputError(
            f"critical_abs ({critical_abs:g}) must not be below warning_abs ({warning_abs:g})"
        )

    if baseline_std is None:
        noise = 0.0
    else:
        _check_finite_number("baseline_std", baseline_std, low=0.0, high=math.inf)
        noise = baseline_std * math.sqrt(n_baseline / n_current)
    warning = max(warning_abs, k_warning * noise)
    # With k_warning > k_critical a noisy day could otherwise put critical below warning.
    critical = max(critical_abs, k_critical * noise, warning)
    return warning, critical


def degradation(
    metric: str, observed: float, baseline: float, higher_is_better: bool | None = None
) -> tuple[float, float | None]:
    """(absolute, relative) change, signed so that positive means worse than baseline.

    Relative is the absolute change over |baseline|, and None when the baseline is 0 (e.g. a
    break-even ROI), where no ratio is meaningful. The direction comes from ``higher_is_better``
    when given (any task's metric), else from ``HIGHER_IS_BETTER`` (binary metrics only).
    """
    _check_metric(metric, higher_is_better)
    _check_finite_number("observed", observed, low=-math.inf, high=math.inf)
    _check_finite_number("baseline", baseline, low=-math.inf, high=math.inf)
    if higher_is_better is None:
        higher_is_better = HIGHER_IS_BETTER[metric]
    absolute = baseline - observed if higher_is_better else observed - baseline
    relative = None if baseline == 0 else absolute / abs(baseline)
    return float(absolute), relative


def severity_for(
    metric: str,
    *,
    degradation_abs: float,
    warning_threshold: float,
    critical_threshold: float,
    higher_is_better: bool | None = None,
) -> Severity:
    """Level for one observation; a degradation exactly at a threshold is still tolerated.

    ``higher_is_better`` admits a metric of any task (see lib.tasks); without it the metric must
    be one of ``METRICS``.
    """
    _check_metric(metric, higher_is_better)
    _check_finite_number("degradation_abs", degradation_abs, low=-math.inf, high=math.inf)
    _check_finite_number("warning_threshold", warning_threshold, low=0.0, high=math.inf)
    _check_finite_number("critical_threshold", critical_threshold, low=0.0, high=math.inf)
    if critical_threshold < warning_threshold:
        raise MetricInputError(
            f"critical_threshold ({critical_threshold:g}) must not be below "
            f"warning_threshold ({warning_threshold:g})"
        )
    if degradation_abs > critical_threshold:
        return "critical"
    if degradation_abs > warning_threshold:
        return "warning"
    return "ok"
