"""Statistical data drift between a reference frame and a current batch.

Pure computation: no I/O, no Dagster. One call, :func:`compute_drift`, returns a
:class:`DriftReport` that the monitoring asset stores and renders.

Per feature:

* numeric: two-sample Kolmogorov-Smirnov test (asymptotic p-value, as alibi-detect uses),
  effect sizes PSI (10 reference-quantile bins) and Wasserstein distance divided by the
  reference standard deviation;
* categorical: chi-square test on the 2 x k table of category counts over the union of
  categories, effect size Jensen-Shannon distance (base 2).

The p-values come from alibi-detect (``engine="alibi"``) or straight from scipy
(``engine="scipy"``, for deployments that cannot take alibi-detect's licence). Both run the
same scipy formulas; alibi-detect stores p-values as float32, so the alibi engine's p-values
equal the scipy engine's rounded to float32 and nothing more.

Verdict rules (documented in DriftConfig) gate on significance after a correction across
features that this module applies itself, for both engines, and grade by effect size: with
thousands of rows a KS test flags shifts far too small to matter, and with a few dozen rows
effect sizes are mostly noise, so neither is trusted alone.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np
import pandas as pd

Verdict = Literal["no_drift", "possible_drift", "drift", "no_verdict"]
FeatureKind = Literal["numeric", "categorical"]
_KINDS = ("numeric", "categorical")

PSI_BINS = 10
# Bars of a numeric feature's chart: one per value up to this many distinct values, else this
# many equal-width bins.
HISTOGRAM_BINS = 24
# The binned chart spans the central 99% of both samples pooled; values beyond are counted in
# the outer bins, so one extreme value cannot squash the chart.
HISTOGRAM_QUANTILES = (0.005, 0.995)
# A categorical feature keeps its most common categories (in either sample) for charts; the
# others are summed into one last bar, so ids or free text do not keep a million labels.
CHART_CATEGORIES = 100
# Keeps PSI finite when a bin is empty on one side; small enough not to bias bins that
# hold even one value in 10,000.
PSI_EPSILON = 1e-4
# A high-cardinality column (ids, free text) can bring thousands of new values a day; the
# report keeps the most frequent ones and says how many there were.
MAX_LISTED_UNSEEN = 100
SORT_THREADS = max(1, min(4, os.cpu_count() or 1))
# Below this many values in total, starting threads costs more than it saves.
_THREADED_SORT_MIN_VALUES = 500_000

_TIER_RANK: dict[str, int] = {"no_verdict": -1, "no_drift": 0, "possible_drift": 1, "drift": 2}
_TIER_NAME: dict[int, Verdict] = {0: "no_drift", 1: "possible_drift", 2: "drift"}


class DriftInputError(ValueError):
    """The frames or the feature list cannot be compared (missing columns, unknown kinds)."""


@dataclass(frozen=True)
class DriftConfig:
    """Tests, correction and thresholds.

    Verdict per feature (``p`` = p-value after the correction across features):

    * ``drift``: ``p < p_value`` and an effect size >= its ``*_drift`` threshold;
    * ``possible_drift``: ``p < p_value`` and an effect size >= its ``*_possible`` threshold;
    * ``no_drift``: otherwise. A large effect size without significance is *not* flagged:
      that is what a small batch looks like under no drift at all (30 rows give a PSI of
      about 0.3 by chance), and the effect size is still in the report for a human.

    Numeric features take the higher tier of PSI and normalised Wasserstein; the reported
    ``effect_size`` is the PSI. Defaults are calibrated so that, on 5,000 rows, a 0.2 sd
    shift in the mean (Wasserstein 0.2, PSI ~0.04) is at least ``possible_drift`` (about
    half the days ``drift``), and a 10-point change in one category's share (JS distance
    0.085-0.09) is ``possible_drift``, while a 0.02 sd shift that 100,000 rows make highly
    significant stays ``no_drift``. The JS thresholds are set below the conventional 0.1/0.2
    for that reason: a JS distance of 0.1 corresponds to a mean shift of about 0.24 sd, so
    0.05/0.1 keep categorical and numeric features on a comparable scale (PSI 0.1/0.25 is
    the industry convention and corresponds to a shift of about 0.3/0.5 sd).
    """

    engine: Literal["alibi", "scipy"] = "alibi"
    correction: Literal["bonferroni", "fdr"] = "bonferroni"
    p_value: float = 0.05
    psi_possible: float = 0.1
    psi_drift: float = 0.25
    wasserstein_possible: float = 0.1
    wasserstein_drift: float = 0.2
    js_possible: float = 0.05
    js_drift: float = 0.1
    drift_share: float = 0.5
    min_rows: int = 30

    def __post_init__(self) -> None:
        if self.engine not in ("alibi", "scipy"):
            raise ValueError(f"engine must be 'alibi' or 'scipy', not {self.engine!r}")
        if self.correction not in ("bonferroni", "fdr"):
            raise ValueError(f"correction must be 'bonferroni' or 'fdr', not {self.correction!r}")
        if not 0.0 < self.p_value < 1.0:
            raise ValueError(f"p_value must be in (0, 1), not {self.p_value}")
        for name in ("psi", "wasserstein", "js"):
            possible = getattr(self, f"{name}_possible")
            drift = getattr(self, f"{name}_drift")
            if not 0.0 <= possible <= drift:
                raise ValueError(
                    f"need 0 <= {name}_possible <= {name}_drift, got {possible} and {drift}"
                )
        if not 0.0 < self.drift_share <= 1.0:
            raise ValueError(f"drift_share must be in (0, 1], not {self.drift_share}")
        if self.min_rows < 2:
            raise ValueError(f"min_rows must be at least 2, not {self.min_rows}")


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature. Counts refer to the values actually tested.

    ``missing_rate_*`` is the share of rows that are null (None/NaN/NA); ``None`` for a frame
    without rows. ``non_finite_current`` counts every current value left out of the test:
    nulls, +-inf and (numeric) values that are not numbers. ``coerced_values`` counts the
    values, in either frame, of a numeric column that could not be read as numbers.
    ``notes`` says what was unusual but did not prevent a verdict (a guard that was used,
    a truncated list).
    """

    feature: str
    kind: FeatureKind
    test: Literal["ks", "chi2"]
    statistic: float | None
    p_value: float | None
    p_value_adjusted: float | None
    effect_size_name: Literal["psi", "js_distance"]
    effect_size: float | None
    psi: float | None
    wasserstein_norm: float | None
    js_distance: float | None
    verdict: Verdict
    reason: str | None
    n_reference: int
    n_current: int
    missing_rate_reference: float | None
    missing_rate_current: float | None
    unseen_categories: tuple[str, ...]
    share_outside_reference_range: float | None
    non_finite_current: int
    coerced_values: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Distribution:
    """One feature's two samples as counts per bar, for charts (lib.drift_html).

    Computed from the sorted values and category counts the tests already use, so a report
    of a million rows is drawn without a second pass over the rows.

    * ``kind="values"``: a numeric feature with at most HISTOGRAM_BINS distinct values
      (pooled); ``points`` are those values, one bar each.
    * ``kind="bins"``: ``points`` are HISTOGRAM_BINS + 1 equal-width edges over the central
      HISTOGRAM_QUANTILES of both samples pooled; values beyond the ends count in the outer
      bins (as ``np.histogram`` of the clipped values).
    * ``kind="categories"``: ``points`` are the category labels, reference categories first;
      beyond CHART_CATEGORIES, the most common ones (by their larger share in either sample)
      and one last bar summing the ``folded`` others (its label is empty).

    ``reference`` and ``current`` are the counts per bar; they sum to the usable values.
    """

    kind: Literal["values", "bins", "categories"]
    points: tuple[float, ...] | tuple[str, ...]
    reference: tuple[int, ...]
    current: tuple[int, ...]
    folded: int = 0


