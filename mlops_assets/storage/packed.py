"""A model's log kept column by column for the monitoring reads on a row store (PostgreSQL).

PostgreSQL reads a day's 40 feature columns datum by datum: 1M rows took 5.8 s of server time,
more than the drift tests themselves; even two packed values a row cost half a second of
per-row work. `inference."<model>__packed"` holds the same rows in chunks of up to
`CHUNK_ROWS` rows of one day, one BYTEA per column and chunk: a numeric column's values as 8
bytes each (`float8send`, NULL as NaN), a text column's as their UTF-8 bytes (`textsend`)
joined by a NUL byte, which text cannot contain, NULL as the byte 0xFF, which UTF-8 cannot
contain. The values of one chunk are in the same row order in every column.

The chunks hold the features and the outputs (`y_pred`, probabilities, odds) of the
predictions table, the prediction ids (`"(ids)"`, a TEXT[] only SQL reads) and each row's
label from the labels table (`"(y_true)"`): the metrics read of a day otherwise joins its
million labels row by row, 1.8 s where all the metrics take 0.7 s in memory.

It stays true inside the writer's transaction, whoever writes (ingestion's COPY and upserts,
a user's SQL, a retention job):
- the ingestions (`writer`) account for what they write themselves: the ingestion of
  predictions appends the chunks of the rows it inserts, their labels from its memory (the
  trigger's aggregation cost PostgreSQL 7.7 s per million rows, packing the slice in memory a
  tenth of a second); that of labels clears the packed labels of the days it labels
  (`labelled`). The rows' labels are known to the former only while no label waits for its
  prediction: else it leaves them to `refresh`;
- triggers on the predictions table append the rows anyone else inserts as chunks (their
  labels joined), and mark the days of updated or deleted rows stale in
  `inference."<model>__stale"`;
- triggers on the labels table clear the packed labels of the days whose labels changed
  (a NULL `"(y_true)"`);
- labels that have no prediction yet are noted in `inference."<model>__orphans"`.
The triggers on inserts note the rows one by one (`"<model>__pending"`) and act at the
statement's end; a WHEN clause skips them for the ingestions' own rows. `refresh` (the
ingestions call it at the end of each batch) makes the stale days' chunks again and packs the
cleared labels (joined by id, about 5 s per million labels). Until then readers see, in the
same snapshot, that the day or its labels are stale, and read the tables themselves. Labels
and predictions of one model are written under one advisory lock (per transaction): a label
committed beside its prediction is never missed by both.
Which columns the chunks hold is the table's comment: a layout that changed (a new feature)
or a missing trigger (a table made anew) makes all the chunks again (`ensure`).

The DDL cannot live in `sql/`: its columns are the model's. It is generated from validated
identifiers (letters, digits, _), always double-quoted; the chunks' own columns are named in
parentheses, which no feature name can be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops_assets.storage.sources import quote_identifier

if TYPE_CHECKING:
    import pandas as pd

    from mlops_assets.lib.drift import CategoryCounts
    from mlops_assets.storage.warehouse import Transaction

# Rows per chunk: a chunk's numeric column is 8 bytes a row, far below the 1 GB a value can
# hold, whatever size of statement a user runs.
CHUNK_ROWS = 100_000
_SEPARATOR = b"\x00"
_NULL = b"\xff"
_MARKER = "packed v6"
# The chunks' own columns: the rows' prediction ids and their labels.
_IDS = '"(ids)"'
_LABEL = '"(y_true)"'
LABEL = "(y_true)"  # the label's name in a `select` result
# Set for its transaction by a writer that appends the chunks of the rows it inserts itself
# (`writer`): from the rows in its memory, at a fraction of what the trigger's aggregation of
# them costs PostgreSQL. The labels it writes are its rows': it packs them too.
_BY_WRITER = "mlops.packed_by_writer"
# Whether a statement's rows are the writer's (`writer`), as a trigger's WHEN tests it.
_NOT_WRITER = f"current_setting('{_BY_WRITER}', true) IS DISTINCT FROM 'on'"
# The triggers that pass a table's writes on: (name suffix, timing and event, level).
# Inserted rows are noted one by one in `"<model>__pending"` and handled at the statement's
# end: a transition table would keep a copy of every inserted row, also the writer's, for
# which the trigger does nothing (PostgreSQL spills it to disk: +25 % on a million-row COPY
# of 40 columns), whereas a row trigger whose WHEN is false costs next to nothing.
_TRIGGERS = (
    ("insert", "INSERT ON {t}", f"ROW WHEN ({_NOT_WRITER})"),
    ("inserted", "INSERT ON {t}", f"STATEMENT WHEN ({_NOT_WRITER})"),
    (
        "update",
        "UPDATE ON {t} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "STATEMENT",
    ),
    ("delete", "DELETE ON {t} REFERENCING OLD TABLE AS old_rows", "STATEMENT"),
    ("truncate", "TRUNCATE ON {t}", "STATEMENT"),
)


class StaleDay(Exception):  # noqa: N818 - a state the reader falls back from, not an error
    """The day's chunks wait for `refresh`: read the predictions table itself."""


