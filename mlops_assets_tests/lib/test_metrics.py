from __future__ import annotations

import math
import re

import numpy as np
import pytest
from sklearn import metrics as skm

from mlops_assets.lib.metrics import (
    HIGHER_IS_BETTER,
    METRICS,
    MetricInputError,
    MetricResult,
    bootstrap_metric_std,
    classification_metrics,
    degradation,
    roi,
    severity_for,
    thresholds_for,
)


def test_every_metric_has_a_direction() -> None:
    assert set(HIGHER_IS_BETTER) == set(METRICS)
    assert HIGHER_IS_BETTER["log_loss"] is False
    assert all(HIGHER_IS_BETTER[m] for m in METRICS if m != "log_loss")


def test_hand_worked_case() -> None:
    y = [1, 0, 1, 0]
    p = [0.9, 0.6, 0.4, 0.2]
    result = classification_metrics(y, p)
    # predictions at 0.5: [1, 1, 0, 0] -> TP=1 (row 0), FP=1 (row 1), FN=1 (row 2), TN=1
    assert result.n == 4
    assert result.values["accuracy"] == pytest.approx(2 / 4)
    assert result.values["precision"] == pytest.approx(1 / (1 + 1))
    assert result.values["recall"] == pytest.approx(1 / (1 + 1))
    assert result.values["f1"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    # positive/negative pairs: 0.9>0.6, 0.9>0.2, 0.4<0.6, 0.4>0.2 -> 3 of 4 ordered correctly
    assert result.values["roc_auc"] == pytest.approx(3 / 4)
    # -(ln 0.9 + ln(1-0.6) + ln 0.4 + ln(1-0.2)) / 4
    expected_ll = -(math.log(0.9) + math.log(0.4) + math.log(0.4) + math.log(0.8)) / 4
    assert result.values["log_loss"] == pytest.approx(expected_ll)
    assert result.values["roi"] is None
    assert result.notes["roi"] == "no odds supplied"
    assert result.n_bets == 0


def test_threshold_moves_the_decision() -> None:
    y = [1, 0, 1, 0]
    p = [0.9, 0.6, 0.4, 0.2]
    # at 0.7 only row 0 is predicted positive: TP=1, FP=0, FN=1, TN=2
    result = classification_metrics(y, p, threshold=0.7)
    assert result.values["accuracy"] == pytest.approx(3 / 4)
    assert result.values["precision"] == pytest.approx(1.0)
    assert result.values["recall"] == pytest.approx(1 / 2)
    # roc_auc and log_loss do not depend on the threshold
    assert result.values["roc_auc"] == pytest.approx(3 / 4)


def test_all_ties_give_auc_one_half() -> None:
    result = classification_metrics([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5])
    assert result.values["roc_auc"] == pytest.approx(0.5)


def test_log_loss_stays_finite_for_confident_mistakes() -> None:
    result = classification_metrics([1, 0], [0.0, 1.0])
    assert math.isfinite(result.values["log_loss"])
    assert result.values["log_loss"] > 30


@pytest.mark.parametrize(
    ("seed", "n", "threshold"),
    [(0, 50, 0.5), (1, 500, 0.5), (2, 2000, 0.3), (3, 300, 0.65)],
)
def test_matches_scikit_learn_on_random_data(seed: int, n: int, threshold: float) -> None:
    rng = np.random.default_rng(seed)
    # rounded probabilities so that the AUC tie handling is exercised too
    p = np.round(rng.beta(2.0, 2.5, size=n), 2)
    y = (rng.random(n) < p).astype(int)
    pred = (p >= threshold).astype(int)
    result = classification_metrics(y, p, threshold=threshold)

    assert result.values["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert result.values["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert result.values["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert result.values["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert result.values["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert result.values["log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-9)


def test_accepts_numpy_and_pandas_like_inputs() -> None:
    y = np.array([True, False, True])
    p = np.array([0.8, 0.3, 0.6], dtype=np.float32)
    result = classification_metrics(y, p)
    assert result.values["accuracy"] == pytest.approx(1.0)


# --- undefined metrics are None with a note, never 0.0 -----------------------------------------


@pytest.mark.parametrize(
    ("y", "p", "undefined", "zero"),
    [
        # no home wins at all: recall and AUC have nothing to measure
        ([0, 0, 0], [0.7, 0.2, 0.1], {"recall", "roc_auc"}, {"precision", "f1"}),
        # only home wins: AUC needs both classes; precision = 1/1, recall = 1/3
        ([1, 1, 1], [0.7, 0.2, 0.1], {"roc_auc"}, set()),
        # nothing predicted positive: precision undefined, but the model missed both real
        # home wins, so F1 = 2*0 / (0 + 0 + 2) is a genuine 0
        ([1, 0, 1], [0.4, 0.2, 0.1], {"precision"}, {"f1", "recall"}),
        # no positives predicted and none present: F1 has an empty denominator
        ([0, 0], [0.1, 0.2], {"precision", "recall", "f1", "roc_auc"}, set()),
    ],
)
def test_undefined_metrics_are_none_with_a_note(
    y: list[int], p: list[float], undefined: set[str], zero: set[str]
) -> None:
    result = classification_metrics(y, p)
    expected_none = undefined | {"roi"}  # no odds given
    assert {m for m, v in result.values.items() if v is None} == expected_none
    assert set(result.notes) == expected_none
    assert all(result.notes[m] for m in expected_none)
    for metric in zero:
        assert result.values[metric] == 0.0
    assert set(result.values) == set(METRICS)


def test_precision_note_names_the_threshold() -> None:
    result = classification_metrics([1, 0], [0.4, 0.3], threshold=0.45)
    assert result.values["precision"] is None
    assert "0.45" in result.notes["precision"]


def test_metric_result_is_frozen() -> None:
    result = classification_metrics([1, 0], [0.6, 0.3])
    assert isinstance(result, MetricResult)
    with pytest.raises(AttributeError):
        result.n = 3  # type: ignore[misc]


# --- ROI ----------------------------------------------------------------------------------------

# prob * odds per row: 1.2, 1.25, 1.2, 1.1, 0.6 -> rows 0-3 are bets, row 4 is not
ROI_Y = [1, 0, 1, 0, 1]
ROI_P = [0.6, 0.5, 0.3, 0.55, 0.2]
ROI_ODDS = [2.0, 2.5, 4.0, 2.0, 3.0]


def test_roi_by_hand() -> None:
    # row 0 won (+1.0), row 1 lost (-1), row 2 won (+3.0), row 3 lost (-1); row 4 won but was
    # not a bet, so it must not count: (1 - 1 + 3 - 1) / 4 stakes = 0.5
    assert roi(ROI_Y, ROI_P, ROI_ODDS) == (pytest.approx(0.5), 4)
    result = classification_metrics(ROI_Y, ROI_P, odds=ROI_ODDS)
    assert result.values["roi"] == pytest.approx(0.5)
    assert result.n_bets == 4


def test_roi_value_margin_filters_thin_edges() -> None:
    # margin 0.15 keeps prob * odds > 1.15: rows 0, 1, 2 -> (1 - 1 + 3) / 3 = 1.0
    assert roi(ROI_Y, ROI_P, ROI_ODDS, value_margin=0.15) == (pytest.approx(1.0), 3)


def test_roi_break_even_is_not_a_bet() -> None:
    # 0.5 * 2.0 and 0.25 * 4.0 are exactly 1: no value, no bet
    value, n_bets = roi([1, 1], [0.5, 0.25], [2.0, 4.0])
    assert (value, n_bets) == (None, 0)
    result = classification_metrics([1, 1], [0.5, 0.25], odds=[2.0, 4.0])
    assert result.values["roi"] is None
    assert "no bets" in result.notes["roi"]


def test_roi_all_lost_is_minus_one() -> None:
    assert roi([0, 0], [0.6, 0.7], [2.0, 2.0]) == (pytest.approx(-1.0), 2)


# --- bad inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("y", "p", "odds", "fragment"),
    [
        ([1, 0], [0.5, float("nan")], None, "1 NaN/inf"),
        ([1, 0, 1], [float("inf"), float("nan"), 0.2], None, "2 NaN/inf"),
        ([1, 0], [0.5, 1.2], None, "outside [0, 1]"),
        ([1, 0], [-0.1, 0.5], None, "outside [0, 1]"),
        ([1, 2], [0.5, 0.5], None, "0/1 labels"),
        ([1, float("nan")], [0.5, 0.5], None, "0/1 labels"),
        ([1, 0, 1], [0.5, 0.5], None, "length mismatch"),
        ([], [], None, "empty"),
        ([[1, 0]], [[0.5, 0.5]], None, "one-dimensional"),
        (["a", "b"], [0.5, 0.5], None, "numeric"),
        ([1, 0], [0.5, 0.5], [2.0], "odds has 1"),
        ([1, 0], [0.5, 0.5], [2.0, float("nan")], "odds contains 1 NaN/inf"),
        # fractional odds (1/2 = evens) fed in by mistake
        ([1, 0], [0.5, 0.5], [0.5, 2.0], "decimal odds > 1"),
    ],
)
def test_bad_inputs_name_the_problem(
    y: list[float], p: list[float], odds: list[float] | None, fragment: str
) -> None:
    with pytest.raises(MetricInputError, match=re.escape(fragment)):
        classification_metrics(y, p, odds=odds)


def test_metric_input_error_is_a_value_error() -> None:
    assert issubclass(MetricInputError, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 1.5}, {"threshold": float("nan")}, {"value_margin": -0.1}],
)
def test_bad_parameters_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(MetricInputError, match=next(iter(kwargs))):
        classification_metrics([1, 0], [0.5, 0.5], **kwargs)


