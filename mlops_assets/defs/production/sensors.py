"""Incremental pick-up: new predictions and late labels become monitoring runs within a minute.

One sensor for every declared model. Its cursor keeps, per model, each source's own cursor
(high-water mark of a table's load column, or the Parquet files seen). New predictions
materialize the days they fall on (an out-of-order batch lands in its own day); new labels
re-evaluate the days that still had unlabelled predictions. `run_key` carries the cursor, so a
tick that is retried never launches the same run twice.
"""

import datetime as dt
import hashlib
import json

import dagster as dg

from mlops_assets.defs.partitions import MODELS, partition_key
from mlops_assets.defs.schedules import daily_monitoring_job
from mlops_assets.lib.contract import ModelCatalog, ModelContract
from mlops_assets.resources import WarehouseResource

# How far back late labels re-evaluate days: labels for older predictions still land in the
# inference log, and a backfill picks their days up.
LABEL_LOOKBACK_DAYS = 90
# A batch waits for the next tick: half this on average. A tick with nothing new lists the
# sources only, so ticking often is cheap (the daemon evaluates sensors every 5 s at most).
PICKUP_INTERVAL_SECONDS = 10


def _poll_model(contract: ModelContract, state: dict, wh, home) -> tuple[set[dt.date], dict, int]:
    from mlops_assets.defs.production.assets import resolved_source
    from mlops_assets.storage import inference_log
    from mlops_assets.storage.monitoring import unlabelled_days
    from mlops_assets.storage.sources import open_labels, open_source

    cols = contract.columns
    days: set[dt.date] = set()
    reader = open_source(
        resolved_source(contract.production.predictions, home), wh, model=contract.name
    )
    poll = reader.poll(
        state.get("predictions"),
        cursor_column=cols.loaded_at or cols.timestamp,
        timestamp_column=cols.timestamp,
    )
    new_state = {**state, "predictions": poll.cursor}
    days |= set(poll.days)
    n_new = poll.n_rows
    labels = (
        open_labels(resolved_source(contract.production.labels, home), wh, model=contract.name)
        if contract.production.labels is not None
        else None
    )
    label_poll = (
        labels.poll(
            state.get("labels"), cursor_column=cols.labelled_at or cols.id, timestamp_column=None
        )
        if labels is not None
        else None
    )
    if n_new == 0 and (label_poll is None or label_poll.empty):
        # Most ticks: nothing new, so no warehouse read for the baseline (a Parquet source
        # costs a directory listing only, which lets the sensor tick often).
        return days, new_state, 0
    features = _features(wh, contract)
    if features is None:
        raise _NoBaseline
    if label_poll is not None:
        new_state["labels"] = label_poll.cursor
        if not label_poll.empty:
            n_new += label_poll.n_rows
            since = dt.date.today() - dt.timedelta(days=LABEL_LOOKBACK_DAYS)
            inference_log.ensure_tables(wh, contract, features=features)
            plan = inference_log.layout(contract, features)
            days |= set(unlabelled_days(wh, plan, since=since))
    return days, new_state, n_new


class _NoBaseline(Exception):  # noqa: N818 - control flow: nothing to judge new rows against
    pass


def _features(wh, contract: ModelContract) -> dict[str, str] | None:
    """The features the model's latest baseline was built with (declared or from MLflow)."""
    rows = wh.query(
        "SELECT features_json FROM mlops.training_baselines WHERE model_name = :m "
        "ORDER BY created_at DESC LIMIT 1",
        {"m": contract.name},
    )
    return json.loads(rows[0]["features_json"]) if rows else None


@dg.sensor(
    job=daily_monitoring_job,
    minimum_interval_seconds=PICKUP_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New predictions and labels in each model's sources -> monitoring runs",
)
def inference_log_sensor(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    models: dg.ResourceParam[ModelCatalog],
):
    wh = warehouse.get()
    home = warehouse.runtime().settings.sources_root
    cursor = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(MODELS.name))
    missing = [n for n in models.names if n not in known]
    requests, notes = [], []
    for contract in models:
        state = cursor.get(contract.name, {})
        try:
            days, new_state, n_new = _poll_model(contract, state, wh, home)
        except _NoBaseline:
            # The cursor stays put: these rows are picked up once a baseline exists.
            notes.append(f"{contract.name}: no baseline yet (materialize its training assets)")
            continue
        except Exception as error:  # noqa: BLE001 - one model's broken source must not stop the others
            from mlops_assets.lib.redact import redact

            notes.append(f"{contract.name}: {redact(str(error))}")
            continue
        if n_new == 0:
            continue
        tag = hashlib.sha1(json.dumps(new_state, sort_keys=True).encode()).hexdigest()[:12]
        for day in sorted(days):
            requests.append(
                dg.RunRequest(
                    run_key=f"{contract.name}|{day}|{tag}",
                    partition_key=partition_key(day.isoformat(), contract.name),
                    tags={"mlops/trigger": "inference_log_sensor"},
                )
            )
        cursor[contract.name] = new_state
    if not requests:
        reason = "; ".join(notes) or "no new predictions or labels"
        return dg.SensorResult(
            skip_reason=reason,
            cursor=json.dumps(cursor, sort_keys=True),
            dynamic_partitions_requests=[MODELS.build_add_request(missing)] if missing else [],
        )
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(cursor, sort_keys=True),
        dynamic_partitions_requests=[MODELS.build_add_request(missing)] if missing else [],
    )


sensors = [inference_log_sensor]
