"""Tests for ``mlops_assets.lib.breaker``.

Most tests form a contract that every ``BreakerStore`` must pass. They live in
``BreakerStoreContract``, which pytest does not collect by itself; ``TestBreakerContract``
runs it once per factory in ``STORE_FACTORIES``.

To run the contract against another store (a SQL-backed one, say), subclass it in that store's
test module and provide a ``breaker_store`` fixture:

    from mlops_assets_tests.lib.test_breaker import BreakerStoreContract

    class TestSqlBreakerStore(BreakerStoreContract):
        @pytest.fixture
        def breaker_store(self, tmp_path):
            return SqlBreakerStore(f"duckdb:///{tmp_path}/breaker.db")

Import only the contract class, never a ``Test*`` class, or those tests are collected twice.
The concurrency tests use the store from several threads at once, as run workers and the
sensor would. A store that needs nothing outside the process can instead be appended to
``STORE_FACTORIES``. ``BREAKER_CONTRACT_CASES`` and ``run_steps`` are public for modules that
prefer plain parametrized functions.

No test sleeps: breaker time comes from ``FakeClock``, and threads are coordinated with events
and barriers.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import fields

import pytest

from mlops_assets.lib.breaker import (
    ERROR_TEXT_LIMIT,
    BreakerEvent,
    BreakerState,
    BreakerStore,
    CircuitBreaker,
    CircuitOpenError,
    MemoryBreakerStore,
)

T0 = 1_700_000_000.0
NAME = "mlflow"
THREAD_TIMEOUT = 10.0

STORE_FACTORIES = [pytest.param(MemoryBreakerStore, id="memory")]


class FakeClock:
    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class YieldingClock(FakeClock):
    """Gives up the GIL whenever it is read. The breaker reads the clock inside store
    transactions, so this widens the window in which a non-atomic store would let two threads
    read the same state."""

    def __call__(self) -> float:
        time.sleep(0)
        return self.now


class ClientError(Exception):
    """Stands in for an HTTP 4xx: the server answered, the request was wrong."""


def not_client_error(error: BaseException) -> bool:
    return not isinstance(error, ClientError)


class Recorder:
    def __init__(self) -> None:
        self.events: list[BreakerEvent] = []

    def __call__(self, event: BreakerEvent) -> None:
        self.events.append(event)

    @property
    def transitions(self) -> list[tuple[str, str]]:
        return [(event.from_state, event.to_state) for event in self.events]


def make_breaker(
    store: BreakerStore, clock: Callable[[], float], recorder: Recorder | None = None, **config
) -> CircuitBreaker:
    config.setdefault("failure_threshold", 3)
    config.setdefault("recovery_timeout", 60.0)
    config.setdefault("is_failure", not_client_error)
    listeners = [recorder] if recorder is not None else []
    return CircuitBreaker(NAME, store, clock=clock, listeners=listeners, **config)


def _ok() -> str:
    return "ok"


def _refused() -> None:
    raise ConnectionError("connection refused")


def _client_error() -> None:
    raise ClientError("404 no such run")


def _interrupted() -> None:
    raise KeyboardInterrupt


def run_steps(breaker: CircuitBreaker, clock: FakeClock, steps) -> None:
    """Drive a breaker through a step script; see ``BREAKER_CONTRACT_CASES``."""
    for index, step in enumerate(steps):
        where = f"step {index} ({step!r})"
        if isinstance(step, int | float):
            clock.advance(step)
        elif step == "ok":
            assert breaker.call(_ok) == "ok", where
        elif step == "fail":
            with pytest.raises(ConnectionError):
                breaker.call(_refused)
        elif step == "client_error":
            with pytest.raises(ClientError):
                breaker.call(_client_error)
        elif step == "interrupt":
            with pytest.raises(KeyboardInterrupt):
                breaker.call(_interrupted)
        elif step == "reject":
            called = []
            with pytest.raises(CircuitOpenError):
                breaker.call(called.append, 1)
            assert called == [], f"{where}: rejected call must not run"
        elif step == "begin":
            breaker.before_call()
        elif step == "begin_rejected":
            with pytest.raises(CircuitOpenError):
                breaker.before_call()
        elif step == "end_ok":
            breaker.record_success()
        elif step == "end_fail":
            breaker.record_failure(ConnectionError("connection refused"))
        elif step == "end_client_error":
            breaker.record_failure(ClientError("404 no such run"))
        else:
            raise AssertionError(f"unknown {where}")


CLOSED, OPEN, HALF = "closed", "open", "half_open"
TRIP = ("fail", "fail", "fail")
TRIP_AND_WAIT = (*TRIP, 60.0)

# (config, steps, expected state fields, expected (from, to) events). Steps: "ok", "fail",
# "client_error" (excluded by is_failure), "interrupt" (KeyboardInterrupt) and "reject" go
# through call(); "begin", "begin_rejected", "end_ok", "end_fail" and "end_client_error" use
# the manual API; a number advances the clock. Defaults: failure_threshold=3,
# recovery_timeout=60, and all steps happen at T0 unless the clock is advanced, so an
# expected "opened_at" is given as seconds after T0.
BREAKER_CONTRACT_CASES = [
    pytest.param(
        {}, ("fail", "fail"), {"state": CLOSED, "failure_count": 2}, [], id="below-threshold"
    ),
    pytest.param(
        {},
        TRIP,
        {"state": OPEN, "failure_count": 3, "opened_at": 0.0},
        [(CLOSED, OPEN)],
        id="trips",
    ),
    pytest.param(
        {"failure_threshold": 1},
        ("fail",),
        {"state": OPEN},
        [(CLOSED, OPEN)],
        id="threshold-of-one",
    ),
    pytest.param(
        {},
        ("fail", "fail", "ok", "fail", "fail"),
        {"state": CLOSED, "failure_count": 2},
        [],
        id="success-resets-count",
    ),
    pytest.param(
        {},
        ("fail", "fail", "client_error", "fail", "fail"),
        {"state": CLOSED, "failure_count": 2},
        [],
        id="excluded-error-counts-as-success",
    ),
    pytest.param(
        {},
        ("fail", "fail", "end_client_error", "fail", "fail"),
        {"state": CLOSED, "failure_count": 2},
        [],
        id="recorded-excluded-error-counts-as-success",
    ),
    pytest.param(
        {},
        ("fail", "fail", "interrupt", "fail"),
        {"state": OPEN, "failure_count": 3},
        [(CLOSED, OPEN)],
        id="interrupt-neither-counts-nor-resets",
    ),
    pytest.param(
        {},
        ("end_fail",) * 3,
        {"state": OPEN},
        [(CLOSED, OPEN)],
        id="record-failure-without-call-trips",
    ),
    pytest.param(
        {},
        (*TRIP, "reject", 59.9, "reject", "begin_rejected"),
        {"state": OPEN, "opened_at": 0.0},
        [(CLOSED, OPEN)],
        id="open-rejects-until-timeout",
    ),
    pytest.param(
        {},
        (*TRIP_AND_WAIT, "ok"),
        {"state": CLOSED, "failure_count": 0, "opened_at": None, "half_open_in_flight": 0},
        [(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED)],
        id="trial-success-closes",
    ),
    pytest.param(
        {},
        (*TRIP_AND_WAIT, "fail"),
        {"state": OPEN, "opened_at": 60.0, "half_open_in_flight": 0},
        [(CLOSED, OPEN), (OPEN, HALF), (HALF, OPEN)],
        id="trial-failure-reopens",
    ),
    pytest.param(
        {},
        (*TRIP_AND_WAIT, "fail", 59.0, "reject", 1.0, "ok"),
        {"state": CLOSED},
        [(CLOSED, OPEN), (OPEN, HALF), (HALF, OPEN), (OPEN, HALF), (HALF, CLOSED)],
        id="reopened-waits-full-timeout-again",
    ),
    pytest.param(
        {},
        (*TRIP_AND_WAIT, "client_error"),
        {"state": CLOSED},
        [(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED)],
        id="excluded-error-trial-closes",
    ),
    pytest.param(
        {},
        (*TRIP_AND_WAIT, "interrupt"),
        {"state": HALF, "half_open_in_flight": 0, "half_open_successes": 0},
        [(CLOSED, OPEN), (OPEN, HALF)],
        id="interrupted-trial-frees-its-slot",
    ),
    pytest.param(
        {},
        (*TRIP_AND_WAIT, "interrupt", "ok"),
        {"state": CLOSED},
        [(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED)],
        id="trial-after-interrupted-trial",
    ),
    pytest.param(
        {"success_threshold": 2},
        (*TRIP_AND_WAIT, "ok"),
        {"state": HALF, "half_open_in_flight": 0, "half_open_successes": 1},
        [(CLOSED, OPEN), (OPEN, HALF)],
        id="success-threshold-not-reached",
    ),
    pytest.param(
        {"success_threshold": 2},
        (*TRIP_AND_WAIT, "ok", "ok"),
        {"state": CLOSED, "half_open_successes": 0},
        [(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED)],
        id="success-threshold-reached",
    ),
    pytest.param(
        {"success_threshold": 2},
        (*TRIP_AND_WAIT, "ok", "fail"),
        {"state": OPEN, "half_open_successes": 0, "opened_at": 60.0},
        [(CLOSED, OPEN), (OPEN, HALF), (HALF, OPEN)],
        id="failure-after-partial-recovery-reopens",
    ),
    pytest.param(
        {},
        (*TRIP_AND_WAIT, "begin", "begin_rejected", "reject"),
        {"state": HALF, "half_open_in_flight": 1},
        [(CLOSED, OPEN), (OPEN, HALF)],
        id="one-slot-rejects-second-caller",
    ),
    pytest.param(
        {"success_threshold": 2},
        (*TRIP_AND_WAIT, "begin", "end_ok", "begin"),
        {"state": HALF, "half_open_in_flight": 1, "half_open_successes": 1},
        [(CLOSED, OPEN), (OPEN, HALF)],
        id="completed-trial-frees-its-slot",
    ),
    pytest.param(
        {"half_open_max_calls": 2},
        (*TRIP_AND_WAIT, "begin", "begin", "begin_rejected"),
        {"state": HALF, "half_open_in_flight": 2},
        [(CLOSED, OPEN), (OPEN, HALF)],
        id="two-slots",
    ),
    pytest.param(
        {"half_open_max_calls": 2},
        (*TRIP_AND_WAIT, "begin", "begin", "end_fail", "end_ok"),
        {"state": OPEN, "opened_at": 60.0, "half_open_in_flight": 0},
        [(CLOSED, OPEN), (OPEN, HALF), (HALF, OPEN)],
        id="success-after-reopen-is-ignored",
    ),
    pytest.param(
        {"half_open_max_calls": 2},
        (*TRIP_AND_WAIT, "begin", "begin", "end_ok", "end_fail"),
        {"state": CLOSED, "failure_count": 1},
        [(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED)],
        id="failure-after-close-counts-as-closed-failure",
    ),
    pytest.param(
        {},
        (*TRIP_AND_WAIT, "begin", 59.0, "begin_rejected", 1.0, "begin"),
        {"state": HALF, "half_open_in_flight": 1},
        [(CLOSED, OPEN), (OPEN, HALF), (HALF, HALF)],
        id="crashed-trial-slot-reclaimed",
    ),
    pytest.param(
        {},
        (*TRIP_AND_WAIT, "begin", 60.0, "begin", "end_ok"),
        {"state": CLOSED},
        [(CLOSED, OPEN), (OPEN, HALF), (HALF, HALF), (HALF, CLOSED)],
        id="trial-after-reclaim-closes",
    ),
    pytest.param(
        {},
        (*TRIP, 600.0, "ok"),
        {"state": CLOSED},
        [(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED)],
        id="long-outage-needs-only-one-trial",
    ),
]


def _expected(fields_: dict) -> dict:
    return {
        key: (T0 + value if key == "opened_at" and value is not None else value)
        for key, value in fields_.items()
    }


class BreakerStoreContract:
    """Behaviour every store must support. Subclasses provide a ``breaker_store`` fixture."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def recorder(self) -> Recorder:
        return Recorder()

    @pytest.mark.parametrize(("config", "steps", "state", "events"), BREAKER_CONTRACT_CASES)
    def test_state_machine(self, breaker_store, clock, recorder, config, steps, state, events):
        breaker = make_breaker(breaker_store, clock, recorder, **config)
        run_steps(breaker, clock, steps)
        stored = breaker.current_state()
        assert {key: getattr(stored, key) for key in state} == _expected(state)
        assert recorder.transitions == events

    def test_store_starts_closed(self, breaker_store):
        assert breaker_store.read("never-used") == BreakerState()

    def test_transact_persists_and_returns_new_state(self, breaker_store):
        new = BreakerState(state="open", failure_count=2, opened_at=T0, updated_at=T0)
        assert breaker_store.transact(NAME, lambda old: (new, [])) == new
        assert breaker_store.read(NAME) == new
        assert breaker_store.read("other") == BreakerState()

    def test_transact_persists_nothing_when_fn_raises(self, breaker_store):
        def explode(state: BreakerState):
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            breaker_store.transact(NAME, explode)
        assert breaker_store.read(NAME) == BreakerState()

    def test_trip_event_has_reason_and_error(self, breaker_store, clock, recorder):
        breaker = make_breaker(breaker_store, clock, recorder)
        run_steps(breaker, clock, TRIP)
        (event,) = recorder.events
        assert event == BreakerEvent(
            name=NAME,
            at=T0,
            from_state="closed",
            to_state="open",
            reason="3 consecutive failures",
            error="ConnectionError: connection refused",
        )
        assert breaker.current_state().last_error == "ConnectionError: connection refused"

    def test_long_error_text_is_truncated(self, breaker_store, clock, recorder):
        breaker = make_breaker(breaker_store, clock, recorder, failure_threshold=1)
        with pytest.raises(TimeoutError):
            breaker.call(_raise, TimeoutError("x" * 5000))
        (event,) = recorder.events
        assert event.error.startswith("TimeoutError: xxx")
        assert len(event.error) == ERROR_TEXT_LIMIT
        assert breaker.current_state().last_error == event.error

    def test_trial_failure_event_has_error(self, breaker_store, clock, recorder):
        breaker = make_breaker(breaker_store, clock, recorder)
        run_steps(breaker, clock, TRIP_AND_WAIT)
        with pytest.raises(TimeoutError):
            breaker.call(_raise, TimeoutError("read timed out"))
        assert recorder.events[-1].reason == "trial call failed"
        assert recorder.events[-1].error == "TimeoutError: read timed out"
        assert recorder.events[-1].at == T0 + 60

    def test_excluded_exception_is_reraised_unchanged_and_never_trips(
        self, breaker_store, clock, recorder
    ):
        seen: list[BaseException] = []

        def classify(error: BaseException) -> bool:
            seen.append(error)
            return not_client_error(error)

        breaker = make_breaker(breaker_store, clock, recorder, is_failure=classify)
        error = ClientError("400 bad params")
        for _ in range(10):
            with pytest.raises(ClientError) as raised:
                breaker.call(_raise, error)
            assert raised.value is error
        assert seen == [error] * 10
        assert breaker.current_state().state == "closed"
        assert recorder.events == []

    def test_classifier_that_raises_counts_a_failure(self, breaker_store, clock, caplog):
        def broken(error: BaseException) -> bool:
            raise LookupError("bug in classifier")

        breaker = make_breaker(breaker_store, clock, is_failure=broken, failure_threshold=1)
        with caplog.at_level(logging.ERROR), pytest.raises(ConnectionError):
            breaker.call(_refused)
        assert breaker.current_state().state == "open"
        assert "is_failure raised" in caplog.text

    def test_call_passes_arguments_and_returns_result(self, breaker_store, clock):
        breaker = make_breaker(breaker_store, clock)
        assert breaker.call(lambda a, fn=None: (a, fn), 1, fn="kw") == (1, "kw")

    def test_disabled_breaker_passes_through_an_open_store(self, breaker_store, clock, recorder):
        forced = BreakerState(state="open", failure_count=3, opened_at=T0, updated_at=T0)
        breaker_store.transact(NAME, lambda old: (forced, []))
        breaker = make_breaker(breaker_store, clock, recorder, enabled=False)

        assert breaker.allows_request()
        assert breaker.call(_ok) == "ok"
        for _ in range(5):
            with pytest.raises(ConnectionError):
                breaker.call(_refused)
        breaker.before_call()
        breaker.record_failure(ConnectionError("down"))
        breaker.record_success()

        assert breaker_store.read(NAME) == forced
        assert recorder.events == []

    def test_disabled_breaker_does_not_count_failures(self, breaker_store, clock, recorder):
        breaker = make_breaker(breaker_store, clock, recorder, enabled=False)
        for _ in range(5):
            with pytest.raises(ConnectionError):
                breaker.call(_refused)
        assert breaker_store.read(NAME) == BreakerState()

    def test_listeners_get_every_event_in_order(self, breaker_store, clock):
        first, second = Recorder(), Recorder()
        breaker = make_breaker(breaker_store, clock)
        breaker.listeners = (first, second)
        run_steps(breaker, clock, (*TRIP_AND_WAIT, "ok"))
        assert first.transitions == [(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED)]
        assert second.events == first.events
        assert [event.at for event in first.events] == [T0, T0 + 60, T0 + 60]
        assert all(event.name == NAME for event in first.events)

    def test_listener_runs_after_the_transaction_commits(self, breaker_store, clock):
        seen: list[BreakerState] = []
        breaker = make_breaker(breaker_store, clock, failure_threshold=1)
        # Reading the store from inside the listener would deadlock a store that still held its
        # lock, and would see the old state if the write were not yet visible.
        breaker.listeners = (lambda event: seen.append(breaker_store.read(NAME)),)
        with pytest.raises(ConnectionError):
            breaker.call(_refused)
        assert [state.state for state in seen] == ["open"]

    def test_failing_listener_does_not_break_the_call(self, breaker_store, clock, caplog):
        def broken(event: BreakerEvent) -> None:
            raise RuntimeError("pager down")

        after = Recorder()
        breaker = make_breaker(breaker_store, clock, failure_threshold=1)
        breaker.listeners = (broken, after)
        with caplog.at_level(logging.ERROR), pytest.raises(ConnectionError):
            breaker.call(_refused)
        assert after.transitions == [(CLOSED, OPEN)]
        assert "pager down" in caplog.text

    def test_open_error_carries_retry_after_and_names_the_breaker(self, breaker_store, clock):
        breaker = make_breaker(breaker_store, clock)
        run_steps(breaker, clock, TRIP)
        clock.advance(15.0)
        with pytest.raises(CircuitOpenError) as raised:
            breaker.call(_ok)
        error = raised.value
        assert error.retry_after == pytest.approx(45.0)
        assert error.name == NAME
        assert error.state.state == "open"
        assert error.state == breaker.current_state()
        message = str(error)
        assert "'mlflow'" in message
        assert "3 consecutive failures" in message
        assert "45.0s" in message
        assert "connection refused" in message

    def test_full_half_open_error_bounds_retry_after(self, breaker_store, clock):
        breaker = make_breaker(breaker_store, clock)
        run_steps(breaker, clock, (*TRIP_AND_WAIT, "begin", 10.0))
        with pytest.raises(CircuitOpenError) as raised:
            breaker.before_call()
        assert raised.value.state.state == "half_open"
        assert raised.value.retry_after == pytest.approx(50.0)
        assert "half-open" in str(raised.value)

    def test_current_state_and_checks_never_write(self, breaker_store, clock, recorder):
        breaker = make_breaker(breaker_store, clock, recorder)
        run_steps(breaker, clock, TRIP)
        assert not breaker.allows_request()
        assert breaker.retry_after() == pytest.approx(60.0)

        clock.advance(60.0)
        before = breaker_store.read(NAME)
        assert breaker.current_state().state == "open"
        assert breaker.retry_after() == 0
        assert breaker.allows_request()
        assert breaker_store.read(NAME) == before
        assert recorder.transitions == [(CLOSED, OPEN)]

        breaker.before_call()
        assert breaker.current_state().state == "half_open"
        assert not breaker.allows_request()
        breaker.record_success()
        assert breaker.allows_request()

    def test_rejections_do_not_write(self, breaker_store, clock):
        breaker = make_breaker(breaker_store, clock)
        run_steps(breaker, clock, (*TRIP_AND_WAIT, "begin"))
        before = breaker_store.read(NAME)
        clock.advance(5.0)
        run_steps(breaker, clock, ("begin_rejected", "reject"))
        # A write here would refresh updated_at and postpone the reclaim of a crashed trial.
        assert breaker_store.read(NAME) == before

    def test_healthy_calls_do_not_write(self, breaker_store, clock):
        breaker = make_breaker(breaker_store, clock)
        for _ in range(3):
            breaker.call(_ok)
        assert breaker_store.read(NAME) == BreakerState()

    def test_breakers_sharing_a_store_share_one_state(self, breaker_store, clock, recorder):
        # Two instances stand in for two processes (a run worker and the sensor).
        worker = make_breaker(breaker_store, clock, recorder)
        sensor = make_breaker(breaker_store, clock)
        run_steps(worker, clock, ("fail", "fail"))
        run_steps(sensor, clock, ("fail", "reject"))
        run_steps(worker, clock, ("reject", 60.0, "ok"))
        assert sensor.current_state().state == "closed"
        assert recorder.transitions == [(OPEN, HALF), (HALF, CLOSED)]

    def test_breakers_with_different_names_are_independent(self, breaker_store, clock):
        mlflow = make_breaker(breaker_store, clock)
        warehouse = CircuitBreaker("warehouse", breaker_store, clock=clock)
        run_steps(mlflow, clock, TRIP)
        assert warehouse.call(_ok) == "ok"
        assert warehouse.current_state() == BreakerState()

    def test_store_errors_after_the_call_do_not_hide_its_outcome(
        self, breaker_store, clock, caplog
    ):
        breaker = make_breaker(_WritesFail(breaker_store), clock)
        run_steps(breaker, clock, ("fail",))
        assert breaker_store.read(NAME) == BreakerState()
        assert breaker.call(_ok) == "ok"
        assert "could not record a failure" in caplog.text

    def test_store_errors_before_the_call_propagate(self, breaker_store, clock):
        breaker = make_breaker(breaker_store, clock)
        run_steps(breaker, clock, TRIP_AND_WAIT)
        breaker.store = _WritesFail(breaker_store)
        called = []
        with pytest.raises(OSError):
            breaker.call(called.append, 1)
        assert called == []

    # Concurrency: threads stand in for processes sharing a store.

    def test_closed_breaker_does_not_serialise_calls(self, breaker_store):
        breaker = make_breaker(breaker_store, YieldingClock())
        callers = 8
        # Each call waits inside fn until all eight are inside at once, which only happens if
        # the breaker lets them run concurrently; serialised calls would break the barrier.
        everyone_inside = threading.Barrier(callers, timeout=THREAD_TIMEOUT)
        gauge = _Gauge()

        def work(i: int) -> int:
            with gauge:
                everyone_inside.wait()
                return i

        results = _run_threads(callers, lambda i: breaker.call(work, i))
        assert sorted(results) == list(range(callers))
        assert gauge.peak == callers
        assert breaker.current_state() == BreakerState()

    @pytest.mark.parametrize("max_calls", [1, 3])
    def test_half_open_admits_exactly_max_calls_concurrent_trials(self, breaker_store, max_calls):
        clock = YieldingClock()
        recorder = Recorder()
        breaker = make_breaker(breaker_store, clock, recorder, half_open_max_calls=max_calls)
        run_steps(breaker, clock, TRIP_AND_WAIT)

        callers = max_calls + 4
        release = threading.Event()
        start = threading.Barrier(callers, timeout=THREAD_TIMEOUT)
        tally = _Tally()
        gauge = _Gauge()

        def trial() -> str:
            with gauge:
                tally.add("admitted")
                assert release.wait(THREAD_TIMEOUT)
            return "ok"

        def caller(i: int) -> str:
            start.wait()
            try:
                return breaker.call(trial)
            except CircuitOpenError:
                tally.add("rejected")
                return "rejected"

        with _threads(callers, caller) as results:
            try:
                tally.wait_for_total(callers)
                assert tally.counts == {"admitted": max_calls, "rejected": callers - max_calls}
                held = breaker.current_state()
                assert (held.state, held.half_open_in_flight) == ("half_open", max_calls)
                assert not breaker.allows_request()
            finally:
                release.set()
        assert sorted(results) == sorted(["ok"] * max_calls + ["rejected"] * (callers - max_calls))
        assert gauge.peak == max_calls
        assert breaker.current_state().state == "closed"
        assert recorder.transitions == [(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED)]

    @pytest.mark.parametrize("max_calls", [1, 2])
    def test_racing_callers_never_share_a_trial_slot(self, breaker_store, max_calls):
        clock = YieldingClock()
        recorder = Recorder()
        breaker = make_breaker(
            breaker_store, clock, recorder, half_open_max_calls=max_calls, success_threshold=99
        )
        run_steps(breaker, clock, TRIP_AND_WAIT)
        callers = 16
        start = threading.Barrier(callers, timeout=THREAD_TIMEOUT)
        # Separate breaker instances per thread, as separate processes would have.
        instances = [make_breaker(breaker_store, clock, recorder) for _ in range(callers)]
        for instance in instances:
            instance.half_open_max_calls = max_calls
            instance.success_threshold = 99

        def caller(i: int) -> bool:
            start.wait()
            try:
                instances[i].before_call()
            except CircuitOpenError:
                return False
            return True

        admitted = _run_threads(callers, caller)
        assert admitted.count(True) == max_calls
        assert breaker.current_state().half_open_in_flight == max_calls
        assert recorder.transitions == [(CLOSED, OPEN), (OPEN, HALF)]

    def test_concurrent_failures_open_the_breaker_once(self, breaker_store):
        clock = YieldingClock()
        recorder = Recorder()
        breaker = make_breaker(breaker_store, clock, recorder, failure_threshold=5)
        callers = 20
        start = threading.Barrier(callers, timeout=THREAD_TIMEOUT)

        def caller(i: int) -> str:
            start.wait()
            try:
                breaker.call(_refused)
            except ConnectionError:
                return "failed"
            except CircuitOpenError:
                return "rejected"
            return "ok"

        results = _run_threads(callers, caller)
        assert set(results) <= {"failed", "rejected"}
        assert breaker.current_state().state == "open"
        assert recorder.transitions == [(CLOSED, OPEN)]

    def test_concurrent_failures_below_threshold_are_all_counted(self, breaker_store):
        clock = YieldingClock()
        breaker = make_breaker(breaker_store, clock, failure_threshold=100)
        callers = 20
        start = threading.Barrier(callers, timeout=THREAD_TIMEOUT)

        def caller(i: int) -> None:
            start.wait()
            with pytest.raises(ConnectionError):
                breaker.call(_refused)

        _run_threads(callers, caller)
        assert breaker.current_state().failure_count == callers

    def test_late_trial_from_an_earlier_episode_does_not_decide_the_next(
        self, breaker_store, clock, recorder
    ):
        breaker = make_breaker(breaker_store, clock, recorder)
        run_steps(breaker, clock, TRIP_AND_WAIT)
        inside, release = threading.Event(), threading.Event()

        def slow_trial() -> str:
            inside.set()
            assert release.wait(THREAD_TIMEOUT)
            return "ok"

        with _threads(1, lambda i: breaker.call(slow_trial)) as results:
            try:
                assert inside.wait(THREAD_TIMEOUT)
                # The slow trial looks crashed; its slot is reclaimed, a new trial fails, and a
                # later episode's trial is running when the slow one finally succeeds.
                run_steps(breaker, clock, (60.0, "fail", 60.0, "begin"))
            finally:
                release.set()
        assert results == ["ok"]
        state = breaker.current_state()
        assert (state.state, state.half_open_in_flight, state.half_open_successes) == (HALF, 1, 0)
        breaker.record_success()
        assert breaker.current_state().state == "closed"
        assert recorder.transitions == [
            (CLOSED, OPEN),
            (OPEN, HALF),
            (HALF, HALF),
            (HALF, OPEN),
            (OPEN, HALF),
            (HALF, CLOSED),
        ]


