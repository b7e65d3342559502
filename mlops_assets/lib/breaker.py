"""Circuit breaker whose state lives in a shared, pluggable store.

Several processes talk to the same flaky dependency (MLflow): Dagster run workers, a sensor in
the daemon, the CLI. They should agree on whether it is down, so the breaker keeps no state of
its own; every decision is a short read-modify-write through ``BreakerStore.transact``, and a
database-backed store makes one breaker shared by all of them.

Unlike pybreaker, no lock is held while the protected function runs. The store is touched
only before and after the call, so callers of a healthy dependency run fully concurrently.
A healthy call costs two ``store.read`` calls and no writes.

States:

* ``closed``: calls pass. ``failure_threshold`` consecutive failures open the breaker.
* ``open``: calls fail fast with ``CircuitOpenError`` until ``recovery_timeout`` seconds have
  passed since ``opened_at``; the next ``before_call`` then moves to ``half_open``.
* ``half_open``: up to ``half_open_max_calls`` trial calls run at once; other callers get
  ``CircuitOpenError``. ``success_threshold`` trial successes close the breaker and one trial
  failure reopens it.

Outcome classification (the same in ``call`` and ``record_failure``):

* an ``Exception`` for which ``is_failure`` is true is a failure;
* an ``Exception`` for which ``is_failure`` is false (say an HTTP 4xx caused by the caller) is
  re-raised but counts as a success: the server answered, so it is up;
* a ``BaseException`` that is not an ``Exception`` (KeyboardInterrupt, SystemExit, a Dagster
  run termination) says nothing about the dependency, so it only frees the trial slot.

Trial slots and crashes: a half-open trial writes ``half_open_in_flight + 1`` and its
completion writes ``- 1``. If the process running a trial dies, nothing ever decrements. So a
``half_open`` state whose ``updated_at`` is at least ``recovery_timeout`` old has its slots
reclaimed (a ``half_open -> half_open`` event records this). The cost is that a trial which
really does run longer than ``recovery_timeout`` may find more trials running beside it.

Trials are matched to their episode through ``opened_at``, which a half-open state keeps from
the open state it came from. A trial that completes after its episode ended, because another
trial reopened or closed the breaker, does not decide the new episode. The comparison allows
1 ms of slack for stores that round timestamps.

``before_call`` / ``record_success`` / ``record_failure`` are for callers that cannot wrap one
function (such as a multi-step replay). The reserved trial slot is remembered in a context
variable, so the ``record_*`` call must come from the same thread (or asyncio task) as its
``before_call``. If it does not, the slot is reclaimed by the crash rule above.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Literal, Protocol, TypeVar

from mlops_assets.lib.redact import redact

__all__ = [
    "BreakerEvent",
    "BreakerState",
    "BreakerStore",
    "CircuitBreaker",
    "CircuitOpenError",
    "MemoryBreakerStore",
    "State",
    "Transition",
]

logger = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]
T = TypeVar("T")
R = TypeVar("R")

ERROR_TEXT_LIMIT = 500
_EPISODE_SLACK_SECONDS = 1e-3

_Outcome = Literal["success", "failure", "abandon"]


@dataclass(frozen=True)
class BreakerState:
    """One breaker's persisted state. ``failure_count`` counts consecutive failures while closed
    (it keeps the tripping count while open and resets on close). Times are epoch seconds."""

    state: State = "closed"
    failure_count: int = 0
    opened_at: float | None = None
    half_open_in_flight: int = 0
    half_open_successes: int = 0
    last_error: str | None = None
    updated_at: float | None = None


@dataclass(frozen=True)
class BreakerEvent:
    """A state change. ``from_state == to_state == "half_open"`` marks reclaimed trial slots."""

    name: str
    at: float
    from_state: State
    to_state: State
    reason: str
    error: str | None


Transition = Callable[[BreakerState], tuple[BreakerState, list[BreakerEvent]]]


class BreakerStore(Protocol):
    """Where breaker state lives. Implementations must be safe to use from several threads.

    ``transact`` atomically reads the state for ``name`` (``BreakerState()`` if there is none),
    applies ``fn``, persists the returned state, appends the returned events and returns the
    new state. ``fn`` is pure, so a store may call it again after a serialisation conflict; only
    the result of the last call is persisted. If ``fn`` raises, nothing is persisted and the
    exception propagates. ``read`` never writes.
    """

    def transact(self, name: str, fn: Transition) -> BreakerState: ...

    def read(self, name: str) -> BreakerState: ...


class MemoryBreakerStore:
    """In-process store. The lock is held only inside ``transact``/``read``, never while a
    protected call runs. ``events`` keeps every event of every breaker, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, BreakerState] = {}
        self.events: list[BreakerEvent] = []

    def transact(self, name: str, fn: Transition) -> BreakerState:
        with self._lock:
            new_state, events = fn(self._states.get(name, BreakerState()))
            self._states[name] = new_state
            self.events.extend(events)
            return new_state

    def read(self, name: str) -> BreakerState:
        with self._lock:
            return self._states.get(name, BreakerState())


