"""A monitoring partition's write back-fills MLflow ids only for rows written without them."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from mlops_assets.storage.mlflow_buffer import REPLAYED
from mlops_assets.storage.monitoring import replace_partition
from mlops_assets.storage.warehouse import Warehouse

from .conftest import DAY

LOCAL = "local-run-1"


def _metric_row(day: dt.date, run_id: str | None) -> dict:
    return {
        "model_name": "credit",
        "model_version": "3" if run_id else LOCAL,
        "metric_date": day,
        "metric": "accuracy",
        "value": 0.9,
        "level": "ok",
        "n_predictions": 100,
        "n_settled": 100,
        "training_local_run_id": LOCAL,
        "mlflow_experiment_id": "7" if run_id else None,
        "mlflow_run_id": run_id,
        "computed_at": dt.datetime(2026, 3, 3),
    }


def _run_ids(warehouse: Warehouse) -> dict[dt.date, str | None]:
    rows = warehouse.query(
        "SELECT metric_date, mlflow_run_id FROM mlops.production_metrics "
        "WHERE model_name = 'credit' ORDER BY metric_date"
    )
    return {r["metric_date"]: r["mlflow_run_id"] for r in rows}


def test_rows_read_before_the_replay_get_the_ids_and_rows_with_them_touch_nothing(
    warehouse: Warehouse,
):
    days = [DAY + dt.timedelta(days=i) for i in range(3)]
    # A day written while the run waited for its replay, its back-fill not seen (left NULL
    # here on purpose, so that a back-fill is visible).
    write = {"model": "credit", "day_column": "metric_date"}
    replace_partition(
        warehouse,
        "mlops.production_metrics",
        day=days[0],
        rows=pd.DataFrame([_metric_row(days[0], None)]),
        **write,
    )
    warehouse.execute(
        "INSERT INTO mlops.mlflow_buffer_runs (local_run_id, experiment_name, run_name, "
        "start_time_ms, run_status, state, mlflow_experiment_id, mlflow_run_id, model_version, "
        "created_at) VALUES (:id, 'e', 'r', 0, 'FINISHED', :s, '7', 'real-run', '3', :t)",
        {"id": LOCAL, "s": REPLAYED, "t": dt.datetime(2026, 3, 3)},
    )
    # A partition whose model was read after the replay carries the ids: no back-fill.
    replace_partition(
        warehouse,
        "mlops.production_metrics",
        day=days[1],
        rows=pd.DataFrame([_metric_row(days[1], "real-run")]),
        **write,
    )
    assert _run_ids(warehouse) == {days[0]: None, days[1]: "real-run"}
    # One read before the replay writes after it: its rows, and every other, get the ids.
    replace_partition(
        warehouse,
        "mlops.production_metrics",
        day=days[2],
        rows=pd.DataFrame([_metric_row(days[2], None)]),
        **write,
    )
    assert _run_ids(warehouse) == dict.fromkeys(days, "real-run")
    versions = warehouse.query(
        "SELECT DISTINCT model_version FROM mlops.production_metrics WHERE model_name = 'credit'"
    )
    assert [r["model_version"] for r in versions] == ["3"]
