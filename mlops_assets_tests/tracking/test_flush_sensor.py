"""The buffer flush sensor, tick by tick, against an in-memory MLflow (embedded warehouse)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import dagster as dg
import pytest

from mlops_assets.defs.partitions import MODELS
from mlops_assets.defs.tracking import sensors as sensors_module
from mlops_assets.defs.tracking.sensors import (
    REFRESH_AFTER_REPLAY,
    mlflow_buffer_flush_sensor,
    sensors,
)
from mlops_assets.defs.training import assets as training_assets
from mlops_assets.lib.contract import ModelCatalog
from mlops_assets.resources import MLflowResource, WarehouseResource
from mlops_assets.storage import tracking
from mlops_assets.storage.mlflow_buffer import PENDING, REPLAYED, MetricPoint
from mlops_assets.storage.tracking import MlflowTracker
from mlops_assets_tests.tracking.conftest import TrackerFactory
from mlops_assets_tests.tracking.fakes import FakeMlflowClient

FAKE_URI = "http://mlflow.invalid:5000"
MODEL = "unit_model"


class FakeTrackerResource(MLflowResource):
    """The real resource type with its tracker swapped for one on a fake client."""

    key: str
    trackers: ClassVar[dict[str, MlflowTracker]] = {}

    def tracker(self) -> MlflowTracker:
        return self.trackers[self.key]


@pytest.fixture
def fake() -> FakeMlflowClient:
    return FakeMlflowClient()


@pytest.fixture
def tracker(make_tracker: TrackerFactory, fake: FakeMlflowClient) -> MlflowTracker:
    return make_tracker(FAKE_URI, client_factory=lambda uri: fake)


@pytest.fixture
def resources(tracker: MlflowTracker, mlops_home: Path, request: pytest.FixtureRequest):
    key = request.node.nodeid
    FakeTrackerResource.trackers[key] = tracker
    resource = FakeTrackerResource(warehouse=WarehouseResource(home=str(mlops_home)), key=key)
    yield {"mlflow": resource}
    del FakeTrackerResource.trackers[key]


def record(tracker: MlflowTracker, n_metrics: int, *, keys: int = 5, name: str = "r") -> str:
    """A buffered run like training_run's: params, tags, stepped metrics, a model directory."""
    with tracker.start_run(run_name=name, registered_model_name=MODEL, tags={"k": "v"}) as run:
        run.log_params({"alpha": 0.5, "n": n_metrics})
        points = [
            MetricPoint(f"m{i % keys}", i * 0.25, 1_700_000_000_000 + i, i // keys)
            for i in range(n_metrics)
        ]
        run.log_metric_points(points)
        model_dir = run.model_dir("model")
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "MLmodel").write_text("flavors: {}\n")
    return run.local_run_id


def buffered_points(tracker: MlflowTracker, local_run_id: str) -> set[tuple]:
    rows = tracker.buffer.warehouse.query(
        "SELECT key, value, timestamp_ms, step FROM mlops.mlflow_buffer_metrics "
        "WHERE local_run_id = :id",
        {"id": local_run_id},
    )
    return {(r["key"], r["value"], r["timestamp_ms"], r["step"]) for r in rows}


def tick(resources: dict, cursor: str | None = None) -> dg.SensorResult:
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        result = mlflow_buffer_flush_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def cursor_of(result: dg.SensorResult) -> dict:
    assert result.cursor is not None
    return json.loads(result.cursor)


def skip_text(result: dg.SensorResult) -> str:
    assert not result.run_requests
    assert result.skip_reason is not None
    return result.skip_reason.skip_message or ""


def test_sensor_is_exported_running_and_targets_the_refresh_assets():
    assert sensors == [mlflow_buffer_flush_sensor]
    assert mlflow_buffer_flush_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert mlflow_buffer_flush_sensor.minimum_interval_seconds == 60
    assert "mlflow" in mlflow_buffer_flush_sensor.required_resource_keys
    warehouse = WarehouseResource()
    defs = dg.Definitions(
        assets=[
            training_assets.training_dataset,
            training_assets.training_run,
            training_assets.training_baseline,
        ],
        sensors=sensors,
        resources={
            "warehouse": warehouse,
            "mlflow": MLflowResource(warehouse=warehouse),
            "models": ModelCatalog(),
        },
    )
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    selected = mlflow_buffer_flush_sensor.asset_selection.resolve(graph)  # type: ignore[union-attr]
    assert selected == {dg.AssetKey(k) for k in REFRESH_AFTER_REPLAY}
    # Requests name the model as partition key: every refreshed asset must be model-partitioned.
    for key in selected:
        assert graph.get(key).partitions_def == MODELS


