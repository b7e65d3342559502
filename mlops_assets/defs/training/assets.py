"""Training side: dataset -> LightGBM run tracked in MLflow -> the baseline for production."""

import datetime as dt
import json
import re
import time
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from mlops_assets.defs.partitions import MODELS
from mlops_assets.lib import demo_data
from mlops_assets.lib.features import FeatureSpec
from mlops_assets.lib.metrics import bootstrap_metric_std, classification_metrics
from mlops_assets.lib.names import MODEL_NAME_RULE, validate_model_name
from mlops_assets.lib.redact import redact
from mlops_assets.resources import MLflowResource, WarehouseResource
from mlops_assets.storage.mlflow_buffer import REPLAYED
from mlops_assets.storage.warehouse import frame_to_parquet, sql_file

GROUP = "training"
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")


class TrainingDataConfig(dg.Config):
    source_table: str | None = Field(
        default=None,
        description="schema.table in the warehouse holding your own history (same columns as "
        "the demo: features, odds_home, outcome, match_date); unset = generated demo data.",
    )
    n_rows: int = Field(default=8000, ge=200, description="Rows of generated demo history.")
    seed: int = Field(default=7, description="Seed of the demo generator.")
    end_date: str | None = Field(default=None, description="Last day of history (ISO date).")


class TrainingConfig(dg.Config):
    model_name: str = Field(
        default="match_outcome", description=f"Registered model name ({MODEL_NAME_RULE})."
    )
    n_estimators: int = Field(default=200, ge=1, le=5000)
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    num_leaves: int = Field(default=15, ge=2, le=1024)
    min_child_samples: int = Field(default=40, ge=1)
    test_size: float = Field(default=0.25, gt=0.05, lt=0.9)
    seed: int = Field(default=42)
    value_margin: float = Field(default=0.02, ge=0, description="Bet when p*odds > 1 + margin.")
    promotion_tolerance: float = Field(
        default=0.01,
        ge=0,
        description="A new version becomes champion unless its accuracy or ROC AUC is more "
        "than this below the current champion's.",
    )

    # A path segment, a partition key and an MLflow name: checked before anything is written.
    @field_validator("model_name")
    @classmethod
    def _model_name_is_safe(cls, value: str) -> str:
        return validate_model_name(value)


class BaselineConfig(dg.Config):
    reference_rows: int = Field(default=5000, ge=100, description="Reference sample for drift.")
    n_boot: int = Field(default=200, ge=20, description="Bootstrap resamples for metric noise.")


@dataclass(frozen=True)
class TrainingRunOutput:
    local_run_id: str
    model_name: str
    model_version: str | None
    mlflow_experiment_id: str | None
    mlflow_run_id: str | None
    tracking_status: str
    metrics: dict[str, float | None]
    model_dir: str
    feature_spec_json: str
    value_margin: float
    validation: pd.DataFrame  # held-out rows with prob, for the baseline


