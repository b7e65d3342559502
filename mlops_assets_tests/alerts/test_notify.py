"""Alert delivery against a real HTTP server on loopback, on both warehouse engines."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlops_assets.lib.notify_format import AlertMessage
from mlops_assets.storage.alerts import add_event, open_alert
from mlops_assets.storage.notify import (
    CheckOutcome,
    DeliveryError,
    LogSender,
    WebhookSender,
    asset_key_from_message,
    deliver_pending,
    message_builder,
    message_from_row,
    record_asset_checks,
    safe_base_url,
)
from mlops_assets.storage.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse
from mlops_assets_tests.conftest import free_port

# Shaped like a Slack incoming-webhook path: the token parts are the secret.
SECRET_PATH = "/services/T0SECRET1/B0SECRET2/xoxTOKENsecret3"
SECRET_PARTS = ("T0SECRET1", "B0SECRET2", "xoxTOKENsecret3")


class WebhookServer:
    """A real HTTP server in a thread that records every JSON body it receives.

    `script` holds (status, headers) answers used first, one per request; afterwards every
    request gets `fail_with` when set, else 200. Error bodies echo the request path, as some
    servers do, so tests can check that errors redact it.
    """

    def __init__(self) -> None:
        self.received: list[tuple[int, dict[str, Any]]] = []  # (status answered, body)
        self.headers: list[dict[str, str]] = []  # request headers, same order as `received`
        self.script: list[tuple[int, dict[str, str]]] = []
        self.fail_with: int | None = None
        self.delay = 0.0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    if server.script:
                        status, headers = server.script.pop(0)
                    else:
                        status, headers = (server.fail_with or 200), {}
                    server.received.append((status, body))
                    server.headers.append(dict(self.headers.items()))
                    delay = server.delay
                if delay:
                    time.sleep(delay)
                text = b"ok" if status < 300 else f"error at {self.path}".encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{SECRET_PATH}"

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Bodies answered with 2xx, in arrival order."""
        with self._lock:
            return [body for status, body in self.received if status < 300]

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.received)

    def start(self) -> WebhookServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["embedded", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "embedded":
        wh: Warehouse = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    else:
        wh = PostgresWarehouse(request.getfixturevalue("pg_dsn"))
    wh.migrate()
    return wh


def open_test_alert(wh: Warehouse, **row: Any) -> int:
    values: dict[str, Any] = {
        "kind": "performance",
        "model_name": "match_outcome",
        "model_version": "3",
        "metric": "roc_auc",
        "severity": "warning",
        "first_seen": date(2024, 8, 17),
        "last_seen": date(2024, 8, 19),
        "observed": 0.612,
        "baseline": 0.668,
        "threshold": 0.05,
        "degradation": 0.056,
        "training_local_run_id": "local-0001",
        "mlflow_experiment_id": "7",
        "mlflow_run_id": "0a1b2c3d",
    }
    values.update(row)
    with wh.transaction() as tx:
        return open_alert(tx, **values)


def events(wh: Warehouse) -> list[dict[str, Any]]:
    return wh.query(
        "SELECT event_id, alert_id, event_type, delivered_at, failed_at, attempts, last_error "
        "FROM mlops.alert_events ORDER BY event_id"
    )


def recorder() -> tuple[list[float], Any]:
    sleeps: list[float] = []
    return sleeps, sleeps.append


def headline(body: dict[str, Any]) -> str:
    return body["blocks"][0]["text"]["text"]


def assert_no_secret(text: str | None, url: str) -> None:
    assert text is not None
    assert url not in text
    assert SECRET_PATH not in text
    for part in SECRET_PARTS:
        assert part not in text


BUILD = message_builder(mlflow_ui_url=None, dagster_ui_url="http://dagster.internal:3000")


# --------------------------------------------------------------------------- delivery


def test_each_event_is_delivered_once_oldest_first(warehouse: Warehouse, webhook: WebhookServer):
    perf = open_test_alert(warehouse)
    open_test_alert(warehouse, kind="drift", metric="dataset_drift", mlflow_run_id=None)
    open_test_alert(
        warehouse, kind="mlflow_service", model_name="mlflow", metric="availability",
        severity="critical", model_version=None, mlflow_run_id=None, training_local_run_id=None,
    )  # fmt: skip
    with warehouse.transaction() as tx:
        add_event(tx, perf, "escalated", "critical")
    ids = [e["event_id"] for e in events(warehouse)]
    sender = WebhookSender(webhook.url, timeout=5, max_attempts=3, sleep=recorder()[1])

    report = deliver_pending(warehouse, sender=sender, build_message=BUILD)

    assert report.delivered == tuple(ids)
    assert report.failed == () and report.remaining == 0
    assert report.last_delivered_event_id == ids[-1]
    heads = [headline(body) for body in webhook.accepted]
    assert len(heads) == 4
    assert "Model performance alert opened: roc_auc on match_outcome v3" in heads[0]
    assert "Data drift alert opened: dataset_drift on match_outcome v3" in heads[1]
    assert "[CRITICAL] MLflow service alert opened: availability" in heads[2]
    assert "Model performance alert escalated" in heads[3] and "[CRITICAL]" in heads[3]
    assert all(e["delivered_at"] is not None and e["attempts"] == 0 for e in events(warehouse))

    again = deliver_pending(warehouse, sender=sender, build_message=BUILD)
    assert again.nothing_to_do and again.remaining == 0
    assert webhook.requests == 4


def test_server_errors_are_retried_with_backoff(warehouse: Warehouse, webhook: WebhookServer):
    open_test_alert(warehouse)
    webhook.script = [(500, {}), (502, {})]
    sleeps, sleep = recorder()
    sender = WebhookSender(webhook.url, timeout=5, max_attempts=3, backoff_base=0.5, sleep=sleep)

    report = deliver_pending(warehouse, sender=sender, build_message=BUILD)

    assert len(report.delivered) == 1 and report.failed == ()
    assert [status for status, _ in webhook.received] == [500, 502, 200]
    assert webhook.received[0][1] == webhook.received[2][1]  # the same body each time
    assert sleeps == [0.5, 1.0]
    [event] = events(warehouse)
    assert event["delivered_at"] is not None and event["attempts"] == 0


def test_failed_delivery_stays_pending_until_the_server_recovers(
    warehouse: Warehouse, webhook: WebhookServer
):
    open_test_alert(warehouse, metric="roc_auc")
    open_test_alert(warehouse, metric="log_loss")
    first_event, second_event = (e["event_id"] for e in events(warehouse))
    webhook.fail_with = 500
    sleeps, sleep = recorder()
    sender = WebhookSender(webhook.url, timeout=5, max_attempts=2, sleep=sleep)

    report = deliver_pending(warehouse, sender=sender, build_message=BUILD)

    assert report.delivered == () and report.failed == (first_event,)
    assert report.remaining == 2
    # The batch stopped at the failure: the second event was never sent before the first.
    assert webhook.requests == 2
    assert {json.dumps(body) for _, body in webhook.received} == {
        json.dumps(webhook.received[0][1])
    }
    assert sleeps == [0.5]
    rows = {e["event_id"]: e for e in events(warehouse)}
    assert rows[first_event]["delivered_at"] is None
    assert rows[first_event]["attempts"] == 1
    assert "HTTP 500" in rows[first_event]["last_error"]
    assert "2 attempt(s)" in rows[first_event]["last_error"]
    assert_no_secret(rows[first_event]["last_error"], webhook.url)
    assert_no_secret(report.errors[0], webhook.url)
    assert rows[second_event]["attempts"] == 0 and rows[second_event]["last_error"] is None

    deliver_pending(warehouse, sender=sender, build_message=BUILD)
    assert events(warehouse)[0]["attempts"] == 2

    webhook.fail_with = None
    recovered = deliver_pending(warehouse, sender=sender, build_message=BUILD)
    assert recovered.delivered == (first_event, second_event)
    assert recovered.remaining == 0
    texts = [body["text"] for body in webhook.accepted]
    assert len(texts) == 2
    assert texts[0].endswith("opened: roc_auc on match_outcome v3")
    assert texts[1].endswith("opened: log_loss on match_outcome v3")
    assert deliver_pending(warehouse, sender=sender, build_message=BUILD).nothing_to_do
    assert len(webhook.accepted) == 2
    assert all(e["delivered_at"] is not None for e in events(warehouse))


def test_event_that_cannot_be_formatted_does_not_block_the_rest(
    warehouse: Warehouse, webhook: WebhookServer
):
    open_test_alert(warehouse, kind="not_a_kind")
    open_test_alert(warehouse, metric="f1")
    bad, good = (e["event_id"] for e in events(warehouse))
    sender = WebhookSender(webhook.url, sleep=recorder()[1])

    report = deliver_pending(warehouse, sender=sender, build_message=BUILD)

    assert report.failed == (bad,) and report.delivered == (good,)
    assert report.given_up == (bad,) and report.remaining == 0
    rows = {e["event_id"]: e for e in events(warehouse)}
    assert rows[bad]["delivered_at"] is None and rows[bad]["attempts"] == 1
    assert rows[bad]["failed_at"] is not None
    assert "cannot build the notification" in rows[bad]["last_error"]
    assert "not_a_kind" in rows[bad]["last_error"]
    assert len(webhook.accepted) == 1
    # Marked failed for good: the next call neither retries it nor reports it again.
    assert deliver_pending(warehouse, sender=sender, build_message=BUILD).nothing_to_do


def test_limit_and_deadline_bound_one_call(warehouse: Warehouse, webhook: WebhookServer):
    for metric in ("accuracy", "f1", "roc_auc"):
        open_test_alert(warehouse, metric=metric)
    sender = WebhookSender(webhook.url, sleep=recorder()[1])

    past = deliver_pending(
        warehouse, sender=sender, build_message=BUILD, deadline=time.monotonic() - 1
    )
    assert past.nothing_to_do and past.remaining == 3 and webhook.requests == 0

    first = deliver_pending(warehouse, sender=sender, build_message=BUILD, limit=2)
    assert len(first.delivered) == 2 and first.remaining == 1
    rest = deliver_pending(warehouse, sender=sender, build_message=BUILD, limit=2)
    assert len(rest.delivered) == 1 and rest.remaining == 0
    metrics = [body["text"].split("opened: ")[1].split(" on ")[0] for body in webhook.accepted]
    assert metrics == ["accuracy", "f1", "roc_auc"]
    with pytest.raises(ValueError, match="limit"):
        deliver_pending(warehouse, sender=sender, build_message=BUILD, limit=0)


def test_log_sender_delivers_to_the_log_when_no_webhook(
    warehouse: Warehouse, caplog: pytest.LogCaptureFixture
):
    open_test_alert(warehouse, severity="critical")
    logger = logging.getLogger("mlops_assets_tests.alerts")
    with caplog.at_level(logging.INFO, logger=logger.name):
        report = deliver_pending(warehouse, sender=LogSender(logger), build_message=BUILD)
    assert len(report.delivered) == 1
    [record] = [r for r in caplog.records if r.name == logger.name]
    assert record.levelno == logging.ERROR
    assert "[CRITICAL] Model performance alert opened: roc_auc on match_outcome v3" in (
        record.getMessage()
    )
    assert "Observed: 0.6120" in record.getMessage()
    assert events(warehouse)[0]["delivered_at"] is not None


# --------------------------------------------------------------------------- webhook sender


def test_unreachable_webhook_raises_without_the_url():
    url = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"
    sleeps, sleep = recorder()
    sender = WebhookSender(url, timeout=2, max_attempts=3, backoff_base=0.25, sleep=sleep)

    with pytest.raises(DeliveryError) as caught:
        sender.post({"text": "hello"})

    assert "could not connect" in str(caught.value) and "3 attempt(s)" in str(caught.value)
    assert_no_secret(str(caught.value), url)
    # No chained exception drags the URL into a traceback.
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert sleeps == [0.25, 0.5]
    assert_no_secret(repr(sender), url)


def test_client_errors_fail_at_once_and_redact_echoed_paths(webhook: WebhookServer):
    webhook.script = [(404, {})]
    sleeps, sleep = recorder()
    with pytest.raises(DeliveryError) as caught:
        WebhookSender(webhook.url, max_attempts=3, sleep=sleep).post({"text": "hello"})
    assert webhook.requests == 1 and sleeps == []
    assert "HTTP 404" in str(caught.value) and "<redacted>" in str(caught.value)
    assert_no_secret(str(caught.value), webhook.url)


def test_rate_limit_honours_retry_after(webhook: WebhookServer):
    webhook.script = [(429, {"Retry-After": "3"}), (429, {"Retry-After": "3600"})]
    sleeps, sleep = recorder()
    WebhookSender(webhook.url, max_attempts=3, backoff_base=0.5, sleep=sleep).post({"text": "x"})
    # The server's wait when longer than ours, capped so one tick cannot stall for an hour.
    assert sleeps == [3.0, 30.0]
    assert len(webhook.accepted) == 1


def test_slow_webhook_times_out(webhook: WebhookServer):
    webhook.delay = 1.0
    sleeps, sleep = recorder()
    with pytest.raises(DeliveryError, match=r"no answer within 0.2 s") as caught:
        WebhookSender(webhook.url, timeout=0.2, max_attempts=2, sleep=sleep).post({"text": "x"})
    # The receiver may have it: no second copy within the call, but a later call may retry.
    assert sleeps == [] and webhook.requests == 1
    assert caught.value.retryable
    assert_no_secret(str(caught.value), webhook.url)


@pytest.mark.parametrize(
    "url", ["", "ftp://hooks.example/services/xoxTOKENsecret3", "xoxTOKENsecret3"]
)
def test_invalid_webhook_urls_are_refused_without_echo(url: str):
    with pytest.raises(ValueError) as caught:
        WebhookSender(url)
    assert "xoxTOKENsecret3" not in str(caught.value)


def test_sender_argument_checks():
    with pytest.raises(ValueError, match="max_attempts"):
        WebhookSender("http://127.0.0.1:9/x", max_attempts=0)
    with pytest.raises(ValueError, match="timeout"):
        WebhookSender("http://127.0.0.1:9/x", timeout=0)


# --------------------------------------------------------------------------- messages


def _rows(wh: Warehouse) -> list[dict[str, Any]]:
    from mlops_assets.storage.warehouse import sql_file

    return wh.query(sql_file("queries/select_undelivered_alert_events"), {"limit": 100})


def test_messages_carry_links_and_pending_runs(warehouse: Warehouse):
    open_test_alert(warehouse)  # linked run
    open_test_alert(warehouse, metric="f1", mlflow_run_id=None, mlflow_experiment_id=None)
    open_test_alert(warehouse, kind="drift", metric="dataset_drift", baseline=None)
    open_test_alert(
        warehouse, kind="mlflow_service", model_name="mlflow", metric="availability",
        model_version=None, mlflow_run_id=None, training_local_run_id=None,
    )  # fmt: skip
    build = message_builder(
        mlflow_ui_url="http://mlflow.internal:5000/", dagster_ui_url="http://dagster.internal:3000"
    )
    linked, pending, drift, service = (build(r) for r in _rows(warehouse))

    assert isinstance(linked, AlertMessage)
    assert (linked.run_id, linked.run_pending, linked.experiment_id) == ("0a1b2c3d", False, "7")
    assert linked.asset_key == ("production_metrics",)
    assert linked.degradation_rel == pytest.approx(0.056 / 0.668)
    assert linked.first_seen == date(2024, 8, 17) and linked.last_seen == date(2024, 8, 19)
    assert linked.mlflow_ui_url == "http://mlflow.internal:5000"
    assert (pending.run_id, pending.run_pending) == ("local-0001", True)
    assert drift.asset_key == ("feature_drift_report",) and drift.degradation_rel is None
    assert service.asset_key is None and service.model_name is None
    assert service.run_id is None and not service.run_pending


def test_unusable_link_bases_are_dropped_not_fatal(warehouse: Warehouse):
    open_test_alert(warehouse)
    build = message_builder(
        mlflow_ui_url="http://user:pw@mlflow.internal:5000", dagster_ui_url="not a url"
    )
    [row] = _rows(warehouse)
    message = build(row)
    assert message.mlflow_ui_url is None and message.dagster_ui_url is None
    assert safe_base_url("https://mlflow.internal/?token=1") is None
    assert safe_base_url("https://mlflow.internal/") == "https://mlflow.internal"
    assert message_from_row(row).run_id == "0a1b2c3d"


# --------------------------------------------------------------------------- asset checks


def _outcome(**fields: Any) -> CheckOutcome:
    values: dict[str, Any] = {
        "asset_key": ("monitoring", "scored"),
        "check_name": "row_count",
        "passed": False,
        "severity": "warning",
        "at": dt.datetime(2024, 8, 19, 6, 0),
    }
    values.update(fields)
    return CheckOutcome(**values)


def _alerts(wh: Warehouse) -> list[dict[str, Any]]:
    return wh.query(
        "SELECT alert_id, kind, model_name, metric, severity, status, breach_days, first_seen, "
        "last_seen, message, observed FROM mlops.ml_performance_alerts ORDER BY alert_id"
    )


def test_asset_check_failures_open_dedupe_escalate_and_resolve(warehouse: Warehouse):
    first = record_asset_checks(warehouse, [_outcome(observed=3.0, model_name="match_outcome")])
    [alert] = _alerts(warehouse)
    assert first.opened == [alert["alert_id"]]
    assert (alert["kind"], alert["model_name"], alert["metric"]) == (
        "asset_check",
        "match_outcome",
        "row_count",
    )
    assert alert["severity"] == "warning" and alert["observed"] == 3.0
    assert asset_key_from_message(alert["message"]) == ("monitoring", "scored")

    later = dt.datetime(2024, 8, 21, 6, 0)
    again = record_asset_checks(
        warehouse,
        [_outcome(model_name="match_outcome", at=later)],
    )
    assert again.opened == [] and again.updated == [alert["alert_id"]] and again.escalated == []
    [alert] = _alerts(warehouse)
    assert alert["last_seen"] == later.date() and alert["breach_days"] == 2

    worse = record_asset_checks(
        warehouse, [_outcome(model_name="match_outcome", severity="critical", at=later)]
    )
    assert worse.escalated == [alert["alert_id"]]
    assert _alerts(warehouse)[0]["severity"] == "critical"

    # Same check name and model on another asset is a separate alert.
    other = record_asset_checks(
        warehouse, [_outcome(model_name="match_outcome", asset_key=("other",))]
    )
    assert len(other.opened) == 1

    passed = record_asset_checks(
        warehouse, [_outcome(model_name="match_outcome", passed=True, at=later)]
    )
    assert passed.resolved == [alert["alert_id"]]
    statuses = {a["alert_id"]: a["status"] for a in _alerts(warehouse)}
    assert statuses == {alert["alert_id"]: "resolved", other.opened[0]: "open"}
    kinds = [e["event_type"] for e in events(warehouse)]
    assert kinds == ["opened", "escalated", "opened", "resolved"]

    # A pass with no open alert changes nothing; a new failure after resolution reopens.
    assert record_asset_checks(warehouse, [_outcome(passed=True)]).changed == 0
    assert len(record_asset_checks(warehouse, [_outcome(model_name="match_outcome")]).opened) == 1


def test_asset_check_outcome_validation():
    with pytest.raises(ValueError, match="severity"):
        _outcome(severity="ERROR")
    with pytest.raises(ValueError, match="asset_key"):
        _outcome(asset_key=())
    assert asset_key_from_message("something else") is None
    assert asset_key_from_message(None) is None
