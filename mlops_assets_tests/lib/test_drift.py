"""compute_drift: agreement with scipy, effect sizes, data quality, report API, HTML.

Statistical validity over many simulated days lives in test_drift_stats.py.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import re
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from mlops_assets.lib import drift, drift_html
from mlops_assets.lib.drift import (
    CategoryCounts,
    DriftConfig,
    DriftInputError,
    DriftReport,
    DriftRun,
    FeatureDrift,
    compute_drift,
)
from mlops_assets.lib.drift_html import render_html

ENGINES = ["alibi", "scipy"]
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def fixed_frames() -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Shapes that exercise every branch of the tests: ties, unequal sizes, Yates, new levels."""
    rng = np.random.default_rng(12345)
    n_ref, n_cur = 4000, 2500
    reference = pd.DataFrame(
        {
            "normal": rng.normal(0.0, 1.0, n_ref),
            "shifted": rng.normal(0.0, 1.0, n_ref),
            "poisson": rng.poisson(3.0, n_ref),
            "skewed": rng.lognormal(0.0, 1.0, n_ref),
            "binary": rng.choice(["yes", "no"], n_ref, p=[0.5, 0.5]),
            "colour": rng.choice(["red", "green", "blue", "grey"], n_ref, p=[0.4, 0.3, 0.2, 0.1]),
            "code": rng.integers(0, 12, n_ref),
        }
    )
    current = pd.DataFrame(
        {
            "normal": rng.normal(0.0, 1.0, n_cur),
            "shifted": rng.normal(0.15, 1.0, n_cur),
            "poisson": rng.poisson(3.2, n_cur),
            "skewed": rng.lognormal(0.05, 1.0, n_cur),
            "binary": rng.choice(["yes", "no"], n_cur, p=[0.55, 0.45]),
            "colour": rng.choice(
                ["red", "green", "blue", "grey", "pink"], n_cur, p=[0.35, 0.3, 0.2, 0.1, 0.05]
            ),
            "code": rng.integers(0, 12, n_cur),
        }
    )
    features = {
        "normal": "numeric",
        "shifted": "numeric",
        "poisson": "numeric",
        "skewed": "numeric",
        "binary": "categorical",
        "colour": "categorical",
        "code": "categorical",
    }
    return reference, current, features


def scipy_reference(ref: pd.Series, cur: pd.Series, kind: str) -> tuple[float, float]:
    """What the tests are defined as, computed the plain way."""
    if kind == "numeric":
        res = stats.ks_2samp(ref.to_numpy(float), cur.to_numpy(float), method="asymp")
        return float(res.statistic), float(res.pvalue)
    table = pd.crosstab(
        np.r_[np.zeros(len(ref)), np.ones(len(cur))], np.r_[ref.astype(str), cur.astype(str)]
    )
    res = stats.chi2_contingency(table.to_numpy())
    return float(res.statistic), float(res.pvalue)


def by_name(report: DriftReport) -> dict[str, FeatureDrift]:
    return {f.feature: f for f in report.features}


# --------------------------------------------------------------------------- column groups


@pytest.mark.parametrize("engine", ENGINES)
def test_a_run_fed_in_column_groups_gives_the_same_report(engine: str) -> None:
    """The drift asset adds the day's columns a group at a time; the report is the one
    compute_drift gives on the whole frame (p-values corrected across all features)."""
    reference, current, features = fixed_frames()
    current = current.assign(empty=np.nan)
    reference = reference.assign(empty=1.0)
    features = {**features, "empty": "numeric"}
    config = DriftConfig(engine=engine)
    whole = compute_drift(reference, current, features, config)
    run = DriftRun(reference, features, config, n_current=len(current))
    for group in (["colour", "normal"], ["empty", "shifted", "code"], ["poisson"]):
        run.add(current[group])
    run.add(current[["skewed", "binary"]])
    assert repr(run.finish()) == repr(whole)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_run_sorts_the_columns_it_owns_where_they_are(engine: str) -> None:
    """The drift asset hands each group over (`owned`): the report is the same and, with
    the scipy engine, the numeric columns without NaN were sorted in place (no copy of the
    day's values; alibi sorts into its detector's matrices); a frame not handed over is
    left as it was."""
    reference, current, features = fixed_frames()
    current = current.assign(holes=np.where(np.arange(len(current)) % 7, 1.5, np.nan))
    reference = reference.assign(holes=1.0)
    features = {**features, "holes": "numeric"}
    config = DriftConfig(engine=engine)
    whole = compute_drift(reference, current, features, config)
    kept = current.copy()
    numeric = [n for n, k in features.items() if k == "numeric"]
    given = current[numeric].copy()
    run = DriftRun(reference, features, config, n_current=len(current))
    run.add(given, owned=True)
    run.add(current[[n for n in features if n not in numeric]])
    assert repr(run.finish()) == repr(whole)
    pd.testing.assert_frame_equal(current, kept)  # compute_drift and the add not owned
    in_place = [n for n in numeric if (np.diff(given[n].to_numpy()) >= 0).all()]
    if engine == "scipy":
        # Copies where the values are not the frame's floats: NaN dropped, ints converted.
        assert set(in_place) == set(numeric) - {"holes", "poisson"}
    else:
        assert in_place == []