@dg.asset(group_name=GROUP, kinds={"pandas"})
def training_dataset(
    context: dg.AssetExecutionContext, config: TrainingDataConfig, warehouse: WarehouseResource
) -> dg.Output[pd.DataFrame]:
    """Match history with features, bookmaker odds and outcomes (demo generator or your table)."""
    if config.source_table:
        if not _TABLE_NAME.match(config.source_table):
            raise dg.Failure(f"source_table must be schema.table, got {config.source_table!r}")
        schema, table = config.source_table.split(".")
        frame = warehouse.get().query_df(f'SELECT * FROM "{schema}"."{table}"')  # noqa: S608
    else:
        end = dt.date.fromisoformat(config.end_date) if config.end_date else dt.date.today()
        frame = demo_data.training_history(n_rows=config.n_rows, seed=config.seed, end=end)
    required = [*demo_data.FEATURES, demo_data.TARGET]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise dg.Failure(f"training data is missing columns: {', '.join(missing)}")
    return dg.Output(
        frame,
        metadata={
            "rows": len(frame),
            "positive_rate": float(frame[demo_data.TARGET].mean()),
            "source": config.source_table or f"demo generator (seed {config.seed})",
            "features": dg.MetadataValue.json(demo_data.FEATURES),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"lightgbm", "mlflow"},
    check_specs=[
        dg.AssetCheckSpec(
            name="champion_gate",
            asset="training_run",
            blocking=True,
            description="The new version must not be worse than the champion beyond tolerance",
        )
    ],
)
def training_run(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    training_dataset: pd.DataFrame,
    mlflow: MLflowResource,
    warehouse: WarehouseResource,
):
    """Train LightGBM, evaluate on a held-out split, track it in MLflow, register a version.

    Everything goes through the MLflow buffer first; when MLflow is down the run finishes
    anyway under its local id and the flush sensor replays it later.
    """
    import lightgbm as lgb
    from mlflow import lightgbm as mlflow_lightgbm
    from mlflow.models import infer_signature

    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    frame = (
        training_dataset.sort_values("match_date")
        if "match_date" in training_dataset
        else (training_dataset)
    )
    # Time-ordered split: the model is judged on matches after the ones it learned from.
    cut = int(len(frame) * (1 - config.test_size))
    train, test = frame.iloc[:cut], frame.iloc[cut:]
    spec = FeatureSpec.fit(train, demo_data.FEATURES)
    x_train, x_test = spec.encode(train), spec.encode(test)
    params = {
        "n_estimators": config.n_estimators,
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_child_samples": config.min_child_samples,
        "random_state": config.seed,
        # One thread: the data is small, and OpenMP threads competing with the other processes
        # of a 2-core machine made fitting ~20x slower here.
        "n_jobs": 1,
        "verbose": -1,
    }
    model = lgb.LGBMClassifier(**params)
    model.fit(x_train, train[demo_data.TARGET], categorical_feature=list(spec.categorical))
    prob = model.predict_proba(x_test)[:, 1]
    odds = test[demo_data.ODDS_COLUMN].to_numpy() if demo_data.ODDS_COLUMN in test else None
    result = classification_metrics(
        test[demo_data.TARGET].to_numpy(), prob, odds=odds, value_margin=config.value_margin
    )

    tracker = mlflow.tracker()
    with tracker.start_run(
        run_name=f"{config.model_name}-{started:%Y%m%d-%H%M%S}",
        registered_model_name=config.model_name,
        tags={"mlops.model_name": config.model_name, "dagster.run_id": context.run_id},
    ) as run:
        run.log_params(
            {
                **params,
                "test_size": config.test_size,
                "value_margin": config.value_margin,
                "n_train": len(train),
                "n_test": len(test),
                "features": ",".join(spec.columns),
            }
        )
        # Learning curve: per-iteration held-out log loss, with its step, for the MLflow UI.
        evals = _staged_log_loss(model, x_test, test[demo_data.TARGET].to_numpy())
        now = int(time.time() * 1000)
        run.log_metric_points(_points("valid_log_loss", evals, now))
        run.log_metrics(
            {k: v for k, v in result.values.items() if v is not None} | {"n_bets": result.n_bets},
            timestamp_ms=now,
        )
        model_dir = run.model_dir("model")
        example = x_test.head(5)
        # The native Booster: saved as LightGBM text, loaded without scikit-learn or skops.
        mlflow_lightgbm.save_model(
            model.booster_,
            str(model_dir),
            signature=infer_signature(example, model.predict_proba(example)[:, 1]),
            input_example=example,
            # Explicit requirements: inferring them imports the model in a subprocess (slow).
            pip_requirements=[f"lightgbm=={lgb.__version__}", "scikit-learn", "pandas"],
        )
        (run.artifact_dir / "feature_spec.json").write_text(spec.to_json())
        # Serving loads this plain LightGBM file: it needs neither MLflow nor its slow imports.
        model.booster_.save_model(str(run.artifact_dir / "booster.txt"))
    replay = tracker.replay(run.local_run_id)
    if not context.instance.has_dynamic_partition(MODELS.name, config.model_name):
        context.instance.add_dynamic_partitions(MODELS.name, [config.model_name])

    output = TrainingRunOutput(
        local_run_id=run.local_run_id,
        model_name=config.model_name,
        model_version=replay.model_version,
        mlflow_experiment_id=replay.mlflow_experiment_id,
        mlflow_run_id=replay.mlflow_run_id,
        tracking_status="TRACKED" if replay.state == REPLAYED else replay.state.upper(),
        metrics=result.values,
        model_dir=str(model_dir),
        feature_spec_json=spec.to_json(),
        value_margin=config.value_margin,
        validation=test.assign(probability=prob).reset_index(drop=True),
    )
    finished = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    warehouse.get().execute(
        sql_file("queries/insert_training_run"),
        {
            "local_run_id": output.local_run_id,
            "model_name": output.model_name,
            "model_version": output.model_version,
            "mlflow_experiment_id": output.mlflow_experiment_id,
            "mlflow_run_id": output.mlflow_run_id,
            "experiment_name": tracker.config.experiment_name,
            "status": "FINISHED",
            "tracking_status": output.tracking_status,
            **{f"m_{k}": v for k, v in result.values.items()},
            "n_train": len(train),
            "n_test": len(test),
            "params_json": json.dumps(params, sort_keys=True),
            "started_at": started,
            "finished_at": finished,
        },
    )
    if replay.error:
        context.log.warning(
            f"MLflow unavailable, run {output.local_run_id} buffered for replay: "
            + redact(replay.error)
        )
    link = tracker.config.run_link(output.mlflow_experiment_id, output.mlflow_run_id)
    gate = _champion_gate(warehouse.get(), tracker, output, config.promotion_tolerance)
    yield dg.Output(
        output,
        metadata={
            **{k: float(v) for k, v in result.values.items() if v is not None},
            **{f"{k}_note": v for k, v in result.notes.items()},
            "n_bets": result.n_bets,
            "local_run_id": output.local_run_id,
            "mlflow_run_id": output.mlflow_run_id or "pending replay",
            "mlflow_experiment_id": output.mlflow_experiment_id or "pending replay",
            "model_version": output.model_version or "pending replay",
            "tracking_status": output.tracking_status,
            "mlflow_run": dg.MetadataValue.url(link) if link else "no MLflow UI link",
            "rows_train": len(train),
            "rows_test": len(test),
            "champion": gate["promoted"],
        },
    )
    yield dg.AssetCheckResult(
        check_name="champion_gate",
        passed=gate["promoted"],
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={k: v for k, v in gate.items() if v is not None},
    )


