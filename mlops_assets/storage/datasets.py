"""Whole datasets named by a contract's `Source`: training history and validation data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlops_assets.lib.contract import Source
from mlops_assets.storage.warehouse import Warehouse


class DatasetError(ValueError):
    """A dataset cannot be read or lacks columns; the message names source, column and model."""


def resolve_path(path: str, home: Path) -> Path:
    """Relative Parquet folders are relative to `home`: MLOPS_SOURCES_ROOT, else MLOPS_HOME."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else home / p


def read_dataset(source: Source, warehouse: Warehouse, home: Path, *, model: str) -> pd.DataFrame:
    if source.table:
        schema, table = source.table.split(".")
        try:
            # Identifiers are validated by the contract (schema.table of word characters).
            return warehouse.query_df(f'SELECT * FROM "{schema}"."{table}"')  # noqa: S608
        except Exception as error:
            raise DatasetError(
                f"model {model}: cannot read table {source.table}: {error}"
            ) from error
    folder = resolve_path(source.parquet or "", home)
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        raise DatasetError(f"model {model}: no .parquet files in {folder}")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def require_columns(frame: pd.DataFrame, columns: list[str], *, model: str, source: Source) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"model {model}: {source.describe()} is missing column(s) {', '.join(missing)}"
        )
