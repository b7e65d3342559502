"""MLflow that accepts connections and never answers (a hung server, a dropped route)."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator

import dagster as dg
import pytest

from mlops_assets.defs.tracking import mlflow_buffer_flush_sensor
from mlops_assets.lib.breaker import CircuitOpenError
from mlops_assets.resources import MLflowResource, WarehouseResource
from mlops_assets.runtime import build_runtime
from mlops_assets.storage.mlflow_buffer import PENDING
from mlops_assets_tests.tracking.helpers import materialize_training, training_output


class BlackHole:
    """A loopback listener that accepts every connection, reads nothing, answers nothing."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()


@pytest.fixture
def blackhole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


@pytest.mark.slow
def test_training_finishes_then_the_breaker_opens_and_fails_fast_offline(
    backend: str,
    blackhole: BlackHole,
    experiment_name: str,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", blackhole.uri)
    monkeypatch.setenv("MLOPS_MLFLOW_CONNECTION_TIMEOUT", "1")
    monkeypatch.setenv("MLOPS_MLFLOW_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "2")

    with dg.instance_for_test() as instance:
        trained = training_output(materialize_training(instance, f"bh_{uuid.uuid4().hex[:8]}"))

    assert trained.tracking_status == "PENDING" and trained.mlflow_run_id is None
    # One request that timed out, no retries by the client: the wait was one timeout.
    assert blackhole.accepted == 1
    runtime = build_runtime()
    tracker = runtime.tracker
    buffered = tracker.buffer.get(trained.local_run_id)
    assert buffered is not None and buffered.state == PENDING
    assert "timed out" in (buffered.last_error or "").lower()
    state = tracker.breaker.current_state()
    assert (state.state, state.failure_count) == ("closed", 1)

    assert not tracker.probe()  # the second timeout reaches the threshold

    assert tracker.breaker.current_state().state == "open"
    assert blackhole.accepted == 2
    with pytest.raises(CircuitOpenError):
        tracker.breaker.call(tracker.client.search_experiments, max_results=1)
    replay = tracker.replay(trained.local_run_id)
    assert replay.state == PENDING and "CircuitOpenError" in (replay.error or "")
    with dg.build_sensor_context(
        resources={"mlflow": MLflowResource(warehouse=WarehouseResource())}
    ) as context:
        tick = mlflow_buffer_flush_sensor(context)
    assert isinstance(tick, dg.SensorResult) and not tick.run_requests
    assert "circuit breaker is open" in (tick.skip_reason.skip_message or "")  # type: ignore[union-attr]
    assert json.loads(tick.cursor or "{}")["breaker_state"] == "open"
    assert blackhole.accepted == 2, "an open breaker let a call reach the network"
    alerts = runtime.warehouse.query(
        "SELECT severity, status FROM mlops.ml_performance_alerts WHERE kind = 'mlflow_service'"
    )
    assert alerts == [{"severity": "critical", "status": "open"}]
