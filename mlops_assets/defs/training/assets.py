"""Training side, per declared model: dataset -> MLflow run (trained here, or the registered
version of a model trained elsewhere) -> the baseline production is judged by."""

import datetime as dt
import importlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from mlops_assets.defs.partitions import MODELS
from mlops_assets.lib.contract import ModelCatalog, ModelContract, UnknownModelError
from mlops_assets.lib.redact import redact
from mlops_assets.resources import MLflowResource, WarehouseResource
from mlops_assets.storage.mlflow_buffer import REPLAYED
from mlops_assets.storage.warehouse import frame_to_parquet, sql_file

if TYPE_CHECKING:  # pandas and numpy load in the functions that run, not with the code location
    import numpy as np
    import pandas as pd

GROUP = "training"


@dataclass(frozen=True)
class TrainingRunOutput:
    local_run_id: str
    model_name: str
    model_version: str | None
    mlflow_experiment_id: str | None
    mlflow_run_id: str | None
    tracking_status: str
    metrics: dict[str, float | None]
    features: dict[str, str]
    # Held-out (or validation) rows: features, target, business columns and the model's outputs
    # (`proba`, `proba__<i>`, `y_pred`, `score`), for the baseline.
    validation: "pd.DataFrame"


def contract_for(context: dg.AssetExecutionContext, models: ModelCatalog) -> ModelContract:
    try:
        return models.get(context.partition_key)
    except UnknownModelError as error:
        raise dg.Failure(str(error)) from error


