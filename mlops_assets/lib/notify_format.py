"""Alert notifications as Slack-compatible webhook payloads, plus a plain-text form for logs.

Only UI base URLs come in, and they are refused if they carry credentials, a query string or
a fragment: whatever is formatted here ends up in a chat channel and in logs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, get_args
from urllib.parse import quote, urlsplit

# Every kind any code path writes to `mlops.ml_performance_alerts` (a test scans the code).
Kind = Literal["performance", "drift", "mlflow_service", "mlflow_replay", "asset_check"]
ALERT_KINDS: tuple[str, ...] = get_args(Kind)
Event = Literal["opened", "escalated", "updated", "resolved"]
Severity = Literal["info", "warning", "critical"]

SEVERITY_EMOJI: dict[str, str] = {
    "info": ":information_source:",
    "warning": ":warning:",
    "critical": ":rotating_light:",
}
RESOLVED_EMOJI = ":white_check_mark:"

_KIND_TITLE: dict[str, str] = {
    "performance": "Model performance",
    "drift": "Data drift",
    "mlflow_service": "MLflow service",
    "mlflow_replay": "MLflow replay",
    "asset_check": "Asset check",
}


def _check_base_url(name: str, url: str | None) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    # Errors never echo the URL: it may hold the very secret being refused.
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{name} must be an http(s) URL with a host (scheme {parts.scheme or 'missing'!r})"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{name} must not contain credentials (user:password@)")
    if parts.query or parts.fragment:
        raise ValueError(f"{name} must be a plain base URL without query string or fragment")


@dataclass(frozen=True)
class AlertMessage:
    """Everything a notification shows. ``run_pending`` marks a run id that exists only in the
    local outage buffer and has not been replayed to MLflow yet, so it cannot be linked."""

    alert_id: str
    kind: Kind
    event: Event
    severity: Severity
    metric: str
    first_seen: date
    last_seen: date
    model_name: str | None = None
    model_version: str | None = None
    observed: float | None = None
    baseline: float | None = None
    threshold: float | None = None
    degradation: float | None = None
    degradation_rel: float | None = None
    mlflow_ui_url: str | None = None
    experiment_id: str | None = None
    run_id: str | None = None
    run_pending: bool = False
    dagster_ui_url: str | None = None
    asset_key: tuple[str, ...] | None = None
    detail: str | None = None
    # The warehouse event id: the same on every re-delivery, so receivers can drop duplicates.
    event_id: int | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("kind", Kind), ("event", Event), ("severity", Severity)):
            if getattr(self, name) not in get_args(allowed):
                raise ValueError(
                    f"AlertMessage.{name} must be one of {get_args(allowed)}, "
                    f"got {getattr(self, name)!r}"
                )
        _check_base_url("mlflow_ui_url", self.mlflow_ui_url)
        _check_base_url("dagster_ui_url", self.dagster_ui_url)
        if self.asset_key is not None and (
            not self.asset_key or not all(isinstance(p, str) and p for p in self.asset_key)
        ):
            raise ValueError(f"asset_key must be non-empty strings, got {self.asset_key!r}")


def mlflow_run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/#/experiments/{quote(experiment_id, safe='')}/runs/" + quote(
        run_id, safe=""
    )


def dagster_asset_url(base: str, asset_key: tuple[str, ...]) -> str:
    return f"{base.rstrip('/')}/assets/" + "/".join(quote(part, safe="") for part in asset_key)


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}"


def _model_label(msg: AlertMessage) -> str | None:
    if msg.model_name is None:
        return None
    return msg.model_name if msg.model_version is None else f"{msg.model_name} v{msg.model_version}"


def _headline(msg: AlertMessage) -> str:
    emoji = RESOLVED_EMOJI if msg.event == "resolved" else SEVERITY_EMOJI[msg.severity]
    subject = _KIND_TITLE[msg.kind]
    model = _model_label(msg)
    target = f"{msg.metric} on {model}" if model else msg.metric
    return f"{emoji} [{msg.severity.upper()}] {subject} alert {msg.event}: {target}"


def _degradation_text(msg: AlertMessage) -> str:
    text = _fmt(msg.degradation)
    if msg.degradation is not None and msg.degradation_rel is not None:
        # Spelled out because a bare "+9%" reads as "the metric went up", which for
        # higher-is-better metrics is the opposite of a degradation.
        rel = msg.degradation_rel
        text += f" ({abs(rel):.1%} {'worse' if rel >= 0 else 'better'} than baseline)"
    return text


def _run_link(msg: AlertMessage, *, slack: bool) -> str | None:
    if msg.run_id is None:
        return None
    label = _slack_escape(msg.run_id) if slack else msg.run_id
    if msg.run_pending:
        return f"{label} (pending replay to MLflow)"
    if msg.mlflow_ui_url is None or msg.experiment_id is None:
        return label
    url = mlflow_run_url(msg.mlflow_ui_url, msg.experiment_id, msg.run_id)
    return f"<{url}|{label}>" if slack else url


def _asset_link(msg: AlertMessage, *, slack: bool) -> str | None:
    if msg.asset_key is None:
        return None
    label = "/".join(msg.asset_key)
    if slack:
        label = _slack_escape(label)
    if msg.dagster_ui_url is None:
        return label
    url = dagster_asset_url(msg.dagster_ui_url, msg.asset_key)
    return f"<{url}|{label}>" if slack else url


def _slack_escape(text: str) -> str:
    # Slack treats these three as markup (links, mentions) inside mrkdwn text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _facts(msg: AlertMessage) -> list[tuple[str, str]]:
    facts = [("Alert", msg.alert_id), ("Metric", msg.metric)]
    model = _model_label(msg)
    if model:
        facts.append(("Model", model))
    facts += [
        ("Observed", _fmt(msg.observed)),
        ("Baseline", _fmt(msg.baseline)),
        ("Threshold", _fmt(msg.threshold)),
        ("Degradation", _degradation_text(msg)),
        ("First seen", msg.first_seen.isoformat()),
        ("Last seen", msg.last_seen.isoformat()),
    ]
    return facts


def plain_text(msg: AlertMessage) -> str:
    """One line per fact, links as bare URLs; meant for logs and as the Slack fallback text."""
    lines = [_headline(msg)]
    lines += [f"{label}: {value}" for label, value in _facts(msg)]
    run = _run_link(msg, slack=False)
    if run:
        lines.append(f"MLflow run: {run}")
    asset = _asset_link(msg, slack=False)
    if asset:
        lines.append(f"Dagster asset: {asset}")
    if msg.detail:
        lines.append(msg.detail)
    return "\n".join(lines)


def slack_payload(msg: AlertMessage) -> dict[str, Any]:
    """Incoming-webhook body: ``text`` is the notification fallback, ``blocks`` the layout."""
    fields = [
        {"type": "mrkdwn", "text": f"*{label}*\n{_slack_escape(value)}"}
        for label, value in _facts(msg)
    ]
    blocks: list[dict[str, Any]] = [
        # Header text is plain_text and capped at 150 characters by Slack.
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _headline(msg)[:150], "emoji": True},
        },
        # Slack rejects a section with more than 10 fields.
        {"type": "section", "fields": fields[:10]},
    ]
    links = []
    run = _run_link(msg, slack=True)
    if run:
        links.append(f"MLflow run: {run}")
    asset = _asset_link(msg, slack=True)
    if asset:
        links.append(f"Dagster asset: {asset}")
    if links:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in links]}
        )
    if msg.detail:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(msg.detail)}}
        )
    payload: dict[str, Any] = {"text": _slack_escape(_headline(msg)), "blocks": blocks}
    key = idempotency_key(msg)
    if key is not None:
        # Slack ignores unknown top-level fields; other receivers dedupe on it.
        payload["idempotency_key"] = key
        payload["event_id"] = msg.event_id
    return payload


def idempotency_key(msg: AlertMessage) -> str | None:
    """Stable per alert event: every re-delivery of the same event carries the same key."""
    return None if msg.event_id is None else f"mlops-alert-event-{msg.event_id}"
