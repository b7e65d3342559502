"""Acceptance fixtures: the platform configured the way a user configures it.

Models are declared in YAML files in a folder that MLOPS_MODELS_PATH names; settings come from
MLOPS_* environment variables; assets, resources and sensors are the ones of the real code
location, `mlops_assets.definitions.defs()`. Data reaches the platform only through the sources
the YAML names (warehouse tables the test writes with SQL, Parquet folders it writes files to).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import yaml

from mlops_assets.defs.partitions import MODELS, partition_key
from mlops_assets.storage.warehouse import Warehouse

TRAINING = ("training_dataset", "training_run", "training_baseline")
PRODUCTION = ("production_predictions", "production_metrics", "performance_alerts")
DRIFT = ("feature_drift_report",)
LIFECYCLE = (
    "ml_model_health_status",
    "unified_model_lifecycle",
    "unified_monitoring_alerts",
    "feature_drift_with_training_context",
)


@dataclass
class UserPlatform:
    """One user's set-up: a data directory, a models folder, an engine, a Dagster home."""

    home: Path
    models_dir: Path
    dagster_home: Path
    engine: str
    instance: dg.DagsterInstance
    files: dict[str, Path] = field(default_factory=dict)

    def declare(self, name: str, attributes: Mapping[str, Any]) -> Path:
        """A `defs.yaml`-style declaration in the models folder, as a user writes it."""
        path = self.models_dir / f"{name}.yaml"
        document = {"type": "mlops_assets.MonitoredModel", "attributes": dict(attributes)}
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        self.files[name] = path
        return path

    def defs(self) -> dg.Definitions:
        """The real code location, loaded as `dagster` loads it (env read now)."""
        from mlops_assets.definitions import defs

        return defs()

    @property
    def wh(self) -> Warehouse:
        from mlops_assets.runtime import build_runtime

        return build_runtime().warehouse

    def add_models(self, names: Iterable[str]) -> None:
        names = [n for n in names if not self.instance.has_dynamic_partition(MODELS.name, n)]
        if names:
            self.instance.add_dynamic_partitions(MODELS.name, names)

    def materialize(
        self,
        keys: Iterable[str],
        *,
        model: str,
        day: dt.date | str | None = None,
        raise_on_error: bool = True,
        defs: dg.Definitions | None = None,
    ) -> dg.ExecuteInProcessResult:
        defs = defs or self.defs()
        self.add_models([model])
        key = model if day is None else partition_key(str(day), model)
        return dg.materialize(
            [defs.get_assets_def(dg.AssetKey(k)) for k in keys],
            resources=defs.resources,
            instance=self.instance,
            partition_key=key,
            raise_on_error=raise_on_error,
        )

    def materialize_unpartitioned(self, keys: Iterable[str]) -> dg.ExecuteInProcessResult:
        defs = self.defs()
        return dg.materialize(
            [defs.get_assets_def(dg.AssetKey(k)) for k in keys],
            resources=defs.resources,
            instance=self.instance,
        )

    def metrics(self, model: str, day: dt.date) -> dict[str, dict]:
        rows = self.wh.query(
            "SELECT * FROM mlops.production_metrics WHERE model_name = :m AND metric_date = :d",
            {"m": model, "d": day},
        )
        return {r["metric"]: r for r in rows}

    def write_table(self, table: str, frame: pd.DataFrame, *, replace: bool = False) -> None:
        """What a serving system or data team does: rows into a warehouse table."""
        from mlops_assets.demo_serving import write_table

        write_table(self.wh, table, frame, replace=replace)


def new_instance(dagster_home: Path) -> dg.DagsterInstance:
    """A persistent instance on `dagster_home` (SQLite storage), as the daemon opens it."""
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(dagster_home))


@pytest.fixture(params=["embedded", "postgres"])
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def _user_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, dsn: str | None
) -> Iterator[UserPlatform]:
    for key in list(os.environ):
        if key.startswith(("MLOPS_", "MLFLOW_")) or key == "DAGSTER_HOME":
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    models_dir = tmp_path / "models"
    dagster_home = tmp_path / "dagster_home"
    for folder in (home, models_dir, dagster_home):
        folder.mkdir(parents=True)
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLOPS_MODELS_PATH", str(models_dir))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    # A local sqlite MLflow store unless a test points at the real server.
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    if engine == "postgres":
        assert dsn
        monkeypatch.setenv("MLOPS_WAREHOUSE_BACKEND", "postgres")
        monkeypatch.setenv("MLOPS_WAREHOUSE_DSN", dsn)
    instance = new_instance(dagster_home)
    try:
        yield UserPlatform(home, models_dir, dagster_home, engine, instance)
    finally:
        instance.dispose()


@pytest.fixture
def user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, request: pytest.FixtureRequest
) -> Iterator[UserPlatform]:
    """The platform on the parametrized engine (PostgreSQL through the `pg_dsn` fixture)."""
    dsn = request.getfixturevalue("pg_dsn") if engine == "postgres" else None
    yield from _user_platform(tmp_path, monkeypatch, engine, dsn)


@pytest.fixture
def embedded_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[UserPlatform]:
    yield from _user_platform(tmp_path, monkeypatch, "embedded", None)
