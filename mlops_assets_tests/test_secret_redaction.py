"""Issue 11 finding 5: a password planted in the MLflow tracking URI (unreachable) and in a
malformed warehouse DSN shows up in no table, CLI output, webhook body, log line or error."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_assets.cli import main
from mlops_assets.runtime import build_runtime
from mlops_assets.settings import SettingsError, load_settings
from mlops_assets.storage.notify import LogSender, WebhookSender, deliver_pending, message_builder
from mlops_assets.storage.warehouse import Warehouse
from mlops_assets_tests.alerts.test_notify import WebhookServer, recorder

SECRET = "S3CRETpw"
TRACKING_URI = f"http://user:{SECRET}@127.0.0.1:9/"


@pytest.fixture(autouse=True)
def _restore_mlflow_http_env() -> Iterator[None]:
    """`MlflowTracker` sets MLFLOW_HTTP_REQUEST_* in os.environ; keep that inside the test."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_HTTP_REQUEST_")}
    yield
    for key in [k for k in os.environ if k.startswith("MLFLOW_HTTP_REQUEST_")]:
        del os.environ[key]
    os.environ.update(saved)


def every_text_in_the_warehouse(warehouse: Warehouse) -> str:
    tables = warehouse.query(
        "SELECT table_schema AS s, table_name AS t FROM information_schema.tables "
        "WHERE table_schema IN ('mlops', 'curated')"
    )
    dump = []
    for row in tables:
        # Names come from the catalog, not from input.
        rows = warehouse.query(f'SELECT * FROM {row["s"]}."{row["t"]}"')  # noqa: S608
        dump += [str(value) for r in rows for value in r.values()]
    return "\n".join(dump)


def test_a_planted_tracking_password_reaches_no_channel(
    mlops_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
):
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", TRACKING_URI)
    monkeypatch.setenv("MLOPS_MLFLOW_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "1")
    monkeypatch.setenv("MLOPS_MLFLOW_CONNECTION_TIMEOUT", "2")
    runtime = build_runtime()
    tracker = runtime.tracker
    with tracker.start_run(run_name="secret-probe") as run:
        run.log_params({"a": 1})
    parked_id = None
    with tracker.start_run(run_name="refused") as run:
        parked_id = run.local_run_id

    report = tracker.flush()  # MLflow unreachable: the run stays pending, the breaker opens
    assert report.failed and runtime.breaker.current_state().state == "open"
    assert "127.0.0.1:9" in (report.failed[0].error or "")  # the error is there, masked
    # What MLflow's 4xx path stores: an error text quoting the URI, and an mlflow_replay alert.
    tracker.buffer.park(parked_id, f"RestException: 400 from {TRACKING_URI}api/2.0/runs")

    tables = every_text_in_the_warehouse(runtime.warehouse)
    assert "user:***@127.0.0.1:9" in tables
    assert SECRET not in tables

    # The CLI: buffer and flush lines.
    assert main(["buffer"]) == 0
    assert main(["flush"]) in (0, 1)
    out, err = capsys.readouterr()
    assert "circuit breaker: open" in out
    assert SECRET not in out + err

    # The notifications: webhook bodies and log lines of every event (service + replay).
    server = WebhookServer().start()
    try:
        sender = WebhookSender(server.url, sleep=recorder()[1])
        build = message_builder(
            mlflow_ui_url=runtime.mlflow_config.link_base, dagster_ui_url="http://127.0.0.1:3000"
        )
        delivered = deliver_pending(runtime.warehouse, sender=sender, build_message=build)
        bodies = [str(body) for _, body in server.received]
    finally:
        server.stop()
    assert len(delivered.delivered) >= 2 and delivered.failed == ()
    assert any("MLflow service" in b for b in bodies) and any("MLflow replay" in b for b in bodies)
    assert SECRET not in "\n".join(bodies)
    runtime.warehouse.execute("UPDATE mlops.alert_events SET delivered_at = NULL")
    logger = logging.getLogger("mlops_assets_tests.secrets")
    with caplog.at_level(logging.INFO, logger=logger.name):
        deliver_pending(runtime.warehouse, sender=LogSender(logger), build_message=build)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "MLflow circuit breaker opened" in logged and SECRET not in logged


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://mlops:{SECRET}@/mlops",  # no host
        f"mysql://mlops:{SECRET}@db:5432/mlops",  # wrong scheme
        f"host=db user=mlops password={SECRET}",  # keyword form is not accepted
    ],
)
def test_a_malformed_dsn_with_a_password_is_not_echoed(
    mlops_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dsn: str
):
    monkeypatch.setenv("MLOPS_WAREHOUSE_DSN", dsn)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "MLOPS_WAREHOUSE_DSN" in str(caught.value) and SECRET not in str(caught.value)
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "MLOPS_WAREHOUSE_DSN" in err and SECRET not in err


def test_ui_links_drop_credentials(mlops_home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", TRACKING_URI)
    config: Any = build_runtime().mlflow_config
    assert config.run_link("1", "abc") == "http://127.0.0.1:9/#/experiments/1/runs/abc"