@pytest.mark.parametrize("engine", ENGINES)
def test_categories_given_as_counts_give_the_report_their_rows_give(engine: str) -> None:
    """On a column store the drift asset has the engine count the categorical features
    (`GROUP BY`, in no particular order) instead of reading their rows: the report, charts
    included, is the one the rows give, with missing values, categories only the current
    rows have (more than the chart shows) and an int-coded feature compared as text."""
    reference, current, features = fixed_frames()
    rng = np.random.default_rng(7)
    many = [f"k{i}" for i in range(drift.CHART_CATEGORIES + 30)]
    reference = reference.assign(wide=rng.choice(many[:40], len(reference)))
    current = current.assign(wide=rng.choice(many, len(current)))
    current.loc[current.index[::9], "colour"] = None
    features = {**features, "wide": "categorical"}
    categorical = [n for n, k in features.items() if k == "categorical"]
    config = DriftConfig(engine=engine)
    whole = compute_drift(reference, current, features, config)

    def counted(series: pd.Series) -> CategoryCounts:
        # As the engine gives them: text, in an order of its own.
        values = series.dropna().astype(str).value_counts(sort=False).sample(frac=1, random_state=3)
        return CategoryCounts(tuple(values.index), values.to_numpy(), int(series.isna().sum()))

    run = DriftRun(reference, features, config, n_current=len(current))
    run.add(current[[n for n in features if n not in categorical]])
    run.add_counts({name: counted(current[name]) for name in categorical})
    report = run.finish()
    assert repr(report) == repr(whole)
    assert by_name(report)["colour"].missing_rate_current == pytest.approx(1 / 9, abs=1e-3)
    assert by_name(report)["wide"].unseen_categories  # new in current, listed
    assert report.distributions["wide"].folded > 0


def test_counts_that_do_not_fit_the_run_are_refused() -> None:
    reference, current, features = fixed_frames()
    run = DriftRun(reference, features, n_current=len(current))
    colour = CategoryCounts.of(current["colour"])
    with pytest.raises(DriftInputError, match=r"'normal' is not a categorical feature"):
        run.add_counts({"normal": colour})
    with pytest.raises(DriftInputError, match=r"cover 2499 rows, expected 2500"):
        run.add_counts({"colour": CategoryCounts(colour.labels, colour.counts, colour.missing - 1)})
    run.add_counts({"colour": colour})
    with pytest.raises(DriftInputError, match="added twice"):
        run.add(current[["colour"]])


def test_a_run_names_what_it_was_not_given() -> None:
    reference, current, features = fixed_frames()
    with pytest.raises(DriftInputError, match="reference is missing feature columns: normal"):
        DriftRun(reference.drop(columns="normal"), features, n_current=len(current))
    run = DriftRun(reference, features, n_current=len(current))
    run.add(current[["normal"]])
    with pytest.raises(DriftInputError, match="added twice"):
        run.add(current[["normal"]])
    with pytest.raises(DriftInputError, match="rows, expected"):
        run.add(current[["shifted"]].head(10))
    with pytest.raises(DriftInputError, match="current is missing feature columns: shifted"):
        run.finish()


# --------------------------------------------------------------------------- p-values


@pytest.mark.parametrize("engine", ENGINES)
def test_p_values_match_scipy(engine: str) -> None:
    reference, current, features = fixed_frames()
    report = compute_drift(reference, current, features, DriftConfig(engine=engine))
    results = by_name(report)
    for name, kind in features.items():
        stat, p = scipy_reference(reference[name], current[name], kind)
        got = results[name]
        if engine == "scipy":
            assert got.p_value == pytest.approx(p, rel=1e-9, abs=1e-9), name
            assert got.statistic == pytest.approx(stat, rel=1e-9, abs=1e-9), name
        else:
            # alibi-detect keeps p-values and statistics in float32 arrays; that rounding is
            # the only difference.
            assert got.p_value == float(np.float32(p)), name
            assert got.p_value == pytest.approx(p, rel=FLOAT32_EPS, abs=1e-45), name
            assert got.statistic == pytest.approx(stat, rel=FLOAT32_EPS), name
    # The fixed data must span significant and insignificant features, or the test is weak.
    ps = [f.p_value for f in report.features]
    assert min(ps) < 1e-6 and max(ps) > 0.05


