"""Celery workers standing in for other hosts, for tests, benches and `make celery-workers`.

`CeleryWorkers` starts N `celery -A mlops_assets.celery_app worker` processes, each with its own
MLOPS_HOME and DAGSTER_HOME (two data directories = two hosts without a shared disk), waits
until every one answers a ping on the broker, and stops them with a warm shutdown (SIGTERM,
then SIGKILL of the worker's process group after a grace period).

`ScaleOutDeployment` is the rest of a multi-host set-up on this machine: a Dagster instance
and warehouses on PostgreSQL, a real `mlflow server` with its own artifact store, the demo's
football model declared N times (MLOPS_MODELS_PATH), trained, and its serving system's days in
the source tables. It runs the same partitions one after another in one process, or as an
asset backfill of the production and drift assets through `dagster-daemon` with
MLOPS_EXECUTOR=celery (ranged runs under the assets' backfill policy, their steps on the
workers), and reads back the rows either way wrote.

    .venv/bin/python -m mlops_assets_tests.celery_cluster [--workers 2]   # until Ctrl-C
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKSPACE = str(REPO / "workspace.yaml")
SENSOR = "inference_log_sensor"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
# Per-worker and per-run settings; everything else of the caller's environment is shared.
_PER_HOST = ("MLOPS_HOME", "DAGSTER_HOME")


def job_backfill(env: dict[str, str], keys: list[str]) -> None:
    """`dagster job backfill` of daily_monitoring: one run per partition, whatever the assets'
    backfill policy (Dagster applies policies to asset backfills only)."""
    subprocess.run(
        [
            str(BIN / "dagster"),
            "job",
            "backfill",
            "-w",
            str(REPO / "workspace.yaml"),
            "-j",
            "daily_monitoring",
            "--partitions",
            ",".join(keys),
            "--noprompt",
        ],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


PRODUCTION_ASSETS = (
    "production_predictions",
    "production_metrics",
    "performance_alerts",
    "feature_drift_report",
)


def asset_backfill(instance, defs, keys: list[str], title: str = "scale-out") -> str:
    """What the UI's launch of a partitioned asset backfill does (dagster has no public Python
    call for it): a backfill of the production and drift assets for `keys`, which the daemon
    cuts into runs by the assets' backfill policy. Returns its id."""
    import dagster as dg
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=defs.resolve_asset_graph(),
        partition_names=keys,
        asset_selection=[dg.AssetKey(k) for k in PRODUCTION_ASSETS],
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def wait_backfill(instance, backfill_id: str, keys: list[str], since: float, timeout: float):
    """The backfill's runs once each of them has finished and every asset has every partition
    of `keys` materialized after `since` (epoch seconds), or as soon as one run failed. The
    daemon marks the backfill itself complete on a later iteration (every 30 s): bookkeeping,
    not work, so not waited for."""
    import dagster as dg

    deadline = time.monotonic() + timeout
    finished = {
        dg.DagsterRunStatus.SUCCESS,
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.CANCELED,
    }
    runs_filter = dg.RunsFilter(tags={"dagster/backfill": backfill_id})
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=runs_filter)
        if runs and all(r.status in finished for r in runs):
            if any(r.status != dg.DagsterRunStatus.SUCCESS for r in runs):
                return runs
            if all(
                _materialized_since(instance, asset, keys, since) >= set(keys)
                for asset in PRODUCTION_ASSETS
            ):
                return runs
        time.sleep(1)
    raise TimeoutError(f"backfill {backfill_id} did not finish within {timeout:.0f}s")


def _materialized_since(instance, asset: str, keys: list[str], since: float) -> set[str]:
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset), asset_partitions=keys, after_timestamp=since
        ),
        limit=4 * len(keys),
    ).records
    return {r.partition_key for r in records}


class ClusterError(RuntimeError):
    """A worker, the broker or a server did not come up; the message says which and where."""


def redis_answers(broker: str, timeout: float = 2.0) -> str | None:
    """None when the broker's Redis answers PING, else why not."""
    try:
        import redis

        redis.Redis.from_url(broker, socket_connect_timeout=timeout).ping()
        return None
    except Exception as error:  # noqa: BLE001 - any failure means "no broker"
        return f"Redis broker not reachable at {broker}: {error}"


