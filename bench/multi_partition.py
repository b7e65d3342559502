"""A backfill that processes many day partitions per run, against one run per partition.

Everything is real, as in bench/backfill_parallel.py (whose deployment this reuses): a Dagster
instance on PostgreSQL with the queued run coordinator drained by `dagster-daemon`, one process
per run, the warehouse on PostgreSQL, a local `mlflow server`. The models are copies of the
demo's match_outcome YAML under other names (MLOPS_MODELS_PATH), all reading the same source
tables, so both ways judge the same served days: `--models` copies are backfilled one run per
partition (`dagster job backfill` of daily_monitoring: Dagster applies no backfill policy to job
backfills), `--models` others by an asset backfill of the production and drift assets, which
follows their backfill policy (MLOPS_BACKFILL_PARTITIONS_PER_RUN, default 31 partitions/run).

Equal treatment: same days, rows, models and daemon settings; each way is submitted with the
daemon stopped and timed from the daemon's start to the end of its last run. Results
(metrics, drift rows, alerts, without bookkeeping columns) are compared model by model.

    .venv/bin/python bench/multi_partition.py [--days 30] [--models 3] [--rows 500]

`measure_multi_partition(...)` returns the figures as a dict (bench/scale_out.py calls it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from backfill_parallel import (  # noqa: E402 - the sibling script, importable once on the path
    REPO,
    _max_overlap,
    _wait,
    job_backfill,
    postgres_deployment,
    run_spans,
    start_daemon,
    stop_daemon,
    stop_sensors,
)

from mlops_assets_tests.celery_cluster import asset_backfill, wait_backfill  # noqa: E402

DEMO_YAML = REPO / "mlops_assets" / "defs" / "models" / "match_outcome" / "defs.yaml"


def _declare(folder: Path, names: list[str]) -> None:
    """The demo's match_outcome declaration again under each name (same sources, same recipe)."""
    text = DEMO_YAML.read_text()
    folder.mkdir(parents=True)
    for name in names:
        (folder / f"{name}.yaml").write_text(text.replace("name: match_outcome", f"name: {name}"))