def test_scipy_engine_ks_statistic_is_bitwise_scipy() -> None:
    reference, current, features = fixed_frames()
    results = by_name(compute_drift(reference, current, features, DriftConfig(engine="scipy")))
    for name in ("normal", "shifted", "poisson", "skewed"):
        res = stats.ks_2samp(reference[name], current[name], method="asymp")
        assert results[name].statistic == float(res.statistic)
        assert results[name].p_value == float(res.pvalue)


def test_engines_agree() -> None:
    reference, current, features = fixed_frames()
    a = by_name(compute_drift(reference, current, features, DriftConfig(engine="alibi")))
    s = by_name(compute_drift(reference, current, features, DriftConfig(engine="scipy")))
    for name in features:
        assert a[name].p_value == float(np.float32(s[name].p_value))
        assert a[name].verdict == s[name].verdict
        assert a[name].psi == s[name].psi
        assert a[name].wasserstein_norm == s[name].wasserstein_norm
        assert a[name].js_distance == s[name].js_distance


@pytest.mark.parametrize("engine", ENGINES)
def test_small_samples_use_asymptotic_p_value(engine: str) -> None:
    # scipy's default would switch to the exact p-value below 10,000 rows; alibi-detect
    # asks for the asymptotic one, so both engines must too.
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"x": rng.normal(size=40)})
    cur = pd.DataFrame({"x": rng.normal(0.8, 1.0, size=35)})
    got = compute_drift(ref, cur, {"x": "numeric"}, DriftConfig(engine=engine)).features[0]
    expected = stats.ks_2samp(ref["x"], cur["x"], method="asymp").pvalue
    assert got.p_value == pytest.approx(expected, rel=FLOAT32_EPS)
    assert got.p_value != pytest.approx(stats.ks_2samp(ref["x"], cur["x"]).pvalue, rel=1e-3)


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_correction_across_features(correction: str) -> None:
    reference, current, features = fixed_frames()
    config = DriftConfig(engine="scipy", correction=correction)
    report = compute_drift(reference, current, features, config)
    raw = np.array([f.p_value for f in report.features])
    adjusted = np.array([f.p_value_adjusted for f in report.features])
    if correction == "bonferroni":
        expected = np.minimum(raw * len(raw), 1.0)
    else:
        expected = stats.false_discovery_control(raw, method="bh")
    np.testing.assert_allclose(adjusted, expected, rtol=1e-12)
    assert report.correction == correction


def test_adjust_handles_ties_and_order() -> None:
    p = np.array([0.04, 0.01, 0.04, 0.5, 0.0])
    np.testing.assert_allclose(
        drift._adjust(p, "fdr"), stats.false_discovery_control(p, method="bh"), rtol=1e-12
    )


# --------------------------------------------------------------------------- effect sizes


def test_effect_sizes_match_independent_computations() -> None:
    reference, current, features = fixed_frames()
    results = by_name(compute_drift(reference, current, features, DriftConfig(engine="scipy")))
    for name in ("normal", "shifted", "poisson", "skewed"):
        ref = reference[name].to_numpy(float)
        cur = current[name].to_numpy(float)
        w = stats.wasserstein_distance(ref, cur) / ref.std()
        assert results[name].wasserstein_norm == pytest.approx(w, rel=1e-9)
        assert results[name].psi == pytest.approx(naive_psi(ref, cur), rel=1e-9)
        assert results[name].effect_size == results[name].psi
        assert results[name].effect_size_name == "psi"
    for name in ("binary", "colour", "code"):
        labels = sorted(set(reference[name].astype(str)) | set(current[name].astype(str)))
        p = reference[name].astype(str).value_counts().reindex(labels, fill_value=0)
        q = current[name].astype(str).value_counts().reindex(labels, fill_value=0)
        js = distance.jensenshannon(p / p.sum(), q / q.sum(), base=2)
        assert results[name].js_distance == pytest.approx(js, rel=1e-9)
        assert results[name].effect_size == results[name].js_distance
        assert results[name].effect_size_name == "js_distance"


