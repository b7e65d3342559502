"""A folder of Parquet files as a source: one batch per file, read by in-memory DuckDB.

Pick-up cursor: the names of the files already picked up, each with its modification time and
size, so a new file is new and a re-written file is picked up again (its rows replace the old
ones by prediction id). Names that left the folder are dropped from the cursor, so the cursor
stays as large as the folder. Files whose name starts with `.` or `_` are ignored: write a
batch under such a name and rename it when complete, and a half-written file is never read.
A file that cannot be read yet is left out of the cursor and listed in `Poll.unreadable`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from mlops_assets.lib.contract import Source
from mlops_assets.storage.sources import (
    BATCH_COLUMN,
    CHUNK_ROWS,
    ArrowSlices,
    Poll,
    SourceError,
    SourceReader,
    arrow_to_pandas,
    quote_identifier,
)


class ParquetSource(SourceReader):
    def __init__(self, source: Source, *, model: str):
        super().__init__(source, model=model)
        assert source.parquet is not None
        self.folder = Path(source.parquet)

    def _files(self) -> dict[str, tuple[int, int]]:
        """Batch files now in the folder: name -> (mtime_ns, size)."""
        if not self.folder.is_dir():
            raise SourceError(f"model {self.model}: {self.source.describe()} is not a folder")
        found = {}
        with os.scandir(self.folder) as entries:
            for entry in entries:
                name = entry.name
                if not name.endswith(".parquet") or name[0] in "._" or not entry.is_file():
                    continue
                stat = entry.stat()
                found[name] = (stat.st_mtime_ns, stat.st_size)
        return dict(sorted(found.items()))

    def _schema(self, name: str) -> list[str]:
        import pyarrow.parquet as pq

        return list(pq.read_schema(self.folder / name).names)

    def exists(self) -> bool:
        return self.folder.is_dir()

    def columns(self) -> list[str]:
        names: list[str] = []
        for name in self._files():
            names += [c for c in self._schema(name) if c not in names]
        return names

    def _check(self, names: list[str], columns: list[str]) -> None:
        for name in names:
            self._missing(columns, self._schema(name), batch=name)

    def _query(self, names: list[str], sql: str, params: dict[str, Any]) -> pd.DataFrame:
        import duckdb

        con = duckdb.connect()
        try:
            params = {**params, "files": [str(self.folder / n) for n in names]}
            # Through Arrow: text stays Arrow-backed (no Python string per value).
            return arrow_to_pandas(con.execute(sql, params).arrow())
        finally:
            con.close()

    def _stream(
        self,
        names: list[str],
        columns: list[str],
        where: str,
        params: dict[str, Any],
        chunk_rows: int,
    ) -> ArrowSlices:
        return ArrowSlices(self._batches(names, columns, where, params, chunk_rows))

    def _batches(
        self,
        names: list[str],
        columns: list[str],
        where: str,
        params: dict[str, Any],
        chunk_rows: int,
    ) -> Iterator[Any]:
        if not names:
            return
        import duckdb

        self._check(names, columns)
        select = ", ".join(quote_identifier(c) for c in columns)
        # Identifiers validated and quoted; the file list and values are bound.
        sql = (
            f"SELECT {select}, parse_filename(filename) AS {BATCH_COLUMN} "  # noqa: S608
            "FROM read_parquet($files, union_by_name = true, filename = true) "
            f"WHERE {where}"
        )
        con = duckdb.connect()
        try:
            params = {**params, "files": [str(self.folder / n) for n in names]}
            # Record batches as DuckDB scans them: memory holds a slice, never the whole day.
            batches = con.execute(sql, params).to_arrow_reader(chunk_rows)
            for batch in batches:
                if batch.num_rows:
                    yield batch
        finally:
            con.close()

    def poll(self, cursor: str | None, *, cursor_column: str, timestamp_column: str | None) -> Poll:
        """`cursor_column` is not used: files are the unit of pick-up."""
        try:
            seen = json.loads(cursor)["files"] if cursor else {}
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise SourceError(f"unreadable cursor for {self.source.describe()}: {error}") from None
        files = self._files()
        new = [n for n, stamp in files.items() if seen.get(n) != list(stamp)]
        readable, unreadable = [], []
        for name in new:
            try:
                columns = self._schema(name)
            except (OSError, ValueError) as error:  # pyarrow: ArrowInvalid is a ValueError
                unreadable.append(f"{name}: {error}")
                continue
            if timestamp_column:
                self._missing([timestamp_column], columns, batch=name)
            readable.append(name)
        keep = {n: list(s) for n, s in files.items() if n in seen and seen[n] == list(s)}
        keep.update({n: list(files[n]) for n in readable})
        new_cursor = json.dumps({"files": keep}, sort_keys=True)
        if not readable:
            return Poll(frozenset(), 0, new_cursor, (), span=None, unreadable=tuple(unreadable))
        if timestamp_column:
            ts = quote_identifier(timestamp_column)
            rows = self._query(
                readable,
                f"SELECT CAST(CAST({ts} AS TIMESTAMP) AS DATE) AS day, count(*) AS n "  # noqa: S608
                "FROM read_parquet($files, union_by_name = true) GROUP BY 1",
                {},
            )
            days = frozenset(
                pd.Timestamp(d).date() for d in rows["day"] if d is not None and not pd.isna(d)
            )
            n_rows = int(rows["n"].sum())
        else:
            import pyarrow.parquet as pq

            days = frozenset()
            n_rows = sum(pq.ParquetFile(self.folder / n).metadata.num_rows for n in readable)
        return Poll(
            days,
            n_rows,
            new_cursor,
            tuple(readable),
            span=json.dumps(readable),
            unreadable=tuple(unreadable),
        )

    def iter_new(
        self, poll: Poll, columns: list[str], *, cursor_column: str, chunk_rows: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        names = json.loads(poll.span) if poll.span else []
        return self._stream(names, columns, "1 = 1", {}, chunk_rows)

    def iter_day(
        self,
        day: dt.date,
        columns: list[str],
        *,
        timestamp_column: str,
        chunk_rows: int = CHUNK_ROWS,
    ) -> Iterator[pd.DataFrame]:
        ts = quote_identifier(timestamp_column)
        start = dt.datetime.combine(day, dt.time())
        return self._stream(
            list(self._files()),
            columns,
            f"CAST({ts} AS TIMESTAMP) >= $start AND CAST({ts} AS TIMESTAMP) < $end",
            {"start": start, "end": start + dt.timedelta(days=1)},
            chunk_rows,
        )

    def read_ids(self, ids: list[str], columns: list[str], *, id_column: str) -> pd.DataFrame:
        key = quote_identifier(id_column)
        return self.frame_of(
            self._stream(
                list(self._files()),
                columns,
                f"CAST({key} AS VARCHAR) = ANY($ids)",
                {"ids": [str(i) for i in ids]},
                CHUNK_ROWS,
            ),
            columns,
        )
