"""Production side: the serving system's inference log and late labels, metrics against the
training baseline, graded alerts. Nothing here generates data: rows come from the sources
the model contract names."""

import datetime as dt
import math
import warnings
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import dagster as dg

from mlops_assets.defs.partitions import DAY_MODEL, each_partition, partition_target
from mlops_assets.lib.alert_policy import AlertPolicy, DayEvaluation
from mlops_assets.lib.contract import ModelCatalog, ModelContract, Source
from mlops_assets.lib.laps import Laps
from mlops_assets.lib.tasks import TASKS
from mlops_assets.resources import MLflowResource, WarehouseResource
from mlops_assets.storage.monitoring import evaluate_alerts, replace_partition

GROUP = "production"
# Every metric any task can monitor (business ones included). The metrics asset has a
# `<metric>_within_baseline` check for those some declared model monitors (`metrics_asset`); a
# model that does not monitor one of them reports "not monitored for this model" there and passes.
MONITORABLE = tuple(dict.fromkeys(m for task in TASKS.values() for m in task.higher_is_better))
CHECK_SUFFIX = "_within_baseline"


def _contract(models: ModelCatalog, name: str) -> ModelContract:
    from mlops_assets.lib.contract import UnknownModelError

    try:
        return models.get(name)
    except UnknownModelError as error:
        raise dg.Failure(str(error)) from error


def resolved_source(source: Source, home) -> Source:
    """Relative Parquet folders are relative to MLOPS_SOURCES_ROOT (default: MLOPS_HOME)."""
    from mlops_assets.storage.datasets import resolve_path

    if source.parquet is None:
        return source
    return source.model_copy(update={"parquet": str(resolve_path(source.parquet, home))})


@dg.asset(
    group_name=GROUP,
    partitions_def=DAY_MODEL,
    # No value to store: the rows are in the warehouse, and a ranged run has one per day.
    dagster_type=dg.Nothing,
    deps=["training_baseline"],
    check_specs=[
        dg.AssetCheckSpec(
            name="no_quarantined_rows",
            asset="production_predictions",
            description="WARN with the count when rows of the day went to mlops.quarantine",
        )
    ],
)
def production_predictions(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    models: dg.ResourceParam[ModelCatalog],
):
    """The day's inference log for one model, read from its source into typed columns, with
    the labels that have arrived for it; bad rows go to mlops.quarantine with a reason."""
    yield from each_partition(
        context, lambda day, model: _predictions(context, warehouse, models, day, model)
    )


def _predictions(context, warehouse, models, day_key: str, model_name: str):
    from mlops_assets.storage import inference_log
    from mlops_assets.storage.monitoring import prediction_ids
    from mlops_assets.storage.sources import (
        SourceError,
        SourceSchemaError,
        open_labels,
        open_source,
    )

    # The contract first: an undeclared model's partition fails naming the declared models.
    contract = _contract(models, model_name)
    target = partition_target(warehouse, day_key, model_name)
    day, model, wh = target.day, target.model, target.warehouse
    home = warehouse.runtime().settings.sources_root
    cols = contract.columns
    batch = f"{context.run_id}:{day}"
    try:
        # Features as the baseline knows them: declared, or read from the model's signature.
        plan = inference_log.layout(contract, model.features)
        inference_log.ensure_tables(wh, contract, features=model.features)
        reader = open_source(
            resolved_source(contract.production.predictions, home), wh, model=contract.name
        )
        # Slice by slice: the day is read, validated and stored without being one frame.
        slices = reader.iter_day(
            day, plan.source_columns("prediction"), timestamp_column=cols.timestamp
        )
        ingested = inference_log.ingest_predictions(
            wh,
            contract,
            slices,
            batch_id=batch,
            model_version=model.model_version,
            features=model.features,
        )
        labelled, labels_note = None, "no labels source (targets come with the predictions)"
        if contract.production.labels is not None:
            # Labels come later, often from another team: a labels source not created yet
            # means no labels yet, not a failed day. The predictions are stored.
            label_reader = open_labels(
                resolved_source(contract.production.labels, home), wh, model=contract.name
            )
            if label_reader is None:
                labels_note = (
                    f"no labels yet: {contract.production.labels.describe()} does not exist"
                )
            else:
                ids = prediction_ids(wh, plan, day)
                labels = label_reader.read_ids(ids, plan.source_columns("label"), id_column=cols.id)
                labelled = inference_log.ingest_labels(
                    wh, contract, labels, batch_id=f"{batch}:labels", features=model.features
                )
                labels_note = f"{labelled.n_good} label(s) for this day's predictions"
    except (SourceError, SourceSchemaError, inference_log.InferenceLogError) as error:
        raise dg.Failure(str(error)) from error
    yield dg.Output(
        None,
        metadata={
            "rows": ingested.n_rows,
            "rows_stored": ingested.n_good,
            "rows_quarantined": ingested.n_quarantined,
            "labels_received": labelled.n_good if labelled else 0,
            "labels": labels_note,
            "labels_quarantined": labelled.n_quarantined if labelled else 0,
            "source": contract.production.predictions.describe(),
            "model_version": model.model_version or "pending replay",
            "mlflow_run_id": model.run_ref,
        },
    )
    quarantined = ingested.n_quarantined + (labelled.n_quarantined if labelled else 0)
    yield dg.AssetCheckResult(
        check_name="no_quarantined_rows",
        passed=quarantined == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "model_name": contract.name,
            "day": target.day_key,
            "quarantined_predictions": ingested.n_quarantined,
            "quarantined_labels": labelled.n_quarantined if labelled else 0,
            "where": "SELECT * FROM mlops.quarantine WHERE model_name = '"
            + contract.name
            + "' ORDER BY quarantined_at DESC",
        },
    )