# --- bootstrap ----------------------------------------------------------------------------------


def _synthetic(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(2.0, 2.5, size=n)
    y = (rng.random(n) < p).astype(int)
    odds = 1.0 / np.clip(p + rng.normal(0.0, 0.08, size=n), 0.05, 0.95) * 0.95
    return y, p, np.maximum(odds, 1.01)


def test_bootstrap_std_shrinks_with_larger_samples() -> None:
    y, p, odds = _synthetic(2000)
    small = bootstrap_metric_std(y, p, odds=odds, sample_size=100, n_boot=300)
    large = bootstrap_metric_std(y, p, odds=odds, sample_size=1000, n_boot=300)
    assert set(small) == set(METRICS)
    for metric in ("accuracy", "f1", "roc_auc", "log_loss", "roi"):
        # sampling noise goes as 1/sqrt(n): ten times the rows, about sqrt(10) = 3.2x less std
        ratio = small[metric] / large[metric]
        assert 2.0 < ratio < 5.0, (metric, ratio)


def test_bootstrap_is_deterministic_per_seed_and_skips_undefined_metrics() -> None:
    y, p, _ = _synthetic(300)
    first = bootstrap_metric_std(y, p, n_boot=50, seed=3)
    assert first == bootstrap_metric_std(y, p, n_boot=50, seed=3)
    assert first != bootstrap_metric_std(y, p, n_boot=50, seed=4)
    # without odds there is no ROI in any resample, so no std is invented for it
    assert "roi" not in first
    assert all(v > 0 for v in first.values())


@pytest.mark.parametrize(
    ("kwargs", "fragment"), [({"n_boot": 1}, "n_boot"), ({"sample_size": 0}, "sample_size")]
)
def test_bootstrap_rejects_bad_sizes(kwargs: dict[str, int], fragment: str) -> None:
    with pytest.raises(MetricInputError, match=fragment):
        bootstrap_metric_std([1, 0], [0.5, 0.5], **kwargs)


# --- thresholds, degradation, severity ----------------------------------------------------------


@pytest.mark.parametrize(
    ("std", "n_current", "expected"),
    [
        # noise 0.01 at the baseline size: 2 * 0.01 and 3 * 0.01 stay below the absolute levels
        (0.01, 1000, (0.05, 0.10)),
        # 10 matches instead of 1000: std * sqrt(1000 / 10) = 0.1 -> (2 * 0.1, 3 * 0.1)
        (0.01, 10, (0.20, 0.30)),
        # 250 matches: std * sqrt(4) = 0.02 -> warning max(0.05, 0.04), critical max(0.1, 0.06)
        (0.01, 250, (0.05, 0.10)),
        # 40 matches: std * 5 = 0.05 -> (0.1, 0.15)
        (0.01, 40, (0.10, 0.15)),
        # unknown noise: absolute levels only
        (None, 10, (0.05, 0.10)),
        (0.0, 10, (0.05, 0.10)),
    ],
)
def test_thresholds_for(std: float | None, n_current: int, expected: tuple[float, float]) -> None:
    warning, critical = thresholds_for(
        "accuracy",
        baseline=0.6,
        baseline_std=std,
        n_current=n_current,
        n_baseline=1000,
        warning_abs=0.05,
        critical_abs=0.10,
    )
    assert (warning, critical) == pytest.approx(expected)


def test_thresholds_widen_as_days_get_smaller() -> None:
    pairs = [
        thresholds_for(
            "log_loss",
            baseline=0.65,
            baseline_std=0.01,
            n_current=n,
            n_baseline=2000,
            warning_abs=0.02,
            critical_abs=0.05,
        )
        for n in (2000, 500, 100, 20, 5)
    ]
    warnings = [w for w, _ in pairs]
    criticals = [c for _, c in pairs]
    assert warnings == sorted(warnings)
    assert criticals == sorted(criticals)
    assert warnings[-1] > warnings[0]
    assert all(c >= w for w, c in pairs)


def test_critical_never_below_warning_even_with_odd_multipliers() -> None:
    warning, critical = thresholds_for(
        "accuracy",
        baseline=0.6,
        baseline_std=0.05,
        n_current=100,
        n_baseline=100,
        warning_abs=0.0,
        critical_abs=0.0,
        k_warning=4.0,
        k_critical=1.0,
    )
    assert warning == pytest.approx(0.2)
    assert critical == pytest.approx(0.2)


def test_small_day_does_not_alert_on_what_would_alert_on_a_big_day() -> None:
    common = {"baseline": 0.60, "baseline_std": 0.015, "n_baseline": 1000}
    observed = 0.52  # 0.08 below baseline
    deg, _ = degradation("accuracy", observed, 0.60)
    big = thresholds_for("accuracy", n_current=1000, warning_abs=0.03, critical_abs=0.06, **common)
    small = thresholds_for("accuracy", n_current=12, warning_abs=0.03, critical_abs=0.06, **common)
    assert (
        severity_for(
            "accuracy", degradation_abs=deg, warning_threshold=big[0], critical_threshold=big[1]
        )
        == "critical"
    )
    assert (
        severity_for(
            "accuracy", degradation_abs=deg, warning_threshold=small[0], critical_threshold=small[1]
        )
        == "ok"
    )


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n_current": 0}, "n_current"),
        ({"n_baseline": -1}, "n_baseline"),
        ({"baseline_std": -0.1}, "baseline_std"),
        ({"baseline_std": float("nan")}, "baseline_std"),
        ({"critical_abs": 0.01}, "critical_abs"),
        ({"warning_abs": -0.01}, "warning_abs"),
        ({"baseline": float("inf")}, "baseline"),
    ],
)
def test_thresholds_for_rejects_bad_config(kwargs: dict[str, float], fragment: str) -> None:
    args = {
        "baseline": 0.6,
        "baseline_std": 0.01,
        "n_current": 100,
        "n_baseline": 1000,
        "warning_abs": 0.05,
        "critical_abs": 0.10,
    }
    args.update(kwargs)
    with pytest.raises(MetricInputError, match=fragment):
        thresholds_for("accuracy", **args)