@dataclass(frozen=True)
class Packing:
    """Which columns of the predictions table the chunks hold, and the label's kind."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    label: str = "categorical"  # or "numeric" (a regression's target)

    def marker(self) -> str:
        numeric, categorical = ",".join(self.numeric), ",".join(self.categorical)
        return f"{_MARKER} numeric={numeric} categorical={categorical} label={self.label}"

    @classmethod
    def parse(cls, marker: str | None) -> Packing | None:
        """The layout a `marker` names; None for no marker or an older one."""
        if not marker or not marker.startswith(f"{_MARKER} "):
            return None
        fields = dict(part.split("=", 1) for part in marker[len(_MARKER) + 1 :].split(" "))
        return cls(
            numeric=tuple(n for n in fields["numeric"].split(",") if n),
            categorical=tuple(n for n in fields["categorical"].split(",") if n),
            label=fields["label"],
        )

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)


@dataclass(frozen=True)
class Writing:
    """A writer's view of the chunks (`writer`)."""

    packing: Packing
    # No label waits for its prediction: the labels of new rows are the writer's own.
    labels_known: bool


def _tables(model: str) -> tuple[str, str, str, str]:
    """The chunks, the stale days, the ids of labels without a prediction, the rows a
    statement inserted (until its end)."""
    return (
        f'inference."{model}__packed"',
        f'inference."{model}__stale"',
        f'inference."{model}__orphans"',
        f'inference."{model}__pending"',
    )


def _functions(model: str) -> tuple[str, str, str, str]:
    """The predictions' trigger function, the labels', the one noting inserted rows, and
    the refresh function."""
    return (
        f'inference."{model}__pack"',
        f'inference."{model}__label"',
        f'inference."{model}__note"',
        f'inference."{model}__refresh"',
    )


def _trigger(event: str, labels: bool = False) -> str:
    """A trigger's name: one table's, so the model's name need not be in it (a long model
    name would make it longer than the 63 bytes PostgreSQL keeps)."""
    return f"mlops_{'label' if labels else 'pack'}_{event}"


def _aggregate(value: str, numeric: bool, order: str = "") -> str:
    """The packing of `value` over a group's rows (SQL)."""
    if numeric:
        return f"string_agg(float8send(COALESCE({value}, 'NaN')), ''{order})"
    return f"string_agg(COALESCE(textsend({value}), '\\xff'::bytea), '\\x00'::bytea{order})"


def _chunks_sql(packing: Packing, chunks: str, source: str, labels: str) -> str:
    """INSERT of the chunks of the rows `source` gives (a FROM item), their labels joined."""
    q = quote_identifier
    values = [_aggregate(f"n.{q(c)}", True) for c in packing.numeric]
    values += [_aggregate(f"n.{q(c)}", False) for c in packing.categorical]
    values.append(_aggregate('n."(label)"', packing.label == "numeric"))
    columns = ", ".join(q(c) for c in packing.columns)
    # Every aggregate of a group takes the group's rows in the same order: one row order for
    # all the columns of a chunk.
    return (
        f"INSERT INTO {chunks} (prediction_date, n_rows, {_IDS}, {columns}, {_LABEL}) "  # noqa: S608
        f"SELECT n.prediction_date, count(*), array_agg(n.prediction_id), {', '.join(values)} "
        f'FROM (SELECT s.*, l.y_true AS "(label)", (row_number() OVER ()) - 1 AS "(row)" '
        f"FROM {source} s LEFT JOIN {labels} l ON l.prediction_id = s.prediction_id) n "
        f'GROUP BY n.prediction_date, n."(row)" / {CHUNK_ROWS}'
    )