def _champion_gate(wh, tracker, output: TrainingRunOutput, tolerance: float) -> dict:
    """Promote the new run to champion unless it is worse than the current one."""
    rows = wh.query(
        "SELECT local_run_id, model_version, accuracy, roc_auc FROM mlops.training_runs "
        "WHERE model_name = :m AND is_champion AND local_run_id <> :id",
        {"m": output.model_name, "id": output.local_run_id},
    )
    new_acc, new_auc = output.metrics.get("accuracy"), output.metrics.get("roc_auc")
    result = {
        "promoted": True,
        "accuracy": new_acc,
        "roc_auc": new_auc,
        "champion_accuracy": rows[0]["accuracy"] if rows else None,
        "champion_roc_auc": rows[0]["roc_auc"] if rows else None,
        "tolerance": tolerance,
        "reason": "no champion yet" if not rows else "not worse than the champion",
    }
    if rows:
        champion = rows[0]
        worse = [
            name
            for name, new, old in (
                ("accuracy", new_acc, champion["accuracy"]),
                ("roc_auc", new_auc, champion["roc_auc"]),
            )
            if new is None or (old is not None and new < old - tolerance)
        ]
        if worse:
            result |= {
                "promoted": False,
                "reason": f"worse than champion {champion['local_run_id']} on {', '.join(worse)}",
            }
    with wh.transaction() as tx:
        if result["promoted"]:
            tx.execute(
                "UPDATE mlops.training_runs SET is_champion = (local_run_id = :id) "
                "WHERE model_name = :m",
                {"id": output.local_run_id, "m": output.model_name},
            )
        tx.execute(
            "UPDATE mlops.training_runs SET promotion_note = :n WHERE local_run_id = :id",
            {"n": result["reason"], "id": output.local_run_id},
        )
    if result["promoted"] and output.model_version:
        try:
            tracker.set_champion(output.model_name, output.model_version)
            result["mlflow_alias"] = f"champion -> version {output.model_version}"
        except Exception as error:  # noqa: BLE001 - the alias is advisory; our table decides
            result["mlflow_alias"] = f"not set: {type(error).__name__}"
    return result


