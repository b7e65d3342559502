"""The HTTP settings the tracker hands to MLflow must be values MLflow can parse."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.environment_variables import (
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    MLFLOW_HTTP_REQUEST_TIMEOUT,
)

from mlops_assets.storage.tracking import MlflowConfig, configure_mlflow_http


@pytest.mark.parametrize(
    ("timeout", "delay", "expected_timeout", "expected_backoff"),
    [
        (5.0, 0.5, 5, 1),  # the defaults: MLflow reads both as int, "5.0" would not parse
        (1.0, 0.0, 1, 0),
        (0.2, 2.5, 1, 3),  # fractions round up; a sub-second timeout is still one second
    ],
)
def test_http_settings_parse_as_mlflow_reads_them(
    tmp_path: Path, timeout: float, delay: float, expected_timeout: int, expected_backoff: int
):
    config = MlflowConfig(
        tracking_uri="http://127.0.0.1:9",
        experiment_name="e",
        artifact_root=tmp_path,
        max_retries=0,
        retry_delay=delay,
        connection_timeout=timeout,
    )

    configure_mlflow_http(config)

    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == expected_timeout
    assert MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get() == expected_backoff
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 0
