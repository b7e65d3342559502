"""The warehouse: one interface, two engines (embedded DuckDB, external PostgreSQL).

SQL is written once, in `sql/`, with `:name` placeholders; each engine translates them to its
driver's bound-parameter syntax, so values are never formatted into SQL text.

The embedded engine opens a short connection per transaction and retries while another
process holds the file: DuckDB allows one writing process per file, and under `dagster dev`
the daemon, the webserver and run workers are separate processes.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.resources
import io
import os
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas costs ~0.3 s to import; only the functions that need it import it
    import pandas as pd

from mlops_assets.lib.redact import redact

# A source checkout keeps the SQL at the top of the repository; a wheel ships the same files as
# package data of `mlops_assets.sql` (see `[tool.setuptools]` in pyproject.toml).
_CHECKOUT_SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
# Time limit of `query_readonly`. On DuckDB a reader holds a shared file lock that keeps every
# writer out, and writers give up after `DuckDBWarehouse.lock_timeout` (60 s), so a query must
# end well before that.
QUERY_TIMEOUT_SECONDS = 30.0
MAX_QUERY_TIMEOUT_SECONDS = 50.0
# DuckDB settings of read-only connections: no file, network or extension access, fixed.
_DUCKDB_READONLY_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}
READER_ROLE = "mlops_reader"
# DuckDB's lock conflict; a word match, since "corrupt ... in block at ..." must not be retried.
_LOCK_ERROR = re.compile(r"\block\b", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
# schema.table, where the table may be quoted to keep a model name's case (inference tables).
_IDENTIFIER = re.compile(r'^[a-z_][a-z0-9_]*\.([a-z_][a-z0-9_]*|"[A-Za-z_][A-Za-z0-9_]*")$')
# Rows per CSV block written to COPY: a few megabytes of text for a wide table, so memory
# holds one block, not the slice's whole text.
_CSV_BLOCK_ROWS = 8192
# Column types `select_frame` can return, as the engines spell them in a CAST.
FRAME_TYPES = ("text", "double", "date", "timestamp", "boolean", "bigint")


def _arrow_kinds() -> dict[str, Any]:
    import pyarrow as pa

    return {
        "text": pa.string(),
        "double": pa.float64(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
        "boolean": pa.bool_(),
        "bigint": pa.int64(),
    }


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


class Upserter(ABC):
    @abstractmethod
    def write(self, rows: Any, *, replacing: bool) -> bool:
        """One slice (pandas or Arrow, keys unique within it); `replacing`: some of its keys
        were in an earlier slice. True when the rows went in as they are, every key new;
        False when they were merged with stored rows (or that is not known)."""

    @abstractmethod
    def earlier(
        self, keys: Sequence[str], columns: Sequence[str], types: Mapping[str, str]
    ) -> pd.DataFrame:
        """The rows with these keys as the earlier slices (or the table) have them."""

    @abstractmethod
    def finish(self) -> None: ...


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

    @abstractmethod
    def select_frame(
        self, sql: str, params: Mapping[str, Any] | None = None, *, types: Mapping[str, str]
    ) -> pd.DataFrame:
        """A large result straight into pandas (no Python object per row), with the column
        types given (`FRAME_TYPES`): text -> pandas string, double -> float64, date/timestamp ->
        datetime64, boolean -> boolean, bigint -> Int64. Every result column must be typed."""

    @abstractmethod
    def stream_frames(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        types: Mapping[str, str] | None,
        chunk_rows: int,
    ) -> Iterator[pd.DataFrame]:
        """A large result as frames of at most `chunk_rows` rows, read as the engine produces
        them (memory holds one slice). `types` as in `select_frame`; None keeps the engine's
        own types (DuckDB only). At least one frame, empty when the result is."""

    @abstractmethod
    def upserter(self, table: str, *, key: str, compare: Sequence[str]) -> Upserter:
        """Upserts into `table` by `key`, slice by slice: `write` each slice, `finish` once.
        A stored key's row is rewritten only when a `compare` column differs (an identical
        re-delivery writes nothing); a key written by an earlier slice is replaced by the
        later one."""

    @abstractmethod
    def delete_matching(self, table: str, frame: pd.DataFrame) -> None:
        """Delete the rows of `table` equal to a row of the frame on all the frame's columns."""

    def analyze(self, table: str, columns: Sequence[str]) -> None:  # noqa: B027 - a no-op here
        """Refresh the planner's statistics of `table` (its size, and `columns`) after a large
        write. Nothing to do on an engine that keeps them as it writes (DuckDB)."""


def arrow_to_pandas(table: Any, *, split_blocks: bool = False, owned: bool = False) -> pd.DataFrame:
    """pandas from Arrow with text as Arrow-backed strings (dtype "string"): no Python object
    per value, which is most of the cost of a million-row result otherwise. `split_blocks`:
    one block per column, no copy into one 2-D block (for a slice read only column-wise).

    `owned=True` when nothing else holds the table: each column becomes its own pandas block
    and Arrow's buffers are released as they are converted, so a million rows of numbers are
    not copied into one consolidated block (a second copy of the whole result)."""
    import pandas as pd
    import pyarrow as pa

    if hasattr(table, "read_all"):  # a RecordBatchReader
        table = table.read_all()
    text = pd.StringDtype("pyarrow")

    def mapper(kind: Any) -> Any:
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return text
        if hasattr(pa.types, "is_string_view") and pa.types.is_string_view(kind):
            return text
        return None

    if owned:
        return table.to_pandas(types_mapper=mapper, split_blocks=True, self_destruct=True)
    return table.to_pandas(types_mapper=mapper, split_blocks=split_blocks)