def _labels_sql(packing: Packing, chunks: str, labels: str) -> str:
    """UPDATE packing the labels of the chunks whose labels were cleared."""
    value = _aggregate("l.y_true", packing.label == "numeric", " ORDER BY u.i")
    return (
        f"UPDATE {chunks} c SET {_LABEL} = (SELECT {value} "  # noqa: S608
        f"FROM unnest(c.{_IDS}) WITH ORDINALITY u(id, i) "
        f"LEFT JOIN {labels} l ON l.prediction_id = u.id) WHERE c.{_LABEL} IS NULL"
    )


def ensure(
    tx: Transaction, model: str, predictions_table: str, labels_table: str, packing: Packing
) -> None:
    """The chunks, their triggers on the predictions and labels tables and their functions,
    as `packing` says: nothing to do when they are (one query), else made and filled."""
    chunks, stale, orphans, pending = _tables(model)
    pack, label, note, refresh = _functions(model)
    probe = (
        "SELECT obj_description(to_regclass(:chunks), 'pg_class') AS marker, "
        "(SELECT count(*) FROM pg_trigger WHERE (tgrelid = to_regclass(:predictions) "
        "AND tgname = ANY(:triggers) OR tgrelid = to_regclass(:labels) "
        "AND tgname = ANY(:label_triggers)) AND tgenabled <> 'D') AS armed"
    )
    params = {
        "chunks": chunks,
        "predictions": predictions_table,
        "labels": labels_table,
        "triggers": [_trigger(event) for event, *_ in _TRIGGERS],
        "label_triggers": [_trigger(event, labels=True) for event, *_ in _TRIGGERS],
    }

    def ready() -> bool:
        state = tx.query(probe, params)[0]
        return state["marker"] == packing.marker() and state["armed"] == 2 * len(_TRIGGERS)

    if ready():
        return
    # One process makes them; another that saw the same state waits here and finds it done.
    lock = f"PERFORM pg_advisory_xact_lock(hashtext('{chunks}'))"
    tx.execute("SELECT pg_advisory_xact_lock(hashtext(:table))", {"table": chunks})
    if ready():
        return
    # Writers wait until this transaction ends: no row escapes the chunks made below.
    for table in (predictions_table, labels_table):
        tx.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
    q = quote_identifier
    columns = ", ".join(f"{q(c)} BYTEA" for c in packing.columns)
    tx.execute(f"DROP TABLE IF EXISTS {chunks}")
    tx.execute(
        f"CREATE TABLE {chunks} (prediction_date DATE NOT NULL, "
        "chunk BIGINT GENERATED ALWAYS AS IDENTITY, n_rows INTEGER NOT NULL, "
        f"{_IDS} TEXT[], {columns}, {_LABEL} BYTEA, PRIMARY KEY (prediction_date, chunk))"
    )
    for column in (*(q(c) for c in packing.columns), _IDS, _LABEL):
        # Stored as they are: packed floats do not compress, and reading them back would
        # pay for the attempt.
        tx.execute(f"ALTER TABLE {chunks} ALTER COLUMN {column} SET STORAGE EXTERNAL")
    tx.execute(f"CREATE TABLE IF NOT EXISTS {stale} (prediction_date DATE PRIMARY KEY)")
    tx.execute(f"CREATE TABLE IF NOT EXISTS {orphans} (prediction_id TEXT PRIMARY KEY)")
    tx.execute(
        f"CREATE TABLE IF NOT EXISTS {pending} (labels BOOLEAN NOT NULL, "
        "prediction_id TEXT NOT NULL, PRIMARY KEY (labels, prediction_id))"
    )
    tx.execute(
        f"CREATE OR REPLACE FUNCTION {note}() RETURNS trigger LANGUAGE plpgsql AS $note$\n"
        "BEGIN\n"
        f"  INSERT INTO {pending} VALUES (TG_ARGV[0] = 'labels', NEW.prediction_id)\n"
        "  ON CONFLICT DO NOTHING;\n"
        "  RETURN NULL;\n"
        "END $note$"
    )
    # Ids of `rows` whose label now has no prediction (a prediction deleted, or its id changed).
    orphaned = (
        f"INSERT INTO {orphans} SELECT r.prediction_id FROM old_rows r "  # noqa: S608
        f"JOIN {labels_table} l ON l.prediction_id = r.prediction_id WHERE NOT EXISTS "
        f"(SELECT 1 FROM {predictions_table} p WHERE p.prediction_id = r.prediction_id) "
        "ON CONFLICT DO NOTHING"
    )
    inserted = (  # the rows this statement inserted, as they are stored
        f"(SELECT p.* FROM {predictions_table} p JOIN {pending} w "
        "ON w.prediction_id = p.prediction_id AND NOT w.labels)"
    )
    tx.execute(
        f"CREATE OR REPLACE FUNCTION {pack}() RETURNS trigger LANGUAGE plpgsql AS $pack$\n"
        "BEGIN\n"
        f"  {lock};\n"
        "  IF TG_OP = 'TRUNCATE' THEN\n"
        f"    TRUNCATE {chunks}, {stale}, {orphans};\n"
        f"    INSERT INTO {orphans} SELECT prediction_id FROM {labels_table};\n"
        "    RETURN NULL;\n"
        "  END IF;\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        f"    {_chunks_sql(packing, chunks, inserted, labels_table)};\n"
        f"    DELETE FROM {pending} WHERE NOT labels;\n"
        "    RETURN NULL;\n"
        "  END IF;\n"
        f"  INSERT INTO {stale} SELECT DISTINCT prediction_date FROM old_rows\n"
        "  ON CONFLICT DO NOTHING;\n"
        f"  {orphaned};\n"
        "  IF TG_OP = 'UPDATE' THEN\n"
        f"    INSERT INTO {stale} SELECT DISTINCT prediction_date FROM new_rows\n"
        "    ON CONFLICT DO NOTHING;\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END $pack$"
    )
    # The days of `rows` (labels) whose prediction is stored: their chunks' labels cleared.
    clear = (
        f"UPDATE {chunks} SET {_LABEL} = NULL WHERE {_LABEL} IS NOT NULL AND "  # noqa: S608
        f"prediction_date IN (SELECT p.prediction_date FROM {{rows}} r "
        f"JOIN {predictions_table} p ON p.prediction_id = r.prediction_id)"
    )
    new_labels = f"(SELECT prediction_id FROM {pending} WHERE labels)"
    tx.execute(
        f"CREATE OR REPLACE FUNCTION {label}() RETURNS trigger LANGUAGE plpgsql AS $label$\n"
        "BEGIN\n"
        # A writer (`writer`) accounts for the labels it writes itself.
        f"  IF NOT ({_NOT_WRITER}) THEN RETURN NULL; END IF;\n"
        # After the lock, each statement sees the predictions committed before it: a
        # prediction written beside this label is either seen here or sees the label.
        f"  {lock};\n"
        "  IF TG_OP = 'TRUNCATE' THEN\n"
        f"    UPDATE {chunks} SET {_LABEL} = NULL WHERE {_LABEL} IS NOT NULL;\n"
        f"    TRUNCATE {orphans};\n"
        "    RETURN NULL;\n"
        "  END IF;\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        f"    {clear.format(rows=new_labels)};\n"
        f"    INSERT INTO {orphans} SELECT r.prediction_id FROM {new_labels} r WHERE NOT EXISTS\n"
        f"    (SELECT 1 FROM {predictions_table} p WHERE p.prediction_id = r.prediction_id)\n"
        "    ON CONFLICT DO NOTHING;\n"
        f"    DELETE FROM {pending} WHERE labels;\n"
        "    RETURN NULL;\n"
        "  END IF;\n"
        f"  {clear.format(rows='old_rows')};\n"
        "  IF TG_OP = 'UPDATE' THEN\n"
        f"    {clear.format(rows='new_rows')};\n"
        f"    INSERT INTO {orphans} SELECT r.prediction_id FROM new_rows r WHERE NOT EXISTS\n"
        f"    (SELECT 1 FROM {predictions_table} p WHERE p.prediction_id = r.prediction_id)\n"
        "    ON CONFLICT DO NOTHING;\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END $label$"
    )
    incomplete = " OR ".join(f"{c} IS NULL" for c in (_IDS, *(q(c) for c in packing.columns)))
    day_rows = f"(SELECT * FROM {predictions_table} WHERE prediction_date = ANY(days))"
    tx.execute(
        f"CREATE OR REPLACE FUNCTION {refresh}() RETURNS integer LANGUAGE plpgsql AS $refresh$\n"
        "DECLARE days date[]; relabelled date[];\n"
        "BEGIN\n"
        # One refresh of a model at a time: the second sees the first's chunks and marks.
        f"  {lock};\n"
        # The stale days, and any with a chunk that lacks a column (written under the
        # layout before, while a feature was added).
        f"  SELECT array_agg(DISTINCT d) INTO days FROM (SELECT prediction_date AS d FROM {stale}\n"
        f"    UNION ALL SELECT prediction_date FROM {chunks} WHERE {incomplete}) s;\n"
        "  IF days IS NOT NULL THEN\n"
        f"    DELETE FROM {chunks} WHERE prediction_date = ANY(days);\n"
        f"    {_chunks_sql(packing, chunks, day_rows, labels_table)};\n"
        f"    DELETE FROM {stale} WHERE prediction_date = ANY(days);\n"
        "  END IF;\n"
        # Labels noted as waiting whose prediction is stored now: packed with it below
        # (its chunk may have been packed without them).
        f"  IF EXISTS (SELECT 1 FROM {orphans}) THEN\n"
        f"    {clear.format(rows=orphans)};\n"
        f"    DELETE FROM {orphans} o USING {predictions_table} p\n"
        "    WHERE p.prediction_id = o.prediction_id;\n"
        "  END IF;\n"
        f"  SELECT array_agg(DISTINCT prediction_date) INTO relabelled FROM {chunks}\n"
        f"    WHERE {_LABEL} IS NULL;\n"
        "  IF relabelled IS NOT NULL THEN\n"
        f"    {_labels_sql(packing, chunks, labels_table)};\n"
        "  END IF;\n"
        "  RETURN (SELECT count(*) FROM (SELECT unnest(days) UNION SELECT unnest(relabelled)) s);\n"
        "END $refresh$"
    )
    for table, function, labels in (
        (predictions_table, pack, False),
        (labels_table, label, True),
    ):
        for event, clause, level in _TRIGGERS:
            name = q(_trigger(event, labels))
            call = (
                f"{note}('{'labels' if labels else 'predictions'}')"
                if event == "insert"
                else f"{function}()"
            )
            tx.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            tx.execute(
                f"CREATE TRIGGER {name} AFTER {clause.format(t=table)} "
                f"FOR EACH {level} EXECUTE FUNCTION {call}"
            )
    tx.execute(f"TRUNCATE {stale}, {orphans}, {pending}")
    tx.execute(_chunks_sql(packing, chunks, predictions_table, labels_table))
    tx.execute(
        f"INSERT INTO {orphans} SELECT l.prediction_id FROM {labels_table} l "  # noqa: S608
        f"WHERE NOT EXISTS (SELECT 1 FROM {predictions_table} p "
        "WHERE p.prediction_id = l.prediction_id)"
    )
    tx.execute(f"COMMENT ON TABLE {chunks} IS '{packing.marker()}'")


