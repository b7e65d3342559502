"""Production side: daily predictions, metrics against the training baseline, graded alerts."""

import datetime as dt
import json
import math

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from mlops_assets.defs.partitions import DAY_MODEL, partition_target
from mlops_assets.lib import demo_data
from mlops_assets.lib.alert_policy import AlertPolicy, DayEvaluation
from mlops_assets.lib.features import FeatureSpec
from mlops_assets.lib.metrics import (
    METRICS,
    MetricInputError,
    classification_metrics,
    degradation,
    severity_for,
    thresholds_for,
)
from mlops_assets.resources import MLflowResource, WarehouseResource
from mlops_assets.storage.monitoring import (
    evaluate_alerts,
    replace_partition,
)

GROUP = "production"

# Absolute degradation levels (warning, critical) per metric; the noise-aware threshold from
# the baseline bootstrap widens them on small days.
DEFAULT_LEVELS = {
    "accuracy": (0.04, 0.07),
    "precision": (0.05, 0.10),
    "recall": (0.05, 0.10),
    "f1": (0.05, 0.10),
    "roc_auc": (0.04, 0.07),
    "log_loss": (0.03, 0.08),
    "roi": (0.10, 0.20),
}
MONITORED = ("accuracy", "f1", "roc_auc", "log_loss", "roi")


class TrafficConfig(dg.Config):
    n_rows: int = Field(default=1000, ge=1, description="Simulated matches per day (demo).")
    seed: int = Field(default=7, description="Seed of the demo traffic generator.")
    feature_drift_from: str | None = Field(default=None, description="ISO day inputs drift.")
    concept_drift_from: str | None = Field(default=None, description="ISO day outcomes drift.")
    label_delay_days: int = Field(
        default=1, ge=0, description="Outcomes settle this many days after the match."
    )


class MetricsConfig(dg.Config):
    min_settled: int = Field(default=200, ge=1, description="Fewer settled rows: no verdict.")
    k_warning: float = Field(default=3.0, gt=0, description="Noise multiples for a warning.")
    k_critical: float = Field(default=4.5, gt=0, description="Noise multiples for critical.")
    levels_json: str = Field(
        default=json.dumps(DEFAULT_LEVELS),
        description="JSON {metric: [warning, critical]} absolute degradation levels.",
    )


class AlertsConfig(dg.Config):
    escalate_after_days: int = Field(default=3, ge=1)
    resolve_after_days: int = Field(default=2, ge=1)


@dg.asset(group_name=GROUP, partitions_def=DAY_MODEL, deps=["training_baseline"])
def production_predictions(
    context: dg.AssetExecutionContext,
    config: TrafficConfig,
    warehouse: WarehouseResource,
    mlflow: MLflowResource,
) -> dg.MaterializeResult:
    """The day's inference log for one model, scored by the active (champion) model."""
    import lightgbm as lgb

    target = partition_target(context, warehouse)
    day, model, wh = target.day, target.model, target.warehouse
    model_name = model.model_name
    artifacts = mlflow.runtime().mlflow_config.artifact_root
    # The model is loaded from our local artifact copy, so serving never depends on MLflow.
    booster = lgb.Booster(model_file=str(model.booster_path(artifacts)))
    spec = FeatureSpec.from_json(model.feature_spec_path(artifacts).read_text())
    drift = demo_data.DriftSchedule(
        feature_drift_from=_day(config.feature_drift_from),
        concept_drift_from=_day(config.concept_drift_from),
    )
    traffic = demo_data.production_day(day=day, n_rows=config.n_rows, seed=config.seed, drift=drift)
    prob = booster.predict(spec.encode(traffic))
    settled = (dt.date.today() - day).days >= config.label_delay_days
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = pd.DataFrame(
        {
            "prediction_id": model_name + ":" + traffic["match_id"].astype(str),
            "prediction_date": day,
            "model_name": model_name,
            "model_version": model.model_version,
            "training_local_run_id": model.local_run_id,
            "mlflow_run_id": model.mlflow_run_id,
            "features_json": [
                json.dumps(r, default=float) for r in traffic[spec.columns].to_dict("records")
            ],
            "prediction": (prob >= 0.5).astype(int),
            "probability": prob,
            "odds": traffic[demo_data.ODDS_COLUMN].astype(float),
            "outcome": traffic[demo_data.TARGET].astype("Int64") if settled else pd.NA,
            "predicted_at": now,
            "settled_at": now if settled else pd.NaT,
        }
    )
    replace_partition(
        wh,
        "mlops.production_predictions",
        model=model_name,
        day=day,
        day_column="prediction_date",
        rows=rows,
    )
    return dg.MaterializeResult(
        metadata={
            "rows": len(rows),
            "settled_rows": int(settled) * len(rows),
            "model_version": model.model_version or "pending replay",
            "mlflow_run_id": model.run_ref,
            "mean_probability": float(np.mean(prob)),
        }
    )


