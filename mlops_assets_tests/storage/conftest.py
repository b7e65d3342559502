"""Fixtures for the storage of production data: a migrated warehouse on each engine, and
contracts built the way users write them (parse_contract of a plain mapping)."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_assets.lib.contract import ModelContract, parse_contract
from mlops_assets.storage.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse

DAY = dt.date(2026, 3, 2)
LABEL_TABLE = {"table": "serving.labels"}


@pytest.fixture(scope="session")
def _migrated_duckdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrations run once; each test gets a copy of the file (migrating costs ~0.5 s)."""
    path = tmp_path_factory.mktemp("template") / "warehouse.duckdb"
    DuckDBWarehouse(path).migrate()
    return path


@pytest.fixture(scope="session")
def _shared_pg(pg_admin_dsn: str) -> Iterator[PostgresWarehouse]:
    """One migrated database for the session (creating and dropping one per test costs ~3 s);
    each test starts from empty `serving` and `inference` schemas and empty shared tables."""
    import psycopg
    from psycopg import sql

    name = f"mlops_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as con:
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        wh = PostgresWarehouse(f"{pg_admin_dsn.rsplit('/', 1)[0]}/{name}")
        wh.migrate()
        yield wh
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as con:
            con.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    """A migrated warehouse on each engine with a `serving` schema for the users' tables."""
    if request.param == "embedded":
        path = tmp_path / "warehouse.duckdb"
        shutil.copy(request.getfixturevalue("_migrated_duckdb"), path)
        wh: Warehouse = DuckDBWarehouse(path)
    else:
        return request.getfixturevalue("pg_warehouse")
    wh.execute("CREATE SCHEMA IF NOT EXISTS serving")
    return wh


@pytest.fixture
def pg_warehouse(_shared_pg: PostgresWarehouse) -> PostgresWarehouse:
    """The session's PostgreSQL warehouse, its `serving` and `inference` schemas empty and
    its shared tables of ingestion truncated."""
    with _shared_pg.transaction() as tx:
        tx.execute("DROP SCHEMA IF EXISTS serving CASCADE")
        tx.execute("DROP SCHEMA IF EXISTS inference CASCADE")
        tx.execute("CREATE SCHEMA inference")
        tx.execute("CREATE SCHEMA serving")
        tx.execute("TRUNCATE mlops.quarantine, mlops.ingest_batches")
    return _shared_pg


def binary_contract(
    *,
    predictions: dict[str, str] | None = None,
    labels: dict[str, str] | None = LABEL_TABLE,
    name: str = "credit",
    features: dict[str, str] | None = None,
    **extra: Any,
) -> ModelContract:
    return parse_contract(
        {
            "name": name,
            "task": "binary",
            "model": {"train": {"source": {"table": "serving.history"}}},
            "columns": {
                "features": features or {"amount": "numeric", "region": "categorical"},
                "target": "defaulted",
                "id": "pid",
                "timestamp": "ts",
                "prediction": "label",
                "probability": "p",
                "loaded_at": "loaded_at",
                "labelled_at": "labelled_at",
            },
            "production": {
                "predictions": predictions or {"table": "serving.preds"},
                **({"labels": labels} if labels else {}),
            },
            **extra,
        },
        source="test",
    )


def prediction_frame(
    n: int, *, day: dt.date = DAY, start: int = 0, seed: int = 0, loaded_at: Any = None
) -> pd.DataFrame:
    """n predictions on `day` in the users' column names (ids start-...)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    base = dt.datetime.combine(day, dt.time(0, 0))
    frame = pd.DataFrame(
        {
            "pid": [f"id-{start + i}" for i in range(n)],
            "ts": [base + dt.timedelta(seconds=60 * i % 86_000) for i in range(n)],
            "amount": rng.normal(100, 10, n),
            "region": rng.choice(["north", "south"], n),
            "label": (p >= 0.5).astype(int),
            "p": p,
        }
    )
    frame["loaded_at"] = loaded_at if loaded_at is not None else base
    return frame