@dataclass(frozen=True)
class DriftReport:
    features: tuple[FeatureDrift, ...]
    share_drifted: float | None
    verdict: Verdict
    n_reference: int
    n_current: int
    ignored_columns: tuple[str, ...]
    engine: str
    correction: str
    config: DriftConfig = field(default_factory=DriftConfig)
    # Feature -> its samples' counts for charts; absent for a feature with nothing to draw.
    distributions: Mapping[str, Distribution] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per feature; tuple fields become JSON strings so the frame stores flat."""
        names = [f.name for f in fields(FeatureDrift)]
        rows = []
        for feat in self.features:
            row = {name: getattr(feat, name) for name in names}
            row["unseen_categories"] = json.dumps(list(feat.unseen_categories))
            row["notes"] = json.dumps(list(feat.notes))
            rows.append(row)
        return pd.DataFrame(rows, columns=names)

    def top_drifting(self, k: int = 5) -> list[FeatureDrift]:
        """Features ordered by verdict, then by effect size relative to its drift threshold.

        The relative scale makes PSI, Wasserstein and JS comparable; p-values are only the
        last tie-breaker because at production volumes every real drift has p ~ 0.
        """
        return sorted(self.features, key=lambda f: _severity_key(f, self.config))[: max(k, 0)]


def _severity_key(feat: FeatureDrift, config: DriftConfig) -> tuple[float, float, float]:
    ratios = [0.0]
    if feat.psi is not None:
        ratios.append(feat.psi / config.psi_drift if config.psi_drift > 0 else math.inf)
    if feat.wasserstein_norm is not None:
        ratios.append(
            feat.wasserstein_norm / config.wasserstein_drift
            if config.wasserstein_drift > 0
            else math.inf
        )
    if feat.js_distance is not None:
        ratios.append(feat.js_distance / config.js_drift if config.js_drift > 0 else math.inf)
    p = feat.p_value_adjusted if feat.p_value_adjusted is not None else 2.0
    return (-_TIER_RANK[feat.verdict], -max(ratios), p)


# --------------------------------------------------------------------------- preparation


@dataclass
class _Prepared:
    """One feature's usable values, plus the data-quality counts the report carries."""

    name: str
    kind: FeatureKind
    n_ref: int
    n_cur: int
    missing_rate_ref: float | None
    missing_rate_cur: float | None
    excluded_cur: int
    coerced: int
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    # numeric: finite values, possibly views of the caller's frames until sorted into
    # storage of their own (_sort_numeric)
    ref_values: np.ndarray | None = None
    cur_values: np.ndarray | None = None
    ref_sorted: np.ndarray | None = None
    cur_sorted: np.ndarray | None = None
    # categorical: codes (of the reference's rows) and counts index ``labels``; reference
    # categories come first
    ref_codes: np.ndarray | None = None
    labels: list[str] | None = None
    ref_counts: np.ndarray | None = None
    cur_counts: np.ndarray | None = None