def writer(tx: Transaction, model: str) -> Writing | None:
    """For a writer of the model's predictions (and their labels) or of labels alone: the
    chunks' layout, where the model has chunks (after `ensure`; None on a column store), and
    the promise, for this transaction, to call `written` after each slice of predictions, or
    `labelled` after the labels: the triggers then leave its rows to it. Holds the model's
    lock to the end of the transaction (see the module's doc)."""
    chunks, _, orphans, _ = _tables(model)
    found = tx.query(
        "SELECT obj_description(to_regclass(:chunks), 'pg_class') AS marker", {"chunks": chunks}
    )
    packing = Packing.parse(found[0]["marker"])
    if packing is None:
        return None
    tx.execute("SELECT set_config(:name, 'on', true)", {"name": _BY_WRITER})
    tx.execute("SELECT pg_advisory_xact_lock(hashtext(:table))", {"table": chunks})
    waiting = tx.query(f"SELECT EXISTS (SELECT 1 FROM {orphans}) AS waiting")  # noqa: S608
    return Writing(packing, labels_known=not waiting[0]["waiting"])


def chunks_of(writing: Writing, rows: Any, labels: Any = None) -> list[dict[str, Any]]:
    """The chunks of `rows` (an Arrow table of predictions rows) as `written` inserts them,
    with `labels` (the Arrow labels written for them, if any) where the writer knows the
    rows' labels. The ingestion makes them on its preparing thread, beside the write of the
    slice before: packing a million rows takes a second of Python."""
    import pyarrow as pa

    if rows.num_rows == 0:
        return []
    packing = writing.packing
    label = _row_labels(rows, labels) if writing.labels_known else None
    names = packing.columns
    present = [n for n in names if n in rows.column_names]
    chosen = rows.select([*present, "prediction_id"])
    day_numbers = _day_numbers(rows)
    chunks = []
    for value in np.unique(day_numbers):
        where = np.flatnonzero(day_numbers == value)
        for start in range(0, len(where), CHUNK_ROWS):
            at = where[start : start + CHUNK_ROWS]
            if at[-1] - at[0] == len(at) - 1:  # a run of rows (a one-day slice): no copy
                part = chosen.slice(int(at[0]), len(at))
                labels_of = None if label is None else label.slice(int(at[0]), len(at))
            else:
                part = chosen.take(pa.array(at))
                labels_of = None if label is None else label.take(pa.array(at))
            params: dict[str, Any] = {
                "day": value.item(),
                "n": part.num_rows,
                "ids": _text_array(part.column("prediction_id")),
                "label": None if labels_of is None else _pack(labels_of, _numeric(packing)),
            }
            for i, name in enumerate(names):
                # A feature of the table that these rows lack (an older model version's) is
                # NULL in them, as the table stores it.
                kind = pa.float64() if name in packing.numeric else pa.string()
                column = part.column(name) if name in present else pa.nulls(part.num_rows, kind)
                params[f"c{i}"] = _pack(column, name in packing.numeric)
            chunks.append(params)
    return chunks


