"""Contract -> task metrics: the one place that turns a model's outputs into metric values.

Training, the baseline and production all call these, so a metric (and the business value
rule: the same odds column and value margin) means the same thing on both sides.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.lib.contract import ModelContract
from mlops_assets.lib.metrics import MetricResult


def task_of(contract: ModelContract):
    from mlops_assets.lib.tasks import get_task

    if contract.task == "binary":
        return get_task("binary", threshold=contract.threshold)
    return get_task(contract.task)


def business_of(contract: ModelContract, frame: pd.DataFrame | None) -> Any:
    """The business value rule with this frame's odds, or None."""
    from mlops_assets.lib.tasks.business import CostMatrix, Roi

    bv = contract.business_value
    if bv.kind == "roi":
        if frame is None or bv.odds_column not in frame:
            return None
        return Roi(odds=frame[bv.odds_column].to_numpy(dtype=float), value_margin=bv.value_margin)
    if bv.kind == "cost_matrix":
        return CostMatrix(classes=tuple(bv.classes or ()), values=bv.matrix or [])
    return None


def outputs_of(contract: ModelContract, *, label=None, proba=None, score=None):
    from mlops_assets.lib.tasks import TaskOutputs

    classes = tuple(contract.class_labels) or None
    return TaskOutputs(
        label=None if label is None else np.asarray(label),
        proba=None if proba is None else np.asarray(proba, dtype=float),
        classes=classes,
        score=None if score is None else np.asarray(score, dtype=float),
    )


def y_true_of(contract: ModelContract, values: pd.Series) -> np.ndarray:
    """Labels as the task expects them: 0/1 for binary, class strings, floats for regression."""
    if contract.task == "regression":
        return pd.to_numeric(values, errors="raise").to_numpy(dtype=float)
    from mlops_assets.storage.inference_log import canonical_categories

    text = canonical_categories(values).to_numpy(dtype=object)
    if contract.task == "binary":
        positive = contract.class_labels[-1]
        return (text == positive).astype(float)
    return text.astype(str)


def evaluate(contract: ModelContract, y_true: np.ndarray, outputs, frame=None) -> MetricResult:
    return task_of(contract).compute(y_true, outputs, business=business_of(contract, frame))


def bootstrap(contract: ModelContract, y_true, outputs, frame=None, *, n_boot: int = 200):
    return task_of(contract).bootstrap_std(
        y_true, outputs, business=business_of(contract, frame), n_boot=n_boot
    )


def higher_is_better(contract: ModelContract, metric: str) -> bool:
    task = task_of(contract)
    if metric in task.higher_is_better:
        return task.higher_is_better[metric]
    return metric in ("roi", "business_value")


def judge(
    contract: ModelContract,
    metric: str,
    *,
    observed: float,
    baseline: float,
    baseline_std: float | None,
    n_current: int,
    n_baseline: int,
    levels: tuple[float, float],
) -> dict[str, float | str | None]:
    """Degradation (positive = worse), noise-aware thresholds and the level for one metric.

    Thresholds are the larger of the contract's absolute level and k standard deviations of
    the baseline's bootstrap rescaled to this day's sample size (noise grows as 1/sqrt(n)).
    """
    m = contract.monitoring
    noise = 0.0 if baseline_std is None else baseline_std * math.sqrt(n_baseline / n_current)
    warning = max(levels[0], m.k_warning * noise)
    critical = max(levels[1], m.k_critical * noise, warning)
    worse = baseline - observed if higher_is_better(contract, metric) else observed - baseline
    level = "critical" if worse > critical else "warning" if worse > warning else "ok"
    return {
        "degradation_abs": float(worse),
        "degradation_rel": None if baseline == 0 else float(worse / abs(baseline)),
        "warning_threshold": warning,
        "critical_threshold": critical,
        "level": level,
    }


