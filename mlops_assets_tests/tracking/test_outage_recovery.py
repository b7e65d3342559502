"""MLflow outages against a real `mlflow server`, on both warehouse backends.

The server is the session's; tests that stop it start it again before they end.
"""

from __future__ import annotations

import json
import uuid

import dagster as dg
import pytest
from mlflow.tracking import MlflowClient

from mlops_assets.defs.tracking import mlflow_buffer_flush_sensor
from mlops_assets.resources import MLflowResource, WarehouseResource
from mlops_assets.runtime import build_runtime
from mlops_assets.storage import tracking
from mlops_assets.storage.mlflow_buffer import PARKED, PENDING
from mlops_assets.storage.models import SPEC_FILE
from mlops_assets_tests.tracking.conftest import TrackerFactory
from mlops_assets_tests.tracking.fakes import InterceptingClient
from mlops_assets_tests.tracking.helpers import (
    assert_mlflow_holds_the_buffer_exactly_once,
    ledger_counts,
    materialize_training,
    record_big_run,
    training_output,
)

pytestmark = [pytest.mark.mlflow_server]

BIG_RUN_METRICS = 25_000
KILL_BEFORE_BATCH = 15  # of 25; with claims of 10 batches, mid-way through the second claim


@pytest.fixture
def server_env(mlflow_server, monkeypatch: pytest.MonkeyPatch, experiment_name: str):
    mlflow_server.start()
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", mlflow_server.uri)
    # Generous while the server is up: on a busy two-core machine a healthy server can take
    # more than a second to answer; the outage phases set 1 s.
    monkeypatch.setenv("MLOPS_MLFLOW_CONNECTION_TIMEOUT", "30")
    return mlflow_server


def sensor_tick(cursor: str | None = None) -> dg.SensorResult:
    warehouse = WarehouseResource()
    resources = {"mlflow": MLflowResource(warehouse=warehouse)}
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        result = mlflow_buffer_flush_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def tick_until_drained(max_ticks: int = 5) -> tuple[list[tuple[str, str | None]], dict]:
    """Ticks until nothing is pending (a slow machine can spend a tick's time budget on one
    run); returns every (run key, partition key) requested and the last cursor."""
    keys: list[tuple[str, str | None]] = []
    cursor: str | None = None
    for _ in range(max_ticks):
        result = sensor_tick(cursor)
        keys += [(r.run_key, r.partition_key) for r in result.run_requests if r.run_key]
        cursor = result.cursor
        state = json.loads(cursor or "{}")
        assert state["failed"] == 0, state
        if state["still_pending"] == 0:
            return keys, state
    raise AssertionError(f"still pending after {max_ticks} ticks: {cursor}")