def _day_numbers(rows: Any) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    day = rows.column("prediction_date")
    if not pa.types.is_date32(day.type):
        day = pc.cast(day, pa.date32())
    return day.to_numpy(zero_copy_only=False).astype("datetime64[D]")


def written(
    tx: Transaction,
    model: str,
    writing: Writing,
    rows: Any,
    *,
    as_is: bool,
    labels: Any = None,
    chunks: Sequence[dict[str, Any]] = (),
) -> None:
    """After `rows` (an Arrow table of predictions rows) were written by a `writer`, with
    `labels` (the Arrow labels the writer writes for them, if any): their `chunks`
    (`chunks_of` the rows and labels, made ahead), when they went in as they are (every id
    new); else their days marked stale (the update trigger marked the days of the rows they
    changed), made again by `refresh`."""
    import pyarrow.compute as pc

    chunks_table, _, orphans, _ = _tables(model)
    if labels is not None and labels.num_rows:
        # Labels whose row was quarantined wait for their prediction like any other.
        ids = labels.column("prediction_id")
        waiting = ids.filter(pc.invert(pc.is_in(ids, value_set=rows.column("prediction_id"))))
        if len(waiting):
            tx.execute(
                f"INSERT INTO {orphans} SELECT unnest(CAST(:ids AS TEXT[])) "  # noqa: S608
                "ON CONFLICT DO NOTHING",
                {"ids": _text_array(waiting)},
            )
    if rows.num_rows == 0:
        return
    if not as_is:
        mark_stale(tx, model, [d.item() for d in np.unique(_day_numbers(rows))])
        return
    names = writing.packing.columns
    columns = ", ".join(quote_identifier(n) for n in names)
    placeholders = ", ".join(f":c{i}" for i in range(len(names)))
    statement = (
        f"INSERT INTO {chunks_table} (prediction_date, n_rows, {_IDS}, {columns}, {_LABEL}) "  # noqa: S608
        f"VALUES (:day, :n, CAST(:ids AS TEXT[]), {placeholders}, :label)"
    )
    for params in chunks:
        tx.execute(statement, params)