@dg.asset(group_name=GROUP, kinds={"pandas"}, partitions_def=MODELS)
def training_dataset(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    models: dg.ResourceParam[ModelCatalog],
) -> dg.Output:  # of a pandas DataFrame; unnamed, as Dagster would import pandas at load time
    """The model's training history (trained here) or validation data (registered elsewhere)."""
    from mlops_assets.storage.datasets import DatasetError, read_dataset, require_columns

    contract = contract_for(context, models)
    source = contract.model.train.source if contract.model.train else contract.baseline.source
    assert source is not None  # the contract requires one
    home = warehouse.runtime().settings.sources_root
    try:
        frame = read_dataset(source, warehouse.get(), home, model=contract.name)
        required = [*(contract.columns.features or {}), contract.columns.target]
        if contract.business_value.kind == "roi":
            required.append(contract.business_value.odds_column)
        require_columns(frame, list(dict.fromkeys(required)), model=contract.name, source=source)
    except DatasetError as error:
        raise dg.Failure(str(error)) from error
    if frame[contract.columns.target].isna().any():
        raise dg.Failure(
            f"model {contract.name}: target column {contract.columns.target} has "
            f"{int(frame[contract.columns.target].isna().sum())} missing value(s) in "
            f"{source.describe()}"
        )
    return dg.Output(
        frame,
        metadata={
            "rows": len(frame),
            "source": source.describe(),
            "role": "training history" if contract.model.train else "validation data",
            "columns": dg.MetadataValue.json(list(frame.columns)),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow"},
    partitions_def=MODELS,
    check_specs=[
        dg.AssetCheckSpec(
            name="champion_gate",
            asset="training_run",
            blocking=True,
            description="A new version must not be worse than the champion beyond tolerance",
        )
    ],
)
def training_run(
    context: dg.AssetExecutionContext,
    training_dataset,  # a pandas DataFrame (see training_dataset)
    mlflow: MLflowResource,
    warehouse: WarehouseResource,
    models: dg.ResourceParam[ModelCatalog],
):
    """Train and track the model in MLflow (through the buffer), or resolve the registered
    version of a model trained elsewhere; either way score the held-out/validation rows."""
    contract = contract_for(context, models)
    if contract.model.registered:
        output = _registered_run(contract, training_dataset, mlflow)
        gate = {"promoted": True, "reason": "the MLflow registry decides (alias or version)"}
        _record_run(warehouse, mlflow, output, contract, params={}, n_train=0, started=None)
        _set_champion(warehouse, output)
    else:
        output, params, n_train, started = _train_here(context, contract, training_dataset, mlflow)
        _record_run(warehouse, mlflow, output, contract, params, n_train, started)
        gate = _champion_gate(warehouse, mlflow, output, contract)
    link = mlflow.runtime().mlflow_config.run_link(
        output.mlflow_experiment_id, output.mlflow_run_id
    )
    yield dg.Output(
        output,
        metadata={
            **{k: float(v) for k, v in output.metrics.items() if v is not None},
            "task": contract.task,
            "local_run_id": output.local_run_id,
            "mlflow_run_id": output.mlflow_run_id or "pending replay",
            "mlflow_experiment_id": output.mlflow_experiment_id or "pending replay",
            "model_version": output.model_version or "pending replay",
            "tracking_status": output.tracking_status,
            "mlflow_run": dg.MetadataValue.url(link) if link else "no MLflow UI link",
            "validation_rows": len(output.validation),
            "champion": gate["promoted"],
        },
    )
    yield dg.AssetCheckResult(
        check_name="champion_gate",
        passed=bool(gate["promoted"]),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={k: v for k, v in gate.items() if v is not None},
    )


def _split(contract: ModelContract, frame: "pd.DataFrame") -> "tuple[pd.DataFrame, pd.DataFrame]":
    recipe = contract.model.train
    assert recipe is not None
    order = recipe.order_by or (
        contract.columns.timestamp if contract.columns.timestamp in frame else None
    )
    if order:
        if order not in frame:
            raise dg.Failure(f"model {contract.name}: order_by column {order} is not in the data")
        frame = frame.sort_values(order, kind="stable")
    else:
        frame = frame.sample(frac=1.0, random_state=recipe.seed)
    cut = int(len(frame) * (1 - recipe.test_size))
    # Time-ordered split when there is time: judged on rows after the ones it learned from.
    return frame.iloc[:cut], frame.iloc[cut:]


def _estimator(contract: ModelContract):
    recipe = contract.model.train
    assert recipe is not None
    params = dict(recipe.params)
    if recipe.estimator == "lightgbm":
        import lightgbm as lgb

        # One thread: OpenMP threads competing with the other processes of a small machine
        # made fitting ~20x slower here.
        params = {"n_jobs": 1, "verbose": -1, "random_state": recipe.seed, **params}
        cls = lgb.LGBMRegressor if contract.task == "regression" else lgb.LGBMClassifier
        return cls(**params), params
    module_name, _, class_name = recipe.estimator.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(**params), params
    except (ImportError, AttributeError, TypeError) as error:
        raise dg.Failure(
            f"model {contract.name}: estimator {recipe.estimator} with params {params}: {error}"
        ) from error


def _train_here(context, contract: ModelContract, frame: "pd.DataFrame", mlflow: MLflowResource):
    from mlops_assets.lib.evaluation import evaluate, y_true_of
    from mlops_assets.lib.features import FeatureSpec
    from mlops_assets.storage.models import SPEC_FILE, Predictor

    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    kinds = dict(contract.columns.features or {})
    train, test = _split(contract, frame)
    spec = FeatureSpec.fit(train, kinds)
    model, params = _estimator(contract)
    y_train = _fit_target(contract, train[contract.columns.target])
    fit_kwargs = {}
    if contract.model.train.estimator == "lightgbm":
        fit_kwargs["categorical_feature"] = list(spec.categorical)
    try:
        model.fit(spec.encode(train), y_train, **fit_kwargs)
    except ValueError as error:
        raise dg.Failure(f"model {contract.name}: fitting failed: {error}") from error

    tracker = mlflow.tracker()
    with tracker.start_run(
        run_name=f"{contract.name}-{started:%Y%m%d-%H%M%S}",
        registered_model_name=contract.name,
        tags={
            "mlops.model_name": contract.name,
            "mlops.task": contract.task,
            "dagster.run_id": context.run_id,
        },
    ) as run:
        model_dir = run.model_dir("model")
        _save_model(contract, model, spec, model_dir, spec.encode(test.head(5)))
        (model_dir / SPEC_FILE).write_text(spec.to_json())
        predictor = Predictor(contract, model_dir)
        validation = _scored(contract, test, predictor)
        result = evaluate(
            contract,
            y_true_of(contract, test[contract.columns.target]),
            _outputs(contract, validation),
            test,
        )
        run.log_params(
            {
                **{k: v for k, v in params.items()},
                "estimator": contract.model.train.estimator,
                "task": contract.task,
                "test_size": contract.model.train.test_size,
                "n_train": len(train),
                "n_test": len(test),
                "features": ",".join(spec.columns),
            }
        )
        run.log_metrics({k: v for k, v in result.values.items() if v is not None})
    replay = tracker.replay(run.local_run_id)
    if replay.error:
        context.log.warning(
            f"MLflow unavailable, run {run.local_run_id} buffered for replay: "
            + redact(replay.error)
        )
    output = TrainingRunOutput(
        local_run_id=run.local_run_id,
        model_name=contract.name,
        model_version=replay.model_version,
        mlflow_experiment_id=replay.mlflow_experiment_id,
        mlflow_run_id=replay.mlflow_run_id,
        tracking_status="TRACKED" if replay.state == REPLAYED else replay.state.upper(),
        metrics=result.values,
        features=spec.kinds,
        validation=validation,
    )
    return output, params, len(train), started


def _fit_target(contract: ModelContract, values: "pd.Series") -> "np.ndarray":
    from mlops_assets.lib.evaluation import y_true_of

    y = y_true_of(contract, values)
    return y.astype(int) if contract.task == "binary" else y


def _save_model(contract, model, spec, model_dir, example: "pd.DataFrame") -> None:
    from mlflow.models import infer_signature

    if contract.model.train.estimator == "lightgbm":
        import lightgbm as lgb
        from mlflow import lightgbm as mlflow_lightgbm

        # The native Booster: loads without scikit-learn and predicts probabilities directly.
        mlflow_lightgbm.save_model(
            model.booster_,
            str(model_dir),
            signature=infer_signature(example, model.booster_.predict(example)),
            # Explicit requirements: inferring them imports the model in a subprocess (slow).
            pip_requirements=[f"lightgbm=={lgb.__version__}", "pandas"],
        )
        return
    import sklearn
    from mlflow import sklearn as mlflow_sklearn

    mlflow_sklearn.save_model(
        model,
        str(model_dir),
        signature=infer_signature(example, model.predict(example)),
        serialization_format="cloudpickle",
        pip_requirements=[f"scikit-learn=={sklearn.__version__}", "pandas"],
    )


def _scored(contract: ModelContract, frame: "pd.DataFrame", predictor) -> "pd.DataFrame":
    """The rows with the model's outputs in the inference-log column layout."""
    scores = predictor.score(frame)
    out = frame.reset_index(drop=True).copy()
    if scores.score is not None:
        out["score"] = scores.score
    if scores.label is not None:
        out["y_pred"] = scores.label
    if scores.proba is not None:
        if scores.proba.ndim == 1:
            out["proba"] = scores.proba
        else:
            for i in range(scores.proba.shape[1]):
                out[f"proba__{i}"] = scores.proba[:, i]
    return out


def _outputs(contract: ModelContract, frame: "pd.DataFrame"):
    from mlops_assets.lib.evaluation import outputs_of

    k = len(contract.class_labels)
    proba = None
    if "proba" in frame:
        proba = frame["proba"].to_numpy(dtype=float)
    elif f"proba__{k - 1}" in frame and k:
        proba = frame[[f"proba__{i}" for i in range(k)]].to_numpy(dtype=float)
    label = frame["y_pred"].astype(str).to_numpy() if "y_pred" in frame else None
    score = frame["score"].to_numpy(dtype=float) if "score" in frame else None
    return outputs_of(contract, label=label, proba=proba, score=score)


def _registered_run(contract: ModelContract, frame: "pd.DataFrame", mlflow: MLflowResource):
    from mlops_assets.lib.evaluation import evaluate, y_true_of
    from mlops_assets.storage.models import (
        ModelLoadError,
        Predictor,
        fetch_model,
        resolve_registered,
        signature_inputs,
    )
    from mlops_assets.storage.tracking import registered_run_key

    tracker = mlflow.tracker()
    home = mlflow.runtime().settings.home
    try:
        entry = resolve_registered(tracker, contract)
        model_dir = fetch_model(tracker, entry, home)
        kinds = contract.feature_kinds(signature_inputs(model_dir))
        missing = [c for c in kinds if c not in frame]
        if missing:
            raise ModelLoadError(
                f"model {contract.name}: validation data lacks feature column(s) "
                f"{', '.join(missing)}"
            )
        validation = _scored(contract, frame, Predictor(contract, model_dir, features=list(kinds)))
    except ModelLoadError as error:
        raise dg.Failure(str(error)) from error
    except Exception as error:
        from mlops_assets.storage.tracking import is_outage

        if is_outage(error):
            raise dg.Failure(
                f"model {contract.name}: MLflow is unavailable to resolve "
                f"{contract.model.registered.uri} ({type(error).__name__}); retry when it is back"
            ) from error
        raise
    result = evaluate(
        contract,
        y_true_of(contract, frame[contract.columns.target]),
        _outputs(contract, validation),
        frame,
    )
    return TrainingRunOutput(
        # Keyed by declaration and run: one registered model may be declared twice (served
        # by two systems), and each declaration needs its own baseline and monitoring runs.
        local_run_id=registered_run_key(contract.name, entry.run_id),
        model_name=contract.name,
        model_version=entry.version,
        mlflow_experiment_id=entry.experiment_id,
        mlflow_run_id=entry.run_id,
        tracking_status="TRACKED",
        metrics=result.values,
        features=kinds,
        validation=validation,
    )


_BINARY_COLUMNS = {
    "accuracy": "accuracy",
    "precision": "precision_score",
    "recall": "recall",
    "f1": "f1",
    "roc_auc": "roc_auc",
    "log_loss": "log_loss",
    "roi": "roi",
}


def _record_run(warehouse, mlflow, output: TrainingRunOutput, contract, params, n_train, started):
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    # The fixed metric columns are the binary ones; other tasks keep them NULL (never 0) and
    # carry their metrics in metrics_json.
    fixed = {
        f"m_{name}": (output.metrics.get(name) if contract.task == "binary" else None)
        for name in _BINARY_COLUMNS
    }
    if contract.task == "multiclass":
        fixed["m_accuracy"] = output.metrics.get("accuracy")
        fixed["m_log_loss"] = output.metrics.get("log_loss")
    warehouse.get().execute(
        sql_file("queries/upsert_training_run"),
        {
            "local_run_id": output.local_run_id,
            "model_name": output.model_name,
            "model_version": output.model_version,
            "mlflow_experiment_id": output.mlflow_experiment_id,
            "mlflow_run_id": output.mlflow_run_id,
            "experiment_name": mlflow.tracker().config.experiment_name,
            "status": "FINISHED",
            "tracking_status": output.tracking_status,
            **fixed,
            "n_train": n_train,
            "n_test": len(output.validation),
            "params_json": json.dumps(params, sort_keys=True, default=str),
            "started_at": started or now,
            "finished_at": now,
            "task": contract.task,
            "metrics_json": json.dumps(output.metrics),
            "origin": "registered" if contract.model.registered else "trained",
        },
    )


def _set_champion(warehouse, output: TrainingRunOutput) -> None:
    with warehouse.get().transaction() as tx:
        tx.execute(
            "UPDATE mlops.training_runs SET is_champion = (local_run_id = :id), "
            "promotion_note = CASE WHEN local_run_id = :id THEN :n ELSE promotion_note END "
            "WHERE model_name = :m",
            {"id": output.local_run_id, "m": output.model_name, "n": "registry version"},
        )


def _champion_gate(warehouse, mlflow, output: TrainingRunOutput, contract) -> dict:
    """Promote the new run to champion unless it is worse than the current one."""
    from mlops_assets.lib.evaluation import higher_is_better

    wh = warehouse.get()
    tolerance = contract.model.train.promotion_tolerance
    rows = wh.query(
        "SELECT local_run_id, metrics_json FROM mlops.training_runs "
        "WHERE model_name = :m AND is_champion AND local_run_id <> :id",
        {"m": output.model_name, "id": output.local_run_id},
    )
    gate_metrics = [m for m in contract.monitored_metrics() if m not in ("roi", "business_value")]
    result: dict = {"promoted": True, "tolerance": tolerance, "reason": "no champion yet"}
    if rows and rows[0]["metrics_json"]:
        champion = json.loads(rows[0]["metrics_json"])
        worse = []
        for name in gate_metrics:
            new, old = output.metrics.get(name), champion.get(name)
            if new is None or old is None:
                continue
            delta = (old - new) if higher_is_better(contract, name) else (new - old)
            result[f"{name}"] = new
            result[f"champion_{name}"] = old
            if delta > tolerance:
                worse.append(name)
        result["reason"] = "not worse than the champion"
        if worse:
            result |= {
                "promoted": False,
                "reason": f"worse than champion {rows[0]['local_run_id']} on {', '.join(worse)}",
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
            mlflow.tracker().set_champion(output.model_name, output.model_version)
            result["mlflow_alias"] = f"champion -> version {output.model_version}"
        except Exception as error:  # noqa: BLE001 - the alias is advisory; our table decides
            result["mlflow_alias"] = f"not set: {type(error).__name__}"
    return result


@dg.asset(group_name=GROUP, kinds={"duckdb", "postgres"}, partitions_def=MODELS)
def training_baseline(
    context: dg.AssetExecutionContext,
    training_run: TrainingRunOutput,
    warehouse: WarehouseResource,
    models: dg.ResourceParam[ModelCatalog],
) -> dg.Output[dict]:
    """Held-out metrics, their bootstrap noise, and a reference feature sample for drift."""
    import pandas as pd

    from mlops_assets.lib.evaluation import bootstrap, fit_estimation, y_true_of
    from mlops_assets.storage.inference_log import canonical_categories

    contract = contract_for(context, models)
    validation = training_run.validation
    y_true = y_true_of(contract, validation[contract.columns.target])
    outputs = _outputs(contract, validation)
    std = bootstrap(contract, y_true, outputs, validation, n_boot=contract.baseline.n_boot)
    # Calibrated on the same validation rows: it estimates metrics on days without labels.
    estimation, estimation_note = fit_estimation(contract, y_true, outputs, validation)
    features = training_run.features
    n_ref = min(contract.baseline.reference_rows, len(validation))
    reference = validation[list(features)].sample(n=n_ref, random_state=0).reset_index(drop=True)
    for name, kind in features.items():
        # One normalisation on both sides: an int-coded category is "1" here and in production.
        if kind == "categorical":
            reference[name] = canonical_categories(reference[name])
        else:
            reference[name] = pd.to_numeric(reference[name], errors="coerce").astype(float)
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
        "features_json": json.dumps(features),
        "n_validation": len(validation),
        "reference_rows": n_ref,
        "reference_sample": frame_to_parquet(reference),
        "created_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        "estimation_json": json.dumps(estimation) if estimation else None,
    }
    warehouse.get().execute(sql_file("queries/upsert_training_baseline"), row)
    return dg.Output(
        {k: v for k, v in row.items() if k not in ("reference_sample", "estimation_json")},
        metadata={
            "estimation": estimation_note,
            "baseline_run_id": tracked["mlflow_run_id"] or training_run.local_run_id,
            "tracking_status": tracked["tracking_status"],
            "reference_rows": n_ref,
            "validation_rows": len(validation),
            "metrics": dg.MetadataValue.json(training_run.metrics),
            "metric_std": dg.MetadataValue.json(std),
        },
    )
