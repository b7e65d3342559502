from __future__ import annotations

import dataclasses
import json
from datetime import date
from typing import Any

import pytest

from mlops_assets.lib.notify_format import (
    AlertMessage,
    dagster_asset_url,
    mlflow_run_url,
    plain_text,
    slack_payload,
)

MLFLOW = "http://mlflow.internal:5000"
DAGSTER = "http://dagster.internal:3000"
RUN_URL = f"{MLFLOW}/#/experiments/7/runs/0a1b2c3d"
ASSET_URL = f"{DAGSTER}/assets/monitoring/model_performance"


def _message(**overrides: Any) -> AlertMessage:
    fields: dict[str, Any] = {
        "alert_id": "alert-42",
        "kind": "performance",
        "event": "opened",
        "severity": "warning",
        "metric": "roc_auc",
        "first_seen": date(2024, 8, 17),
        "last_seen": date(2024, 8, 19),
        "model_name": "match_outcome",
        "model_version": "3",
        "observed": 0.612,
        "baseline": 0.668,
        "threshold": 0.05,
        "degradation": 0.056,
        "degradation_rel": 0.056 / 0.668,
        "mlflow_ui_url": MLFLOW,
        "experiment_id": "7",
        "run_id": "0a1b2c3d",
        "dagster_ui_url": DAGSTER,
        "asset_key": ("monitoring", "model_performance"),
    }
    fields.update(overrides)
    return AlertMessage(**fields)


def _all_text(payload: dict[str, Any]) -> str:
    return json.dumps(payload)


def _fields(payload: dict[str, Any]) -> dict[str, str]:
    section = next(b for b in payload["blocks"] if b["type"] == "section" and "fields" in b)
    out = {}
    for item in section["fields"]:
        label, _, value = item["text"].partition("\n")
        out[label.strip("*")] = value
    return out


def test_payload_contents() -> None:
    payload = slack_payload(_message())
    assert set(payload) == {"text", "blocks"}
    assert payload["text"].startswith(":warning: [WARNING] Model performance alert opened")
    assert "roc_auc on match_outcome v3" in payload["text"]
    assert payload["blocks"][0]["type"] == "header"
    assert payload["blocks"][0]["text"]["text"] == payload["text"]

    assert _fields(payload) == {
        "Alert": "alert-42",
        "Metric": "roc_auc",
        "Model": "match_outcome v3",
        "Observed": "0.6120",
        "Baseline": "0.6680",
        "Threshold": "0.0500",
        # 0.056 / 0.668 = 8.38%
        "Degradation": "0.0560 (8.4% worse than baseline)",
        "First seen": "2024-08-17",
        "Last seen": "2024-08-19",
    }

    context = next(b for b in payload["blocks"] if b["type"] == "context")
    links = [e["text"] for e in context["elements"]]
    assert links == [
        f"MLflow run: <{RUN_URL}|0a1b2c3d>",
        f"Dagster asset: <{ASSET_URL}|monitoring/model_performance>",
    ]
    # the webhook body must be serializable as-is
    assert json.loads(json.dumps(payload)) == payload


def test_plain_text_uses_bare_urls() -> None:
    text = plain_text(_message())
    lines = text.splitlines()
    assert (
        lines[0]
        == ":warning: [WARNING] Model performance alert opened: roc_auc on match_outcome v3"
    )
    assert "Observed: 0.6120" in lines
    assert "Baseline: 0.6680" in lines
    assert "First seen: 2024-08-17" in lines
    assert f"MLflow run: {RUN_URL}" in lines
    assert f"Dagster asset: {ASSET_URL}" in lines
    assert "<" not in text


@pytest.mark.parametrize(
    ("severity", "event", "emoji"),
    [
        ("info", "opened", ":information_source:"),
        ("warning", "updated", ":warning:"),
        ("critical", "escalated", ":rotating_light:"),
        # a resolution is good news whatever the severity was
        ("critical", "resolved", ":white_check_mark:"),
    ],
)
def test_emoji_per_level(severity: str, event: str, emoji: str) -> None:
    msg = _message(severity=severity, event=event)
    assert slack_payload(msg)["text"].startswith(f"{emoji} [{severity.upper()}]")
    assert f"alert {event}:" in plain_text(msg)