def labelled(
    tx: Transaction,
    model: str,
    predictions_table: str,
    labels_table: str,
    written: Mapping[str, Any],
) -> list[Any]:
    """After a `writer` of labels alone wrote them: the days of the labels' stored
    predictions, whose packed labels are cleared for `refresh`; the labels whose prediction
    is not stored are noted as waiting. `written`: `labelled_at` and `batches`, which select
    the labels written (new or changed). One pass over the labels table, which has no index
    on those."""
    if not written["batches"]:  # nothing was written
        return []
    chunks, _, orphans, _ = _tables(model)
    found = tx.query(
        f"WITH written AS (SELECT l.prediction_id, p.prediction_date FROM {labels_table} l "  # noqa: S608
        f"LEFT JOIN {predictions_table} p ON p.prediction_id = l.prediction_id "
        "WHERE l.labelled_at = :labelled_at AND l.batch_id = ANY(:batches)), "
        f"waiting AS (INSERT INTO {orphans} SELECT prediction_id FROM written "
        "WHERE prediction_date IS NULL ON CONFLICT DO NOTHING), "
        f"cleared AS (UPDATE {chunks} SET {_LABEL} = NULL WHERE {_LABEL} IS NOT NULL "
        "AND prediction_date IN (SELECT prediction_date FROM written)) "
        "SELECT DISTINCT prediction_date AS day FROM written WHERE prediction_date IS NOT NULL",
        dict(written),
    )
    return [r["day"] for r in found]