def _metric_checks() -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            name=f"{metric}_within_baseline",
            asset="production_metrics",
            description=f"{metric} on settled rows within the noise-aware threshold of baseline",
        )
        for metric in MONITORED
    ]


@dg.asset(
    group_name=GROUP,
    partitions_def=DAY_MODEL,
    deps=[production_predictions],
    check_specs=_metric_checks(),
)
def production_metrics(
    context: dg.AssetExecutionContext,
    config: MetricsConfig,
    warehouse: WarehouseResource,
    mlflow: MLflowResource,
):
    """Metrics on the day's settled rows beside the training baseline, with their verdicts."""
    target = partition_target(context, warehouse)
    day_key, day, model, wh = target.day_key, target.day, target.model, target.warehouse
    model_name = model.model_name
    levels = {**DEFAULT_LEVELS, **{k: tuple(v) for k, v in json.loads(config.levels_json).items()}}
    frame = wh.query_df(
        "SELECT probability, outcome, odds, model_version, training_local_run_id "
        "FROM mlops.production_predictions WHERE model_name = :m AND prediction_date = :d",
        {"m": model_name, "d": day},
    )
    n_predictions = len(frame)
    settled = frame[frame["outcome"].notna()] if n_predictions else frame
    rows, verdicts = [], {}
    note = None
    values: dict[str, float | None] = dict.fromkeys(METRICS)
    if n_predictions == 0:
        note = "no predictions for this day"
    elif len(settled) < config.min_settled:
        note = f"only {len(settled)} settled rows (< {config.min_settled}): no verdict"
    else:
        try:
            result = classification_metrics(
                settled["outcome"].astype(int).to_numpy(),
                settled["probability"].astype(float).to_numpy(),
                odds=settled["odds"].astype(float).to_numpy(),
            )
            values = result.values
        except MetricInputError as error:
            raise dg.Failure(
                f"bad production data for {model_name} on {day}: {error}",
                metadata={"model": model_name, "day": day_key},
            ) from error
    run_link = mlflow.runtime().mlflow_config.run_link(
        model.mlflow_experiment_id, model.mlflow_run_id
    )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for metric in METRICS:
        observed, baseline = values.get(metric), model.metrics.get(metric)
        row = {
            "model_name": model_name,
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
            "n_settled": len(settled),
            "training_local_run_id": model.local_run_id,
            "mlflow_experiment_id": model.mlflow_experiment_id,
            "mlflow_run_id": model.mlflow_run_id,
            "computed_at": now,
        }
        if observed is not None and baseline is not None and not note:
            warn, crit = thresholds_for(
                metric,
                baseline=baseline,
                baseline_std=model.metric_std.get(metric),
                n_current=len(settled),
                n_baseline=model.n_validation,
                warning_abs=levels[metric][0],
                critical_abs=levels[metric][1],
                k_warning=config.k_warning,
                k_critical=config.k_critical,
            )
            d_abs, d_rel = degradation(metric, observed, baseline)
            level = severity_for(
                metric, degradation_abs=d_abs, warning_threshold=warn, critical_threshold=crit
            )
            row |= {
                "degradation_abs": d_abs,
                "degradation_rel": d_rel,
                "warning_threshold": warn,
                "critical_threshold": crit,
                "level": level,
            }
        elif observed is None and not note:
            row["note"] = "metric undefined on this day's data"
        rows.append(row)
        verdicts[metric] = row
    replace_partition(
        wh,
        "mlops.production_metrics",
        model=model_name,
        day=day,
        day_column="metric_date",
        rows=pd.DataFrame(rows),
    )
    yield dg.Output(
        None,
        metadata={
            "settled_rows": len(settled),
            "predictions": n_predictions,
            "status": note or "evaluated",
            **{f"{m}": _num(v) for m, v in values.items() if v is not None},
            "mlflow_run_id": model.run_ref,
        },
    )
    for metric in MONITORED:
        row = verdicts[metric]
        level = row["level"]
        passed = level in ("ok", "insufficient_data", "undefined")
        yield dg.AssetCheckResult(
            check_name=f"{metric}_within_baseline",
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR
            if level == "critical"
            else dg.AssetCheckSeverity.WARN,
            metadata={
                "model_name": model_name,
                "day": day_key,
                # performance_alerts already alerts on this breach; the check sensor skips it.
                "alerted_as": "performance",
                "level": level,
                "observed": _num(row["value"]),
                "baseline": _num(row["baseline_value"]),
                "threshold": _num(row["warning_threshold"]),
                "critical_threshold": _num(row["critical_threshold"]),
                "degradation": _num(row["degradation_abs"]),
                "note": row["note"] or "",
                "mlflow_run": dg.MetadataValue.url(run_link) if run_link else model.run_ref,
            },
        )


