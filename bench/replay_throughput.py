"""Replay throughput: buffered metrics into a real `mlflow server`, against raw log_batch.

Usage: python bench/replay_throughput.py [--metrics 100000] [--keys 10] [--rounds 2]
       [--backend embedded|postgres] [--dsn postgresql://...] [--keep]

Starts a fresh local `mlflow server` (sqlite backend) on loopback and a fresh warehouse, warms
the server up with 10,000 untimed metrics, then measures in ABBA order (raw, replay, replay,
raw, ... for `--rounds` pairs), so a server that slows down as its tables grow, or a busy
machine, does not flatter either side:

* raw: `MlflowClient.log_batch`, 1,000 metrics per call, into a new run (Metric objects built
  beforehand, so only the calls are timed);
* replay: a run of `--metrics` points is recorded into the durable buffer (timed separately),
  then `MlflowTracker.replay` copies it into MLflow: finding or creating the run, params,
  tags, every metric through the claim/sent ledger, end status.

`replay_over_raw_log_batch` is replay throughput divided by raw throughput (target >= 0.8).
Replay time is split into time inside MLflow client calls and the rest (ledger transactions,
breaker bookkeeping, object conversion); `replay_over_raw_overhead_only` adds only that rest to
the raw time, which is the ratio without server-side noise. The last line printed is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops_assets.local_mlflow import LocalMlflowServer  # noqa: E402
from mlops_assets.runtime import build_runtime  # noqa: E402
from mlops_assets.storage import tracking  # noqa: E402
from mlops_assets.storage.mlflow_buffer import MetricPoint, MlflowBuffer  # noqa: E402
from mlops_assets.storage.tracking import MlflowTracker  # noqa: E402

T0_MS = 1_700_000_000_000


class TimedClient:
    """Forwards to a real client and adds up the wall time spent inside its calls."""

    def __init__(self, inner: Any):
        self._inner = inner
        self.seconds = 0.0
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return target(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls[name] = self.calls.get(name, 0) + 1

        return timed


def mlflow_client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def make_points(n: int, keys: int) -> list[MetricPoint]:
    return [
        MetricPoint(f"curve_{i % keys}", (i * 7919 % 10007) / 10007, T0_MS + i, i // keys)
        for i in range(n)
    ]


def raw_log_batch(client: Any, experiment_id: str, points: list[MetricPoint]) -> float:
    from mlflow.entities import Metric

    run_id = client.create_run(experiment_id, run_name="raw").info.run_id
    metrics = [Metric(p.key, p.value, p.timestamp_ms, p.step) for p in points]
    start = time.perf_counter()
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000], synchronous=True)
    elapsed = time.perf_counter() - start
    client.set_terminated(run_id)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="raw/replay pairs, ABBA order")
    parser.add_argument("--backend", choices=["embedded", "postgres"], default="embedded")
    parser.add_argument("--dsn", default=None, help="PostgreSQL DSN for --backend postgres")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="replay-bench-"))
    server = LocalMlflowServer(root / "mlflow")
    try:
        started = time.perf_counter()
        server.start(timeout=180)
        print(f"mlflow server up in {time.perf_counter() - started:.1f}s at {server.uri}")
        os.environ["MLOPS_MLFLOW_CONNECTION_TIMEOUT"] = "120"
        runtime = build_runtime(
            home=root / "home",
            tracking_uri=server.uri,
            backend=args.backend,
            dsn=args.dsn,
        )
        timed = TimedClient(mlflow_client(server.uri))
        tracker = MlflowTracker(
            runtime.mlflow_config,
            MlflowBuffer(runtime.warehouse),
            runtime.breaker,
            client_factory=lambda uri: timed,
        )
        points = make_points(args.metrics, args.keys)
        client = mlflow_client(server.uri)
        experiment_id = client.create_experiment("raw-log-batch")
        # The server's first requests are slow (lazy imports, a cold database): warm it up.
        warm = raw_log_batch(client, experiment_id, points[:10_000])
        print(f"warm-up: 10,000 metrics in {warm:.2f}s")

        raw_runs: list[float] = []
        replay_runs: list[float] = []
        replay_client_s = 0.0
        record_runs: list[float] = []
        order = ["raw", "replay", "replay", "raw"] * args.rounds
        for step, kind in enumerate(order[: 2 * args.rounds], start=1):
            if kind == "raw":
                elapsed = raw_log_batch(client, experiment_id, points)
                raw_runs.append(elapsed)
                print(f"{step}. raw log_batch: {elapsed:.2f}s ({args.metrics / elapsed:,.0f}/s)")
                continue
            start = time.perf_counter()
            with tracker.start_run(run_name="replay-bench") as run:
                run.log_params({"metrics": args.metrics, "keys": args.keys})
                run.log_metric_points(points)
            record_runs.append(time.perf_counter() - start)
            in_calls = timed.seconds
            start = time.perf_counter()
            result = tracker.replay(run.local_run_id)
            elapsed = time.perf_counter() - start
            if result.state != "replayed":
                raise SystemExit(f"replay did not complete: {result}")
            stored = len(client.get_metric_history(result.mlflow_run_id, "curve_0"))
            if stored != args.metrics // args.keys:
                raise SystemExit(f"MLflow holds {stored} points of curve_0")
            calls = timed.seconds - in_calls
            replay_client_s += calls
            replay_runs.append(elapsed)
            print(
                f"{step}. replay: {elapsed:.2f}s ({args.metrics / elapsed:,.0f}/s); {calls:.2f}s "
                f"in MLflow calls, {elapsed - calls:.2f}s elsewhere (buffer {record_runs[-1]:.2f}s)"
            )

        raw_s = sum(raw_runs) / len(raw_runs)
        replay_s = sum(replay_runs) / len(replay_runs)
        other_s = replay_s - replay_client_s / len(replay_runs)
        print(
            f"claims of {tracking.CLAIM_METRICS:,} metrics; {runtime.warehouse.describe()}; "
            f"MLflow calls per replay {timed.calls}"
        )
        figures = {
            "bench": "replay_throughput",
            "metrics": args.metrics,
            "rounds": args.rounds,
            "backend": args.backend,
            "claim_metrics": tracking.CLAIM_METRICS,
            "record_s": round(min(record_runs), 3),
            "raw_log_batch_s": round(raw_s, 3),
            "raw_log_batch_runs_s": [round(x, 3) for x in raw_runs],
            "replay_s": round(replay_s, 3),
            "replay_runs_s": [round(x, 3) for x in replay_runs],
            "replay_other_s": round(other_s, 3),
            "raw_metrics_per_s": round(args.metrics / raw_s, 1),
            "replay_metrics_per_s": round(args.metrics / replay_s, 1),
            "replay_over_raw_log_batch": round(raw_s / replay_s, 3),
            # The same MLflow work plus what replay adds: the figure without server noise.
            "replay_over_raw_overhead_only": round(raw_s / (raw_s + other_s), 3),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(figures))
    finally:
        server.stop()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
