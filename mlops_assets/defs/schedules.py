"""Daily monitoring of yesterday's traffic for every model, and weekly retraining."""

import datetime as dt
import warnings

import dagster as dg

from mlops_assets.defs.alerts.hooks import deliver_raised_alerts
from mlops_assets.defs.executor import monitoring_executor
from mlops_assets.defs.partitions import DAY_MODEL, MODELS, partition_key
from mlops_assets.defs.production.checks import yesterday_metrics_fresh

# The job's runs are one partition each (sensor, schedule, job backfill), so the backfill
# policy Dagster derives for it is never used; performance_alerts keeps `single_run` for asset
# backfills on purpose. Without this, every load of the code location warns about the mix.
warnings.filterwarnings(
    "ignore",
    message="Asset job daily_monitoring materializes assets with varying BackfillPolicies",
    category=UserWarning,
)
daily_monitoring_job = dg.define_asset_job(
    "daily_monitoring",
    selection=dg.AssetSelection.groups("production", "drift")
    - dg.AssetSelection.checks(yesterday_metrics_fresh),
    partitions_def=DAY_MODEL,
    description="Predictions, then metrics and drift, then alerts, for one day and model.",
    # In-process by default (a step subprocess costs seconds of imports on a small machine;
    # parallelism comes from running many partitions at once); MLOPS_EXECUTOR=celery spreads
    # the steps over Celery workers on other hosts.
    executor_def=monitoring_executor,
    # The run posts the alerts it raises; the alert sensor's next tick would be up to 30 s late.
    hooks={deliver_raised_alerts},
)
retraining_job = dg.define_asset_job(
    "weekly_retraining",
    selection=dg.AssetSelection.groups("training"),
    partitions_def=MODELS,
    description="Retrain (or re-resolve the registered version of) one model and rebaseline.",
    # dagster.yaml limits this pool to one run at a time: training is CPU-heavy.
    tags={"mlops/pool": "training"},
    executor_def=dg.in_process_executor,
)


@dg.schedule(job=daily_monitoring_job, cron_schedule="0 6 * * *", execution_timezone="UTC")
def daily_monitoring_schedule(context: dg.ScheduleEvaluationContext):
    """At 06:00 UTC, monitor yesterday for every model: the catch-all beside the sensor."""
    day = (context.scheduled_execution_time.date() - dt.timedelta(days=1)).isoformat()
    models = context.instance.get_dynamic_partitions(MODELS.name)
    if not models:
        return dg.SkipReason("no trained model yet (materialize the training group first)")
    return [
        dg.RunRequest(run_key=f"{day}|{model}", partition_key=partition_key(day, model))
        for model in models
    ]


freshness_job = dg.define_asset_job(
    "metrics_freshness", selection=dg.AssetSelection.checks(yesterday_metrics_fresh)
)
hourly_freshness_schedule = dg.ScheduleDefinition(
    job=freshness_job, cron_schedule="15 * * * *", execution_timezone="UTC"
)


@dg.schedule(job=retraining_job, cron_schedule="0 3 * * 1", execution_timezone="UTC")
def weekly_retraining_schedule(context: dg.ScheduleEvaluationContext):
    """Mondays 03:00 UTC: every declared model, one run each."""
    week = context.scheduled_execution_time.date().isoformat()
    models = context.instance.get_dynamic_partitions(MODELS.name)
    if not models:
        return dg.SkipReason("no model registered yet (the inference_log_sensor adds them)")
    return [dg.RunRequest(run_key=f"{week}|{m}", partition_key=m) for m in models]


schedules = [daily_monitoring_schedule, weekly_retraining_schedule, hourly_freshness_schedule]
jobs = [daily_monitoring_job, retraining_job, freshness_job]