class CeleryWorkers:
    """N Celery worker processes with separate data directories; a context manager."""

    def __init__(
        self,
        root: Path,
        *,
        workers: int = 2,
        broker: str = DEFAULT_BROKER,
        env: Mapping[str, str] | None = None,
        concurrency: int = 1,
        dagster_yaml: Path | None = None,
    ):
        self.root = Path(root)
        self.n = workers
        self.broker = broker
        self.env = dict(os.environ if env is None else env)
        self.concurrency = concurrency
        self.dagster_yaml = dagster_yaml
        self.tag = uuid.uuid4().hex[:6]
        self.procs: list[subprocess.Popen] = []

    @property
    def names(self) -> list[str]:
        return [f"mlops-w{i + 1}-{self.tag}@{os.uname().nodename}" for i in range(self.n)]

    def home(self, i: int) -> Path:
        return self.root / f"worker{i + 1}" / "home"

    def start(self, timeout: float = 120.0) -> None:
        problem = redis_answers(self.broker)
        if problem:
            raise ClusterError(problem)
        for i, name in enumerate(self.names):
            host = self.root / f"worker{i + 1}"
            dagster_home = host / "dagster_home"
            dagster_home.mkdir(parents=True, exist_ok=True)
            self.home(i).mkdir(parents=True, exist_ok=True)
            if self.dagster_yaml:
                shutil.copy(self.dagster_yaml, dagster_home / "dagster.yaml")
            env = {
                **self.env,
                "MLOPS_HOME": str(self.home(i)),
                "DAGSTER_HOME": str(dagster_home),
                "MLOPS_EXECUTOR": "celery",
                "MLOPS_CELERY_BROKER": self.broker,
            }
            log = open(host / "worker.log", "ab")  # noqa: SIM115 - closed with the worker
            self.procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "python"),
                        "-m",
                        "celery",
                        "-A",
                        "mlops_assets.celery_app",
                        "worker",
                        "-Q",
                        "dagster",
                        "-n",
                        name,
                        "--pool",
                        "solo" if self.concurrency == 1 else "prefork",
                        "--concurrency",
                        str(self.concurrency),
                        "--prefetch-multiplier",
                        "1",
                        "--loglevel",
                        "INFO",
                        "--without-gossip",
                        "--without-mingle",
                        # Imported at start (before the ping answers), not by the first step.
                        "--include",
                        "mlops_assets.definitions",
                    ],
                    cwd=host,  # not the repo: nothing may come from a shared working directory
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        from dagster_celery.make_app import make_app

        from mlops_assets.defs.executor import celery_app_args
        from mlops_assets.settings import ExecutorSettings

        app = make_app(celery_app_args(ExecutorSettings(celery_broker=self.broker)))
        deadline = time.monotonic() + timeout
        waiting = set(self.names)
        while time.monotonic() < deadline:
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    self.stop()
                    raise ClusterError(
                        f"celery worker {i + 1} exited with {proc.returncode}; see "
                        f"{self.root / f'worker{i + 1}' / 'worker.log'}"
                    )
            for reply in app.control.ping(destination=sorted(waiting), timeout=1.0) or []:
                waiting -= set(reply)
            if not waiting:
                return
            time.sleep(0.5)
        self.stop()
        raise ClusterError(f"celery workers {sorted(waiting)} did not answer within {timeout}s")

    def stop(self, grace: float = 30.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # warm shutdown: the current step finishes
        for proc in self.procs:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        self.procs = []

    def __enter__(self) -> CeleryWorkers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------ a whole deployment


def _create_db(admin_dsn: str, name: str, template: str | None = None) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_dsn, autocommit=True) as con:
        if template:
            # A template must have no other session: the warehouse's are short, but be sure.
            con.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (template,),
            )
            con.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        else:
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return admin_dsn.rsplit("/", 1)[0] + "/" + name