def checked_metrics(models: Iterable[ModelContract]) -> list[str]:
    """The metrics that get a check: those some declared model monitors, in MONITORABLE order.

    Every check result is an event in Dagster's event log, written as the run goes; one per
    metric any task could monitor (19) cost more than the metrics themselves at a million rows,
    and most said only "not monitored"."""
    monitored = {metric for contract in models for metric in contract.monitored_metrics()}
    return [metric for metric in MONITORABLE if metric in monitored]


def metrics_asset(metrics: Iterable[str]) -> dg.AssetsDefinition:
    """`production_metrics` with a `<metric>_within_baseline` check for each of `metrics`."""
    return dg.asset(
        name="production_metrics",
        group_name=GROUP,
        partitions_def=DAY_MODEL,
        # Before the drift report when a run executes one step at a time (in-process). An asset
        # backfill starts performance_alerts for the days whose parents are done; Dagster weighs
        # the drift report before the previous-day dependency and the metrics after it. With
        # the metrics first, a day whose report is done has its metrics done too, so no day can
        # start while the day before it waits for its metrics.
        op_tags={"dagster/priority": "1"},
        # No value to store: the rows are in the warehouse, and a ranged run has one per day.
        dagster_type=dg.Nothing,
        deps=[production_predictions],
        check_specs=[
            dg.AssetCheckSpec(
                name=f"{metric}{CHECK_SUFFIX}",
                asset="production_metrics",
                description=f"{metric} on settled rows within the noise-aware threshold of "
                "baseline",
            )
            for metric in metrics
        ],
    )(_production_metrics)


def _production_metrics(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    mlflow: MLflowResource,
    models: dg.ResourceParam[ModelCatalog],
):
    """The task's metrics on the day's labelled rows beside the training baseline, with their
    noise-aware verdicts; only the columns metrics need are read."""
    checked = {key.name for key in context.selected_asset_check_keys}
    yield from each_partition(
        context, lambda day, model: _metrics(warehouse, mlflow, models, day, model, checked)
    )


def _business_frame(contract: ModelContract, frame):
    """The frame as the business metrics read it: the betting ROI by the contract's name of
    its odds column."""
    odds_column = contract.business_value.odds_column
    return frame.rename(columns={"odds": odds_column}, copy=False) if odds_column else frame


def _estimates(contract: ModelContract, model, frame, outputs=None):
    """(values, lower, upper) the calibrator estimates from the day's probabilities (the
    frame's, or its `outputs` when the caller has them already)."""
    from mlops_assets.defs.training.assets import _outputs
    from mlops_assets.lib.evaluation import estimate_day

    if outputs is None and len(frame):
        outputs = _outputs(contract, frame)
    if outputs is None or outputs.proba is None:
        return {}, {}, {}
    return estimate_day(contract, model.estimation, outputs, _business_frame(contract, frame))


