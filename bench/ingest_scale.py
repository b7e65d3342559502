"""One model's day at scale: ingestion, the drift and metrics assets, their memory; per engine.

Usage: python bench/ingest_scale.py [--rows 1000000] [--numeric 30] [--categorical 10]
       [--engine embedded|postgres|both] [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
       [--history 20000]

The serving system's batch is one Parquet file of `--rows` predictions (with their outcome)
x (numeric + categorical) features. Per engine, in one run:

- ingest_over_bulk: our rows/s over the engine's own bulk path's rows/s, same file (target
  >= 0.8). Ours: the Parquet source reads it, the inference log types and validates every row,
  upserts them by prediction id and records the batch. Bulk: DuckDB `read_parquet` straight
  into a table (embedded), or PostgreSQL `COPY` of the same rows (postgres).
- drift_asset_over_compute: the whole `feature_drift_report` partition (read from the
  warehouse, tests, rows written, HTML report rendered and logged) over `compute_drift` alone
  on the same frames in memory (target <= 1.3).
- metrics_asset_over_memory: the `production_metrics` partition over the same metrics computed
  on the same frame in memory (target <= 1.5): `evaluate` on the labelled rows and, as the
  asset stores them beside the realised values, the metrics `estimate_day` estimates from the
  calibrated probabilities. `metrics_asset_over_evaluate_only` is the ratio to `evaluate`
  alone.
- peak_rss_mb: the largest peak RSS of the asset runs (production_predictions,
  production_metrics, feature_drift_report), each run alone in a fresh Python subprocess
  (`dg.materialize` of that asset for the day, the code location from MLOPS_MODELS_PATH),
  read from /proc (VmHWM); target < 2 GB at 1M rows. The per-asset figures and each
  process's RSS after imports are printed too.

A model for the 40 features is first trained here (`--history` rows of the same generator)
in its own subprocess; MLflow is a SQLite file. Asset times are the step's own duration from
the Dagster instance (process start and imports are not counted). The last line printed is
one JSON object with `<engine>_ingest_over_bulk`, `<engine>_drift_asset_over_compute`,
`<engine>_metrics_asset_over_memory`, `<engine>_peak_rss_mb`.
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

from mlops_assets.demo_serving import write_table
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


MODEL = "scale"


def contract_for(folder: Path, features: dict):
    return parse_contract(
        {
            "name": MODEL,
            "task": "binary",
            "model": {
                "train": {
                    "source": {"table": "serving.history"},
                    "params": {"n_estimators": 50, "num_leaves": 15},
                }
            },
            "columns": {"features": features, "target": "outcome", "probability": "probability"},
            # The batch carries its outcome: every row is labelled, so metrics read them all.
            "production": {"predictions": {"parquet": str(folder)}},
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


# --------------------------------------------------------------------------- asset runs

ASSETS = ("production_predictions", "production_metrics", "feature_drift_report")


def _proc_status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(what: str) -> None:
    """In a fresh process (environment set by the parent): train, or run one asset for DAY.

    Peak RSS is VmHWM, the high-water mark of this process image: getrusage's ru_maxrss is
    not, since Linux carries the forking parent's peak into it across exec."""
    import dagster as dg

    # What the assets import lazily, imported first: step times count work, not first imports
    # (the in-memory side is timed after its imports too).
    import mlflow  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - the client of a sqlite:// store
    import sklearn.metrics  # noqa: F401

    import mlops_assets.lib.drift_html  # noqa: F401
    import mlops_assets.lib.evaluation  # noqa: F401
    from mlops_assets.definitions import defs as load_defs
    from mlops_assets.defs.partitions import partition_key

    defs = load_defs()
    instance = dg.DagsterInstance.get()
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    if what == "train":
        instance.add_dynamic_partitions("models", [MODEL])
        keys, partition = ("training_dataset", "training_run", "training_baseline"), MODEL
    else:
        keys, partition = (what,), partition_key(DAY.isoformat(), MODEL)
    rss_imported = _proc_status_mb("VmRSS")
    result = dg.materialize(
        [defs.get_assets_def(dg.AssetKey(k)) for k in keys],
        resources=defs.resources,
        instance=instance,
        partition_key=partition,
        run_config=quiet,
    )
    steps = instance.get_run_step_stats(result.run_id)
    print(
        json.dumps(
            {
                "step_s": sum(s.end_time - s.start_time for s in steps),
                "peak_rss_mb": _proc_status_mb("VmHWM"),
                "rss_after_imports_mb": rss_imported,
            }
        )
    )


