"""Production partitions: one per day and model. A run covers one partition (sensor, schedule)
or, under the assets' backfill policy, a range of them (many days of one model, or one day of
many models); `each_partition` runs the one-partition body for each, so both give the same rows.
"""

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import dagster as dg

# Not exported by dagster: what an AssetCheckEvaluation names as the materialization it judged.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as TargetMaterialization,
)

from mlops_assets.lib.memory import keep_freed_memory
from mlops_assets.lib.names import validate_model_name
from mlops_assets.resources import WarehouseResource
from mlops_assets.storage.monitoring import ActiveModel, UnknownModelError, active_model
from mlops_assets.storage.warehouse import Warehouse

MODELS = dg.DynamicPartitionsDefinition(name="models")
# Early enough for the history users bring; a day without data is simply never materialized.
DAYS = dg.DailyPartitionsDefinition(start_date="2020-01-01", end_offset=1)
DAY_MODEL = dg.MultiPartitionsDefinition({"date": DAYS, "model": MODELS})


def run_partitions(context: dg.AssetExecutionContext) -> list[tuple[str, str, str]]:
    """The run's (day, model, partition key), each model's days in date order: alerts escalate
    on consecutive days, so a range must be folded into the alert state oldest day first."""
    found = []
    for key in context.partition_keys:
        dims = DAY_MODEL.get_partition_key_from_str(str(key)).keys_by_dimension
        found.append((dims["date"], dims["model"], str(key)))
    return sorted(found, key=lambda found: (found[1], found[0]))


def each_partition(
    context: dg.AssetExecutionContext,
    one: Callable[[str, str], Iterable[dg.Output | dg.MaterializeResult | dg.AssetCheckResult]],
) -> Iterator:
    """Run `one(day, model)`, the body of a one-partition run, for every partition of the run.

    One partition: its events unchanged. Many: a step may yield its output and each check once,
    so each partition's output metadata goes onto that partition's materialization and each
    check result becomes an evaluation of its own, after the materializations it judges.
    """
    # A partition's columns of a million values are freed and allocated again group by group:
    # reused memory instead of fresh pages from the system each time (lib.memory).
    keep_freed_memory()
    partitions = run_partitions(context)
    if len(partitions) == 1:
        yield from one(*partitions[0][:2])
        return
    evaluations: list[tuple[str, dg.AssetCheckResult]] = []
    for day, model, key in partitions:
        for event in one(day, model):
            if isinstance(event, dg.AssetCheckResult):
                evaluations.append((key, event))
            else:
                context.add_asset_metadata(dict(event.metadata or {}), partition_key=key)
    yield dg.Output(None)
    asset_key = context.asset_key
    targets: dict[str, TargetMaterialization | None] = {}
    for key, result in evaluations:
        if key not in targets:
            targets[key] = _latest_materialization(context.instance, asset_key, key)
        yield dg.AssetCheckEvaluation(
            asset_key=asset_key,
            check_name=result.check_name,
            passed=result.passed,
            metadata=result.metadata,
            target_materialization_data=targets[key],
            severity=result.severity,
            description=result.description,
            # The checks are not partitioned (a one-partition run stores them so too); the
            # partition is in their metadata (model_name, day).
            partition=None,
        )
    # Each check's output once, as the evaluations were yielded as events of their own.
    selected = context.selected_asset_check_keys
    for output_name, spec in context.assets_def.check_specs_by_output_name.items():
        if spec.key in selected:
            yield dg.Output(None, output_name=output_name)


def _latest_materialization(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, key: str
) -> TargetMaterialization | None:
    """What a one-partition run links its check evaluation to: the partition's materialization."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[key]), limit=1
    ).records
    if not records:
        return None
    return TargetMaterialization(
        run_id=records[0].event_log_entry.run_id,
        storage_id=records[0].storage_id,
        timestamp=records[0].timestamp,
    )


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
    warehouse: WarehouseResource, day_key: str, model_name: str
) -> PartitionTarget:
    """Resolve the partition's model to its active run; an unknown model fails the run with a
    message naming it and the known models."""
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