def mark_stale(tx: Transaction, model: str, days: Sequence[Any]) -> None:
    """Mark these days' chunks to be made again by `refresh`."""
    stale = _tables(model)[1]
    for day in days:
        tx.execute(
            f"INSERT INTO {stale} (prediction_date) VALUES (:day) ON CONFLICT DO NOTHING",
            {"day": day},
        )


def _numeric(packing: Packing) -> bool:
    return packing.label == "numeric"


def _row_labels(rows: Any, labels: Any) -> Any:
    """Each row's label (NULL where it has none) from the writer's labels of these rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if labels is None or labels.num_rows == 0:
        return pa.nulls(rows.num_rows, pa.string())
    at = pc.index_in(rows.column("prediction_id"), value_set=labels.column("prediction_id"))
    return labels.column("y_true").take(at)


def _text_array(values: Any) -> str:
    """A TEXT[] literal of Arrow strings (every element quoted, `\\` and `"` escaped)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.cast(values, pa.string())
    text = pc.replace_substring(text, "\\", "\\\\")
    text = pc.replace_substring(text, '"', '\\"')
    quoted = pc.binary_join_element_wise('"', text, '"', "")
    quoted = quoted.combine_chunks() if isinstance(quoted, pa.ChunkedArray) else quoted
    one_list = pa.ListArray.from_arrays(pa.array([0, len(quoted)], pa.int32()), quoted)
    return "{" + pc.binary_join(one_list, ",")[0].as_py() + "}"


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
    """Make the chunks of the model's stale days again and pack the labels that were
    cleared; how many days. Nothing to do (and nothing called) where the model has no
    chunks (a column store)."""
    *_, refresh_function = _functions(model)
    found = tx.query("SELECT to_regproc(:name) IS NOT NULL AS made", {"name": refresh_function})
    if not found[0]["made"]:
        return 0
    return int(tx.query(f"SELECT {refresh_function}() AS days")[0]["days"])