def run_child(what: str, env: dict[str, str]) -> dict:
    import os
    import subprocess

    done = subprocess.run(
        [sys.executable, __file__, "--child", what],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def assets_vs_memory(root: Path, contract, engine: str, dsn: str | None) -> dict:
    """Train, run each asset for DAY in its own process, and time the in-memory equivalents."""
    import yaml

    from mlops_assets.defs.training.assets import _outputs
    from mlops_assets.lib.drift import DriftConfig, compute_drift
    from mlops_assets.lib.evaluation import estimate_day, evaluate, y_true_of
    from mlops_assets.runtime import build_runtime
    from mlops_assets.settings import load_settings
    from mlops_assets.storage import inference_log
    from mlops_assets.storage.monitoring import active_model

    home = root / f"home-{engine}"
    models = root / f"models-{engine}"
    dagster_home = root / f"dagster-{engine}"
    for folder in (home / "mlflow", models, dagster_home):
        folder.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    document = {
        "type": "mlops_assets.MonitoredModel",
        "attributes": contract.model_dump(mode="json", exclude_none=True),
    }
    (models / f"{MODEL}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    env = {
        "DAGSTER_HOME": str(dagster_home),
        "MLOPS_HOME": str(home),
        "MLOPS_MODELS_PATH": str(models),
        "MLOPS_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        "MLOPS_WAREHOUSE_BACKEND": engine,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    if dsn:
        env["MLOPS_WAREHOUSE_DSN"] = dsn
    run_child("train", env)
    runs = {name: run_child(name, env) for name in ASSETS}

    # The same frames the assets read, read here untimed; then the computation alone.
    wh = build_runtime(load_settings(home=str(home), backend=engine, dsn=dsn)).warehouse
    model = active_model(wh, MODEL)
    reference = model.reference()
    current = inference_log.read_features(wh, contract, DAY, features=model.features)
    config = DriftConfig(
        engine=contract.drift.engine,
        correction=contract.drift.correction,
        p_value=contract.drift.p_value,
        drift_share=contract.drift.drift_share,
    )
    compute_drift(reference.head(1000), current.head(1000), model.features, config)  # warm-up
    started = time.perf_counter()
    compute_drift(reference, current, model.features, config)
    compute_s = time.perf_counter() - started
    frame = inference_log.read_for_metrics(wh, contract, DAY, features=model.features)
    labelled = frame[frame["y_true"].notna()]
    assert len(labelled) == len(frame), "every row of the batch carries its outcome"
    # The metrics the partition writes: realised on the labelled rows and, for a model with a
    # calibrator, estimated from all the day's probabilities (stored beside them).
    assert model.estimation and contract.monitoring.estimate, "the asset estimates too"
    started = time.perf_counter()
    outputs = _outputs(contract, labelled)
    evaluate(contract, y_true_of(contract, labelled["y_true"]), outputs)
    evaluate_s = time.perf_counter() - started
    estimate_day(contract, model.estimation, outputs)
    memory_s = time.perf_counter() - started
    return {
        "runs": runs,
        "drift_compute_s": compute_s,
        "metrics_memory_s": memory_s,
        "metrics_evaluate_s": evaluate_s,
        "rows_read": len(current),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--numeric", type=int, default=30)
    parser.add_argument("--categorical", type=int, default=10)
    parser.add_argument("--engine", choices=["embedded", "postgres", "both"], default="both")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--history", type=int, default=20_000, help="training rows")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "inbox"
        folder.mkdir()
        frame, features = make_batch(args.rows, args.numeric, args.categorical)
        file = folder / "batch-0001.parquet"
        frame.to_parquet(file, index=False)
        del frame
        history, _ = make_batch(args.history, args.numeric, args.categorical, seed=1)
        contract = contract_for(folder, features)
        print(f"{args.rows:,} rows x {len(features)} features, one Parquet batch")
        engines = ["embedded", "postgres"] if args.engine == "both" else [args.engine]
        for engine in engines:
            dsn = name = None
            if engine == "embedded":
                bulk = bulk_embedded(root / "bulk.duckdb", file)
                wh = DuckDBWarehouse(root / "home-embedded" / "warehouse.duckdb")
            else:
                import psycopg
                from psycopg import sql

                name = f"bench_{uuid.uuid4().hex[:10]}"
                with psycopg.connect(args.dsn, autocommit=True) as con:
                    con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                dsn = f"{args.dsn.rsplit('/', 1)[0]}/{name}"
                wh = PostgresWarehouse(dsn)
            try:
                wh.migrate()
                if engine == "postgres":
                    bulk = bulk_postgres(dsn, file)
                write_table(wh, "serving.history", history.drop(columns=["probability"]))
                mine = ours(wh, contract, folder)
                # The asset runs below see the batch as serving delivers it: for the first
                # time (a re-delivered batch is an upsert of every row, a different cost).
                plan = layout(contract)
                with wh.transaction() as tx:
                    for table in (plan.predictions_table, plan.labels_table):
                        tx.execute(f"DELETE FROM {table}")  # noqa: S608 - the plan's names
                ratio = bulk / mine["seconds"]
                print(
                    f"{engine}: bulk {args.rows / bulk:,.0f} rows/s ({bulk:.2f} s); ours "
                    f"{args.rows / mine['seconds']:,.0f} rows/s ({mine['seconds']:.2f} s: poll "
                    f"{mine['poll_s']:.2f}, read {mine['read_s']:.2f}, validate+write "
                    f"{mine['ingest_s']:.2f}); ours/bulk {ratio:.2f}"
                )
                scale = assets_vs_memory(root, contract, engine, dsn)
            finally:
                if name is not None:
                    with psycopg.connect(args.dsn, autocommit=True) as con:
                        con.execute(
                            sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
                        )
            runs = scale["runs"]
            drift_ratio = runs["feature_drift_report"]["step_s"] / scale["drift_compute_s"]
            metrics_ratio = runs["production_metrics"]["step_s"] / scale["metrics_memory_s"]
            peak = max(r["peak_rss_mb"] for r in runs.values())
            print(
                f"{engine}: feature_drift_report {runs['feature_drift_report']['step_s']:.2f} s "
                f"vs compute_drift {scale['drift_compute_s']:.2f} s in memory "
                f"({scale['rows_read']:,} rows): {drift_ratio:.2f}"
            )
            evaluate_ratio = runs["production_metrics"]["step_s"] / scale["metrics_evaluate_s"]
            print(
                f"{engine}: production_metrics {runs['production_metrics']['step_s']:.2f} s "
                f"vs evaluate + estimate {scale['metrics_memory_s']:.2f} s in memory: "
                f"{metrics_ratio:.2f} (vs evaluate alone {scale['metrics_evaluate_s']:.2f} s: "
                f"{evaluate_ratio:.2f})"
            )
            for asset, r in runs.items():
                print(
                    f"{engine}: {asset}: step {r['step_s']:.2f} s, peak RSS "
                    f"{r['peak_rss_mb']:,.0f} MB (after imports "
                    f"{r['rss_after_imports_mb']:,.0f} MB)"
                )
            figures[f"{engine}_ingest_over_bulk"] = round(ratio, 3)
            figures[f"{engine}_ingest_rows_per_s"] = round(args.rows / mine["seconds"])
            figures[f"{engine}_drift_asset_over_compute"] = round(drift_ratio, 3)
            figures[f"{engine}_metrics_asset_over_memory"] = round(metrics_ratio, 3)
            figures[f"{engine}_metrics_asset_over_evaluate_only"] = round(evaluate_ratio, 3)
            figures[f"{engine}_peak_rss_mb"] = round(peak, 1)
    figures["rows"] = args.rows
    figures["features"] = args.numeric + args.categorical
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