def test_code_location_registers_the_sensor():
    from mlops_assets.definitions import defs as load_defs

    names = {s.name for s in load_defs().sensors or []}
    assert "mlflow_buffer_flush_sensor" in names, "add mlops_assets.defs.tracking.sensors"


def test_nothing_pending_skips_without_calling_mlflow(resources, fake: FakeMlflowClient):
    result = tick(resources)
    assert skip_text(result).startswith("nothing pending")
    assert cursor_of(result)["still_pending"] == 0
    assert fake.calls == []


def test_open_breaker_skips_with_state_error_and_retry_after(
    resources, tracker: MlflowTracker, fake: FakeMlflowClient
):
    local_id = record(tracker, 10)
    fake.down = True
    for _ in range(tracker.breaker.failure_threshold):
        assert not tracker.probe()
    calls_before = len(fake.calls)

    result = tick(resources, cursor=json.dumps({"replayed_total": 4}))

    text = skip_text(result)
    assert "circuit breaker is open" in text
    assert "Connection refused" in text  # the breaker's last error
    assert "retry after" in text
    assert "1 run(s) pending (10 metrics)" in text
    assert len(fake.calls) == calls_before, "an open breaker must not let the tick call MLflow"
    cursor = cursor_of(result)
    assert cursor["breaker_state"] == "open"
    assert cursor["still_pending"] == 1
    assert cursor["replayed_total"] == 4
    assert cursor["oldest_pending_age_s"] >= 0
    assert tracker.buffer.get(local_id).state == PENDING  # type: ignore[union-attr]


def test_pending_runs_are_replayed_and_each_gets_one_refresh_request(
    resources, tracker: MlflowTracker, fake: FakeMlflowClient
):
    local_ids = [record(tracker, 40 * (i + 1), name=f"r{i}") for i in range(3)]

    result = tick(resources, cursor=json.dumps({"replayed_total": 2}))

    assert [r.run_key for r in result.run_requests] == [f"replayed-{i}" for i in local_ids]
    for request in result.run_requests:
        assert request.asset_selection == [dg.AssetKey("training_baseline")]
        assert request.partition_key == MODEL
    cursor = cursor_of(result)
    assert cursor["replayed"] == 3
    assert cursor["replayed_total"] == 5
    assert cursor["metrics_sent"] == 40 + 80 + 120
    assert cursor["still_pending"] == 0
    assert cursor["oldest_pending_age_s"] is None
    assert cursor["breaker_state"] == "closed"
    for local_id in local_ids:
        buffered = tracker.buffer.get(local_id)
        assert buffered is not None and buffered.state == REPLAYED
        run = fake.run_for(local_id)
        assert buffered.mlflow_run_id == run.run_id
        counts = fake.metric_counts(run.run_id)
        assert set(counts) == buffered_points(tracker, local_id)
        assert set(counts.values()) == {1}
        assert run.params == {"alpha": "0.5", "n": str(len(counts))}
        assert run.status == "FINISHED"
        assert "model/MLmodel" in run.artifacts
    assert [v.run_id for v in fake.registered[MODEL]] == [fake.run_for(i).run_id for i in local_ids]

    again = tick(resources, cursor=result.cursor)
    assert skip_text(again).startswith("nothing pending")
    assert cursor_of(again)["replayed_total"] == 5


