"""A table or view in the warehouse (either engine, any schema) as a source.

Pick-up cursor: a high-water mark on the cursor column (the contract's `loaded_at`, else the
timestamp) plus the number of rows seen at exactly that value. The next poll scans `>= mark`:
rows strictly above are new; rows equal to the mark are new only if there are now more of them
(a bulk insert often gives thousands of rows one `now()`), and then the whole boundary is read
again, which is harmless because the inference log upserts by prediction id. So no id list is
kept in the cursor, however many rows share the mark.

What a mark alone cannot see is a row committed later with a cursor value below the mark:
with several writers, a transaction that stamped `loaded_at` when it began (a default of
`now()` does) and commits after a later-stamped one. The source's `lookback_seconds` widens
the boundary into a window: the cursor keeps the number of rows from `mark - lookback` to the
mark, and when a poll finds more there, the window is read again (the log upserts; the rows
it has write nothing) along with the rows above the mark. A window of 0 is the mark alone.

Identifiers (schema, table, columns) are validated and quoted, never values; the dynamic SQL
here exists only because the table and column names come from the contract.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Iterator
from typing import Any

import pandas as pd

from mlops_assets.lib.contract import Source
from mlops_assets.storage.sources import (
    BATCH_COLUMN,
    CHUNK_ROWS,
    Poll,
    SourceError,
    SourceReader,
    quote_identifier,
)
from mlops_assets.storage.warehouse import Warehouse, sql_file

# PostgreSQL column types -> the typed frame kinds of `Transaction.select_frame`; anything else
# is read as text and typed by the inference log.
_PG_KINDS = {
    "smallint": "bigint",
    "integer": "bigint",
    "bigint": "bigint",
    "real": "double",
    "double precision": "double",
    "numeric": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp without time zone": "timestamp",
    "text": "text",
    "character varying": "text",
    "character": "text",
}


def _encode(value: Any) -> dict[str, Any]:
    if isinstance(value, dt.datetime):
        return {"t": "timestamp", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {"t": "date", "v": value.isoformat()}
    if isinstance(value, bool):
        raise SourceError("a boolean column cannot be a pick-up cursor")
    if isinstance(value, int):
        return {"t": "int", "v": value}
    if isinstance(value, float):
        return {"t": "float", "v": value}
    if isinstance(value, decimal.Decimal):
        return {"t": "decimal", "v": str(value)}
    if isinstance(value, str):
        return {"t": "text", "v": value}
    raise SourceError(f"cannot use a value of type {type(value).__name__} as a pick-up cursor")


def _day_key(day: dt.date | None) -> str:
    return day.isoformat() if day is not None else "none"


def _late_rows(state: dict | None, in_window: dict[str, int]) -> tuple[int, dict[str, int]]:
    """How many rows were committed into the last poll's window since, and by how many each
    day's rows there grew. With a lookback the cursor counts the window's rows by day, so
    that late rows request their own days only; the mark alone is one count, and every day
    at the mark is asked for when it grew."""
    seen_by_day = state.get("window_days") if state else None
    if seen_by_day is not None:
        grew = {k: n - int(seen_by_day.get(k, 0)) for k, n in in_window.items()}
        return sum(g for g in grew.values() if g > 0), grew
    late = max(sum(in_window.values()) - (int(state["n_at_mark"]) if state else 0), 0)
    return late, {k: n if late else 0 for k, n in in_window.items()}


def _decode(mark: dict[str, Any]) -> Any:
    kind, value = mark["t"], mark["v"]
    if kind == "timestamp":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "decimal":
        return decimal.Decimal(value)
    if kind in ("int", "float", "text"):
        return value
    raise SourceError(f"unknown cursor value type {kind!r}")


class TableSource(SourceReader):
    def __init__(self, source: Source, warehouse: Warehouse, *, model: str):
        super().__init__(source, model=model)
        assert source.table is not None
        self.warehouse = warehouse
        self._schema, self._table = source.table.split(".", 1)
        self._resolved: dict[str, tuple[str, str]] | None = None
        self._relation: str | None = None

    # -- schema -------------------------------------------------------------------------

    def _lookup(self) -> dict[str, tuple[str, str]]:
        """Contract-style name (as stored) -> (stored name, data type)."""
        if self._resolved is None:
            rows = self.warehouse.query(
                sql_file("queries/select_source_columns"),
                {"schema_name": self._schema, "table_name": self._table},
            )
            if not rows:
                raise SourceError(
                    f"model {self.model}: {self.source.describe()} does not exist "
                    "(or has no columns) in the warehouse"
                )
            relations = {(r["table_schema"], r["table_name"]) for r in rows}
            exact = (self._schema, self._table)
            relation = exact if exact in relations else sorted(relations)[0]
            self._relation = f"{quote_identifier(relation[0])}.{quote_identifier(relation[1])}"
            self._resolved = {
                r["column_name"]: (r["column_name"], str(r["data_type"]).lower())
                for r in rows
                if (r["table_schema"], r["table_name"]) == relation
            }
        return self._resolved

    def columns(self) -> list[str]:
        return list(self._lookup())

    def exists(self) -> bool:
        try:
            self._lookup()
        except SourceError:
            return False
        return True

    def _column(self, name: str) -> tuple[str, str]:
        found = self._lookup()
        if name in found:
            return found[name]
        by_lower = {k.lower(): v for k, v in found.items()}
        self._missing([name], list(found))
        return by_lower[name.lower()]

    def _select_list(self, columns: list[str]) -> tuple[str, dict[str, str]]:
        """`"stored" AS "wanted"` per column, and each output column's frame type (PG)."""
        self._missing(columns, self.columns())
        parts, types = [], {}
        for name in columns:
            stored, data_type = self._column(name)
            kind = _PG_KINDS.get(data_type)
            expression = quote_identifier(stored)
            if kind is None and self.warehouse.engine == "postgres":
                # A type pandas has no twin for (timestamptz, json, uuid, ...): read as text.
                expression = f"CAST({expression} AS TEXT)"
                kind = "text"
            parts.append(f"{expression} AS {quote_identifier(name)}")
            types[name] = kind or "text"
        return ", ".join(parts), types

    def _stream(
        self,
        select: str,
        where: str,
        params: dict[str, Any],
        types: dict[str, str],
        chunk_rows: int = CHUNK_ROWS,
    ) -> Iterator[pd.DataFrame]:
        # Dynamic identifiers only (validated and quoted above); values are bound.
        sql = f"SELECT {select} FROM {self._relation} WHERE {where}"  # noqa: S608
        # Engine types on DuckDB (it keeps the source's own); the frame kinds on PostgreSQL.
        typed = types if self.warehouse.engine == "postgres" else None
        with self.warehouse.transaction() as tx:
            for frame in tx.stream_frames(sql, params, types=typed, chunk_rows=chunk_rows):
                frame[BATCH_COLUMN] = self.source.table
                yield frame

    # -- poll ---------------------------------------------------------------------------

    def poll(self, cursor: str | None, *, cursor_column: str, timestamp_column: str | None) -> Poll:
        try:
            state = json.loads(cursor) if cursor else None
        except json.JSONDecodeError as error:
            raise SourceError(f"unreadable cursor for {self.source.describe()}: {error}") from None
        self._lookup()
        stored, data_type = self._column(cursor_column)
        c = quote_identifier(stored)
        lookback = getattr(self.source, "lookback_seconds", 0)
        if lookback and not data_type.startswith(("timestamp", "date")):
            raise SourceError(
                f"model {self.model}: {self.source.describe()} has lookback_seconds, but its "
                f"pick-up column {cursor_column!r} is {data_type}, not a timestamp"
            )
        day = (
            f"CAST({quote_identifier(self._column(timestamp_column)[0])} AS DATE)"
            if timestamp_column
            else "CAST(NULL AS DATE)"
        )
        params: dict[str, Any] = {}
        # The window of the last poll, [from, mark] (from = mark without a lookback), and
        # the count of its rows then ("n_at_mark"): more there now were committed late.
        if state is None:
            low, at_low = "1 = 1", "0"
        else:
            params["lo"] = _decode(state.get("from", state["mark"]))
            params["mark"] = _decode(state["mark"])
            low, at_low = f"{c} >= :lo", f"CASE WHEN {c} <= :mark THEN 1 ELSE 0 END"
        # The next window, from the new mark back; the lookback is a validated integer.
        start = f"m.hi - INTERVAL '{int(lookback)} seconds'" if lookback else "m.hi"
        sql = (  # noqa: S608 - validated, quoted identifiers; values bound
            f"WITH m AS (SELECT max({c}) AS hi FROM {self._relation} WHERE {low}) "
            f"SELECT {day} AS day, count(*) AS n, sum({at_low}) AS n_lo, "
            f"sum(CASE WHEN {c} >= {start} THEN 1 ELSE 0 END) AS n_hi, max(m.hi) AS hi, "
            f"max({start}) AS window_from "
            f"FROM {self._relation}, m WHERE {low} AND {c} <= m.hi GROUP BY 1"
        )
        rows = self.warehouse.query(sql, params)
        for r in rows:
            r["day"] = r["day"].date() if isinstance(r["day"], dt.datetime) else r["day"]
        late, grew = _late_rows(state, {_day_key(r["day"]): int(r["n_lo"] or 0) for r in rows})
        boundary_new = late > 0
        n_new = sum(int(r["n"]) - int(r["n_lo"] or 0) for r in rows) + late
        if n_new <= 0:
            return Poll(frozenset(), 0, cursor or "", (), span=None)
        days = frozenset(
            r["day"]
            for r in rows
            if r["day"] is not None
            and (int(r["n"]) > int(r["n_lo"] or 0) or grew[_day_key(r["day"])] > 0)
        )
        high = rows[0]["hi"]
        window: dict[str, Any] = {"mark": _encode(high)}
        if lookback:
            window["from"] = _encode(rows[0]["window_from"])
            window["window_days"] = {_day_key(r["day"]): int(r["n_hi"]) for r in rows if r["n_hi"]}
        window["n_at_mark"] = sum(int(r["n_hi"]) for r in rows)
        lo = None
        if state is not None:
            # Late rows: the whole last window again; else only what is above its mark.
            lo = state.get("from", state["mark"]) if boundary_new else state["mark"]
        span = json.dumps({"lo": lo, "lo_inclusive": boundary_new, "hi": _encode(high)})
        new_cursor = json.dumps(window)
        return Poll(days, n_new, new_cursor, (str(self.source.table),), span=span)

    def iter_new(
        self, poll: Poll, columns: list[str], *, cursor_column: str, chunk_rows: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        select, types = self._select_list(columns)
        if poll.span is None:
            return self._stream(select, "1 = 0", {}, types, chunk_rows)
        span = json.loads(poll.span)
        c = quote_identifier(self._column(cursor_column)[0])
        params: dict[str, Any] = {"hi": _decode(span["hi"])}
        where = f"{c} <= :hi"
        if span["lo"] is not None:
            params["lo"] = _decode(span["lo"])
            where += f" AND {c} {'>=' if span['lo_inclusive'] else '>'} :lo"
        return self._stream(select, where, params, types, chunk_rows)

    def iter_day(
        self,
        day: dt.date,
        columns: list[str],
        *,
        timestamp_column: str,
        chunk_rows: int = CHUNK_ROWS,
    ) -> Iterator[pd.DataFrame]:
        select, types = self._select_list(columns)
        ts = quote_identifier(self._column(timestamp_column)[0])
        # A range, not CAST(ts AS DATE) = day, so an index on the timestamp is used.
        start = dt.datetime.combine(day, dt.time())
        params = {"start": start, "end": start + dt.timedelta(days=1)}
        return self._stream(select, f"{ts} >= :start AND {ts} < :end", params, types, chunk_rows)

    def read_ids(self, ids: list[str], columns: list[str], *, id_column: str) -> pd.DataFrame:
        select, types = self._select_list(columns)
        key = quote_identifier(self._column(id_column)[0])
        where, params = f"CAST({key} AS TEXT) = ANY(:ids)", {"ids": [str(i) for i in ids]}
        return self.frame_of(self._stream(select, where, params, types), columns)
