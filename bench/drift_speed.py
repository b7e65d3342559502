"""Speed and memory of compute_drift against raw alibi-detect and Evidently.

Usage: python bench/drift_speed.py [--rows 200000] [--features-numeric 30]
       [--features-categorical 10] [--engine scipy|alibi] [--repeat 3] [--skip-evidently]

Reference and current come from one generator (no drift), so every tool does its full work
on every feature and none can stop early. Every tool is treated alike: the same frames, the
same warm-up (one run on the first 1,000 rows), the same tests where it lets us choose (KS and
chi-square at p 0.05), `--repeat` interleaved runs, the median reported. Evidently is optional
(the ``bench`` extra); when it is not installed its figure is null. `--engine` is the
compute_drift engine (scipy, the contract's default, or alibi). The last line printed is one
JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops_assets.lib import drift
from mlops_assets.lib.drift import DriftConfig, compute_drift


def make_frame(rng: np.random.Generator, rows: int, n_num: int, n_cat: int) -> pd.DataFrame:
    """Mixed shapes: skew, ties and bounded ranges all change what a KS test and a sort cost."""
    columns: dict[str, np.ndarray] = {}
    for i in range(n_num):
        shape = i % 4
        if shape == 0:
            columns[f"num_{i}"] = rng.normal(10.0 * i, 1.0 + i, rows)
        elif shape == 1:
            columns[f"num_{i}"] = rng.lognormal(0.0, 0.75, rows)
        elif shape == 2:
            columns[f"num_{i}"] = rng.uniform(-1.0, 1.0, rows)
        else:
            columns[f"num_{i}"] = rng.poisson(4.0, rows).astype(np.float64)
    for i in range(n_cat):
        k = 3 + (i * 5) % 18
        labels = np.array([f"cat{i}_v{j}" for j in range(k)], dtype=object)
        weights = 1.0 / np.arange(1, k + 1)
        columns[f"cat_{i}"] = labels[rng.choice(k, size=rows, p=weights / weights.sum())]
    return pd.DataFrame(columns)


def _head(data, n: int | None):
    return data if n is None else data[:n]


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds (CPU summed over the process's threads)."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features-numeric", type=int, default=30)
    parser.add_argument("--features-categorical", type=int, default=10)
    parser.add_argument("--engine", choices=["alibi", "scipy"], default="scipy")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="threads for sorting (default: library's)"
    )
    parser.add_argument("--skip-evidently", action="store_true")
    args = parser.parse_args(argv)

    warnings.simplefilter("ignore")
    rng = np.random.default_rng(20240601)
    reference = make_frame(rng, args.rows, args.features_numeric, args.features_categorical)
    current = make_frame(rng, args.rows, args.features_numeric, args.features_categorical)
    features = {c: "numeric" if c.startswith("num_") else "categorical" for c in reference}
    cat_columns = [c for c in reference if features[c] == "categorical"]
    print(
        f"{args.rows:,} rows x {args.features_numeric} numeric + "
        f"{args.features_categorical} categorical features, engine={args.engine}"
    )

    from alibi_detect.cd import TabularDrift  # imported here so import time is not timed

    if args.threads is not None:
        drift.SORT_THREADS = max(1, args.threads)

    config = DriftConfig(engine=args.engine)

    # alibi-detect needs numbers: categorical codes are made outside the timed part, which
    # favours alibi, since compute_drift and Evidently take the strings as they are.
    x_ref = reference.copy()
    x_cur = current.copy()
    for col in cat_columns:
        codes, _ = pd.factorize(pd.concat([reference[col], current[col]]))
        x_ref[col] = codes[: len(reference)]
        x_cur[col] = codes[len(reference) :]
    x_ref_np = x_ref.to_numpy(dtype=np.float64)
    x_cur_np = x_cur.to_numpy(dtype=np.float64)
    cat_index = {reference.columns.get_loc(c): None for c in cat_columns}

    # Every tool gets the same frames, is warmed the same way (one run on the first 1,000
    # rows), runs the same number of times, and is reported by its median. Each produces the
    # same kind of output: per feature a test (KS for numbers, chi-square for categories) and
    # its p-value against 0.05, plus a dataset verdict, returned as an in-memory object.
    tools: dict[str, Callable[[int | None], object]] = {
        "ours": lambda n: compute_drift(_head(reference, n), _head(current, n), features, config),
        "alibi": lambda n: TabularDrift(
            _head(x_ref_np, n), p_val=0.05, categories_per_feature=cat_index
        ).predict(_head(x_cur_np, n)),
    }
    if args.skip_evidently:
        print("Evidently: skipped")
    else:
        try:
            from evidently import DataDefinition, Dataset, Report
            from evidently.presets import DataDriftPreset
        except ImportError:
            print("Evidently: not installed (pip install '.[bench]'); figure is null")
        else:
            definition = DataDefinition(
                numerical_columns=[c for c in reference if features[c] == "numeric"],
                categorical_columns=cat_columns,
            )
            # Same tests and threshold as ours (Evidently's own default on this many rows
            # would be Wasserstein and Jensen-Shannon distances, without p-values).
            same_tests = {"num_method": "ks", "cat_method": "chisquare", "threshold": 0.05}
            preset = DataDriftPreset(drift_share=config.drift_share, **same_tests)

            def run_evidently(n: int | None) -> object:
                snapshot = Report([preset]).run(
                    Dataset.from_pandas(_head(current, n), data_definition=definition),
                    Dataset.from_pandas(_head(reference, n), data_definition=definition),
                )
                return snapshot.dict()  # the results as plain data, no HTML

            tools["evidently"] = run_evidently

    for run in tools.values():  # warm-up: imports, caches, first-call costs
        run(1000)
    rss_before = rss_mb()
    report = compute_drift(reference, current, features, config)
    peak_rss = rss_mb()

    tracemalloc.start()
    compute_drift(reference, current, features, config)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # Interleaved, each tool once per round, the order rotating: what else the machine was
    # doing during one round weighs on every tool alike.
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
    names = list(tools)
    for i in range(args.repeat):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            runs[name].append(timed(lambda name=name: tools[name](None)))
    median = {
        name: (
            statistics.median(w for w, _ in values),
            statistics.median(c for _, c in values),
        )
        for name, values in runs.items()
    }
    ours_s, ours_cpu = median["ours"]
    alibi_s, alibi_cpu = median["alibi"]
    print(f"median of {args.repeat} runs each, after the same warm-up:")
    print(
        f"ours ({args.engine} engine, {drift.SORT_THREADS} sort threads): "
        f"{ours_s:8.3f} s wall, {ours_cpu:8.3f} s CPU   dataset verdict: {report.verdict}"
    )
    print(f"alibi-detect TabularDrift fit+predict:   {alibi_s:8.3f} s wall, {alibi_cpu:8.3f} s CPU")
    print(
        f"  peak RSS {peak_rss:,.0f} MB (data alone {rss_before:,.0f} MB); "
        f"peak traced allocation in compute_drift {traced_peak / 2**20:,.0f} MB"
    )
    evidently_s = evidently_cpu = None
    if "evidently" in median:
        evidently_s, evidently_cpu = median["evidently"]
        print(
            f"Evidently DataDriftPreset (ks, chisquare): {evidently_s:6.3f} s wall, "
            f"{evidently_cpu:8.3f} s CPU"
        )

    result = {
        "ours_s": round(ours_s, 4),
        "alibi_s": round(alibi_s, 4),
        "evidently_s": None if evidently_s is None else round(evidently_s, 4),
        "evidently_cpu_s": None if evidently_cpu is None else round(evidently_cpu, 4),
        "ours_over_alibi": round(ours_s / alibi_s, 3),
        "ours_over_alibi_cpu": round(ours_cpu / alibi_cpu, 3),
        "evidently_over_ours": None if evidently_s is None else round(evidently_s / ours_s, 2),
        # CPU seconds too: on a busy machine wall time also counts waiting for a core.
        "evidently_over_ours_cpu": None
        if evidently_cpu is None
        else round(evidently_cpu / ours_cpu, 2),
        "peak_rss_mb": round(peak_rss, 1),
        "traced_peak_mb": round(traced_peak / 2**20, 1),
        "rows": args.rows,
        "engine": args.engine,
        "sort_threads": drift.SORT_THREADS,
        "repeat": args.repeat,
        "statistic": "median",
    }
    print(
        f"ours/alibi = {result['ours_over_alibi']}"
        + (
            ""
            if evidently_s is None
            else f", Evidently/ours = {result['evidently_over_ours']} "
            f"(CPU {result['evidently_over_ours_cpu']})"
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
