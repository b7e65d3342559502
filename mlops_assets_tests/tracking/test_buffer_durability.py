"""The buffer and the replay ledger survive the process dying at the worst moment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mlops_assets.runtime import build_runtime
from mlops_assets.storage import tracking
from mlops_assets.storage.mlflow_buffer import ABANDONED, PENDING, RECORDING, REPLAYED
from mlops_assets_tests.tracking.conftest import TrackerFactory
from mlops_assets_tests.tracking.fakes import InterceptingClient, SimulatedCrash
from mlops_assets_tests.tracking.helpers import (
    buffered_metrics,
    ledger_counts,
    mlflow_metrics,
    record_big_run,
)

WRITER_BATCH = 400
COMMITS_BEFORE_KILL = 4

# Records one run through the tracker, one metric batch per transaction, printing after each
# commit. With a batch count it finishes the run; without one it writes until killed.
WRITER = """
import sys
from mlops_assets.runtime import build_runtime
from mlops_assets.storage.mlflow_buffer import MetricPoint

batch = int(sys.argv[1])
batches = int(sys.argv[2]) if len(sys.argv) > 2 else None
tracker = build_runtime(tracking_uri="http://127.0.0.1:9").tracker
with tracker.start_run(run_name="writer") as run:
    run.log_params({"batch": batch})
    print("run", run.local_run_id, flush=True)
    b = 0
    while batches is None or b < batches:
        first = b * batch
        run.log_metric_points(
            [MetricPoint("loss", float(i), 1_700_000_000_000 + i, i)
             for i in range(first, first + batch)]
        )
        b += 1
        print("committed", b, flush=True)
"""


def start_writer(*args: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


@pytest.mark.slow
def test_kill_9_of_the_writer_leaves_whole_transactions_and_a_writable_buffer(backend: str):
    writer = start_writer(WRITER_BATCH)
    try:
        assert writer.stdout is not None
        first = writer.stdout.readline().split()
        assert first[:1] == ["run"], writer.stderr.read() if writer.stderr else first
        killed_id = first[1]
        for _ in range(COMMITS_BEFORE_KILL):
            assert writer.stdout.readline().startswith("committed")
        # It keeps writing, so the kill most likely lands inside a transaction.
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL

    buffer = build_runtime().tracker.buffer
    killed = buffer.get(killed_id)
    assert killed is not None and killed.state == RECORDING
    assert buffer.params(killed_id) == {"batch": str(WRITER_BATCH)}
    rows = buffer.warehouse.query(
        "SELECT seq, key, value, timestamp_ms, step FROM mlops.mlflow_buffer_metrics "
        "WHERE local_run_id = :id ORDER BY seq",
        {"id": killed_id},
    )
    committed = len(rows)
    assert committed >= COMMITS_BEFORE_KILL * WRITER_BATCH
    assert committed % WRITER_BATCH == 0, "a transaction was half written"
    assert [r["seq"] for r in rows] == list(range(1, committed + 1))
    for r in rows:
        i = r["seq"] - 1
        assert (r["key"], r["value"], r["timestamp_ms"], r["step"]) == (
            "loss",
            float(i),
            1_700_000_000_000 + i,
            i,
        )
    # The dead recording is detected (its pid is gone), marked abandoned with the reason, and
    # no longer counted as pending or as unsent metrics.
    summary = buffer.summary()
    assert (summary.recording_runs, summary.pending_runs, summary.abandoned_runs) == (0, 0, 1)
    assert summary.pending_metrics == 0
    abandoned = buffer.get(killed_id)
    assert abandoned is not None and abandoned.state == ABANDONED
    assert f":{writer.pid}:" in (abandoned.abandoned_reason or ""), abandoned.abandoned_reason

    # Another process can write afterwards, and so can this one.
    after = start_writer(WRITER_BATCH, 2)
    out, err = after.communicate(timeout=120)
    assert after.returncode == 0, err
    new_id = out.split()[1]
    new_run = buffer.get(new_id)
    assert new_run is not None and new_run.state == PENDING
    assert ledger_counts(buffer.warehouse, new_id)["total"] == 2 * WRITER_BATCH
    buffer.add_params(killed_id, {"after_kill": 1})
    assert buffer.params(killed_id)["after_kill"] == "1"


def test_crash_after_part_of_a_claim_reached_a_file_store_sends_each_metric_once(
    backend: str, make_tracker: TrackerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The `file:` store appends whatever it is sent, so only the ledger prevents duplicates:
    claim a batch of metrics, deliver half, die without recording it, replay again."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setattr(tracking, "CLAIM_METRICS", 4000)
    uri = (tmp_path / "mlruns").as_uri()

    def crash_on_third(batch: int) -> None:
        if batch == 3:
            raise SimulatedCrash

    crashing = make_tracker(
        uri, client_factory=lambda u: InterceptingClient(MlflowClient(u, u), crash_on_third)
    )
    local_id = record_big_run(crashing, 4000, keys=4)

    with pytest.raises(SimulatedCrash):
        crashing.replay(local_id)

    warehouse = crashing.buffer.warehouse
    assert ledger_counts(warehouse, local_id) == {"total": 4000, "sent": 0, "in_flight": 4000}
    run_id = crashing.buffer.get(local_id).mlflow_run_id  # type: ignore[union-attr]
    client = MlflowClient(uri, uri)
    expected = buffered_metrics(warehouse, local_id)
    reached = mlflow_metrics(client, run_id, sorted(expected))
    assert sum(sum(c.values()) for c in reached.values()) == 2000  # half the claim got through
    # The dead replayer still holds the lease; it runs out (here: at once) before anyone resumes.
    held = crashing.buffer.get(local_id)
    assert held is not None and held.lease_owner == crashing.owner
    assert not make_tracker(uri).buffer.acquire(local_id, "someone-else")
    warehouse.execute(
        "UPDATE mlops.mlflow_buffer_runs SET lease_expires_at = 0 WHERE local_run_id = :id",
        {"id": local_id},
    )

    result = make_tracker(uri).replay(local_id)

    assert result.state == REPLAYED and result.metrics_sent == 2000
    assert ledger_counts(warehouse, local_id) == {"total": 4000, "sent": 4000, "in_flight": 0}
    after = mlflow_metrics(client, run_id, sorted(expected))
    assert after == expected
    assert max(max(c.values()) for c in after.values()) == 1
    assert make_tracker(uri).replay(local_id).state == REPLAYED  # idempotent once replayed
    assert mlflow_metrics(client, run_id, sorted(expected)) == expected