def select(
    model: str, columns: Sequence[str], *, label: bool = False, complete: Sequence[str] = ()
) -> str:
    """The day's chunks of these columns (and the label), in order, after whether the day
    is stale (one row even for a day without chunks, its columns NULL); the day is bound.
    `complete`: columns (and "(y_true)" for the label) of which a chunk lacking one also
    makes the day stale: a read in parts learns from its first that the others will do."""
    chunks, stale, *_ = _tables(model)
    listed = [f"c.{quote_identifier(c)}" for c in columns] + ([f"c.{_LABEL}"] if label else [])
    lacking = " OR ".join(
        f"{_LABEL if c == LABEL else quote_identifier(c)} IS NULL" for c in complete
    )
    also = (
        f" OR EXISTS (SELECT 1 FROM {chunks} WHERE prediction_date = :day AND ({lacking}))"
        if complete
        else ""
    )
    return (  # noqa: S608 - validated identifiers; the day is bound
        f"SELECT s.stale, c.n_rows, {', '.join(listed)} FROM "
        f"(SELECT EXISTS (SELECT 1 FROM {stale} WHERE prediction_date = :day){also} AS stale) s "
        f"LEFT JOIN {chunks} c ON c.prediction_date = :day ORDER BY c.chunk"
    )


def _columns(table: Any) -> tuple[int, list[tuple[str, Any]]]:
    """A `select` result's rows and its packed columns (name, chunks). Raises StaleDay for a
    stale day or labels."""
    import pyarrow.compute as pc

    if table.num_rows and table.column("stale")[0].as_py():
        raise StaleDay
    if table.column("n_rows").null_count:  # the day without chunks: one row of NULLs
        table = table.filter(pc.is_valid(table.column("n_rows")))
    n = int(pc.sum(table.column("n_rows")).as_py() or 0)
    columns = []
    for name in table.column_names[2:]:
        values = table.column(name)
        if values.null_count:
            # Labels cleared for `refresh`, or a chunk written under an older layout while
            # a feature was added: the tables have the day right.
            raise StaleDay
        columns.append((name, values))
    return n, columns


def decode_counts(table: Any) -> dict[str, CategoryCounts]:
    """The text columns of one `select` result as their values' counts, counted by Arrow
    from the chunks' bytes: no string per row is made, for pandas or anyone."""
    import pyarrow.compute as pc

    from mlops_assets.lib.drift import CategoryCounts

    n, columns = _columns(table)
    counts = {}
    for name, values in columns:
        strings = _strings(values.combine_chunks(), n, name)
        tally = pc.value_counts(strings.drop_null())
        counts[name] = CategoryCounts(
            labels=tuple(tally.field("values").to_pylist()),
            counts=tally.field("counts").to_numpy(zero_copy_only=False).astype(np.int64),
            missing=strings.null_count,
        )
    return counts


def decode(table: Any, packing: Packing) -> pd.DataFrame:
    """The columns of one `select` result as a frame: numeric float64, text pandas strings
    (NULL where NULL), the label named y_true. Raises StaleDay for a stale day or labels.
    A numeric column is copied once, from the received chunks into its own array: a day's
    40 features are 320 MB, and every further copy (concatenating the chunks, reordering
    the frame's columns) cost page faults of fresh memory worth a tenth of the drift tests."""
    import pandas as pd
    import pyarrow as pa

    from mlops_assets.storage.warehouse import arrow_to_pandas

    n, packed_columns = _columns(table)
    columns: dict[str, Any] = {}
    for name, values in packed_columns:
        numeric = _numeric(packing) if name == LABEL else name in packing.numeric
        key = "y_true" if name == LABEL else name
        if numeric:
            columns[key] = _numbers(values, n, name)
        else:
            strings = arrow_to_pandas(pa.table({key: _strings(values.combine_chunks(), n, name)}))
            columns[key] = strings[key].array
    return pd.DataFrame(columns, index=pd.RangeIndex(n), copy=False)


def _numbers(values: Any, n: int, name: str) -> np.ndarray:
    """A numeric column's chunks (big-endian float8) as float64, chunk by chunk into one
    array."""
    out = np.empty(n, dtype=np.float64)
    at = 0
    for part in values.chunks:
        data = _bytes(part)
        if len(data) % 8 or at + len(data) // 8 > n:
            raise ValueError(f"packed {name}: more than {n} rows' bytes")
        out[at : at + len(data) // 8] = np.frombuffer(data, dtype=">f8")
        at += len(data) // 8
    if at != n:
        raise ValueError(f"packed {name}: {at * 8} bytes for {n} rows")
    return out


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
