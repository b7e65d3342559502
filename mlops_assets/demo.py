"""The main job: the model's story on the embedded default, printed as it happens."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from mlops_assets.defs.partitions import partition_key
from mlops_assets.runtime import build_runtime
from mlops_assets.settings import load_settings


def local_instance(home: Path) -> dg.DagsterInstance:
    """A persistent Dagster instance under the data directory (SQLite storage), unless
    DAGSTER_HOME points elsewhere; `make dev` opens the same one so the UI shows the demo."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").touch()
    return dg.DagsterInstance.from_config(str(dagster_home))


def run_demo(*, home: str | None = None, echo: Callable[[str], None] = print) -> dict:
    from mlops_assets.definitions import defs

    settings = load_settings(home=home)
    runtime = build_runtime(settings)
    instance = local_instance(settings.home)
    echo(f"mlops_assets demo — data directory {settings.home}")
    echo(f"  warehouse: {runtime.warehouse.describe()}")
    echo(f"  MLflow:    {settings.tracking_uri}")
    echo("")
    echo("1. Training: training_dataset -> training_run -> training_baseline")
    keys = [dg.AssetKey(k) for k in ("training_dataset", "training_run", "training_baseline")]
    result = dg.materialize(
        [defs.get_assets_def(k) for k in keys],
        resources=defs.resources,
        instance=instance,
        raise_on_error=True,
    )
    run = result.output_for_node("training_run")
    m = run.metrics
    echo(
        f"   trained {run.model_name} version {run.model_version or '(pending)'}: "
        f"accuracy {m['accuracy']:.3f}, F1 {m['f1']:.3f}, ROC AUC {m['roc_auc']:.3f}, "
        f"ROI {_pct(m['roi'])}"
    )
    echo(f"   MLflow run {run.mlflow_run_id or run.local_run_id} ({run.tracking_status})")
    echo("")
    days = [dt.date.today() - dt.timedelta(days=n) for n in range(DEMO_DAYS, 0, -1)]
    drift_from = days[DRIFT_FROM_DAY - 1]
    echo(
        f"2. Production: {DEMO_DAYS} days {days[0]} .. {days[-1]}, feature and concept drift "
        f"switched on from day {DRIFT_FROM_DAY} ({drift_from})"
    )
    production = [
        defs.get_assets_def(dg.AssetKey(k))
        for k in (
            "production_predictions",
            "production_metrics",
            "performance_alerts",
            "feature_drift_report",
        )
    ]
    run_config = {
        "ops": {
            "production_predictions": {
                "config": {
                    "feature_drift_from": drift_from.isoformat(),
                    "concept_drift_from": drift_from.isoformat(),
                }
            }
        }
    }
    day_alerts = {}
    for number, day in enumerate(days, start=1):
        result = dg.materialize(
            production,
            resources=defs.resources,
            instance=instance,
            partition_key=partition_key(day.isoformat(), run.model_name),
            run_config=run_config,
            raise_on_error=True,
        )
        levels = _levels(runtime.warehouse, run.model_name, day)
        drift = runtime.warehouse.query(
            "SELECT max(dataset_verdict) AS verdict, max(dataset_share_drifted) AS share "
            "FROM mlops.ml_feature_drift_detection WHERE model_name = :m AND partition_date = :d",
            {"m": run.model_name, "d": day},
        )[0]
        failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
        day_alerts[day] = levels
        echo(
            f"   day {number:2d} {day}: accuracy {levels.get('accuracy', ('n/a',))[0]}, "
            f"ROI {levels.get('roi', ('n/a',))[0]}, worst level {_worst(levels)}, "
            f"drift {drift['verdict']} ({_share(drift['share'])}), failed checks {len(failed)}"
        )
    alerts = runtime.warehouse.query(
        "SELECT alert_id, kind, metric, severity, status, first_seen, last_seen "
        "FROM mlops.ml_performance_alerts WHERE model_name = :m ORDER BY alert_id",
        {"m": run.model_name},
    )
    echo(f"   alerts: {len(alerts)}")
    for a in alerts:
        echo(
            f"     #{a['alert_id']} {a['kind']}/{a['metric']}: {a['severity']} ({a['status']}), "
            f"first seen {a['first_seen']}, last seen {a['last_seen']}"
        )
    echo("")
    echo("3. Lifecycle: health table and curated views")
    lifecycle = [
        defs.get_assets_def(dg.AssetKey(k))
        for k in (
            "ml_model_health_status",
            "unified_model_lifecycle",
            "unified_monitoring_alerts",
            "feature_drift_with_training_context",
        )
    ]
    dg.materialize(lifecycle, resources=defs.resources, instance=instance, raise_on_error=True)
    echo(format_health(runtime.warehouse))
    for title, sql in SHOWCASE_QUERIES:
        rows = runtime.warehouse.query_readonly(sql)
        echo(f"   {title}: {len(rows)} row(s)")
        echo(f"     {sql}")
        for r in rows[:5]:
            echo("     " + ", ".join(f"{k}={_fmt(v)}" for k, v in list(r.items())[:8]))
    echo("")
    echo("Where things are:")
    echo('  warehouse tables: mlops-assets query "SELECT * FROM mlops.training_runs"')
    echo("  Dagster UI:       make dev   (then http://127.0.0.1:3000)")
    echo(f"  MLflow UI:        .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri}")
    return {"training_run": run, "days": days, "drift_from": drift_from, "alerts": alerts}


DEMO_DAYS = 14
DRIFT_FROM_DAY = 8
_RANK = {"ok": 0, "warning": 1, "critical": 2}


def _levels(warehouse, model: str, day: dt.date) -> dict[str, tuple[str, str]]:
    rows = warehouse.query(
        "SELECT metric, value, level FROM mlops.production_metrics "
        "WHERE model_name = :m AND metric_date = :d",
        {"m": model, "d": day},
    )
    return {
        r["metric"]: ("n/a" if r["value"] is None else f"{r['value']:.3f}", r["level"])
        for r in rows
    }


def _worst(levels: dict[str, tuple[str, str]]) -> str:
    found = [lvl for _, lvl in levels.values() if lvl in _RANK]
    return max(found, key=_RANK.__getitem__) if found else "no verdict"


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


def format_health(warehouse) -> str:
    rows = warehouse.query(
        "SELECT model_name, model_version, overall_status, latest_accuracy, baseline_accuracy, "
        "open_alerts_warning, open_alerts_critical, latest_drift_verdict, champion_version, "
        "active_mlflow_run_ids, pending_replay FROM mlops.ml_model_health_status "
        "ORDER BY model_name, model_version"
    )
    header = (
        f"   {'model':<16}{'ver':>4}  {'status':<9}{'acc':>7}{'base':>7}{'warn':>6}{'crit':>6}"
        f"  {'drift':<15}{'champ':>6}  mlflow run"
    )
    lines = [header]
    for r in rows:
        lines.append(
            f"   {r['model_name']:<16}{r['model_version']:>4}  {r['overall_status']:<9}"
            f"{_fmt(r['latest_accuracy']):>7}{_fmt(r['baseline_accuracy']):>7}"
            f"{r['open_alerts_warning']:>6}{r['open_alerts_critical']:>6}"
            f"  {r['latest_drift_verdict'] or '-':<15}{r['champion_version'] or '-':>6}  "
            f"{r['active_mlflow_run_ids']}{' (pending replay)' if r['pending_replay'] else ''}"
        )
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%} of features"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"