def test_pending_run_is_not_linked() -> None:
    msg = _message(run_id="local-20240819-0001", run_pending=True, experiment_id=None)
    payload_text = _all_text(slack_payload(msg))
    assert "local-20240819-0001 (pending replay to MLflow)" in payload_text
    assert "#/experiments" not in payload_text
    assert "MLflow run: local-20240819-0001 (pending replay to MLflow)" in plain_text(msg)


def test_run_without_ui_url_is_shown_unlinked() -> None:
    msg = _message(mlflow_ui_url=None)
    assert "MLflow run: 0a1b2c3d" in plain_text(msg).splitlines()
    assert "#/experiments" not in _all_text(slack_payload(msg))


def test_service_alert_without_model_or_links() -> None:
    msg = _message(
        kind="mlflow_service",
        severity="info",
        metric="circuit_breaker",
        model_name=None,
        model_version=None,
        observed=None,
        baseline=None,
        threshold=None,
        degradation=None,
        degradation_rel=None,
        run_id=None,
        asset_key=None,
        detail="Circuit breaker half-open; probing the tracking server.",
    )
    payload = slack_payload(msg)
    assert (
        payload["text"]
        == ":information_source: [INFO] MLflow service alert opened: circuit_breaker"
    )
    fields = _fields(payload)
    assert "Model" not in fields
    assert fields["Observed"] == "n/a"
    assert fields["Degradation"] == "n/a"
    assert not any(b["type"] == "context" for b in payload["blocks"])
    assert payload["blocks"][-1]["text"]["text"].startswith("Circuit breaker half-open")
    assert plain_text(msg).endswith("probing the tracking server.")


def test_improvement_is_spelled_out() -> None:
    msg = _message(degradation=-0.02, degradation_rel=-0.03)
    assert "Degradation: -0.0200 (3.0% better than baseline)" in plain_text(msg).splitlines()


def test_model_without_version() -> None:
    msg = _message(kind="drift", metric="psi_max", model_version=None)
    assert "Data drift alert opened: psi_max on match_outcome" in plain_text(msg)


def test_slack_markup_in_names_is_escaped() -> None:
    msg = _message(model_name="<!channel> & co", detail="see <http://evil|here>")
    payload = slack_payload(msg)
    mrkdwn = _all_text({"text": payload["text"], "blocks": payload["blocks"][1:]})
    assert "<!channel>" not in mrkdwn
    assert "&lt;!channel&gt; &amp; co" in payload["text"]
    assert _fields(payload)["Model"] == "&lt;!channel&gt; &amp; co v3"
    assert "<http://evil" not in mrkdwn
    # the header is plain_text: Slack shows it literally, so it keeps the raw name
    assert "<!channel> & co" in payload["blocks"][0]["text"]["text"]


def test_trailing_slashes_and_key_quoting() -> None:
    assert mlflow_run_url(MLFLOW + "/", "7", "abc") == f"{MLFLOW}/#/experiments/7/runs/abc"
    assert dagster_asset_url(DAGSTER + "/", ("a", "b c")) == f"{DAGSTER}/assets/a/b%20c"
    msg = _message(mlflow_ui_url=MLFLOW + "/", dagster_ui_url=DAGSTER + "/")
    assert RUN_URL in plain_text(msg)
    assert ASSET_URL in plain_text(msg)


def test_ui_path_prefix_is_kept() -> None:
    msg = _message(dagster_ui_url="https://ops.example.com/dagster")
    assert "https://ops.example.com/dagster/assets/monitoring/model_performance" in plain_text(msg)


@pytest.mark.parametrize(
    ("field", "url", "fragment"),
    [
        ("mlflow_ui_url", "http://user:s3cr3t@mlflow:5000", "credentials"),
        ("dagster_ui_url", "https://dagster.example.com/?token=s3cr3t", "query string"),
        ("mlflow_ui_url", "https://mlflow.example.com/#s3cr3t", "fragment"),
        ("mlflow_ui_url", "mlflow.example.com", "http"),
        ("dagster_ui_url", "file:///etc/passwd", "http"),
        ("dagster_ui_url", "ftp://user:s3cr3t@dagster", "http"),
    ],
)
def test_urls_that_could_carry_secrets_are_refused(field: str, url: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        _message(**{field: url})
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "latency"),
        ("event", "closed"),
        ("severity", "ok"),
        ("asset_key", ()),
        ("asset_key", ("monitoring", "")),
    ],
)
def test_invalid_messages_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        _message(**{field: value})


def test_message_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _message().severity = "critical"  # type: ignore[misc]
