"""Replays the MLflow write-ahead buffer once MLflow answers again.

Training never waits for MLflow: a run it could not deliver stays pending in the buffer under
its local id. Each tick of `mlflow_buffer_flush_sensor` looks at the buffer, asks the shared
circuit breaker whether MLflow may be called, and replays pending runs oldest first. The
replay itself writes the real MLflow ids into our tables. Every replayed run then gets one
refresh of the assets whose output carries MLflow context (`REFRESH_AFTER_REPLAY`), so a
materialization recorded after the ids are known exists; the `run_key` makes that refresh
happen once per run. A run MLflow refused (a 4xx) is parked, reported in the tick and alerted.

The cursor is a JSON summary of the last tick (what was replayed, what is still waiting, the
breaker state) plus a running total, for the sensor page in the UI.
"""

import json
import time
from dataclasses import asdict, dataclass

import dagster as dg

from mlops_assets.lib.redact import redact
from mlops_assets.resources import MLflowResource
from mlops_assets.storage.tracking import MlflowTracker, ReplayResult

# Refreshed once per replayed run, for the run's model (partition). Production assets are
# partitioned by day and model; they read MLflow ids from the warehouse, which the replay
# already updated.
REFRESH_AFTER_REPLAY = ["training_baseline"]

MINIMUM_INTERVAL_SECONDS = 60
# training_run replays its own run as soon as it is recorded; until that attempt has failed,
# the sensor leaves the run alone this long after it finished (see `MlflowTracker.flush`).
REPLAY_GRACE_SECONDS = 120.0
# Dagster cancels a sensor evaluation after 60 s. Replay is resumable, so rather than being cut
# off mid-run the tick stops starting new runs once this budget is spent.
FLUSH_BUDGET_SECONDS = 40.0


@dataclass(frozen=True)
class FlushCursor:
    """What the last tick did (`replayed`, `metrics_sent`, `failed`, `parked`), what the buffer
    holds after it (`still_pending`, `parked_runs`, ...), and `replayed_total` over all ticks."""

    replayed_total: int = 0
    replayed: int = 0
    metrics_sent: int = 0
    failed: int = 0
    parked: int = 0
    parked_runs: int = 0
    still_pending: int = 0
    pending_metrics: int = 0
    oldest_pending_age_s: float | None = None
    breaker_state: str = "closed"
    evaluated_at: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> "FlushCursor":
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return cls()
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def restore_champion_alias(
    context: dg.SensorEvaluationContext, tracker: MlflowTracker, result: ReplayResult
) -> None:
    """The champion gate sets the MLflow alias only for runs MLflow already has. A run that
    became champion during the outage gets its alias here, if it is still the champion."""
    if not result.model_version:
        return
    rows = tracker.buffer.warehouse.query(
        "SELECT model_name FROM mlops.training_runs WHERE local_run_id = :id AND is_champion",
        {"id": result.local_run_id},
    )
    if not rows:
        return
    model_name = rows[0]["model_name"]
    try:
        tracker.set_champion(model_name, result.model_version)
    except Exception as error:  # noqa: BLE001 - advisory; our table decides who is champion
        context.log.warning(
            f"could not point the champion alias of {model_name} at version "
            f"{result.model_version}: " + redact(f"{type(error).__name__}: {error}")
        )
        return
    context.log.info(f"champion alias of {model_name} now points at version {result.model_version}")


def refresh_request(
    result_local_run_id: str, mlflow_run_id: str | None, model_name: str | None
) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"replayed-{result_local_run_id}",
        partition_key=model_name,
        asset_selection=[dg.AssetKey(key) for key in REFRESH_AFTER_REPLAY],
        tags={
            "mlops/local_run_id": result_local_run_id,
            "mlops/mlflow_run_id": mlflow_run_id or "",
            "mlops/reason": "mlflow_replay",
        },
    )


