"""A recording whose process died is marked abandoned, with the reason, by the next flush or
`buffer` look; it is never counted as pending again. Both warehouse engines."""

from __future__ import annotations

import socket
import subprocess

import pytest

from mlops_assets.cli import main
from mlops_assets.runtime import build_runtime
from mlops_assets.storage.mlflow_buffer import ABANDONED, MetricPoint
from mlops_assets_tests.tracking.conftest import TrackerFactory


def _dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def test_dead_recording_is_abandoned_and_not_pending_in_cli_output(
    backend: str,
    make_tracker: TrackerFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
):
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    buffer = make_tracker("http://127.0.0.1:9").buffer
    dead_owner = f"{socket.gethostname()}:{_dead_pid()}:deadbeef"
    buffer.open_run(
        local_run_id="local-killed",
        experiment_name="e",
        run_name="killed-while-training",
        registered_model_name="m",
        artifact_dir=None,
        start_time_ms=1,
        owner=dead_owner,
    )
    buffer.add_metrics("local-killed", [MetricPoint("loss", 0.5, 1, 0)] * 3)
    # A live recording (this process) is left alone.
    buffer.open_run(
        local_run_id="local-alive",
        experiment_name="e",
        run_name="still-training",
        registered_model_name=None,
        artifact_dir=None,
        start_time_ms=1,
        owner=make_tracker("http://127.0.0.1:9").owner,
    )

    assert main(["flush"]) == 0
    flushed = capsys.readouterr().out
    assert "abandoned local-killed" in flushed and "local-alive" not in flushed

    assert main(["buffer"]) == 0
    shown = capsys.readouterr().out
    assert "pending runs: 0" in shown and "recording: 1" in shown and "abandoned: 1" in shown
    assert "unsent metrics: 0" in shown
    line = next(x for x in shown.splitlines() if "local-killed" in x)
    assert "abandoned" in line and dead_owner in line

    run = build_runtime().tracker.buffer.get("local-killed")
    assert run is not None and run.state == ABANDONED and run.run_status == "FAILED"
    assert build_runtime().tracker.buffer.get("local-alive").state == "recording"  # type: ignore[union-attr]
