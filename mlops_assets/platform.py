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
BACKFILL_VARIABLE = "MLOPS_BACKFILL_PARTITIONS_PER_RUN"
# A month of one model per run: start-up is paid once a month, a failure redoes at most a
# month, and a 30-day backfill folds each model's alerts in date order within one run.
DEFAULT_PARTITIONS_PER_RUN = 31
# The groups a backfill processes many partitions of in one run (one policy for all of them:
# Dagster runs parent and child in the same run only when their policies are equal). An asset
# of these groups that declares its own policy keeps it: performance_alerts folds every alert
# in one run after the others (`single_run`), each model's days in date order.
BACKFILLED_GROUPS = ("production", "drift")


def backfill_policy(value: str | None = None) -> dg.BackfillPolicy:
    """The production and drift assets' backfill policy (performance_alerts excepted: always
    `single_run`) from MLOPS_BACKFILL_PARTITIONS_PER_RUN:
    a number of day x model partitions per run (1: one run per partition), or `all`."""
    raw = (value if value is not None else os.environ.get(BACKFILL_VARIABLE, "")).strip()
    if not raw:
        return dg.BackfillPolicy.multi_run(DEFAULT_PARTITIONS_PER_RUN)
    if raw.lower() == "all":
        return dg.BackfillPolicy.single_run()
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        from mlops_assets.settings import SettingsError

        raise SettingsError(
            f"{BACKFILL_VARIABLE}={raw!r}: expected partitions per run from 1 to 10000, or 'all'"
        )
    return dg.BackfillPolicy.multi_run(int(raw))


def platform_definitions(
    *models: dg.Definitions | ModelContract, backfill: dg.BackfillPolicy | None = None
) -> dg.Definitions:
    """Every asset, check, sensor and schedule, with resources, for the given models.

    `backfill`: how many partitions a backfill of the production and drift assets processes
    per run (default: MLOPS_BACKFILL_PARTITIONS_PER_RUN, read here, when the code loads)."""
    from mlops_assets.defs import schedules
    from mlops_assets.defs.alerts.sensors import sensors as alert_sensors
    from mlops_assets.defs.drift import assets as drift_assets
    from mlops_assets.defs.executor import monitoring_executor
    from mlops_assets.defs.lifecycle import assets as lifecycle_assets
    from mlops_assets.defs.production import assets as production_assets
    from mlops_assets.defs.production.checks import checks as production_checks
    from mlops_assets.defs.production.sensors import sensors as production_sensors
    from mlops_assets.defs.tracking.sensors import sensors as tracking_sensors
    from mlops_assets.defs.training import assets as training_assets
    from mlops_assets.resources import MLflowResource, NotifierResource, WarehouseResource

    catalog = catalog_of(models)
    policy = backfill if backfill is not None else backfill_policy()
    warehouse = WarehouseResource()
    # The metrics asset's checks depend on what the declared models monitor.
    metrics = production_assets.metrics_asset(production_assets.checked_metrics(catalog))
    assets = [
        a.with_attributes(backfill_policy=policy)
        if isinstance(a, dg.AssetsDefinition)
        and a.group_names_by_key
        and set(a.group_names_by_key.values()) <= set(BACKFILLED_GROUPS)
        and a.backfill_policy is None
        else a
        for a in [
            *dg.load_assets_from_modules(
                [training_assets, production_assets, drift_assets, lifecycle_assets]
            ),
            metrics,
        ]
    ]
    return dg.Definitions(
        assets=assets,
        # Also the executor of the runs an asset backfill creates (MLOPS_EXECUTOR=celery puts
        # their steps on the workers); the training job sets its own (in-process).
        executor=monitoring_executor,
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
    """The contracts of the given models: component Definitions (their MonitoredModel
    instances) or contracts built in Python."""
    from mlops_assets.components.monitored_model import contracts_in

    contracts: list[ModelContract] = []
    for item in models:
        contracts.extend(contracts_in(item) if isinstance(item, dg.Definitions) else [item])
    return ModelCatalog(contracts)
