"""Scale-out: a backfill on Dagster's Celery executor with two workers against one process.

Everything is real (see mlops_assets_tests/celery_cluster.py): the Dagster instance and the
warehouse on PostgreSQL, a `mlflow server` with its own artifact store, Redis as broker, the
demo's football model declared `--models` times and trained, `--days` of its serving system's
traffic in the source tables. The trained-and-served warehouse is copied twice, so both ways
start from the same rows:

- reference: every day-by-model partition one after another in this warm process
  (`dg.materialize` of the four production and drift assets per partition, events into the
  same instance): no run process to start, no queue, no broker;
- Celery: an asset backfill of the same partitions (what the UI's "Materialize" of a range
  launches) through `dagster-daemon` with MLOPS_EXECUTOR=celery. The assets' backfill policy
  (MLOPS_BACKFILL_PARTITIONS_PER_RUN, default 31) cuts it into ranged runs, one per model with
  all its days (Dagster cuts a day x model range along the dimension with fewer keys), the
  models' runs side by side; each run puts its steps (the four assets and the metrics
  freshness check) on the broker and `--workers` workers with new, separate data directories
  take them.

The workers start before the clock. The backfill is submitted with the daemon stopped and timed
from the daemon's start (its first iteration launches the runs) to the end of the last run, so
the daemon's start and each run's process start are inside the clock. Results (production
metrics, drift rows, alerts, without run ids and timestamps) are compared.

Then the same days x models as one asset backfill under the assets' backfill policy against one
run per partition (`bench/multi_partition.py`, `measure_multi_partition`). Ends with one JSON
line: `celery_speedup`, `multi_partition_speedup`, `identical` (all three ways agree), and each
measurement's details.

    .venv/bin/python bench/scale_out.py [--days 30] [--models 3] [--rows 500] [--workers 2]

`measure_celery(...)` returns the figures as a dict, for a combined scale-out report.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure_celery(
    *,
    days: int = 30,
    models: int = 3,
    rows: int = 500,
    workers: int = 2,
    admin_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres",
    broker: str | None = None,
) -> dict:
    """Celery with `workers` workers against one process in sequence, same partitions and data."""
    from mlops_assets_tests.celery_cluster import (
        ScaleOutDeployment,
        redis_answers,
        result_rows,
    )

    broker = broker or f"redis://127.0.0.1:6379/{random.randint(1, 15)}"
    problem = redis_answers(broker)
    if problem:
        raise SystemExit(problem)
    with ScaleOutDeployment(
        days=days, models=models, rows=rows, admin_dsn=admin_dsn, broker=broker
    ) as deployment:
        reference_dsn = deployment.clone_warehouse("ref")
        celery_dsn = deployment.clone_warehouse("cel")
        load_before = os.getloadavg()[0]
        in_process_s = deployment.run_in_process(reference_dsn)
        celery_s, runs, hosts = deployment.run_on_celery(celery_dsn, workers=workers)
        load_after = os.getloadavg()[0]
        expected, got = result_rows(reference_dsn), result_rows(celery_dsn)
    differing = [table for table in expected if expected[table] != got[table]]
    failed = [r.run_id for r in runs if r.status.value != "SUCCESS"]
    return {
        "days": days,
        "models": models,
        "rows_per_day": rows,
        "workers": workers,
        "partitions": days * models,
        "celery_runs": len(runs),
        "in_process_s": round(in_process_s, 1),
        "celery_s": round(celery_s, 1),
        "celery_speedup": round(in_process_s / celery_s, 2),
        "identical": not differing and not failed,
        "differing_tables": differing,
        "failed_runs": len(failed),
        "steps_per_worker": hosts,
        "result_rows": {table: len(rows) for table, rows in expected.items()},
        "load_avg_1m": [round(load_before, 1), round(load_after, 1)],
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--rows", type=int, default=500, help="served matches per day")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--broker", default=None, help="default: a random Redis db on :6379")
    parser.add_argument(
        "--skip-multi-partition", action="store_true", help="measure the Celery way only"
    )
    args = parser.parse_args()
    result = measure_celery(
        days=args.days,
        models=args.models,
        rows=args.rows,
        workers=args.workers,
        admin_dsn=args.admin_dsn,
        broker=args.broker,
    )
    print(
        f"{result['partitions']} partitions ({args.days} days x {args.models} models): "
        f"one process {result['in_process_s']} s, Celery with {args.workers} workers "
        f"{result['celery_s']} s -> speed-up {result['celery_speedup']}x"
    )
    print(f"steps per worker: {result['steps_per_worker']}; failed runs: {result['failed_runs']}")
    print(
        "results identical: "
        + ("yes" if result["identical"] else f"NO ({', '.join(result['differing_tables'])})")
    )
    print(f"load average before/after: {result['load_avg_1m']} on {result['cpus']} cpus")
    summary = {"celery_speedup": result["celery_speedup"], "identical": result["identical"]}
    if not args.skip_multi_partition:
        sys.path.insert(0, str(REPO / "bench"))
        from multi_partition import measure_multi_partition

        multi = measure_multi_partition(
            days=args.days, models=args.models, rows=args.rows, admin_dsn=args.admin_dsn
        )
        print(
            f"multi-partition backfill: speed-up {multi['multi_partition_speedup']}x, "
            f"results identical: {'yes' if multi['identical'] else 'NO'}"
        )
        summary["multi_partition_speedup"] = multi["multi_partition_speedup"]
        summary["identical"] = result["identical"] and multi["identical"]
        summary["multi_partition"] = multi
    print(json.dumps({**summary, "celery": result}))
    if not summary["identical"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
