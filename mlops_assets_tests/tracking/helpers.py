"""Shared steps of the tracking integration tests: training materializations, recording big
runs, and comparing what MLflow holds with what the buffer holds."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

import dagster as dg

from mlops_assets.defs.partitions import MODELS
from mlops_assets.defs.training import assets as training_assets
from mlops_assets.demo_serving import MATCH, load_match_history
from mlops_assets.lib.contract import ModelCatalog, ModelContract
from mlops_assets.storage.mlflow_buffer import MetricPoint, MlflowBuffer
from mlops_assets.storage.tracking import LOCAL_RUN_TAG, MlflowTracker
from mlops_assets.storage.warehouse import Warehouse

TRAINING_KEYS = {"training_dataset", "training_run", "training_baseline"}
T0_MS = 1_700_000_000_000


def training_assets_from_defs(defs: dg.Definitions) -> list[Any]:
    """The three training assets as the code location defines them."""
    return [a for a in defs.assets or [] if {k.to_user_string() for k in a.keys} <= TRAINING_KEYS]


def small_match_model(model_name: str) -> ModelContract:
    """The demo's trained-here model under another name, made small: 30 trees, 20 resamples."""
    from mlops_assets.demo import demo_catalog

    contract = demo_catalog().get(MATCH)
    recipe = contract.model.train
    assert recipe is not None
    small = recipe.model_copy(update={"params": {**recipe.params, "n_estimators": 30}})
    return contract.model_copy(
        update={
            "name": model_name,
            "model": contract.model.model_copy(update={"train": small}),
            "baseline": contract.baseline.model_copy(update={"n_boot": 20, "reference_rows": 300}),
        },
        deep=True,
    )


def materialize_training(
    instance: dg.DagsterInstance, model_name: str, selection: list[str] | None = None
) -> dg.ExecuteInJobResult:
    """Small but real training of `model_name`'s partition: 1,500 rows of history, 30 trees,
    resources from the code location (settings from the environment)."""
    from mlops_assets.definitions import defs as load_defs

    defs = load_defs()
    resources = dict(defs.resources or {})
    resources["models"] = ModelCatalog([small_match_model(model_name)])
    if not selection or "training_dataset" in selection:
        warehouse = resources["warehouse"].get()
        load_match_history(warehouse, end=dt.date(2026, 1, 1), n_rows=1500)
    instance.add_dynamic_partitions(MODELS.name, [model_name])
    return dg.materialize(
        training_assets_from_defs(defs),
        resources=resources,
        partition_key=model_name,
        instance=instance,
        selection=selection,
        raise_on_error=True,
    )


def training_output(result: dg.ExecuteInJobResult) -> training_assets.TrainingRunOutput:
    return result.output_for_node("training_run")


def record_big_run(
    tracker: MlflowTracker, n_metrics: int, *, keys: int = 5, model: str | None = None
) -> str:
    """A run with `n_metrics` stepped metric points over `keys` keys and synthetic timestamps
    (one millisecond apart), plus params and tags; no model directory, registered under
    `model` if given (its name only: nothing to register without a model directory)."""
    with tracker.start_run(
        run_name="big", registered_model_name=model, tags={"purpose": "outage-test"}
    ) as run:
        run.log_params({"n_metrics": n_metrics, "keys": keys})
        run.log_metric_points(
            [
                MetricPoint(f"curve_{i % keys}", (i * 7919 % 10007) / 10007, T0_MS + i, i // keys)
                for i in range(n_metrics)
            ]
        )
    return run.local_run_id


def buffered_metrics(warehouse: Warehouse, local_run_id: str) -> dict[str, Counter]:
    rows = warehouse.query(
        "SELECT key, value, timestamp_ms, step FROM mlops.mlflow_buffer_metrics "
        "WHERE local_run_id = :id",
        {"id": local_run_id},
    )
    by_key: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        by_key[r["key"]][(float(r["value"]), int(r["timestamp_ms"]), int(r["step"]))] += 1
    return dict(by_key)


def mlflow_metrics(client: Any, run_id: str, keys: list[str]) -> dict[str, Counter]:
    return {
        key: Counter(
            (float(m.value), int(m.timestamp), int(m.step))
            for m in client.get_metric_history(run_id, key)
        )
        for key in keys
    }


def ledger_counts(warehouse: Warehouse, local_run_id: str) -> dict[str, int]:
    row = warehouse.query(
        "SELECT count(*) AS total, count(sent_at) AS sent, "
        "count(claimed_at) - count(sent_at) AS in_flight "
        "FROM mlops.mlflow_buffer_metrics WHERE local_run_id = :id",
        {"id": local_run_id},
    )[0]
    return {k: int(v) for k, v in row.items()}


def find_mlflow_runs(client: Any, experiment_name: str, local_run_id: str) -> list[Any]:
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, f"experiment {experiment_name} was never created"
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{LOCAL_RUN_TAG}` = '{local_run_id}'"
    )


def assert_mlflow_holds_the_buffer_exactly_once(
    client: Any, buffer: MlflowBuffer, local_run_id: str
) -> Any:
    """The one MLflow run tagged with the local id has every buffered param, tag and metric
    point (value, step, timestamp), each exactly once, and the buffered start/end/status."""
    buffered = buffer.get(local_run_id)
    assert buffered is not None and buffered.state == "replayed", buffered
    runs = find_mlflow_runs(client, buffered.experiment_name, local_run_id)
    assert [r.info.run_id for r in runs] == [buffered.mlflow_run_id], "ghost or missing run"
    run = client.get_run(buffered.mlflow_run_id)
    assert run.data.params == buffer.params(local_run_id)
    tags = buffer.tags(local_run_id)
    assert {k: run.data.tags.get(k) for k in tags} == tags
    expected = buffered_metrics(buffer.warehouse, local_run_id)
    assert set(run.data.metrics) == set(expected)
    assert mlflow_metrics(client, run.info.run_id, sorted(expected)) == expected
    assert run.info.status == buffered.run_status
    assert run.info.start_time == buffered.start_time_ms
    assert run.info.end_time == buffered.end_time_ms
    return run