def naive_psi(ref: np.ndarray, cur: np.ndarray) -> float:
    edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10))
    bounds = np.concatenate(([-np.inf], edges, [np.inf]))
    shares = []
    for values in (ref, cur):
        counts = [np.sum((values > lo) & (values <= hi)) for lo, hi in itertools.pairwise(bounds)]
        shares.append(np.maximum(np.array(counts) / len(values), drift.PSI_EPSILON))
    return float(np.sum((shares[1] - shares[0]) * np.log(shares[1] / shares[0])))


@pytest.mark.parametrize(("n1", "n2"), [(1000, 1000), (1000, 37), (5, 3), (600, 900), (7, 7)])
def test_wasserstein_and_ks_helpers(n1: int, n2: int) -> None:
    rng = np.random.default_rng(n1 * 31 + n2)
    for a, b in (
        (rng.normal(size=n1), rng.normal(0.3, 2.0, size=n2)),
        (rng.integers(0, 4, n1).astype(float), rng.integers(0, 5, n2).astype(float)),
    ):
        a.sort()
        b.sort()
        assert drift._wasserstein(a, b) == pytest.approx(stats.wasserstein_distance(a, b))
        assert drift._ks_statistic(a, b) == stats.ks_2samp(a, b, method="asymp").statistic


# --------------------------------------------------------------------------- verdicts


def test_verdict_tiers_follow_the_documented_rules() -> None:
    config = DriftConfig()
    tier = drift._tier
    assert tier(0.05, config.psi_possible, config.psi_drift) == 0
    assert tier(0.1, config.psi_possible, config.psi_drift) == 1
    assert tier(0.25, config.psi_possible, config.psi_drift) == 2
    assert tier(None, config.psi_possible, config.psi_drift) == 0


def test_large_but_insignificant_effect_is_not_flagged() -> None:
    # 30 rows: PSI and Wasserstein are noisy, the KS test is not significant.
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(size=30)})
    cur = pd.DataFrame({"x": rng.normal(0.3, 1.0, size=30)})
    got = compute_drift(ref, cur, {"x": "numeric"}).features[0]
    assert got.p_value_adjusted >= 0.05
    assert max(got.psi, got.wasserstein_norm) >= 0.1
    assert got.verdict == "no_drift"


def test_dataset_verdict_uses_share_of_drifted_features() -> None:
    rng = np.random.default_rng(11)
    n = 3000
    cols = {f"f{i}": rng.normal(size=n) for i in range(4)}
    reference = pd.DataFrame(cols)
    shifted = {k: rng.normal(size=n) for k in cols}
    features = dict.fromkeys(cols, "numeric")

    shifted["f0"] = shifted["f0"] + 1.0
    one = compute_drift(reference, pd.DataFrame(shifted), features)
    assert one.share_drifted == 0.25
    assert one.verdict == "possible_drift"
    assert one.top_drifting(1)[0].feature == "f0"

    shifted["f1"] = shifted["f1"] + 1.0
    two = compute_drift(reference, pd.DataFrame(shifted), features)
    assert two.share_drifted == 0.5
    assert two.verdict == "drift"

    none = compute_drift(reference, pd.DataFrame({k: rng.normal(size=n) for k in cols}), features)
    assert none.share_drifted == 0.0
    assert none.verdict == "no_drift"


# --------------------------------------------------------------------------- bad input


def test_missing_columns_are_named() -> None:
    reference, current, features = fixed_frames()
    with pytest.raises(DriftInputError, match=r"current is missing feature columns: normal, code"):
        compute_drift(reference, current.drop(columns=["normal", "code"]), features)
    with pytest.raises(DriftInputError, match=r"reference is missing feature columns: binary"):
        compute_drift(reference.drop(columns=["binary"]), current, features)
    assert issubclass(DriftInputError, ValueError)


@pytest.mark.parametrize(
    ("features", "message"),
    [({}, "no features"), ({"normal": "text"}, "numeric' or 'categorical")],
)
def test_bad_feature_specs(features: dict[str, str], message: str) -> None:
    reference, current, _ = fixed_frames()
    with pytest.raises(DriftInputError, match=message):
        compute_drift(reference, current, features)


def test_duplicate_columns_rejected() -> None:
    frame = pd.DataFrame([[1.0, 2.0]] * 50, columns=["x", "x"])
    with pytest.raises(DriftInputError, match="duplicate columns: x"):
        compute_drift(frame, frame, {"x": "numeric"})


