"""Fixtures for the tracking tests: warehouse backends and trackers with swappable clients."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_assets.runtime import build_runtime
from mlops_assets.storage.mlflow_buffer import MlflowBuffer
from mlops_assets.storage.tracking import MlflowTracker


@pytest.fixture(autouse=True)
def _restore_mlflow_http_env() -> Iterator[None]:
    """`MlflowTracker` sets MLFLOW_HTTP_REQUEST_* in os.environ; keep that inside the test."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_HTTP_REQUEST_")}
    yield
    for key in [k for k in os.environ if k.startswith("MLFLOW_HTTP_REQUEST_")]:
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _no_replay_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests tick right after recording runs nobody tried to replay; the grace period that
    leaves those to the training run's own replay is tested on its own."""
    from mlops_assets.defs.tracking import sensors

    monkeypatch.setattr(sensors, "REPLAY_GRACE_SECONDS", 0.0)


@pytest.fixture(params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, mlops_home: Path, monkeypatch: pytest.MonkeyPatch):
    """The warehouse backend under test, selected through the MLOPS_WAREHOUSE_* settings."""
    if request.param == "postgres":
        monkeypatch.setenv("MLOPS_WAREHOUSE_BACKEND", "postgres")
        monkeypatch.setenv("MLOPS_WAREHOUSE_DSN", request.getfixturevalue("pg_dsn"))
    return request.param


@pytest.fixture
def experiment_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh experiment per test, so tests sharing the session's MLflow server stay apart."""
    name = f"tracking-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MLOPS_MLFLOW_EXPERIMENT_NAME", name)
    return name


TrackerFactory = Callable[..., MlflowTracker]


@pytest.fixture
def make_tracker(mlops_home: Path) -> TrackerFactory:
    """`make_tracker(tracking_uri, client_factory=None)`: a tracker on the configured warehouse
    (settings from the environment) whose MLflow client can be replaced."""

    def make(tracking_uri: str, client_factory: Any = None) -> MlflowTracker:
        runtime = build_runtime(tracking_uri=tracking_uri)
        return MlflowTracker(
            runtime.mlflow_config,
            MlflowBuffer(runtime.warehouse),
            runtime.breaker,
            client_factory=client_factory,
        )

    return make
