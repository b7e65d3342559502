"""Issue 11 findings 4, 7 and 8: `query` and `status` only read, never hold the pipeline's
lock for long, work on a read-only warehouse file, and fail with one `error:` line.

DuckDB locking, as measured here (duckdb 1.5): a read-write connection takes an exclusive
file lock, a read-only connection a shared one. Read-only connections from several processes
coexist; a writer cannot open while any reader holds the file, and a reader cannot open while
a writer does. So a reader needs a time limit shorter than the writers' lock retry (60 s).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlops_assets.cli import main
from mlops_assets.runtime import build_runtime
from mlops_assets.storage.warehouse import DuckDBWarehouse

ROOT = Path(__file__).resolve().parents[1]
LONG_QUERY = "SELECT sum(a.range * b.range) AS s FROM range(100000000) a, range(100000000) b"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_assets.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=120,
    )


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


@pytest.fixture
def warehouse_file(mlops_home: Path) -> Path:
    build_runtime()  # creates and migrates
    return mlops_home / "warehouse.duckdb"


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
        ("SELECT * FROM read_text('/etc/passwd')", "file system operations are disabled"),
        ("SELECT * FROM read_blob('/etc/hostname')", "file system operations are disabled"),
        ("SELECT * FROM 'http://127.0.0.1:9/x.csv'", "file system operations are disabled"),
        ("SELECT * FROM glob('/etc/*')", "file system operations are disabled"),
        ("COPY (SELECT 1) TO '{out}'", "only a SELECT"),
        ("ATTACH '{out}' AS other", "only a SELECT"),
        ("INSTALL httpfs", "only a SELECT"),
    ],
    ids=["read_csv", "read_text", "read_blob", "http", "glob", "copy", "attach", "install"],
)
def test_duckdb_query_cannot_touch_files_or_network(
    warehouse_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], sql: str, why: str
):
    out = tmp_path / "written.csv"
    assert main(["query", sql.format(out=out)]) == 1
    captured = capsys.readouterr()
    assert why in one_error_line(captured.err)
    assert captured.out == "" and not out.exists()


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT * FROM mlops.no_such_table", "no_such_table"),
        ("SELECT no_such_column FROM mlops.training_runs", "no_such_column"),
        ("SELEC 1", "could not parse"),
        ("SELECT 1; SELECT 2", "exactly one SQL statement"),
    ],
)
def test_query_errors_are_one_line(
    warehouse_file: Path, capsys: pytest.CaptureFixture[str], sql: str, why: str
):
    assert main(["query", sql]) == 1
    assert why in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 3],
        lambda data: b"",
        lambda data: data[:100] + b"\xff" * 5000 + data[5100:],
    ],
    ids=["truncated", "empty", "garbage"],
)
@pytest.mark.parametrize(
    "command", [["status"], ["query", "SELECT 1 AS one"]], ids=["status", "query"]
)
def test_damaged_warehouse_is_reported_non_zero(
    warehouse_file: Path, capsys: pytest.CaptureFixture[str], damage, command: list[str]
):
    # Something in every table so that a cut-off file misses real blocks.
    DuckDBWarehouse(warehouse_file).execute(
        "INSERT INTO mlops.alert_events (event_id, alert_id, event_type, severity, created_at) "
        "SELECT range, range, 'opened', 'warning', now() FROM range(200000)"
    )
    warehouse_file.write_bytes(damage(warehouse_file.read_bytes()))
    assert main(command) != 0
    assert "embedded warehouse" in one_error_line(capsys.readouterr().err)


def test_status_and_query_read_a_read_only_file_another_reader_holds(warehouse_file: Path):
    digest = hashlib.sha256(warehouse_file.read_bytes()).hexdigest()
    warehouse_file.chmod(0o444)
    # Another process keeps a read-only connection open: readers share the lock, a writer
    # (what `status` used to open) would wait for it and give up.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import duckdb, sys, time
                con = duckdb.connect({str(warehouse_file)!r}, read_only=True)
                print("held", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        status = cli("status")
        query = cli("query", "SELECT count(*) AS n FROM mlops.training_runs")
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
        warehouse_file.chmod(0o644)
    assert status.returncode == 0, status.stderr
    assert "model" in status.stdout
    assert query.returncode == 0 and query.stdout.splitlines() == ["n", "0"], query.stderr
    assert elapsed < 30
    assert hashlib.sha256(warehouse_file.read_bytes()).hexdigest() == digest


def test_a_long_query_stops_at_its_time_limit_and_frees_the_writer(warehouse_file: Path):
    reader = subprocess.Popen(
        [sys.executable, "-m", "mlops_assets.cli", "query", LONG_QUERY, "--timeout", "3"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)  # the reader has the file by now (it imports in well under that)
        started = time.monotonic()
        # The pipeline's writer, with its lock retry shortened from 60 s to 20 s.
        DuckDBWarehouse(warehouse_file, lock_timeout=20).execute(
            "INSERT INTO mlops.alert_events (event_id, alert_id, event_type, severity, "
            "created_at) VALUES (1, 1, 'opened', 'warning', now())"
        )
        waited = time.monotonic() - started
        _, err = reader.communicate(timeout=60)
    finally:
        reader.kill()
    assert reader.returncode == 1
    assert "time limit of 3 s" in one_error_line(err)
    assert waited < 15
    assert (
        DuckDBWarehouse(warehouse_file).query("SELECT count(*) AS n FROM mlops.alert_events")[0][
            "n"
        ]
        == 1
    )


@pytest.mark.parametrize("timeout", ["0", "51", "-1"])
def test_query_time_limit_is_bounded(warehouse_file: Path, capsys, timeout: str):
    assert main(["query", "SELECT 1", "--timeout", timeout]) == 1
    assert "time limit must be" in one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_env(pg_dsn: str, mlops_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLOPS_WAREHOUSE_BACKEND", "postgres")
    monkeypatch.setenv("MLOPS_WAREHOUSE_DSN", pg_dsn)
    build_runtime()  # migrate
    return pg_dsn


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("COPY (SELECT 1) TO PROGRAM 'touch {marker}'", "got COPY"),
        ("COPY (SELECT 1) TO '{marker}'", "got COPY"),
        ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
        ("SELECT * FROM pg_ls_dir('.')", "pg_ls_dir"),
        ("SELECT lo_import('/etc/passwd')", "lo_import"),
        ("SELECT query_to_xml('COPY (SELECT 1) TO PROGRAM ''touch {marker}''', true, true, '')",
         "query_to_xml"),
        ("SELECT * FROM mlops.no_such_table", "no_such_table"),
        ("SELECT no_such_column FROM mlops.training_runs", "no_such_column"),
    ],
    ids=["copy-program", "copy-file", "pg_read_file", "pg_ls_dir", "lo_import", "query_to_xml",
         "unknown-table", "unknown-column"],
)  # fmt: skip
def test_postgres_query_refuses_files_programs_and_reports_one_line(
    pg_env: str, tmp_path: Path, capsys, sql: str, why: str
):
    marker = tmp_path / "marker"
    assert main(["query", sql.format(marker=marker)]) == 1
    assert why in one_error_line(capsys.readouterr().err)
    assert not marker.exists()


@pytest.mark.postgres
def test_postgres_query_runs_as_the_reader_role_read_only_with_a_timeout(pg_env: str, capsys):
    assert main(["query", "SELECT current_user AS u, current_setting_ok FROM (SELECT "
                 "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS "
                 "current_setting_ok) s"]) == 0  # fmt: skip
    assert capsys.readouterr().out.splitlines() == ["u,current_setting_ok", "mlops_reader,False"]
    assert main(["query", "SELECT count(*) AS n FROM mlops.training_runs"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "0"]
    assert (
        main(["query", "SELECT count(*) FROM generate_series(1, 10000000000)", "--timeout", "1"])
        == 1
    )
    assert "time limit of 1 s" in one_error_line(capsys.readouterr().err)


@pytest.mark.postgres
def test_postgres_role_alone_stops_file_and_program_access(
    pg_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Under the parser: with the SELECT-only check switched off, the role and the READ ONLY
    transaction still refuse what the issue's probes did."""
    from mlops_assets.lib import sql_guard
    from mlops_assets.runtime import build_readonly_warehouse
    from mlops_assets.storage.warehouse import WarehouseError

    monkeypatch.setattr(sql_guard, "check_select_only", lambda sql: None)
    warehouse = build_readonly_warehouse()
    marker = tmp_path / "marker"
    for sql in (
        "SELECT pg_read_file('/etc/passwd')",
        f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
        "SELECT lo_import('/etc/passwd')",
        "SELECT set_config('role', 'postgres', true), pg_read_file('/etc/passwd')",
    ):
        with pytest.raises(WarehouseError, match=r"refused by PostgreSQL|permission denied"):
            warehouse.query_readonly(sql)
    with pytest.raises(WarehouseError, match="read-only transaction"):
        warehouse.query_readonly("DELETE FROM mlops.training_runs")
    assert not marker.exists()


@pytest.mark.postgres
def test_postgres_query_reads_the_inference_log(pg_env: str, capsys):
    """Found walking the README on PostgreSQL: the per-model inference tables (schema
    `inference`) could be read with `query` on the embedded engine but were refused on
    PostgreSQL ("permission denied for schema inference")."""
    # A model's tables are created at its first ingestion, after the migrations.
    build_runtime().warehouse.execute(
        'CREATE TABLE inference."credit__predictions" (prediction_id TEXT PRIMARY KEY)'
    )
    assert main(["query", 'SELECT count(*) AS n FROM inference."credit__predictions"']) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "0"]
