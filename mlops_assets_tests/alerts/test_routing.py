"""Per-model alert routing from the model's YAML: its own webhook and its severity floor."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.resources import WarehouseResource
from mlops_assets_tests.alerts.test_notify import WebhookServer, events, open_test_alert

MODEL_YAML = """
type: mlops_assets.MonitoredModel
attributes:
  name: {name}
  task: binary
  model: {{registered: {{name: {name}, alias: champion}}}}
  columns: {{target: y, probability: p}}
  baseline: {{source: {{table: raw.valid}}}}
  production: {{predictions: {{table: serving.preds}}}}
  alerts: {alerts}
"""


@pytest.fixture
def receivers() -> Iterator[tuple[WebhookServer, WebhookServer]]:
    default, own = WebhookServer().start(), WebhookServer().start()
    try:
        yield default, own
    finally:
        default.stop()
        own.stop()


def test_model_webhook_and_severity_floor_through_the_real_definitions(
    tmp_path: Path, mlops_home: Path, monkeypatch: pytest.MonkeyPatch, receivers
):
    default, own = receivers
    models = tmp_path / "models"
    models.mkdir()
    (models / "credit.yaml").write_text(
        textwrap.dedent(
            MODEL_YAML.format(
                name="credit_default",
                alerts="{severity_floor: critical, webhook_env: CREDIT_WEBHOOK_URL}",
            )
        )
    )
    (models / "churn.yaml").write_text(
        textwrap.dedent(MODEL_YAML.format(name="churn", alerts="{}"))
    )
    monkeypatch.setenv("MLOPS_MODELS_PATH", str(models))
    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", default.url)
    monkeypatch.setenv("CREDIT_WEBHOOK_URL", own.url)
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    wh = WarehouseResource().get()
    quiet = open_test_alert(wh, model_name="credit_default", severity="warning")
    loud = open_test_alert(wh, model_name="credit_default", severity="critical", metric="f1")
    other = open_test_alert(wh, model_name="churn", severity="warning")

    from mlops_assets.definitions import defs as load_defs

    defs = load_defs()
    sensor = defs.resolve_sensor_def("alert_notification_sensor")
    with dg.build_sensor_context(
        resources=defs.resources, instance=dg.DagsterInstance.ephemeral()
    ) as context:
        sensor(context)

    assert len(own.accepted) == 1 and len(default.accepted) == 1
    assert "credit_default" in own.accepted[0]["text"] and "f1" in own.accepted[0]["text"]
    assert "churn" in default.accepted[0]["text"]
    by_alert = {e["alert_id"]: e for e in events(wh)}
    assert by_alert[quiet]["delivered_at"] is None
    assert by_alert[quiet]["failed_at"] is not None
    assert (
        "below the severity floor critical of model credit_default"
        in (by_alert[quiet]["last_error"])
    )
    assert by_alert[loud]["delivered_at"] is not None
    assert by_alert[other]["delivered_at"] is not None
