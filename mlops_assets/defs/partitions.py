"""Production partitions: one per day and model, so a backfill of many days runs in parallel."""

import dagster as dg

MODELS = dg.DynamicPartitionsDefinition(name="models")
DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)
DAY_MODEL = dg.MultiPartitionsDefinition({"date": DAYS, "model": MODELS})


def day_and_model(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    return keys["date"], keys["model"]


def partition_key(day: str, model: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": day, "model": model})
