"""MLflow tracking upkeep: the sensor that replays the durable buffer after an outage."""

from mlops_assets.defs.tracking.sensors import (
    REFRESH_AFTER_REPLAY,
    mlflow_buffer_flush_sensor,
    sensors,
)

__all__ = ["REFRESH_AFTER_REPLAY", "mlflow_buffer_flush_sensor", "sensors"]
