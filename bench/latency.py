"""From a batch landing in a model's source to metrics, drift rows and a delivered alert.

Usage: python bench/latency.py [--batches 5] [--rows 1000] [--jitter 30] [--timeout 300] [--keep]

Everything runs as deployed, with the sensors' default intervals (inference_log_sensor 10 s;
the monitoring run posts the alerts it raises, and alert_notification_sensor, every 30 s, is
the catch-all): a real `dagster-daemon run` on a Dagster instance in a temp
DAGSTER_HOME (SQLite storage, queued coordinator, default run launcher: one subprocess per
run), code location `-m mlops_assets.definitions` with MLOPS_MODELS_PATH naming one model YAML
(the demo's binary model, trained here from a table; its predictions are a Parquet folder that
carries the target), the embedded warehouse, MLflow on a SQLite file, and the alert webhook a
receiver thread in this process on 127.0.0.1 that timestamps each POST.

The model is trained once in-process (`dg.materialize`) before the daemon starts. Then one
warm-up batch (reported, not counted: it pays for the code location's first load) and
`--batches` measured ones. Each measured batch is a fresh day of traffic scored by the model,
with feature drift and shuffled labels (so the day is degraded), written as one Parquet file
(renamed into place, so the sensor never sees half a file); the alert it must deliver is an
"alert opened" naming the model and the day. An open alert is not re-sent for each further bad
day (only opened, escalated and resolved are delivered), so before each measured batch a good
day lands and closes the alerts (the bench's YAML sets `resolve_after_days: 1`); its
"alert resolved" latency is printed too but not counted. Before each measured batch the script
sleeps a random 0..`--jitter` s so batches land at random phases of the sensors' ticks.

Latency of a batch = the later of (the alert POST arrives) and (the day's monitoring run has
finished, so its metrics and drift rows are written); both rows are checked. Each is split
into: pick-up (batch written -> run created by the sensor), launch (created -> started: queue
and run process start), run, and alert (run end -> POST; negative when the alert went out
before the run's last step finished). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))

MODEL = "latency_model"
MODEL_YAML = """\
type: mlops_assets.MonitoredModel
attributes:
  name: {name}
  task: binary
  description: The demo's match model, fed by Parquet batches that carry their outcome
  model:
    train:
      source: {{table: demo.match_history}}
      estimator: lightgbm
      params: {{n_estimators: 200, learning_rate: 0.05, num_leaves: 15, min_child_samples: 40}}
      order_by: match_date
  columns:
    id: match_id
    timestamp: match_date
    target: outcome
    probability: p_home_win
    features:
      home_elo: numeric
      away_elo: numeric
      elo_diff: numeric
      home_form: numeric
      away_form: numeric
      home_goals_avg: numeric
      away_goals_avg: numeric
      rest_days_diff: numeric
      odds_home: numeric
      league: categorical
      weather: categorical
      kickoff_slot: categorical
  production:
    predictions: {{parquet: {inbox}}}
  # One good day closes an alert, so every degraded batch opens (and delivers) a new one.
  monitoring: {{resolve_after_days: 1}}
"""
DAGSTER_YAML = """\
storage:
  sqlite:
    base_dir: {base}
run_launcher:
  module: dagster
  class: DefaultRunLauncher
# The same queue and sensor settings as the repository's production dagster.yaml.
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 4
    dequeue_interval_seconds: 1
    dequeue_use_threads: true
    dequeue_num_workers: 4
sensors:
  use_threads: true
  num_workers: 4
telemetry:
  enabled: false
