"""A model's features kept column by column for the monitoring reads on a row store
(PostgreSQL).

PostgreSQL reads a day's 40 feature columns datum by datum: 1M rows took 5.8 s of server time,
more than the drift tests themselves; even two packed values a row cost half a second of
per-row work. `inference."<model>__packed"` holds the same rows in chunks of up to
`CHUNK_ROWS` rows of one day, one BYTEA per feature and chunk: a numeric feature's values as
8 bytes each (`float8send`, NULL as NaN), a categorical feature's as their UTF-8 bytes
(`textsend`) joined by a NUL byte, which text cannot contain, NULL as the byte 0xFF, which
UTF-8 cannot contain. The values of one chunk are in the same row order in every column.

It stays true inside the writer's transaction, whoever writes (ingestion's COPY and upserts,
a user's SQL, a retention job): statement-level triggers on the predictions table append the
inserted rows as chunks, and mark the days of updated or deleted rows stale in
`inference."<model>__stale"`. The ingestion appends the chunks of the rows it inserts itself
(`writer`, `written`): the trigger's aggregation cost PostgreSQL 7.7 s per million rows,
packing the slice in memory a tenth of a second. A stale day's chunks are made again from the
predictions table by `refresh` (the ingestion calls it at the end of each batch); until then
readers see the day is stale (in the same snapshot) and read the predictions table itself.
Which features the chunks hold is the table's comment: a layout that changed (a new feature)
or a missing trigger (the predictions table made anew) makes all the chunks again (`ensure`).

The DDL cannot live in `sql/`: its columns are the model's features. It is generated from
validated identifiers (letters, digits, _), always double-quoted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops_assets.storage.sources import quote_identifier

if TYPE_CHECKING:
    import pandas as pd

    from mlops_assets.storage.warehouse import Transaction

# Rows per chunk: a chunk's numeric column is 8 bytes a row, far below the 1 GB a value can
# hold, whatever size of statement a user runs.
CHUNK_ROWS = 100_000
_SEPARATOR = b"\x00"
_NULL = b"\xff"
_MARKER = "packed v5"
# Set for its transaction by a writer that appends the chunks of the rows it inserts itself
# (`writer`): from the rows in its memory, at a fraction of what the trigger's aggregation of
# them costs PostgreSQL.
_BY_WRITER = "mlops.packed_by_writer"
# The triggers that pass the predictions table's writes on, by event.
_EVENTS = {
    "insert": "INSERT ON {t} REFERENCING NEW TABLE AS new_rows",
    "update": "UPDATE ON {t} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "DELETE ON {t} REFERENCING OLD TABLE AS old_rows",
    "truncate": "TRUNCATE ON {t}",
}


class StaleDay(Exception):  # noqa: N818 - a state the reader falls back from, not an error
    """The day's chunks wait for `refresh`: read the predictions table itself."""


