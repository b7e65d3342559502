"""Label-free performance estimation: lib.estimation against NannyML's CBPE on the same days.

Usage: python bench/estimation.py [--days 30] [--rows-per-day 2000] [--shift-day 10]
       [--repeat 3] [--seed 0] [--nannyml-venv DIR] [--skip-nannyml]

A LightGBM binary model is trained on generated tabular data (8 numeric features, a
non-linear true logit). Its held-out validation rows (with labels) are the reference for both
tools. Then `--days` production days of `--rows-per-day` rows each; from `--shift-day` on the
inputs move (covariate shift, growing day by day: feature x0 squeezed towards the decision
boundary and shifted, x5 shifted), which lowers the realised accuracy and ROC AUC while
P(y | x) stays as it was. Each tool estimates accuracy and ROC AUC per day from the predicted
probabilities alone; the realised values come from the labels the tools never see.

NannyML pins lightgbm < 4.6, so it runs in its own virtualenv (created on first use with
`python3.11 -m venv` and `pip install nannyml statsmodels pyarrow`, since nannyml 0.13 imports
statsmodels without declaring it), fed through Parquet files. Equal treatment: the same
reference and production probabilities, one chunk per day (chunk_size = rows per day), and
each tool's fit + estimate of all days timed inside its own process, after one untimed
warm-up run, median of `--repeat` runs (reading the files is not timed for either).
Ours = fit_calibrator + reference_band + estimate per day.

The last line printed is one JSON object: ours_mae, nannyml_mae (mean absolute error over
days and both metrics), ours_s, nannyml_s (median seconds), and per-metric figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops_assets.lib.estimation import (  # noqa: E402
    _metrics,
    estimate,
    fit_calibrator,
    realised_metrics,
    reference_band,
)

METRICS = ("accuracy", "roc_auc")
N_FEATURES = 8
DEFAULT_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")))
    / "mlops_assets"
    / "nannyml-venv"
)

# Runs inside the NannyML virtualenv: reads the two Parquet files, fits and estimates with
# CBPE (warm-up + timed repeats) and writes the per-chunk estimates and timings as JSON.
NANNYML_RUNNER = r"""
import json, statistics, sys, time, warnings
warnings.simplefilter("ignore")
import pandas as pd
import nannyml as nml

reference = pd.read_parquet(sys.argv[1])
analysis = pd.read_parquet(sys.argv[2])
chunk_size, repeat = int(sys.argv[4]), int(sys.argv[5])

def run():
    cbpe = nml.CBPE(
        problem_type="classification_binary",
        y_pred_proba="proba",
        y_pred="pred",
        y_true="y",
        metrics=["accuracy", "roc_auc"],
        chunk_size=chunk_size,
    )
    cbpe.fit(reference)
    return cbpe.estimate(analysis)

run()
times = []
for _ in range(repeat):
    start = time.perf_counter()
    result = run()
    times.append(time.perf_counter() - start)
frame = result.filter(period="analysis").to_df()
out = {"seconds": statistics.median(times), "times": times, "version": nml.__version__}
for metric in ("accuracy", "roc_auc"):
    out[metric] = [float(v) for v in frame[(metric, "value")]]
    out[metric + "_lower"] = [float(v) for v in frame[(metric, "lower_confidence_boundary")]]
    out[metric + "_upper"] = [float(v) for v in frame[(metric, "upper_confidence_boundary")]]
with open(sys.argv[3], "w") as fh:
    json.dump(out, fh)
"""


def true_logit(x: np.ndarray) -> np.ndarray:
    return (
        1.5 * x[:, 0]
        - 0.8 * x[:, 4]
        + 0.9 * x[:, 1] * x[:, 2]
        + np.sin(2.0 * x[:, 3])
        + 0.4 * x[:, 5] ** 2
        - 0.6
    )


def draw(rng: np.random.Generator, n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Rows and labels; ``shift`` in [0, 1] moves x0 towards the boundary and x5 sideways."""
    x = rng.normal(0.0, 1.0, size=(n, N_FEATURES))
    x[:, 0] = x[:, 0] * (1.0 - 0.6 * shift) + 0.4 * shift
    x[:, 5] = x[:, 5] + 1.0 * shift
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-true_logit(x)))).astype(np.int64)
    return x, y