def _rate(count: int, rows: int) -> float | None:
    return count / rows if rows else None


def _numeric_values(series: pd.Series) -> tuple[np.ndarray, int, int]:
    """Finite float64 values of a column, its null count, and how many values were not numbers.

    The array may be a view of the frame: it must not be modified in place.
    """
    coerced = 0
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        nulls = int(np.isnan(values).sum())
    else:
        is_null = series.isna()
        nulls = int(is_null.sum())
        numbers = pd.to_numeric(series, errors="coerce")
        coerced = int(numbers.isna().sum()) - nulls
        values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    if not finite.all():
        values = values[finite]
    return values, nulls, coerced


def _prepare_numeric(name: str, ref: pd.Series, cur: pd.Series) -> _Prepared:
    ref_values, ref_nulls, coerced_ref = _numeric_values(ref)
    cur_values, cur_nulls, coerced_cur = _numeric_values(cur)
    prep = _Prepared(
        name=name,
        kind="numeric",
        n_ref=len(ref_values),
        n_cur=len(cur_values),
        missing_rate_ref=_rate(ref_nulls, len(ref)),
        missing_rate_cur=_rate(cur_nulls, len(cur)),
        excluded_cur=len(cur) - len(cur_values),
        coerced=coerced_ref + coerced_cur,
        ref_values=ref_values,
        cur_values=cur_values,
    )
    if coerced_ref or coerced_cur:
        prep.notes.append(
            f"{coerced_ref} reference and {coerced_cur} current values were not numbers "
            "and were left out"
        )
    return prep


def _sort_numeric(
    jobs: Sequence[tuple[_Prepared, np.ndarray | None, np.ndarray | None]],
) -> None:
    """Sort numeric features' values into the given arrays (fresh ones where None; the
    values themselves, an owned column, are sorted in place).

    Every numeric statistic here works on sorted samples, so each column is sorted once;
    copying into storage this module owns also keeps the caller's frame untouched. numpy
    releases the GIL while sorting, so large inputs are sorted on several cores: sorting
    is most of the cost of a drift run.
    """
    tasks: list[tuple[np.ndarray, np.ndarray]] = []
    for prep, ref_out, cur_out in jobs:
        assert prep.ref_values is not None and prep.cur_values is not None
        ref_out = np.empty(prep.n_ref, dtype=np.float64) if ref_out is None else ref_out
        cur_out = np.empty(prep.n_cur, dtype=np.float64) if cur_out is None else cur_out
        tasks += [(prep.ref_values, ref_out), (prep.cur_values, cur_out)]
        prep.ref_sorted, prep.cur_sorted = ref_out, cur_out
        prep.ref_values = prep.cur_values = None

    def sort_one(task: tuple[np.ndarray, np.ndarray]) -> None:
        values, out = task
        if out is not values:
            out[:] = values
        out.sort()

    threads = min(SORT_THREADS, len(tasks))
    if threads > 1 and sum(len(out) for _, out in tasks) >= _THREADED_SORT_MIN_VALUES:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(sort_one, tasks))
    else:
        for task in tasks:
            sort_one(task)


def _own(values: np.ndarray | None) -> np.ndarray | None:
    """The array itself, to sort in place, where it may be written (else None: a copy)."""
    return values if values is not None and values.flags.writeable else None


@dataclass(frozen=True)
class CategoryCounts:
    """One categorical feature of the current rows as its categories' counts: what the tests
    need of it, counted where the rows are (`GROUP BY`) instead of read row by row.
    ``labels`` are distinct (compared as strings, as rows' values are); ``missing`` counts the
    null rows."""

    labels: tuple[str, ...]
    counts: np.ndarray
    missing: int

    @classmethod
    def of(cls, series: pd.Series) -> CategoryCounts:
        """The counts of a column of values."""
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        valid = codes[codes >= 0]
        return cls(
            tuple(str(value) for value in uniques),
            np.bincount(valid, minlength=len(uniques)),
            len(codes) - len(valid),
        )


def _prepare_categorical(name: str, ref: pd.Series, cur: CategoryCounts) -> _Prepared:
    """Labels are compared as strings so that 1 and "1" (an int column read back from CSV)
    are one category, and so the report can list them. The reference's categories come
    first, in their order there; those only the current rows have follow in label order,
    however the counts were made (so a report from counts equals one from rows)."""
    ref_codes, ref_uniques = pd.factorize(ref, use_na_sentinel=True)
    labels: list[str] = []
    label_ids: dict[str, int] = {}
    ref_map = np.empty(len(ref_uniques), dtype=np.int64)
    for i, value in enumerate(ref_uniques):
        label = str(value)
        if label not in label_ids:
            label_ids[label] = len(labels)
            labels.append(label)
        ref_map[i] = label_ids[label]
    n_ref_labels = len(labels)
    for label in sorted(set(cur.labels) - label_ids.keys()):
        label_ids[label] = len(labels)
        labels.append(label)
    k = len(labels)
    ref_valid = ref_map[ref_codes[ref_codes >= 0]]
    cur_ids = np.fromiter((label_ids[label] for label in cur.labels), np.int64, len(cur.labels))
    cur_counts = np.bincount(cur_ids, weights=cur.counts, minlength=k).astype(np.int64)
    n_cur = int(cur_counts.sum())
    n_cur_rows = n_cur + cur.missing
    prep = _Prepared(
        name=name,
        kind="categorical",
        n_ref=len(ref_valid),
        n_cur=n_cur,
        missing_rate_ref=_rate(len(ref) - len(ref_valid), len(ref)),
        missing_rate_cur=_rate(cur.missing, n_cur_rows),
        excluded_cur=cur.missing,
        coerced=0,
        ref_codes=ref_valid,
        labels=labels,
        ref_counts=np.bincount(ref_valid, minlength=k),
        cur_counts=cur_counts,
    )
    if k > n_ref_labels:
        new = k - n_ref_labels
        prep.notes.append(
            f"{new} {'category' if new == 1 else 'categories'} in current not in reference"
        )
    return prep


