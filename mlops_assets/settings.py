"""Typed settings, read from `MLOPS_*` environment variables in one place: `load_settings()`.

Nothing reads the environment at import time; Dagster resources are built from these settings
at launch (see `mlops_assets.definitions`), and secrets reach resources through `dg.EnvVar`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlops_assets.lib.names import validate_model_name
from mlops_assets.lib.redact import redact


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable and what is allowed."""


class HomeSettings(BaseSettings):
    """Where everything kept on disk lives (embedded warehouse, local MLflow store, artifacts)."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    home: Path = Field(
        default=Path(".mlops"),
        description="Data directory (MLOPS_HOME); relative paths are taken from the working dir.",
    )
    sources_root: Path | None = Field(
        default=None,
        description="Where relative Parquet source folders are (MLOPS_SOURCES_ROOT); else home. "
        "On several hosts, a folder every worker reaches, so the data directory stays a cache.",
    )

    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_sources_root(self) -> Path:
        if self.sources_root is None:
            return self.resolved_home
        return self.sources_root.expanduser().resolve()


class MLflowSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_MLFLOW_", extra="ignore")

    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; else MLFLOW_TRACKING_URI; else a local store in home.",
    )
    experiment_name: str = Field(default="mlops_assets", min_length=1)
    registered_model_name: str = Field(default="match_outcome", min_length=1)

    @field_validator("registered_model_name")
    @classmethod
    def _model_name_is_safe(cls, value: str) -> str:
        return validate_model_name(value)

    ui_url: str | None = Field(
        default=None, description="Base URL of the MLflow UI for links; defaults to the URI."
    )
    max_retries: int = Field(default=0, ge=0, le=10)
    retry_delay: int = Field(
        default=1, ge=0, le=60, description="Backoff factor (s) of MLflow's own HTTP retries."
    )
    connection_timeout: float = Field(default=5.0, gt=0.0, le=300.0)
    enable_circuit_breaker: bool = True
    circuit_breaker_failure_threshold: int = Field(default=5, ge=1, le=20)
    circuit_breaker_recovery_timeout: float = Field(default=60.0, ge=30.0, le=300.0)

    def effective_tracking_uri(self, home: Path) -> str:
        """Explicit setting, else MLFLOW_TRACKING_URI, else a sqlite store under `home`."""
        if self.tracking_uri:
            return self.tracking_uri
        from_env = os.environ.get("MLFLOW_TRACKING_URI")
        if from_env:
            return from_env
        return f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"


class WarehouseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_WAREHOUSE_", extra="ignore")

    backend: Literal["embedded", "postgres"] = "embedded"
    dsn: str | None = Field(
        default=None,
        description="PostgreSQL DSN (postgresql://user@host:port/db); password via PGPASSWORD.",
    )

    @field_validator("dsn")
    @classmethod
    def _dsn_is_postgres(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path:
            raise ValueError(
                "must look like postgresql://user@host:5432/dbname "
                "(scheme postgresql, a host and a database name)"
            )
        return value

    @model_validator(mode="after")
    def _postgres_needs_dsn(self) -> WarehouseSettings:
        if self.backend == "postgres" and not self.dsn:
            raise ValueError("MLOPS_WAREHOUSE_BACKEND=postgres needs MLOPS_WAREHOUSE_DSN")
        return self


class NotifierSettings(BaseSettings):
    """The alert webhook is a secret (Slack URLs embed a token): kept as SecretStr, never logged."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_ALERT_", extra="ignore")

    webhook_url: SecretStr | None = None


_BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")


class ExecutorSettings(BaseSettings):
    """How a monitoring run executes its steps: in the run's own process (default), or on
    Dagster's Celery executor, whose workers may be on other hosts."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    executor: Literal["in_process", "celery"] = "in_process"
    celery_broker: str = Field(
        default="redis://127.0.0.1:6379/0", description="Celery broker URL (Redis or AMQP)."
    )
    celery_backend: str | None = Field(
        default=None, description="Celery result backend URL; else the broker's URL."
    )

    @field_validator("celery_broker", "celery_backend")
    @classmethod
    def _broker_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            if info.field_name == "celery_backend":
                return None
            raise ValueError("must not be empty (e.g. redis://127.0.0.1:6379/0)")
        parts = urlsplit(value)
        if parts.scheme not in _BROKER_SCHEMES or not parts.hostname:
            raise ValueError(
                "must be a broker URL like redis://127.0.0.1:6379/0 "
                f"(scheme one of {', '.join(_BROKER_SCHEMES)}, and a host)"
            )
        return value

    @property
    def backend_url(self) -> str:
        return self.celery_backend or self.celery_broker


def load_executor_settings() -> ExecutorSettings:
    """The executor settings from the environment; SettingsError names a bad variable."""
    try:
        return ExecutorSettings()
    except ValidationError as error:
        lines = []
        for item in error.errors():
            var = f"MLOPS_{str(item['loc'][0]).upper()}" if item["loc"] else "MLOPS_EXECUTOR"
            message = item["msg"].removeprefix("Value error, ")
            lines.append(redact(f"{var}={item.get('input')!r}: {message}"))
        raise SettingsError("Invalid configuration:\n  " + "\n  ".join(lines)) from None


class Settings:
    """All settings, validated together so start-up fails once with every problem named."""

    def __init__(self, home: HomeSettings, mlflow: MLflowSettings, warehouse: WarehouseSettings):
        self.home_settings = home
        self.mlflow = mlflow
        self.warehouse = warehouse

    @property
    def home(self) -> Path:
        return self.home_settings.resolved_home

    @property
    def sources_root(self) -> Path:
        return self.home_settings.resolved_sources_root

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.effective_tracking_uri(self.home)

    @property
    def embedded_path(self) -> Path:
        return self.home / "warehouse.duckdb"


_PREFIXES = {HomeSettings: "MLOPS_", MLflowSettings: "MLOPS_MLFLOW_", WarehouseSettings: ""}


def _describe(cls: type[BaseSettings], error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        if cls is WarehouseSettings:
            var = f"MLOPS_WAREHOUSE_{field.upper()}" if field else "MLOPS_WAREHOUSE_*"
        else:
            var = f"{_PREFIXES[cls]}{field.upper()}"
        message = item["msg"].removeprefix("Value error, ")
        # The value is shown to say what was read, with any password or token masked.
        lines.append(redact(f"{var}={item.get('input')!r}: {message}"))
    return lines


def load_settings(**overrides: object) -> Settings:
    """Build every settings model from the environment; raise SettingsError naming bad values.

    `overrides` (home=..., tracking_uri=..., backend=..., dsn=...) let the CLI and tests pass
    values explicitly; they win over the environment.
    """
    problems: list[str] = []
    built: dict[type, BaseSettings] = {}
    for cls in (HomeSettings, MLflowSettings, WarehouseSettings):
        kwargs = {k: v for k, v in overrides.items() if k in cls.model_fields and v is not None}
        try:
            built[cls] = cls(**kwargs)
        except ValidationError as error:
            problems.extend(_describe(cls, error))
    if problems:
        raise SettingsError("Invalid configuration:\n  " + "\n  ".join(problems))
    return Settings(built[HomeSettings], built[MLflowSettings], built[WarehouseSettings])
