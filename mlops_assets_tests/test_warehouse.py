"""The warehouse on both engines: migrations, product tables, bound values, read-only queries,
and several processes writing to one embedded file at once."""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

import mlops_assets.storage.warehouse as warehouse_module
from mlops_assets.storage.warehouse import (
    DuckDBWarehouse,
    PostgresWarehouse,
    Warehouse,
    WarehouseError,
    migrations,
    sql_file,
)

HOSTILE_NAME = "x'; DROP TABLE y; --"

# Tables the product documents, with the columns that tie rows to MLflow and to alerts.
PRODUCT_TABLES: dict[str, set[str]] = {
    "training_runs": {
        "local_run_id",
        "model_name",
        "model_version",
        "mlflow_experiment_id",
        "mlflow_run_id",
        "tracking_status",
    },
    "training_baselines": {
        "local_run_id",
        "baseline_mlflow_run_id",
        "mlflow_experiment_id",
        "reference_sample",
    },
    "production_metrics": {
        "model_name",
        "metric",
        "mlflow_experiment_id",
        "mlflow_run_id",
        "basis",
        "estimated_value",
        "estimation_error",
    },
    "quarantine": {"model_name", "batch_id", "row_id", "reason", "row_json"},
    "ingest_batches": {"model_name", "kind", "batch_id", "n_good", "n_quarantined"},
    "ml_performance_alerts": {
        "alert_id",
        "severity",
        "status",
        "mlflow_experiment_id",
        "mlflow_run_id",
    },
    "ml_feature_drift_detection": {
        "feature",
        "baseline_mlflow_run_id",
        "mlflow_experiment_id",
    },
    "ml_model_health_status": {"model_name", "overall_status", "active_mlflow_run_ids"},
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    """An empty warehouse on each engine (a DuckDB file, a fresh PostgreSQL database)."""
    if request.param == "embedded":
        return DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    return PostgresWarehouse(request.getfixturevalue("pg_dsn"))


@pytest.fixture
def migrated(engine: Warehouse) -> Warehouse:
    engine.migrate()
    return engine


def _columns(wh: Warehouse) -> set[tuple[str, str, str, str]]:
    rows = wh.query(
        "SELECT table_schema, table_name, column_name, data_type "
        "FROM information_schema.columns WHERE table_schema IN ('mlops', 'curated')"
    )
    return {(r["table_schema"], r["table_name"], r["column_name"], r["data_type"]) for r in rows}


def _tables(wh: Warehouse) -> set[tuple[str, str, str]]:
    rows = wh.query(
        "SELECT table_schema, table_name, table_type FROM information_schema.tables "
        "WHERE table_schema IN ('mlops', 'curated')"
    )
    return {(r["table_schema"], r["table_name"], r["table_type"]) for r in rows}


def _training_run(local_run_id: str, model_name: str = "match_outcome") -> dict:
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    return {
        "local_run_id": local_run_id,
        "model_name": model_name,
        "model_version": "1",
        "mlflow_experiment_id": "7",
        "mlflow_run_id": f"mlflow-{local_run_id}",
        "experiment_name": "mlops_assets",
        "status": "FINISHED",
        "tracking_status": "TRACKED",
        "m_accuracy": 0.7,
        "m_precision": 0.6,
        "m_recall": 0.5,
        "m_f1": 0.55,
        "m_roc_auc": 0.75,
        "m_log_loss": 0.58,
        "m_roi": 0.04,
        "n_train": 600,
        "n_test": 200,
        "params_json": '{"n_estimators": 10}',
        "started_at": now,
        "finished_at": now + dt.timedelta(seconds=30),
        "task": "binary",
        "metrics_json": '{"accuracy": 0.7}',
        "origin": "trained",
    }


def _insert_run(wh: Warehouse, params: dict) -> None:
    sql = sql_file("queries/upsert_training_run")
    missing = set(warehouse_module._PLACEHOLDER.findall(sql)) - set(params)
    assert not missing, f"upsert_training_run.sql has new placeholders: {missing}"
    wh.execute(sql, params)


def _count_runs(wh: Warehouse) -> int:
    return wh.query("SELECT count(*) AS n FROM mlops.training_runs")[0]["n"]


# --------------------------------------------------------------------------- migrations


def test_migrations_are_idempotent(engine: Warehouse):
    expected = [m.name for m in migrations()]
    assert engine.schema_version() == 0

    first = engine.migrate()
    assert first == expected
    version = engine.schema_version()
    assert version == max(m.version for m in migrations())
    tables, columns = _tables(engine), _columns(engine)
    assert columns, "migrations created no columns"

    assert engine.migrate() == []
    assert engine.schema_version() == version
    assert _tables(engine) == tables
    assert _columns(engine) == columns
    recorded = engine.query("SELECT version, checksum FROM mlops.schema_migrations")
    assert {r["version"]: r["checksum"] for r in recorded} == {
        m.version: m.checksum for m in migrations()
    }


def test_a_new_migration_is_applied_and_a_changed_one_is_refused(
    engine: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    sql_dir = tmp_path / "sql"
    shutil.copytree(warehouse_module.sql_root(), sql_dir)
    monkeypatch.setattr(warehouse_module, "sql_root", lambda: sql_dir)
    engine.migrate()

    (sql_dir / "migrations" / "9001_probe.sql").write_text(
        "CREATE TABLE IF NOT EXISTS mlops.migration_probe (x INTEGER);\n"
    )
    assert engine.migrate() == ["9001_probe"]
    assert engine.schema_version() == 9001
    before = _columns(engine)
    probe = {(t, c, d.lower()) for schema, t, c, d in before if t == "migration_probe"}
    assert probe == {("migration_probe", "x", "integer")}

    first = sorted((sql_dir / "migrations").glob("0002_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")
    with pytest.raises(WarehouseError, match="changed after it was applied"):
        engine.migrate()
    assert _columns(engine) == before
    assert engine.schema_version() == 9001


def test_product_tables_exist_with_their_columns(migrated: Warehouse):
    rows = migrated.query(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'mlops'"
    )
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["table_name"], set()).add(row["column_name"])
    for table, columns in PRODUCT_TABLES.items():
        assert table in found, f"mlops.{table} missing"
        assert columns <= found[table], f"mlops.{table} lacks {columns - found[table]}"


# --------------------------------------------------------------------------- bound values


@pytest.mark.parametrize(
    "model_name",
    [
        HOSTILE_NAME,
        "100% sure %s %(model_name)s :model_name $1 ?",
        'naïve "quoted" name\\with\nnewline — ✓',
    ],
    ids=["sql-injection", "placeholders", "unicode"],
)
def test_values_are_bound_never_formatted(migrated: Warehouse, model_name: str):
    migrated.execute("CREATE TABLE y (k INTEGER)")
    migrated.execute("INSERT INTO y VALUES (1)")
    _insert_run(migrated, _training_run("run-1", model_name=model_name))
    _insert_run(migrated, _training_run("run-'2'", model_name=model_name))

    rows = migrated.query(
        "SELECT local_run_id, model_name FROM mlops.training_runs WHERE model_name = :name "
        "ORDER BY local_run_id",
        {"name": model_name},
    )
    assert [(r["local_run_id"], r["model_name"]) for r in rows] == [
        ("run-'2'", model_name),
        ("run-1", model_name),
    ]
    assert migrated.query("SELECT k FROM y") == [{"k": 1}]


# --------------------------------------------------------------------------- read-only queries


@pytest.fixture
def seeded(migrated: Warehouse) -> Warehouse:
    for i in range(3):
        _insert_run(migrated, _training_run(f"run-{i}"))
    return migrated


def test_query_readonly_returns_rows(seeded: Warehouse):
    rows = seeded.query_readonly(
        "SELECT local_run_id, ';' AS semicolon\nFROM mlops.training_runs\nORDER BY local_run_id;\n"
    )
    assert rows == [{"local_run_id": f"run-{i}", "semicolon": ";"} for i in range(3)]


def test_query_readonly_returns_literals_verbatim(migrated: Warehouse):
    """No parameters, so nothing in the text is a placeholder: ':name', '%s' stay as written."""
    rows = migrated.query_readonly("SELECT 'at :noon' AS a, '100%s' AS b, 2::INTEGER AS c")
    assert rows == [{"a": "at :noon", "b": "100%s", "c": 2}]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) AS n -- how many;\nFROM mlops.training_runs",
        "SELECT count(*) AS n, 'a;\nb' AS text FROM mlops.training_runs",
        "SELECT count(*) AS n /* one;\ntwo; */ FROM mlops.training_runs",
    ],
    ids=["line-comment", "string-literal", "block-comment"],
)
def test_query_readonly_semicolons_in_comments_and_literals_end_nothing(
    seeded: Warehouse, sql: str
):
    assert seeded.query_readonly(sql)[0]["n"] == 3


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 AS a;\nDELETE FROM mlops.training_runs;",
        "SELECT 1 AS a; DELETE FROM mlops.training_runs",
        "COMMIT; DELETE FROM mlops.training_runs",
        "SELECT 1 AS a; COMMIT; DELETE FROM mlops.training_runs;",
    ],
    ids=["two-lines", "one-line", "commit-then-delete", "select-commit-delete"],
)
def test_query_readonly_refuses_two_statements(seeded: Warehouse, sql: str):
    with pytest.raises(WarehouseError, match="exactly one SQL statement"):
        seeded.query_readonly(sql)
    assert _count_runs(seeded) == 3


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM mlops.training_runs",
        "UPDATE mlops.training_runs SET model_name = 'changed'",
        "INSERT INTO mlops.training_runs (local_run_id) SELECT 'x'",
        "DROP TABLE mlops.training_runs",
        "CREATE TABLE mlops.created_by_readonly AS SELECT 1 AS a",
        "COMMIT",
    ],
    ids=["delete", "update", "insert", "drop", "create", "commit"],
)
def test_query_readonly_changes_nothing(seeded: Warehouse, sql: str):
    before = seeded.query("SELECT * FROM mlops.training_runs ORDER BY local_run_id")
    tables = _tables(seeded)
    with contextlib.suppress(Exception):  # refusing is fine; only the data matters here
        seeded.query_readonly(sql)
    assert seeded.query("SELECT * FROM mlops.training_runs ORDER BY local_run_id") == before
    assert _tables(seeded) == tables


