"""Production partitions: one per day and model, so a backfill of many days runs in parallel."""

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from mlops_assets.lib.names import validate_model_name
from mlops_assets.resources import WarehouseResource
from mlops_assets.storage.monitoring import ActiveModel, UnknownModelError, active_model
from mlops_assets.storage.warehouse import Warehouse

MODELS = dg.DynamicPartitionsDefinition(name="models")
# Early enough for the history users bring; a day without data is simply never materialized.
DAYS = dg.DailyPartitionsDefinition(start_date="2020-01-01", end_offset=1)
DAY_MODEL = dg.MultiPartitionsDefinition({"date": DAYS, "model": MODELS})


def day_and_model(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    return keys["date"], keys["model"]


def partition_key(day: str, model: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": day, "model": validate_model_name(model)})


@dataclass(frozen=True)
class PartitionTarget:
    """What a day-and-model partition is about: the day, and the model judged that day."""

    day_key: str
    day: dt.date
    model: ActiveModel
    warehouse: Warehouse


def partition_target(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> PartitionTarget:
    """Resolve the partition's model to its active run; an unknown model fails the run with a
    message naming it and the known models."""
    day_key, model_name = day_and_model(context)
    try:
        validate_model_name(model_name)  # a hand-added partition could name anything
    except ValueError as error:
        raise dg.Failure(str(error)) from error
    wh = warehouse.get()
    try:
        model = active_model(wh, model_name)
    except UnknownModelError as error:
        raise dg.Failure(str(error)) from error
    return PartitionTarget(day_key, dt.date.fromisoformat(day_key), model, wh)
