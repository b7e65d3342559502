"""Ingestion of one day of predictions against the engine's own bulk path, same rows, same run.

Usage: python bench/ingest_scale.py [--rows 1000000] [--numeric 30] [--categorical 10]
       [--engine embedded|postgres|both] [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

The serving system's batch is one Parquet file. Ours: the Parquet source reads it, the
inference log types and validates every row, upserts them by prediction id and records the
batch. Bulk: DuckDB's `read_parquet` straight into a table (embedded), or PostgreSQL `COPY` of
the same rows (postgres). Both start from the file on disk. The last line printed is one JSON
object with `<engine>_ingest_over_bulk` (our rows/s over bulk rows/s; target >= 0.8).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops_assets.lib.contract import Source, parse_contract
from mlops_assets.storage.inference_log import ensure_tables, ingest_predictions, layout
from mlops_assets.storage.sources import open_source
from mlops_assets.storage.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse

DAY = dt.date(2026, 3, 2)


def make_batch(rows: int, n_num: int, n_cat: int, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    start = np.datetime64(dt.datetime.combine(DAY, dt.time()), "us")
    columns: dict[str, object] = {
        "prediction_id": np.char.add("p-", np.arange(rows).astype(str)),
        "predicted_at": start + rng.integers(0, 86_400_000_000, rows).astype("timedelta64[us]"),
    }
    features = {}
    for i in range(n_num):
        columns[f"num_{i}"] = rng.normal(i, 1 + i % 5, rows)
        features[f"num_{i}"] = "numeric"
    for i in range(n_cat):
        # Half int-coded, half strings: both shapes users write.
        codes = rng.integers(0, 5 + i, rows)
        columns[f"cat_{i}"] = codes if i % 2 == 0 else np.char.add("c", codes.astype(str))
        features[f"cat_{i}"] = "categorical"
    p = rng.uniform(0, 1, rows)
    columns["probability"] = p
    columns["outcome"] = (rng.uniform(0, 1, rows) < p).astype(int)
    return pd.DataFrame(columns), features


def contract_for(folder: Path, features: dict):
    return parse_contract(
        {
            "name": "scale",
            "task": "binary",
            "model": {"train": {"source": {"table": "serving.history"}}},
            "columns": {"features": features, "target": "outcome", "probability": "probability"},
            "production": {
                "predictions": {"parquet": str(folder)},
                "labels": {"table": "serving.labels"},
            },
        },
        source="bench",
    )


def ours(wh: Warehouse, contract, folder: Path) -> dict:
    ensure_tables(wh, contract)
    started = time.perf_counter()
    reader = open_source(Source(parquet=str(folder)), wh, model=contract.name)
    poll = reader.poll(None, cursor_column="", timestamp_column="predicted_at")
    polled = time.perf_counter()
    frame = reader.read_new(poll, layout(contract).source_columns("prediction"), cursor_column="")
    read = time.perf_counter()
    result = ingest_predictions(wh, contract, frame, batch_id="b", model_version="1")
    done = time.perf_counter()
    assert result.n_good == len(frame), result
    return {
        "seconds": done - started,
        "poll_s": polled - started,
        "read_s": read - polled,
        "ingest_s": done - read,
    }


def bulk_embedded(path: Path, file: Path) -> float:
    import duckdb

    con = duckdb.connect(str(path))
    try:
        started = time.perf_counter()
        con.execute("CREATE TABLE bulk AS SELECT * FROM read_parquet($f)", {"f": str(file)})
        return time.perf_counter() - started
    finally:
        con.close()


def _pg_type(kind) -> str:
    import pyarrow as pa

    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "TEXT"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMP"
    if pa.types.is_floating(kind):
        return "DOUBLE PRECISION"
    return "BIGINT"


def bulk_postgres(dsn: str, file: Path) -> float:
    """COPY of the same rows the way a tuned loader would: Arrow writes CSV, COPY reads it."""
    import io

    import psycopg
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    started = time.perf_counter()
    table = pq.read_table(file)
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
    columns = ", ".join(f'"{f.name}" {_pg_type(f.type)}' for f in table.schema)
    with psycopg.connect(dsn) as con, con.cursor() as cur:
        cur.execute(f"CREATE TABLE bulk ({columns})")
        with cur.copy("COPY bulk FROM STDIN (FORMAT csv)") as copy:
            data = buffer.getvalue()
            for i in range(0, len(data), 1 << 22):
                copy.write(data[i : i + (1 << 22)])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--numeric", type=int, default=30)
    parser.add_argument("--categorical", type=int, default=10)
    parser.add_argument("--engine", choices=["embedded", "postgres", "both"], default="embedded")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "inbox"
        folder.mkdir()
        frame, features = make_batch(args.rows, args.numeric, args.categorical)
        file = folder / "batch-0001.parquet"
        frame.to_parquet(file, index=False)
        del frame
        contract = contract_for(folder, features)
        print(f"{args.rows:,} rows x {len(features)} features, one Parquet batch")
        engines = ["embedded", "postgres"] if args.engine == "both" else [args.engine]
        for engine in engines:
            if engine == "embedded":
                bulk = bulk_embedded(root / "bulk.duckdb", file)
                wh = DuckDBWarehouse(root / "ours.duckdb")
                wh.migrate()
                mine = ours(wh, contract, folder)
            else:
                import psycopg
                from psycopg import sql

                name = f"bench_{uuid.uuid4().hex[:10]}"
                with psycopg.connect(args.dsn, autocommit=True) as con:
                    con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                dsn = f"{args.dsn.rsplit('/', 1)[0]}/{name}"
                try:
                    wh = PostgresWarehouse(dsn)
                    wh.migrate()
                    bulk = bulk_postgres(dsn, file)
                    mine = ours(wh, contract, folder)
                finally:
                    with psycopg.connect(args.dsn, autocommit=True) as con:
                        con.execute(
                            sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
                        )
            ratio = bulk / mine["seconds"]
            print(
                f"{engine}: bulk {args.rows / bulk:,.0f} rows/s ({bulk:.2f} s); ours "
                f"{args.rows / mine['seconds']:,.0f} rows/s ({mine['seconds']:.2f} s: poll "
                f"{mine['poll_s']:.2f}, read {mine['read_s']:.2f}, validate+write "
                f"{mine['ingest_s']:.2f}); ours/bulk {ratio:.2f}"
            )
            figures[f"{engine}_ingest_over_bulk"] = round(ratio, 3)
            figures[f"{engine}_ingest_rows_per_s"] = round(args.rows / mine["seconds"])
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
