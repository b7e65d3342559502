"""Regression: a numeric target and the model's numeric prediction (``outputs.score``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mlops_assets.lib import metrics as _m
from mlops_assets.lib.metrics import MetricInputError, MetricResult
from mlops_assets.lib.tasks.base import (
    Batch,
    Task,
    TaskOutputs,
    check_finite,
    check_length,
    check_not_empty,
    check_outputs,
)
from mlops_assets.lib.tasks.business import BusinessValue

# A target this close to zero makes |error| / |y| explode; scikit-learn divides by eps there,
# which turns one zero into a MAPE of ~1e15 that would look like a real catastrophe.
_MAPE_ZERO = float(np.finfo(np.float64).eps)


@dataclass(frozen=True, eq=False)
class _RegressionBatch(Batch):
    y: np.ndarray
    score: np.ndarray


@dataclass(frozen=True)
class RegressionTask(Task):
    """Regression task; errors are in the target's units except MAPE (a fraction) and R²."""

    name: ClassVar[str] = "regression"
    metrics: ClassVar[tuple[str, ...]] = ("mae", "rmse", "mape", "r2")
    higher_is_better: ClassVar[dict[str, bool]] = {
        "mae": False,
        "rmse": False,
        "mape": False,
        "r2": True,
    }
    # MAPE is a fraction (0.05 = five points of mean absolute percentage error)
    default_levels: ClassVar[dict[str, tuple[float, float]]] = {
        "mape": (0.05, 0.10),
        "r2": (0.05, 0.10),
    }
    # MAE and RMSE are in the target's units: no absolute level fits every target, so their
    # levels are fractions of the baseline value (see Task.levels_for)
    relative_levels: ClassVar[dict[str, tuple[float, float]]] = {
        "mae": (0.10, 0.20),
        "rmse": (0.10, 0.20),
    }
    default_monitored: ClassVar[tuple[str, ...]] = ("mae", "rmse", "r2")

    def _prepare(
        self, y_true: object, outputs: TaskOutputs, business: BusinessValue | None
    ) -> _RegressionBatch:
        outputs = check_outputs(outputs)
        self._business_metrics(business)
        y = _m._as_1d("y_true", y_true)
        n = int(y.size)
        check_not_empty(n)
        check_finite("y_true", y)
        if outputs.score is None:
            raise MetricInputError("regression task needs outputs.score (the prediction)")
        score = _m._as_1d("score", outputs.score)
        check_length("score", score, n)
        check_finite("score", score)
        return _RegressionBatch(n=n, y=y, score=score)

    def _score(self, batch: Batch) -> MetricResult:
        assert isinstance(batch, _RegressionBatch)
        values: dict[str, float | None] = {}
        notes: dict[str, str] = {}
        y = batch.y
        error = batch.score - y
        values["mae"] = float(np.abs(error).mean())
        values["rmse"] = float(np.sqrt(np.square(error).mean()))

        zeros = int(np.count_nonzero(np.abs(y) < _MAPE_ZERO))
        if zeros:
            values["mape"] = None
            notes["mape"] = f"MAPE undefined: y_true contains zeros ({zeros} of {batch.n} rows)"
        else:
            values["mape"] = float((np.abs(error) / np.abs(y)).mean())

        # ptp rather than the variance: a constant y_true's variance can come out as 1e-33
        # from rounding and give a huge negative R² instead of "undefined"
        if np.ptp(y) == 0:
            values["r2"] = None
            notes["r2"] = f"R² undefined: y_true is constant ({y[0]:g} for all {batch.n} rows)"
        else:
            ss_res = float(np.square(error).sum())
            ss_tot = float(np.square(y - y.mean()).sum())
            values["r2"] = 1.0 - ss_res / ss_tot
        return MetricResult(values=values, n=batch.n, n_bets=0, notes=notes)