def _check_inputs(
    reference: pd.DataFrame, current: pd.DataFrame, features: Mapping[str, str]
) -> tuple[str, ...]:
    _check_features(features)
    problems = [
        *_frame_problems("reference", reference, features),
        *_frame_problems("current", current, features),
    ]
    if problems:
        raise DriftInputError("; ".join(problems))
    return tuple(str(c) for c in current.columns if c not in features)


def _check_features(features: Mapping[str, str]) -> None:
    if not features:
        raise DriftInputError("no features to compare")
    bad_kinds = {name: kind for name, kind in features.items() if kind not in _KINDS}
    if bad_kinds:
        listed = ", ".join(f"{name!r}: {kind!r}" for name, kind in bad_kinds.items())
        raise DriftInputError(f"feature kinds must be 'numeric' or 'categorical'; got {listed}")


def _frame_problems(label: str, frame: pd.DataFrame, features: Mapping[str, str]) -> list[str]:
    if not isinstance(frame, pd.DataFrame):
        raise DriftInputError("reference and current must be pandas DataFrames")
    problems = []
    missing = [name for name in features if name not in frame.columns]
    if missing:
        problems.append(f"{label} is missing feature columns: {', '.join(missing)}")
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    clash = [name for name in features if name in duplicated]
    if clash:
        problems.append(f"{label} has duplicate columns: {', '.join(clash)}")
    return problems


def _no_verdict_reason(prep: _Prepared, n_cur_rows: int, min_rows: int) -> str | None:
    if n_cur_rows == 0:
        return "current batch is empty"
    if prep.n_ref == 0:
        return "reference has no usable values"
    if prep.n_cur == 0:
        return f"current has no usable values (all {n_cur_rows} rows missing or invalid)"
    if prep.n_ref < min_rows:
        return f"too few reference values: {prep.n_ref} < min_rows={min_rows}"
    if prep.n_cur < min_rows:
        return f"too few current values: {prep.n_cur} < min_rows={min_rows}"
    return None


# --------------------------------------------------------------------------- statistics


def _run_ends(sorted_values: np.ndarray) -> np.ndarray:
    return np.append(
        np.flatnonzero(sorted_values[1:] != sorted_values[:-1]), len(sorted_values) - 1
    )


