"""Replay tells MLflow's outages and refusals apart from everything else: only the first two
are handled (pending, parked); a bug or a warehouse failure is raised, the run left claimable."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from mlops_assets.storage.mlflow_buffer import PARKED, PENDING, REPLAYED
from mlops_assets.storage.warehouse import WarehouseError
from mlops_assets_tests.tracking.conftest import TrackerFactory
from mlops_assets_tests.tracking.fakes import FakeMlflowClient


class BrokenAt(FakeMlflowClient):
    """Raises `error` from `log_batch` once, then behaves."""

    def __init__(self, error: Exception | None):
        super().__init__()
        self.error = error

    def log_batch(self, *args, **kwargs):
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return super().log_batch(*args, **kwargs)


def _record(tracker) -> str:
    with tracker.start_run(run_name="r") as run:
        run.log_params({"a": 1})
        run.log_metrics({"m": 0.5})
    return run.local_run_id


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(ValueError("a bug in our code"), id="bug"),
        pytest.param(WarehouseError("could not connect to the warehouse"), id="warehouse"),
        pytest.param(KeyError("missing"), id="key-error"),
    ],
)
def test_other_errors_are_raised_and_the_run_stays_claimable(
    backend: str, make_tracker: TrackerFactory, error: Exception
):
    fake = BrokenAt(error)
    tracker = make_tracker("http://fake", client_factory=lambda uri: fake)
    local_id = _record(tracker)

    with pytest.raises(type(error)):
        tracker.replay(local_id)

    run = tracker.buffer.get(local_id)
    assert run is not None and run.state == PENDING
    assert run.lease_owner is None  # released: the next replayer can claim it at once
    assert run.attempts == 0  # not counted as an outage attempt
    other = make_tracker("http://fake", client_factory=lambda uri: fake)
    assert other.replay(local_id).state == REPLAYED


@pytest.mark.parametrize(
    ("error", "state"),
    [
        pytest.param(ConnectionError("[Errno 111] Connection refused"), PENDING, id="refused"),
        pytest.param(TimeoutError("timed out"), PENDING, id="timeout"),
        pytest.param(
            MlflowException("busy", error_code="TEMPORARILY_UNAVAILABLE"), PENDING, id="503"
        ),
        pytest.param(MlflowException("bad", error_code=INVALID_PARAMETER_VALUE), PARKED, id="400"),
    ],
)
def test_outages_stay_pending_and_refusals_park(
    backend: str, make_tracker: TrackerFactory, error: Exception, state: str
):
    fake = BrokenAt(error)
    tracker = make_tracker("http://fake", client_factory=lambda uri: fake)
    local_id = _record(tracker)

    result = tracker.replay(local_id)

    assert result.state == state, result
    run = tracker.buffer.get(local_id)
    assert run is not None and run.lease_owner is None
    assert run.attempts == (1 if state == PENDING else 0)