@dg.sensor(
    name="mlflow_buffer_flush_sensor",
    description=(
        "Replays training runs buffered while MLflow was unavailable, once the circuit breaker "
        "allows calls again, then refreshes the assets that carry MLflow ids."
    ),
    minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=REFRESH_AFTER_REPLAY,
)
def mlflow_buffer_flush_sensor(
    context: dg.SensorEvaluationContext, mlflow: MLflowResource
) -> dg.SensorResult:
    previous = FlushCursor.parse(context.cursor)
    tracker = mlflow.tracker()
    before = tracker.buffer.summary()
    breaker = tracker.breaker.current_state()

    def cursor(**changes: object) -> str:
        summary = tracker.buffer.summary()
        values = {
            "replayed_total": previous.replayed_total,
            "still_pending": summary.pending_runs,
            "pending_metrics": summary.pending_metrics,
            "parked_runs": summary.parked_runs,
            "oldest_pending_age_s": summary.oldest_pending_age_s,
            "breaker_state": tracker.breaker.current_state().state,
            "evaluated_at": time.time(),
            **changes,
        }
        return FlushCursor(**values).dump()  # type: ignore[arg-type]

    parked_note = ""
    if before.parked_runs:
        parked_ids = [r.local_run_id for r in before.runs if r.state == "parked"]
        shown = ", ".join(parked_ids[:3]) + (", ..." if len(parked_ids) > 3 else "")
        parked_note = f"; {before.parked_runs} parked run(s) need attention: {shown}"

    if before.pending_runs == 0:
        reason = f"nothing pending in the MLflow buffer{parked_note}"
        return dg.SensorResult(skip_reason=reason, cursor=cursor())

    if not tracker.breaker.allows_request():
        reason = (
            f"{before.pending_runs} run(s) pending ({before.pending_metrics} metrics), but the "
            f"MLflow circuit breaker is {breaker.state}; retry after "
            f"{tracker.breaker.retry_after():.0f}s; last error: {breaker.last_error or 'none'}"
            f"{parked_note}"
        )
        context.log.info(reason)
        return dg.SensorResult(skip_reason=reason, cursor=cursor())

    started = time.monotonic()
    report = tracker.flush(budget_s=FLUSH_BUDGET_SECONDS, min_age_s=REPLAY_GRACE_SECONDS)
    elapsed = time.monotonic() - started
    for result in report.replayed:
        context.log.info(
            f"replayed {result.local_run_id} into MLflow run {result.mlflow_run_id} "
            f"(experiment {result.mlflow_experiment_id}, model version "
            f"{result.model_version or 'none'}, {result.metrics_sent} metrics sent)"
        )
        restore_champion_alias(context, tracker, result)
    for result in report.parked:
        context.log.error(
            f"MLflow rejected {result.local_run_id}; parked until someone fixes it: {result.error}"
        )
    for result in report.busy:
        context.log.info(f"{result.local_run_id} skipped: {result.error}")
    for local_run_id in report.abandoned:
        context.log.warning(
            f"{local_run_id} marked abandoned: its recording process died before it finished"
        )
    for result in report.failed:
        context.log.warning(
            f"replay of {result.local_run_id} stopped ({result.metrics_sent} metrics sent, "
            f"resumes next tick): {result.error}"
        )
    context.log.info(
        f"flush took {elapsed:.1f}s: {len(report.replayed)} replayed, {len(report.parked)} "
        f"parked, {len(report.failed)} failed, {report.metrics_sent} metrics sent"
    )
    new_cursor = cursor(
        replayed_total=previous.replayed_total + len(report.replayed),
        replayed=len(report.replayed),
        metrics_sent=report.metrics_sent,
        failed=len(report.failed),
        parked=len(report.parked),
    )
    # The refreshed assets are partitioned by model: a run registered under no model (not a
    # training run) has no partition to refresh, and a request without one cannot launch.
    models = {r.local_run_id: _model_of(tracker, r.local_run_id) for r in report.replayed}
    requests = [
        refresh_request(r.local_run_id, r.mlflow_run_id, models[r.local_run_id])
        for r in report.replayed
        if models[r.local_run_id]
    ]
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)

    if report.skipped_reason:  # the buffer or the breaker changed since the checks above
        reason = f"flush skipped: {report.skipped_reason}"
    elif report.failed:
        reason = f"replay did not complete, will resume: {report.failed[0].error}"
    elif report.parked:
        reason = f"no run replayed; {len(report.parked)} parked by MLflow"
    else:
        reason = (
            f"{before.pending_runs} run(s) pending, all finished less than "
            f"{REPLAY_GRACE_SECONDS:.0f}s ago and not tried yet; left to the training run's "
            "own replay"
        )
    return dg.SensorResult(skip_reason=reason + parked_note, cursor=new_cursor)


def _model_of(tracker: MlflowTracker, local_run_id: str) -> str | None:
    run = tracker.buffer.get(local_run_id)
    return run.registered_model_name if run else None


sensors = [mlflow_buffer_flush_sensor]
