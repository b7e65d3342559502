from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from mlops_assets.lib.alert_policy import (
    AlertPolicy,
    AlertState,
    DayEvaluation,
    Transition,
    acknowledge,
    max_severity,
    step,
)

START = date(2024, 8, 17)
DEFAULT = AlertPolicy()


def _day(offset: int, level: str, observed: float | None = None) -> DayEvaluation:
    if observed is None:
        observed = 0.50 if level != "ok" else 0.60
    return DayEvaluation(
        day=START + timedelta(days=offset),
        level=level,  # type: ignore[arg-type]
        observed=observed,
        baseline=0.60,
        threshold=0.05,
        degradation=0.60 - observed,
    )


def _run(
    levels: list[str], policy: AlertPolicy = DEFAULT, state: AlertState | None = None
) -> tuple[list[str | None], AlertState | None]:
    events: list[str | None] = []
    for offset, level in enumerate(levels):
        transition = step(state, _day(offset, level), policy)
        events.append(transition.event)
        state = transition.state
    return events, state


# Each row: levels day by day -> events day by day, final (status, severity) or None for no alert.
TABLE = [
    pytest.param(["ok", "ok"], DEFAULT, [None, None], None, id="quiet"),
    pytest.param(["warning"], DEFAULT, ["opened"], ("open", "warning"), id="open-warning"),
    pytest.param(["ok", "critical"], DEFAULT, [None, "opened"], ("open", "critical"), id="late"),
    # third consecutive breach day reaches escalate_after_days=3
    pytest.param(
        ["warning", "warning", "warning"],
        DEFAULT,
        ["opened", "updated", "escalated"],
        ("open", "critical"),
        id="persistent-warning-escalates",
    ),
    pytest.param(
        ["warning", "critical"],
        DEFAULT,
        ["opened", "escalated"],
        ("open", "critical"),
        id="critical-level-escalates",
    ),
    # severity never drops while open, even if the metric improves to warning level
    pytest.param(
        ["critical", "warning", "warning"],
        DEFAULT,
        ["opened", "updated", "updated"],
        ("open", "critical"),
        id="no-de-escalation",
    ),
    # the first in-bounds day is silent; the second (resolve_after_days=2) resolves
    pytest.param(
        ["warning", "ok", "ok"],
        DEFAULT,
        ["opened", None, "resolved"],
        ("resolved", "warning"),
        id="resolves",
    ),
    # the breach on day 3 resets the recovery count, so two more ok days are needed
    pytest.param(
        ["warning", "ok", "warning", "ok", "ok"],
        DEFAULT,
        ["opened", None, "updated", None, "resolved"],
        ("resolved", "warning"),
        id="flap-resets-recovery",
    ),
    # three breach days but not consecutive: the ok day breaks the streak, no escalation
    pytest.param(
        ["warning", "warning", "ok", "warning"],
        DEFAULT,
        ["opened", "updated", None, "updated"],
        ("open", "warning"),
        id="ok-day-breaks-breach-streak",
    ),
    # a breach after resolution is a new alert, not a continuation of the old one
    pytest.param(
        ["warning", "ok", "ok", "warning"],
        DEFAULT,
        ["opened", None, "resolved", "opened"],
        ("open", "warning"),
        id="reopen-after-resolve",
    ),
    pytest.param(
        ["ok", "warning", "ok", "ok", "ok", "ok"],
        DEFAULT,
        [None, "opened", None, "resolved", None, None],
        ("resolved", "warning"),
        id="quiet-after-resolve",
    ),
    # info does not escalate with time (a half-open MLflow breaker is not worth a page)
    pytest.param(
        ["info", "info", "info", "info"],
        DEFAULT,
        ["opened", "updated", "updated", "updated"],
        ("open", "info"),
        id="info-stays-info",
    ),
    pytest.param(
        ["info", "warning"],
        DEFAULT,
        ["opened", "escalated"],
        ("open", "warning"),
        id="info-to-warning",
    ),
    # odd but intended: info days count towards the breach streak, so a warning that follows
    # two info days has been degraded for three days and goes straight to critical
    pytest.param(
        ["info", "info", "warning"],
        DEFAULT,
        ["opened", "updated", "escalated"],
        ("open", "critical"),
        id="info-days-count-towards-streak",
    ),
    # escalate_after_days=1: a warning is critical from the very first day
    pytest.param(
        ["warning"],
        AlertPolicy(escalate_after_days=1),
        ["opened"],
        ("open", "critical"),
        id="escalate-immediately",
    ),
    pytest.param(
        ["critical", "ok"],
        AlertPolicy(resolve_after_days=1),
        ["opened", "resolved"],
        ("resolved", "critical"),
        id="resolve-immediately",
    ),
    pytest.param(
        ["warning"] * 5 + ["ok"] * 4,
        AlertPolicy(escalate_after_days=5, resolve_after_days=4),
        ["opened", "updated", "updated", "updated", "escalated", None, None, None, "resolved"],
        ("resolved", "critical"),
        id="custom-policy",
    ),
]


@pytest.mark.parametrize(("levels", "policy", "events", "final"), TABLE)
def test_day_by_day_sequences(
    levels: list[str],
    policy: AlertPolicy,
    events: list[str | None],
    final: tuple[str, str] | None,
) -> None:
    got_events, state = _run(levels, policy)
    assert got_events == events
    if final is None:
        assert state is None
    else:
        assert state is not None
        assert (state.status, state.severity) == final


def test_counters_and_dates() -> None:
    _, state = _run(["warning", "warning", "ok"])
    assert state is not None
    assert state.first_seen == START
    # last_seen is the last breach day; the ok day only moves last_evaluated
    assert state.last_seen == START + timedelta(days=1)
    assert state.last_evaluated == START + timedelta(days=2)
    assert (state.breach_days, state.ok_days) == (0, 1)
    # the latest observation is kept so a resolution message can show the recovered value
    assert state.observed == pytest.approx(0.60)


