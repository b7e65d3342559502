"""The warehouse: one interface, two engines (embedded DuckDB, external PostgreSQL).

SQL is written once, in `sql/`, with `:name` placeholders; each engine translates them to its
driver's bound-parameter syntax, so values are never formatted into SQL text.

The embedded engine opens a short connection per transaction and retries while another
process holds the file: DuckDB allows one writing process per file, and under `dagster dev`
the daemon, the webserver and run workers are separate processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import io
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas costs ~0.3 s to import; only the functions that need it import it
    import pandas as pd

# A source checkout keeps the SQL at the top of the repository; a wheel ships the same files as
# package data of `mlops_assets.sql` (see setup.py).
_CHECKOUT_SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


class WarehouseError(RuntimeError):
    """The warehouse could not be reached or a statement failed; the message says which."""


class IndexRepairedError(WarehouseError):
    """The embedded engine found a table's index broken (a writer killed mid-transaction can
    leave it so), rebuilt the table, and rolled the transaction back: run it again."""

    def __init__(self, table: str, error: BaseException):
        super().__init__(
            f"the index of {table} was broken ({error}); the table was rebuilt from its rows "
            "and the transaction rolled back, so it can simply be run again"
        )
        self.table = table


# DuckDB's words for an ART index that no longer matches its table.
_BROKEN_INDEX = re.compile(
    r"failed to delete all rows from index|index .*(corrupt|inconsistent)", re.IGNORECASE
)
_WRITTEN_TABLE = re.compile(
    r"^\s*(?:DELETE\s+FROM|UPDATE|INSERT\s+INTO)\s+([a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)",
    re.IGNORECASE,
)


def sql_root() -> Traversable:
    """Where the SQL files are: in the installed package, else in the source checkout."""
    packaged = importlib.resources.files("mlops_assets") / "sql"
    if packaged.is_dir():
        return packaged
    if _CHECKOUT_SQL_DIR.is_dir():
        return _CHECKOUT_SQL_DIR
    raise WarehouseError(
        f"no SQL files: neither {packaged} (installed package) nor {_CHECKOUT_SQL_DIR} "
        "(source checkout) exists; the package was built without its sql/ data"
    )


def sql_file(name: str) -> str:
    """Text of `sql/<name>.sql` (for example `queries/select_training_runs`)."""
    path = sql_root().joinpath(*f"{name}.sql".split("/"))
    if not path.is_file():
        raise WarehouseError(f"SQL file not found: {path}")
    return path.read_text()


def split_statements(text: str) -> list[str]:
    """Split a migration file into statements (statements end with `;` at the end of a line)."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.M) if s.strip()]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


def migrations() -> list[Migration]:
    folder = sql_root() / "migrations"
    paths = sorted(
        (p for p in folder.iterdir() if p.name.endswith(".sql")) if folder.is_dir() else [],
        key=lambda p: p.name,
    )
    if not paths:
        # Applying nothing would leave every later statement failing on missing tables.
        raise WarehouseError(f"no migration files in {folder}; the package is incomplete")
    return [
        Migration(int(p.name.split("_", 1)[0]), p.name.removesuffix(".sql"), p.read_text())
        for p in paths
    ]


class Transaction(ABC):
    @abstractmethod
    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None: ...

    @abstractmethod
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]: ...

    @abstractmethod
    def insert_frame(self, table: str, frame: pd.DataFrame) -> int: ...

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.query(sql, params))


