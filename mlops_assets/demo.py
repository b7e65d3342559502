"""The main job: the model's whole story, printed as it happens.

1. MLflow up: train, baseline, 8 production days with drift and degradation from day 5.
2. MLflow goes down: retraining still finishes fast on a local run id; monitoring goes on.
3. MLflow comes back: the flush sensor replays the buffer; real ids reach every table and view.

It starts and stops its own `mlflow server` on a free loopback port, and runs every asset
through `dg.materialize` on a persistent Dagster instance under the data directory, so
`make dev` shows the same runs afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets import demo_serving as serving
from mlops_assets.defs.partitions import MODELS, partition_key
from mlops_assets.lib import demo_data
from mlops_assets.lib.contract import ModelCatalog
from mlops_assets.local_mlflow import LocalMlflowServer
from mlops_assets.resources import MLflowResource, NotifierResource, WarehouseResource
from mlops_assets.settings import load_settings

DEMO_DAYS = 8
DRIFT_FROM_DAY = 5
# The demo trips the breaker after 2 failures (default 5) so the outage shows within a few
# calls; the recovery timeout is the smallest allowed, 30 s.
DEMO_ENV = {
    "MLOPS_MLFLOW_CIRCUIT_BREAKER_FAILURE_THRESHOLD": "2",
    "MLOPS_MLFLOW_CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
TRAINING = ("training_dataset", "training_run", "training_baseline")
PRODUCTION = (
    "production_predictions",
    "production_metrics",
    "performance_alerts",
    "feature_drift_report",
)
LIFECYCLE = (
    "ml_model_health_status",
    "unified_model_lifecycle",
    "unified_monitoring_alerts",
    "feature_drift_with_training_context",
)
SHOWCASE_QUERIES = (
    (
        "models in trouble",
        "SELECT * FROM curated.unified_model_lifecycle WHERE overall_status IN "
        "('CRITICAL', 'WARNING') ORDER BY accuracy_degradation DESC;",
    ),
    (
        "critical alerts far from the best training run",
        "SELECT * FROM curated.unified_monitoring_alerts WHERE severity = 'critical' "
        "AND degradation_from_training_best > 5.0;",
    ),
)
_RANK = {"ok": 0, "warning": 1, "critical": 2}


@dataclass
class DemoResult:
    home: Path
    tracking_uri: str
    first_run: Any = None
    outage_run: Any = None
    days: list[dt.date] = field(default_factory=list)
    drift_from: dt.date | None = None
    day_levels: dict[dt.date, str] = field(default_factory=dict)
    alerts: list[dict] = field(default_factory=list)
    pending_before_replay: dict = field(default_factory=dict)
    replayed: list[str] = field(default_factory=list)
    showcase: dict[str, list[dict]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def local_instance(home: Path) -> dg.DagsterInstance:
    """A persistent Dagster instance under the data directory (SQLite storage), unless
    DAGSTER_HOME points elsewhere; `make dev` opens the same one so the UI shows the demo."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(dagster_home))


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_demo(
    *,
    home: str | None = None,
    postgres_dsn: str | None = None,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    import logging

    import mlflow  # noqa: F401 - configures its loggers on import; quieten them after that

    # The story is what the demo prints; MLflow's progress lines and version-wait notices and
    # the sensors' own log lines would bury it (and link to a server the demo stops).
    quiet = {name: logging.getLogger(name) for name in ("mlflow", "dagster")}
    levels = {name: logger.level for name, logger in quiet.items()}
    for logger in quiet.values():
        logger.setLevel(logging.WARNING)
    try:
        with _environment(DEMO_ENV):
            return _story(home=home, postgres_dsn=postgres_dsn, echo=echo)
    finally:
        for name, logger in quiet.items():
            logger.setLevel(levels[name])


def _story(*, home: str | None, postgres_dsn: str | None, echo: Callable[[str], None]):
    from mlops_assets.defs.tracking.sensors import REFRESH_AFTER_REPLAY, mlflow_buffer_flush_sensor
    from mlops_assets.platform import catalog_of, demo_models, platform_definitions

    backend = "postgres" if postgres_dsn else None
    settings = load_settings(home=home, backend=backend, dsn=postgres_dsn)
    # The same sqlite store and artifact folder that the CLI and `make dev` use by default
    # (MLOPS_MLFLOW_TRACKING_URI unset), served over HTTP so the demo can stop and restart it.
    settings.home.mkdir(parents=True, exist_ok=True)
    server = LocalMlflowServer(
        settings.home / "mlflow", artifact_root=settings.home / "mlflow-artifacts"
    )
    started = time.monotonic()
    echo(f"mlops_assets demo — data directory {settings.home}")
    echo("   starting a local mlflow server ...")
    # It takes seconds to boot; the definitions, the warehouse, the instance and the history
    # table need no MLflow.
    server.launch()
    result = DemoResult(home=settings.home, tracking_uri=server.uri)
    held = contextlib.ExitStack()
    try:
        models = demo_models()
        defs = platform_definitions(models)
        catalog = catalog_of([models])
        warehouse_resource = WarehouseResource(
            home=str(settings.home), backend=backend, dsn=postgres_dsn
        )
        mlflow_resource = MLflowResource(warehouse=warehouse_resource, tracking_uri=server.uri)
        resources = {
            "warehouse": warehouse_resource,
            "mlflow": mlflow_resource,
            "notifier": NotifierResource(),
            "models": catalog,
        }
        runtime = mlflow_resource.runtime()
        wh = runtime.warehouse
        # The whole story runs in this process: keep the embedded file open until the
        # read-only showcase queries (see Warehouse.held_open).
        held.enter_context(wh.held_open())
        instance = local_instance(settings.home)
        echo(f"   warehouse: {wh.describe()}")
        echo(f"   MLflow:    {server.uri} (UI at the same address)")
        echo("")

        def materialize(keys, run_config=None, **kwargs):
            # The story is printed by echo; Dagster's event log stays in the instance (and the
            # UI), and only errors reach the terminal.
            # The outage's warnings are told by the story itself, in one line each.
            quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
            return dg.materialize(
                [defs.get_assets_def(dg.AssetKey(k)) for k in keys],
                resources=resources,
                instance=instance,
                raise_on_error=True,
                run_config={**quiet, **(run_config or {})},
                **kwargs,
            )

        # ---------------------------------------------------------------- 1. MLflow up
        instance.add_dynamic_partitions(
            MODELS.name,
            [n for n in catalog.names if not instance.has_dynamic_partition(MODELS.name, n)],
        )
        today = dt.date.today()
        result.days = [today - dt.timedelta(days=n) for n in range(DEMO_DAYS, 0, -1)]
        result.drift_from = result.days[DRIFT_FROM_DAY - 1]
        echo("1. MLflow up. The users' side first:")
        n_history = serving.load_match_history(wh, end=result.days[0])
        echo(f"   football data team: {n_history} past matches in table demo.match_history")
        server.wait_ready()
        with contextlib.redirect_stderr(io.StringIO()):  # the team's script, not our story
            wine_version, wine_model = serving.train_and_register_wine(server.uri, wh)
        echo(
            f"   wine team: scikit-learn model trained and registered by its own MLflow script "
            f"as {serving.WINE} version {wine_version} (alias champion)"
        )
        echo("   The platform, from the YAML declarations in mlops_assets/defs/models:")
        t0 = time.monotonic()
        for name in catalog.names:
            outcome = materialize(TRAINING, partition_key=name)
            run = outcome.output_for_node("training_run")
            if name == serving.MATCH:
                result.first_run = run
            echo(_describe_run(run, catalog.get(name)))
        result.seconds["training"] = time.monotonic() - t0
        echo(
            f"   {DEMO_DAYS} production days {result.days[0]} .. {result.days[-1]}; drift from "
            f"day {DRIFT_FROM_DAY} ({result.drift_from}). Serving systems write predictions "
            "and labels; the inference_log_sensor turns them into monitoring runs."
        )
        match_predictor = _match_predictor(runtime, result.first_run, catalog)
        drift = demo_data.DriftSchedule(
            feature_drift_from=result.drift_from, concept_drift_from=result.drift_from
        )
        t0 = time.monotonic()
        pickup_cursor = None
        for number, day in enumerate(result.days, start=1):
            traffic = serving.serve_matches(wh, match_predictor, day, drift=drift)
            # The last day's results are not in yet: its metrics are estimated from the models'
            # calibrated probabilities until the labels arrive.
            labels_pending = number == DEMO_DAYS
            if not labels_pending:
                serving.settle_matches(wh, traffic)
            served = serving.serve_wine(
                settings.home, wine_model, day, drift_from=result.drift_from
            )
            if not labels_pending:
                serving.label_wine(settings.home, served, day)
            requests, pickup_cursor = _pick_up(instance, resources, catalog, pickup_cursor)
            for request in requests:
                materialize(PRODUCTION, partition_key=request.partition_key)
            for i, name in enumerate(catalog.names):
                levels = _levels(wh, name, day)
                result.day_levels.setdefault(name, {})[day] = _worst(levels)
                prefix = f"   day {number:2d} {day}" if i == 0 else " " * 20
                echo(
                    f"{prefix}  {name:<14} {_headline(levels, catalog.get(name)):<40} "
                    f"drift: {_drift(wh, name, day)}"
                )
        result.seconds["production_days"] = time.monotonic() - t0
        result.alerts = wh.query(
            "SELECT alert_id, model_name, model_version, kind, metric, severity, status, "
            "first_seen, last_seen FROM mlops.ml_performance_alerts ORDER BY alert_id"
        )
        echo(f"   alerts raised: {len(result.alerts)}")
        for a in result.alerts:
            echo(
                f"     #{a['alert_id']} {a['model_name']} v{a['model_version']} "
                f"{a['kind']}/{a['metric']}: {a['severity']} ({a['status']}), "
                f"first seen {a['first_seen']}, last seen {a['last_seen']}"
            )
        echo("")
        run = result.first_run

        # ---------------------------------------------------------------- 2. MLflow down
        echo("2. MLflow goes down (server killed): retrain, keep monitoring")
        server.stop()
        t0 = time.monotonic()
        outage = materialize(TRAINING, partition_key=run.model_name).output_for_node("training_run")
        result.outage_run = outage
        result.seconds["training_during_outage"] = time.monotonic() - t0
        echo(
            _describe_run(outage, catalog.get(outage.model_name))
            + f" in {result.seconds['training_during_outage']:.1f}s"
        )
        last_day = result.days[-1]
        materialize(PRODUCTION, partition_key=partition_key(last_day.isoformat(), run.model_name))
        echo(f"   day {last_day} judged against the new champion under its local run id")
        moved = wh.query(
            "SELECT count(CASE WHEN training_local_run_id = :new AND status <> 'resolved' "
            "THEN 1 END) AS open_new, count(CASE WHEN training_local_run_id <> :new "
            "AND status = 'resolved' AND message LIKE '%superseded%' THEN 1 END) AS superseded "
            "FROM mlops.ml_performance_alerts WHERE model_name = :m",
            {"new": outage.local_run_id, "m": outage.model_name},
        )[0]
        echo(
            f"   alerts: {moved['superseded']} of version {run.model_version} resolved as "
            f"superseded; {moved['open_new']} open for the new champion"
        )
        state = runtime.breaker.current_state()
        summary = runtime.tracker.buffer.summary()
        result.pending_before_replay = {
            "pending_runs": summary.pending_runs,
            "breaker": state.state,
            "training_runs": wh.query(
                "SELECT local_run_id, mlflow_run_id, tracking_status FROM mlops.training_runs "
                "WHERE local_run_id = :id",
                {"id": outage.local_run_id},
            ),
        }
        echo(
            f"   MLflow buffer: {summary.pending_runs} run(s) pending, "
            f"{summary.pending_metrics} metrics; circuit breaker {state.state}"
        )
        tick = _sensor_tick(mlflow_buffer_flush_sensor, instance, mlflow_resource)
        echo(f"   flush sensor tick: {tick}")
        echo("")

        # ---------------------------------------------------------------- 3. MLflow back
        echo("3. MLflow comes back: the flush sensor replays the buffer")
        server.launch()
        wait = runtime.breaker.retry_after()
        if wait > 0:
            echo(f"   breaker open; its half-open trial is due in {wait:.0f}s, waiting")
        server.wait_ready()  # boots meanwhile
        remaining = runtime.breaker.retry_after()
        if remaining > 0:
            time.sleep(remaining + 0.5)
        tick = _sensor_tick(mlflow_buffer_flush_sensor, instance, mlflow_resource)
        echo(f"   flush sensor tick: {tick}")
        replayed = wh.query(
            "SELECT local_run_id, mlflow_run_id, model_version FROM mlops.training_runs "
            "WHERE local_run_id = :id",
            {"id": outage.local_run_id},
        )[0]
        result.replayed = [replayed["mlflow_run_id"]] if replayed["mlflow_run_id"] else []
        echo(
            f"   {outage.local_run_id} is now MLflow run {replayed['mlflow_run_id']}, "
            f"model version {replayed['model_version']}"
        )
        # What the sensor's run request does under the daemon: refresh the assets whose
        # metadata carries MLflow ids.
        materialize(TRAINING, selection=REFRESH_AFTER_REPLAY, partition_key=run.model_name)
        echo(f"   refreshed {', '.join(REFRESH_AFTER_REPLAY)} with the real MLflow ids")
        echo("")

        # ---------------------------------------------------------------- lifecycle
        echo("Lifecycle: health table and curated views")
        materialize(LIFECYCLE)
        held.close()
        echo(format_health(wh))
        for title, sql in SHOWCASE_QUERIES:
            rows = wh.query_readonly(sql)
            result.showcase[title] = rows
            echo(f"   {title}: {len(rows)} row(s)")
            echo(f"     {sql}")
            for r in rows[:4]:
                echo("     " + ", ".join(f"{k}={_fmt(v)}" for k, v in list(r.items())[:9]))
        result.seconds["total"] = time.monotonic() - started
        echo("")
        echo(f"Done in {result.seconds['total']:.0f}s. Where things are:")
        echo(f"   data directory:  {settings.home}")
        echo(
            '   warehouse:       mlops-assets query "SELECT * FROM curated.unified_model_lifecycle"'
        )
        echo("   health:          mlops-assets status")
        echo("   Dagster UI:      make dev   (then http://127.0.0.1:3000)")
        echo(
            f"   MLflow UI:       .venv/bin/mlflow ui --backend-store-uri "
            f"{server.backend_store_uri}"
        )
        return result
    finally:
        held.close()
        server.stop()


def _sensor_tick(sensor: dg.SensorDefinition, instance, mlflow_resource) -> str:
    with dg.build_sensor_context(
        instance=instance, resources={"mlflow": mlflow_resource}
    ) as context:
        _quiet(context)
        outcome = sensor(context)
    if outcome.skip_reason:
        return f"skipped: {short_reason(outcome.skip_reason.skip_message)}"
    keys = [r.run_key for r in outcome.run_requests or []]
    return f"replayed, refresh requested for {', '.join(keys)}"


def _quiet(context: dg.SensorEvaluationContext) -> None:
    """A sensor's logger writes INFO to the console through its own handler, whatever the
    `dagster` logger's level; the story tells what a tick did in one line."""
    import logging

    context.log.setLevel(logging.WARNING)


def short_reason(text: str) -> str:
    """The story's one-line version of a sensor's reason: the full MLflow error (hundreds of
    characters of URL and urllib3 detail) stays in the buffer table, redacted."""
    head, _, error = text.partition("; last error: ")
    if not error:
        return text
    errno = re.search(r"\[Errno -?\d+\] ([^\"')]+)", error)
    cause = errno.group(1) if errno else error.split(":", 1)[0]
    return f"{head}; last error: {cause.strip()}"


def _describe_run(run, contract) -> str:
    shown = [m for m in contract.monitored_metrics() if run.metrics.get(m) is not None]
    figures = ", ".join(f"{m} {run.metrics[m]:.3f}" for m in shown)
    ref = run.mlflow_run_id or f"{run.local_run_id} (local id, pending replay)"
    origin = "registered elsewhere" if contract.model.registered else "trained here"
    return (
        f"   {run.model_name} ({contract.task}, {origin}) version "
        f"{run.model_version or '(pending)'}: {figures}; MLflow run {ref}"
    )


def demo_catalog() -> ModelCatalog:
    from mlops_assets.platform import catalog_of, demo_models

    return catalog_of([demo_models()])


def _match_predictor(runtime, run, catalog: ModelCatalog):
    """The football team's serving system loads the champion it was handed (its own copy)."""
    from mlops_assets.storage.models import Predictor

    model_dir = runtime.mlflow_config.artifact_root / run.local_run_id / "model"
    return Predictor(catalog.get(run.model_name), model_dir)


def _pick_up(instance, resources, catalog, cursor: str | None):
    """One tick of the inference_log_sensor, as the daemon would run it: (requests, cursor)."""
    from mlops_assets.defs.production.sensors import inference_log_sensor

    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"warehouse": resources["warehouse"], "models": catalog},
    ) as context:
        _quiet(context)
        outcome = inference_log_sensor(context)
    return list(outcome.run_requests or []), outcome.cursor


