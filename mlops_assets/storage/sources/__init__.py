"""Readers of the serving system's data: the predictions and labels the users write.

One interface, two implementations: a table or view in the warehouse (`table.py`) and a folder
of Parquet files, one batch per file (`parquet.py`). A reader returns the users' columns under
the names the contract gives them; the inference log (`storage/inference_log.py`) types,
validates and stores them.

Pick-up is incremental: `poll(cursor)` says what is new since an opaque cursor (a JSON string a
sensor can keep), on which days the new rows fall and how many there are, cheaply (an aggregate
over the timestamp column only). `read_new(poll, columns)` then reads exactly those rows;
`read_day` re-reads one whole day (a backfill or a re-materialized partition). Their `iter_`
twins yield the same rows in slices of `chunk_rows`, so a million-row day is never one frame
in memory (the inference log stores it slice by slice).
"""

from __future__ import annotations

import datetime as dt
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlops_assets.lib.contract import Source
from mlops_assets.storage.warehouse import Warehouse, arrow_to_pandas

BATCH_COLUMN = "_batch"
# Rows per slice of a streamed read: ~100 MB of pandas at 40 features, big enough that the
# per-slice statements cost little next to the rows, and two of DuckDB's row groups, so each
# slice the embedded engine inserts is written as whole row groups, two threads at once
# (one row group per statement would insert on one thread; four measured no better).
CHUNK_ROWS = 245_760
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SourceSchemaError(ValueError):
    """A column the contract names is not in the source (or one of its files)."""

    def __init__(self, *, columns: list[str], source: str, model: str, batch: str | None = None):
        self.columns = columns
        self.source = source
        self.model = model
        self.batch = batch
        where = f"{source} (file {batch})" if batch else source
        names = ", ".join(repr(c) for c in columns)
        super().__init__(
            f"model {model}: column(s) {names} not found in {where}; "
            "the contract's columns must match the data the serving system writes"
        )


class SourceError(RuntimeError):
    """The source cannot be read at all (missing table or folder, unreadable cursor)."""


def quote_identifier(name: str) -> str:
    """Double-quoted identifier after checking it is a plain name: names come from contracts
    and files, and are the only text ever formatted into SQL (values are always bound)."""
    if not _NAME.match(name):
        raise SourceError(f"not a valid identifier: {name!r}")
    return f'"{name}"'


@dataclass(frozen=True)
class Poll:
    """What is new in a source since `previous` (a cursor returned by an earlier poll)."""

    days: frozenset[dt.date]  # days (by the timestamp column) of the new rows
    n_rows: int  # new rows (a re-written file or boundary row counts again)
    cursor: str  # the cursor to keep (JSON); equals `previous` when nothing is new
    batches: tuple[str, ...]  # Parquet: the new files' names; table: the table's name
    span: str | None = None  # opaque: what `read_new` must read (None when nothing is new)
    unreadable: tuple[str, ...] = ()  # Parquet: "file: error" for files not readable yet

    @property
    def empty(self) -> bool:
        return self.n_rows == 0


class ArrowSlices(Iterator[pd.DataFrame]):
    """A source's slices that are Arrow record batches underneath: iterated, pandas frames
    (what every reader returns); `arrow()` hands over the batches themselves instead, for a
    consumer that works on Arrow (the embedded engine's ingestion types and validates them
    in DuckDB, where a pandas frame would only be converted back). Either way, once."""

    def __init__(self, batches: Iterator[Any]):
        self._batches = batches

    def __next__(self) -> pd.DataFrame:
        return arrow_to_pandas(next(self._batches), split_blocks=True)

    def arrow(self) -> Iterator[Any]:
        return self._batches

    def close(self) -> None:
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()


class SourceReader(ABC):
    """Reads one source of one model."""

    def __init__(self, source: Source, *, model: str):
        self.source = source
        self.model = model

    @abstractmethod
    def poll(self, cursor: str | None, *, cursor_column: str, timestamp_column: str | None) -> Poll:
        """New rows since `cursor` (None: everything). `timestamp_column` None: days empty
        (labels need not carry the prediction's timestamp)."""

    @abstractmethod
    def iter_new(
        self, poll: Poll, columns: list[str], *, cursor_column: str, chunk_rows: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """The rows `poll` counted, in slices: `columns` plus `_batch` (file name, or the
        source name)."""

    @abstractmethod
    def iter_day(
        self,
        day: dt.date,
        columns: list[str],
        *,
        timestamp_column: str,
        chunk_rows: int = CHUNK_ROWS,
    ) -> Iterator[pd.DataFrame]:
        """Rows whose timestamp falls on `day` (UTC), in slices: `columns` plus `_batch`."""

    def read_new(self, poll: Poll, columns: list[str], *, cursor_column: str) -> pd.DataFrame:
        """`iter_new` as one frame."""
        return self.frame_of(self.iter_new(poll, columns, cursor_column=cursor_column), columns)

    def read_day(self, day: dt.date, columns: list[str], *, timestamp_column: str) -> pd.DataFrame:
        """`iter_day` as one frame."""
        return self.frame_of(
            self.iter_day(day, columns, timestamp_column=timestamp_column), columns
        )

    @staticmethod
    def frame_of(chunks: Iterable[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
        frames = list(chunks)
        if not frames:
            return pd.DataFrame({c: [] for c in [*columns, BATCH_COLUMN]})
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    @abstractmethod
    def read_ids(self, ids: list[str], columns: list[str], *, id_column: str) -> pd.DataFrame:
        """Rows whose `id_column` is one of `ids` (compared as text): `columns` plus `_batch`."""

    @abstractmethod
    def columns(self) -> list[str]:
        """The source's column names."""

    @abstractmethod
    def exists(self) -> bool:
        """Whether the table (or view) or the folder is there at all."""

    def _missing(self, wanted: list[str], present: list[str], batch: str | None = None) -> None:
        lowered = {p.lower() for p in present}
        missing = [c for c in wanted if c not in present and c.lower() not in lowered]
        if missing:
            raise SourceSchemaError(
                columns=missing, source=self.source.describe(), model=self.model, batch=batch
            )


def open_source(source: Source, warehouse: Warehouse, *, model: str) -> SourceReader:
    """The reader for a contract's source (`model` names the model in error messages)."""
    if source.table is not None:
        from mlops_assets.storage.sources.table import TableSource

        return TableSource(source, warehouse, model=model)
    from mlops_assets.storage.sources.parquet import ParquetSource

    return ParquetSource(source, model=model)


def open_labels(source: Source, warehouse: Warehouse, *, model: str) -> SourceReader | None:
    """The labels source's reader, or None while it does not exist yet: labels arrive days
    after the predictions, and a table or folder not yet created means "no labels so far",
    not a broken source that would stop the predictions' pick-up."""
    reader = open_source(source, warehouse, model=model)
    return reader if reader.exists() else None


__all__ = [
    "BATCH_COLUMN",
    "CHUNK_ROWS",
    "ArrowSlices",
    "Poll",
    "SourceError",
    "SourceReader",
    "SourceSchemaError",
    "arrow_to_pandas",
    "open_labels",
    "open_source",
    "quote_identifier",
]
