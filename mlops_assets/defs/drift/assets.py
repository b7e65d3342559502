"""Feature drift: the day's production inputs against the training baseline's reference sample."""

import datetime as dt
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from mlops_assets.defs.partitions import DAY_MODEL, each_partition, partition_target
from mlops_assets.lib.contract import ModelCatalog, UnknownModelError
from mlops_assets.lib.laps import Laps
from mlops_assets.resources import MLflowResource, WarehouseResource
from mlops_assets.storage.monitoring import replace_partition

if TYPE_CHECKING:
    import pandas as pd

GROUP = "drift"


@dg.asset(
    group_name=GROUP,
    partitions_def=DAY_MODEL,
    # No value to store: the rows are in the warehouse, and a ranged run has one per day.
    dagster_type=dg.Nothing,
    deps=["production_predictions"],
    check_specs=[
        dg.AssetCheckSpec(
            name="no_dataset_drift",
            asset="feature_drift_report",
            description="WARN on possible drift, ERROR on drift of the day's inputs",
        )
    ],
)
def feature_drift_report(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    mlflow: MLflowResource,
    models: dg.ResourceParam[ModelCatalog],
):
    """Per-feature tests, effect sizes and data quality; an HTML report logged to MLflow."""
    yield from each_partition(
        context, lambda day, model: _drift(warehouse, mlflow, models, day, model)
    )


def _drift(warehouse, mlflow, models, day_key: str, model_name: str):
    # Imported here: they pull in pandas, which every run worker would pay for at load time.
    import pandas as pd

    from mlops_assets.lib.drift import DriftConfig, DriftInputError, DriftRun
    from mlops_assets.lib.drift_html import render_html
    from mlops_assets.lib.impact import sample_rows
    from mlops_assets.storage import inference_log

    try:  # the contract first: an undeclared model's partition fails naming the declared ones
        contract = models.get(model_name)
    except UnknownModelError as error:
        raise dg.Failure(str(error)) from error
    laps = Laps()
    with warehouse.session():  # the reads share one connection
        target = partition_target(warehouse, day_key, model_name)
        day_key, day, model, wh = target.day_key, target.day, target.model, target.warehouse
        reference = model.reference()
    laps.lap("read_reference")
    model_name = model.model_name
    config = contract.drift
    drift_config = DriftConfig(
        engine=config.engine,  # type: ignore[arg-type]
        correction=config.correction,  # type: ignore[arg-type]
        p_value=config.p_value,
        drift_share=config.drift_share,
    )
    # The day's columns group by group: the features of one group are tested while the
    # warehouse reads the next. The categorical features come last, as their counts (made by
    # DuckDB, or from PostgreSQL's chunks). The report is the one `compute_drift` gives on the
    # whole frame.
    # A drifted day's impact ranking scores a sample of its rows (`sample_rows`): only those
    # are kept, so the tests may sort the day's numeric columns where they are.
    samples: list[pd.DataFrame] = []
    # Categorical features come as counts: then no rows are kept, the ranking reads its own.
    counted = "categorical" in model.features.values()
    run = rows = None
    try:
        parts = inference_log.iter_features(
            wh, contract, day, features=model.features, counted=True
        )
        for part in parts:
            if isinstance(part, dict):  # categorical features' counts
                if run is None:
                    first = next(iter(part.values()))
                    n_current = int(first.counts.sum()) + first.missing
                    run = DriftRun(reference, model.features, drift_config, n_current=n_current)
                run.add_counts(part)
                continue
            if run is None:
                run = DriftRun(reference, model.features, drift_config, n_current=len(part))
                rows = sample_rows(len(part))
            if not counted:
                samples.append(part.copy() if rows is None else part.iloc[rows])
            run.add(part, owned=True)
        assert run is not None  # iter_features yields at least one group
        laps.lap("read_and_test")  # each group read while the one before is tested
        report = run.finish()
    except DriftInputError as error:
        raise dg.Failure(f"drift input for {model_name} on {day}: {error}") from error
    laps.lap("test")

    def current_rows() -> pd.DataFrame:
        """The rows the impact ranking scores: the kept samples, or (categorical features
        counted, not read) the day read again whole; the ranking draws the same sample."""
        if not counted:
            return samples[0] if len(samples) == 1 else pd.concat(samples, axis=1)
        return inference_log.read_features(wh, contract, day, features=model.features)

    impacts, impact_note = _impact_ranking(contract, model, report, reference, current_rows, mlflow)
    samples.clear()
    laps.lap("impact")
    tracker = mlflow.tracker()
    # The report's home is MLflow: its own run per model version and day (through the buffer,
    # replayed later if MLflow is down); the training run stays finished. No host keeps a copy
    # other than the buffer's until that replay.
    with tempfile.TemporaryDirectory(prefix="mlops-drift-") as scratch:
        html_path = Path(scratch) / f"drift_{day_key}.html"
        html_path.write_text(render_html(report, title=f"Feature drift: {model_name}, {day_key}"))
        laps.lap("render")
        # The report's run and the rows share one connection: the buffer and the breaker
        # alone make ~30 short transactions. The embedded file stays locked while
        # MLflow answers (each call bounded by its connection timeout; an open breaker makes
        # none).
        with wh.session():
            logged = tracker.log_monitoring_artifact(
                model_name=model_name,
                local_run_id=model.local_run_id,
                mlflow_run_id=model.mlflow_run_id,
                day=day,
                path=html_path,
            )
            report_uri = _report_uri(logged, tracker, html_path.name)
            laps.lap("log_report")
            replace_partition(
                wh,
                "mlops.ml_feature_drift_detection",
                model=model_name,
                day=day,
                day_column="partition_date",
                rows=_drift_rows(report, impacts, model, day, report_uri),
            )
    laps.lap("write")
    top = [
        {
            "feature": f.feature,
            "verdict": f.verdict,
            f.effect_size_name: f.effect_size,
            "impact": impacts.get(f.feature),
        }
        for f in report.top_drifting(5)
    ]
    # Ranked by what the shift costs when that is known, not only by how significant it is.
    if impacts:
        top.sort(key=lambda t: -(t["impact"] if t["impact"] is not None else float("-inf")))
    yield dg.Output(
        None,
        metadata={
            "dataset_verdict": report.verdict,
            "share_drifted": report.share_drifted,
            "rows_current": report.n_current,
            "rows_reference": report.n_reference,
            "ignored_columns": ", ".join(report.ignored_columns) or "none",
            "report": report_uri,
            "logged_to_mlflow": "yes" if logged.state == "replayed" else "buffered for replay",
            "baseline_mlflow_run_id": model.run_ref,
            "top_drifting": dg.MetadataValue.json(top),
            "impact_ranking": impact_note,
            # From the first read to the rows written: where a slow day's time went.
            "seconds": dg.MetadataValue.json(laps.seconds()),
        },
    )
    yield dg.AssetCheckResult(
        check_name="no_dataset_drift",
        passed=report.verdict in ("no_drift", "no_verdict"),
        severity=dg.AssetCheckSeverity.ERROR
        if report.verdict == "drift"
        else dg.AssetCheckSeverity.WARN,
        metadata={
            "model_name": model_name,
            "day": day_key,
            # performance_alerts raises the drift alert for this verdict; the check sensor
            # skips it.
            "alerted_as": "drift",
            "verdict": report.verdict,
            "share_drifted": report.share_drifted,
            "threshold": config.drift_share,
            "top_drifting": dg.MetadataValue.json(top),
        },
    )