# --------------------------------------------------------------------------- concurrent writers

WRITERS = 4
ROWS_PER_WRITER = 60


def _writer(path: str, worker: int, rows: int, start, results) -> None:
    """Child process: insert `rows` rows, one short transaction each, into the shared file."""
    try:
        wh = DuckDBWarehouse(Path(path))
        start.wait(timeout=120)
        first = time.time()
        for seq in range(rows):
            wh.execute(
                "INSERT INTO mlops.concurrent_writes (worker, seq, pid) VALUES (:w, :s, :p)",
                {"w": worker, "s": seq, "p": multiprocessing.current_process().pid},
            )
        results.put((worker, None, first, time.time()))
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test
        results.put((worker, traceback.format_exc(), 0.0, 0.0))


@pytest.mark.slow
def test_concurrent_writer_processes_on_the_embedded_file(tmp_path: Path):
    path = tmp_path / "shared.duckdb"
    wh = DuckDBWarehouse(path)
    wh.migrate()
    wh.execute(
        "CREATE TABLE mlops.concurrent_writes ("
        " worker INTEGER NOT NULL, seq INTEGER NOT NULL, pid INTEGER NOT NULL,"
        " PRIMARY KEY (worker, seq))"
    )
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(str(path), w, ROWS_PER_WRITER, start, results))
        for w in range(WRITERS)
    ]
    for proc in procs:
        proc.start()
    try:
        start.set()
        reports = [results.get(timeout=480) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join()

    errors = {worker: error for worker, error, _, _ in reports if error}
    assert not errors, "\n".join(f"writer {w}:\n{e}" for w, e in errors.items())
    assert [proc.exitcode for proc in procs] == [0] * WRITERS
    # The writers really overlapped: each began before the others had all finished.
    finished_first = min(end for _, _, _, end in reports)
    assert max(begin for _, _, begin, _ in reports) < finished_first

    rows = wh.query(
        "SELECT worker, count(*) AS n, min(seq) AS lo, max(seq) AS hi, count(DISTINCT pid) AS p "
        "FROM mlops.concurrent_writes GROUP BY worker ORDER BY worker"
    )
    assert rows == [
        {"worker": w, "n": ROWS_PER_WRITER, "lo": 0, "hi": ROWS_PER_WRITER - 1, "p": 1}
        for w in range(WRITERS)
    ]
    pids = wh.query("SELECT count(DISTINCT pid) AS n FROM mlops.concurrent_writes")
    assert pids == [{"n": WRITERS}]


def test_migrate_fails_loudly_when_it_finds_no_migration_files(
    engine: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "sql" / "migrations").mkdir(parents=True)
    monkeypatch.setattr(warehouse_module, "sql_root", lambda: tmp_path / "sql")
    with pytest.raises(WarehouseError, match="no migration files"):
        engine.migrate()


def test_held_open_serves_transactions_and_lets_go_after(tmp_path: Path):
    wh = DuckDBWarehouse(tmp_path / "held.duckdb")
    wh.execute("CREATE TABLE t (x INTEGER)")
    with wh.held_open():
        wh.execute("INSERT INTO t VALUES (1)")
        assert wh.query("SELECT count(*) AS n FROM t") == [{"n": 1}]
        # The read-only connection has another configuration: refused while held.
        with pytest.raises(WarehouseError, match="could not open the embedded warehouse"):
            wh.query_readonly("SELECT 1 AS one")
    assert wh.query_readonly("SELECT count(*) AS n FROM t") == [{"n": 1}]


# --------------------------------------------------------------------------- sessions


def _count_connections(engine: Warehouse, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Connections opened by any warehouse object of the engine's type, counted."""
    opened = [0]
    connect = type(engine)._connect  # type: ignore[attr-defined]

    def counting(self, *args, **kwargs):
        opened[0] += 1
        return connect(self, *args, **kwargs)

    monkeypatch.setattr(type(engine), "_connect", counting)
    return opened


def _scratch(wh: Warehouse) -> None:
    wh.execute("CREATE TABLE IF NOT EXISTS mlops.session_rows (n INTEGER PRIMARY KEY)")


def _rows(wh: Warehouse) -> list[int]:
    return [r["n"] for r in wh.query("SELECT n FROM mlops.session_rows ORDER BY n")]


def test_a_session_shares_one_connection_and_commits_each_transaction(
    migrated: Warehouse, monkeypatch: pytest.MonkeyPatch
):
    _scratch(migrated)
    opened = _count_connections(migrated, monkeypatch)
    with migrated.session():
        migrated.execute("INSERT INTO mlops.session_rows VALUES (1)")
        with (
            pytest.raises(Exception, match=r"(?i)duplicate|constraint|unique"),
            migrated.transaction() as tx,
        ):
            tx.execute("INSERT INTO mlops.session_rows VALUES (2)")
            tx.execute("INSERT INTO mlops.session_rows VALUES (1)")  # fails: rolled back
        # Another warehouse object for the same database joins the session.
        same = (
            DuckDBWarehouse(migrated.path)
            if isinstance(migrated, DuckDBWarehouse)
            else PostgresWarehouse(migrated.dsn)  # type: ignore[attr-defined]
        )
        same.execute("INSERT INTO mlops.session_rows VALUES (3)")
        assert _rows(migrated) == [1, 3]
    # The failed transaction dropped the shared connection; the next one opened a fresh one.
    assert opened[0] == 2
    assert _rows(migrated) == [1, 3]  # each transaction committed on its own
    assert opened[0] == 3  # outside a session: one connection per transaction again


def test_a_transaction_inside_another_one_gets_its_own_connection(
    migrated: Warehouse, monkeypatch: pytest.MonkeyPatch
):
    _scratch(migrated)
    opened = _count_connections(migrated, monkeypatch)
    with migrated.session(), migrated.transaction() as outer:
        outer.execute("INSERT INTO mlops.session_rows VALUES (7)")
        assert migrated.query("SELECT count(*) AS n FROM mlops.schema_migrations")[0]["n"] > 0
    assert opened[0] == 2
    assert _rows(migrated) == [7]


def _open_elsewhere(path: Path) -> subprocess.CompletedProcess:
    code = f"import duckdb; duckdb.connect({str(path)!r}).close()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_an_embedded_session_keeps_the_file_only_while_it_lasts(tmp_path: Path):
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    wh.migrate()
    with wh.session():
        wh.query("SELECT 1 AS one")
        during = _open_elsewhere(wh.path)
    after = _open_elsewhere(wh.path)
    # Other processes wait for the file while a session holds it, and get it right after.
    assert during.returncode != 0 and "lock" in during.stderr.lower(), during.stderr
    assert after.returncode == 0, after.stderr


@pytest.mark.postgres
def test_reads_reuse_a_checked_connection(pg_dsn: str):
    """A finished read's connection serves the process's next read of the database (the
    driver's connect costs ~80 ms), each read in a snapshot of its own; one the server
    closed meanwhile is replaced, and the read succeeds."""
    import psycopg

    wh = PostgresWarehouse(pg_dsn)
    wh.migrate()
    wh.execute("CREATE TABLE mlops.reads (n INTEGER)")

    def read() -> tuple[int, int]:
        (frame,) = wh.read_frames(
            [("SELECT pg_backend_pid() AS pid, (SELECT count(*) FROM mlops.reads) AS n", None)],
            types={"pid": "double", "n": "double"},
        )
        return int(frame["pid"].iloc[0]), int(frame["n"].iloc[0])

    first = read()
    wh.execute("INSERT INTO mlops.reads VALUES (1)")
    second = read()
    assert second == (first[0], 1)  # the same connection, a new snapshot
    with psycopg.connect(pg_dsn, autocommit=True) as con:
        con.execute("SELECT pg_terminate_backend(%s)", (second[0],))
    third = read()
    assert third[0] != second[0] and third[1] == 1


def test_a_large_frame_is_copied_whole_and_exact(migrated: Warehouse):
    """More rows than one CSV block of the PostgreSQL COPY (blocks end at rows): every row
    stored once, text with the characters CSV quotes kept, an empty string apart from NULL."""
    import pandas as pd

    n = 3 * warehouse_module._CSV_BLOCK_ROWS + 5
    tricky = ["a,b", 'say "hi"', "two\nlines", "", None]
    frame = pd.DataFrame(
        {
            "n": range(n),
            "x": [i / 7 if i % 11 else None for i in range(n)],
            "t": [tricky[i % len(tricky)] for i in range(n)],
            "seen": pd.Timestamp("2026-11-30 12:00") + pd.to_timedelta(range(n), unit="s"),
        }
    )
    migrated.execute(
        "CREATE TABLE mlops.copied (n BIGINT PRIMARY KEY, x DOUBLE PRECISION, t TEXT, "
        "seen TIMESTAMP)"
    )
    with migrated.transaction() as tx:
        assert tx.insert_frame("mlops.copied", frame) == n
        back = tx.select_frame(
            "SELECT n, x, t, seen FROM mlops.copied ORDER BY n",
            types={"n": "bigint", "x": "double", "t": "text", "seen": "timestamp"},
        )
    assert back["n"].tolist() == list(range(n))
    assert back["x"].isna().tolist() == frame["x"].isna().tolist()
    assert back["x"].dropna().tolist() == frame["x"].dropna().tolist()
    assert [None if pd.isna(t) else t for t in back["t"]] == frame["t"].tolist()
    assert (back["seen"] == frame["seen"]).all()