def test_reopened_alert_starts_fresh() -> None:
    _, state = _run(["warning", "warning", "ok", "ok", "warning"])
    assert state is not None
    assert state.first_seen == START + timedelta(days=4)
    assert (state.breach_days, state.ok_days) == (1, 0)
    assert state.acknowledged is False


# --- idempotency --------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["ok", "warning", "critical"])
def test_same_day_twice_is_a_no_op(level: str) -> None:
    opened = step(None, _day(0, "warning"), DEFAULT).state
    first = step(opened, _day(1, level), DEFAULT)
    again = step(first.state, _day(1, level), DEFAULT)
    assert again == Transition(state=first.state, event=None)


def test_backfill_of_an_earlier_day_is_ignored() -> None:
    _, state = _run(["warning", "warning"])
    assert step(state, _day(0, "critical"), DEFAULT) == Transition(state=state, event=None)


def test_replaying_every_day_twice_gives_the_same_history() -> None:
    levels = ["warning", "ok", "warning", "warning", "warning", "ok", "ok", "critical"]
    once_events, once_state = _run(levels)
    state = None
    twice_events = []
    for offset, level in enumerate(levels):
        for _ in range(2):
            transition = step(state, _day(offset, level), DEFAULT)
            twice_events.append(transition.event)
            state = transition.state
    assert [e for e in twice_events if e is not None] == [e for e in once_events if e is not None]
    assert state == once_state


def test_rerun_of_resolution_day_does_not_open_a_new_alert() -> None:
    _, resolved = _run(["warning", "ok", "ok"])
    assert resolved is not None and resolved.status == "resolved"
    # the day-2 partition is re-materialized with a (different) breach result
    assert step(resolved, _day(2, "warning"), DEFAULT) == Transition(state=resolved, event=None)


def test_rows_without_last_evaluated_fall_back_to_last_seen() -> None:
    _, state = _run(["warning"])
    assert state is not None
    legacy = dataclasses.replace(state, last_evaluated=None)
    assert legacy.evaluated_through == START
    assert step(legacy, _day(0, "warning"), DEFAULT).event is None
    assert step(legacy, _day(1, "warning"), DEFAULT).event == "updated"


# --- acknowledgement ----------------------------------------------------------------------------


def test_acknowledgement_suppresses_updates_until_escalation() -> None:
    state = step(None, _day(0, "warning"), DEFAULT).state
    assert state is not None and state.notified_severity == "warning"
    state = acknowledge(state)
    assert (state.status, state.acknowledged) == ("acknowledged", True)

    events = []
    for offset, level in enumerate(["warning", "warning", "critical", "ok", "ok"], start=1):
        transition = step(state, _day(offset, level), DEFAULT)
        events.append(transition.event)
        state = transition.state
        if offset == 2:
            # the third breach day escalates: notified again, still marked acknowledged
            assert state.severity == "critical"
            assert state.notified_severity == "critical"
            assert (state.status, state.acknowledged) == ("acknowledged", True)
    # day 1: silent update; day 2: escalation is always sent; day 3: silent; then the
    # resolution is announced even though the alert was acknowledged
    assert events == [None, "escalated", None, None, "resolved"]
    assert state.status == "resolved"


def test_unacknowledged_updates_are_notified() -> None:
    events, state = _run(["warning", "warning"])
    assert events == ["opened", "updated"]
    assert state is not None and state.notified_severity == "warning"


def test_acknowledge_is_idempotent_and_refuses_resolved_alerts() -> None:
    state = step(None, _day(0, "critical"), DEFAULT).state
    assert state is not None
    once = acknowledge(state)
    assert acknowledge(once) == once
    _, resolved = _run(["warning", "ok", "ok"])
    with pytest.raises(ValueError, match="resolved"):
        acknowledge(resolved)


# --- helpers and validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severities", "expected"),
    [
        (("info",), "info"),
        (("info", "warning"), "warning"),
        (("critical", "warning"), "critical"),
        (("warning", "info", "warning"), "warning"),
    ],
)
def test_max_severity(severities: tuple[str, ...], expected: str) -> None:
    assert max_severity(*severities) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [(), ("ok",), ("warning", "severe")])
def test_max_severity_rejects_bad_input(bad: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        max_severity(*bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs", [{"escalate_after_days": 0}, {"resolve_after_days": -1}, {"resolve_after_days": 1.5}]
)
def test_policy_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        AlertPolicy(**kwargs)  # type: ignore[arg-type]


def test_day_evaluation_rejects_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown level 'bad'"):
        _day(0, "bad")


def test_values_are_frozen() -> None:
    state = step(None, _day(0, "warning"), DEFAULT).state
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.severity = "critical"  # type: ignore[misc,union-attr]


def test_rerun_of_the_last_day_judged_worse_raises_severity_without_counting_it() -> None:
    # Day 1 warned on an estimate; its labels arrive and the realised verdict is critical.
    _, state = _run(["ok", "warning"])
    assert state is not None and state.severity == "warning" and state.breach_days == 1
    rerun = step(state, _day(1, "critical"), DEFAULT)
    assert rerun.event == "escalated"
    assert rerun.state.severity == "critical"
    assert (rerun.state.breach_days, rerun.state.last_seen) == (1, state.last_seen)
    # The same day judged the same or better again: nothing happens.
    assert step(rerun.state, _day(1, "critical"), DEFAULT).event is None
    assert step(rerun.state, _day(1, "warning"), DEFAULT).state.severity == "critical"
    # An earlier day judged worse is history: no change.
    assert step(state, _day(0, "critical"), DEFAULT).event is None