def measure_multi_partition(
    *,
    days: int = 30,
    models: int = 3,
    rows: int = 500,
    partitions_per_run: str | None = None,
    admin_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres",
    timeout: float = 3600.0,
) -> dict:
    """Backfill `days` x `models` partitions one run per partition and again by the assets'
    backfill policy; the wall times, runs, speedup and whether the results are identical."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="mlops-multi-models-")) / "models"
    single = [f"match_outcome_one_{i}" for i in range(models)]
    multi = [f"match_outcome_many_{i}" for i in range(models)]
    _declare(folder, single + multi)
    extra = {"MLOPS_MODELS_PATH": str(folder)}
    if partitions_per_run is not None:
        extra["MLOPS_BACKFILL_PARTITIONS_PER_RUN"] = partitions_per_run
    with postgres_deployment(admin_dsn, "backfill_multi", extra) as deployment:
        return _measure(deployment, days, rows, single, multi, timeout)


def _measure(deployment, n_days: int, rows: int, single, multi, timeout: float) -> dict:
    import dagster as dg

    from mlops_assets import demo_serving as serving
    from mlops_assets.definitions import defs as load_defs
    from mlops_assets.defs.partitions import MODELS, partition_key
    from mlops_assets.lib import demo_data
    from mlops_assets.platform import catalog_of, default_models
    from mlops_assets.runtime import build_runtime
    from mlops_assets.storage.models import Predictor
    from mlops_assets.storage.monitoring import monitoring_results

    defs = load_defs()
    instance = dg.DagsterInstance.get()
    runtime = build_runtime()
    today = dt.date.today()
    days = [today - dt.timedelta(days=n) for n in range(n_days, 0, -1)]
    serving.load_match_history(runtime.warehouse, end=days[0])
    instance.add_dynamic_partitions(MODELS.name, single + multi)
    training = [
        defs.get_assets_def(dg.AssetKey(k))
        for k in ("training_dataset", "training_run", "training_baseline")
    ]
    started = time.monotonic()
    trained = {
        name: dg.materialize(
            training, resources=defs.resources, instance=instance, partition_key=name
        ).output_for_node("training_run")
        for name in single + multi
    }
    print(f"trained {len(trained)} models in {time.monotonic() - started:.1f}s")
    # The serving system's side: one champion scores the days into the shared source tables.
    champion = trained[single[0]]
    predictor = Predictor(
        catalog_of(default_models()).get(champion.model_name),
        runtime.mlflow_config.artifact_root / champion.local_run_id / "model",
    )
    for d in days:
        traffic = serving.serve_matches(
            runtime.warehouse,
            predictor,
            d,
            drift=demo_data.DriftSchedule(
                feature_drift_from=days[len(days) // 2], concept_drift_from=days[len(days) // 2]
            ),
            n_rows=rows,
        )
        serving.settle_matches(runtime.warehouse, traffic)
    print(f"served and settled {rows} matches a day for {len(days)} days")

    def keys(names: list[str]) -> list[str]:
        return [str(partition_key(d.isoformat(), m)) for m in names for d in days]

    stop_sensors(deployment, ("inference_log_sensor", "asset_check_failure_sensor"))
    # One run per partition.
    job_backfill(deployment.env, keys(single))
    daemon = start_daemon(deployment, "daemon_single")
    started = time.monotonic()
    try:
        single_runs = _wait(instance, len(keys(single)), timeout)
        single_s = time.monotonic() - started
    finally:
        stop_daemon(daemon)

    # The assets' backfill policy: an asset backfill, as the UI's "Materialize" launches it.
    submitted = time.time()
    backfill_id = asset_backfill(instance, defs, keys(multi), title="multi_partition bench")
    daemon = start_daemon(deployment, "daemon_multi")
    started = time.monotonic()
    try:
        multi_runs = wait_backfill(instance, backfill_id, keys(multi), submitted, timeout)
        multi_s = time.monotonic() - started
    finally:
        stop_daemon(daemon)

    identical = True
    for one, many in zip(single, multi, strict=True):
        a = _results(monitoring_results, runtime.warehouse, one, days)
        b = _results(monitoring_results, runtime.warehouse, many, days)
        if a != b or not a["metrics"]:
            identical = False
            for kind in a:
                rows = [(x, y) for x, y in zip(a[kind], b[kind], strict=False) if x != y]
                columns = sorted({c for x, y in rows for c in x if x[c] != y.get(c)})
                print(f"DIFFERENT: {one} vs {many}: {kind} ({len(a[kind])} vs {len(b[kind])}")
                print(f"  rows; columns differing: {columns})")
    figures = {}
    for label, runs, wall in (
        ("one_per_partition", single_runs, single_s),
        ("multi", multi_runs, multi_s),
    ):
        spans = run_spans(instance, runs)
        figures[label] = {
            "runs": len(runs),
            "failed_runs": sum(s[2] != "SUCCESS" for s in spans),
            "wall_s": round(wall, 1),
            "sum_of_run_durations_s": round(sum(e - s for s, e, _ in spans if s and e), 1),
            "max_parallel_runs": _max_overlap([(s, e) for s, e, _ in spans if s and e]),
        }
        print(f"{label}: {figures[label]}")
    return {
        "days": len(days),
        "models": len(single),
        "rows_per_day": rows,
        "partitions": len(keys(single)),
        **{f"{k}_{label}": v for label, f in figures.items() for k, v in f.items()},
        "multi_partition_speedup": round(single_s / multi_s, 2),
        "identical": identical,
    }


# Each model of the two ways was trained in a run of its own: its MLflow run differs.
_TRAINING_RUN_COLUMNS = ("mlflow_run_id", "baseline_mlflow_run_id", "mlflow_experiment_id")


def _results(monitoring_results, warehouse, model: str, days: list[dt.date]) -> dict:
    found = monitoring_results(warehouse, model=model, first=days[0], last=days[-1])
    return {
        kind: [{k: v for k, v in row.items() if k not in _TRAINING_RUN_COLUMNS} for row in rows]
        for kind, rows in found.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--models", type=int, default=3, help="models per way")
    parser.add_argument("--rows", type=int, default=500, help="simulated matches per day")
    parser.add_argument("--partitions-per-run", help="MLOPS_BACKFILL_PARTITIONS_PER_RUN")
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    result = measure_multi_partition(
        days=args.days,
        models=args.models,
        rows=args.rows,
        partitions_per_run=args.partitions_per_run,
        admin_dsn=args.admin_dsn,
        timeout=args.timeout,
    )
    print(json.dumps(result))
    if (
        not result["identical"]
        or result["failed_runs_multi"]
        or result["failed_runs_one_per_partition"]
    ):
        sys.exit(1)


if __name__ == "__main__":
    main()
