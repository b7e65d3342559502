"""Statistical validity of compute_drift over simulated days (seeded, so deterministic).

* no drift: false alarms stay within the configured 5% family-wise level;
* a 0.2 sd mean shift, or a 10-point change in one category's share, on 5,000 rows is found
  on at least 95% of days, and the report names the feature that moved;
* a 0.02 sd shift on 100,000 rows is highly significant but is not called drift.

Each day draws a fresh reference as well as a fresh current batch: the guarantee being
checked is over both samples, and a single fixed reference would make the days dependent.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops_assets.lib.drift import DriftConfig, DriftReport, compute_drift

ALPHA = 0.05
CATEGORY_SHARES: dict[str, list[float]] = {
    "c_binary": [0.5, 0.5],
    "c_four": [0.4, 0.3, 0.2, 0.1],
    "c_ten": list((1 / np.arange(1, 11)) / np.sum(1 / np.arange(1, 11))),
}
FEATURES = {
    "x_normal": "numeric",
    "x_lognormal": "numeric",
    "x_poisson": "numeric",
    "x_uniform": "numeric",
    **dict.fromkeys(CATEGORY_SHARES, "categorical"),
}


def simulate(
    rng: np.random.Generator,
    days: int,
    rows: int,
    shift: Mapping[str, float] | None = None,
    shares: Mapping[str, list[float]] | None = None,
) -> list[pd.DataFrame]:
    """``days`` frames drawn in one vectorised pass per feature.

    Normal, skewed, discrete (ties) and bounded numeric features, and categorical features
    from balanced to long-tailed, so the false-alarm rate is checked on all test paths.
    """
    shift = shift or {}
    shares = shares or {}
    columns = {
        "x_normal": rng.normal(0.0, 1.0, (days, rows)),
        "x_lognormal": rng.lognormal(0.0, 0.75, (days, rows)),
        "x_poisson": rng.poisson(4.0, (days, rows)),
        "x_uniform": rng.uniform(0.0, 1.0, (days, rows)),
    }
    for name, base in CATEGORY_SHARES.items():
        p = shares.get(name, base)
        columns[name] = rng.choice(len(p), size=(days, rows), p=p)
    for name, delta in shift.items():
        columns[name] = columns[name] + delta
    return [pd.DataFrame({k: v[d] for k, v in columns.items()}) for d in range(days)]


def run_days(
    seed: int,
    days: int,
    rows: int,
    config: DriftConfig,
    shift: Mapping[str, float] | None = None,
    shares: Mapping[str, list[float]] | None = None,
) -> list[DriftReport]:
    rng = np.random.default_rng(seed)
    references = simulate(rng, days, rows)
    currents = simulate(rng, days, rows, shift=shift, shares=shares)
    return [
        compute_drift(ref, cur, FEATURES, config)
        for ref, cur in zip(references, currents, strict=True)
    ]


def false_alarm_bound(days: int) -> int:
    """Largest count of alarm days still consistent with a 5% rate (one-sided, 99%)."""
    return int(stats.binom.ppf(0.99, days, ALPHA))


@pytest.mark.parametrize(
    "config",
    [DriftConfig(), DriftConfig(engine="scipy", correction="fdr")],
    ids=["alibi-bonferroni", "scipy-fdr"],
)
def test_no_drift_false_alarms_within_level(config: DriftConfig) -> None:
    days = 200
    reports = run_days(seed=101, days=days, rows=2000, config=config)
    bound = false_alarm_bound(days)

    significant = sum(any(f.p_value_adjusted < ALPHA for f in r.features) for r in reports)
    flagged = sum(any(f.verdict != "no_drift" for f in r.features) for r in reports)
    drifted_feature = sum(any(f.verdict == "drift" for f in r.features) for r in reports)
    dataset_drift = sum(r.verdict == "drift" for r in reports)

    # The test level itself: any significant feature, before effect sizes are weighed.
    assert significant <= bound, (significant, bound)
    assert flagged <= significant
    assert drifted_feature <= bound
    assert dataset_drift <= bound
    # Effect sizes are what keep chance significance from being called drift.
    assert drifted_feature == 0
    assert all(r.verdict != "no_verdict" for r in reports)


def detected_days(reports: list[DriftReport], feature: str) -> int:
    def named(report: DriftReport) -> bool:
        moved = next(f for f in report.features if f.feature == feature)
        return (
            moved.verdict in ("possible_drift", "drift")
            and report.top_drifting(1)[0].feature == feature
        )

    return sum(named(r) for r in reports)


def test_numeric_shift_of_a_fifth_sd_is_detected() -> None:
    days = 100
    reports = run_days(
        seed=202, days=days, rows=5000, config=DriftConfig(), shift={"x_normal": 0.2}
    )
    assert detected_days(reports, "x_normal") >= 0.95 * days
    # Wasserstein/sd ~ 0.2 sits on the drift threshold: both tiers occur, never less.
    verdicts = {next(f for f in r.features if f.feature == "x_normal").verdict for r in reports}
    assert verdicts <= {"possible_drift", "drift"}
    assert sum(r.verdict == "drift" for r in reports) == 0  # one feature of seven


@pytest.mark.parametrize(
    ("feature", "shares"),
    [
        # 50/50 -> 60/40: the smallest JS distance a 10-point move can give (~0.085)
        ("c_binary", [0.6, 0.4]),
        # the largest category loses 10 points, spread over the others in proportion
        ("c_four", [0.3, 0.35, 0.7 * 0.2 / 0.6, 0.7 * 0.1 / 0.6]),
    ],
)
def test_ten_point_category_change_is_detected(feature: str, shares: list[float]) -> None:
    days = 100
    reports = run_days(
        seed=303, days=days, rows=5000, config=DriftConfig(), shares={feature: shares}
    )
    assert detected_days(reports, feature) >= 0.95 * days


def test_tiny_shift_on_many_rows_is_significant_but_not_drift() -> None:
    # Deterministic samples (normal quantiles) so the p-value is a fixed number, not luck.
    ref = stats.norm.ppf((np.arange(1_000_000) + 0.5) / 1_000_000)
    cur = stats.norm.ppf((np.arange(100_000) + 0.5) / 100_000) + 0.02
    report = compute_drift(
        pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur}), {"x": "numeric"}, DriftConfig()
    )
    feat = report.features[0]
    assert feat.p_value < 1e-4
    assert feat.p_value_adjusted < ALPHA
    assert feat.wasserstein_norm == pytest.approx(0.02, rel=0.01)
    assert feat.psi < 0.01
    assert feat.verdict == "no_drift"
    assert report.verdict == "no_drift"


def test_tiny_shift_on_many_rows_is_never_drift_over_days() -> None:
    days, rows = 20, 100_000
    rng = np.random.default_rng(404)
    ref = rng.normal(0.0, 1.0, (days, rows))
    cur = rng.normal(0.02, 1.0, (days, rows))
    significant = 0
    for d in range(days):
        feat = compute_drift(
            pd.DataFrame({"x": ref[d]}), pd.DataFrame({"x": cur[d]}), {"x": "numeric"}
        ).features[0]
        assert feat.verdict != "drift"
        assert feat.verdict == "no_drift"
        significant += feat.p_value_adjusted < ALPHA
    # The KS test sees the shift on most days (median p ~ 2e-4); the verdict ignores it.
    assert significant >= days // 2