def test_extra_columns_ignored_and_listed() -> None:
    reference, current, features = fixed_frames()
    current = current.assign(request_id=range(len(current)), score=0.5)
    report = compute_drift(reference, current, {"normal": "numeric"})
    assert report.ignored_columns == (
        "shifted",
        "poisson",
        "skewed",
        "binary",
        "colour",
        "code",
        "request_id",
        "score",
    )
    assert [f.feature for f in report.features] == ["normal"]
    assert len(features) == 7


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_current_gives_no_verdict(engine: str) -> None:
    reference, current, features = fixed_frames()
    report = compute_drift(reference, current.iloc[0:0], features, DriftConfig(engine=engine))
    assert report.verdict == "no_verdict"
    assert report.share_drifted is None
    assert report.n_current == 0
    for feat in report.features:
        assert feat.verdict == "no_verdict"
        assert feat.reason == "current batch is empty"
        assert feat.p_value is None and feat.effect_size is None
        assert feat.missing_rate_current is None


@pytest.mark.parametrize("engine", ENGINES)
def test_too_few_rows_gives_no_verdict(engine: str) -> None:
    reference, current, features = fixed_frames()
    report = compute_drift(reference, current.head(29), features, DriftConfig(engine=engine))
    assert report.verdict == "no_verdict"
    assert all(f.reason == "too few current values: 29 < min_rows=30" for f in report.features)
    ok = compute_drift(reference, current.head(30), features, DriftConfig(engine=engine))
    assert ok.verdict != "no_verdict"


@pytest.mark.parametrize("engine", ENGINES)
def test_non_finite_values_excluded_and_counted(engine: str) -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": rng.normal(size=500)})
    values = rng.normal(size=400)
    values[:10] = np.nan
    values[10:13] = np.inf
    values[13] = -np.inf
    cur = pd.DataFrame({"x": values})
    got = compute_drift(ref, cur, {"x": "numeric"}, DriftConfig(engine=engine)).features[0]
    assert got.n_current == 386
    assert got.non_finite_current == 14
    assert got.missing_rate_current == pytest.approx(10 / 400)
    expected = stats.ks_2samp(ref["x"], values[14:], method="asymp").pvalue
    assert got.p_value == pytest.approx(expected, rel=FLOAT32_EPS)


@pytest.mark.parametrize("engine", ENGINES)
def test_mixed_types_in_numeric_column_are_coerced_and_counted(engine: str) -> None:
    rng = np.random.default_rng(9)
    ref_values: list[object] = list(rng.normal(size=300))
    ref_values[0] = "n/a"
    cur_values: list[object] = list(rng.normal(size=200))
    cur_values[:3] = ["oops", "1.5", None]
    ref = pd.DataFrame({"x": ref_values})
    cur = pd.DataFrame({"x": cur_values})
    got = compute_drift(ref, cur, {"x": "numeric"}, DriftConfig(engine=engine)).features[0]
    assert got.coerced_values == 2  # "n/a" and "oops"; "1.5" is a number
    assert got.n_reference == 299
    assert got.n_current == 198
    assert got.non_finite_current == 2
    assert got.missing_rate_current == pytest.approx(1 / 200)
    assert got.verdict in ("no_drift", "possible_drift", "drift")
    assert any("not numbers" in note for note in got.notes)


@pytest.mark.parametrize("engine", ENGINES)
def test_constant_columns(engine: str) -> None:
    config = DriftConfig(engine=engine)
    same = pd.DataFrame({"x": np.full(200, 3.0), "c": ["a"] * 200})
    features = {"x": "numeric", "c": "categorical"}
    report = compute_drift(same, same.copy(), features, config)
    for feat in report.features:
        assert feat.verdict == "no_drift"
        assert feat.p_value == 1.0
    x = by_name(report)["x"]
    assert x.wasserstein_norm == 0.0 and x.psi == pytest.approx(0.0)

    moved = pd.DataFrame({"x": np.full(200, 4.0), "c": ["b"] * 200})
    report = compute_drift(same, moved, features, config)
    x, c = by_name(report)["x"], by_name(report)["c"]
    assert x.verdict == "drift" and c.verdict == "drift"
    assert math.isfinite(x.wasserstein_norm)
    assert any("reference is constant" in note for note in x.notes)
    assert x.share_outside_reference_range == 1.0
    assert c.unseen_categories == ("b",)


@pytest.mark.parametrize("engine", ENGINES)
def test_all_missing_current_column(engine: str) -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"x": rng.normal(size=100), "c": rng.choice(["a", "b"], 100)})
    cur = pd.DataFrame({"x": [np.nan] * 80, "c": rng.choice(["a", "b"], 80)})
    report = compute_drift(ref, cur, {"x": "numeric", "c": "categorical"}, DriftConfig(engine))
    x = by_name(report)["x"]
    assert x.verdict == "no_verdict"
    assert x.reason == "current has no usable values (all 80 rows missing or invalid)"
    assert x.missing_rate_current == 1.0
    assert by_name(report)["c"].verdict != "no_verdict"
    assert report.verdict != "no_verdict"


