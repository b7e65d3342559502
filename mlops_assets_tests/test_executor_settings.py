"""MLOPS_EXECUTOR and the Celery settings: read when a run starts, bad values named.

The executor is exercised the way Dagster uses it: a job with `monitoring_executor`, executed
through `dg.execute_job` on a persistent instance, so the creation function runs at run start.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.defs.executor import monitoring_executor
from mlops_assets.settings import SettingsError, load_executor_settings, load_settings


@dg.op
def _probe() -> int:
    return 1


@dg.job(executor_def=monitoring_executor)
def _probe_job():
    _probe()


def _run(instance: dg.DagsterInstance) -> tuple[bool, str]:
    with dg.execute_job(dg.reconstructable(_probe_job), instance=instance) as result:
        text = "\n".join(
            str(e.event_specific_data.error)  # type: ignore[union-attr]
            for e in result.all_events
            if e.is_failure and getattr(e.event_specific_data, "error", None)
        )
        return result.success, text


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.startswith("MLOPS_") or name == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as inst:
        yield inst


def test_defaults_are_in_process_and_the_local_redis(instance):
    settings = load_executor_settings()
    assert settings.executor == "in_process"
    assert settings.celery_broker == "redis://127.0.0.1:6379/0"
    assert settings.backend_url == settings.celery_broker


def test_the_default_runs_the_steps_in_the_run_process(instance):
    success, errors = _run(instance)
    assert success, errors


@pytest.mark.parametrize(
    ("env", "variable", "allowed"),
    [
        ({"MLOPS_EXECUTOR": "threads"}, "MLOPS_EXECUTOR", "'in_process' or 'celery'"),
        ({"MLOPS_CELERY_BROKER": "http://127.0.0.1:6379"}, "MLOPS_CELERY_BROKER", "redis://"),
        ({"MLOPS_CELERY_BROKER": ""}, "MLOPS_CELERY_BROKER", "must not be empty"),
        ({"MLOPS_CELERY_BACKEND": "redis://"}, "MLOPS_CELERY_BACKEND", "and a host"),
    ],
)
def test_a_bad_value_fails_the_run_naming_the_variable(
    instance, monkeypatch, env, variable, allowed
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as caught:
        load_executor_settings()
    line = next(line for line in str(caught.value).splitlines() if variable in line)
    assert allowed in line
    # A run started with it stops at once with the same message, before any step.
    with pytest.raises(SettingsError, match=variable):
        dg.execute_job(dg.reconstructable(_probe_job), instance=instance)
    (run,) = instance.get_runs()
    assert run.status != dg.DagsterRunStatus.SUCCESS
    assert not instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.STEP_START
    ).records


def test_broker_credentials_are_masked_in_the_error(instance, monkeypatch):
    monkeypatch.setenv("MLOPS_CELERY_BROKER", "http://user:s3cret@broker:6379")
    with pytest.raises(SettingsError) as caught:
        load_executor_settings()
    assert "s3cret" not in str(caught.value)


def _init_context(instance: dg.DagsterInstance) -> dg.InitExecutorContext:
    return dg.InitExecutorContext(
        job=dg.reconstructable(_probe_job),
        executor_def=monitoring_executor,
        executor_config={},
        instance=instance,
    )


def test_celery_needs_a_persistent_instance(instance, monkeypatch):
    monkeypatch.setenv("MLOPS_EXECUTOR", "celery")
    monkeypatch.setenv("MLOPS_WAREHOUSE_BACKEND", "postgres")
    monkeypatch.setenv("MLOPS_WAREHOUSE_DSN", "postgresql://mlops@db.internal:5432/mlops")
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    with pytest.raises(dg.DagsterUnmetExecutorRequirementsError, match="ephemeral"):
        monitoring_executor.executor_creation_fn(_init_context(dg.DagsterInstance.ephemeral()))


def test_celery_is_chosen_when_the_run_starts(instance, monkeypatch):
    """Read at run start, not when the code loads: the same job definition, now on Celery,
    with the broker and backend of the settings."""
    from dagster._core.executor.in_process import InProcessExecutor
    from dagster_celery.executor import CeleryExecutor

    assert isinstance(
        monitoring_executor.executor_creation_fn(_init_context(instance)), InProcessExecutor
    )
    monkeypatch.setenv("MLOPS_EXECUTOR", "celery")
    monkeypatch.setenv("MLOPS_CELERY_BROKER", "redis://broker.internal:6379/3")
    # Embedded warehouse and local MLflow store: every worker would write its own copy.
    with pytest.raises(SettingsError) as caught:
        monitoring_executor.executor_creation_fn(_init_context(instance))
    assert "MLOPS_WAREHOUSE_BACKEND: must be postgres" in str(caught.value)
    assert "MLOPS_MLFLOW_TRACKING_URI: must name an MLflow server" in str(caught.value)
    monkeypatch.setenv("MLOPS_WAREHOUSE_BACKEND", "postgres")
    monkeypatch.setenv("MLOPS_WAREHOUSE_DSN", "postgresql://mlops@db.internal:5432/mlops")
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    executor = monitoring_executor.executor_creation_fn(_init_context(instance))
    assert isinstance(executor, CeleryExecutor)
    assert executor.broker == executor.backend == "redis://broker.internal:6379/3"
    # The job that the code location ships uses this executor.
    from mlops_assets.definitions import defs

    job = defs().resolve_job_def("daily_monitoring")
    assert job.executor_def is monitoring_executor


def test_relative_parquet_sources_resolve_against_the_sources_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLOPS_SOURCES_ROOT", raising=False)
    assert load_settings().sources_root == (tmp_path / "home").resolve()
    monkeypatch.setenv("MLOPS_SOURCES_ROOT", str(tmp_path / "shared"))
    assert load_settings().sources_root == (tmp_path / "shared").resolve()


def test_an_asset_backfill_run_takes_the_executor_of_the_settings(instance, monkeypatch):
    """An asset backfill (or the UI's "Materialize") runs the implicit asset job of the real
    code location with the selected assets: production and drift go to the Celery workers,
    a run with training assets stays in-process."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.executor.in_process import InProcessExecutor
    from dagster_celery.executor import CeleryExecutor

    from mlops_assets.definitions import defs

    monkeypatch.setenv("MLOPS_EXECUTOR", "celery")
    monkeypatch.setenv("MLOPS_WAREHOUSE_BACKEND", "postgres")
    monkeypatch.setenv("MLOPS_WAREHOUSE_DSN", "postgresql://mlops@db.internal:5432/mlops")
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    asset_job = defs().resolve_implicit_global_asset_job_def()
    repository = ReconstructableRepository.for_module("mlops_assets.definitions", "defs")

    def executor_for(*names: str) -> dg.Executor:
        job = repository.get_reconstructable_job(asset_job.name).get_subset(
            asset_selection={dg.AssetKey(name) for name in names}
        )
        assert job.get_definition().executor_def is monitoring_executor
        context = dg.InitExecutorContext(
            job=job, executor_def=monitoring_executor, executor_config={}, instance=instance
        )
        return monitoring_executor.executor_creation_fn(context)

    production = ("production_predictions", "production_metrics", "performance_alerts")
    assert isinstance(executor_for(*production, "feature_drift_report"), CeleryExecutor)
    assert isinstance(executor_for("training_dataset", "training_run"), InProcessExecutor)
    assert isinstance(executor_for("training_run", *production), InProcessExecutor)
    monkeypatch.setenv("MLOPS_EXECUTOR", "in_process")
    assert isinstance(executor_for(*production), InProcessExecutor)
