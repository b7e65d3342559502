"""`mlops_assets.MonitoredModel`: the component type a YAML file instantiates, one per model.

The assets themselves are shared and partitioned by model (and day), so 100 models are 100
partition keys, not 100 copies of every asset. A component instance therefore contributes its
contract, carried in the Definitions' metadata, and `platform_definitions` turns the contracts
it finds into the platform's assets, sensors, jobs and resources.
"""

from __future__ import annotations

import dagster as dg

from mlops_assets.lib.contract import ModelContract

CONTRACT_METADATA_PREFIX = "mlops_assets/model/"


class MonitoredModel(dg.Component):
    """A model monitored by mlops_assets: trained here or registered in MLflow elsewhere."""

    def __init__(self, contract: ModelContract):
        self.contract = contract

    @classmethod
    def get_model_cls(cls) -> type[ModelContract]:
        return ModelContract

    @classmethod
    def load(cls, attributes, context: dg.ComponentLoadContext) -> MonitoredModel:
        if attributes is None:
            raise ValueError(f"{context.path}: a MonitoredModel needs attributes")
        return cls(ModelContract.model_validate(attributes.model_dump()))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return dg.Definitions(
            metadata={
                CONTRACT_METADATA_PREFIX + self.contract.name: dg.MetadataValue.json(
                    self.contract.model_dump(mode="json")
                )
            }
        )


def contracts_in(defs: dg.Definitions) -> list[ModelContract]:
    """The contracts that MonitoredModel instances put into `defs`."""
    return [
        ModelContract.model_validate(value.value if hasattr(value, "value") else value)
        for key, value in (defs.metadata or {}).items()
        if key.startswith(CONTRACT_METADATA_PREFIX)
    ]
