"""Concurrent replays of one buffered run converge on one MLflow run and one model version
(the lease), against a real `mlflow server`, on both warehouse backends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from mlflow.tracking import MlflowClient

from mlops_assets.runtime import build_runtime
from mlops_assets.storage.mlflow_buffer import PENDING, REPLAYED
from mlops_assets.storage.tracking import LOCAL_RUN_TAG
from mlops_assets_tests.tracking.conftest import TrackerFactory
from mlops_assets_tests.tracking.helpers import (
    assert_mlflow_holds_the_buffer_exactly_once,
    find_mlflow_runs,
)

pytestmark = [pytest.mark.mlflow_server, pytest.mark.slow]

REPLAYERS = 3

# What `mlops-assets flush` does, started by every replayer at the same wall-clock instant so
# the replays overlap (process start-up alone would spread them over seconds).
FLUSHER = """
import sys, time
from mlops_assets.runtime import build_runtime

tracker = build_runtime().tracker
tracker.buffer.summary()  # migrations and first connection out of the way
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
report = tracker.flush()
busy = getattr(report, "busy", [])  # absent before leases existed
print("replayed", len(report.replayed), "busy", len(busy), "failed", len(report.failed))
for r in report.failed:
    print("error", r.error)
"""


def _record_pending_model_run(tracker, model_name: str) -> str:
    with tracker.start_run(run_name="concurrent", registered_model_name=model_name) as run:
        run.log_params({"n_estimators": 30})
        run.log_metrics({"accuracy": 0.61, "roc_auc": 0.66})
        model_dir = run.model_dir("model")
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "MLmodel").write_text("flavors: {}\n")
        (model_dir / "model.txt").write_text("tree\n" * 2000)
    return run.local_run_id


@pytest.mark.timeout(600)
def test_three_concurrent_flushes_make_one_run_and_one_model_version(
    backend: str,
    mlflow_server,
    monkeypatch: pytest.MonkeyPatch,
    experiment_name: str,
    make_tracker: TrackerFactory,
):
    mlflow_server.start()
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLOPS_MLFLOW_CONNECTION_TIMEOUT", "30")
    model_name = f"concurrent_{uuid.uuid4().hex[:8]}"
    tracker = make_tracker(mlflow_server.uri)
    local_id = _record_pending_model_run(tracker, model_name)
    assert tracker.buffer.get(local_id).state == PENDING  # type: ignore[union-attr]

    start_at = time.time() + 12
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FLUSHER, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for _ in range(REPLAYERS)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    # MLflow prints "View run ..." lines of its own; ours starts with "replayed".
    lines = [next(x for x in out.splitlines() if x.startswith("replayed")) for out, _ in outputs]
    replayed = [int(line.split()[1]) for line in lines]
    assert sum(replayed) == 1, outputs  # one replayer did it; the others found it leased or done

    client = MlflowClient(mlflow_server.uri, mlflow_server.uri)
    runs = find_mlflow_runs(client, experiment_name, local_id)
    assert len(runs) == 1, [r.info.run_id for r in runs]
    versions = client.search_model_versions(f"name = '{model_name}'")
    assert [v.run_id for v in versions] == [runs[0].info.run_id], versions
    buffered = build_runtime().tracker.buffer.get(local_id)
    assert buffered is not None and buffered.state == REPLAYED
    assert buffered.model_version == str(versions[0].version)
    assert buffered.lease_owner is None  # released on completion
    assert runs[0].data.tags[LOCAL_RUN_TAG] == local_id
    assert_mlflow_holds_the_buffer_exactly_once(client, tracker.buffer, local_id)


def test_lease_is_taken_by_one_caller_and_honoured_until_it_expires(
    backend: str, make_tracker: TrackerFactory
):
    tracker = make_tracker("http://127.0.0.1:9")
    with tracker.start_run(run_name="leased") as run:
        run.log_params({"a": 1})
    buffer = tracker.buffer
    assert buffer.acquire(run.local_run_id, "first:1:a")
    assert not buffer.acquire(run.local_run_id, "second:2:b")
    assert buffer.acquire(run.local_run_id, "first:1:a")  # the holder may take it again
    # Someone else's replay finds it leased and leaves MLflow alone.
    result = tracker.replay(run.local_run_id)
    assert (result.state, result.leased_by) == (PENDING, "first:1:a")
    buffer.warehouse.execute(
        "UPDATE mlops.mlflow_buffer_runs SET lease_expires_at = 0 WHERE local_run_id = :id",
        {"id": run.local_run_id},
    )
    assert buffer.acquire(run.local_run_id, "second:2:b")  # expired: taken over
    buffer.release(run.local_run_id, "first:1:a")  # not the holder: no effect
    assert buffer.get(run.local_run_id).lease_owner == "second:2:b"  # type: ignore[union-attr]
