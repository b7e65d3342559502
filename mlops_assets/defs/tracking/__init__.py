"""MLflow tracking upkeep: the sensor that replays the durable buffer after an outage.

The code location takes `sensors.sensors`; the package does not re-export that list, so that
`mlops_assets.defs.tracking.sensors` stays the module.
"""

from mlops_assets.defs.tracking.sensors import REFRESH_AFTER_REPLAY, mlflow_buffer_flush_sensor

__all__ = ["REFRESH_AFTER_REPLAY", "mlflow_buffer_flush_sensor"]