class CircuitOpenError(Exception):
    """Raised instead of calling the protected function. ``state`` is the ``BreakerState``
    snapshot that caused the refusal; ``retry_after`` is the number of seconds until a trial
    call may be admitted (for a full half-open breaker, an upper bound)."""

    def __init__(self, name: str, state: BreakerState, retry_after: float) -> None:
        self.name = name
        self.state = state
        self.retry_after = retry_after
        super().__init__(_open_message(name, state, retry_after))

    def __reduce__(self):
        # The default reduction replays only the message; errors may cross process boundaries.
        return (type(self), (self.name, self.state, self.retry_after))


def _open_message(name: str, state: BreakerState, retry_after: float) -> str:
    if state.state == "half_open":
        why = "is half-open and all its trial slots are taken"
        when = f"retry within {retry_after:.1f}s"
    else:
        why = f"is {state.state.replace('_', '-')}"
        if state.state == "open" and state.failure_count:
            why += f" after {state.failure_count} consecutive failures"
        when = f"next trial allowed in {retry_after:.1f}s"
    message = f"circuit breaker {name!r} {why}; {when}"
    if state.last_error:
        message += f" (last error: {state.last_error})"
    return message


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    text = redact(f"{type(error).__name__}: {error}")  # stored, alerted and logged: no secrets
    if len(text) > ERROR_TEXT_LIMIT:
        text = text[: ERROR_TEXT_LIMIT - 3] + "..."
    return text


def _every_error_counts(error: BaseException) -> bool:
    return True


@dataclass(frozen=True)
class _Trial:
    episode: float | None


def _same_episode(opened_at: float | None, episode: float | None) -> bool:
    if opened_at is None or episode is None:
        return opened_at is episode
    return abs(opened_at - episode) <= _EPISODE_SLACK_SECONDS


# Stacks of reserved trials per (store, breaker name), for before_call/record_* callers.
_reserved_trials: ContextVar[tuple[tuple[tuple[int, str], _Trial], ...]] = ContextVar(
    "breaker_reserved_trials", default=()
)


def _push_trial(key: tuple[int, str], trial: _Trial) -> None:
    _reserved_trials.set((*_reserved_trials.get(), (key, trial)))


def _pop_trial(key: tuple[int, str]) -> _Trial | None:
    reserved = _reserved_trials.get()
    for index in range(len(reserved) - 1, -1, -1):
        if reserved[index][0] == key:
            _reserved_trials.set(reserved[:index] + reserved[index + 1 :])
            return reserved[index][1]
    return None


