"""Metrics per task type (binary, multiclass, regression), their noise and their direction.

Plain numpy/scipy, no Dagster. ``get_task(name)`` returns a ``Task``; ``task.compute`` scores a
batch, ``task.bootstrap_std`` sizes its noise, ``task.levels_for`` and ``degradation`` turn a
change against the baseline into a verdict with lib.metrics.thresholds_for / severity_for.
"""

from __future__ import annotations

import dataclasses

from mlops_assets.lib import metrics as _m
from mlops_assets.lib.metrics import MetricInputError, MetricResult
from mlops_assets.lib.tasks.base import LABELS_ONLY_NOTE, Task, TaskOutputs
from mlops_assets.lib.tasks.binary import BinaryTask
from mlops_assets.lib.tasks.business import BusinessValue, CostMatrix, Roi
from mlops_assets.lib.tasks.multiclass import MulticlassTask
from mlops_assets.lib.tasks.regression import RegressionTask

TASKS: dict[str, type[Task]] = {
    "binary": BinaryTask,
    "multiclass": MulticlassTask,
    "regression": RegressionTask,
}


def get_task(name: str, **options: float) -> Task:
    """The task called ``name``; options are task fields (binary: ``threshold``)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    task_type = TASKS[name]
    allowed = {f.name for f in dataclasses.fields(task_type)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"task {name!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes {', '.join(sorted(allowed)) or 'no options'}"
        )
    return task_type(**options)


def degradation(
    metric: str, observed: float, baseline: float, higher_is_better: bool
) -> tuple[float, float | None]:
    """(absolute, relative) change of any metric, positive when worse than the baseline."""
    return _m.degradation(metric, observed, baseline, higher_is_better=higher_is_better)


__all__ = [
    "LABELS_ONLY_NOTE",
    "TASKS",
    "BinaryTask",
    "BusinessValue",
    "CostMatrix",
    "MetricInputError",
    "MetricResult",
    "MulticlassTask",
    "RegressionTask",
    "Roi",
    "Task",
    "TaskOutputs",
    "degradation",
    "get_task",
]