@dg.asset(group_name=GROUP, kinds={"duckdb", "postgres"})
def training_baseline(
    context: dg.AssetExecutionContext,
    config: BaselineConfig,
    training_run: TrainingRunOutput,
    training_dataset: pd.DataFrame,
    warehouse: WarehouseResource,
) -> dg.Output[dict]:
    """Held-out metrics, their bootstrap noise, and a reference feature sample for drift."""
    validation = training_run.validation
    odds = (
        validation[demo_data.ODDS_COLUMN].to_numpy()
        if demo_data.ODDS_COLUMN in validation
        else None
    )
    std = bootstrap_metric_std(
        validation[demo_data.TARGET].to_numpy(),
        validation["probability"].to_numpy(),
        odds=odds,
        n_boot=config.n_boot,
        value_margin=training_run.value_margin,
    )
    spec = FeatureSpec.from_json(training_run.feature_spec_json)
    n_ref = min(config.reference_rows, len(training_dataset))
    reference = training_dataset[spec.columns].sample(n=n_ref, random_state=0)
    reference = reference.reset_index(drop=True)
    # The MLflow ids as they are now: after a replay they are in the table, not in the
    # (pickled) training_run output, which still holds what was known at training time.
    tracked = warehouse.get().query(
        "SELECT mlflow_run_id, mlflow_experiment_id, model_version, tracking_status "
        "FROM mlops.training_runs WHERE local_run_id = :id",
        {"id": training_run.local_run_id},
    )[0]
    row = {
        "local_run_id": training_run.local_run_id,
        "model_name": training_run.model_name,
        "model_version": tracked["model_version"],
        "baseline_mlflow_run_id": tracked["mlflow_run_id"],
        "mlflow_experiment_id": tracked["mlflow_experiment_id"],
        "metrics_json": json.dumps(training_run.metrics),
        "metric_std_json": json.dumps(std),
        "features_json": json.dumps(spec.kinds),
        "n_validation": len(validation),
        "reference_rows": n_ref,
        "reference_sample": frame_to_parquet(reference),
        "created_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
    }
    warehouse.get().execute(sql_file("queries/upsert_training_baseline"), row)
    summary = {k: v for k, v in row.items() if k != "reference_sample"}
    return dg.Output(
        summary,
        metadata={
            "baseline_run_id": tracked["mlflow_run_id"] or training_run.local_run_id,
            "tracking_status": tracked["tracking_status"],
            "reference_rows": n_ref,
            "validation_rows": len(validation),
            "metrics": dg.MetadataValue.json(training_run.metrics),
            "metric_std": dg.MetadataValue.json(std),
        },
    )


def _staged_log_loss(model, x: pd.DataFrame, y: np.ndarray, every: int = 10) -> list[float]:
    from sklearn.metrics import log_loss

    losses = []
    total = model.booster_.num_trees()
    for i in range(every, total + 1, every):
        p = model.predict_proba(x, num_iteration=i)[:, 1]
        losses.append(float(log_loss(y, p, labels=[0, 1])))
    return losses


def _points(key: str, values: list[float], ts: int):
    from mlops_assets.storage.mlflow_buffer import MetricPoint

    return [MetricPoint(key, v, ts, step=(i + 1) * 10) for i, v in enumerate(values)]