@pytest.mark.parametrize("engine", ENGINES)
def test_categorical_missing_values_and_unseen_categories(engine: str) -> None:
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 1000)})
    cur_values = rng.choice(["a", "b", "c", "d", "e"], 600, p=[0.3, 0.3, 0.2, 0.15, 0.05])
    cur = pd.DataFrame({"c": pd.Series(cur_values, dtype=object)})
    cur.loc[:19, "c"] = None
    got = compute_drift(ref, cur, {"c": "categorical"}, DriftConfig(engine=engine)).features[0]
    assert got.unseen_categories == ("d", "e")  # most frequent first
    assert got.n_current == 580
    assert got.non_finite_current == 20
    assert got.missing_rate_current == pytest.approx(20 / 600)
    _, p = scipy_reference(ref["c"], cur["c"].dropna(), "categorical")
    assert got.p_value == pytest.approx(p, rel=FLOAT32_EPS, abs=1e-40)
    assert got.verdict == "drift"


def test_unseen_category_list_is_capped() -> None:
    ref = pd.DataFrame({"id": [f"r{i % 50}" for i in range(5000)]})
    cur = pd.DataFrame({"id": [f"n{i}" for i in range(300)]})
    got = compute_drift(ref, cur, {"id": "categorical"}).features[0]
    assert len(got.unseen_categories) == drift.MAX_LISTED_UNSEEN
    assert any("300 unseen categories" in note for note in got.notes)


def test_category_labels_compare_as_strings() -> None:
    ref = pd.DataFrame({"c": [1, 2] * 100})
    cur = pd.DataFrame({"c": ["1", "2"] * 100})
    got = compute_drift(ref, cur, {"c": "categorical"}).features[0]
    assert got.unseen_categories == ()
    assert got.p_value == 1.0


@pytest.mark.parametrize("engine", ENGINES)
def test_pandas_dtypes(engine: str) -> None:
    rng = np.random.default_rng(8)
    n = 400
    ref = pd.DataFrame(
        {
            "ints": pd.array(rng.integers(0, 10, n), dtype="Int64"),
            "flags": rng.random(n) < 0.3,
            "cats": pd.Categorical(rng.choice(["x", "y"], n)),
            "small": rng.normal(size=n).astype(np.float32),
        }
    )
    cur = ref.sample(frac=1.0, random_state=1).reset_index(drop=True)
    cur.loc[:4, "ints"] = pd.NA
    features = {"ints": "numeric", "flags": "numeric", "cats": "categorical", "small": "numeric"}
    report = compute_drift(ref, cur, features, DriftConfig(engine=engine))
    assert by_name(report)["ints"].n_current == n - 5
    assert by_name(report)["ints"].missing_rate_current == pytest.approx(5 / n)
    assert all(f.verdict == "no_drift" for f in report.features)


def test_inputs_are_not_modified() -> None:
    reference, current, features = fixed_frames()
    ref_copy, cur_copy = reference.copy(), current.copy()
    compute_drift(reference, current, features, DriftConfig(engine="alibi"))
    compute_drift(reference, current, features, DriftConfig(engine="scipy"))
    pd.testing.assert_frame_equal(reference, ref_copy)
    pd.testing.assert_frame_equal(current, cur_copy)


@pytest.mark.parametrize("engine", ENGINES)
def test_features_with_different_missing_counts(engine: str) -> None:
    # The alibi engine groups features by sample size into separate TabularDrift matrices.
    reference, current, features = fixed_frames()
    current = current.copy()
    current.loc[:99, "normal"] = np.nan
    current.loc[:9, "colour"] = None
    reference = reference.copy()
    reference.loc[:49, "skewed"] = np.nan
    report = by_name(compute_drift(reference, current, features, DriftConfig(engine=engine)))
    for name, kind in features.items():
        _, p = scipy_reference(reference[name].dropna(), current[name].dropna(), kind)
        assert report[name].p_value == pytest.approx(p, rel=FLOAT32_EPS, abs=1e-40), name
    assert report["normal"].n_current == len(current) - 100
    assert report["skewed"].n_reference == len(reference) - 50


