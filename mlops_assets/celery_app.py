"""The Celery app of the monitoring workers: `celery -A mlops_assets.celery_app worker -Q dagster`.

A worker reads MLOPS_CELERY_BROKER / MLOPS_CELERY_BACKEND when it starts (this module is its
entry point, never imported by the code location), the same settings the run's executor reads,
so both sides meet on one broker. Each step arrives with its run's instance reference and code
location; the worker's own MLOPS_HOME is only a cache (models downloaded from MLflow).
"""

from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from mlops_assets.defs.executor import celery_app_args, require_shared_services
from mlops_assets.settings import load_executor_settings, load_settings

# A worker with an embedded warehouse or a local MLflow store would write to its own copy.
require_shared_services(load_settings())
app = make_app(celery_app_args(load_executor_settings()))
execute_plan = create_task(app)
