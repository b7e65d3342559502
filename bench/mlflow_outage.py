"""Wall time of the training_run asset with MLflow up, stopped, and black-holed, in one run.

Usage: python bench/mlflow_outage.py [--repeat 3] [--timeout 5] [--threshold 2]
       [--rows 3000] [--estimators 50] [--keep]

Starts a real `mlflow server` (sqlite backend) and a loopback listener that accepts connections
and never answers. The demo's trained-here model (match_outcome, `--estimators` trees) reads
`--rows` matches of history from its table; `training_dataset` is materialized once for its
partition; then `training_run` alone is materialized (in process, `dg.materialize`, resources
from the code location) in three phases,
each with its own data directory and therefore its own circuit breaker:

* up: the server answers; the run is replayed into MLflow inside the asset (model upload and
  registration included);
* down: the server is stopped (connection refused);
* black-holed: the tracking URI points at the silent listener; the first call waits for the
  configured timeout (`--timeout`, MLOPS_MLFLOW_CONNECTION_TIMEOUT).

In the two outage phases the first `--threshold` materializations find the breaker closed and
each spends one failed call; after that the breaker is open and the asset never touches the
network. `down_over_up` and `blackhole_over_up` compare the median with the breaker open to
the median with MLflow up (target for the black hole: <= 1.2). The first, breaker-still-closed
time is reported beside its timeout. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402

from mlops_assets import demo_serving as serving  # noqa: E402
from mlops_assets.definitions import defs as load_defs  # noqa: E402
from mlops_assets.defs.partitions import MODELS  # noqa: E402
from mlops_assets.defs.training import assets as training_assets  # noqa: E402
from mlops_assets.demo import demo_catalog  # noqa: E402
from mlops_assets.lib.contract import ModelCatalog  # noqa: E402
from mlops_assets.local_mlflow import LocalMlflowServer  # noqa: E402
from mlops_assets.runtime import build_runtime  # noqa: E402

ASSETS = [training_assets.training_dataset, training_assets.training_run]
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
MODEL = serving.MATCH


def bench_resources(estimators: int) -> dict[str, Any]:
    """The code location's resources, with the demo model's recipe at `estimators` trees."""
    contract = demo_catalog().get(MODEL)
    recipe = contract.model.train
    assert recipe is not None
    recipe = recipe.model_copy(update={"params": {**recipe.params, "n_estimators": estimators}})
    contract = contract.model_copy(
        update={"model": contract.model.model_copy(update={"train": recipe})}, deep=True
    )
    return {**(load_defs().resources or {}), "models": ModelCatalog([contract])}


class BlackHole:
    """Accepts every connection on loopback and never reads or answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self.sock.close()


def set_phase(home: Path, tracking_uri: str) -> None:
    os.environ["MLOPS_HOME"] = str(home)
    os.environ["MLOPS_MLFLOW_TRACKING_URI"] = tracking_uri


def timed_training_run(instance: dg.DagsterInstance, estimators: int) -> tuple[float, Any]:
    resources = bench_resources(estimators)
    start = time.perf_counter()
    result = dg.materialize(
        ASSETS,
        selection=["training_run"],
        resources=resources,
        run_config=QUIET,
        instance=instance,
        partition_key=MODEL,
    )
    elapsed = time.perf_counter() - start
    return elapsed, result.output_for_node("training_run")


def breaker_state() -> str:
    return build_runtime().breaker.current_state().state