@dataclass(frozen=True)
class Packing:
    """Which features the chunks hold."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    def marker(self) -> str:
        numeric, categorical = ",".join(self.numeric), ",".join(self.categorical)
        return f"{_MARKER} numeric={numeric} categorical={categorical}"

    @classmethod
    def parse(cls, marker: str | None) -> Packing | None:
        """The layout a `marker` names; None for no marker or an older one."""
        if not marker or not marker.startswith(f"{_MARKER} "):
            return None
        fields = dict(part.split("=", 1) for part in marker[len(_MARKER) + 1 :].split(" "))
        return cls(
            numeric=tuple(n for n in fields["numeric"].split(",") if n),
            categorical=tuple(n for n in fields["categorical"].split(",") if n),
        )


def _tables(model: str) -> tuple[str, str]:
    return f'inference."{model}__packed"', f'inference."{model}__stale"'


def _functions(model: str) -> tuple[str, str]:
    """The trigger function and the refresh function."""
    return f'inference."{model}__pack"', f'inference."{model}__refresh"'


def _trigger(event: str) -> str:
    """A trigger's name: one table's, so the model's name need not be in it (a long model
    name would make it longer than the 63 bytes PostgreSQL keeps)."""
    return f"mlops_pack_{event}"


def _chunks_sql(packing: Packing, chunks: str, source: str) -> str:
    """INSERT of the chunks of the rows `source` gives (alias n)."""
    q = quote_identifier
    values = [f"string_agg(float8send(COALESCE(n.{q(c)}, 'NaN')), '')" for c in packing.numeric]
    values += [
        f"string_agg(COALESCE(textsend(n.{q(c)}), '\\xff'::bytea), '\\x00'::bytea)"
        for c in packing.categorical
    ]
    columns = ", ".join(q(c) for c in (*packing.numeric, *packing.categorical))
    # Every aggregate of a group takes the group's rows in the same order: one row order for
    # all the columns of a chunk.
    return (
        f"INSERT INTO {chunks} (prediction_date, n_rows, {columns}) "  # noqa: S608
        f"SELECT n.prediction_date, count(*), {', '.join(values)} "
        f"FROM (SELECT *, (row_number() OVER ()) - 1 AS _row FROM {source}) n "
        f"GROUP BY n.prediction_date, n._row / {CHUNK_ROWS}"
    )


def ensure(tx: Transaction, model: str, predictions_table: str, packing: Packing) -> None:
    """The chunks, their triggers on `predictions_table` and its functions, as `packing`
    says: nothing to do when they are (one query), else made and filled from the
    predictions."""
    chunks, stale = _tables(model)
    pack, refresh = _functions(model)
    probe = (
        "SELECT obj_description(to_regclass(:chunks), 'pg_class') AS marker, "
        "(SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(:predictions) "
        "AND tgname = ANY(:triggers) AND tgenabled <> 'D') AS armed"
    )
    triggers = [_trigger(event) for event in _EVENTS]
    params = {"chunks": chunks, "predictions": predictions_table, "triggers": triggers}

    def ready() -> bool:
        state = tx.query(probe, params)[0]
        return state["marker"] == packing.marker() and state["armed"] == len(_EVENTS)

    if ready():
        return
    # One process makes them; another that saw the same state waits here and finds it done.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext(:table))", {"table": chunks})
    if ready():
        return
    # Writers wait until this transaction ends: no row escapes the chunks made below.
    tx.execute(f"LOCK TABLE {predictions_table} IN SHARE ROW EXCLUSIVE MODE")
    q = quote_identifier
    features = ", ".join(f"{q(c)} BYTEA" for c in (*packing.numeric, *packing.categorical))
    tx.execute(f"DROP TABLE IF EXISTS {chunks}")
    tx.execute(
        f"CREATE TABLE {chunks} (prediction_date DATE NOT NULL, "
        "chunk BIGINT GENERATED ALWAYS AS IDENTITY, n_rows INTEGER NOT NULL, "
        f"{features}, PRIMARY KEY (prediction_date, chunk))"
    )
    for column in (*packing.numeric, *packing.categorical):
        # Stored as they are: packed floats do not compress, and reading them back would
        # pay for the attempt.
        tx.execute(f"ALTER TABLE {chunks} ALTER COLUMN {q(column)} SET STORAGE EXTERNAL")
    tx.execute(f"CREATE TABLE IF NOT EXISTS {stale} (prediction_date DATE PRIMARY KEY)")
    tx.execute(
        f"CREATE OR REPLACE FUNCTION {pack}() RETURNS trigger LANGUAGE plpgsql AS $pack$\n"
        "BEGIN\n"
        f"  IF TG_OP = 'TRUNCATE' THEN TRUNCATE {chunks}, {stale}; RETURN NULL; END IF;\n"
        f"  IF TG_OP = 'INSERT' AND current_setting('{_BY_WRITER}', true) IS DISTINCT FROM 'on'\n"
        f"  THEN {_chunks_sql(packing, chunks, 'new_rows')}; END IF;\n"
        "  IF TG_OP IN ('UPDATE', 'DELETE') THEN\n"
        f"    INSERT INTO {stale} SELECT DISTINCT prediction_date FROM old_rows\n"
        "    ON CONFLICT DO NOTHING;\n"
        "  END IF;\n"
        "  IF TG_OP = 'UPDATE' THEN\n"
        f"    INSERT INTO {stale} SELECT DISTINCT prediction_date FROM new_rows\n"
        "    ON CONFLICT DO NOTHING;\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END $pack$"
    )
    incomplete = " OR ".join(f"{q(c)} IS NULL" for c in (*packing.numeric, *packing.categorical))
    rebuild = _chunks_sql(packing, chunks, f"{predictions_table} WHERE prediction_date = ANY(days)")
    tx.execute(
        f"CREATE OR REPLACE FUNCTION {refresh}() RETURNS integer LANGUAGE plpgsql AS $refresh$\n"
        "DECLARE days date[];\n"
        "BEGIN\n"
        # One refresh of a model at a time: the second sees the first's chunks and marks.
        f"  PERFORM pg_advisory_xact_lock(hashtext('{chunks}'));\n"
        # The stale days, and any with a chunk that lacks a feature (written under the
        # layout before, while a feature was added).
        f"  SELECT array_agg(DISTINCT d) INTO days FROM (SELECT prediction_date AS d FROM {stale}\n"
        f"    UNION ALL SELECT prediction_date FROM {chunks} WHERE {incomplete}) s;\n"
        "  IF days IS NULL THEN RETURN 0; END IF;\n"
        f"  DELETE FROM {chunks} WHERE prediction_date = ANY(days);\n"
        f"  {rebuild};\n"
        f"  DELETE FROM {stale} WHERE prediction_date = ANY(days);\n"
        "  RETURN cardinality(days);\n"
        "END $refresh$"
    )
    for event, clause in _EVENTS.items():
        name = q(_trigger(event))
        tx.execute(f"DROP TRIGGER IF EXISTS {name} ON {predictions_table}")
        tx.execute(
            f"CREATE TRIGGER {name} AFTER {clause.format(t=predictions_table)} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {pack}()"
        )
    tx.execute(f"TRUNCATE {stale}")
    tx.execute(_chunks_sql(packing, chunks, predictions_table))
    tx.execute(f"COMMENT ON TABLE {chunks} IS '{packing.marker()}'")


def writer(tx: Transaction, model: str) -> Packing | None:
    """For a writer of the model's predictions: the chunks' layout, where the model has
    chunks (after `ensure`; None on a column store), and the promise, for this transaction,
    to call `written` after each slice: the insert trigger then leaves those rows to it."""
    chunks, _ = _tables(model)
    found = tx.query(
        "SELECT obj_description(to_regclass(:chunks), 'pg_class') AS marker", {"chunks": chunks}
    )
    packing = Packing.parse(found[0]["marker"])
    if packing is not None:
        tx.execute("SELECT set_config(:name, 'on', true)", {"name": _BY_WRITER})
    return packing


def written(tx: Transaction, model: str, packing: Packing, rows: Any, *, as_is: bool) -> None:
    """After `rows` (an Arrow table of predictions rows) were written by a `writer`: their
    chunks, when they went in as they are (every id new); else their days marked stale (the
    update trigger marked the days of the rows they changed), made again by `refresh`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if rows.num_rows == 0:
        return
    chunks, stale = _tables(model)
    day = rows.column("prediction_date")
    if not pa.types.is_date32(day.type):
        day = pc.cast(day, pa.date32())
    day_numbers = day.to_numpy(zero_copy_only=False).astype("datetime64[D]")
    days = np.unique(day_numbers)
    if not as_is:
        for value in days:
            tx.execute(
                f"INSERT INTO {stale} (prediction_date) VALUES (:day) ON CONFLICT DO NOTHING",
                {"day": value.item()},
            )
        return
    q = quote_identifier
    names = [*packing.numeric, *packing.categorical]
    present = [n for n in names if n in rows.column_names]
    columns = ", ".join(q(n) for n in names)
    placeholders = ", ".join(f":c{i}" for i in range(len(names)))
    statement = (
        f"INSERT INTO {chunks} (prediction_date, n_rows, {columns}) "  # noqa: S608
        f"VALUES (:day, :n, {placeholders})"
    )
    for value in days:
        where = np.flatnonzero(day_numbers == value)
        for start in range(0, len(where), CHUNK_ROWS):
            part = rows.select(present).take(pa.array(where[start : start + CHUNK_ROWS]))
            params: dict[str, Any] = {"day": value.item(), "n": part.num_rows}
            for i, name in enumerate(names):
                # A feature of the table that these rows lack (an older model version's) is
                # NULL in them, as the table stores it.
                kind = pa.float64() if name in packing.numeric else pa.string()
                column = part.column(name) if name in present else pa.nulls(part.num_rows, kind)
                params[f"c{i}"] = _pack(column, name in packing.numeric)
            tx.execute(statement, params)