def build(args: argparse.Namespace) -> dict[str, Any]:
    import lightgbm as lgb

    rng = np.random.default_rng(args.seed)
    x_train, y_train = draw(rng, 20_000)
    x_ref, y_ref = draw(rng, 10_000)
    model = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=31, verbose=-1)
    model.fit(x_train, y_train)
    p_ref = model.predict_proba(x_ref)[:, 1]
    shifts, days_p, days_y, days_truth = [], [], [], []
    for day in range(args.days):
        ramp = 0.0 if day < args.shift_day else min(1.0, (day - args.shift_day + 1) / 10.0)
        x, y = draw(rng, args.rows_per_day, ramp)
        shifts.append(ramp)
        days_p.append(model.predict_proba(x)[:, 1])
        days_y.append(y)
        days_truth.append(1.0 / (1.0 + np.exp(-true_logit(x))))
    return {
        "p_ref": p_ref,
        "y_ref": y_ref,
        "days_p": days_p,
        "days_y": days_y,
        "days_truth": days_truth,
        "shifts": shifts,
    }


def run_ours(data: dict[str, Any], chunk_size: int) -> list[Any]:
    calibrator = fit_calibrator(data["y_ref"], data["p_ref"])
    band = reference_band(calibrator, data["y_ref"], data["p_ref"], chunk_size)
    return [estimate(calibrator, p, band=band) for p in data["days_p"]]


