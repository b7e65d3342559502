"""Builds the platform's I/O objects (warehouse, MLflow tracker) from settings, once per process.

Dagster resources, the CLI and tests all go through `build_runtime`, so there is one place
that turns settings into connections. No Dagster imports here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

from mlops_assets.lib.breaker import BreakerEvent, CircuitBreaker
from mlops_assets.settings import Settings, load_settings
from mlops_assets.storage.breaker_store import SqlBreakerStore
from mlops_assets.storage.mlflow_buffer import MlflowBuffer
from mlops_assets.storage.tracking import MlflowConfig, MlflowTracker, is_outage
from mlops_assets.storage.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse

_lock = threading.Lock()
_migrated: set[str] = set()


@dataclass
class Runtime:
    settings: Settings
    warehouse: Warehouse

    @cached_property
    def mlflow_config(self) -> MlflowConfig:
        s = self.settings.mlflow
        return MlflowConfig(
            tracking_uri=self.settings.tracking_uri,
            experiment_name=s.experiment_name,
            artifact_root=self.settings.home / "artifacts",
            max_retries=s.max_retries,
            retry_delay=s.retry_delay,
            connection_timeout=s.connection_timeout,
            ui_url=s.ui_url,
        )

    @cached_property
    def breaker(self) -> CircuitBreaker:
        s = self.settings.mlflow
        return CircuitBreaker(
            name="mlflow",
            store=SqlBreakerStore(self.warehouse),
            failure_threshold=s.circuit_breaker_failure_threshold,
            recovery_timeout=s.circuit_breaker_recovery_timeout,
            is_failure=is_outage,
            enabled=s.enable_circuit_breaker,
            listeners=[self._on_breaker_event],
        )

    @cached_property
    def tracker(self) -> MlflowTracker:
        return MlflowTracker(self.mlflow_config, MlflowBuffer(self.warehouse), self.breaker)

    def _on_breaker_event(self, event: BreakerEvent) -> None:
        from mlops_assets.storage.alerts import record_service_alert

        record_service_alert(self.warehouse, event)


def make_warehouse(settings: Settings) -> Warehouse:
    if settings.warehouse.backend == "postgres":
        assert settings.warehouse.dsn is not None
        return PostgresWarehouse(settings.warehouse.dsn)
    return DuckDBWarehouse(settings.embedded_path)


def build_readonly_warehouse(settings: Settings | None = None, **overrides: object) -> Warehouse:
    """The warehouse for inspection (`query`, `status`). An existing embedded file is opened
    read-only and never migrated, so a file this process may not write can be read and a reader
    never holds the writers' lock; only a missing one is first created empty (and migrated).
    PostgreSQL is not migrated here; its queries run read-only (see `query_readonly`)."""
    settings = settings or load_settings(**overrides)
    if settings.warehouse.backend == "postgres":
        assert settings.warehouse.dsn is not None
        return PostgresWarehouse(settings.warehouse.dsn)
    if not settings.embedded_path.exists():
        build_runtime(settings)
    return DuckDBWarehouse(settings.embedded_path, read_only=True)


def build_runtime(settings: Settings | None = None, **overrides: object) -> Runtime:
    """Settings -> a migrated warehouse and a tracker. Migrations run once per process."""
    settings = settings or load_settings(**overrides)
    warehouse = make_warehouse(settings)
    key = warehouse.describe()
    with _lock:
        if key not in _migrated:
            warehouse.migrate()
            _migrated.add(key)
    return Runtime(settings=settings, warehouse=warehouse)