def _headline(levels: dict[str, tuple[str, str]], contract) -> str:
    main = next(iter(contract.monitored_metrics()))
    value = levels.get(main, ("n/a",))[0]
    return f"{main} {value} ({_worst(levels)})"


def _levels(warehouse, model: str, day: dt.date) -> dict[str, tuple[str, str]]:
    rows = warehouse.query(
        "SELECT metric, value, level, basis FROM mlops.production_metrics "
        "WHERE model_name = :m AND metric_date = :d",
        {"m": model, "d": day},
    )
    return {
        r["metric"]: (
            "n/a"
            if r["value"] is None
            else f"{r['value']:.3f}" + (" estimated" if r["basis"] == "estimated" else ""),
            r["level"],
        )
        for r in rows
    }


def _worst(levels: dict[str, tuple[str, str]]) -> str:
    found = [lvl for _, lvl in levels.values() if lvl in _RANK]
    return max(found, key=_RANK.__getitem__) if found else "no verdict"


def _drift(warehouse, model: str, day: dt.date) -> str:
    row = warehouse.query(
        "SELECT max(dataset_verdict) AS verdict, max(dataset_share_drifted) AS share "
        "FROM mlops.ml_feature_drift_detection WHERE model_name = :m AND partition_date = :d",
        {"m": model, "d": day},
    )[0]
    share = "n/a" if row["share"] is None else f"{row['share']:.0%} of features drifted"
    return f"{row['verdict']} ({share})"