def _pack(values: Any, numeric: bool) -> bytes:
    """One chunk's values of a column, as the trigger packs them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if numeric:
        numbers = pc.fill_null(pc.cast(values, pa.float64()), float("nan"))
        return numbers.to_numpy().astype(">f8").tobytes()
    text = pc.fill_null(pc.cast(values, pa.binary()), pa.scalar(_NULL, pa.binary()))
    text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    one_list = pa.ListArray.from_arrays(pa.array([0, len(text)], pa.int32()), text)
    return pc.binary_join(one_list, _SEPARATOR)[0].as_py()


def refresh(tx: Transaction, model: str) -> int:
    """Make the chunks of the model's stale days again; how many days. Nothing to do (and
    nothing called) where the model has no chunks (a column store)."""
    _, refresh_function = _functions(model)
    found = tx.query("SELECT to_regproc(:name) IS NOT NULL AS made", {"name": refresh_function})
    if not found[0]["made"]:
        return 0
    return int(tx.query(f"SELECT {refresh_function}() AS days")[0]["days"])


def select(model: str, features: Sequence[str]) -> str:
    """The day's chunks of these features, in order, after whether the day is stale (one
    row even for a day without chunks, its columns NULL); the day is bound."""
    chunks, stale = _tables(model)
    columns = ", ".join(f"c.{quote_identifier(f)}" for f in features)
    return (  # noqa: S608 - validated identifiers; the day is bound
        f"SELECT s.stale, c.n_rows, {columns} FROM "
        f"(SELECT EXISTS (SELECT 1 FROM {stale} WHERE prediction_date = :day) AS stale) s "
        f"LEFT JOIN {chunks} c ON c.prediction_date = :day ORDER BY c.chunk"
    )


def decode(table: Any, packing: Packing) -> pd.DataFrame:
    """The features of one `select` result as a frame: numeric float64, categorical pandas
    strings (NULL where NULL). Raises StaleDay for a stale day."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from mlops_assets.storage.warehouse import arrow_to_pandas

    if table.num_rows and table.column("stale")[0].as_py():
        raise StaleDay
    table = table.filter(pc.is_valid(table.column("n_rows")))  # the day without chunks
    n = int(pc.sum(table.column("n_rows")).as_py() or 0)
    columns: dict[str, Any] = {}
    for name in table.column_names[2:]:
        values = table.column(name).combine_chunks()
        if values.null_count:
            # A chunk written under an older layout while a feature was added: the
            # predictions table has the day right.
            raise StaleDay
        if name in packing.numeric:
            data = _bytes(values)
            if len(data) != 8 * n:
                raise ValueError(f"packed {name}: {len(data)} bytes for {n} rows")
            columns[name] = np.frombuffer(data, dtype=">f8").astype(np.float64)
        else:
            columns[name] = _strings(values, n, name)
    numeric = {k: v for k, v in columns.items() if isinstance(v, np.ndarray)}
    text = {k: v for k, v in columns.items() if k not in numeric}
    frame = pd.DataFrame(numeric, index=pd.RangeIndex(n), copy=False)
    if text:
        strings = arrow_to_pandas(pa.table(text), owned=True)
        frame = pd.concat([frame, strings], axis=1) if numeric else strings
    return frame[list(columns)]