@dg.asset(group_name=GROUP, partitions_def=DAY_MODEL, deps=[production_metrics])
def performance_alerts(
    context: dg.AssetExecutionContext, config: AlertsConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Advance the alert state machine by the day's metric verdicts (dedupe, escalate, resolve)."""
    target = partition_target(context, warehouse)
    day, model, wh = target.day, target.model, target.warehouse
    model_name = model.model_name
    metrics = wh.query(
        "SELECT metric, value, baseline_value, warning_threshold, degradation_abs, level "
        "FROM mlops.production_metrics WHERE model_name = :m AND metric_date = :d",
        {"m": model_name, "d": day},
    )
    evaluations = {
        r["metric"]: DayEvaluation(
            day=day,
            level=r["level"],
            observed=float(r["value"]),
            baseline=r["baseline_value"],
            threshold=float(r["warning_threshold"]),
            degradation=r["degradation_abs"],
        )
        for r in metrics
        if r["metric"] in MONITORED and r["level"] in ("ok", "warning", "critical")
    }
    policy = AlertPolicy(
        escalate_after_days=config.escalate_after_days,
        resolve_after_days=config.resolve_after_days,
    )
    changes = evaluate_alerts(
        wh, kind="performance", model=model, evaluations=evaluations, policy=policy
    )
    skipped = sorted({r["metric"] for r in metrics if r["metric"] in MONITORED} - set(evaluations))
    return dg.MaterializeResult(
        metadata={
            "evaluated_metrics": len(evaluations),
            "not_evaluated": ", ".join(skipped) or "none",
            "changes": dg.MetadataValue.json(changes),
            "opened": sum(c["event"] == "opened" for c in changes),
            "escalated": sum(c["event"] == "escalated" for c in changes),
            "resolved": sum(c["event"] == "resolved" for c in changes),
        }
    )


def _day(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def _num(value: object) -> float | None:
    if value is None:
        return None
    v = float(value)  # type: ignore[arg-type]
    return None if math.isnan(v) else v
