"""Binary classification: labels 0/1, the model's P(positive) and/or its predicted labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from mlops_assets.lib import metrics as _m
from mlops_assets.lib.metrics import MetricInputError, MetricResult
from mlops_assets.lib.tasks.base import (
    LABELS_ONLY_NOTE,
    Batch,
    Task,
    TaskOutputs,
    check_finite,
    check_length,
    check_not_empty,
    check_outputs,
)
from mlops_assets.lib.tasks.business import (
    ROI_LEVELS,
    BusinessValue,
    CostMatrix,
    Roi,
    roi_value,
)

_BINARY_CLASSES = frozenset({"0", "1"})


@dataclass(frozen=True, eq=False)
class _BinaryBatch(Batch):
    y: np.ndarray  # float 0/1
    predicted: np.ndarray  # bool, predicted positive
    p: np.ndarray | None  # P(positive), None when the model gave labels only
    labels_from_model: bool
    odds: np.ndarray | None = None
    value_margin: float = 0.0
    cost: CostMatrix | None = None
    actual_pos: np.ndarray | None = None  # cost matrix row of each actual label
    predicted_pos: np.ndarray | None = None  # cost matrix column of each predicted label


@dataclass(frozen=True)
class BinaryTask(Task):
    """Binary task; a label is predicted positive when P(positive) >= ``threshold``.

    When ``outputs.label`` is given it is used as the prediction and ``threshold`` is not
    applied; ``outputs.proba`` still feeds roc_auc, log_loss and roi.
    """

    threshold: float = 0.5

    name: ClassVar[str] = "binary"
    metrics: ClassVar[tuple[str, ...]] = (
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "log_loss",
    )
    higher_is_better: ClassVar[dict[str, bool]] = {
        "accuracy": True,
        "precision": True,
        "recall": True,
        "f1": True,
        "roc_auc": True,
        "log_loss": False,
        "roi": True,
        "business_value": True,
    }
    default_levels: ClassVar[dict[str, tuple[float, float]]] = {
        "accuracy": (0.04, 0.07),
        "precision": (0.05, 0.10),
        "recall": (0.05, 0.10),
        "f1": (0.05, 0.10),
        "roc_auc": (0.04, 0.07),
        "log_loss": (0.03, 0.08),
        "roi": ROI_LEVELS,
    }
    default_monitored: ClassVar[tuple[str, ...]] = ("accuracy", "f1", "roc_auc", "log_loss")
    business_types: ClassVar[tuple[type, ...]] = (Roi, CostMatrix)

    def __post_init__(self) -> None:
        _m._check_finite_number("threshold", self.threshold, low=0.0, high=1.0)

    def _prepare(
        self, y_true: object, outputs: TaskOutputs, business: BusinessValue | None
    ) -> _BinaryBatch:
        outputs = check_outputs(outputs)
        self._business_metrics(business)
        y = _m._as_1d("y_true", y_true)
        n = int(y.size)
        check_not_empty(n)
        check_finite("y_true", y)
        y = _m._validate_binary_labels("y_true", y)

        if outputs.proba is None and outputs.label is None:
            raise MetricInputError(
                "binary task needs outputs.proba (P(positive)) or outputs.label; both are None"
            )
        p = None
        if outputs.proba is not None:
            shape = np.shape(outputs.proba)
            if len(shape) != 1:
                raise MetricInputError(
                    f"binary proba must be P(positive) with shape (n,), got shape {shape} "
                    "(for a two-column predict_proba, pass its positive-class column)"
                )
            p = _m._as_1d("proba", outputs.proba)
            check_length("proba", p, n)
            _m._validate_prob(p, name="proba")
        if outputs.label is not None:
            label = _m._as_1d("label", outputs.label)
            check_length("label", label, n)
            check_finite("label", label)
            predicted = _m._validate_binary_labels("label", label) == 1.0
        else:
            assert p is not None
            predicted = p >= self.threshold

        extra: dict[str, object] = {}
        if isinstance(business, Roi):
            extra = {
                "odds": _m._validate_odds(business.odds, n),
                "value_margin": business.value_margin,
            }
        elif isinstance(business, CostMatrix):
            if set(business.classes) != _BINARY_CLASSES:
                raise MetricInputError(
                    f"a binary cost matrix needs classes ('0', '1'), got {business.classes!r}"
                )
            extra = {
                "cost": business,
                "actual_pos": business.positions("y_true", np.where(y == 1.0, "1", "0")),
                "predicted_pos": business.positions("label", np.where(predicted, "1", "0")),
            }
        return _BinaryBatch(
            n=n,
            y=y,
            predicted=predicted,
            p=p,
            labels_from_model=outputs.label is not None,
            **extra,
        )

    def _score(self, batch: Batch) -> MetricResult:
        assert isinstance(batch, _BinaryBatch)
        values: dict[str, float | None] = {}
        notes: dict[str, str] = {}
        no_prediction = (
            "the model predicted no positive label"
            if batch.labels_from_model
            else f"no positive predictions at threshold {self.threshold:g}"
        )
        _m._label_metrics(
            batch.y == 1.0,
            batch.predicted,
            values,
            notes,
            no_prediction_note=no_prediction,
            no_positive_note="no positive labels in y_true",
        )
        if batch.p is None:
            for metric in ("roc_auc", "log_loss"):
                values[metric] = None
                notes[metric] = LABELS_ONLY_NOTE
        else:
            _m._prob_metrics(batch.y, batch.p, values, notes)

        n_bets = 0
        if batch.odds is not None:
            if batch.p is None:
                values["roi"] = None
                notes["roi"] = LABELS_ONLY_NOTE
            else:
                values["roi"], n_bets, note = roi_value(
                    batch.y, batch.p, batch.odds, batch.value_margin
                )
                if note:
                    notes["roi"] = note
        elif batch.cost is not None:
            assert batch.actual_pos is not None and batch.predicted_pos is not None
            values["business_value"] = batch.cost.mean_value(batch.actual_pos, batch.predicted_pos)
        return MetricResult(values=values, n=batch.n, n_bets=n_bets, notes=notes)