def _strings(values: Any, n: int, name: str) -> Any:
    """A categorical feature's chunks as one Arrow string array: the values' ends found and
    the separators taken out in numpy (splitting each chunk into a list and flattening took
    four times as long)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    data = np.frombuffer(_bytes(values), dtype=np.uint8)
    zero = data == 0
    separators = np.flatnonzero(zero)
    # A value ends at a separator or at its chunk's end; where both fall on one position
    # (a chunk that starts with an empty value), the chunk's end comes first.
    chunk_ends = np.cumsum(pc.binary_length(values).fill_null(0).to_numpy().astype(np.int64))
    at = np.searchsorted(separators, chunk_ends)
    ends = np.insert(separators, at, chunk_ends)
    if len(ends) != n:
        raise ValueError(f"packed {name}: {len(ends)} values for {n} rows")
    # Without the separators, a value ends as many bytes earlier as there are separators
    # before it in `ends`.
    is_separator = np.insert(np.ones(len(separators), dtype=np.int64), at, 0)
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = ends - (np.cumsum(is_separator) - is_separator)
    text = data[~zero] if len(separators) else data
    null = np.diff(offsets) == 1
    null[null] = text[offsets[:-1][null]] == _NULL[0]
    validity = pa.py_buffer(np.packbits(~null, bitorder="little")) if null.any() else None
    array = pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(text)), validity
    )
    if not (text < 0x80).all():  # ASCII is UTF-8; anything else is checked, as a cast would
        array.validate(full=True)
    return array


def _bytes(values: Any) -> memoryview:
    """The concatenated bytes of an Arrow binary array's values (no copy)."""
    import pyarrow as pa

    wide = pa.types.is_large_binary(values.type)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64 if wide else np.int32)
    offsets = offsets[values.offset : values.offset + len(values) + 1]
    if len(values) == 0 or values.buffers()[2] is None:
        return memoryview(b"")
    return memoryview(values.buffers()[2])[int(offsets[0]) : int(offsets[-1])]