def _drop_db(admin_dsn: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def instance_config(per_model_order: bool = True) -> dict:
    """The repo's dagster.yaml; with `per_model_order`, one run per model at a time, so a
    model's days are judged in date order (the alert state machine steps days in order)."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    if per_model_order:
        limits = config["run_coordinator"]["config"]["tag_concurrency_limits"]
        per_model = {"applyLimitPerUniqueValue": True}
        if not any(limit["key"] == "dagster/partition/model" for limit in limits):
            limits.append({"key": "dagster/partition/model", "value": per_model, "limit": 1})
        # Models run side by side; the backfill limit of the shipped file would cap that at 2.
        for limit in limits:
            if limit["key"] == "dagster/backfill":
                limit["limit"] = 4
    return config


# Columns that name a run, a time or an id the database hands out: not results.
VOLATILE = {"computed_at", "alert_id", "opened_at", "updated_at", "resolved_at", "acknowledged_at"}
RESULT_TABLES = {
    "production_metrics": ("mlops.production_metrics", ("model_name", "metric_date", "metric")),
    "drift": ("mlops.ml_feature_drift_detection", ("model_name", "partition_date", "feature")),
    "alerts": ("mlops.ml_performance_alerts", ("model_name", "kind", "metric", "first_seen")),
}


def result_rows(dsn: str) -> dict[str, list[dict]]:
    """Every row of the result tables, sorted, without run ids, timestamps and serial ids."""
    import psycopg
    from psycopg.rows import dict_row

    out: dict[str, list[dict]] = {}
    with psycopg.connect(dsn, row_factory=dict_row) as con:
        for label, (table, order) in RESULT_TABLES.items():
            rows = con.execute(
                f"SELECT * FROM {table} ORDER BY {', '.join(order)}"  # noqa: S608 - constants
            ).fetchall()
            out[label] = [
                {k: v for k, v in r.items() if k not in VOLATILE and not k.endswith("_at")}
                for r in rows
            ]
    return out


class ScaleOutDeployment:
    """PostgreSQL (Dagster instance + warehouses), `mlflow server`, the demo's model declared
    `models` times, trained, with `days` of served and settled traffic. A context manager."""

    def __init__(
        self,
        *,
        days: int,
        models: int,
        rows: int = 500,
        admin_dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres",
        broker: str = DEFAULT_BROKER,
        root: Path | None = None,
        drift_from_day: int | None = 2,
    ):
        self.n_days, self.n_models, self.rows = days, models, rows
        self.admin_dsn, self.broker = admin_dsn, broker
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="celery-scaleout-"))
        self.drift_from_day = drift_from_day
        self.tag = uuid.uuid4().hex[:8]
        self.dbs: list[str] = []
        self.stack = ExitStack()
        self.env: dict[str, str] = {}
        self.model_names = [
            "match_outcome" if i == 0 else f"match_outcome_{i + 1}" for i in range(models)
        ]
        self.days: list[dt.date] = []
        self._sensor_stopped = False

    # -------------------------------------------------------------- set-up

    def _db(self, suffix: str, template: str | None = None) -> str:
        name = f"celery_{suffix}_{self.tag}"
        dsn = _create_db(self.admin_dsn, name, template)
        self.dbs.append(name)
        return dsn

    def __enter__(self) -> ScaleOutDeployment:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        from mlops_assets.local_mlflow import LocalMlflowServer

        dagster_dsn = self._db("dagster")
        self.warehouse_dsn = self._db("wh")
        parts = urlsplit(dagster_dsn)
        self.dagster_yaml = self.root / "dagster.yaml"
        self.dagster_yaml.write_text(yaml.safe_dump(instance_config()))
        dagster_home = self.root / "dagster_home"
        dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.dagster_yaml, dagster_home / "dagster.yaml")
        models_dir = self.root / "models"
        models_dir.mkdir(exist_ok=True)
        declared = yaml.safe_load(
            (REPO / "mlops_assets/defs/models/match_outcome/defs.yaml").read_text()
        )
        for name in self.model_names:
            declared["attributes"]["name"] = name
            (models_dir / f"{name}.yaml").write_text(yaml.safe_dump(declared, sort_keys=False))
        server = LocalMlflowServer(self.root / "mlflow")  # its own proxied artifact store
        server.start()
        self.stack.callback(server.stop)
        self.env = {
            "DAGSTER_HOME": str(dagster_home),
            "DAGSTER_PG_USERNAME": parts.username or "postgres",
            "DAGSTER_PG_PASSWORD": parts.password or "",
            "DAGSTER_PG_HOST": parts.hostname or "127.0.0.1",
            "DAGSTER_PG_PORT": str(parts.port or 5432),
            "DAGSTER_PG_DB": parts.path.lstrip("/"),
            "MLOPS_HOME": str(self.root / "trainer_home"),
            "MLOPS_MODELS_PATH": str(models_dir),
            "MLOPS_WAREHOUSE_BACKEND": "postgres",
            "MLOPS_WAREHOUSE_DSN": self.warehouse_dsn,
            "MLOPS_MLFLOW_TRACKING_URI": server.uri,
            "MLOPS_CELERY_BROKER": self.broker,
        }
        for key in list(os.environ):
            if key.startswith("MLOPS_") or key == "MLFLOW_TRACKING_URI":
                self.stack.callback(os.environ.__setitem__, key, os.environ[key])
                del os.environ[key]
        for key, value in self.env.items():
            previous = os.environ.get(key)
            if previous is None:
                self.stack.callback(os.environ.pop, key, None)
            else:
                self.stack.callback(os.environ.__setitem__, key, previous)
            os.environ[key] = value
        self._train_and_serve()

    def _train_and_serve(self) -> None:
        import dagster as dg

        from mlops_assets import demo_serving as serving
        from mlops_assets.definitions import defs as load_defs
        from mlops_assets.defs.partitions import MODELS
        from mlops_assets.lib import demo_data
        from mlops_assets.platform import catalog_of, default_models
        from mlops_assets.runtime import build_runtime
        from mlops_assets.storage.models import Predictor

        defs = load_defs()
        self.instance = dg.DagsterInstance.get()
        self.stack.callback(self.instance.dispose)
        today = dt.date.today()
        self.days = [today - dt.timedelta(days=n) for n in range(self.n_days, 0, -1)]
        runtime = build_runtime()
        serving.load_match_history(runtime.warehouse, end=self.days[0])
        self.instance.add_dynamic_partitions(MODELS.name, self.model_names)
        training = [
            defs.get_assets_def(dg.AssetKey(k))
            for k in ("training_dataset", "training_run", "training_baseline")
        ]
        trained = None
        for name in self.model_names:
            result = dg.materialize(
                training, resources=defs.resources, instance=self.instance, partition_key=name
            )
            trained = trained or result.output_for_node("training_run")
        # The serving system's own copy of the first model scores the traffic every declared
        # copy monitors (they share the source tables).
        model_dir = runtime.mlflow_config.artifact_root / trained.local_run_id / "model"
        contract = catalog_of(default_models()).get(self.model_names[0])
        predictor = Predictor(contract, model_dir)
        drift = demo_data.DriftSchedule(
            feature_drift_from=self.days[self.drift_from_day - 1] if self.drift_from_day else None
        )
        for d in self.days:
            traffic = serving.serve_matches(
                runtime.warehouse, predictor, d, drift=drift, n_rows=self.rows
            )
            serving.settle_matches(runtime.warehouse, traffic)

    def partition_keys(self) -> list[str]:
        from mlops_assets.defs.partitions import partition_key

        # Date order within each model: the runs of one model are queued in this order.
        return [str(partition_key(d.isoformat(), m)) for d in self.days for m in self.model_names]

    def clone_warehouse(self, suffix: str) -> str:
        """A copy of the trained-and-served warehouse, so two ways start from the same rows."""
        return self._db(suffix, template=urlsplit(self.warehouse_dsn).path.lstrip("/"))

    # -------------------------------------------------------------- the two ways

    def run_in_process(self, warehouse_dsn: str) -> float:
        """Every partition one after another in this warm process (the trainer's data
        directory), events into the same Dagster instance; returns wall seconds."""
        import dagster as dg

        from mlops_assets.definitions import defs as load_defs

        os.environ["MLOPS_WAREHOUSE_DSN"] = warehouse_dsn
        try:
            defs = load_defs()
            assets = [
                defs.get_assets_def(dg.AssetKey(k))
                for k in (
                    "production_predictions",
                    "production_metrics",
                    "performance_alerts",
                    "feature_drift_report",
                )
            ]
            started = time.monotonic()
            for key in self.partition_keys():
                # The same PostgreSQL instance as the Celery runs: the same events are written.
                dg.materialize(
                    assets, resources=defs.resources, instance=self.instance, partition_key=key
                )
            return time.monotonic() - started
        finally:
            os.environ["MLOPS_WAREHOUSE_DSN"] = self.warehouse_dsn

    def run_on_celery(self, warehouse_dsn: str, *, workers: int = 2, timeout: float = 3600.0):
        """An asset backfill of every partition through `dagster-daemon`: the assets' backfill
        policy cuts it into ranged runs (one per model, up to MLOPS_BACKFILL_PARTITIONS_PER_RUN
        days each), whose steps go through the Celery executor to `workers` workers with their
        own data directories. The workers start before the clock; the backfill is submitted
        with the daemon stopped and timed from the daemon's start (its first iteration launches
        the runs; a running daemon would pick it up on its next one, up to 30 s later) to the
        end of the last run. Returns (wall seconds, the runs, steps per worker name)."""
        from mlops_assets.definitions import defs as load_defs

        env = {
            **os.environ,
            "MLOPS_WAREHOUSE_DSN": warehouse_dsn,
            "MLOPS_EXECUTOR": "celery",
            "MLOPS_HOME": str(self.root / "daemon_home"),
        }
        with ExitStack() as stack:
            cluster = CeleryWorkers(
                self.root / f"workers-{uuid.uuid4().hex[:4]}",
                workers=workers,
                broker=self.broker,
                env=env,
                dagster_yaml=self.dagster_yaml,
            )
            cluster.start()
            stack.callback(cluster.stop)
            if not self._sensor_stopped:
                # The days are served already: the sensor would request the same partitions
                # again, beside the backfill.
                subprocess.run(
                    [str(BIN / "dagster"), "sensor", "stop", "-w", WORKSPACE, SENSOR],
                    cwd=REPO,
                    env=env,
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                self._sensor_stopped = True
            keys = self.partition_keys()
            submitted = time.time()
            backfill_id = asset_backfill(self.instance, load_defs(), keys)
            started = time.monotonic()
            daemon = _start_daemon(env, self.root / "daemon.log")
            stack.callback(_stop, daemon)
            runs = wait_backfill(self.instance, backfill_id, keys, submitted, timeout)
            wall = time.monotonic() - started
            hosts = _step_hosts(self.instance, runs)
        return wall, runs, hosts

    def __exit__(self, *exc: object) -> None:
        self.stack.close()
        for name in self.dbs:
            _drop_db(self.admin_dsn, name)
        self.dbs = []
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)


def _start_daemon(env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - closed right after the fork
    proc = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _step_hosts(instance, runs) -> dict[str, int]:
    """Celery worker name -> steps it executed, from the runs' engine events."""
    import dagster as dg

    counts: dict[str, int] = {}
    for run in runs:
        records = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT
        ).records
        for record in records:
            entry = record.event_log_entry
            data = entry.dagster_event.engine_event_data if entry.dagster_event else None
            for item in (data.metadata or {}).items() if data else []:
                if item[0] == "Celery worker":
                    name = str(item[1].value)
                    counts[name] = counts.get(name, 0) + 1
    return counts


@contextmanager
def _forever(workers: int, broker: str) -> Iterator[CeleryWorkers]:
    root = Path(os.environ.get("MLOPS_HOME", ".mlops")).resolve() / "workers"
    with CeleryWorkers(root, workers=workers, broker=broker) as cluster:
        yield cluster


def main() -> None:
    parser = argparse.ArgumentParser(description="Start Celery workers with separate homes.")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--broker", default=os.environ.get("MLOPS_CELERY_BROKER", DEFAULT_BROKER))
    args = parser.parse_args()
    with _forever(args.workers, args.broker) as cluster:
        for i, name in enumerate(cluster.names):
            print(f"worker {name}: MLOPS_HOME={cluster.home(i)}", flush=True)
        print("ready; Ctrl-C stops them", flush=True)
        with suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
