"""A 30-day backfill of the daily monitoring job, run in parallel on a PostgreSQL deployment.

Everything is real: a Dagster instance on PostgreSQL (this repo's dagster.yaml), the queued run
coordinator drained by `dagster-daemon`, one subprocess per run, the warehouse on PostgreSQL
and a local `mlflow server`. The script trains the demo's match_outcome model (its partition),
lets the demo's serving system write `--rows` scored and settled matches per day into the
model's source tables, launches the backfill of those days with `dagster job backfill`, waits
for it, and reports wall time, the sum of run durations and the largest number of runs that
overlapped in time (the parallelism actually achieved).

Reference, in the same run: the same 30 partitions executed one after another in-process
(`dg.materialize`), i.e. what a single process would do. Ends with one JSON line.

    .venv/bin/python bench/backfill_parallel.py [--days 30] [--rows 500] [--admin-dsn ...]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))

# One way to launch a job backfill, shared with the Celery test and bench.
from mlops_assets_tests.celery_cluster import job_backfill  # noqa: E402


def _create_db(admin_dsn: str, name: str) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_dsn, autocommit=True) as con:
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return admin_dsn.rsplit("/", 1)[0] + "/" + name


def _drop_db(admin_dsn: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass
class Deployment:
    """A PostgreSQL deployment for one benchmark: the Dagster instance (this repo's
    dagster.yaml) and the warehouse in fresh databases, a local `mlflow server`, and the
    environment a run worker or daemon of it needs."""

    root: Path
    env: dict[str, str]
    warehouse_dsn: str
    dagster_db: str


@contextlib.contextmanager
def postgres_deployment(
    admin_dsn: str, prefix: str, extra_env: dict[str, str] | None = None
) -> Iterator[Deployment]:
    """Creates, then drops, the databases; this process's environment is the deployment's
    inside the block and restored after it (another benchmark may run next in it)."""
    saved = dict(os.environ)
    tag = uuid.uuid4().hex[:8]
    dagster_db, warehouse_db = f"{prefix}_dagster_{tag}", f"{prefix}_wh_{tag}"
    root = Path(tempfile.mkdtemp(prefix=f"mlops-{prefix}-"))
    dagster_dsn = _create_db(admin_dsn, dagster_db)
    warehouse_dsn = _create_db(admin_dsn, warehouse_db)
    server = None
    try:
        parts = urlsplit(dagster_dsn)
        dagster_home = root / "dagster_home"
        dagster_home.mkdir()
        shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(dagster_home),
            "DAGSTER_PG_USERNAME": parts.username or "postgres",
            "DAGSTER_PG_PASSWORD": parts.password or "",
            "DAGSTER_PG_HOST": parts.hostname or "127.0.0.1",
            "DAGSTER_PG_PORT": str(parts.port or 5432),
            "DAGSTER_PG_DB": dagster_db,
            "MLOPS_HOME": str(root / "home"),
            "MLOPS_WAREHOUSE_BACKEND": "postgres",
            "MLOPS_WAREHOUSE_DSN": warehouse_dsn,
            **(extra_env or {}),
        }
        from mlops_assets.local_mlflow import LocalMlflowServer

        server = LocalMlflowServer(root / "mlflow")
        server.start()
        env["MLOPS_MLFLOW_TRACKING_URI"] = server.uri
        os.environ.update(env)
        yield Deployment(root, env, warehouse_dsn, dagster_db)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if server is not None:
            server.stop()
        _drop_db(admin_dsn, dagster_db)
        _drop_db(admin_dsn, warehouse_db)


def stop_sensors(deployment: Deployment, names=("inference_log_sensor",)) -> None:
    """Stopped before the daemon starts: the sensor would launch monitoring runs of its own
    for the rows the benchmark served, beside the runs being measured."""
    for name in names:
        subprocess.run(
            [str(BIN / "dagster"), "sensor", "stop", name, "-w", str(REPO / "workspace.yaml")],
            cwd=REPO,
            env=deployment.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )


def start_daemon(deployment: Deployment, name: str = "daemon") -> subprocess.Popen:
    """`dagster-daemon run` on the repo's workspace: drains the run queue, runs backfills."""
    log = open(deployment.root / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the daemon
    return subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env=deployment.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_daemon(daemon: subprocess.Popen) -> None:
    daemon.terminate()
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows", type=int, default=500, help="simulated matches per day")
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--timeout", type=float, default=1200.0)
    args = parser.parse_args()

    with postgres_deployment(args.admin_dsn, "bench") as deployment:
        daemon = None
        try:
            daemon = _run(args, deployment)
        finally:
            if daemon is not None:
                stop_daemon(daemon)


def _run(args, deployment: Deployment) -> subprocess.Popen:
    env, warehouse_dsn = deployment.env, deployment.warehouse_dsn
    import dagster as dg

    from mlops_assets import demo_serving as serving
    from mlops_assets.definitions import defs as load_defs
    from mlops_assets.defs.partitions import MODELS, partition_key
    from mlops_assets.demo import _match_predictor, demo_catalog
    from mlops_assets.lib import demo_data
    from mlops_assets.runtime import build_runtime

    defs = load_defs()
    instance = dg.DagsterInstance.get()
    print(f"instance: {type(instance.run_storage).__name__} on {deployment.dagster_db}")
    today = dt.date.today()
    days = [today - dt.timedelta(days=n) for n in range(args.days, 0, -1)]
    keys = [str(partition_key(d.isoformat(), serving.MATCH)) for d in days]
    runtime = build_runtime()
    serving.load_match_history(runtime.warehouse, end=days[0])
    instance.add_dynamic_partitions(MODELS.name, [serving.MATCH])
    training = [
        defs.get_assets_def(dg.AssetKey(k))
        for k in ("training_dataset", "training_run", "training_baseline")
    ]
    started = time.monotonic()
    trained = dg.materialize(
        training, resources=defs.resources, instance=instance, partition_key=serving.MATCH
    ).output_for_node("training_run")
    print(f"trained {serving.MATCH} in {time.monotonic() - started:.1f}s")
    # The serving system's side: the days' predictions and results in the source tables.
    predictor = _match_predictor(runtime, trained, demo_catalog())
    for d in days:
        traffic = serving.serve_matches(
            runtime.warehouse, predictor, d, drift=demo_data.DriftSchedule(), n_rows=args.rows
        )
        serving.settle_matches(runtime.warehouse, traffic)
    print(f"served and settled {args.rows} matches a day for {len(days)} days")

    stop_sensors(deployment)
    daemon = start_daemon(deployment)
    started = time.monotonic()
    job_backfill(env, keys)
    finished = _wait(instance, len(keys), args.timeout)
    wall_s = time.monotonic() - started
    spans = run_spans(instance, finished)
    failed = [s for s in spans if s[2] != "SUCCESS"]
    busy_s = sum(end - start for start, end, _ in spans if start and end)
    overlap = _max_overlap([(s, e) for s, e, _ in spans if s and e])
    rows = _count(warehouse_dsn, days)

    # Reference, after the backfill so the row count above is the backfill's own: the
    # same partitions one after another in this process.
    production = [
        defs.get_assets_def(dg.AssetKey(k))
        for k in (
            "production_predictions",
            "production_metrics",
            "performance_alerts",
            "feature_drift_report",
        )
    ]
    ref_instance = dg.DagsterInstance.ephemeral()
    ref_instance.add_dynamic_partitions(MODELS.name, [serving.MATCH])
    started = time.monotonic()
    for key in keys:
        dg.materialize(
            production, resources=defs.resources, instance=ref_instance, partition_key=key
        )
    sequential_s = time.monotonic() - started
    print(f"sequential in-process reference: {sequential_s:.1f}s for {len(days)} days")

    print(f"backfill of {len(keys)} partitions: {wall_s:.1f}s wall, {busy_s:.1f}s of runs")
    print(f"max runs in parallel: {overlap}; failed runs: {len(failed)}")
    print(f"production_metrics days written on PostgreSQL: {rows}")
    print(
        json.dumps(
            {
                "days": len(keys),
                "wall_s": round(wall_s, 1),
                "sum_of_run_durations_s": round(busy_s, 1),
                "max_parallel_runs": overlap,
                "failed_runs": len(failed),
                "metric_days_written": rows,
                "sequential_in_process_s": round(sequential_s, 1),
                "backfill_over_sequential": round(wall_s / sequential_s, 2),
            }
        )
    )
    if failed or rows != len(keys):
        stop_daemon(daemon)
        sys.exit(1)
    return daemon


def run_spans(instance, runs) -> list[tuple[float | None, float | None, str]]:
    """(start, end, status) of each run."""
    spans = []
    for record in runs:
        stats = instance.get_run_stats(record.run_id)
        spans.append((stats.start_time, stats.end_time, record.status.value))
    return spans


def _wait(instance, expected: int, timeout: float, runs_filter=None):
    """The runs (of daily_monitoring unless `runs_filter` says otherwise) once `expected` of
    them exist and all have finished."""
    import dagster as dg

    runs_filter = runs_filter or dg.RunsFilter(job_name="daily_monitoring")
    deadline = time.monotonic() + timeout
    done_states = {
        dg.DagsterRunStatus.SUCCESS,
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.CANCELED,
    }
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=runs_filter)
        if len(runs) >= expected and all(r.status in done_states for r in runs):
            return runs
        time.sleep(2)
    raise TimeoutError(f"backfill did not finish within {timeout:.0f}s")


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    current = best = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def _count(dsn: str, days: list[dt.date]) -> int:
    import psycopg

    with psycopg.connect(dsn) as con:
        row = con.execute(
            "SELECT count(DISTINCT metric_date) FROM mlops.production_metrics "
            "WHERE metric_date BETWEEN %s AND %s",
            (days[0], days[-1]),
        ).fetchone()
    return int(row[0])


if __name__ == "__main__":
    main()