def format_health(warehouse) -> str:
    rows = warehouse.query(
        "SELECT model_name, model_version, overall_status, latest_accuracy, baseline_accuracy, "
        "open_alerts_warning, open_alerts_critical, latest_drift_verdict, champion_version, "
        "active_mlflow_run_ids, pending_replay, status_reason FROM mlops.ml_model_health_status "
        "ORDER BY model_name, model_version"
    )
    lines = [
        f"   {'model':<15}{'ver':>4}  {'status':<9}{'acc':>7}{'base':>7}{'warn':>5}{'crit':>5}"
        f"  {'drift':<15}{'champ':>6}  MLflow run"
    ]
    for r in rows:
        lines.append(
            f"   {r['model_name']:<15}{r['model_version']:>4}  {r['overall_status']:<9}"
            f"{_fmt(r['latest_accuracy']):>7}{_fmt(r['baseline_accuracy']):>7}"
            f"{r['open_alerts_warning']:>5}{r['open_alerts_critical']:>5}"
            f"  {r['latest_drift_verdict'] or '-':<15}{r['champion_version'] or '-':>6}  "
            f"{r['active_mlflow_run_ids']}{' (pending replay)' if r['pending_replay'] else ''}"
        )
        if r["overall_status"] != "HEALTHY" and r["status_reason"]:
            lines.append(f"{'':<27}why: {r['status_reason']}")
    if not rows:
        # Monitoring runs do not refresh it: an empty table is not "no models".
        lines.append(
            "   (no rows: the health table is written when the lifecycle group is materialized, "
            "e.g. dagster asset materialize -m mlops_assets.definitions --select group:lifecycle)"
        )
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"
