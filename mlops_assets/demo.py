"""The main job: the model's story on the embedded default, printed as it happens."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg

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
    echo("Where things are:")
    echo(f"  warehouse tables: mlops-assets query \"SELECT * FROM mlops.training_runs\"")
    echo(f"  Dagster UI:       make dev   (then http://127.0.0.1:3000)")
    echo(f"  MLflow UI:        .venv/bin/mlflow ui --backend-store-uri {settings.tracking_uri}")
    return {"training_run": run}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"
