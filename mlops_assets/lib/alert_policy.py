"""Alert state machine for one (model, metric) pair, stepped once per evaluated day in date order.

The caller owns storage: it loads the latest alert row, calls ``step`` with the day's
evaluation, writes back ``Transition.state`` and sends a notification when ``Transition.event``
is not None. An ``"opened"`` event always means a new alert row; every other event updates the
row it was given.

Streaks count evaluated days, not calendar days: football has days without matches, and a day
with nothing to evaluate should neither extend nor break a breach or recovery streak.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Literal, get_args

Status = Literal["open", "acknowledged", "resolved"]
Severity = Literal["info", "warning", "critical"]
Level = Literal["ok", "info", "warning", "critical"]
Event = Literal["opened", "escalated", "updated", "resolved"]

_SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


def max_severity(*severities: Severity) -> Severity:
    """The most severe of the given severities (info < warning < critical)."""
    if not severities:
        raise ValueError("max_severity needs at least one severity")
    for severity in severities:
        if severity not in _SEVERITY_RANK:
            raise ValueError(f"unknown severity {severity!r}; expected one of {get_args(Severity)}")
    return max(severities, key=_SEVERITY_RANK.__getitem__)


@dataclass(frozen=True)
class AlertPolicy:
    """escalate_after_days: consecutive breach days after which a warning becomes critical.
    resolve_after_days: consecutive in-bounds days after which an alert resolves."""

    escalate_after_days: int = 3
    resolve_after_days: int = 2

    def __post_init__(self) -> None:
        for name in ("escalate_after_days", "resolve_after_days"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"AlertPolicy.{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class AlertState:
    """One alert's row. ``last_seen`` is the last breach day; ``last_evaluated`` the last day
    stepped (in-bounds days included), which is what makes re-running a day a no-op.
    ``notified_severity`` is the highest severity a notification has been sent for."""

    status: Status
    severity: Severity
    first_seen: date
    last_seen: date
    breach_days: int
    ok_days: int
    observed: float
    threshold: float
    acknowledged: bool
    notified_severity: Severity | None
    # Optional so rows stored before the field existed still load; None means last_seen.
    last_evaluated: date | None = None

    @property
    def evaluated_through(self) -> date:
        return self.last_evaluated if self.last_evaluated is not None else self.last_seen

    @property
    def is_active(self) -> bool:
        return self.status != "resolved"


@dataclass(frozen=True)
class DayEvaluation:
    """The day's verdict for one (model, metric): level ``ok`` means within thresholds."""

    day: date
    level: Level
    observed: float
    baseline: float | None
    threshold: float
    degradation: float | None

    def __post_init__(self) -> None:
        if self.level not in get_args(Level):
            raise ValueError(f"unknown level {self.level!r}; expected one of {get_args(Level)}")


@dataclass(frozen=True)
class Transition:
    """The alert after the day (None when there is none) and what to notify (None: nothing)."""

    state: AlertState | None
    event: Event | None


def _escalated_by_persistence(
    severity: Severity, breach_days: int, policy: AlertPolicy
) -> Severity:
    # Only a warning escalates with time: an info alert (e.g. a half-open MLflow breaker) is
    # not worth paging anyone for however long it lasts, and critical is already the top.
    if severity == "warning" and breach_days >= policy.escalate_after_days:
        return "critical"
    return severity


def _open(today: DayEvaluation, policy: AlertPolicy) -> Transition:
    assert today.level != "ok"
    severity = _escalated_by_persistence(today.level, 1, policy)
    state = AlertState(
        status="open",
        severity=severity,
        first_seen=today.day,
        last_seen=today.day,
        breach_days=1,
        ok_days=0,
        observed=today.observed,
        threshold=today.threshold,
        acknowledged=False,
        notified_severity=severity,
        last_evaluated=today.day,
    )
    return Transition(state=state, event="opened")


def step(previous: AlertState | None, today: DayEvaluation, policy: AlertPolicy) -> Transition:
    """Advance the alert by one evaluated day; see the module docstring for the contract."""
    if previous is not None and today.day <= previous.evaluated_through:
        # A rerun or backfill of a day already folded in: counting it again would double the
        # streaks and re-send notifications. One exception: the last evaluated day judged
        # worse than before (its labels arrived and the realised verdict replaced a capped
        # estimate) raises the severity, without touching the streaks.
        if (
            previous.is_active
            and today.day == previous.evaluated_through
            and today.level in _SEVERITY_RANK
            and _SEVERITY_RANK[today.level] > _SEVERITY_RANK[previous.severity]
        ):
            raised = replace(
                previous,
                severity=today.level,  # type: ignore[arg-type]
                observed=today.observed,
                threshold=today.threshold,
                notified_severity=today.level,  # type: ignore[arg-type]
            )
            return Transition(state=raised, event="escalated")
        return Transition(state=previous, event=None)

    if previous is None or not previous.is_active:
        if today.level == "ok":
            return Transition(state=previous, event=None)
        return _open(today, policy)

    if today.level == "ok":
        ok_days = previous.ok_days + 1
        recovered = ok_days >= policy.resolve_after_days
        state = replace(
            previous,
            status="resolved" if recovered else previous.status,
            ok_days=ok_days,
            breach_days=0,
            observed=today.observed,
            threshold=today.threshold,
            last_evaluated=today.day,
        )
        return Transition(state=state, event="resolved" if recovered else None)

    breach_days = previous.breach_days + 1
    severity = _escalated_by_persistence(
        max_severity(previous.severity, today.level), breach_days, policy
    )
    escalated = _SEVERITY_RANK[severity] > _SEVERITY_RANK[previous.severity]
    if escalated:
        # Acknowledging a warning is not acknowledging a critical: always notify, but keep the
        # acknowledged flag so the history shows someone was already on it.
        event: Event | None = "escalated"
    elif previous.acknowledged:
        event = None
    else:
        event = "updated"
    notified = previous.notified_severity
    if event is not None:
        notified = max_severity(severity, *([notified] if notified else []))
    state = replace(
        previous,
        severity=severity,
        last_seen=today.day,
        breach_days=breach_days,
        ok_days=0,
        observed=today.observed,
        threshold=today.threshold,
        notified_severity=notified,
        last_evaluated=today.day,
    )
    return Transition(state=state, event=event)


def acknowledge(state: AlertState) -> AlertState:
    """Mark an active alert acknowledged: later same-severity updates are not re-notified."""
    if not state.is_active:
        raise ValueError("cannot acknowledge a resolved alert")
    return replace(state, status="acknowledged", acknowledged=True)