def test_threaded_sort_gives_the_same_report(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(21)
    n = 150_000
    ref = pd.DataFrame({"a": rng.normal(size=n), "b": rng.exponential(size=n)})
    cur = pd.DataFrame({"a": rng.normal(0.01, 1.0, n), "b": rng.exponential(size=n)})
    features = {"a": "numeric", "b": "numeric"}
    monkeypatch.setattr(drift, "SORT_THREADS", 2)
    threaded = compute_drift(ref, cur, features, DriftConfig(engine="scipy"))
    monkeypatch.setattr(drift, "SORT_THREADS", 1)
    single = compute_drift(ref, cur, features, DriftConfig(engine="scipy"))
    assert threaded == single


# --------------------------------------------------------------------------- config & report


@pytest.mark.parametrize(
    "kwargs",
    [
        {"engine": "torch"},
        {"correction": "holm"},
        {"p_value": 0.0},
        {"psi_possible": 0.3, "psi_drift": 0.2},
        {"js_possible": -0.1},
        {"drift_share": 0.0},
        {"min_rows": 1},
    ],
)
def test_config_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DriftConfig(**kwargs)  # type: ignore[arg-type]


def test_to_frame_and_top_drifting() -> None:
    reference, current, features = fixed_frames()
    report = compute_drift(reference, current, features)
    frame = report.to_frame()
    assert list(frame.columns) == [f.name for f in fields(FeatureDrift)]
    assert len(frame) == len(features)
    colour = frame.set_index("feature").loc["colour"]
    assert json.loads(colour["unseen_categories"]) == ["pink"]
    assert isinstance(json.loads(colour["notes"]), list)

    ranked = report.top_drifting(len(features))
    assert len(report.top_drifting(2)) == 2
    ranks = [drift._TIER_RANK[f.verdict] for f in ranked]
    assert ranks == sorted(ranks, reverse=True)
    assert ranked[0].verdict in ("drift", "possible_drift")
    assert report.top_drifting(0) == []


# --------------------------------------------------------------------------- distributions


def _pooled(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    ref = reference.to_numpy(dtype=float)
    cur = current.to_numpy(dtype=float)
    return ref[np.isfinite(ref)], cur[np.isfinite(cur)]


@pytest.mark.parametrize("engine", ENGINES)
def test_numeric_distributions_equal_histograms_of_the_rows(engine: str) -> None:
    rng = np.random.default_rng(8)
    reference = pd.DataFrame({"x": rng.lognormal(0, 1.5, 3000), "k": rng.poisson(2.0, 3000)})
    current = pd.DataFrame({"x": rng.lognormal(0.2, 1.5, 7001), "k": rng.poisson(2.5, 7001)})
    current.loc[:9, "x"] = [np.nan, np.inf, -np.inf, 1e9, -5.0, 0.0, 0.0, 0.0, 3.0, 3.0]
    features = {"x": "numeric", "k": "numeric"}
    report = compute_drift(reference, current, features, DriftConfig(engine=engine))

    # Continuous: equal-width bins over the central 99% of both samples pooled, values
    # beyond counted in the outer bins: what np.histogram of the clipped rows gives.
    binned = report.distributions["x"]
    ref, cur = _pooled(reference["x"], current["x"])
    pooled = np.concatenate((ref, cur))
    lo, hi = np.quantile(pooled, drift.HISTOGRAM_QUANTILES)
    edges = np.linspace(lo, hi, drift.HISTOGRAM_BINS + 1)
    assert binned.kind == "bins"
    np.testing.assert_allclose(binned.points, edges, rtol=0, atol=1e-12)
    for counts, values in ((binned.reference, ref), (binned.current, cur)):
        assert list(counts) == list(np.histogram(np.clip(values, lo, hi), bins=edges)[0])

    # Few distinct values: one bar per value.
    per_value = report.distributions["k"]
    ref, cur = _pooled(reference["k"], current["k"])
    values = np.unique(np.concatenate((ref, cur)))
    assert per_value.kind == "values" and per_value.points == tuple(values)
    assert per_value.reference == tuple(int((ref == v).sum()) for v in values)
    assert per_value.current == tuple(int((cur == v).sum()) for v in values)


def test_categorical_distributions_count_every_category() -> None:
    reference, current, features = fixed_frames()
    report = compute_drift(reference, current, features)
    colour = report.distributions["colour"]
    assert colour.kind == "categories"
    assert colour.points[-1] == "pink"  # reference categories first, then the new ones
    ref = reference["colour"].value_counts()
    cur = current["colour"].value_counts()
    assert dict(zip(colour.points, colour.reference, strict=True)) == {
        label: int(ref.get(label, 0)) for label in colour.points
    }
    assert dict(zip(colour.points, colour.current, strict=True)) == {
        label: int(cur.get(label, 0)) for label in colour.points
    }


def test_a_feature_without_values_has_no_distribution() -> None:
    reference = pd.DataFrame({"x": [1.0, 2.0, 3.0] * 20, "c": ["a", "b", "c"] * 20})
    current = pd.DataFrame({"x": [np.nan] * 40, "c": [None] * 40})
    report = compute_drift(reference, current, {"x": "numeric", "c": "categorical"})
    # The reference alone is still drawn; an empty day on both sides would draw nothing.
    assert report.distributions["x"].current == (0, 0, 0)
    assert sum(report.distributions["c"].current) == 0
    empty = compute_drift(reference.iloc[0:0], current, {"x": "numeric"})
    assert "x" not in empty.distributions


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([], [0.5, 1.5, 2.5]),  # one sample empty
        ([1.0, 1.0, 1.0], [1.0, 1.0]),  # constant
        ([0.0, 10.0], list(np.linspace(1, 9, 101))),  # the ends from the small sample
        (list(np.arange(50.0)), list(np.arange(25.0, 75.0))),  # overlapping, ties
    ],
)
def test_pooled_quantiles_equal_numpy_on_the_concatenation(a: list, b: list) -> None:
    q = [0.0, 0.005, 0.25, 0.5, 0.995, 1.0]
    for x, y in ((a, b), (b, a)):
        got = drift._pooled_quantiles(np.sort(np.array(x)), np.sort(np.array(y)), q)
        np.testing.assert_allclose(got, np.quantile(np.concatenate((x, y)), q), rtol=1e-12)