class TestBreakerContract(BreakerStoreContract):
    @pytest.fixture(params=STORE_FACTORIES)
    def breaker_store(self, request) -> BreakerStore:
        return request.param()


# The store the platform really uses, on both warehouse engines. One migrated warehouse per
# module and engine, emptied before each test (a fresh PostgreSQL database per test would
# cost more than the 57 tests themselves).
_BREAKER_TABLES = ("mlops.circuit_breakers", "mlops.circuit_breaker_events")


@pytest.fixture(scope="module")
def _duckdb_warehouse(tmp_path_factory):
    from mlops_assets.storage.warehouse import DuckDBWarehouse

    warehouse = DuckDBWarehouse(tmp_path_factory.mktemp("breaker") / "warehouse.duckdb")
    warehouse.migrate()
    return warehouse


@pytest.fixture(scope="module")
def _postgres_warehouse(pg_admin_dsn):
    import uuid

    import psycopg
    from psycopg import sql

    from mlops_assets.storage.warehouse import PostgresWarehouse

    name = f"mlops_breaker_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as con:
        con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    warehouse = PostgresWarehouse(f"{pg_admin_dsn.rsplit('/', 1)[0]}/{name}")
    warehouse.migrate()
    yield warehouse
    with psycopg.connect(pg_admin_dsn, autocommit=True) as con:
        con.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class TestSqlBreakerStoreContract(BreakerStoreContract):
    @pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
    def breaker_store(self, request) -> BreakerStore:
        from mlops_assets.storage.breaker_store import SqlBreakerStore

        warehouse = request.getfixturevalue(f"_{request.param}_warehouse")
        with warehouse.transaction() as tx:
            for table in _BREAKER_TABLES:
                tx.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
        return SqlBreakerStore(warehouse)


