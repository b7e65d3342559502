"""The code location: the platform for the declared models (the demo's, or MLOPS_MODELS_PATH's)."""

import dagster as dg

from mlops_assets.platform import default_models, platform_definitions


@dg.definitions
def defs() -> dg.Definitions:
    return platform_definitions(*default_models())
