"""mlops_assets: models from training (MLflow) to production monitoring, as Dagster assets.

`MonitoredModel` is the component type of a model declaration (`type: mlops_assets.MonitoredModel`
in a defs.yaml); `platform_definitions` builds the code location from declared models.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_assets.components.monitored_model import MonitoredModel
    from mlops_assets.platform import platform_definitions

__all__ = ["MonitoredModel", "platform_definitions"]


def __getattr__(name: str) -> Any:
    # Lazy: `import mlops_assets.lib...` from the CLI or a test must not pay for Dagster.
    if name == "MonitoredModel":
        from mlops_assets.components.monitored_model import MonitoredModel

        return MonitoredModel
    if name == "platform_definitions":
        from mlops_assets.platform import platform_definitions

        return platform_definitions
    raise AttributeError(name)
