"""Shared fixtures: a throwaway PostgreSQL database and a real `mlflow server` on loopback.

Integration tests need real servers. Locally, a missing PostgreSQL skips them with the reason;
under CI (`CI=true`) it fails, so a silently skipped integration test can never pass CI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_assets.local_mlflow import LocalMlflowServer, free_port  # noqa: F401 - used by tests

PG_ADMIN_DSN = os.environ.get("MLOPS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip locally, fail under CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return None
    except Exception as error:  # noqa: BLE001 - any failure means "no server"
        return f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {error}"


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    problem = _pg_reachable()
    require(problem is None, problem or "")
    return PG_ADMIN_DSN


@pytest.fixture
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"mlops_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as con:
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = pg_admin_dsn.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as con:
            con.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class MlflowServer(LocalMlflowServer):
    """The real server for tests; `client()` talks to it directly."""

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """Started once per session (it takes ~13 s); tests that stop it must restart it."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def running_mlflow(mlflow_server: MlflowServer) -> MlflowServer:
    mlflow_server.start()
    return mlflow_server


@pytest.fixture
def mlops_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated data directory with MLOPS_* settings cleared."""
    for key in list(os.environ):
        if key.startswith("MLOPS_") or key == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    return home