def _typed(frame: pd.DataFrame, types: Mapping[str, str]) -> pd.DataFrame:
    """Cast a result to the requested pandas dtypes (the engines return near-misses: DuckDB
    gives object columns for all-NULL text, PostgreSQL's CSV has no types at all). Columns
    that already have their dtype are kept as they are (no copy); `frame` is changed."""
    import pandas as pd

    missing = [c for c in frame.columns if c not in types]
    if missing:
        raise WarehouseError(f"select_frame: no type given for column(s) {', '.join(missing)}")
    text = pd.StringDtype("pyarrow")
    wanted = {
        "text": text,
        "double": "float64",
        "date": "datetime64[ns]",
        "timestamp": "datetime64[ns]",
        "boolean": "boolean",
        "bigint": "Int64",
    }
    for column in frame.columns:
        kind = types[column]
        if kind not in wanted:
            raise WarehouseError(f"select_frame: unknown type {kind!r} (use one of {FRAME_TYPES})")
        values = frame[column]
        if values.dtype == wanted[kind]:
            continue
        if kind == "double":
            values = pd.to_numeric(values, errors="raise")
        elif kind in ("date", "timestamp"):
            values = pd.to_datetime(values)
        frame[column] = values.astype(wanted[kind])
    return frame


@dataclass
class _Session:
    connection: Any = None
    in_use: bool = False


# Open sessions of this thread: database key -> the connection its transactions share.
_sessions = threading.local()