# Another process, sharing the warehouse: reports what its own breaker sees.
_OTHER_PROCESS = """
import sys
from mlops_assets.lib.breaker import CircuitBreaker, CircuitOpenError
from mlops_assets.storage.breaker_store import SqlBreakerStore
from mlops_assets.storage.warehouse import DuckDBWarehouse, PostgresWarehouse

engine, where = sys.argv[1], sys.argv[2]
warehouse = DuckDBWarehouse(where) if engine == "duckdb" else PostgresWarehouse(where)
breaker = CircuitBreaker("mlflow", SqlBreakerStore(warehouse), failure_threshold=1)
try:
    breaker.call(lambda: print("called"))
except CircuitOpenError as error:
    print("rejected", breaker.current_state().state, error.retry_after > 0)
"""


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_processes_sharing_the_warehouse_see_one_open_breaker(request, engine):
    import subprocess
    import sys

    from mlops_assets.storage.breaker_store import SqlBreakerStore

    warehouse = request.getfixturevalue(f"_{engine}_warehouse")
    with warehouse.transaction() as tx:
        for table in _BREAKER_TABLES:
            tx.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
    where = str(warehouse.path) if engine == "duckdb" else warehouse.dsn

    def other_process() -> str:
        done = subprocess.run(
            [sys.executable, "-c", _OTHER_PROCESS, engine, where],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    assert other_process() == "called"  # closed: the other process calls through
    here = CircuitBreaker(NAME, SqlBreakerStore(warehouse), failure_threshold=1)
    with pytest.raises(ConnectionError):
        here.call(_raise_connection_error)
    assert here.current_state().state == "open"
    assert other_process() == "rejected open True"


def _raise_connection_error() -> None:
    raise ConnectionError("[Errno 111] Connection refused")


# Memory-store specifics and store-independent behaviour.


def test_memory_store_keeps_events_in_order():
    store = MemoryBreakerStore()
    clock = FakeClock()
    recorder = Recorder()
    breaker = make_breaker(store, clock, recorder)
    run_steps(breaker, clock, (*TRIP_AND_WAIT, "fail"))
    other = make_breaker(store, clock, failure_threshold=1)
    other.name = "other"
    run_steps(other, clock, ("fail",))
    assert store.events[:3] == recorder.events
    assert [(event.name, event.to_state) for event in store.events] == [
        (NAME, OPEN),
        (NAME, HALF),
        (NAME, OPEN),
        ("other", OPEN),
    ]


def test_memory_store_lock_is_free_while_the_call_runs():
    store = MemoryBreakerStore()
    breaker = make_breaker(store, FakeClock())
    assert breaker.call(lambda: store._lock.locked()) is False


@pytest.mark.parametrize(
    "config",
    [
        {"failure_threshold": 0},
        {"half_open_max_calls": 0},
        {"success_threshold": 0},
        {"recovery_timeout": -1.0},
    ],
)
def test_invalid_config_is_rejected(config):
    with pytest.raises(ValueError, match=next(iter(config))):
        CircuitBreaker(NAME, MemoryBreakerStore(), **config)


def test_defaults():
    breaker = CircuitBreaker(NAME, MemoryBreakerStore())
    assert (breaker.failure_threshold, breaker.recovery_timeout) == (5, 60.0)
    assert (breaker.half_open_max_calls, breaker.success_threshold) == (1, 1)
    assert breaker.is_failure(ClientError()) is True
    assert breaker.clock is time.time
    assert breaker.enabled


def test_circuit_open_error_survives_pickling():
    state = BreakerState(state="open", failure_count=5, opened_at=T0, last_error="boom")
    error = pickle.loads(pickle.dumps(CircuitOpenError(NAME, state, 12.5)))
    assert (error.name, error.state, error.retry_after) == (NAME, state, 12.5)
    assert str(error) == str(CircuitOpenError(NAME, state, 12.5))


def test_state_and_event_are_immutable():
    with pytest.raises(AttributeError):
        BreakerState().state = "open"  # type: ignore[misc]
    assert [f.name for f in fields(BreakerState)] == [
        "state",
        "failure_count",
        "opened_at",
        "half_open_in_flight",
        "half_open_successes",
        "last_error",
        "updated_at",
    ]


def test_manual_trial_slot_belongs_to_the_thread_that_reserved_it():
    store = MemoryBreakerStore()
    clock = FakeClock()
    breaker = make_breaker(store, clock)
    run_steps(breaker, clock, (*TRIP_AND_WAIT, "begin"))
    # Another thread's success holds no slot, so it must not close the breaker.
    _run_threads(1, lambda i: breaker.record_success())
    assert store.read(NAME).state == "half_open"
    breaker.record_success()
    assert store.read(NAME).state == "closed"


# Helpers


def _raise(error: BaseException) -> None:
    raise error


class _WritesFail:
    """Delegates reads, fails every transaction, as a store with a read-only replica might."""

    def __init__(self, inner: BreakerStore) -> None:
        self.inner = inner

    def read(self, name: str) -> BreakerState:
        return self.inner.read(name)

    def transact(self, name, fn) -> BreakerState:
        raise OSError("database is read-only")


class _Gauge:
    """Counts threads currently inside a block and remembers the peak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inside = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self._lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            self.inside -= 1


class _Tally:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.counts: dict[str, int] = {}

    def add(self, key: str) -> None:
        with self._changed:
            self.counts[key] = self.counts.get(key, 0) + 1
            self._changed.notify_all()

    def wait_for_total(self, total: int) -> None:
        with self._changed:
            reached = self._changed.wait_for(
                lambda: sum(self.counts.values()) >= total, THREAD_TIMEOUT
            )
        assert reached, f"only {self.counts} of {total} callers reported"


class _threads:
    """Runs ``target(i)`` in ``count`` threads; on exit joins them and re-raises the first
    error. The ``as`` value fills with results, in thread order, once the block exits."""

    def __init__(self, count: int, target: Callable[[int], object]) -> None:
        self.results: list = [None] * count
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._run, args=(target, i), daemon=True) for i in range(count)
        ]

    def _run(self, target, i: int) -> None:
        try:
            self.results[i] = target(i)
        except BaseException as exc:
            self.errors.append(exc)

    def __enter__(self) -> list:
        for thread in self.threads:
            thread.start()
        return self.results

    def __exit__(self, *exc_info) -> None:
        for thread in self.threads:
            thread.join(THREAD_TIMEOUT)
        assert not any(thread.is_alive() for thread in self.threads), "a thread is stuck"
        if self.errors and exc_info[0] is None:
            raise self.errors[0]


def _run_threads(count: int, target: Callable[[int], object]) -> list:
    with _threads(count, target) as results:
        pass
    return results
