"""Which drifted features cost performance: rank features by the drop their shift explains.

A p-value says that a feature moved, not that the move matters to the model. Here each
candidate feature is put back to its reference distribution in the current batch (every other
column untouched), the batch is re-scored with the model, and the metric is re-estimated with
:func:`mlops_assets.lib.estimation.estimate`, so no labels are needed. The impact of a feature
is the estimated metric with that feature restored minus the estimated metric on the batch as
it is: positive means the feature's shift is costing that much.

Restoring a numeric feature maps each current value to the reference quantile of the same
rank (quantile mapping), which restores the reference distribution and keeps the feature's
ordering relative to the other columns of the row; a feature with missing values, or a
non-numeric one, is resampled from the reference values instead (missing values included, at
the reference rate). Cost: one model call per feature on at most ``max_rows`` rows.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from mlops_assets.lib.estimation import Calibrator, EstimationError, estimate

#: rows of the current batch re-scored per feature; enough for an accuracy estimate good to
#: about +-0.01, and it bounds the cost on large days
DEFAULT_MAX_ROWS = 5000

Method = Literal["quantile", "resample"]


class ImpactError(ValueError):
    """The frames, features or metric cannot be used; the message names which."""


class FeatureImpact(NamedTuple):
    feature: str
    impact: float


def _restore(
    current: pd.Series, reference: pd.Series, method: Method, rng: np.random.Generator
) -> np.ndarray:
    ref = reference.to_numpy()
    cur = current.to_numpy()
    numeric = pd.api.types.is_numeric_dtype(reference) and pd.api.types.is_numeric_dtype(current)
    numeric = numeric and not pd.api.types.is_bool_dtype(reference)
    if method == "quantile" and numeric and not (pd.isna(ref).any() or pd.isna(cur).any()):
        q = (rankdata(cur) - 0.5) / cur.size
        # inverted_cdf returns reference values themselves, so integer features stay integers
        return np.quantile(ref, q, method="inverted_cdf")
    return ref[rng.integers(0, ref.size, size=cur.size)]


def sample_rows(n_rows: int, max_rows: int = DEFAULT_MAX_ROWS, seed: int = 0) -> np.ndarray | None:
    """The rows (in order) `rank_feature_impact` scores of a frame of ``n_rows`` rows with
    this ``max_rows`` and ``seed``; None for all of them. A caller that keeps only these
    rows of a large day and passes them gets the impacts of the whole day."""
    if n_rows <= max_rows:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=int(max_rows), replace=False))


def rank_feature_impact(
    predict_proba: Callable[[pd.DataFrame], object],
    calibrator: Calibrator,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str] | None = None,
    *,
    metric: str = "accuracy",
    threshold: float = 0.5,
    max_rows: int = DEFAULT_MAX_ROWS,
    method: Method = "quantile",
    seed: int = 0,
) -> list[FeatureImpact]:
    """(feature, impact) for each of ``features``, largest impact first.

    ``predict_proba(frame)`` returns what :func:`estimate` takes for ``calibrator``
    (P(positive) or (n, k) probabilities) for a frame with ``current``'s columns.
    ``features`` defaults to every column the two frames share (pass the drifted ones).
    ``metric`` is any metric :func:`estimate` returns for this model (``accuracy`` by default;
    ``roc_auc``, ``f1_macro``, ``business_value`` need no other change, ``roi`` is not
    supported here because restoring a feature does not restore the odds).
    """
    for name, frame in (("reference", reference), ("current", current)):
        if not isinstance(frame, pd.DataFrame):
            raise ImpactError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
        if frame.empty:
            raise ImpactError(f"{name} has no rows")
    if features is None:
        features = [c for c in current.columns if c in reference.columns]
    features = list(features)
    if not features:
        raise ImpactError("no features to rank")
    missing = {
        name: [f for f in features if f not in frame.columns]
        for name, frame in (("reference", reference), ("current", current))
    }
    for name, absent in missing.items():
        if absent:
            raise ImpactError(f"feature(s) {absent} not in the {name} frame")
    if not isinstance(max_rows, numbers.Integral) or max_rows < 1:
        raise ImpactError(f"max_rows must be a positive integer, got {max_rows!r}")
    if method not in ("quantile", "resample"):
        raise ImpactError(f"method must be 'quantile' or 'resample', got {method!r}")

    rows = sample_rows(len(current), max_rows, seed)
    sample = (current if rows is None else current.iloc[rows]).reset_index(drop=True)
    # Its own generator: the rows drawn above do not change the values restored below, so a
    # caller that passes the rows `sample_rows` chose gets the same impacts.
    rng = np.random.default_rng([seed, 1])

    def score(frame: pd.DataFrame) -> float:
        try:
            result = estimate(calibrator, predict_proba(frame), threshold=threshold)
        except EstimationError as error:
            raise ImpactError(f"predict_proba output cannot be estimated: {error}") from error
        if metric not in result.values:
            raise ImpactError(
                f"metric {metric!r} is not estimated for a {calibrator.kind} model; "
                f"expected one of {sorted(result.values)}"
            )
        value = result.values[metric]
        if value is None:
            raise ImpactError(f"{metric} cannot be estimated here: {result.notes.get(metric)}")
        return value

    base = score(sample)
    impacts = []
    for feature in features:
        restored = sample.copy()
        values = _restore(sample[feature], reference[feature], method, rng)
        dtype = sample[feature].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            restored[feature] = pd.Categorical(values, categories=dtype.categories)
        else:
            restored[feature] = pd.Series(values, index=restored.index).astype(dtype)
        impacts.append(FeatureImpact(feature, score(restored) - base))
    return sorted(impacts, key=lambda item: item.impact, reverse=True)


__all__ = [
    "DEFAULT_MAX_ROWS",
    "FeatureImpact",
    "ImpactError",
    "rank_feature_impact",
    "sample_rows",
]