class Warehouse(ABC):
    engine: str

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[Transaction]: ...

    @abstractmethod
    def _lock_for_migration(self, tx: Transaction) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, without secrets."""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with self.transaction() as tx:
            tx.execute(sql, params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.transaction() as tx:
            return tx.query(sql, params)

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        with self.transaction() as tx:
            return tx.query_df(sql, params)

    def query_readonly(self, sql: str) -> list[dict[str, Any]]:
        """Run one statement that cannot change anything: the engine's own parser must find
        exactly one statement; it runs in a transaction that is read-only on PostgreSQL and
        rolled back on both engines. The text is sent as written (no placeholders)."""
        try:
            with self.transaction() as tx:
                self._make_readonly(tx)
                rows = self._query_one_statement(tx, sql)
                raise _Rollback(rows)
        except _Rollback as done:
            return done.rows

    @abstractmethod
    def _query_one_statement(self, tx: Transaction, sql: str) -> list[dict[str, Any]]: ...

    def _make_readonly(self, tx: Transaction) -> None:  # noqa: B027 - optional hook
        """Engines that can enforce read-only transactions do so (PostgreSQL)."""

    def schema_version(self) -> int:
        with self.transaction() as tx:
            if not self._has_migrations_table(tx):
                return 0
            rows = tx.query("SELECT max(version) AS v FROM mlops.schema_migrations")
            return int(rows[0]["v"] or 0)

    def _has_migrations_table(self, tx: Transaction) -> bool:
        rows = tx.query(
            "SELECT count(*) AS n FROM information_schema.tables "
            "WHERE table_schema = 'mlops' AND table_name = 'schema_migrations'"
        )
        return rows[0]["n"] > 0

    def migrate(self) -> list[str]:
        """Apply pending migrations, each in its own transaction; return the names applied.

        Idempotent: applied versions are recorded in `mlops.schema_migrations`, and a file that
        changed after being applied is an error rather than a silent divergence.
        """
        applied: list[str] = []
        for migration in migrations():
            with self.transaction() as tx:
                self._lock_for_migration(tx)
                tx.execute("CREATE SCHEMA IF NOT EXISTS mlops")
                tx.execute(
                    "CREATE TABLE IF NOT EXISTS mlops.schema_migrations ("
                    " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                    " checksum TEXT NOT NULL, applied_at TIMESTAMP NOT NULL)"
                )
                done = tx.query(
                    "SELECT checksum FROM mlops.schema_migrations WHERE version = :v",
                    {"v": migration.version},
                )
                if done:
                    if done[0]["checksum"] != migration.checksum:
                        raise WarehouseError(
                            f"migration {migration.name} changed after it was applied "
                            f"(recorded {done[0]['checksum']}, file {migration.checksum}); "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                for statement in split_statements(migration.text):
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO mlops.schema_migrations (version, name, checksum, applied_at) "
                    "VALUES (:v, :n, :c, CURRENT_TIMESTAMP)",
                    {"v": migration.version, "n": migration.name, "c": migration.checksum},
                )
                applied.append(migration.name)
        return applied


class _Rollback(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows


def _used(sql: str, params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Only the parameters the statement names (DuckDB rejects extra ones)."""
    if not params:
        return None
    names = set(_PLACEHOLDER.findall(sql))
    return {k: v for k, v in params.items() if k in names}


def _check_table(table: str) -> str:
    if not _IDENTIFIER.match(table):
        raise WarehouseError(f"not a schema-qualified table name: {table!r}")
    return table


# --------------------------------------------------------------------------- DuckDB


class _BrokenIndexError(Exception):
    """Raised inside a DuckDB transaction; the warehouse repairs `tables` after the rollback."""

    def __init__(self, tables: set[str], error: BaseException):
        super().__init__(str(error))
        self.tables, self.error = tables, error


