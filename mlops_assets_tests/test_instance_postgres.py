"""The repo's production dagster.yaml against a real PostgreSQL database.

The instance is built from the file exactly as shipped (copied into a temporary DAGSTER_HOME),
with the DAGSTER_PG_* variables pointing at a fresh database; what Dagster writes is then read
back both through the instance and with plain SQL.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PG_VARIABLES = (
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_DB",
    "DAGSTER_PG_PORT",
)

pytestmark = pytest.mark.postgres


@dg.asset(group_name="probe")
def instance_probe() -> int:
    return 42


@pytest.fixture
def pg_instance(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    parts = urlsplit(pg_dsn)
    monkeypatch.setenv("DAGSTER_PG_USERNAME", parts.username or "postgres")
    # Trust auth: the variable must be set, and an empty value means "no password".
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", parts.password or "")
    monkeypatch.setenv("DAGSTER_PG_HOST", parts.hostname or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_DB", parts.path.lstrip("/"))
    monkeypatch.setenv("DAGSTER_PG_PORT", str(parts.port or 5432))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(home))
    yield instance
    instance.dispose()


def test_dagster_yaml_reads_every_connection_value_from_the_environment():
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    db = config["storage"]["postgres"]["postgres_db"]
    sources = {
        field: db[field] for field in ("username", "password", "hostname", "db_name", "port")
    }
    assert sources == {
        "username": {"env": "DAGSTER_PG_USERNAME"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "port": {"env": "DAGSTER_PG_PORT"},
    }
    assert config["telemetry"] == {"enabled": False}


def test_instance_uses_postgres_and_the_queued_coordinator(pg_instance: dg.DagsterInstance):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(pg_instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(pg_instance.run_coordinator, QueuedRunCoordinator)
    queue = pg_instance.get_concurrency_config().run_queue_config
    assert queue is not None
    assert queue.max_concurrent_runs == 4
    assert queue.tag_concurrency_limits, "a tag concurrency limit is configured"
    assert all(limit["limit"] >= 1 for limit in queue.tag_concurrency_limits)
    assert pg_instance.get_settings("telemetry") == {"enabled": False}


def test_materialization_is_stored_in_postgres(pg_instance: dg.DagsterInstance, pg_dsn: str):
    result = dg.materialize([instance_probe], instance=pg_instance)
    assert result.success
    assert result.output_for_node("instance_probe") == 42

    event = pg_instance.get_latest_materialization_event(dg.AssetKey("instance_probe"))
    assert event is not None
    assert event.run_id == result.run_id
    assert event.asset_materialization.asset_key == dg.AssetKey("instance_probe")

    with psycopg.connect(pg_dsn) as con:
        rows = con.execute(
            "SELECT run_id, asset_key FROM event_logs "
            "WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        ).fetchall()
        runs = con.execute("SELECT run_id, status FROM runs").fetchall()
    assert rows == [(result.run_id, '["instance_probe"]')]
    assert runs == [(result.run_id, "SUCCESS")]


def test_unset_password_variable_is_a_clear_error(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    parts = urlsplit(pg_dsn)
    for name, value in zip(
        PG_VARIABLES,
        ["postgres", None, parts.hostname, parts.path.lstrip("/"), str(parts.port or 5432)],
        strict=True,
    ):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with pytest.raises(Exception, match="DAGSTER_PG_PASSWORD"):
        dg.DagsterInstance.from_config(str(tmp_path))
