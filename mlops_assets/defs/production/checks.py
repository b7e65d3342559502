"""Freshness: yesterday's production metrics must exist for every model by a configured hour."""

import datetime as dt

import dagster as dg
from pydantic import Field

from mlops_assets.defs.partitions import MODELS
from mlops_assets.resources import WarehouseResource


class FreshnessConfig(dg.Config):
    due_hour_utc: int = Field(
        default=9, ge=0, le=23, description="Hour (UTC) by which yesterday's metrics must exist."
    )


@dg.asset_check(
    asset="production_metrics",
    name="yesterday_metrics_fresh",
    description="Yesterday's production metrics exist for every trained model by the due hour.",
)
def yesterday_metrics_fresh(
    context: dg.AssetCheckExecutionContext, config: FreshnessConfig, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    now = dt.datetime.now(dt.UTC)
    yesterday = now.date() - dt.timedelta(days=1)
    models = sorted(context.instance.get_dynamic_partitions(MODELS.name))
    present = {
        r["model_name"]
        for r in warehouse.get().query(
            "SELECT DISTINCT model_name FROM mlops.production_metrics WHERE metric_date = :d",
            {"d": yesterday},
        )
    }
    missing = [m for m in models if m not in present]
    due = now.hour >= config.due_hour_utc
    return dg.AssetCheckResult(
        passed=not (missing and due),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "day": yesterday.isoformat(),
            "due_hour_utc": config.due_hour_utc,
            "models": ", ".join(models) or "none trained",
            "missing": ", ".join(missing) or "none",
            "status": "due" if due else "not due yet",
        },
    )


checks = [yesterday_metrics_fresh]
