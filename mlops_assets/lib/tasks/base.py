"""The task interface: what a model's outputs look like, which metrics it has, how they degrade.

A task validates ``y_true`` and the model outputs once into a batch of aligned arrays, then
scores batches; the bootstrap reuses the validated batch and only resamples rows, so a resample
can never fail validation that the full batch passed.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np

from mlops_assets.lib import metrics as _m
from mlops_assets.lib.metrics import MetricInputError, MetricResult
from mlops_assets.lib.tasks.business import (
    COST_MATRIX_LEVELS,
    BusinessValue,
    CostMatrix,
    Roi,
    business_metric,
)

LABELS_ONLY_NOTE = "model returns labels only (no probabilities)"


@dataclass(frozen=True, eq=False)
class TaskOutputs:
    """What a model returned for n rows; which fields are needed depends on the task.

    ``label``: predicted labels (binary 0/1; multiclass class names as strings).
    ``proba``: binary P(positive) with shape (n,); multiclass shape (n, k), columns in ``classes``.
    ``classes``: multiclass column order of ``proba`` (ignored by the other tasks).
    ``score``: regression prediction, shape (n,).
    """

    label: np.ndarray | None = None
    proba: np.ndarray | None = None
    classes: tuple[str, ...] | None = None
    score: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Batch:
    """Validated rows of one batch; every ndarray field is aligned on the row axis."""

    n: int

    def take(self, idx: np.ndarray) -> Self:
        """The rows at ``idx`` (with repetition), every other field unchanged."""
        changes: dict[str, object] = {"n": int(idx.size)}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                changes[f.name] = value[idx]
        return dataclasses.replace(self, **changes)


class Task(ABC):
    """One task type (binary, multiclass, regression): its metrics and how to compute them."""

    name: ClassVar[str]
    #: metrics without business value, in report order
    metrics: ClassVar[tuple[str, ...]]
    #: direction of every metric the task can report, business metrics included
    higher_is_better: ClassVar[dict[str, bool]]
    #: absolute (warning, critical) degradation levels of the scale-free metrics
    default_levels: ClassVar[dict[str, tuple[float, float]]]
    #: (warning, critical) as fractions of |baseline| for metrics in the target's units
    relative_levels: ClassVar[dict[str, tuple[float, float]]] = {}
    default_monitored: ClassVar[tuple[str, ...]]
    #: business value types this task can score
    business_types: ClassVar[tuple[type, ...]] = ()

    def metrics_for(self, business: BusinessValue | None = None) -> tuple[str, ...]:
        """The task's metrics, plus the business metric when one is configured."""
        return self.metrics + self._business_metrics(business)

    def monitored_for(self, business: BusinessValue | None = None) -> tuple[str, ...]:
        """Default monitored metrics, plus the business metric when one is configured."""
        return self.default_monitored + self._business_metrics(business)

    def direction(self, metric: str) -> bool:
        """True when a higher value of ``metric`` is better."""
        try:
            return self.higher_is_better[metric]
        except KeyError:
            raise MetricInputError(
                f"unknown metric {metric!r} for task {self.name!r}; expected one of "
                f"{', '.join(self.higher_is_better)}"
            ) from None

    def levels_for(
        self,
        *,
        business: BusinessValue | None = None,
        baseline: Mapping[str, float | None] | None = None,
    ) -> dict[str, tuple[float, float]]:
        """Absolute (warning, critical) levels for each metric where one can be sized.

        Scale-free metrics use ``default_levels``. Metrics in the target's units (MAE, RMSE)
        have no universal absolute level, so theirs are ``relative_levels`` times |baseline|
        and are left out when the baseline value is unknown. A cost matrix's business value
        uses fractions of the matrix's span (best minus worst cell).
        """
        levels: dict[str, tuple[float, float]] = {}
        for metric in self.metrics_for(business):
            if metric in self.default_levels:
                levels[metric] = self.default_levels[metric]
            elif metric in self.relative_levels:
                value = None if baseline is None else baseline.get(metric)
                if value is not None and math.isfinite(value):
                    low, high = self.relative_levels[metric]
                    levels[metric] = (low * abs(value), high * abs(value))
            elif isinstance(business, CostMatrix) and metric == "business_value":
                low, high = COST_MATRIX_LEVELS
                levels[metric] = (low * business.span, high * business.span)
        return levels

    def degradation(
        self, metric: str, observed: float, baseline: float
    ) -> tuple[float, float | None]:
        """(absolute, relative) change of ``metric``, positive when worse than the baseline."""
        return _m.degradation(metric, observed, baseline, higher_is_better=self.direction(metric))

    def compute(
        self, y_true: object, outputs: TaskOutputs, *, business: BusinessValue | None = None
    ) -> MetricResult:
        """Every metric of ``metrics_for(business)``; undefined ones are None with a note.

        Raises MetricInputError naming the problem for inputs that cannot be scored.
        """
        return self._score(self._prepare(y_true, outputs, business))

    def bootstrap_std(
        self,
        y_true: object,
        outputs: TaskOutputs,
        *,
        business: BusinessValue | None = None,
        n_boot: int = 200,
        seed: int = 0,
        sample_size: int | None = None,
    ) -> dict[str, float]:
        """Std of each metric over ``n_boot`` resamples of ``sample_size`` rows (default n).

        A metric that fewer than two resamples could compute is left out: a made-up std would
        either mute or trigger alerts.
        """
        if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 2:
            raise MetricInputError(f"n_boot must be an integer >= 2, got {n_boot!r}")
        batch = self._prepare(y_true, outputs, business)
        size = batch.n if sample_size is None else sample_size
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise MetricInputError(f"sample_size must be a positive integer, got {sample_size!r}")
        rng = np.random.default_rng(seed)
        samples: dict[str, list[float]] = {metric: [] for metric in self.metrics_for(business)}
        for _ in range(n_boot):
            result = self._score(batch.take(rng.integers(0, batch.n, size=size)))
            for metric, value in result.values.items():
                if value is not None:
                    samples[metric].append(value)
        return {
            metric: float(np.std(values, ddof=1))
            for metric, values in samples.items()
            if len(values) >= 2
        }

    def _business_metrics(self, business: BusinessValue | None) -> tuple[str, ...]:
        if business is None:
            return ()
        if not isinstance(business, Roi | CostMatrix):
            raise MetricInputError(
                f"business must be None, Roi or CostMatrix, got {type(business).__name__}"
            )
        if not isinstance(business, self.business_types):
            allowed = ", ".join(t.__name__ for t in self.business_types) or "none"
            raise MetricInputError(
                f"{type(business).__name__} business value does not apply to {self.name!r} "
                f"tasks (allowed: {allowed})"
            )
        return (business_metric(business),)

    @abstractmethod
    def _prepare(
        self, y_true: object, outputs: TaskOutputs, business: BusinessValue | None
    ) -> Batch:
        """Validate inputs into a batch, raising MetricInputError naming the problem."""

    @abstractmethod
    def _score(self, batch: Batch) -> MetricResult:
        """Metrics of a validated batch."""


def check_outputs(outputs: object) -> TaskOutputs:
    if not isinstance(outputs, TaskOutputs):
        raise MetricInputError(f"outputs must be a TaskOutputs, got {type(outputs).__name__}")
    return outputs


def check_length(name: str, values: np.ndarray, n: int) -> None:
    if values.shape[0] != n:
        raise MetricInputError(
            f"length mismatch: y_true has {n} values, {name} has {values.shape[0]}"
        )


def check_not_empty(n: int) -> None:
    if n == 0:
        raise MetricInputError("empty input: no predictions to score")


def check_finite(name: str, values: np.ndarray) -> None:
    not_finite = int(np.count_nonzero(~np.isfinite(values)))
    if not_finite:
        raise MetricInputError(f"{name} contains {not_finite} NaN/inf value(s) of {values.size}")