class Warehouse(ABC):
    engine: str

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[Transaction]: ...

    @abstractmethod
    def _session_key(self) -> str | None:
        """Which database a session shares a connection to; None: this one never shares."""

    @contextmanager
    def session(self) -> Iterator[None]:
        """Let this thread's transactions on this database share one connection until the
        block ends, instead of opening and closing one each.

        Opening is most of what a short transaction costs: tens of milliseconds for the
        embedded file (and a checkpoint at close), a round trip and authentication for
        PostgreSQL, and an asset makes a dozen of them. Each transaction still commits on its
        own. On the embedded engine the file stays locked against other processes for the
        whole block (they wait and retry), so a session wraps a burst of reads or writes,
        never a long computation. A nested session joins the outer one; a transaction opened
        while another is running gets a connection of its own, as without a session."""
        key = self._session_key()
        registry = _sessions.__dict__.setdefault("open", {})
        if key is None or key in registry:
            yield
            return
        registry[key] = session = _Session()
        try:
            yield
        finally:
            del registry[key]
            if session.connection is not None:
                with contextlib.suppress(Exception):
                    session.connection.close()

    @contextmanager
    def _connection(self, connect: Any) -> Iterator[Any]:
        """The connection of one transaction: the session's when one is open and free,
        else a new one (`connect()`), closed afterwards."""
        session = getattr(_sessions, "open", {}).get(self._session_key())
        if session is None or session.in_use:
            con = connect()
            try:
                yield con
            finally:
                con.close()
            return
        if session.connection is None:
            session.connection = connect()
        session.in_use = True
        try:
            yield session.connection
        except BaseException:
            # Rolled back already; a connection that saw a failure is not trusted again.
            con, session.connection = session.connection, None
            with contextlib.suppress(Exception):
                con.close()
            raise
        finally:
            session.in_use = False

    @abstractmethod
    def _lock_for_migration(self, tx: Transaction) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, without secrets."""

    @contextmanager
    def held_open(self) -> Iterator[None]:
        """For one process that runs many short transactions in a row (the demo): keep the
        database open meanwhile. A no-op for engines with a server."""
        yield

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with self.transaction() as tx:
            tx.execute(sql, params)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.transaction() as tx:
            return tx.query(sql, params)

    def query_df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        with self.transaction() as tx:
            return tx.query_df(sql, params)

    def read_frame(
        self, sql: str, params: Mapping[str, Any] | None = None, *, types: Mapping[str, str]
    ) -> pd.DataFrame:
        """A large read of committed rows, typed as `Transaction.select_frame` types them,
        outside any transaction of this thread (it sees what is committed, not what an open
        transaction wrote). The monitoring assets read a day's columns this way."""
        with self.transaction() as tx:
            return tx.select_frame(sql, params, types=types)

    # Whether reading a few columns costs a fraction of reading the rows (a column store):
    # then a second, narrow read of the same rows is worth making to overlap work with.
    columnar = True

    def read_frames(
        self,
        statements: Sequence[tuple[str, Mapping[str, Any] | None]],
        *,
        types: Mapping[str, str],
        decode: Callable[[Any], Any] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """The results of a few SELECTs of committed rows, as `read_frame` gives them, all of
        one snapshot, each row at the same position in every result when the statements
        select the same rows of one table in the same way (different columns). `types` covers
        the columns of them all. `decode`: makes each result's frame (or another summary of
        it, such as counts) from its Arrow table instead (on the reading thread), for columns
        no type here describes. Each result
        but the last is handed over while the next is read on a thread (the engine works
        beside the caller); the last once the transaction (on the embedded engine, the
        file's lock) is closed, so that a caller's long work on it does not hold it."""
        from concurrent.futures import ThreadPoolExecutor

        def read(tx: Transaction, sql: str, params: Mapping[str, Any] | None) -> pd.DataFrame:
            if decode is None:
                return tx.select_frame(sql, params, types=types)
            return decode(tx.query_arrow(sql, params))  # type: ignore[attr-defined]

        with self.transaction() as tx, ThreadPoolExecutor(max_workers=1) as pool:
            # One connection, used by one thread at a time: the caller never touches it.
            pending = pool.submit(read, tx, *statements[0])
            for following in statements[1:]:
                frame = pending.result()
                pending = pool.submit(read, tx, *following)
                yield frame
            last = pending.result()
        yield last

    @abstractmethod
    def query_readonly(
        self, sql: str, *, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> list[dict[str, Any]]:
        """Run one plain SELECT (or WITH ... SELECT) that cannot change anything, read any
        file or run any program, stopped after `timeout` seconds. The text is sent as written
        (no placeholders). Every refusal or failure is a WarehouseError saying why."""

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
        files = migrations()
        if self._all_applied(files):
            # Every run process migrates on first use: one read instead of a transaction per
            # file (each costs an open, a lock and a commit on the embedded engine).
            return []
        applied: list[str] = []
        for migration in files:
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

    def _all_applied(self, files: list[Migration]) -> bool:
        with self.transaction() as tx:
            if not self._has_migrations_table(tx):
                return False
            rows = tx.query("SELECT version, checksum FROM mlops.schema_migrations")
        recorded = {int(r["version"]): r["checksum"] for r in rows}
        return all(recorded.get(m.version) == m.checksum for m in files)


class _Rollback(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows


def _check_timeout(timeout: float) -> float:
    if not 0 < timeout <= MAX_QUERY_TIMEOUT_SECONDS:
        raise WarehouseError(
            f"query time limit must be > 0 and <= {MAX_QUERY_TIMEOUT_SECONDS:g} s "
            f"(a DuckDB reader keeps writers out while it runs), got {timeout:g}"
        )
    return float(timeout)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return redact(lines[0] if lines else type(error).__name__)


def _used(sql: str, params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Only the parameters the statement names (DuckDB rejects extra ones)."""
    if not params:
        return None
    names = set(_PLACEHOLDER.findall(sql))
    return {k: v for k, v in params.items() if k in names}


def query_arrow_over(
    tables: Mapping[str, Any], sql: str, params: Mapping[str, Any] | None = None
) -> Any:
    """A query over Arrow tables (by name) on a private in-memory DuckDB connection, as an
    Arrow table: work on rows in memory that need not hold a warehouse connection (the
    inference log checks the next slice in its reading thread while the warehouse's
    connection writes the one before)."""
    import duckdb

    con = duckdb.connect()
    try:
        for name, table in tables.items():
            con.register(name, table)
        result = con.execute(_PLACEHOLDER.sub(r"$\1", sql), _used(sql, params))
        return getattr(result, "to_arrow_table", result.arrow)()
    finally:
        con.close()


def _names(rows: Any) -> list[str]:
    """Column names of a pandas frame or an Arrow table."""
    return list(rows.column_names) if hasattr(rows, "column_names") else list(rows.columns)


def _empty(rows: Any) -> bool:
    return rows.num_rows == 0 if hasattr(rows, "num_rows") else rows.empty


def _as_arrow(frame: Any) -> Any:
    """An Arrow table when the frame converts (DuckDB scans it without a Python object per
    value, which pandas object columns cost); the frame itself when it does not. An Arrow
    table is returned as it is."""
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        return frame

    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return frame


def _upsert_sql(
    table: str, source: str, columns: list[str], key: str, compare: Sequence[str]
) -> str:
    """INSERT ... ON CONFLICT DO UPDATE, both engines' dialect: a stored row is rewritten only
    when a compared column differs."""
    names = [_quote_column(c) for c in columns]
    k = _quote_column(key)
    update = ", ".join(f"{c} = excluded.{c}" for c in names if c != k)
    changed = " OR ".join(
        f"t.{c} IS DISTINCT FROM excluded.{c}" for c in map(_quote_column, compare)
    )
    listed = ", ".join(names)
    return (  # checked identifiers only
        f"INSERT INTO {_check_table(table)} AS t ({listed}) "  # noqa: S608
        f"SELECT {listed} FROM {source} "
        f"ON CONFLICT ({k}) DO UPDATE SET {update} WHERE {changed}"
    )


def _delete_matching_sql(table: str, source: str, columns: list[str]) -> str:
    match = " AND ".join(f"t.{c} = s.{c}" for c in map(_quote_column, columns))
    return f"DELETE FROM {_check_table(table)} t USING {source} s WHERE {match}"  # noqa: S608


def _quote_column(name: str) -> str:
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
        raise WarehouseError(f"not a column name: {name!r}")
    return f'"{name}"'


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
        self._con.register("_incoming_frame", _as_arrow(frame))
        try:
            self._con.execute(
                f"INSERT INTO {_check_table(table)} ({columns}) "  # noqa: S608 - checked names
                f"SELECT {columns} FROM _incoming_frame"
            )
        finally:
            self._con.unregister("_incoming_frame")
        return len(frame)

    def select_frame(
        self, sql: str, params: Mapping[str, Any] | None = None, *, types: Mapping[str, str]
    ) -> pd.DataFrame:
        result = self._con.execute(_PLACEHOLDER.sub(r"$\1", sql), _used(sql, params))
        # DuckDB >= 1.4: `arrow()` streams record batches, about twice slower on a million
        # rows than materialising the table at once.
        fetch = getattr(result, "to_arrow_table", result.arrow)
        return _typed(arrow_to_pandas(fetch(), owned=True), types)

    def stream_frames(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        types: Mapping[str, str] | None,
        chunk_rows: int,
    ) -> Iterator[pd.DataFrame]:
        result = self._con.execute(_PLACEHOLDER.sub(r"$\1", sql), _used(sql, params))
        reader = result.to_arrow_reader(chunk_rows)
        yielded = False
        for batch in reader:
            if batch.num_rows:
                yielded = True
                frame = arrow_to_pandas(batch, split_blocks=True)
                yield _typed(frame, types) if types is not None else frame
        if not yielded:
            frame = arrow_to_pandas(reader.schema.empty_table())
            yield _typed(frame, types) if types is not None else frame

    def upserter(self, table: str, *, key: str, compare: Sequence[str]) -> Upserter:
        return _DuckUpserter(self, table, key, compare)

    @contextmanager
    def registered(self, name: str, table: Any) -> Iterator[None]:
        """An Arrow table readable by name in this transaction's statements (the inference
        log's slices, typed and validated in SQL)."""
        self._con.register(name, table)
        try:
            yield
        finally:
            self._con.unregister(name)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        result = self._con.execute(_PLACEHOLDER.sub(r"$\1", sql), _used(sql, params))
        return getattr(result, "to_arrow_table", result.arrow)()

    def delete_matching(self, table: str, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        self.written.add(_check_table(table))
        self._con.register("_incoming_keys", _as_arrow(frame))
        try:
            self._con.execute(_delete_matching_sql(table, "_incoming_keys", list(frame.columns)))
        finally:
            self._con.unregister("_incoming_keys")


class _DuckUpserter(Upserter):
    """A slice none of whose keys is stored (the usual case: new predictions) is a plain
    INSERT into the table, which DuckDB writes straight to the file in whole row groups.
    Any other slice is appended to a temporary table (no index) and merged once at the end:
    the new keys by one INSERT, the stored keys whose row changed by one UPDATE. (An INSERT
    ... ON CONFLICT per slice costs DuckDB several times more at COMMIT.)"""

    def __init__(self, tx: _DuckTransaction, table: str, key: str, compare: Sequence[str]):
        self.tx, self.table, self.key, self.compare = tx, _check_table(table), key, compare
        digest = hashlib.sha1(table.encode()).hexdigest()[:12]
        self.staging = f"_staging_{digest}"
        self.columns: list[str] | None = None  # set once something is staged
        self.empty_at_start: bool | None = None

    def write(self, rows: Any, *, replacing: bool) -> bool:
        if _empty(rows):
            return True
        con = self.tx._con
        con.register("_incoming_slice", _as_arrow(rows))
        try:
            self._write_from("_incoming_slice", _names(rows), replacing=replacing)
        finally:
            con.unregister("_incoming_slice")
        return False  # staged and merged at `finish`

    def write_select(
        self,
        select: str,
        names: Sequence[str],
        params: Mapping[str, Any] | None = None,
        *,
        replacing: bool,
    ) -> None:
        """`write` of the rows a query computes (the table's columns `names`, in order): the
        inference log types and validates a slice in SQL and inserts the result straight from
        it, with no frame or Arrow table of typed rows in between."""
        self._write_from(f"({select}) AS _incoming_query", list(names), replacing, params)

    def _write_from(
        self,
        source: str,
        names: list[str],
        replacing: bool,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        con = self.tx._con
        listed = ", ".join(_quote_column(c) for c in names)
        k = _quote_column(self.key)
        self.tx.written.add(self.table)
        bound = dict(params) if params else None

        def run(sql: str) -> Any:
            return con.execute(_PLACEHOLDER.sub(r"$\1", sql), _used(sql, bound))

        if self.empty_at_start is None:
            # An empty table (a model's first day, a backfill into a new table) cannot hold a
            # key: then only the earlier slices can, and `replacing` says so exactly.
            probe = f"SELECT count(*) FROM (SELECT 1 FROM {self.table} LIMIT 1) t"  # noqa: S608
            self.empty_at_start = con.execute(probe).fetchone()[0] == 0
        if not replacing and self.empty_at_start:
            run(f"INSERT INTO {self.table} ({listed}) SELECT {listed} FROM {source}")  # noqa: S608
            return
        if not replacing:
            # Stored keys are found through the slice's keys (a hash of 120k keys probed
            # by the table's key column, whose blocks outside the slice's min..max are
            # skipped).
            stored = run(
                f"SELECT count(*) FROM {self.table} "  # noqa: S608
                f"WHERE {k} IN (SELECT {k} FROM {source})"
            ).fetchone()[0]
            if not stored:
                run(f"INSERT INTO {self.table} ({listed}) SELECT {listed} FROM {source}")  # noqa: S608
                return
        if self.columns is None:
            self.columns = names
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {self.staging} AS "  # noqa: S608
                f"SELECT {listed} FROM {self.table} LIMIT 0"
            )
        elif replacing:
            run(f"DELETE FROM {self.staging} WHERE {k} IN (SELECT {k} FROM {source})")  # noqa: S608
        run(f"INSERT INTO {self.staging} ({listed}) SELECT {listed} FROM {source}")  # noqa: S608

    def earlier(
        self, keys: Sequence[str], columns: Sequence[str], types: Mapping[str, str]
    ) -> pd.DataFrame:
        select = ", ".join(_quote_column(c) for c in columns)
        k = _quote_column(self.key)
        # The latest version of a key is staged if it was staged at all, else in the table.
        sql = f"SELECT {select} FROM {self.table} WHERE {k} = ANY(:keys)"  # noqa: S608
        if self.columns is not None:
            sql = (
                f"SELECT {select} FROM {self.staging} WHERE {k} = ANY(:keys) "  # noqa: S608
                f"UNION ALL {sql} AND {k} NOT IN (SELECT {k} FROM {self.staging})"
            )
        return self.tx.select_frame(sql, {"keys": list(keys)}, types=types)

    def finish(self) -> None:
        if self.columns is None:
            return
        con = self.tx._con
        k = _quote_column(self.key)
        names = [_quote_column(c) for c in self.columns]
        listed = ", ".join(names)
        update = ", ".join(f"{c} = s.{c}" for c in names if c != k)
        changed = " OR ".join(
            f"{self.table}.{c} IS DISTINCT FROM s.{c}" for c in map(_quote_column, self.compare)
        )
        con.execute(
            f"UPDATE {self.table} SET {update} FROM {self.staging} s "  # noqa: S608
            f"WHERE {self.table}.{k} = s.{k} AND ({changed})"
        )
        con.execute(
            f"INSERT INTO {self.table} ({listed}) "  # noqa: S608
            f"SELECT {listed} FROM {self.staging} "
            f"WHERE {k} NOT IN (SELECT {k} FROM {self.table})"
        )
        con.execute(f"DROP TABLE {self.staging}")
        self.columns = None


class DuckDBWarehouse(Warehouse):
    engine = "embedded"

    def __init__(self, path: Path, *, lock_timeout: float = 60.0, read_only: bool = False):
        """`read_only=True` opens every connection read-only with external access off: it
        works on a file the process may not write, and never creates or migrates one."""
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.read_only = read_only

    def describe(self) -> str:
        return f"embedded DuckDB at {self.path}"

    @contextmanager
    def held_open(self) -> Iterator[None]:
        """While one connection stays open, DuckDB hands every new connection of this process
        the database already open, instead of reading the file again and checkpointing it on
        close (tens of ms per transaction, most of a demo day). Other processes are locked out
        of the file meanwhile, and `query_readonly` (another configuration) fails."""
        con = self._connect()
        try:
            yield
        finally:
            con.close()

    def _connect(self, *, read_only: bool | None = None) -> Any:
        import duckdb

        read_only = self.read_only if read_only is None else read_only
        if read_only:
            if not self.path.is_file():
                raise WarehouseError(
                    f"no embedded warehouse at {self.path} (run the pipeline or "
                    "`mlops-assets demo` first, or set MLOPS_HOME)"
                )
            kwargs: dict[str, Any] = {"read_only": True, "config": dict(_DUCKDB_READONLY_CONFIG)}
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            kwargs = {}
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.005
        while True:
            try:
                return duckdb.connect(str(self.path), **kwargs)
            except (duckdb.IOException, duckdb.BinderException) as error:
                # Another process holds the file lock (readers and writers exclude each other
                # across processes; readers share), or another thread of this one is opening or
                # closing the same file ("Unique file handle conflict"): try again shortly.
                text = str(error)
                transient = bool(_LOCK_ERROR.search(text)) or "file handle conflict" in text.lower()
                if not transient or time.monotonic() > deadline:
                    raise WarehouseError(
                        f"could not open the embedded warehouse {self.path} (damaged, not a "
                        f"DuckDB file, or locked): {_first_line(error)}"
                    ) from error
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.2)
            except duckdb.Error as error:
                raise WarehouseError(
                    f"could not open the embedded warehouse {self.path}: {_first_line(error)}"
                ) from error

    def _session_key(self) -> str | None:
        # Read-only connections have another configuration: DuckDB keeps one per file.
        return None if self.read_only else f"duckdb:{self.path.resolve()}"

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        broken: _BrokenIndexError | None = None
        with self._connection(self._connect) as con:
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

    def query_readonly(
        self, sql: str, *, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> list[dict[str, Any]]:
        """On its own read-only connection (never the writer's), external access off (no
        `read_csv('/etc/passwd')`, no http, no extension install), interrupted at `timeout`."""
        import duckdb

        timeout = _check_timeout(timeout)
        con = self._connect(read_only=True)
        timer = threading.Timer(timeout, con.interrupt)
        timer.daemon = True
        try:
            try:
                statements = con.extract_statements(sql)
            except duckdb.Error as error:
                raise WarehouseError(f"could not parse the query: {_first_line(error)}") from error
            if len(statements) != 1:
                raise WarehouseError(f"expected exactly one SQL statement, got {len(statements)}")
            if statements[0].type != duckdb.StatementType.SELECT:
                raise WarehouseError(
                    f"only a SELECT can run read-only, got {statements[0].type.name}"
                )
            timer.start()
            cursor = con.execute(sql)
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        except duckdb.InterruptException as error:
            raise WarehouseError(
                f"query stopped at its time limit of {timeout:g} s (a running query keeps "
                "the pipeline's writers waiting)"
            ) from error
        except duckdb.Error as error:
            raise WarehouseError(f"query failed: {_first_line(error)}") from error
        finally:
            timer.cancel()
            con.close()
        return [dict(zip(names, row, strict=True)) for row in rows]


# --------------------------------------------------------------------------- PostgreSQL


class _PgTransaction(Transaction):
    def __init__(self, con: Any):
        self._con = con
        # Tables a COPY found a stored key in: their next slices are staged and merged.
        self._conflicting: set[str] = set()

    @staticmethod
    def _sql(sql: str) -> str:
        return _PLACEHOLDER.sub(r"%(\1)s", sql.replace("%", "%%"))

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._con.execute(self._sql(sql) if params else sql, params or None)

    def executemany(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            with self._con.cursor() as cur:
                cur.executemany(self._sql(sql), list(rows))

    def analyze(self, table: str, columns: Sequence[str]) -> None:
        # Autovacuum analyzes a table a minute or more after it grew; a day's run started
        # right after a big batch would plan with the old sizes: a nested loop of a million
        # index probes to join labels (2.9 s) where a hash join takes 1.8 s. The columns the
        # monitoring reads filter and join on are enough: the row count comes with any.
        names = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
        self._con.execute(f"ANALYZE {table} ({names})")

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        from psycopg.rows import dict_row

        with self._con.cursor(row_factory=dict_row) as cur:
            cur.execute(self._sql(sql) if params else sql, params or None)
            return list(cur.fetchall()) if cur.description else []

    def insert_frame(self, table: str, frame: pd.DataFrame) -> int:
        """A pandas frame or an Arrow table, by COPY."""
        if _empty(frame):
            return 0
        columns = ", ".join(_quote_column(c) for c in _names(frame))
        with self._con.cursor() as cur:
            blocks = _csv_blocks(frame)
            if blocks is not None:
                # Bulk path: Arrow writes the CSV in C; no Python object per row. A block is
                # written while the server reads the one before (the whole slice encoded
                # first left the server idle meanwhile: 5.4 s of 30 s for 1M rows x 40).
                copy_sql = f"COPY {_check_table(table)} ({columns}) FROM STDIN (FORMAT csv)"
                with cur.copy(copy_sql) as copy:
                    for block in blocks:
                        copy.write(block)
                return len(frame)
            clean = frame.astype(object).where(frame.notna(), None)
            copy_sql = f"COPY {_check_table(table)} ({columns}) FROM STDIN"
            with cur.copy(copy_sql) as copy:
                for row in clean.itertuples(index=False, name=None):
                    copy.write_row(row)
        return len(frame)

    def select_frame(
        self, sql: str, params: Mapping[str, Any] | None = None, *, types: Mapping[str, str]
    ) -> pd.DataFrame:
        import pandas as pd

        frames = list(self.stream_frames(sql, params, types=types, chunk_rows=1 << 62))
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def stream_frames(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        types: Mapping[str, str] | None,
        chunk_rows: int,
    ) -> Iterator[pd.DataFrame]:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        if types is None:
            raise WarehouseError("stream_frames: PostgreSQL results need their column types")
        arrow = _arrow_kinds()
        unknown = {k: v for k, v in types.items() if v not in arrow}
        if unknown:
            raise WarehouseError(f"select_frame: unknown type(s) {unknown} (use {FRAME_TYPES})")
        with self._con.cursor() as cur:
            # COPY has no server-side parameters; psycopg binds them client-side, quoted.
            statement = f"COPY ({sql}) TO STDOUT (FORMAT csv, HEADER, NULL '\\N')"
            with cur.copy(self._sql(statement) if params else statement, params or None) as copy:
                stream = _CopyStream(copy)
                # HEADER names the columns even for an empty result; names are plain
                # identifiers.
                names = [n.strip('"') for n in stream.readline().decode().strip().split(",")]
                kinds = {n: arrow[types[n]] for n in names if n in types}
                if stream.at_end():  # no rows: Arrow refuses a CSV without a line
                    empty = pa.schema([(n, kinds.get(n, pa.string())) for n in names])
                    yield _typed(arrow_to_pandas(empty.empty_table()), types)
                    return
                options = pacsv.ConvertOptions(
                    column_types=kinds,
                    null_values=["\\N"],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                )
                # Arrow parses the CSV as it arrives, block by block: a slice in memory.
                block = min(max(chunk_rows, 1) * 64 * max(len(names), 1), 1 << 26)
                reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(column_names=names, block_size=block),
                    convert_options=options,
                )
                pending = reader.schema.empty_table()
                yielded = False
                for batch in reader:
                    pending = pa.concat_tables([pending, pa.Table.from_batches([batch])])
                    while pending.num_rows >= chunk_rows:
                        yield _typed(arrow_to_pandas(pending.slice(0, chunk_rows)), types)
                        yielded, pending = True, pending.slice(chunk_rows)
                if pending.num_rows or not yielded:
                    yield _typed(arrow_to_pandas(pending), types)

    def upsert_frame(self, table: str, frame: Any, *, key: str, compare: Sequence[str]) -> bool:
        """Insert the rows; a stored key's row is rewritten only when a compared column
        differs (an identical re-delivery writes nothing). Keys unique within the rows. True
        when they went in as they are (a plain COPY: every key new)."""
        import psycopg

        if _empty(frame):
            return True
        if table not in self._conflicting:
            # A first delivery (the common case) is a plain COPY into the table. A key stored
            # already fails it; the savepoint undoes that slice alone, and this table's
            # slices go through a staging table from then on.
            try:
                with self._con.transaction():
                    self.insert_frame(table, frame)
                return True
            except psycopg.errors.UniqueViolation:
                self._conflicting.add(table)
        staging = self._staging(table, _names(frame))
        self.insert_frame(f"pg_temp.{staging}", frame)
        self.execute(_upsert_sql(table, f"pg_temp.{staging}", _names(frame), key, compare))
        self.execute(f"TRUNCATE pg_temp.{staging}")
        return False

    def _staging(self, table: str, columns: list[str]) -> str:
        """A temporary table of `table`'s `columns` (no constraint, no index, no WAL),
        dropped at commit."""
        listed = ", ".join(_quote_column(c) for c in columns)
        digest = hashlib.sha1(f"{_check_table(table)}({listed})".encode()).hexdigest()[:12]
        name = f"_staging_{digest}"
        self.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {name} ON COMMIT DROP AS "  # noqa: S608
            f"SELECT {listed} FROM {table} WITH NO DATA"
        )
        return name

    def upserter(self, table: str, *, key: str, compare: Sequence[str]) -> Upserter:
        return _PgUpserter(self, table, key, compare)

    def delete_matching(self, table: str, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        staging = self._staging(table, list(frame.columns))
        self.insert_frame(f"pg_temp.{staging}", frame)
        self.execute(_delete_matching_sql(table, f"pg_temp.{staging}", list(frame.columns)))
        self.execute(f"TRUNCATE pg_temp.{staging}")


class _PgUpserter(Upserter):
    """Each slice is upserted as it comes (`upsert_frame`: a COPY straight into the table
    while no key is stored yet); PostgreSQL works on one slice while the next is prepared."""

    def __init__(self, tx: _PgTransaction, table: str, key: str, compare: Sequence[str]):
        self.tx, self.table, self.key, self.compare = tx, _check_table(table), key, compare

    def write(self, rows: Any, *, replacing: bool) -> bool:
        return self.tx.upsert_frame(self.table, rows, key=self.key, compare=self.compare)

    def earlier(
        self, keys: Sequence[str], columns: Sequence[str], types: Mapping[str, str]
    ) -> pd.DataFrame:
        select = ", ".join(_quote_column(c) for c in columns)
        return self.tx.select_frame(
            f"SELECT {select} FROM {self.table} "  # noqa: S608
            f"WHERE {_quote_column(self.key)} = ANY(:keys)",
            {"keys": list(keys)},
            types=types,
        )

    def finish(self) -> None:
        """Every slice is in the table already."""


class _CopyStream(io.RawIOBase):
    """The blocks of a `COPY ... TO STDOUT` as a readable file, for Arrow's CSV reader."""

    def __init__(self, copy: Any):
        self._blocks = iter(copy)
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def at_end(self) -> bool:
        while not self._rest:
            try:
                self._rest = memoryview(bytes(next(self._blocks)))
            except StopIteration:
                return True
        return False

    def readinto(self, buffer: Any) -> int:
        # PostgreSQL sends one message per row: fill the whole buffer, not a row per call.
        filled, size = 0, len(buffer)
        while filled < size:
            if not self._rest:
                try:
                    self._rest = memoryview(bytes(next(self._blocks)))
                except StopIteration:
                    break
            n = min(size - filled, len(self._rest))
            buffer[filled : filled + n] = self._rest[:n]
            self._rest = self._rest[n:]
            filled += n
        return filled


def _adbc_read(
    con: Any,
    sql: str,
    params: Mapping[str, Any] | None,
    arrow: dict,
    types: Mapping[str, str],
    decode: Callable[[Any], Any] | None = None,
) -> pd.DataFrame:
    """One SELECT by ADBC (binary COPY into Arrow), typed as `select_frame` types results
    (or made a frame by `decode`)."""
    import adbc_driver_manager
    import pyarrow as pa

    # `:name` placeholders -> $1, $2 ... in order of first use, bound by the server.
    order: list[str] = []

    def positional(match: re.Match[str]) -> str:
        if match.group(1) not in order:
            order.append(match.group(1))
        return f"${order.index(match.group(1)) + 1}"

    statement = _PLACEHOLDER.sub(positional, sql) if params else sql
    bound = tuple((params or {})[name] for name in order)
    try:
        with con.cursor() as cur:
            cur.execute(statement, bound or None)
            table = cur.fetch_arrow_table()
    except adbc_driver_manager.Error as error:
        raise WarehouseError(f"read failed: {_first_line(error)}") from error
    if decode is not None:
        return decode(table)
    missing = [c for c in table.column_names if c not in types]
    if missing:
        raise WarehouseError(f"read_frame: no type given for column(s) {', '.join(missing)}")
    # Cast where the engine's type is a near-miss (an all-NULL column, a numeric); a column
    # already of its kind is not copied.
    table = table.cast(pa.schema([(c, arrow[types[c]]) for c in table.column_names]))
    return _typed(arrow_to_pandas(table, owned=True), types)


def _csv_blocks(frame: Any) -> Iterator[bytes] | None:
    """CSV for COPY (of a pandas frame or an Arrow table), block by block of
    `_CSV_BLOCK_ROWS` rows, or None when a column is of a kind Arrow's CSV writer cannot
    express the way PostgreSQL reads it (bytes, Python objects): those go row by row."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = _as_arrow(frame)
    if not isinstance(table, pa.Table):
        return None
    simple = (
        pa.types.is_integer,
        pa.types.is_floating,
        pa.types.is_boolean,
        pa.types.is_string,
        pa.types.is_large_string,
        pa.types.is_timestamp,
        pa.types.is_date,
    )
    for field in table.schema:
        if not any(test(field.type) for test in simple):
            return None
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            return None
    # Arrow writes NULL as an unquoted empty field and every string quoted, so PostgreSQL's
    # CSV reader tells NULL from an empty string.
    options = pacsv.WriteOptions(include_header=False)

    def blocks() -> Iterator[bytes]:
        for start in range(0, table.num_rows, _CSV_BLOCK_ROWS):
            buffer = io.BytesIO()
            pacsv.write_csv(table.slice(start, _CSV_BLOCK_ROWS), buffer, options)
            yield buffer.getvalue()

    return blocks()


class _IdleReaders:
    """The ADBC connections `PostgresWarehouse.read_frames` finished with, kept open for
    this process's next read of the same database: the driver's connect costs about 80 ms
    (it loads the server's types), more than a day's metrics columns take to read. A few at
    most per database; a connection is checked with a round trip before it is used again,
    never handed to a forked child, and closed at exit."""

    KEEP = 2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[int, str], list[Any]] = {}

    def take(self, dsn: str) -> Any:
        while True:
            with self._lock:
                idle = self._idle.get((os.getpid(), dsn))
                con = idle.pop() if idle else None
            if con is None:
                return None
            try:  # a server restart, say, leaves it closed
                with con.cursor() as cur:
                    cur.execute("SELECT 1")
                    cur.fetchall()
                con.rollback()
                return con
            except Exception:  # noqa: BLE001 - any failure: this one is not used again
                with contextlib.suppress(Exception):
                    con.close()

    def give(self, dsn: str, con: Any) -> None:
        try:
            con.rollback()  # the read's snapshot ends here
        except Exception:  # noqa: BLE001 - not kept
            with contextlib.suppress(Exception):
                con.close()
            return
        with self._lock:
            idle = self._idle.setdefault((os.getpid(), dsn), [])
            if len(idle) < self.KEEP:
                idle.append(con)
                return
        con.close()

    def close(self) -> None:
        with self._lock:
            mine = [c for (pid, _), cons in self._idle.items() if pid == os.getpid() for c in cons]
            self._idle.clear()
        for con in mine:
            with contextlib.suppress(Exception):
                con.close()


_IDLE_READERS = _IdleReaders()
atexit.register(_IDLE_READERS.close)


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

    def _session_key(self) -> str | None:
        return f"postgres:{self.dsn}"

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.dsn, connect_timeout=self.connect_timeout)
        except psycopg.OperationalError as error:
            raise WarehouseError(
                f"could not connect to {self.describe()}: {redact(error)}"
            ) from error

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._connection(self._connect) as con, con.transaction():
            yield _PgTransaction(con)

    # Every read scans the table's rows whole, whatever columns it keeps.
    columnar = False

    def read_frame(
        self, sql: str, params: Mapping[str, Any] | None = None, *, types: Mapping[str, str]
    ) -> pd.DataFrame:
        """PostgreSQL's binary COPY decoded into Arrow in C++ (ADBC), on a connection of its
        own: a third of the time of the text COPY parsed as CSV (`select_frame`), where
        PostgreSQL prints every double as text and Arrow parses it back."""
        return next(iter(self.read_frames([(sql, params)], types=types)))

    def read_frames(
        self,
        statements: Sequence[tuple[str, Mapping[str, Any] | None]],
        *,
        types: Mapping[str, str],
        decode: Callable[[Any], Any] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Each result is read on a thread while the caller works on the one before (the
        server and the decoding run beside the caller's computation). One connection, one
        REPEATABLE READ transaction: one snapshot for all. Rows come in the same order in
        every result because nothing reorders them: no synchronized scan (which starts where
        another scan of the table is) and no parallel plan; a sequential scan, an index scan
        of equal keys and a bitmap scan all return rows in their physical order."""
        from concurrent.futures import ThreadPoolExecutor

        import adbc_driver_manager
        import adbc_driver_postgresql.dbapi as adbc
        import pandas as pd
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        arrow = _arrow_kinds()
        unknown = {k: v for k, v in types.items() if v not in arrow}
        if unknown:
            raise WarehouseError(f"read_frame: unknown type(s) {unknown} (use {FRAME_TYPES})")
        # After the DSN's own `options` (a search_path, say), which they must not replace.
        settings = " ".join(
            [
                str(conninfo_to_dict(self.dsn).get("options") or ""),
                "-c default_transaction_isolation=repeatable\\ read",
                "-c synchronize_seqscans=off -c max_parallel_workers_per_gather=0",
            ]
        ).strip()
        con = _IDLE_READERS.take(self.dsn)
        if con is None:
            try:
                con = adbc.connect(
                    make_conninfo(self.dsn, connect_timeout=self.connect_timeout, options=settings)
                )
            except adbc_driver_manager.Error as error:
                raise WarehouseError(
                    f"could not connect to {self.describe()}: {redact(error)}"
                ) from error
        done = False
        try:
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = pool.submit(_adbc_read, con, *statements[0], arrow, types, decode)
                rows = None
                for following in [*statements[1:], None]:
                    frame = pending.result()
                    if following is not None:
                        pending = pool.submit(_adbc_read, con, *following, arrow, types, decode)
                    # A `decode` may make something else of a result (counts): frames only.
                    if isinstance(frame, pd.DataFrame):
                        if rows is not None and len(frame) != rows:
                            raise WarehouseError(
                                f"read_frames: results of {rows} and {len(frame)} rows (one "
                                "snapshot should give the same rows)"
                            )
                        rows = len(frame)
                    yield frame
            done = True
        finally:
            if done:
                _IDLE_READERS.give(self.dsn, con)
            else:
                con.close()

    def query_readonly(
        self, sql: str, *, timeout: float = QUERY_TIMEOUT_SECONDS
    ) -> list[dict[str, Any]]:
        """Three layers, because a READ ONLY transaction alone still allows `COPY ... TO
        PROGRAM` and `pg_read_file`: the text must pass `check_select_only` (one plain SELECT,
        no file/program/settings functions); it runs in a READ ONLY transaction with a
        statement timeout; and as the `mlops_reader` role (no superuser, no file or program
        rights, SELECT on mlops and curated) whenever this connection can create or use it.
        The transaction is always rolled back."""
        import psycopg

        from mlops_assets.lib.sql_guard import UnsafeQueryError, check_select_only

        timeout = _check_timeout(timeout)
        try:
            check_select_only(sql)
        except UnsafeQueryError as error:
            raise WarehouseError(f"refused: {error}") from error
        role = self._reader_role()
        try:
            with self.transaction() as tx:
                tx.execute("SET TRANSACTION READ ONLY")
                tx.query(
                    "SELECT set_config('statement_timeout', :ms, true) AS v",
                    {"ms": str(int(timeout * 1000))},
                )
                if role:
                    tx.execute(sql_file("queries/set_local_reader_role"))
                rows = self._query_one_statement(tx, sql)
                raise _Rollback(rows)
        except _Rollback as done:
            return done.rows
        except psycopg.errors.QueryCanceled as error:
            raise WarehouseError(f"query stopped at its time limit of {timeout:g} s") from error
        except psycopg.errors.InsufficientPrivilege as error:
            raise WarehouseError(
                f"refused by PostgreSQL (query runs as {role or 'the connecting user'}): "
                f"{_first_line(error)}"
            ) from error
        except psycopg.Error as error:
            raise WarehouseError(f"query failed: {_first_line(error)}") from error

    def _reader_role(self) -> str | None:
        """`mlops_reader` if this session may switch to it, creating it and granting it
        SELECT on the mlops, curated and inference schemas when the connecting user has the rights;
        None otherwise (the query then runs with the user's own rights)."""
        import psycopg

        try:
            con = psycopg.connect(self.dsn, connect_timeout=self.connect_timeout, autocommit=True)
        except psycopg.OperationalError as error:
            raise WarehouseError(
                f"could not connect to {self.describe()}: {_first_line(error)}"
            ) from error
        try:
            me = con.execute(sql_file("queries/select_reader_role_rights")).fetchone()
            can_create, exists = bool(me[0]), bool(me[1])
            if can_create:
                if not exists:
                    # Two first queries at once may race to create it: the loser moves on.
                    with contextlib.suppress(psycopg.errors.DuplicateObject):
                        con.execute(sql_file("queries/create_reader_role"))
                # Re-granted each time: migrations add tables after the role exists.
                for statement in split_statements(sql_file("queries/grant_reader_role")):
                    with contextlib.suppress(
                        psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidSchemaName
                    ):
                        con.execute(statement)
            member = con.execute(sql_file("queries/select_reader_role_member")).fetchone()
            return READER_ROLE if member and member[0] else None
        finally:
            con.close()

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