def timed_median(fn, repeat: int) -> tuple[float, Any]:
    fn()
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def nannyml_python(venv: Path) -> tuple[Path | None, str | None]:
    """The venv's python, creating the venv when missing; (None, reason) when it cannot."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import nannyml, pyarrow"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, None
    print(f"creating NannyML virtualenv in {venv} (one time) ...", flush=True)
    steps = [
        ["python3.11", "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", "nannyml", "statsmodels", "pyarrow"],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as error:
            return None, f"{' '.join(step[:3])} failed: {error}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, f"{' '.join(step[:4])} exited {done.returncode}: {' | '.join(tail)}"
    imported = subprocess.run(check, capture_output=True, text=True)
    if imported.returncode != 0:
        return None, f"nannyml does not import: {imported.stderr.strip().splitlines()[-1]}"
    return python, None


def run_nannyml(python: Path, data: dict[str, Any], chunk_size: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_estimation_") as tmp:
        folder = Path(tmp)
        p_ref, threshold = data["p_ref"], 0.5
        pd.DataFrame(
            {"proba": p_ref, "pred": (p_ref >= threshold).astype(np.int64), "y": data["y_ref"]}
        ).to_parquet(folder / "reference.parquet")
        p_all = np.concatenate(data["days_p"])
        pd.DataFrame({"proba": p_all, "pred": (p_all >= threshold).astype(np.int64)}).to_parquet(
            folder / "analysis.parquet"
        )
        (folder / "runner.py").write_text(NANNYML_RUNNER)
        command = [
            str(python),
            str(folder / "runner.py"),
            str(folder / "reference.parquet"),
            str(folder / "analysis.parquet"),
            str(folder / "result.json"),
            str(chunk_size),
            str(repeat),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"NannyML runner failed:\n{done.stderr[-3000:]}")
        return json.loads((folder / "result.json").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--shift-day", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nannyml-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--skip-nannyml", action="store_true")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    data = build(args)
    chunk_size = args.rows_per_day
    ours_s, ours = timed_median(lambda: run_ours(data, chunk_size), args.repeat)
    calibrator = fit_calibrator(data["y_ref"], data["p_ref"])
    realised = [
        realised_metrics(calibrator, y, p)
        for y, p in zip(data["days_y"], data["days_p"], strict=True)
    ]
    # The generator knows P(y | x): the expected metric of each day without label noise, which
    # no estimator can beat and which the realised value scatters around by sqrt(p(1-p)/n).
    expected = [
        _metrics("binary", calibrator.classes, p, t, threshold=0.5, business=None)[0]
        for p, t in zip(data["days_p"], data["days_truth"], strict=True)
    ]

    nml: dict[str, Any] | None = None
    nml_reason = None
    if args.skip_nannyml:
        nml_reason = "skipped (--skip-nannyml)"
    else:
        python, nml_reason = nannyml_python(args.nannyml_venv)
        if python is not None:
            nml = run_nannyml(python, data, chunk_size, args.repeat)
            if len(nml["accuracy"]) != args.days:
                raise RuntimeError(
                    f"NannyML returned {len(nml['accuracy'])} chunks, not {args.days}"
                )
    if nml is None:
        print(f"NannyML not run: {nml_reason}")

    header = f"{'day':>3} {'shift':>5} | {'acc real':>8} {'ours':>6} {'nml':>6} | "
    header += f"{'auc real':>8} {'ours':>6} {'nml':>6}"
    print(header)
    errors: dict[str, dict[str, list[float]]] = {"ours": {}, "nannyml": {}}
    # the same against the noise-free expected value, and the signed error (bias)
    vs_truth: dict[str, dict[str, list[float]]] = {"ours": {}, "nannyml": {}}
    signed: dict[str, dict[str, list[float]]] = {"ours": {}, "nannyml": {}}
    in_band: dict[str, dict[str, int]] = {"ours": {}, "nannyml": {}}
    for day in range(args.days):
        cells = [f"{day:>3} {data['shifts'][day]:>5.2f}"]
        for metric in METRICS:
            real = realised[day][metric]
            mine = ours[day].values[metric]
            errors["ours"].setdefault(metric, []).append(abs(mine - real))
            vs_truth["ours"].setdefault(metric, []).append(abs(mine - expected[day][metric]))
            signed["ours"].setdefault(metric, []).append(mine - real)
            inside = ours[day].lower[metric] <= real <= ours[day].upper[metric]
            in_band["ours"][metric] = in_band["ours"].get(metric, 0) + inside
            theirs = "   n/a"
            if nml is not None:
                value = nml[metric][day]
                errors["nannyml"].setdefault(metric, []).append(abs(value - real))
                vs_truth["nannyml"].setdefault(metric, []).append(
                    abs(value - expected[day][metric])
                )
                signed["nannyml"].setdefault(metric, []).append(value - real)
                inside = nml[metric + "_lower"][day] <= real <= nml[metric + "_upper"][day]
                in_band["nannyml"][metric] = in_band["nannyml"].get(metric, 0) + inside
                theirs = f"{value:>6.3f}"
            cells.append(f"{real:>8.3f} {mine:>6.3f} {theirs}")
        print(" | ".join(cells))

    def mae(tool: str) -> float | None:
        values = [e for metric in METRICS for e in errors[tool].get(metric, [])]
        return float(np.mean(values)) if values else None

    summary: dict[str, Any] = {
        "ours_mae": mae("ours"),
        "nannyml_mae": mae("nannyml"),
        "ours_s": ours_s,
        "nannyml_s": None if nml is None else nml["seconds"],
    }
    for tool in ("ours", "nannyml"):
        for metric in METRICS:
            if errors[tool].get(metric):
                summary[f"{tool}_mae_{metric}"] = float(np.mean(errors[tool][metric]))
                summary[f"{tool}_in_band_{metric}"] = in_band[tool][metric]
                summary[f"{tool}_bias_{metric}"] = float(np.mean(signed[tool][metric]))
                summary[f"{tool}_mae_vs_expected_{metric}"] = float(np.mean(vs_truth[tool][metric]))
        values = [e for metric in METRICS for e in vs_truth[tool].get(metric, [])]
        summary[f"{tool}_mae_vs_expected"] = float(np.mean(values)) if values else None
    summary.update(days=args.days, rows_per_day=args.rows_per_day, shift_day=args.shift_day)
    if nml is not None:
        summary["nannyml_version"] = nml["version"]
    else:
        summary["nannyml_reason"] = nml_reason
    theirs = "n/a" if nml is None else format(summary["nannyml_mae"], ".4f")
    print(
        f"MAE over {args.days} days x {len(METRICS)} metrics: ours {summary['ours_mae']:.4f}, "
        f"NannyML {theirs}"
    )
    floor = [abs(realised[d][m] - expected[d][m]) for d in range(args.days) for m in METRICS]
    summary["label_noise_mae"] = float(np.mean(floor))
    print(
        f"MAE against the noise-free expected metric: ours {summary['ours_mae_vs_expected']:.4f}, "
        f"NannyML {'n/a' if nml is None else format(summary['nannyml_mae_vs_expected'], '.4f')}; "
        "realised vs expected "
        f"(label noise alone) {summary['label_noise_mae']:.4f}"
    )
    print(
        f"fit + estimate, median of {args.repeat}: ours {ours_s:.3f} s, "
        f"NannyML {'n/a' if nml is None else format(nml['seconds'], '.3f') + ' s'}"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