# --------------------------------------------------------------------------- HTML


def test_render_html_is_self_contained_and_escaped() -> None:
    reference, current, features = fixed_frames()
    reference = reference.rename(columns={"colour": "<b>colour</b>"})
    current = current.rename(columns={"colour": "<b>colour</b>"})
    current["<b>colour</b>"] = current["<b>colour</b>"].replace("pink", "<script>alert(1)</script>")
    features = {("<b>colour</b>" if k == "colour" else k): v for k, v in features.items()}
    report = compute_drift(reference, current, features)
    page = render_html(report, title="Drift <model & co>")

    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    assert "<b>colour</b>" not in page
    assert "&lt;b&gt;colour&lt;/b&gt;" in page
    assert "Drift &lt;model &amp; co&gt;" in page
    assert not re.search(r"(src|href)\s*=\s*[\"'](?!#)", page), "no external resources"
    assert "http://" not in page and "https://" not in page and "@import" not in page
    assert page.count("<svg") == len(features)
    for feat in report.features:
        assert html.escape(feat.feature) in page
    assert "possible drift" in page or "no drift" in page


def test_render_html_draws_the_reports_distributions() -> None:
    reference, current, features = fixed_frames()
    report = compute_drift(reference, current, features)
    page = render_html(report, title="shares")
    pink = report.distributions["colour"]
    share = 100 * pink.current[-1] / sum(pink.current)
    assert f"<title>pink: current {share:.2f}%</title>" in page
    assert "pink (new)" in page
    binned = report.distributions["skewed"]
    first = 100 * binned.reference[0] / sum(binned.reference)
    assert f"reference {first:.2f}%</title>" in page


def test_render_html_without_verdict() -> None:
    reference, current, features = fixed_frames()
    report = compute_drift(reference, current.iloc[0:0], features)
    page = render_html(report, title="empty day")
    assert "no verdict" in page
    assert "current batch is empty" in page


def test_many_categories_keep_the_most_common_and_fold_the_others() -> None:
    rng = np.random.default_rng(4)
    ids = [f"id{i}" for i in range(5000)]
    reference = pd.DataFrame({"c": rng.choice(ids[:50], 4000)})
    # Mostly new ids, one value now very common.
    current = pd.DataFrame({"c": np.r_[rng.choice(ids, 3000), ["id4999"] * 1000]})
    report = compute_drift(reference, current, {"c": "categorical"})
    chart = report.distributions["c"]
    assert len(chart.points) == drift.CHART_CATEGORIES
    assert chart.folded == len(set(reference["c"]) | set(current["c"])) - (len(chart.points) - 1)
    assert sum(chart.reference) == 4000 and sum(chart.current) == 4000
    assert "id4999" in chart.points  # the most common in either sample is kept
    page = render_html(report, title="ids")
    shown = drift_html._MAX_CATEGORIES - 1
    hidden = len(chart.points) - 1 - shown + chart.folded
    assert f">({hidden} more)<title>" in page and "id4999 (new)" in page