def _metrics(warehouse, mlflow, models, day_key: str, model_name: str, checked: set[str]):
    import pandas as pd

    from mlops_assets.defs.training.assets import _outputs
    from mlops_assets.lib.evaluation import (
        capped_estimate,
        evaluate,
        judge,
        metric_levels,
        y_true_of,
    )
    from mlops_assets.lib.metrics import MetricInputError
    from mlops_assets.storage import inference_log

    # The contract first: an undeclared model's partition fails naming the declared models.
    contract = _contract(models, model_name)
    laps = Laps()
    with warehouse.session():  # the reads share one connection
        target = partition_target(warehouse, day_key, model_name)
        day_key, day, model, wh = target.day_key, target.day, target.model, target.warehouse
        laps.lap("read_model")
        # Estimated metrics from the calibrated probabilities of ALL the day's predictions: the
        # value while labels are missing, and kept beside the realised value once they arrive.
        # The estimate runs on a thread beside the realised metrics (numpy leaves the GIL
        # while it works). On a row store it starts with the day's probabilities, read first
        # from its chunks, beside the read of the outputs and labels (a few megabytes; 1M
        # rows: 0.62 s, was 0.72-0.91 s). DuckDB gives every output first and then joins the
        # labels on both cores: the outputs are made while it joins, and the estimate starts
        # once the join is done (beside the join, both were slowed: 0.96 s against 0.88 s).
        estimable = bool(contract.monitoring.estimate and model.estimation)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="estimate")
        estimating: Future | None = None
        outputs_all = None
        for part in inference_log.iter_for_metrics(
            wh, contract, day, features=model.features, unlabelled_first=estimable
        ):
            laps.lap("read")
            if "y_true" in part:
                frame = part
            elif "y_pred" in part:
                if len(part):
                    outputs_all = _outputs(contract, part)
                laps.lap("compute")
            else:
                estimating = pool.submit(_estimates, contract, model, part)
    if outputs_all is None and len(frame):
        outputs_all = _outputs(contract, frame)
    if estimable and estimating is None:
        estimating = pool.submit(_estimates, contract, model, frame, outputs_all)
    pool.shutdown(wait=False)  # the estimate, if any, goes on; `estimates()` waits for it

    def estimates() -> tuple[dict, dict, dict]:
        return (estimating.result() if estimating is not None else None) or ({}, {}, {})

    monitored = contract.monitored_metrics()
    levels = metric_levels(contract, model.metrics)
    n_predictions = len(frame)
    settled = frame["y_true"].notna()
    # A fully labelled day (the usual case once labels are in) is evaluated without a copy.
    labelled = frame if settled.all() else frame[settled]
    min_labelled = contract.monitoring.min_labelled
    note = None
    values: dict[str, float | None] = {}
    notes: dict[str, str] = {}  # why a metric is undefined (e.g. labels-only model)
    business_frame = _business_frame(contract, frame)
    basis = "realised"
    if n_predictions == 0:
        note = "no predictions for this day"
    elif len(labelled) < min_labelled:
        if estimates()[0] and n_predictions >= min_labelled:
            basis = "estimated"
            values = estimates()[0]
            note = None
        else:
            note = f"only {len(labelled)} labelled rows (< {min_labelled}): no verdict"
    if basis == "realised" and note is None:
        try:
            whole_day = labelled is frame
            result = evaluate(
                contract,
                y_true_of(contract, labelled["y_true"]),
                outputs_all if whole_day else _outputs(contract, labelled),
                business_frame if whole_day else business_frame.loc[labelled.index],
            )
            values = result.values
            notes = dict(result.notes)
        except MetricInputError as error:
            raise dg.Failure(
                f"bad production data for {contract.name} on {day}: {error}",
                metadata={"model": contract.name, "day": day_key},
            ) from error
    laps.lap("compute")
    estimated, lower, upper = estimates()
    laps.lap("estimate")  # on a thread: what it took beyond the computation beside it
    run_link = mlflow.runtime().mlflow_config.run_link(
        model.mlflow_experiment_id, model.mlflow_run_id
    )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows, verdicts = [], {}
    for metric in sorted(set(values) | set(monitored)):
        observed, baseline = values.get(metric), model.metrics.get(metric)
        row = {
            "model_name": contract.name,
            "model_version": model.model_version,
            "metric_date": day,
            "metric": metric,
            "value": observed,
            "baseline_value": baseline,
            "degradation_abs": None,
            "degradation_rel": None,
            "warning_threshold": None,
            "critical_threshold": None,
            "level": "insufficient_data" if note else "undefined",
            "note": note,
            "n_predictions": n_predictions,
            "n_settled": len(labelled),
            "basis": basis if not note else None,
            "estimated_value": estimated.get(metric),
            "estimated_lower": lower.get(metric),
            "estimated_upper": upper.get(metric),
            "estimation_error": (
                observed - estimated[metric]
                if basis == "realised"
                and observed is not None
                and estimated.get(metric) is not None
                else None
            ),
            "training_local_run_id": model.local_run_id,
            "mlflow_experiment_id": model.mlflow_experiment_id,
            "mlflow_run_id": model.mlflow_run_id,
            "computed_at": now,
        }
        if observed is not None and baseline is not None and not note and metric in levels:
            row |= judge(
                contract,
                metric,
                observed=observed,
                baseline=baseline,
                baseline_std=model.metric_std.get(metric),
                n_current=len(labelled) if basis == "realised" else n_predictions,
                n_baseline=model.n_validation,
                levels=levels[metric],
            )
            if basis == "estimated":
                row |= capped_estimate(row["level"], contract.monitoring.estimated_severity_cap)
        elif observed is None and not note:
            row["note"] = (
                "not estimable without labels (labels pending)"
                if basis == "estimated"
                else notes.get(metric, "metric undefined on this day's data")
            )
        rows.append(row)
        verdicts[metric] = row
    replace_partition(
        wh,
        "mlops.production_metrics",
        model=contract.name,
        day=day,
        day_column="metric_date",
        rows=pd.DataFrame(rows),
    )
    laps.lap("write")
    yield dg.Output(
        None,
        metadata={
            "labelled_rows": len(labelled),
            "predictions": n_predictions,
            "status": note or f"evaluated ({basis})",
            **{m: _num(v) for m, v in values.items() if v is not None},
            "mlflow_run_id": model.run_ref,
            # From the first read to the rows written: where a slow day's time went.
            "seconds": dg.MetadataValue.json(laps.seconds()),
        },
    )
    for metric in MONITORABLE:
        if f"{metric}{CHECK_SUFFIX}" not in checked:
            continue
        row = verdicts.get(metric)
        if row is None or metric not in monitored:
            yield dg.AssetCheckResult(
                check_name=f"{metric}{CHECK_SUFFIX}",
                passed=True,
                metadata={
                    "model_name": contract.name,
                    "day": day_key,
                    "status": f"not monitored for {contract.name} ({contract.task})",
                },
            )
            continue
        level = row["level"]
        yield dg.AssetCheckResult(
            check_name=f"{metric}{CHECK_SUFFIX}",
            passed=level in ("ok", "insufficient_data", "undefined"),
            severity=dg.AssetCheckSeverity.ERROR
            if level == "critical"
            else dg.AssetCheckSeverity.WARN,
            metadata={
                "model_name": contract.name,
                "day": day_key,
                # performance_alerts already alerts on this breach; the check sensor skips it.
                "alerted_as": "performance",
                "level": level,
                "basis": row["basis"] or "none",
                "observed": _num(row["value"]),
                "baseline": _num(row["baseline_value"]),
                "threshold": _num(row["warning_threshold"]),
                "critical_threshold": _num(row["critical_threshold"]),
                "degradation": _num(row["degradation_abs"]),
                "note": row["note"] or "",
                "mlflow_run": dg.MetadataValue.url(run_link) if run_link else model.run_ref,
            },
        )