def test_a_replayed_run_of_no_model_requests_no_refresh(
    resources, tracker: MlflowTracker, fake: FakeMlflowClient
):
    with tracker.start_run(run_name="ad-hoc", tags={"k": "v"}) as run:
        run.log_metrics({"m": 1.0})
    model_id = record(tracker, 10, name="model-run")

    result = tick(resources)

    assert [(r.run_key, r.partition_key) for r in result.run_requests] == [
        (f"replayed-{model_id}", MODEL)
    ]
    assert cursor_of(result)["replayed"] == 2
    assert tracker.buffer.get(run.local_run_id).state == REPLAYED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fail_after", "answer_lost"),
    [
        pytest.param(0, True, id="first-batch-stored-answer-lost"),
        pytest.param(3, False, id="mid-claim-request-lost"),
        pytest.param(3, True, id="mid-claim-answer-lost"),
        pytest.param(4, False, id="claim-boundary-request-lost"),
    ],
)
def test_replay_that_fails_half_way_resumes_with_every_metric_once(
    resources,
    tracker: MlflowTracker,
    fake: FakeMlflowClient,
    monkeypatch: pytest.MonkeyPatch,
    fail_after: int,
    answer_lost: bool,
):
    # Claims of 2,000 metrics sent in batches of 1,000: 5,500 metrics take batches 1-2 (claim
    # one), 3-4 (claim two) and 5-6 (claim three). "answer lost": MLflow stored the failing
    # batch but the client never heard back, so only a check against MLflow avoids resending.
    monkeypatch.setattr(tracking, "CLAIM_METRICS", 2000)
    local_id = record(tracker, 5500)
    fake.fail_metric_batches_after = fail_after
    fake.store_failing_batch = answer_lost

    first = tick(resources)

    assert "will resume" in skip_text(first)
    cursor = cursor_of(first)
    assert (cursor["failed"], cursor["replayed"], cursor["still_pending"]) == (1, 0, 1)
    buffered = tracker.buffer.get(local_id)
    assert buffered is not None and buffered.state == PENDING
    assert buffered.attempts == 1 and "Connection reset" in (buffered.last_error or "")
    run = fake.run_for(local_id)
    assert run.status == "RUNNING"
    stored = sum(fake.metric_counts(run.run_id).values())
    assert stored == min(5500, (fail_after + answer_lost) * 1000)

    fake.fail_metric_batches_after = None
    second = tick(resources, cursor=first.cursor)

    assert [r.run_key for r in second.run_requests] == [f"replayed-{local_id}"]
    cursor = cursor_of(second)
    assert (cursor["replayed"], cursor["replayed_total"], cursor["still_pending"]) == (1, 1, 0)
    counts = fake.metric_counts(run.run_id)
    assert set(counts) == buffered_points(tracker, local_id)
    assert len(counts) == 5500
    assert max(counts.values()) == 1, "a metric reached MLflow twice"
    assert fake.run_for(local_id).status == "FINISHED"
    assert len(fake.registered[MODEL]) == 1


def test_outage_stops_the_tick_and_later_runs_wait_their_turn(
    resources, tracker: MlflowTracker, fake: FakeMlflowClient
):
    first_id, second_id = record(tracker, 30, name="a"), record(tracker, 30, name="b")
    fake.down = True

    result = tick(resources)

    assert "will resume" in skip_text(result)
    assert cursor_of(result)["still_pending"] == 2
    assert tracker.buffer.get(first_id).attempts == 1  # type: ignore[union-attr]
    assert tracker.buffer.get(second_id).attempts == 0, "tried a run after an outage"  # type: ignore[union-attr]


def test_rejected_run_is_parked_reported_and_does_not_block_the_next(
    resources, tracker: MlflowTracker, fake: FakeMlflowClient
):
    bad_id = record(tracker, 20, name="bad")
    good_id = record(tracker, 20, name="good")
    # MLflow already holds the bad run with a different value for one of its params: a 400.
    experiment_id = fake.create_experiment(tracker.config.experiment_name)
    created = fake.create_run(experiment_id, tags={"mlops.local_run_id": bad_id})
    fake.runs[created.info.run_id].params["alpha"] = "0.9"

    result = tick(resources)

    assert [r.run_key for r in result.run_requests] == [f"replayed-{good_id}"]
    cursor = cursor_of(result)
    assert (cursor["replayed"], cursor["parked"], cursor["parked_runs"]) == (1, 1, 1)
    parked = tracker.buffer.get(bad_id)
    assert parked is not None and parked.state == "parked"
    assert "Changing param values is not allowed" in (parked.last_error or "")

    later = tick(resources, cursor=result.cursor)
    assert f"1 parked run(s) need attention: {bad_id}" in skip_text(later)


def test_fresh_runs_are_left_to_the_training_runs_own_replay(
    resources, tracker: MlflowTracker, fake: FakeMlflowClient, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(sensors_module, "REPLAY_GRACE_SECONDS", 120.0)
    old_id = record(tracker, 10, name="old")
    tracker.buffer.warehouse.execute(
        "UPDATE mlops.mlflow_buffer_runs SET end_time_ms = end_time_ms - 600000 "
        "WHERE local_run_id = :id",
        {"id": old_id},
    )
    fresh_id = record(tracker, 10, name="fresh")
    given_up_id = record(tracker, 10, name="given-up")
    tracker.buffer.record_attempt(given_up_id, "ConnectionError: refused", owner=tracker.owner)

    result = tick(resources)

    assert [r.run_key for r in result.run_requests] == [
        f"replayed-{old_id}",
        f"replayed-{given_up_id}",
    ]
    assert cursor_of(result)["still_pending"] == 1
    assert tracker.buffer.get(fresh_id).attempts == 0  # type: ignore[union-attr]
    assert len(fake.runs) == 2

    only_fresh = tick(resources, cursor=result.cursor)
    assert "left to the training run's own replay" in skip_text(only_fresh)