class _DuckTransaction(Transaction):
    def __init__(self, con: Any):
        self._con = con
        # Tables this transaction wrote: the candidates when DuckDB reports a broken index
        # (at the statement or at COMMIT, where its message names no table).
        self.written: set[str] = set()

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        target = _WRITTEN_TABLE.match(sql)
        if target:
            self.written.add(target.group(1).lower())
        try:
            self._con.execute(_PLACEHOLDER.sub(r"$\1", sql), _used(sql, params))
        except Exception as error:
            if target and _BROKEN_INDEX.search(str(error)):
                raise _BrokenIndexError({target.group(1).lower()}, error) from error
            raise

    def executemany(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self._con.executemany(_PLACEHOLDER.sub(r"$\1", sql), [dict(r) for r in rows])

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        cursor = self._con.execute(_PLACEHOLDER.sub(r"$\1", sql), _used(sql, params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        return self._con.execute(_PLACEHOLDER.sub(r"$\1", sql), _used(sql, params)).df()

    def insert_frame(self, table: str, frame: pd.DataFrame) -> int:
        if frame.empty:
            return 0
        self.written.add(_check_table(table))
        columns = ", ".join(f'"{c}"' for c in frame.columns)
        self._con.register("_incoming_frame", frame)
        try:
            self._con.execute(
                f"INSERT INTO {_check_table(table)} ({columns}) "  # noqa: S608 - checked names
                f"SELECT {columns} FROM _incoming_frame"
            )
        finally:
            self._con.unregister("_incoming_frame")
        return len(frame)


class DuckDBWarehouse(Warehouse):
    engine = "embedded"

    def __init__(self, path: Path, *, lock_timeout: float = 60.0):
        self.path = Path(path)
        self.lock_timeout = lock_timeout

    def describe(self) -> str:
        return f"embedded DuckDB at {self.path}"

    def _connect(self) -> Any:
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.005
        while True:
            try:
                return duckdb.connect(str(self.path))
            except (duckdb.IOException, duckdb.BinderException) as error:
                # Another process holds the file lock, or another thread of this one is opening
                # or closing the same file ("Unique file handle conflict"): try again shortly.
                text = str(error).lower()
                transient = "lock" in text or "file handle conflict" in text
                if not transient or time.monotonic() > deadline:
                    raise WarehouseError(
                        f"could not open the embedded warehouse {self.path}: {error}"
                    ) from error
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.2)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        con = self._connect()
        broken: _BrokenIndexError | None = None
        try:
            con.execute("BEGIN TRANSACTION")
            tx = _DuckTransaction(con)
            yield tx
            try:
                con.execute("COMMIT")
            except Exception as error:
                if tx.written and _BROKEN_INDEX.search(str(error)):
                    raise _BrokenIndexError(set(tx.written), error) from error
                raise
        except _BrokenIndexError as error:
            with contextlib.suppress(Exception):
                con.execute("ROLLBACK")
            broken = error
        except BaseException:
            # The original error matters more than a failed rollback.
            with contextlib.suppress(Exception):
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()
        if broken is not None:
            for table in sorted(broken.tables):
                self.rebuild_table(table)
            names = ", ".join(sorted(broken.tables))
            raise IndexRepairedError(names, broken.error) from broken.error

    def rebuild_table(self, table: str) -> int:
        """Recreate `table` from its own DDL and rows, with its indexes: DuckDB cannot repair
        an ART index in place, and a rebuilt table has a fresh one. Returns the rows kept."""
        schema, name = _check_table(table).split(".")
        con = self._connect()
        try:
            ddl = con.execute(
                "SELECT sql FROM duckdb_tables() WHERE schema_name = $s AND table_name = $t",
                {"s": schema, "t": name},
            ).fetchall()
            if not ddl:
                raise WarehouseError(f"cannot rebuild {table}: no such table")
            indexes = con.execute(
                "SELECT sql FROM duckdb_indexes() WHERE schema_name = $s AND table_name = $t "
                "AND sql IS NOT NULL",
                {"s": schema, "t": name},
            ).fetchall()
            broken = f"{name}__broken"
            con.execute("BEGIN TRANSACTION")
            for (index_sql,) in indexes:  # dropped with the old table's name; recreated below
                index_name = re.search(r"INDEX\s+(\w+)", index_sql, re.IGNORECASE)
                if index_name:
                    con.execute(f'DROP INDEX IF EXISTS "{schema}"."{index_name.group(1)}"')
            con.execute(f'ALTER TABLE "{schema}"."{name}" RENAME TO "{broken}"')
            con.execute(ddl[0][0])
            # A key the broken index let through twice is kept once.
            con.execute(
                f'INSERT OR IGNORE INTO "{schema}"."{name}" '  # noqa: S608 - catalog names
                f'SELECT * FROM "{schema}"."{broken}"'
            )
            con.execute(f'DROP TABLE "{schema}"."{broken}"')
            for (index_sql,) in indexes:
                con.execute(index_sql)
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
            return int(con.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0])  # noqa: S608
        except BaseException:
            with contextlib.suppress(Exception):
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def _lock_for_migration(self, tx: Transaction) -> None:
        """The DuckDB file lock already makes this process the only writer."""

    def _query_one_statement(self, tx: Transaction, sql: str) -> list[dict[str, Any]]:
        import duckdb

        con = tx._con  # type: ignore[attr-defined]
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as error:
            raise WarehouseError(f"could not parse the query: {error}") from error
        if len(statements) != 1:
            raise WarehouseError(f"expected exactly one SQL statement, got {len(statements)}")
        if statements[0].type != duckdb.StatementType.SELECT:
            raise WarehouseError(f"only a SELECT can run read-only, got {statements[0].type.name}")
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# --------------------------------------------------------------------------- PostgreSQL


class _PgTransaction(Transaction):
    def __init__(self, con: Any):
        self._con = con

    @staticmethod
    def _sql(sql: str) -> str:
        return _PLACEHOLDER.sub(r"%(\1)s", sql.replace("%", "%%"))

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._con.execute(self._sql(sql) if params else sql, params or None)

    def executemany(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            with self._con.cursor() as cur:
                cur.executemany(self._sql(sql), list(rows))

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        from psycopg.rows import dict_row

        with self._con.cursor(row_factory=dict_row) as cur:
            cur.execute(self._sql(sql) if params else sql, params or None)
            return list(cur.fetchall()) if cur.description else []

    def insert_frame(self, table: str, frame: pd.DataFrame) -> int:
        if frame.empty:
            return 0
        columns = ", ".join(f'"{c}"' for c in frame.columns)
        clean = frame.astype(object).where(frame.notna(), None)
        with self._con.cursor() as cur:
            copy_sql = f"COPY {_check_table(table)} ({columns}) FROM STDIN"
            with cur.copy(copy_sql) as copy:
                for row in clean.itertuples(index=False, name=None):
                    copy.write_row(row)
        return len(frame)


class PostgresWarehouse(Warehouse):
    engine = "postgres"

    def __init__(self, dsn: str, *, connect_timeout: int = 10):
        self.dsn = dsn
        self.connect_timeout = connect_timeout

    def describe(self) -> str:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(self.dsn)
        return (
            f"PostgreSQL {info.get('user', '')}@{info.get('host', '')}:"
            f"{info.get('port', 5432)}/{info.get('dbname', '')}"
        )

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        import psycopg

        try:
            con = psycopg.connect(self.dsn, connect_timeout=self.connect_timeout)
        except psycopg.OperationalError as error:
            raise WarehouseError(f"could not connect to {self.describe()}: {error}") from error
        try:
            with con.transaction():
                yield _PgTransaction(con)
        finally:
            con.close()

    def _make_readonly(self, tx: Transaction) -> None:
        tx.execute("SET TRANSACTION READ ONLY")

    def _query_one_statement(self, tx: Transaction, sql: str) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        with tx._con.cursor(row_factory=dict_row) as cur:  # type: ignore[attr-defined]
            try:
                # A prepared statement (extended protocol): the server accepts one command only.
                cur.execute(sql, prepare=True)
            except psycopg.errors.SyntaxError as error:
                if "multiple commands" not in str(error):
                    raise
                raise WarehouseError("expected exactly one SQL statement, got several") from error
            return list(cur.fetchall()) if cur.description else []

    def _lock_for_migration(self, tx: Transaction) -> None:
        # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalog; serialise.
        tx.execute("SELECT pg_advisory_xact_lock(4242001)")


def frame_to_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def frame_from_parquet(data: bytes) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(io.BytesIO(bytes(data)))
