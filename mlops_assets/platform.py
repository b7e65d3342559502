"""The code location from declared models: shared assets, checks, sensors, jobs, resources.

`platform_definitions` is what a user's own Dagster project calls with the Definitions of its
`MonitoredModel` YAML files (or with contracts built in Python); this repository's
`definitions.py` calls it with the demo's models, or with a folder named by MLOPS_MODELS_PATH.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from mlops_assets.lib.contract import ContractError, ModelCatalog, ModelContract, load_contract_file

MODELS_PATH_VARIABLE = "MLOPS_MODELS_PATH"


def platform_definitions(*models: dg.Definitions | ModelContract) -> dg.Definitions:
    """Every asset, check, sensor and schedule, with resources, for the given models."""
    from mlops_assets.components.monitored_model import contracts_in
    from mlops_assets.defs import schedules
    from mlops_assets.defs.alerts.sensors import sensors as alert_sensors
    from mlops_assets.defs.drift import assets as drift_assets
    from mlops_assets.defs.lifecycle import assets as lifecycle_assets
    from mlops_assets.defs.production import assets as production_assets
    from mlops_assets.defs.production.checks import checks as production_checks
    from mlops_assets.defs.production.sensors import sensors as production_sensors
    from mlops_assets.defs.tracking.sensors import sensors as tracking_sensors
    from mlops_assets.defs.training import assets as training_assets
    from mlops_assets.resources import MLflowResource, NotifierResource, WarehouseResource

    contracts: list[ModelContract] = []
    for item in models:
        contracts.extend(contracts_in(item) if isinstance(item, dg.Definitions) else [item])
    catalog = ModelCatalog(contracts)
    warehouse = WarehouseResource()
    # The metrics asset's checks depend on what the declared models monitor.
    metrics = production_assets.metrics_asset(production_assets.checked_metrics(catalog))
    return dg.Definitions(
        assets=[
            *dg.load_assets_from_modules(
                [training_assets, production_assets, drift_assets, lifecycle_assets]
            ),
            metrics,
        ],
        asset_checks=production_checks,
        jobs=schedules.jobs,
        schedules=schedules.schedules,
        sensors=[*tracking_sensors, *alert_sensors, *production_sensors],
        resources={
            "warehouse": warehouse,
            "mlflow": MLflowResource(warehouse=warehouse),
            "notifier": NotifierResource(),
            "models": dg.ResourceDefinition.hardcoded_resource(catalog, "The declared models"),
        },
        metadata={"mlops_assets/models": ", ".join(catalog.names) or "none"},
    )


def load_model_files(folder: Path) -> list[ModelContract]:
    """Every `*.yaml` under `folder` (a `MonitoredModel` declaration each), validated.

    All problems of all files are reported together, one line each, naming file and field.
    """
    if not folder.is_dir():
        raise ContractError(str(folder), [f"{MODELS_PATH_VARIABLE}: not a folder"])
    contracts, problems = [], []
    for path in sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")]):
        try:
            contracts.append(load_contract_file(path))
        except ContractError as error:
            problems.extend(str(error).splitlines())
    if problems:
        raise ContractError(str(folder), problems)
    return contracts


def demo_models() -> dg.Definitions:
    """The demo's models, declared as component instances under mlops_assets/defs/models."""
    import warnings

    import mlops_assets.defs.models as models_module

    with warnings.catch_warnings():
        # load_defs is the module-based loader; load_from_defs_folder needs a dg project file.
        warnings.simplefilter("ignore")
        return dg.load_defs(models_module, project_root=Path(models_module.__file__).parents[3])


def default_models() -> list[dg.Definitions | ModelContract]:
    """MLOPS_MODELS_PATH's model files when set, else the demo's models."""
    folder = os.environ.get(MODELS_PATH_VARIABLE)
    if folder:
        return list(load_model_files(Path(folder)))
    return [demo_models()]


def catalog_of(models: Iterable[dg.Definitions | ModelContract]) -> ModelCatalog:
    from mlops_assets.components.monitored_model import contracts_in

    contracts: list[ModelContract] = []
    for item in models:
        contracts.extend(contracts_in(item) if isinstance(item, dg.Definitions) else [item])
    return ModelCatalog(contracts)