@pytest.mark.slow
def test_server_killed_mid_replay_then_training_while_down_recovers_exactly_once(
    backend: str,
    server_env,
    make_tracker: TrackerFactory,
    monkeypatch: pytest.MonkeyPatch,
):
    """One outage, two ways in: the server dies during a replay of 25,000 metrics, then a
    training run materializes while it is still down. After a restart one sensor tick puts
    both runs into MLflow exactly once, and our tables learn the real ids."""
    server = server_env
    monkeypatch.setattr(tracking, "CLAIM_METRICS", 10_000)
    model_name = f"outage_{backend}_{uuid.uuid4().hex[:8]}"

    def kill_server(batch: int) -> None:
        if batch == KILL_BEFORE_BATCH:
            server.stop()

    tracker = make_tracker(
        server.uri,
        client_factory=lambda uri: InterceptingClient(MlflowClient(uri, uri), kill_server),
    )
    warehouse = tracker.buffer.warehouse
    big_id = record_big_run(tracker, BIG_RUN_METRICS)
    with dg.instance_for_test() as instance:
        try:
            interrupted = tracker.replay(big_id)

            assert server.proc is None, f"server not killed during the replay: {interrupted}"
            assert interrupted.state == PENDING
            # Refused, or reset when the kill lands while a request is in flight.
            assert any(
                text in (interrupted.error or "")
                for text in ("Connection refused", "Connection reset", "Connection aborted")
            ), interrupted.error
            # First claim acknowledged; second claimed, partly delivered, not acknowledged.
            assert ledger_counts(warehouse, big_id) == {
                "total": BIG_RUN_METRICS,
                "sent": 10_000,
                "in_flight": 10_000,
            }

            monkeypatch.setenv("MLOPS_MLFLOW_CONNECTION_TIMEOUT", "1")
            trained = training_output(materialize_training(instance, model_name))

            assert trained.tracking_status == "PENDING"
            assert trained.mlflow_run_id is None and trained.mlflow_experiment_id is None
            row = warehouse.query(
                "SELECT tracking_status, mlflow_run_id FROM mlops.training_runs "
                "WHERE local_run_id = :id",
                {"id": trained.local_run_id},
            )
            assert row == [{"tracking_status": "PENDING", "mlflow_run_id": None}]
        finally:
            server.start()
        monkeypatch.setenv("MLOPS_MLFLOW_CONNECTION_TIMEOUT", "30")

        run_keys, cursor = tick_until_drained()

        # Both replayed; only the training run has a model partition to refresh.
        assert run_keys == [(f"replayed-{trained.local_run_id}", model_name)]
        assert cursor["replayed_total"] == 2
        client = server.client()
        assert_mlflow_holds_the_buffer_exactly_once(client, tracker.buffer, big_id)
        run = assert_mlflow_holds_the_buffer_exactly_once(
            client, tracker.buffer, trained.local_run_id
        )
        run_id, experiment_id = run.info.run_id, run.info.experiment_id
        assert "model" in {a.path for a in client.list_artifacts(run_id)}
        # The feature spec travels inside the model directory, next to MLmodel.
        model_files = {a.path for a in client.list_artifacts(run_id, "model")}
        assert {"model/MLmodel", f"model/{SPEC_FILE}"} <= model_files
        versions = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
        assert len(versions) == 1
        version = str(versions[0].version)
        assert tracker.buffer.get(trained.local_run_id).model_version == version  # type: ignore[union-attr]
        # It became champion while MLflow was down; the replay gives MLflow the alias too.
        assert client.get_model_version_by_alias(model_name, "champion").version == version

        expected_ids = {
            "mlflow_run_id": run_id,
            "mlflow_experiment_id": experiment_id,
            "model_version": version,
        }
        training_row = warehouse.query(
            "SELECT mlflow_run_id, mlflow_experiment_id, model_version, tracking_status "
            "FROM mlops.training_runs WHERE local_run_id = :id",
            {"id": trained.local_run_id},
        )
        assert training_row == [{**expected_ids, "tracking_status": "TRACKED"}]
        baseline_sql = (
            "SELECT baseline_mlflow_run_id AS mlflow_run_id, mlflow_experiment_id, "
            "model_version FROM mlops.training_baselines WHERE local_run_id = :id"
        )
        assert warehouse.query(baseline_sql, {"id": trained.local_run_id}) == [expected_ids]

        # The refresh the tick asked for must not put the stale "pending" ids back.
        materialize_training(instance, model_name, selection=["training_baseline"])
        assert warehouse.query(baseline_sql, {"id": trained.local_run_id}) == [expected_ids]


def test_rejected_run_is_parked_with_an_alert_and_later_runs_still_replay(
    backend: str, server_env, make_tracker: TrackerFactory
):
    server = server_env
    tracker = make_tracker(server.uri)
    with tracker.start_run(run_name="too-wide", registered_model_name="parked_model") as run:
        run.log_params({"features": "a,b,c"})
        # MLflow accepts letters, digits and `_-. :/` in names; the server answers 400.
        run.log_metrics({"auc": 0.71, "roi%": 3.5})
    rejected = run.local_run_id
    accepted = record_big_run(tracker, 200, model="later_model")

    tick = sensor_tick()

    assert [(r.run_key, r.partition_key) for r in tick.run_requests] == [
        (f"replayed-{accepted}", "later_model")
    ]
    cursor = json.loads(tick.cursor or "{}")
    assert (cursor["replayed"], cursor["parked"], cursor["parked_runs"]) == (1, 1, 1)
    parked = tracker.buffer.get(rejected)
    assert parked is not None and parked.state == PARKED
    assert "INVALID_PARAMETER_VALUE" in (parked.last_error or "")
    assert_mlflow_holds_the_buffer_exactly_once(server.client(), tracker.buffer, accepted)
    alerts = tracker.buffer.warehouse.query(
        "SELECT a.kind, a.model_name, a.metric, a.severity, a.status, a.message, e.event_type "
        "FROM mlops.ml_performance_alerts a JOIN mlops.alert_events e USING (alert_id) "
        "WHERE a.training_local_run_id = :id",
        {"id": rejected},
    )
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert["kind"], alert["model_name"], alert["status"]) == (
        "mlflow_replay",
        "parked_model",
        "open",
    )
    assert alert["event_type"] == "opened"
    assert rejected in alert["message"] and "INVALID_PARAMETER_VALUE" in alert["message"]
    # A refusal proves MLflow is up: it must not count towards opening the breaker.
    state = build_runtime().breaker.current_state()
    assert (state.state, state.failure_count) == ("closed", 0)