def test_unknown_metric_is_rejected() -> None:
    with pytest.raises(MetricInputError, match="unknown metric 'brier'"):
        degradation("brier", 0.2, 0.1)


@pytest.mark.parametrize(
    ("metric", "observed", "baseline", "expected_abs", "expected_rel"),
    [
        # higher is better: 0.60 -> 0.55 is 0.05 worse, 0.05 / 0.60 relative
        ("accuracy", 0.55, 0.60, 0.05, 0.05 / 0.60),
        # improvement shows as a negative degradation
        ("accuracy", 0.65, 0.60, -0.05, -0.05 / 0.60),
        # lower is better: log loss 0.60 -> 0.70 is 0.10 worse
        ("log_loss", 0.70, 0.60, 0.10, 0.10 / 0.60),
        ("log_loss", 0.50, 0.60, -0.10, -0.10 / 0.60),
        # a break-even ROI baseline has no meaningful ratio
        ("roi", -0.10, 0.0, 0.10, None),
        # negative baseline: relative uses |baseline| so worse is still positive
        ("roi", -0.10, -0.05, 0.05, 1.0),
    ],
)
def test_degradation(
    metric: str,
    observed: float,
    baseline: float,
    expected_abs: float,
    expected_rel: float | None,
) -> None:
    absolute, relative = degradation(metric, observed, baseline)
    assert absolute == pytest.approx(expected_abs)
    if expected_rel is None:
        assert relative is None
    else:
        assert relative == pytest.approx(expected_rel)


@pytest.mark.parametrize(
    ("deg", "expected"),
    [
        (-0.2, "ok"),
        (0.0, "ok"),
        (0.04, "ok"),
        (0.05, "ok"),  # exactly at the warning threshold is still tolerated
        (0.07, "warning"),
        (0.10, "warning"),
        (0.11, "critical"),
    ],
)
def test_severity_for(deg: float, expected: str) -> None:
    assert (
        severity_for(
            "roc_auc", degradation_abs=deg, warning_threshold=0.05, critical_threshold=0.10
        )
        == expected
    )


def test_severity_for_rejects_inverted_thresholds() -> None:
    with pytest.raises(MetricInputError, match="critical_threshold"):
        severity_for("f1", degradation_abs=0.1, warning_threshold=0.2, critical_threshold=0.1)