def _ks_statistic(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> float:
    """Two-sided KS statistic, equal bit for bit to scipy's ``ks_2samp``.

    scipy evaluates count/n1 - count/n2 at every value of the pooled sample. The supremum is
    reached at sample values, and within a run of tied values all counts equal those at the
    run's end, so it is enough to evaluate at run ends, where each sample's own count is the
    index: one search into the other sample instead of two searches of the pooled sample.
    """
    n1 = len(ref_sorted)
    n2 = len(cur_sorted)
    ends_ref = _run_ends(ref_sorted)
    ends_cur = _run_ends(cur_sorted)
    at_ref = (ends_ref + 1) / n1 - np.searchsorted(
        cur_sorted, ref_sorted[ends_ref], side="right"
    ) / n2
    at_cur = (
        np.searchsorted(ref_sorted, cur_sorted[ends_cur], side="right") / n1 - (ends_cur + 1) / n2
    )
    lowest = min(float(at_ref.min()), float(at_cur.min()))
    highest = max(float(at_ref.max()), float(at_cur.max()))
    return max(min(max(-lowest, 0.0), 1.0), highest)


def _wasserstein(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> float:
    """Wasserstein-1 distance as the integral of |Q_ref(u) - Q_cur(u)| over u in [0, 1].

    The quantile functions step at i/n1 and j/n2; the merged order of those steps follows
    from the sample sizes alone, so no data-dependent merge or search is needed.
    """
    n1 = len(ref_sorted)
    n2 = len(cur_sorted)
    if n1 == n2:
        return float(np.mean(np.abs(ref_sorted - cur_sorted)))
    # Step starts in units of 1/(n1*n2): i*n2 for the reference, j*n1 for current. A step
    # of each at the same point gives a zero-width segment, which adds nothing.
    i = np.arange(n1, dtype=np.int64)
    j = np.arange(n2, dtype=np.int64)
    starts = np.empty(n1 + n2, dtype=np.int64)
    starts[i + (i * n2 + n1 - 1) // n1] = i * n2
    starts[j + (j * n1) // n2 + 1] = j * n1
    widths = np.diff(starts, append=n1 * n2)
    gaps = np.abs(ref_sorted[starts // n2] - cur_sorted[starts // n1])
    # einsum, not np.dot: a dot product goes to OpenBLAS, whose threads then spin on every
    # core for a while after each call. Once per feature, that kept a second core busy for
    # the whole drift run (1.2 s of CPU in 2.3 s at 1M rows x 30 numeric features), which the
    # warehouse's read beside the tests needs.
    return float(np.einsum("i,i->", widths, gaps)) / (n1 * n2)


def _kth_of_two(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """The k-th smallest value (from 0) of two sorted arrays together, by bisecting how
    many of the first k + 1 come from `a`: a few probes instead of merging a million rows."""
    lo, hi = max(0, k + 1 - len(b)), min(k + 1, len(a))
    while lo < hi:
        i = (lo + hi) // 2
        if a[i] < b[k - i]:  # a[i] belongs among the first k + 1 too
            lo = i + 1
        else:
            hi = i
    j = k + 1 - lo
    return float(max(a[lo - 1] if lo else -np.inf, b[j - 1] if j else -np.inf))


def _pooled_quantiles(a: np.ndarray, b: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.quantile(np.concatenate((a, b)), q)`` (linear) of two sorted arrays."""
    last = len(a) + len(b) - 1
    h = last * np.asarray(q, dtype=np.float64)
    lo = np.floor(h).astype(np.int64)
    at_lo = np.array([_kth_of_two(a, b, int(k)) for k in lo])
    at_hi = np.array([_kth_of_two(a, b, int(min(k + 1, last))) for k in lo])
    return at_lo + (h - lo) * (at_hi - at_lo)


def _few_distinct(sorted_values: np.ndarray, limit: int) -> np.ndarray | None:
    """The distinct values of a sorted array if there are at most `limit`, else None."""
    if len(sorted_values) == 0:
        return sorted_values
    if np.count_nonzero(sorted_values[1:] != sorted_values[:-1]) >= limit:
        return None
    return sorted_values[_run_ends(sorted_values)]


def _distribution(prep: _Prepared) -> Distribution | None:
    if prep.kind == "categorical":
        assert prep.labels is not None
        assert prep.ref_counts is not None and prep.cur_counts is not None
        if not prep.labels:
            return None
        return _categories(prep.labels, prep.ref_counts, prep.cur_counts)
    ref, cur = prep.ref_sorted, prep.cur_sorted
    assert ref is not None and cur is not None
    if len(ref) == 0 and len(cur) == 0:
        return None
    ref_distinct = _few_distinct(ref, HISTOGRAM_BINS)
    cur_distinct = _few_distinct(cur, HISTOGRAM_BINS) if ref_distinct is not None else None
    if ref_distinct is not None and cur_distinct is not None:
        values = np.union1d(ref_distinct, cur_distinct)
        if len(values) <= HISTOGRAM_BINS:
            counts = [
                np.searchsorted(s, values, side="right") - np.searchsorted(s, values, side="left")
                for s in (ref, cur)
            ]
            return Distribution(
                "values", tuple(float(v) for v in values), _counts(counts[0]), _counts(counts[1])
            )
    lo, hi = _pooled_quantiles(ref, cur, HISTOGRAM_QUANTILES)
    if hi <= lo:
        lo = min(float(s[0]) for s in (ref, cur) if len(s))
        hi = max(float(s[-1]) for s in (ref, cur) if len(s))
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    # np.histogram of the values clipped to [lo, hi]: bins close on the left, the last on
    # both sides, so the outer bins take everything beyond.
    counts = [
        np.diff(np.concatenate(([0], np.searchsorted(s, edges[1:-1], side="left"), [len(s)])))
        for s in (ref, cur)
    ]
    return Distribution(
        "bins", tuple(float(e) for e in edges), _counts(counts[0]), _counts(counts[1])
    )


def _categories(labels: list[str], ref: np.ndarray, cur: np.ndarray) -> Distribution:
    if len(labels) <= CHART_CATEGORIES:
        return Distribution("categories", tuple(labels), _counts(ref), _counts(cur))
    share = np.maximum(ref / max(int(ref.sum()), 1), cur / max(int(cur.sum()), 1))
    ranked = np.argsort(-share, kind="stable")
    keep = np.sort(ranked[: CHART_CATEGORIES - 1])  # in the labels' own order
    rest = ranked[CHART_CATEGORIES - 1 :]
    return Distribution(
        "categories",
        (*(labels[i] for i in keep), ""),
        (*_counts(ref[keep]), int(ref[rest].sum())),
        (*_counts(cur[keep]), int(cur[rest].sum())),
        folded=len(rest),
    )


def _counts(values: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _ks_asymptotic_p(statistics: np.ndarray, n1: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """Two-sided asymptotic KS p-values exactly as ``scipy.stats.ks_2samp(method="asymp")``.

    alibi-detect always asks scipy for the asymptotic p-value, so the scipy engine does too
    (scipy's default switches to an exact p-value below 10,000 rows).
    """
    m = np.maximum(n1, n2).astype(np.float64)
    n = np.minimum(n1, n2).astype(np.float64)
    en = m * n / (m + n)
    # Imported here: scipy.stats is the heaviest import of the code location's start-up.
    from scipy import stats

    return np.clip(stats.kstwo.sf(statistics, np.round(en)), 0.0, 1.0)


def _sorted_quantiles(sorted_values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Linear-interpolation quantiles (numpy's default) of an already sorted array."""
    h = (len(sorted_values) - 1) * q
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


def _psi(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> float:
    # Duplicate edges (a discrete or mostly-constant column) would make empty bins on both
    # sides; collapsing them keeps the bins that carry information.
    edges = np.unique(_sorted_quantiles(ref_sorted, np.arange(1, PSI_BINS) / PSI_BINS))

    def shares(sorted_values: np.ndarray) -> np.ndarray:
        upto = np.searchsorted(sorted_values, edges, side="right")
        counts = np.diff(np.concatenate(([0], upto, [len(sorted_values)])))
        return np.maximum(counts / len(sorted_values), PSI_EPSILON)

    ref_share = shares(ref_sorted)
    cur_share = shares(cur_sorted)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def _is_constant(sorted_values: np.ndarray, std: float) -> bool:
    # Relative tolerance: a column that is constant up to float rounding must not turn
    # rounding noise into an enormous normalised distance.
    scale = max(abs(float(sorted_values[0])), abs(float(sorted_values[-1])))
    return std == 0.0 or std <= 1e-12 * scale


def _wasserstein_norm(prep: _Prepared, raw: float) -> float:
    ref, cur = prep.ref_sorted, prep.cur_sorted
    assert ref is not None and cur is not None
    std = float(ref.std())
    if not _is_constant(ref, std):
        return raw / std
    if raw == 0.0:
        return 0.0
    pooled = float(np.concatenate((ref, cur)).std())
    prep.notes.append(
        "reference is constant; Wasserstein distance divided by the pooled standard "
        "deviation of reference and current instead"
    )
    return raw / pooled


def _js_distance(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    p = ref_counts / ref_counts.sum()
    q = cur_counts / cur_counts.sum()
    m = 0.5 * (p + q)

    def kl_to_m(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    divergence = 0.5 * kl_to_m(p) + 0.5 * kl_to_m(q)
    return math.sqrt(max(divergence, 0.0))


def _chi2_table(prep: _Prepared) -> np.ndarray:
    assert prep.ref_counts is not None and prep.cur_counts is not None
    return np.vstack((prep.ref_counts, prep.cur_counts))


def _ks_tests(numeric: list[_Prepared], d: np.ndarray) -> dict[str, tuple[float, float]]:
    """KS statistics and their asymptotic p-values, computed for all features at once."""
    if not numeric:
        return {}
    n1 = np.array([p.n_ref for p in numeric])
    n2 = np.array([p.n_cur for p in numeric])
    p_values = _ks_asymptotic_p(d, n1, n2)
    return {
        prep.name: (float(stat), float(p_value))
        for prep, stat, p_value in zip(numeric, d, p_values, strict=True)
    }


def _chi2_tests(categorical: list[_Prepared]) -> dict[str, tuple[float, float]]:
    from scipy import stats

    results: dict[str, tuple[float, float]] = {}
    for prep in categorical:
        res = stats.chi2_contingency(_chi2_table(prep))
        results[prep.name] = (float(res.statistic), float(res.pvalue))
    return results


def _alibi_tests(
    numeric: list[_Prepared], categorical: list[_Prepared], config: DriftConfig
) -> dict[str, tuple[float, float]]:
    """p-values and statistics from alibi-detect's TabularDrift.

    TabularDrift needs one matrix, so features are grouped by their numbers of usable values
    (usually all features share them). Numeric columns are sorted straight into the
    column-major matrix: the univariate tests do not depend on row order, the effect sizes
    need the sorted columns anyway (they are views into the matrix), and the sort inside
    scipy's KS test is then nearly free. alibi-detect's own correction
    is ignored because it would only cover one group; the correction across all features
    is applied by compute_drift.
    """
    if not numeric and not categorical:
        return {}
    try:
        from alibi_detect.cd import TabularDrift
    except ImportError as exc:  # pragma: no cover - alibi-detect is a dependency
        raise RuntimeError(
            "engine='alibi' needs alibi-detect; use DriftConfig(engine='scipy')"
        ) from exc

    groups: dict[tuple[int, int], list[_Prepared]] = {}
    for prep in [*numeric, *categorical]:
        groups.setdefault((prep.n_ref, prep.n_cur), []).append(prep)

    matrices = []
    sort_jobs: list[tuple[_Prepared, np.ndarray | None, np.ndarray | None]] = []
    for (n_ref, n_cur), members in groups.items():
        x_ref = np.empty((n_ref, len(members)), dtype=np.float64, order="F")
        x_cur = np.empty((n_cur, len(members)), dtype=np.float64, order="F")
        categories: dict[int, None] = {}
        for j, prep in enumerate(members):
            if prep.kind == "numeric":
                sort_jobs.append((prep, x_ref[:, j], x_cur[:, j]))
            else:
                x_ref[:, j] = prep.ref_codes
                # Its chi-square test counts the codes: any order of them gives the same.
                assert prep.cur_counts is not None
                x_cur[:, j] = np.repeat(np.arange(len(prep.cur_counts)), prep.cur_counts)
                categories[j] = None
        matrices.append((members, x_ref, x_cur, categories))
    _sort_numeric(sort_jobs)

    results: dict[str, tuple[float, float]] = {}
    for members, x_ref, x_cur, categories in matrices:
        detector = TabularDrift(
            x_ref,
            p_val=config.p_value,
            categories_per_feature=categories,
            correction=config.correction,
        )
        out = detector.predict(x_cur, drift_type="batch", return_p_val=True)["data"]
        for j, prep in enumerate(members):
            results[prep.name] = (float(out["distance"][j]), float(out["p_val"][j]))
    return results


def _adjust(p_values: np.ndarray, correction: str) -> np.ndarray:
    m = len(p_values)
    if m == 0:
        return p_values
    if correction == "bonferroni":
        return np.minimum(p_values * m, 1.0)
    # Benjamini-Hochberg step-up: adjusted p_(i) = min over j >= i of m * p_(j) / j.
    order = np.argsort(p_values, kind="stable")
    scaled = p_values[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = adjusted_sorted
    return adjusted


def _tier(value: float | None, possible: float, drift: float) -> int:
    if value is None:
        return 0
    if value >= drift:
        return 2
    if value >= possible:
        return 1
    return 0


# --------------------------------------------------------------------------- entry point


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Mapping[str, str],
    config: DriftConfig = DriftConfig(),
) -> DriftReport:
    """Compare ``current`` with ``reference`` on ``features`` (name -> numeric|categorical).

    Raises DriftInputError when a feature column is missing from either frame or a kind is
    unknown. Columns of ``current`` that are not features are ignored and listed. Neither
    frame is modified.
    """
    ignored = _check_inputs(reference, current, features)
    run = DriftRun(reference, features, config, n_current=len(current))
    run.add(current)
    return run.finish(ignored)


class DriftRun:
    """`compute_drift` fed the current rows a few columns at a time: each `add` tests the
    features it brings (prepared, sorted, KS or chi-square, Wasserstein), `finish` corrects
    across all features and gives the verdicts. A caller that reads the next columns while
    `add` works on the previous ones hides most of the read. `compute_drift` is one `add` of
    every column, so both give the same report.

    The reference is checked when the run starts; each part must have ``n_current`` rows."""

    def __init__(
        self,
        reference: pd.DataFrame,
        features: Mapping[str, str],
        config: DriftConfig = DriftConfig(),
        *,
        n_current: int,
    ):
        _check_features(features)
        problems = _frame_problems("reference", reference, features)
        if problems:
            raise DriftInputError("; ".join(problems))
        self.reference, self.features, self.config = reference, dict(features), config
        self.n_current = n_current
        self._prepared: dict[str, _Prepared] = {}
        # Per tested feature: the KS statistic (numeric) or chi-square (statistic, p-value).
        self._ks: dict[str, float] = {}
        self._chi2: dict[str, tuple[float, float]] = {}
        self._wasserstein: dict[str, float] = {}

    def add(self, current: pd.DataFrame, *, owned: bool = False) -> None:
        """Test the features among ``current``'s columns (each once). ``owned``: the caller
        hands the frame over and will not read it again: its numeric columns are sorted
        where they are instead of copied first (a day of 1M rows x 30 numeric features is
        240 MB not allocated, faulted in and copied)."""
        if not isinstance(current, pd.DataFrame):
            raise DriftInputError("reference and current must be pandas DataFrames")
        if len(current) != self.n_current:
            raise DriftInputError(f"current has {len(current)} rows, expected {self.n_current}")
        brought = {name: kind for name, kind in self.features.items() if name in current.columns}
        problems = _frame_problems("current", current, brought)
        if problems:
            raise DriftInputError("; ".join(problems))
        part: list[_Prepared] = []
        for name, kind in brought.items():
            self._check_new(name)
            if kind == "numeric":
                prep = _prepare_numeric(name, self.reference[name], current[name])
            else:
                counts = CategoryCounts.of(current[name])
                prep = _prepare_categorical(name, self.reference[name], counts)
            part.append(prep)
        self._test(part, owned=owned)

    def add_counts(self, counts: Mapping[str, CategoryCounts]) -> None:
        """Test categorical features from their counts (each once): the report is the one
        their rows would give."""
        part: list[_Prepared] = []
        for name, counted in counts.items():
            self._check_new(name)
            if self.features.get(name) != "categorical":
                raise DriftInputError(f"{name!r} is not a categorical feature of this run")
            rows = int(np.sum(counted.counts)) + counted.missing
            if rows != self.n_current:
                raise DriftInputError(
                    f"the counts of {name!r} cover {rows} rows, expected {self.n_current}"
                )
            part.append(_prepare_categorical(name, self.reference[name], counted))
        self._test(part, owned=False)

    def _check_new(self, name: str) -> None:
        if name in self._prepared:
            raise DriftInputError(f"feature {name!r} was added twice")

    def _test(self, part: list[_Prepared], *, owned: bool) -> None:
        for prep in part:
            prep.reason = _no_verdict_reason(prep, self.n_current, self.config.min_rows)
            self._prepared[prep.name] = prep
        if self.config.engine == "alibi":
            return  # alibi-detect tests all features in one detector: in `finish`
        _sort_numeric(
            [(p, None, _own(p.cur_values) if owned else None) for p in part if p.kind == "numeric"]
        )
        testable = [p for p in part if p.reason is None]
        self._chi2.update(_chi2_tests([p for p in testable if p.kind == "categorical"]))
        for p in testable:
            if p.kind == "numeric":
                self._ks[p.name] = _ks_statistic(p.ref_sorted, p.cur_sorted)
                self._wasserstein[p.name] = _wasserstein_norm(
                    p, _wasserstein(p.ref_sorted, p.cur_sorted)
                )

    def finish(self, ignored: tuple[str, ...] = ()) -> DriftReport:
        """The report, once every feature was added."""
        missing = [name for name in self.features if name not in self._prepared]
        if missing:
            raise DriftInputError(f"current is missing feature columns: {', '.join(missing)}")
        config, n_cur_rows = self.config, self.n_current
        prepared = [self._prepared[name] for name in self.features]
        testable = [p for p in prepared if p.reason is None]
        numeric = [p for p in testable if p.kind == "numeric"]
        categorical = [p for p in testable if p.kind == "categorical"]

        if config.engine == "alibi":
            # The alibi engine sorts the features it tests straight into its detector's
            # matrices; everything else numeric is sorted here, including untested
            # features, for their range checks.
            tests = _alibi_tests(numeric, categorical, config)
            _sort_numeric(
                [(p, None, None) for p in prepared if p.kind == "numeric" and p.ref_sorted is None]
            )
            wasserstein = {
                p.name: _wasserstein_norm(p, _wasserstein(p.ref_sorted, p.cur_sorted))
                for p in numeric
            }
        else:
            tests = dict(self._chi2)
            # The KS p-values of all numeric features in one array.
            tests.update(_ks_tests(numeric, np.array([self._ks[p.name] for p in numeric])))
            wasserstein = self._wasserstein

        raw_p = np.array([tests[p.name][1] for p in testable], dtype=np.float64)
        adjusted = dict(
            zip([p.name for p in testable], _adjust(raw_p, config.correction), strict=True)
        )

        results: list[FeatureDrift] = []
        for prep in prepared:
            results.append(_feature_result(prep, tests, adjusted, wasserstein, config))

        with_verdict = [f for f in results if f.verdict != "no_verdict"]
        if n_cur_rows == 0 or not with_verdict:
            share: float | None = None
            verdict: Verdict = "no_verdict"
        else:
            share = sum(f.verdict == "drift" for f in with_verdict) / len(with_verdict)
            if share >= config.drift_share:
                verdict = "drift"
            elif any(f.verdict in ("drift", "possible_drift") for f in with_verdict):
                verdict = "possible_drift"
            else:
                verdict = "no_drift"

        distributions = {p.name: _distribution(p) for p in prepared}
        return DriftReport(
            features=tuple(results),
            share_drifted=share,
            verdict=verdict,
            n_reference=len(self.reference),
            n_current=n_cur_rows,
            ignored_columns=ignored,
            engine=config.engine,
            correction=config.correction,
            config=config,
            distributions={name: d for name, d in distributions.items() if d is not None},
        )


def _feature_result(
    prep: _Prepared,
    tests: Mapping[str, tuple[float, float]],
    adjusted: Mapping[str, float],
    wasserstein: Mapping[str, float],
    config: DriftConfig,
) -> FeatureDrift:
    numeric = prep.kind == "numeric"
    psi = w_norm = js = share_outside = None
    unseen: tuple[str, ...] = ()

    if numeric and prep.n_ref and prep.n_cur:
        ref, cur = prep.ref_sorted, prep.cur_sorted
        assert ref is not None and cur is not None
        below = np.searchsorted(cur, ref[0], side="left")
        above = len(cur) - np.searchsorted(cur, ref[-1], side="right")
        share_outside = float((below + above) / len(cur))
        if prep.reason is None:
            psi = _psi(ref, cur)
            w_norm = wasserstein[prep.name]
    if not numeric and prep.n_cur:
        assert prep.ref_counts is not None and prep.cur_counts is not None
        assert prep.labels is not None
        new = np.flatnonzero((prep.ref_counts == 0) & (prep.cur_counts > 0))
        new = new[np.argsort(-prep.cur_counts[new], kind="stable")]
        unseen = tuple(prep.labels[i] for i in new[:MAX_LISTED_UNSEEN])
        if len(new) > MAX_LISTED_UNSEEN:
            prep.notes.append(
                f"{len(new)} unseen categories; the {MAX_LISTED_UNSEEN} most frequent listed"
            )
        if prep.reason is None and prep.n_ref:
            js = _js_distance(prep.ref_counts, prep.cur_counts)

    statistic = p_value = p_adj = None
    if prep.reason is None:
        statistic, p_value = tests[prep.name]
        p_adj = float(adjusted[prep.name])
        if numeric:
            tier = max(
                _tier(psi, config.psi_possible, config.psi_drift),
                _tier(w_norm, config.wasserstein_possible, config.wasserstein_drift),
            )
        else:
            tier = _tier(js, config.js_possible, config.js_drift)
        verdict: Verdict = _TIER_NAME[tier] if p_adj < config.p_value else "no_drift"
    else:
        verdict = "no_verdict"

    return FeatureDrift(
        feature=prep.name,
        kind=prep.kind,
        test="ks" if numeric else "chi2",
        statistic=statistic,
        p_value=p_value,
        p_value_adjusted=p_adj,
        effect_size_name="psi" if numeric else "js_distance",
        effect_size=psi if numeric else js,
        psi=psi,
        wasserstein_norm=w_norm,
        js_distance=js,
        verdict=verdict,
        reason=prep.reason,
        n_reference=prep.n_ref,
        n_current=prep.n_cur,
        missing_rate_reference=prep.missing_rate_ref,
        missing_rate_current=prep.missing_rate_cur,
        unseen_categories=unseen,
        share_outside_reference_range=share_outside,
        non_finite_current=prep.excluded_cur,
        coerced_values=prep.coerced,
        notes=tuple(prep.notes),
    )