@dataclass
class CircuitBreaker:
    """See the module docstring for the state machine and outcome classification.

    ``listeners`` are called with each event after the store transaction has committed; a
    listener that raises is logged and otherwise ignored. With ``enabled=False`` every method
    that would touch the store is a no-op and ``call`` just calls the function.
    """

    name: str
    store: BreakerStore
    failure_threshold: int = 5
    recovery_timeout: float = 60.0
    half_open_max_calls: int = 1
    success_threshold: int = 1
    is_failure: Callable[[BaseException], bool] = _every_error_counts
    clock: Callable[[], float] = time.time
    listeners: Sequence[Callable[[BreakerEvent], None]] = ()
    enabled: bool = True

    def __post_init__(self) -> None:
        for field_name in ("failure_threshold", "half_open_max_calls", "success_threshold"):
            if getattr(self, field_name) < 1:
                raise ValueError(f"{field_name} must be at least 1")
        if self.recovery_timeout < 0:
            raise ValueError("recovery_timeout must not be negative")

    # Public API

    def call(self, fn: Callable[..., T], /, *args, **kwargs) -> T:
        """Call ``fn`` through the breaker. Raises ``CircuitOpenError`` without calling it when
        the breaker refuses. Store errors after ``fn`` ran are logged, not raised, so they
        never hide the function's own result or exception."""
        if not self.enabled:
            return fn(*args, **kwargs)
        trial = self._acquire()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._settle_logged(self._classify(exc), exc, trial)
            raise
        self._settle_logged("success", None, trial)
        return result

    def before_call(self) -> None:
        """Raise ``CircuitOpenError`` or admit the caller, reserving a trial slot if half-open.
        Follow it with exactly one ``record_success``/``record_failure`` in the same thread."""
        if not self.enabled:
            return
        trial = self._acquire()
        if trial is not None:
            _push_trial(self._key, trial)

    def record_success(self) -> None:
        if self.enabled:
            self._settle("success", None, _pop_trial(self._key))

    def record_failure(self, error: BaseException) -> None:
        """Record ``error``, classified like ``call`` does: it may count as a success."""
        if self.enabled:
            self._settle(self._classify(error), error, _pop_trial(self._key))

    def current_state(self) -> BreakerState:
        """The stored state, unchanged: an open breaker whose recovery timeout has elapsed
        still reads as open (with ``retry_after() == 0``) until the next ``before_call``."""
        return self.store.read(self.name)

    def retry_after(self) -> float:
        """Seconds until a call could be admitted; 0 when one would be now."""
        return self._retry_after(self.store.read(self.name), self.clock())

    def allows_request(self) -> bool:
        """Whether a call would be admitted now, without reserving anything."""
        return not self.enabled or self.retry_after() == 0

    # Internals

    @property
    def _key(self) -> tuple[int, str]:
        return (id(self.store), self.name)

    def _classify(self, error: BaseException) -> _Outcome:
        if not isinstance(error, Exception):
            return "abandon"
        try:
            counts = self.is_failure(error)
        except Exception:
            logger.exception("is_failure raised for breaker %r; counting a failure", self.name)
            counts = True
        return "failure" if counts else "success"

    def _retry_after(self, state: BreakerState, now: float) -> float:
        if state.state == "open":
            if state.opened_at is None:
                return 0.0
            return max(0.0, state.opened_at + self.recovery_timeout - now)
        if state.state == "half_open":
            if state.half_open_in_flight < self.half_open_max_calls or self._slots_stale(
                state, now
            ):
                return 0.0
            return max(0.0, (state.updated_at or now) + self.recovery_timeout - now)
        return 0.0

    def _slots_stale(self, state: BreakerState, now: float) -> bool:
        return state.updated_at is None or now - state.updated_at >= self.recovery_timeout

    def _event(
        self, now: float, from_state: State, to_state: State, reason: str, error: str | None = None
    ) -> BreakerEvent:
        return BreakerEvent(self.name, now, from_state, to_state, reason, error)

    def _transact(
        self, step: Callable[[BreakerState, float], tuple[BreakerState, list[BreakerEvent], R]]
    ) -> tuple[BreakerState, R, float]:
        # Written on every invocation because a store may retry the transaction.
        last: list = [None, [], 0.0]

        def apply(state: BreakerState) -> tuple[BreakerState, list[BreakerEvent]]:
            now = self.clock()
            new_state, events, result = step(state, now)
            last[:] = [result, events, now]
            return new_state, events

        new_state = self.store.transact(self.name, apply)
        result, events, now = last
        self._notify(events)
        return new_state, result, now

    def _notify(self, events: list[BreakerEvent]) -> None:
        for event in events:
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:
                    logger.exception("listener of breaker %r failed on %s", self.name, event)

    def _acquire(self) -> _Trial | None:
        seen = self.store.read(self.name)
        if seen.state == "closed":
            return None
        now = self.clock()
        wait = self._retry_after(seen, now)
        if seen.state == "open" and wait > 0:
            raise CircuitOpenError(self.name, seen, wait)
        new_state, decision, now = self._transact(self._admit)
        if decision == "reject":
            raise CircuitOpenError(self.name, new_state, self._retry_after(new_state, now))
        if decision == "trial":
            return _Trial(new_state.opened_at)
        return None

    def _admit(
        self, state: BreakerState, now: float
    ) -> tuple[BreakerState, list[BreakerEvent], Literal["pass", "trial", "reject"]]:
        if state.state == "closed":
            return state, [], "pass"
        events: list[BreakerEvent] = []
        if state.state == "open":
            if self._retry_after(state, now) > 0:
                return state, [], "reject"
            reason = f"recovery timeout of {self.recovery_timeout:g}s elapsed"
            events.append(self._event(now, "open", "half_open", reason))
            state = replace(
                state,
                state="half_open",
                half_open_in_flight=0,
                half_open_successes=0,
                updated_at=now,
            )
        elif state.half_open_in_flight and self._slots_stale(state, now):
            reason = (
                f"reclaimed {state.half_open_in_flight} trial slot(s) with no progress for "
                f"{self.recovery_timeout:g}s; a trial's process probably died"
            )
            events.append(self._event(now, "half_open", "half_open", reason))
            state = replace(state, half_open_in_flight=0, updated_at=now)
        if state.half_open_in_flight >= self.half_open_max_calls:
            return state, events, "reject"
        reserved = replace(state, half_open_in_flight=state.half_open_in_flight + 1, updated_at=now)
        return reserved, events, "trial"

    def _settle_logged(
        self, outcome: _Outcome, error: BaseException | None, trial: _Trial | None
    ) -> None:
        try:
            self._settle(outcome, error, trial)
        except Exception:
            logger.exception("could not record a %s on breaker %r", outcome, self.name)

    def _settle(self, outcome: _Outcome, error: BaseException | None, trial: _Trial | None) -> None:
        if trial is None:
            # Without a trial slot only a closed breaker's failure count can change; checking
            # with a read keeps healthy calls write-free.
            seen = self.store.read(self.name)
            if seen.state != "closed" or (outcome != "failure" and not seen.failure_count):
                return
        error_text = _error_text(error) if outcome == "failure" else None

        def step(state: BreakerState, now: float) -> tuple[BreakerState, list[BreakerEvent], None]:
            new_state, events = self._outcome(state, now, outcome, error_text, trial)
            return new_state, events, None

        self._transact(step)

    def _outcome(
        self,
        state: BreakerState,
        now: float,
        outcome: _Outcome,
        error_text: str | None,
        trial: _Trial | None,
    ) -> tuple[BreakerState, list[BreakerEvent]]:
        if state.state == "closed":
            if outcome == "success" and state.failure_count:
                return replace(state, failure_count=0, updated_at=now), []
            if outcome != "failure":
                return state, []
            count = state.failure_count + 1
            if count < self.failure_threshold:
                return replace(
                    state, failure_count=count, last_error=error_text, updated_at=now
                ), []
            opened = replace(
                state,
                state="open",
                failure_count=count,
                opened_at=now,
                last_error=error_text,
                updated_at=now,
            )
            event = self._event(now, "closed", "open", f"{count} consecutive failures", error_text)
            return opened, [event]

        owns_slot = (
            trial is not None
            and state.state == "half_open"
            and _same_episode(state.opened_at, trial.episode)
        )
        if not owns_slot:
            # Only this episode's trials decide whether the dependency recovered.
            return state, []
        in_flight = max(0, state.half_open_in_flight - 1)
        if outcome == "abandon":
            return replace(state, half_open_in_flight=in_flight, updated_at=now), []
        if outcome == "failure":
            reopened = replace(
                state,
                state="open",
                opened_at=now,
                half_open_in_flight=0,
                half_open_successes=0,
                last_error=error_text,
                updated_at=now,
            )
            return reopened, [
                self._event(now, "half_open", "open", "trial call failed", error_text)
            ]
        successes = state.half_open_successes + 1
        if successes >= self.success_threshold:
            closed = BreakerState(state="closed", last_error=state.last_error, updated_at=now)
            reason = f"{successes} successful trial call(s)"
            return closed, [self._event(now, "half_open", "closed", reason)]
        progressed = replace(
            state, half_open_in_flight=in_flight, half_open_successes=successes, updated_at=now
        )
        return progressed, []