def _report_uri(logged, tracker, name: str) -> str:
    """Where the report lives: `runs:/<MLflow run id>/<file>` once in MLflow, else the buffered
    copy on this host until the replay uploads it."""
    if logged.state == "replayed" and logged.mlflow_run_id:
        return f"runs:/{logged.mlflow_run_id}/{name}"
    return str(tracker.config.artifact_root / logged.local_run_id / name)


def _drift_rows(
    report, impacts: dict[str, float], model, day: dt.date, report_uri: str
) -> "pd.DataFrame":
    """The report as rows of mlops.ml_feature_drift_detection."""
    frame = report.to_frame()
    frame["impact"] = frame["feature"].map(impacts)
    frame = frame.assign(
        model_name=model.model_name,
        model_version=model.model_version,
        partition_date=day,
        dataset_verdict=report.verdict,
        dataset_share_drifted=report.share_drifted,
        baseline_local_run_id=model.local_run_id,
        baseline_mlflow_run_id=model.mlflow_run_id,
        mlflow_experiment_id=model.mlflow_experiment_id,
        report_path=report_uri,
        computed_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
    ).rename(columns={"kind": "feature_kind"})
    return frame[[c for c in _TABLE_COLUMNS if c in frame.columns]]


def _impact_ranking(contract, model, report, reference, current_rows, mlflow):
    """Drifted features -> how much of the estimated accuracy restoring each one recovers.
    `current_rows()`: the day's rows, or those of them `sample_rows` chose (read only once
    a ranking is due).

    Needs the model's calibrator (classification) and the model (this host's cache, rebuilt from
    the MLflow registry when missing); without them the report is ranked by significance only,
    and says so.
    """
    drifted = [f.feature for f in report.features if f.verdict in ("drift", "possible_drift")]
    if not drifted:
        return {}, "no drifted feature"
    if not model.estimation:
        return {}, "not ranked: no calibrator for this model (regression or labels only)"
    from mlops_assets.lib.estimation import Calibrator
    from mlops_assets.lib.impact import ImpactError, rank_feature_impact
    from mlops_assets.storage.models import ModelLoadError, cached_predictor

    runtime = mlflow.runtime()
    try:
        predictor = cached_predictor(
            contract,
            tracker=runtime.tracker,
            home=runtime.settings.home,
            artifact_root=runtime.mlflow_config.artifact_root,
            local_run_id=model.local_run_id,
            mlflow_run_id=model.mlflow_run_id,
            model_version=model.model_version,
            features=list(model.features),
        )
    except ModelLoadError as error:
        return {}, f"not ranked: {error}"
    if predictor is None:
        return {}, "not ranked: the model is not reachable (pending replay, or MLflow down)"
    try:
        ranked = rank_feature_impact(
            lambda frame: predictor.score(frame).proba,
            Calibrator.from_dict(model.estimation["calibrator"]),
            reference,
            current_rows(),
            drifted,
            threshold=contract.threshold,
        )
    except ImpactError as error:
        return {}, f"not ranked: {error}"
    return {r.feature: float(r.impact) for r in ranked}, "by estimated accuracy recovered"


_TABLE_COLUMNS = [
    "model_name",
    "model_version",
    "partition_date",
    "feature",
    "feature_kind",
    "test",
    "statistic",
    "p_value",
    "p_value_adjusted",
    "effect_size_name",
    "effect_size",
    "psi",
    "wasserstein_norm",
    "js_distance",
    "verdict",
    "reason",
    "n_reference",
    "n_current",
    "missing_rate_reference",
    "missing_rate_current",
    "unseen_categories",
    "share_outside_reference_range",
    "non_finite_current",
    "dataset_verdict",
    "dataset_share_drifted",
    "impact",
    "baseline_local_run_id",
    "baseline_mlflow_run_id",
    "mlflow_experiment_id",
    "report_path",
    "computed_at",
]