"""


class Receiver:
    """The alert webhook: records (arrival time, body) of every POST."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, str]] = []
        self.keys: list[str] = []  # Idempotency-Key of every POST, to count duplicates
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.end_headers()
                with receiver._changed:
                    receiver.posts.append((arrived, body.decode("utf-8", "replace")))
                    receiver.keys.append(self.headers.get("Idempotency-Key") or "")
                    receiver._changed.notify_all()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, needles: tuple[str, ...], since: float, timeout: float) -> float:
        """Arrival time of the first POST after `since` whose body holds every needle."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for arrived, body in self.posts:
                    if arrived >= since and all(n in body for n in needles):
                        return arrived
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no alert naming {needles} within {timeout:.0f} s")
                self._changed.wait(min(left, 1.0))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _write_batch(inbox: Path, predictor, day: dt.date, rows: int, *, degraded: bool) -> None:
    import numpy as np

    from mlops_assets.lib import demo_data

    drift = demo_data.DriftSchedule(feature_drift_from=day if degraded else None)
    traffic = demo_data.production_day(day=day, n_rows=rows, seed=11, drift=drift)
    scores = predictor.score(traffic)
    outcome = traffic[demo_data.TARGET].to_numpy()
    if degraded:
        # Labels that no longer follow the predictions: a model gone bad.
        outcome = np.random.default_rng(day.toordinal()).permutation(outcome)
    batch = traffic[["match_id", "match_date", *demo_data.FEATURES]].assign(
        p_home_win=scores.proba, outcome=outcome
    )
    # Written under a name the source skips, then renamed: the sensor sees whole files only.
    partial = inbox / f".{day:%Y%m%d}.parquet.partial"
    batch.to_parquet(partial, index=False)
    os.replace(partial, inbox / f"batch-{day:%Y%m%d}.parquet")


def _wait_run(instance, day: dt.date, timeout: float):
    import dagster as dg

    deadline = time.monotonic() + timeout
    done = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    while time.monotonic() < deadline:
        records = instance.get_run_records(
            filters=dg.RunsFilter(
                tags={"dagster/partition/date": day.isoformat(), "dagster/partition/model": MODEL}
            )
        )
        finished = [r for r in records if r.dagster_run.status in done]
        if finished:
            record = min(finished, key=lambda r: r.create_timestamp)
            if record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
                raise RuntimeError(f"monitoring run {record.dagster_run.run_id} for {day} failed")
            return record
        time.sleep(0.5)
    raise TimeoutError(f"no finished monitoring run for {day} within {timeout:.0f} s")


def _rows(wh, day: dt.date) -> tuple[int, int]:
    params = {"m": MODEL, "d": day}
    metrics = wh.query(
        "SELECT count(*) AS n FROM mlops.production_metrics "
        "WHERE model_name = :m AND metric_date = :d",
        params,
    )[0]["n"]
    drift = wh.query(
        "SELECT count(*) AS n FROM mlops.ml_feature_drift_detection "
        "WHERE model_name = :m AND partition_date = :d",
        params,
    )[0]["n"]
    return int(metrics), int(drift)


def _measure(
    instance, wh, receiver, inbox, predictor, day, rows, timeout, *, degraded: bool
) -> dict[str, float]:
    t0 = time.time()
    _write_batch(inbox, predictor, day, rows, degraded=degraded)
    # A degraded day opens alerts (last seen: that day); a good day after one resolves them.
    needles = (MODEL, "alert opened", day.isoformat()) if degraded else (MODEL, "alert resolved")
    arrived = receiver.wait_for(needles, since=t0, timeout=timeout)
    record = _wait_run(instance, day, timeout=max(5.0, timeout - (time.time() - t0)))
    n_metrics, n_drift = _rows(wh, day)
    if not n_metrics or not n_drift:
        raise RuntimeError(f"{day}: {n_metrics} metric rows, {n_drift} drift rows after the run")
    created = record.create_timestamp.timestamp()
    started, ended = record.start_time, record.end_time
    steps = instance.get_run_step_stats(record.dagster_run.run_id)
    return {
        **{f"step_{s.step_key}_s": s.end_time - s.start_time for s in steps},
        "latency_s": max(arrived, ended) - t0,
        "pickup_s": created - t0,
        "launch_s": started - created,
        "run_s": ended - started,
        "alert_s": arrived - ended,
        "metric_rows": n_metrics,
        "drift_rows": n_drift,
    }


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _stop(daemon: subprocess.Popen) -> None:
    # The daemon's code server and run workers share its process group.
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(daemon.pid, sig)
        except ProcessLookupError:
            return
        try:
            daemon.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1000, help="predictions per batch")
    parser.add_argument("--jitter", type=float, default=30.0, help="max random wait (s)")
    parser.add_argument("--timeout", type=float, default=300.0, help="per batch (s)")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mlops-latency-"))
    home, dagster_home, models, inbox = (
        root / "home",
        root / "dagster",
        root / "models",
        root / "inbox",
    )
    for folder in (home / "mlflow", dagster_home, models, inbox):
        folder.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML.format(base=dagster_home / "storage"))
    (models / f"{MODEL}.yaml").write_text(MODEL_YAML.format(name=MODEL, inbox=inbox))
    receiver = Receiver()
    env = {
        "DAGSTER_HOME": str(dagster_home),
        "MLOPS_HOME": str(home),
        "MLOPS_MODELS_PATH": str(models),
        "MLOPS_ALERT_WEBHOOK_URL": receiver.url,
        "MLOPS_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        "MLOPS_WAREHOUSE_BACKEND": "embedded",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    os.environ.update(env)
    daemon = None
    try:
        import dagster as dg

        from mlops_assets import demo_serving
        from mlops_assets.definitions import defs as load_defs
        from mlops_assets.defs.alerts.sensors import NOTIFY_INTERVAL_SECONDS
        from mlops_assets.defs.production.sensors import PICKUP_INTERVAL_SECONDS
        from mlops_assets.demo import _match_predictor
        from mlops_assets.platform import catalog_of, default_models
        from mlops_assets.storage.warehouse import DuckDBWarehouse

        defs = load_defs()
        catalog = catalog_of(default_models())
        instance = dg.DagsterInstance.get()
        mlflow_resource = defs.resources["mlflow"]
        runtime = mlflow_resource.runtime()
        today = dt.date.today()
        # Warm-up (degraded), then per measured batch a good day and a degraded day.
        days = [today - dt.timedelta(days=n) for n in range(2 * args.batches + 1, 0, -1)]
        demo_serving.load_match_history(runtime.warehouse, end=days[0])
        instance.add_dynamic_partitions("models", [MODEL])
        started = time.monotonic()
        quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
        outcome = dg.materialize(
            [
                defs.get_assets_def(dg.AssetKey(k))
                for k in ("training_dataset", "training_run", "training_baseline")
            ],
            resources=defs.resources,
            instance=instance,
            partition_key=MODEL,
            run_config=quiet,
        )
        predictor = _match_predictor(runtime, outcome.output_for_node("training_run"), catalog)
        print(f"trained {MODEL} in {time.monotonic() - started:.1f} s; data in {root}")

        log = open(root / "daemon.log", "wb")  # noqa: SIM115 - lives as long as the daemon
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-m", "mlops_assets.definitions"],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wh = DuckDBWarehouse(home / "warehouse.duckdb", read_only=True)
        rng = random.Random(20261129)

        def measure(day: dt.date, *, degraded: bool) -> dict[str, float]:
            return _measure(
                instance,
                wh,
                receiver,
                inbox,
                predictor,
                day,
                args.rows,
                args.timeout,
                degraded=degraded,
            )

        # Warm-up: the first tick also loads the code location; not counted.
        warm = measure(days[0], degraded=True)
        print(f"warm-up {days[0]} (degraded): {_line(warm)}")
        results, recoveries = [], []
        for number in range(1, args.batches + 1):
            good, bad = days[2 * number - 1], days[2 * number]
            # Recovery: a good day closes the alerts (not counted in p50/p95; its own figures
            # are printed and kept in the JSON line).
            recovery = measure(good, degraded=False)
            recoveries.append(recovery)
            print(f"recovery {number} {good} (good):   {_line(recovery)}")
            time.sleep(rng.uniform(0.0, args.jitter))
            result = measure(bad, degraded=True)
            results.append(result)
            print(f"batch {number}    {bad} (degraded): {_line(result)}")
        latencies = [r["latency_s"] for r in results]
        p50, p95 = _percentile(latencies, 0.5), _percentile(latencies, 0.95)
        print(f"latency over {len(latencies)} batches: p50 {p50:.1f} s, p95 {p95:.1f} s")
        # The run and the alert sensor may both reach an event; each must be posted once.
        duplicates = len(receiver.keys) - len(set(receiver.keys))
        print(f"{len(receiver.keys)} alert POSTs, {duplicates} duplicate(s) of one event")
        parts = {
            k: statistics.median(r[k] for r in results)
            for k in ("pickup_s", "launch_s", "run_s", "alert_s")
        }
        print(
            "median split: "
            + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in parts.items())
        )
        step_keys = sorted({k for r in results for k in r if k.startswith("step_")})
        print(
            "median step time in the run: "
            + ", ".join(
                f"{k.removeprefix('step_').removesuffix('_s')} "
                f"{statistics.median(r[k] for r in results if k in r):.1f} s"
                for k in step_keys
            )
        )
        print(
            json.dumps(
                {
                    "p50_s": round(p50, 1),
                    "p95_s": round(p95, 1),
                    "n": len(latencies),
                    "max_s": round(max(latencies), 1),
                    **{f"median_{k}": round(v, 1) for k, v in parts.items()},
                    "warmup_s": round(warm["latency_s"], 1),
                    "recovery_p50_s": round(
                        _percentile([r["latency_s"] for r in recoveries], 0.5), 1
                    ),
                    "recovery_max_s": round(max(r["latency_s"] for r in recoveries), 1),
                    "alert_posts": len(receiver.keys),
                    "duplicate_posts": duplicates,
                    "rows_per_batch": args.rows,
                    "sensor_interval_s": PICKUP_INTERVAL_SECONDS,
                    "alert_interval_s": NOTIFY_INTERVAL_SECONDS,
                    "load_1min": round(os.getloadavg()[0], 2),
                    "cpus": os.cpu_count(),
                }
            )
        )
    finally:
        if daemon is not None:
            _stop(daemon)
        receiver.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def _line(r: dict[str, float]) -> str:
    return (
        f"{r['latency_s']:5.1f} s (pick-up {r['pickup_s']:.1f}, launch {r['launch_s']:.1f}, "
        f"run {r['run_s']:.1f}, alert {r['alert_s']:+.1f}; {r['metric_rows']} metric rows, "
        f"{r['drift_rows']} drift rows)"
    )


if __name__ == "__main__":
    main()
