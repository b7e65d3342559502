"""The code location's executor, chosen by MLOPS_EXECUTOR when a run starts.

It is the Definitions' default, so it applies to the `daily_monitoring` job and to the runs
Dagster creates itself for an asset backfill or a "Materialize" in the UI (the implicit asset
job): a backfill follows the assets' backfill policy (many days per run) and its steps go to
the workers. `in_process` (default): every step in the run's own process. `celery`: Dagster's
Celery executor (the `celery` extra) puts each step on the broker (MLOPS_CELERY_BROKER); any
worker started with `celery -A mlops_assets.celery_app worker` takes it, on any host that
reaches the broker, the warehouse, MLflow and the Dagster instance's storage. Nothing a
production or drift step needs is on another worker's disk (see README "Scale-out"); a run
that materializes any other asset (training passes its model between steps through the run
host's IO-manager storage) stays in-process.
"""

from __future__ import annotations

import dagster as dg

from mlops_assets.settings import (
    ExecutorSettings,
    Settings,
    SettingsError,
    load_executor_settings,
    load_settings,
)


def celery_app_args(settings: ExecutorSettings) -> dict:
    """The Celery app arguments that the run's executor and the workers must share."""
    executor = _celery_executor(settings, retries=None)
    return executor.app_args()


def _celery_executor(settings: ExecutorSettings, retries):
    try:
        from dagster_celery.executor import CeleryExecutor
    except ImportError as error:
        raise dg.DagsterInvariantViolationError(
            "MLOPS_EXECUTOR=celery needs dagster-celery: pip install 'mlops_assets[celery]'"
        ) from error
    from dagster._core.execution.retries import RetryMode

    return CeleryExecutor(
        retries=retries or RetryMode(RetryMode.DISABLED),
        broker=settings.celery_broker,
        backend=settings.backend_url,
    )


def require_shared_services(settings: Settings) -> None:
    """Celery steps run on other hosts: the warehouse and MLflow must be servers they all
    reach, not files in one host's data directory (each worker would get its own copy)."""
    problems = []
    if settings.warehouse.backend != "postgres":
        problems.append(
            "MLOPS_WAREHOUSE_BACKEND: must be postgres (workers on other hosts cannot share "
            "the embedded DuckDB file under MLOPS_HOME)"
        )
    if settings.mlflow.effective_tracking_uri(settings.home).startswith(("sqlite:", "file:", "/")):
        problems.append(
            "MLOPS_MLFLOW_TRACKING_URI: must name an MLflow server (http[s]://...), not a "
            "store under MLOPS_HOME"
        )
    if problems:
        raise SettingsError("MLOPS_EXECUTOR=celery:\n  " + "\n  ".join(problems))


def runs_on_workers(job: dg.JobDefinition) -> bool:
    """Whether a run of `job` may spread its steps over workers: every asset it materializes is
    a production or drift asset (those read everything from the warehouse and MLflow)."""
    from mlops_assets.platform import BACKFILLED_GROUPS

    layer = job.asset_layer
    return all(
        layer.asset_graph.get(key).group_name in BACKFILLED_GROUPS
        for key in layer.selected_asset_keys
    )


@dg.executor(name="mlops_executor")
def monitoring_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """In-process or Celery, by MLOPS_EXECUTOR; a bad value fails the run naming the variable."""
    from dagster._core.execution.retries import RetryMode
    from dagster._core.executor.in_process import InProcessExecutor

    settings = load_executor_settings()
    retries = RetryMode(RetryMode.ENABLED)
    if settings.executor == "in_process" or not runs_on_workers(init_context.job.get_definition()):
        return InProcessExecutor(retries=retries)
    from dagster._core.definitions.executor_definition import (
        _check_intra_process_job,
        _check_non_ephemeral_instance,
    )

    # The steps run in other processes: they must rebuild the job from its code location and
    # report to a shared instance.
    require_shared_services(load_settings())
    _check_intra_process_job(init_context.job)
    _check_non_ephemeral_instance(init_context.instance)
    return _celery_executor(settings, retries)