# Alerts of a day continue the alert state of the model's previous day. Declared, so that an
# asset backfill starts a model's later days only once its earlier ones are folded (or are in
# the same run, where `each_partition` folds them oldest first).
with warnings.catch_warnings():  # beta in Dagster 1.13, said once per code-location load
    warnings.simplefilter("ignore", dg.BetaWarning)
    PREVIOUS_DAY = dg.MultiPartitionMapping(
        {
            "date": dg.DimensionPartitionMapping(
                "date", dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
            ),
            "model": dg.DimensionPartitionMapping("model", dg.IdentityPartitionMapping()),
        }
    )


@dg.asset(
    group_name=GROUP,
    partitions_def=DAY_MODEL,
    dagster_type=dg.Nothing,
    deps=[
        "production_metrics",
        "feature_drift_report",
        dg.AssetDep("performance_alerts", partition_mapping=PREVIOUS_DAY),
    ],
    # Alerts escalate over consecutive days, so each model's days must be folded in date order.
    # The heavy assets' ranged runs may be cut by day or into chunks that run side by side; this
    # asset runs after them (Dagster puts a different policy in another run), all its days in
    # one run. Not overridden by MLOPS_BACKFILL_PARTITIONS_PER_RUN (platform_definitions).
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def performance_alerts(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    models: dg.ResourceParam[ModelCatalog],
):
    """Advance the alert state machines by the day's metric verdicts and drift verdict (dedupe,
    escalate, resolve); a run of many days advances each model's alerts day by day, oldest
    first. Every alert is folded here, so one run orders them all."""
    yield from each_partition(context, lambda day, model: [_alerts(warehouse, models, day, model)])


def _alerts(warehouse, models, day_key: str, model_name: str) -> dg.MaterializeResult:
    # The contract first: an undeclared model's partition fails naming the declared models.
    contract = _contract(models, model_name)
    target = partition_target(warehouse, day_key, model_name)
    day, model, wh = target.day, target.model, target.warehouse
    monitored = contract.monitored_metrics()
    from mlops_assets.lib.evaluation import cap_level

    metrics = wh.query(
        "SELECT metric, value, baseline_value, warning_threshold, degradation_abs, level, basis "
        "FROM mlops.production_metrics WHERE model_name = :m AND metric_date = :d",
        {"m": contract.name, "d": day},
    )
    cap = contract.monitoring.estimated_severity_cap
    evaluations = {
        r["metric"]: DayEvaluation(
            day=day,
            # An estimate alone may warn but not page (contract.monitoring.estimated_severity_cap);
            # production_metrics stores estimated levels capped already, rows written by
            # earlier versions may not be.
            level=cap_level(r["level"], cap) if r["basis"] == "estimated" else r["level"],
            observed=float(r["value"]),
            baseline=r["baseline_value"],
            threshold=float(r["warning_threshold"]),
            degradation=r["degradation_abs"],
        )
        for r in metrics
        if r["metric"] in monitored and r["level"] in ("ok", "info", "warning", "critical")
    }
    policy = AlertPolicy(
        escalate_after_days=contract.monitoring.escalate_after_days,
        resolve_after_days=contract.monitoring.resolve_after_days,
    )
    estimated = {r["metric"] for r in metrics if r["basis"] == "estimated"}
    changes = evaluate_alerts(
        wh,
        kind="performance",
        model=model,
        evaluations=evaluations,
        policy=policy,
        estimated=estimated,
    )
    drift_changes, drift_status = _drift_alerts(wh, contract, model, day, policy)
    skipped = sorted({r["metric"] for r in metrics if r["metric"] in monitored} - set(evaluations))
    return dg.MaterializeResult(
        metadata={
            "evaluated_metrics": len(evaluations),
            "not_evaluated": ", ".join(skipped) or "none",
            "changes": dg.MetadataValue.json(changes),
            "opened": sum(c["event"] == "opened" for c in changes),
            "escalated": sum(c["event"] == "escalated" for c in changes),
            "resolved": sum(c["event"] == "resolved" for c in changes),
            "drift": drift_status,
            "drift_alert_changes": dg.MetadataValue.json(drift_changes),
        }
    )


def _drift_alerts(wh, contract: ModelContract, model, day: dt.date, policy: AlertPolicy):
    """The day's dataset drift alert from the report feature_drift_report stored: dataset drift
    -> critical, some feature truly drifted -> warning; a lone "possible drift" stays in the
    check and the report (on null days it is the expected noise)."""
    rows = wh.query(
        "SELECT feature, dataset_verdict, dataset_share_drifted, impact "
        "FROM mlops.ml_feature_drift_detection WHERE model_name = :m AND partition_date = :d",
        {"m": contract.name, "d": day},
    )
    if not rows:
        return [], "no drift report for this day"
    verdict, share = rows[0]["dataset_verdict"], rows[0]["dataset_share_drifted"]
    level = drift_alert_level(verdict, share)
    if level is None:
        return [], f"{verdict}: not evaluated"
    # The report's feature order (the model's), which breaks ties between equal impacts as the
    # drift asset's ranking did.
    order = {name: n for n, name in enumerate(model.features)}
    ranked = sorted(rows, key=lambda r: (order.get(r["feature"], len(order)), r["feature"]))
    impacts = {
        r["feature"]: float(r["impact"])
        for r in ranked
        if r["impact"] is not None and not math.isnan(r["impact"])
    }
    changes = evaluate_alerts(
        wh,
        kind="drift",
        model=model,
        evaluations={
            "dataset_drift": DayEvaluation(
                day=day,
                level=level,  # type: ignore[arg-type]
                observed=float(share or 0.0),
                baseline=0.0,
                threshold=contract.drift.drift_share,
                degradation=share,
            )
        },
        policy=policy,
        detail=costliest(impacts),
    )
    return changes, f"{verdict}: evaluated"


def drift_alert_level(verdict: str, share_drifted: float | None) -> str | None:
    """Dataset drift -> critical; some feature truly drifted -> warning; no verdict -> none."""
    if verdict == "drift":
        return "critical"
    if verdict == "no_verdict":
        return None
    return "warning" if share_drifted else "ok"


def costliest(impacts: dict[str, float], k: int = 3) -> str:
    """The alert detail: the drifted features whose shift costs the most."""
    ranked = sorted(impacts, key=lambda f: -impacts[f])[:k]
    return f"; costliest shifts: {', '.join(ranked)}" if ranked else ""


def _num(value: object) -> float | None:
    if value is None:
        return None
    v = float(value)  # type: ignore[arg-type]
    return None if math.isnan(v) else v
