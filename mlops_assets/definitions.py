"""The code location: every asset, check, sensor and schedule, and the resources they use."""

import dagster as dg

from mlops_assets.defs import schedules
from mlops_assets.defs.alerts.sensors import sensors as alert_sensors
from mlops_assets.defs.drift import assets as drift_assets
from mlops_assets.defs.lifecycle import assets as lifecycle_assets
from mlops_assets.defs.production import assets as production_assets
from mlops_assets.defs.production.checks import checks as production_checks
from mlops_assets.defs.tracking.sensors import sensors as tracking_sensors
from mlops_assets.defs.training import assets as training_assets
from mlops_assets.resources import MLflowResource, NotifierResource, WarehouseResource

_warehouse = WarehouseResource()

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(
        [training_assets, production_assets, drift_assets, lifecycle_assets]
    ),
    asset_checks=production_checks,
    jobs=schedules.jobs,
    schedules=schedules.schedules,
    sensors=[*tracking_sensors, *alert_sensors],
    resources={
        "warehouse": _warehouse,
        "mlflow": MLflowResource(warehouse=_warehouse),
        "notifier": NotifierResource(),
    },
)
