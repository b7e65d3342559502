"""Dagster resources over the runtime objects in `mlops_assets.runtime`.

Fields left as None fall back to the `MLOPS_*` settings, which are read when a run launches,
never at import time. Secrets (the webhook URL) come in through `dg.EnvVar`.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from mlops_assets.runtime import Runtime, build_runtime, make_warehouse
from mlops_assets.settings import load_settings
from mlops_assets.storage.tracking import MlflowTracker
from mlops_assets.storage.warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse (embedded DuckDB or PostgreSQL), migrated on first use."""

    home: str | None = Field(default=None, description="Data directory; else MLOPS_HOME.")
    backend: str | None = Field(default=None, description="embedded | postgres")
    dsn: str | None = Field(
        default=None, description="PostgreSQL DSN without password (use PGPASSWORD)."
    )

    def runtime(self) -> Runtime:
        return build_runtime(home=self.home, backend=self.backend, dsn=self.dsn)

    def get(self) -> Warehouse:
        return self.runtime().warehouse

    @contextmanager
    def session(self) -> Iterator[None]:
        """A burst of transactions on one connection (`Warehouse.session`), opened before
        `get()` so the first use's migration check shares it too."""
        settings = load_settings(home=self.home, backend=self.backend, dsn=self.dsn)
        with make_warehouse(settings).session():
            yield


class MLflowResource(dg.ConfigurableResource):
    """MLflow behind the shared circuit breaker and the durable buffer."""

    warehouse: WarehouseResource
    tracking_uri: str | None = Field(default=None, description="Else MLOPS_MLFLOW_TRACKING_URI.")

    def runtime(self) -> Runtime:
        return build_runtime(
            home=self.warehouse.home,
            backend=self.warehouse.backend,
            dsn=self.warehouse.dsn,
            tracking_uri=self.tracking_uri,
        )

    def tracker(self) -> MlflowTracker:
        return self.runtime().tracker


class NotifierResource(dg.ConfigurableResource):
    """Where alert notifications go: a Slack-compatible webhook, or the log when unset."""

    webhook_url: str | None = Field(
        default=None,
        description="Secret. Set with dg.EnvVar(...) here, or leave unset to read "
        "MLOPS_ALERT_WEBHOOK_URL at launch; unset everywhere = alerts go to the log.",
    )
    dagster_ui_url: str = Field(default="http://127.0.0.1:3000")
    timeout_seconds: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(
        default=3, ge=1, le=10, description="HTTP attempts per event within one sensor tick."
    )
    max_event_attempts: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Failed ticks after which an event is marked failed and no longer retried.",
    )

    def resolved_webhook_url(self) -> str | None:
        from mlops_assets.settings import NotifierSettings

        if self.webhook_url:
            return self.webhook_url
        secret = NotifierSettings().webhook_url
        return secret.get_secret_value() if secret else None