def metric_levels(
    contract: ModelContract, baseline: dict[str, float | None]
) -> dict[str, tuple[float, float]]:
    """Metric -> absolute (warning, critical) degradation levels, for every metric of the
    model's task that can be sized; the monitored ones are `monitored_levels`.

    Levels the contract declares are taken as they are. Defaults come from the task: fixed
    for scale-free metrics, and a fraction of the baseline for metrics in the target's units
    (MAE, RMSE), which have no universal absolute level (left out while it is unknown).
    """
    from mlops_assets.lib.tasks.business import ROI_LEVELS

    task = task_of(contract)
    levels = task.levels_for(business=business_of(contract, None), baseline=baseline)
    if contract.business_value.kind == "roi":
        # Scale-free; only the odds need a day's rows, which business_of has none of here.
        levels.setdefault("roi", ROI_LEVELS)
    declared = contract.monitoring.metrics or {}
    return levels | {m: (v.warning, v.critical) for m, v in declared.items()}


def monitored_levels(
    contract: ModelContract, baseline: dict[str, float | None]
) -> dict[str, tuple[float, float]]:
    """Monitored metric -> absolute (warning, critical) degradation levels (see
    `metric_levels`); a metric whose level cannot be sized yet is left out."""
    levels = metric_levels(contract, baseline)
    return {m: levels[m] for m in contract.monitored_metrics() if m in levels}


def fit_estimation(contract: ModelContract, y_true, outputs, frame=None) -> tuple[dict | None, str]:
    """Calibrator and reference band for estimated metrics, fitted on the baseline's rows.

    Returns (JSON-able dict or None, note). Only classification models with probabilities can
    be estimated; regression has no distribution of its error to take an expectation over.
    """
    if contract.task == "regression" or not contract.monitoring.estimate:
        return None, "no estimation for this model (regression, or turned off)"
    if outputs.proba is None:
        return None, "no estimation: the model gives labels only"
    from mlops_assets.lib.estimation import EstimationError, fit_calibrator, reference_band

    classes = tuple(contract.class_labels)
    labels = np.asarray(
        [classes[int(v)] for v in y_true] if contract.task == "binary" else y_true, dtype=object
    )
    try:
        calibrator = fit_calibrator(labels, outputs.proba, classes=classes)
        chunk = max(50, min(1000, len(labels) // 5))
        band = reference_band(
            calibrator,
            labels,
            outputs.proba,
            chunk,
            threshold=contract.threshold,
            business=business_of(contract, frame),
        )
    except EstimationError as error:
        return None, f"no estimation: {error}"
    return {"calibrator": calibrator.to_dict(), "band": band.to_dict()}, "fitted"


def estimate_day(
    contract: ModelContract, estimation: dict, outputs, frame=None
) -> tuple[dict[str, float | None], dict[str, float], dict[str, float]]:
    """(values, lower, upper) estimated for a day's predictions without labels."""
    from mlops_assets.lib.estimation import Band, Calibrator, estimate

    result = estimate(
        Calibrator.from_dict(estimation["calibrator"]),
        outputs.proba,
        threshold=contract.threshold,
        business=business_of(contract, frame),
        band=Band.from_dict(estimation["band"]),
    )
    return dict(result.values), dict(result.lower), dict(result.upper)


def cap_level(level: str, cap: str) -> str:
    """An estimated verdict may warn but not page (by default): cap its severity."""
    rank = {"ok": 0, "info": 0, "warning": 1, "critical": 2}
    if level in rank and rank[level] > rank.get(cap, 2):
        return cap
    return level


def capped_estimate(level: str, cap: str) -> dict[str, str | None]:
    """The stored verdict of an estimated metric: its level capped (see `cap_level`) and, when
    the cap lowered it, a note with the level judged, so the warehouse, the health table,
    the checks and the alerts all show the same level."""
    capped = cap_level(level, cap)
    if capped == level:
        return {"level": level}
    return {
        "level": capped,
        "note": f"estimated (labels pending): judged {level}, capped at {capped} "
        "(monitoring.estimated_severity_cap) until the labels confirm it",
    }
