"""Multiclass classification: class names as strings, per-class probabilities and/or labels.

Averaging follows scikit-learn: macro metrics average over the classes that occur in y_true or
in the predictions. A class's precision is undefined when it was never predicted and its recall
when it never occurs; such classes are left out of the macro mean (scikit-learn's
``zero_division=np.nan``) rather than counted as 0, which would read as a real, terrible score.
"""

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
from mlops_assets.lib.tasks.business import BusinessValue, CostMatrix

#: rows of proba must sum to 1 within this tolerance (float32 softmax outputs drift ~1e-6)
PROBA_SUM_TOLERANCE = 1e-3


def _is_missing(value: object) -> bool:
    # NaN is the value not equal to itself; pandas' NA makes the comparison itself ambiguous
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:
        return True


def as_labels(name: str, values: object) -> np.ndarray:
    """Class labels as a 1-D array of strings; missing labels (None/NaN/NA) are an error.

    Non-string labels become their ``str``: integer targets 0, 1, 2 are classes "0", "1", "2".
    """
    array = np.asarray(values)
    if array.ndim != 1:
        raise MetricInputError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.dtype.kind in "fc":
        missing = int(np.count_nonzero(~np.isfinite(array)))
    elif array.dtype.kind == "O":
        missing = sum(1 for v in array if _is_missing(v))
    else:
        missing = 0
    if missing:
        raise MetricInputError(f"{name} contains {missing} missing label(s) (None/NaN/NA/inf)")
    if array.dtype.kind == "O":
        return np.array([str(v) for v in array], dtype=str)
    return array.astype(str)


def _encode(name: str, labels: np.ndarray, index: dict[str, int]) -> np.ndarray:
    uniques, inverse = np.unique(labels, return_inverse=True)
    unknown = [str(u) for u in uniques if str(u) not in index]
    if unknown:
        raise MetricInputError(
            f"{name} has {len(unknown)} label(s) not in classes {tuple(index)!r}: "
            f"e.g. {unknown[:5]}"
        )
    lookup = np.array([index[str(u)] for u in uniques], dtype=np.int64)
    return lookup[inverse.reshape(-1)]


@dataclass(frozen=True, eq=False)
class _MulticlassBatch(Batch):
    classes: tuple[str, ...]
    y: np.ndarray  # class index per row
    predicted: np.ndarray  # class index per row
    proba: np.ndarray | None  # (n, k) in the order of classes
    cost: CostMatrix | None = None
    actual_pos: np.ndarray | None = None
    predicted_pos: np.ndarray | None = None