def outage_phase(
    name: str, instance: dg.DagsterInstance, args: argparse.Namespace
) -> dict[str, Any]:
    """Materialize until the breaker has opened, then `repeat` more with it open."""
    closed: list[float] = []
    opened: list[float] = []
    while breaker_state() != "open":
        if len(closed) > args.threshold + 2:
            raise SystemExit(f"{name}: breaker still closed after {len(closed)} runs")
        elapsed, output = timed_training_run(instance, args.estimators)
        if output.tracking_status != "PENDING":
            raise SystemExit(f"{name}: expected a pending run, got {output.tracking_status}")
        closed.append(elapsed)
        print(f"{name}: breaker closed, training_run {elapsed:.2f}s")
    for _ in range(args.repeat):
        elapsed, output = timed_training_run(instance, args.estimators)
        if output.tracking_status != "PENDING" or breaker_state() != "open":
            raise SystemExit(f"{name}: expected a pending run with the breaker open")
        opened.append(elapsed)
        print(f"{name}: breaker open, training_run {elapsed:.2f}s")
    return {"closed": closed, "open": opened}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=5.0, help="MLflow request timeout, s")
    parser.add_argument("--threshold", type=int, default=2, help="breaker failure threshold")
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--estimators", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="outage-bench-"))
    for key in [k for k in os.environ if k.startswith("MLOPS_")]:
        del os.environ[key]
    os.environ["MLOPS_MLFLOW_CONNECTION_TIMEOUT"] = str(args.timeout)
    os.environ["MLOPS_MLFLOW_CIRCUIT_BREAKER_FAILURE_THRESHOLD"] = str(args.threshold)
    os.environ["MLOPS_MLFLOW_CIRCUIT_BREAKER_RECOVERY_TIMEOUT"] = "300"
    server = LocalMlflowServer(root / "mlflow")
    hole = BlackHole()
    try:
        started = time.perf_counter()
        server.start(timeout=180)
        print(f"mlflow server up in {time.perf_counter() - started:.1f}s at {server.uri}")
        with dg.instance_for_test() as instance:
            set_phase(root / "up", server.uri)
            instance.add_dynamic_partitions(MODELS.name, [MODEL])
            serving.load_match_history(
                build_runtime().warehouse, end=dt.date.today(), n_rows=args.rows
            )
            dg.materialize(
                ASSETS,
                selection=["training_dataset"],
                resources=bench_resources(args.estimators),
                run_config=QUIET,
                instance=instance,
                partition_key=MODEL,
            )
            # One untimed run warms the server and this process (imports, first requests).
            warm, _ = timed_training_run(instance, args.estimators)
            print(f"up: warm-up training_run {warm:.2f}s")
            up: list[float] = []
            for _ in range(args.repeat):
                elapsed, output = timed_training_run(instance, args.estimators)
                if output.tracking_status != "TRACKED":
                    raise SystemExit(f"up: expected a tracked run, got {output.tracking_status}")
                up.append(elapsed)
                print(f"up: training_run {elapsed:.2f}s (replayed into MLflow in the asset)")

            server.stop()
            set_phase(root / "down", server.uri)
            down = outage_phase("down", instance, args)

            set_phase(root / "blackhole", f"http://127.0.0.1:{hole.port}")
            accepted_before = hole.accepted
            blackhole = outage_phase("blackhole", instance, args)
            network_calls = hole.accepted - accepted_before
            if network_calls != args.threshold:
                raise SystemExit(f"blackhole: {network_calls} connections, not {args.threshold}")

        up_s = statistics.median(up)
        down_open = statistics.median(down["open"])
        hole_open = statistics.median(blackhole["open"])
        figures = {
            "bench": "mlflow_outage",
            "repeat": args.repeat,
            "rows": args.rows,
            "estimators": args.estimators,
            "timeout_s": args.timeout,
            "failure_threshold": args.threshold,
            "up_s": round(up_s, 3),
            "up_runs_s": [round(x, 3) for x in up],
            "down_first_s": round(down["closed"][0], 3),
            "down_open_s": round(down_open, 3),
            "blackhole_first_s": round(blackhole["closed"][0], 3),
            "blackhole_closed_runs_s": [round(x, 3) for x in blackhole["closed"]],
            "blackhole_open_s": round(hole_open, 3),
            "blackhole_connections": network_calls,
            "down_over_up": round(down_open / up_s, 3),
            "blackhole_over_up": round(hole_open / up_s, 3),
            "blackhole_first_over_up": round(blackhole["closed"][0] / up_s, 3),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(figures))
    finally:
        hole.close()
        server.stop()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