@dataclass(frozen=True)
class MulticlassTask(Task):
    """Multiclass task; the predicted label is the argmax of proba when no label is given."""

    name: ClassVar[str] = "multiclass"
    metrics: ClassVar[tuple[str, ...]] = (
        "accuracy",
        "f1_macro",
        "f1_weighted",
        "precision_macro",
        "recall_macro",
        "log_loss",
        "roc_auc_ovr",
    )
    higher_is_better: ClassVar[dict[str, bool]] = {
        "accuracy": True,
        "f1_macro": True,
        "f1_weighted": True,
        "precision_macro": True,
        "recall_macro": True,
        "log_loss": False,
        "roc_auc_ovr": True,
        "business_value": True,
    }
    default_levels: ClassVar[dict[str, tuple[float, float]]] = {
        "accuracy": (0.04, 0.07),
        "f1_macro": (0.05, 0.10),
        "f1_weighted": (0.05, 0.10),
        "precision_macro": (0.05, 0.10),
        "recall_macro": (0.05, 0.10),
        # log loss grows with the number of classes (ln k for a uniform guess), so wider
        # levels than binary's
        "log_loss": (0.05, 0.12),
        "roc_auc_ovr": (0.04, 0.07),
    }
    # roc_auc_ovr is computed but not monitored by default: with a rare class a daily batch
    # often lacks it, and the mean then moves because the class set changed, not the model
    default_monitored: ClassVar[tuple[str, ...]] = ("accuracy", "f1_macro", "log_loss")
    business_types: ClassVar[tuple[type, ...]] = (CostMatrix,)

    def _prepare(
        self, y_true: object, outputs: TaskOutputs, business: BusinessValue | None
    ) -> _MulticlassBatch:
        outputs = check_outputs(outputs)
        self._business_metrics(business)
        y_labels = as_labels("y_true", y_true)
        n = int(y_labels.size)
        check_not_empty(n)
        if outputs.proba is None and outputs.label is None:
            raise MetricInputError(
                "multiclass task needs outputs.proba (with outputs.classes) or outputs.label; "
                "both are None"
            )
        predicted_labels = None
        if outputs.label is not None:
            predicted_labels = as_labels("label", outputs.label)
            check_length("label", predicted_labels, n)

        proba = None
        if outputs.proba is not None:
            classes = _check_classes(outputs.classes)
            proba = _check_proba(outputs.proba, classes, n)
        elif outputs.classes is not None:
            classes = _check_classes(outputs.classes)
        else:
            assert predicted_labels is not None
            classes = tuple(str(c) for c in np.unique(np.concatenate([y_labels, predicted_labels])))

        index = {c: i for i, c in enumerate(classes)}
        y = _encode("y_true", y_labels, index)
        if predicted_labels is not None:
            predicted = _encode("label", predicted_labels, index)
        else:
            assert proba is not None
            predicted = np.argmax(proba, axis=1)

        extra: dict[str, object] = {}
        if isinstance(business, CostMatrix):
            class_array = np.asarray(classes, dtype=str)
            extra = {
                "cost": business,
                "actual_pos": business.positions("y_true", class_array[y]),
                "predicted_pos": business.positions("predicted label", class_array[predicted]),
            }
        return _MulticlassBatch(
            n=n, classes=classes, y=y, predicted=predicted, proba=proba, **extra
        )

    def _score(self, batch: Batch) -> MetricResult:
        assert isinstance(batch, _MulticlassBatch)
        values: dict[str, float | None] = {}
        notes: dict[str, str] = {}
        k = len(batch.classes)
        y, predicted = batch.y, batch.predicted
        correct = y == predicted
        values["accuracy"] = float(np.count_nonzero(correct) / batch.n)

        tp = np.bincount(y[correct], minlength=k).astype(np.float64)
        support = np.bincount(y, minlength=k).astype(np.float64)
        n_predicted = np.bincount(predicted, minlength=k).astype(np.float64)
        present = (support + n_predicted) > 0
        # 2TP / (support + predicted) per class; defined for every class that occurs somewhere
        f1 = np.divide(2 * tp, support + n_predicted, out=np.zeros(k), where=present)
        values["f1_macro"] = float(f1[present].mean())
        values["f1_weighted"] = float((f1 * support).sum() / support.sum())

        predicted_any = n_predicted > 0
        values["precision_macro"] = float((tp[predicted_any] / n_predicted[predicted_any]).mean())
        in_truth = support > 0
        values["recall_macro"] = float((tp[in_truth] / support[in_truth]).mean())

        if batch.proba is None:
            for metric in ("log_loss", "roc_auc_ovr"):
                values[metric] = None
                notes[metric] = LABELS_ONLY_NOTE
        else:
            p_true = batch.proba[np.arange(batch.n), y]
            clipped = np.clip(p_true, _m._LOG_LOSS_EPS, 1.0 - _m._LOG_LOSS_EPS)
            values["log_loss"] = float(-np.log(clipped).mean())
            # one-vs-rest AUC needs positives and negatives for the class; classes absent from
            # this batch are left out of the mean rather than guessed
            scored = [c for c in range(k) if 0 < support[c] < batch.n]
            if scored:
                aucs = [_m._roc_auc((y == c).astype(np.float64), batch.proba[:, c]) for c in scored]
                values["roc_auc_ovr"] = float(np.mean(aucs))
            else:
                only = batch.classes[int(y[0])]
                values["roc_auc_ovr"] = None
                notes["roc_auc_ovr"] = (
                    f"fewer than 2 classes in y_true (only {only!r} for all {batch.n} rows)"
                )

        if batch.cost is not None:
            assert batch.actual_pos is not None and batch.predicted_pos is not None
            values["business_value"] = batch.cost.mean_value(batch.actual_pos, batch.predicted_pos)
        return MetricResult(values=values, n=batch.n, n_bets=0, notes=notes)


def _check_classes(classes: object) -> tuple[str, ...]:
    if classes is None:
        raise MetricInputError("multiclass proba needs outputs.classes naming its columns")
    if isinstance(classes, str) or not hasattr(classes, "__iter__"):
        raise MetricInputError(f"classes must be a sequence of class names, got {classes!r}")
    raw = tuple(classes)
    if any(_is_missing(c) or c == "" for c in raw):
        raise MetricInputError(f"classes must not contain empty or missing names, got {raw!r}")
    # same rule as the labels: class 0 of a scikit-learn model's classes_ is "0"
    names = tuple(str(c) for c in raw)
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise MetricInputError(f"classes must be unique; repeated: {repeated}")
    if len(names) < 2:
        raise MetricInputError(f"multiclass needs at least 2 classes, got {names!r}")
    return names


def _check_proba(proba: object, classes: tuple[str, ...], n: int) -> np.ndarray:
    try:
        array = np.asarray(proba, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise MetricInputError(f"proba must be numeric: {error}") from error
    if array.ndim != 2:
        raise MetricInputError(
            f"multiclass proba must have shape (n, k) with one column per class, "
            f"got shape {array.shape}"
        )
    check_length("proba", array, n)
    if array.shape[1] != len(classes):
        raise MetricInputError(
            f"proba has {array.shape[1]} columns but classes names {len(classes)}: {classes!r}"
        )
    check_finite("proba", array)
    outside = int(np.count_nonzero((array < 0.0) | (array > 1.0)))
    if outside:
        raise MetricInputError(
            f"proba contains {outside} value(s) outside [0, 1] "
            f"(min {array.min():.6g}, max {array.max():.6g})"
        )
    sums = array.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > PROBA_SUM_TOLERANCE)
    if off.size:
        first = int(off[0])
        raise MetricInputError(
            f"proba rows must sum to 1 (tolerance {PROBA_SUM_TOLERANCE:g}); {off.size} row(s) "
            f"do not, e.g. row {first} sums to {sums[first]:.6g}"
        )
    return array
