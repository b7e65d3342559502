"""MLflow tracking behind a circuit breaker, with a durable write-ahead buffer and replay.

Every run is written to the buffer first (`RunRecorder`) and then replayed into MLflow
(`MlflowTracker.replay`). When MLflow is up the replay happens right away in the same process;
when it is down, or the breaker is open, the run stays pending under its local id and the flush
sensor replays it later. One code path for both cases means the outage path is the everyday
path, and is exercised on every training run.

Replay is a sequence of idempotent steps recorded in the buffer (find-or-create the run by the
`mlops.local_run_id` tag, params, tags, metrics with a claim/sent ledger, artifacts, model
version, end status), so a replay interrupted anywhere resumes without duplicates, even on a
`file:` store that would append a metric twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_assets.lib.breaker import CircuitBreaker, CircuitOpenError
from mlops_assets.lib.redact import redact, strip_credentials
from mlops_assets.storage.mlflow_buffer import (
    ABANDONED,
    PARKED,
    PENDING,
    REPLAYED,
    BufferedRun,
    LeaseLostError,
    MetricPoint,
    MlflowBuffer,
    new_lease_owner,
    now_ms,
)

LOCAL_RUN_TAG = "mlops.local_run_id"


def registered_run_key(model_name: str, mlflow_run_id: str) -> str:
    """The platform's key (`local_run_id`) of a model registered elsewhere: per declared model
    and MLflow run, since two declarations may monitor the same registered version."""
    return f"registered-{model_name}-{mlflow_run_id}"


KIND_TAG = "mlops.kind"
PARENT_LOCAL_RUN_TAG = "mlops.parent_local_run_id"
METRICS_PER_BATCH = 1000  # MLflow's own per-request limit for log_batch
PARAMS_PER_BATCH = 100
# Metrics claimed per ledger transaction (25 log_batch calls). Each claim costs a transaction
# and two breaker reads (about 25 ms each on the embedded engine); a crash leaves at most one
# claim to check against MLflow on resume.
CLAIM_METRICS = 25_000


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str
    experiment_name: str
    artifact_root: Path
    max_retries: int = 0
    retry_delay: int = 1
    connection_timeout: float = 5.0
    ui_url: str | None = None

    @property
    def is_local_store(self) -> bool:
        return self.tracking_uri.startswith(("sqlite:", "file:", "/"))

    @property
    def link_base(self) -> str | None:
        if self.ui_url:
            return self.ui_url.rstrip("/")
        if self.tracking_uri.startswith("http"):
            return strip_credentials(self.tracking_uri).rstrip("/")
        return None

    def run_link(self, experiment_id: str | None, run_id: str | None) -> str | None:
        if not (self.link_base and experiment_id and run_id):
            return None
        return f"{self.link_base}/#/experiments/{experiment_id}/runs/{run_id}"


def configure_mlflow_http(config: MlflowConfig) -> None:
    """Cut MLflow's own HTTP retries down to ours so the breaker, not urllib3, decides.

    With MLflow's defaults one call against a stopped server blocked 247 s here (7 retries,
    backoff factor 2, 120 s timeout). MLflow reads these variables on every request.
    """
    # MLflow parses the backoff factor and the timeout as int ("0.5" or "5.0" makes every
    # request raise ValueError), so round fractional seconds up rather than down to zero.
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(config.max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(math.ceil(config.retry_delay))
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.ceil(config.connection_timeout)))
    # Ending a run over HTTP otherwise prints two links to stdout and costs one more request.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


def is_outage(error: BaseException) -> bool:
    """Does this error say MLflow is unavailable (as opposed to our request being wrong)?"""
    from mlflow.exceptions import MlflowException

    if isinstance(error, CircuitOpenError):
        return True
    if isinstance(error, MlflowException):
        status = error.get_http_status_code()
        return status >= 500 or status == 429
    import requests

    return isinstance(error, requests.RequestException | OSError | TimeoutError)


def is_rejection(error: BaseException) -> bool:
    """MLflow answered and refused the request (a 4xx other than 429): retrying cannot help."""
    from mlflow.exceptions import MlflowException

    return isinstance(error, MlflowException) and not is_outage(error)


@dataclass(frozen=True)
class ReplayResult:
    local_run_id: str
    state: str  # replayed | pending | parked | abandoned
    mlflow_experiment_id: str | None = None
    mlflow_run_id: str | None = None
    model_version: str | None = None
    metrics_sent: int = 0
    error: str | None = None
    # Set when another process holds the run's lease (it is replaying it now); state pending.
    leased_by: str | None = None


@dataclass
class FlushReport:
    replayed: list[ReplayResult] = field(default_factory=list)
    failed: list[ReplayResult] = field(default_factory=list)
    parked: list[ReplayResult] = field(default_factory=list)
    busy: list[ReplayResult] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    skipped_reason: str | None = None

    @property
    def metrics_sent(self) -> int:
        return sum(r.metrics_sent for r in self.replayed + self.failed)


class RunRecorder:
    """Collects one training run into the buffer. Obtain it from `MlflowTracker.start_run`."""

    def __init__(self, tracker: MlflowTracker, local_run_id: str, artifact_dir: Path):
        self.tracker = tracker
        self.local_run_id = local_run_id
        self.artifact_dir = artifact_dir

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.tracker.buffer.add_params(self.local_run_id, params)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tracker.buffer.add_tags(self.local_run_id, tags)

    def log_metrics(
        self, metrics: Mapping[str, float], *, step: int = 0, timestamp_ms: int | None = None
    ) -> None:
        ts = timestamp_ms or now_ms()
        self.tracker.buffer.add_metrics(
            self.local_run_id, [MetricPoint(k, float(v), ts, step) for k, v in metrics.items()]
        )

    def log_metric_points(self, points: list[MetricPoint]) -> int:
        return self.tracker.buffer.add_metrics(self.local_run_id, points)

    def model_dir(self, artifact_path: str = "model") -> Path:
        """Directory to save the model into; it is uploaded as artifact `artifact_path`."""
        self.tracker.buffer.set_model_artifact(self.local_run_id, artifact_path)
        return self.artifact_dir / artifact_path


class MlflowTracker:
    def __init__(
        self,
        config: MlflowConfig,
        buffer: MlflowBuffer,
        breaker: CircuitBreaker,
        client_factory: Any = None,
    ):
        self.config = config
        self.buffer = buffer
        self.breaker = breaker
        self._client_factory = client_factory
        self._client: Any = None
        # Who this tracker is when it holds a run's lease (recording or replaying).
        self.owner = new_lease_owner()
        configure_mlflow_http(config)

    # ------------------------------------------------------------------ client

    @property
    def client(self) -> Any:
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory(self.config.tracking_uri)
            else:
                from mlflow.tracking import MlflowClient

                self._client = MlflowClient(
                    tracking_uri=self.config.tracking_uri, registry_uri=self.config.tracking_uri
                )
        return self._client

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.breaker.call(fn, *args, **kwargs)

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        """One breaker admission for a group of calls (a burst of log_batch requests)."""
        self.breaker.before_call()
        try:
            yield
        except BaseException as error:
            self.breaker.record_failure(error) if isinstance(error, Exception) else None
            raise
        else:
            self.breaker.record_success()

    # ------------------------------------------------------------------ recording

    @contextlib.contextmanager
    def start_run(
        self,
        *,
        run_name: str,
        registered_model_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> Iterator[RunRecorder]:
        """Record a run into the buffer; on exit it is finished (FAILED if the block raised)."""
        local_run_id = f"local-{uuid.uuid4().hex[:20]}"
        artifact_dir = self.config.artifact_root / local_run_id
        artifact_dir.mkdir(parents=True, exist_ok=True)
        self.buffer.open_run(
            local_run_id=local_run_id,
            experiment_name=self.config.experiment_name,
            run_name=run_name,
            registered_model_name=registered_model_name,
            artifact_dir=str(artifact_dir),
            start_time_ms=now_ms(),
            owner=self.owner,
        )
        recorder = RunRecorder(self, local_run_id, artifact_dir)
        recorder.set_tags({LOCAL_RUN_TAG: local_run_id, "mlflow.runName": run_name, **(tags or {})})
        try:
            yield recorder
        except BaseException:
            self.buffer.finish(
                local_run_id, status="FAILED", end_time_ms=now_ms(), owner=self.owner
            )
            raise
        self.buffer.finish(local_run_id, status="FINISHED", end_time_ms=now_ms(), owner=self.owner)

    def log_monitoring_artifact(
        self,
        *,
        model_name: str,
        local_run_id: str,
        day: dt.date,
        path: Path,
        mlflow_run_id: str | None = None,
    ) -> ReplayResult:
        """Log a monitoring file (a drift report) to its own MLflow run, one per training run
        and day, tagged with the training run as parent; the training run stays finished.

        The monitoring run goes through the buffer like any run (replayed later when MLflow is
        down). A rerun of the same day replaces that day's file and uploads only that run."""
        parent = self.buffer.get(local_run_id)
        # A model registered elsewhere has no buffered run (its key is
        # `registered_run_key(model, MLflow run id)`): its monitoring runs go to the platform's
        # experiment, tagged with the registered run as parent.
        experiment = parent.experiment_name if parent else self.config.experiment_name
        parent_mlflow_id = parent.mlflow_run_id if parent else (mlflow_run_id or local_run_id)
        monitor_id = f"monitor-{local_run_id.removeprefix('local-')}-{day:%Y%m%d}"
        artifact_dir = self.config.artifact_root / monitor_id
        artifact_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, artifact_dir / path.name)
        tags = {
            LOCAL_RUN_TAG: monitor_id,
            KIND_TAG: "monitoring",
            PARENT_LOCAL_RUN_TAG: local_run_id,
            "mlops.model_name": model_name,
            "mlops.monitoring_day": day.isoformat(),
            "mlflow.runName": f"monitoring-{model_name}-{day:%Y-%m-%d}",
        }
        if parent_mlflow_id:
            tags["mlflow.parentRunId"] = parent_mlflow_id
        if self.buffer.get(monitor_id) is None:
            self.buffer.open_run(
                local_run_id=monitor_id,
                experiment_name=experiment,
                run_name=tags["mlflow.runName"],
                registered_model_name=None,
                artifact_dir=str(artifact_dir),
                start_time_ms=now_ms(),
                owner=self.owner,
            )
            self.buffer.add_tags(monitor_id, tags)
            self.buffer.finish(
                monitor_id, status="FINISHED", end_time_ms=now_ms(), owner=self.owner
            )
        else:
            self.buffer.reopen_artifacts(monitor_id)
        result = self.replay(monitor_id)
        if result.state == REPLAYED:
            # Uploaded: MLflow holds the report, so this host keeps no copy of its own.
            shutil.rmtree(artifact_dir, ignore_errors=True)
        return result

    # ------------------------------------------------------------------ replay

    def probe(self) -> bool:
        """One cheap call through the breaker; True when MLflow answered."""
        try:
            self._call(self.client.search_experiments, max_results=1)
        except Exception:  # noqa: BLE001 - any failure means "not reachable now"
            return False
        return True

    def replay(self, local_run_id: str) -> ReplayResult:
        """Copy one buffered run into MLflow; safe to repeat and to resume after a crash.

        Only the holder of the run's lease writes to MLflow, so concurrent replays (the sensor,
        `mlops-assets flush`, a training run) converge on one MLflow run and one model version.
        Outages leave the run pending and MLflow's refusals park it; any other error (a
        warehouse failure, a bug) is raised, with the lease released so the run stays
        claimable."""
        run = self.buffer.get(local_run_id)
        if run is None:
            raise KeyError(f"no buffered run {local_run_id!r}")
        if run.state in (REPLAYED, PARKED, ABANDONED):
            return _settled(run)
        if not self.buffer.acquire(local_run_id, self.owner):
            now = self.buffer.get(local_run_id)
            assert now is not None
            if now.state in (REPLAYED, PARKED, ABANDONED):
                return _settled(now)
            return ReplayResult(
                local_run_id,
                now.state,
                error=f"being replayed by {now.lease_owner}",
                leased_by=now.lease_owner or "unknown",
            )
        sent = 0
        try:
            experiment_id, run_id = self._ensure_run(run)
            run = self.buffer.get(local_run_id)  # type: ignore[assignment]
            assert run is not None
            if not run.params_done:
                self._send_params(run_id, self.buffer.params(local_run_id))
                self.buffer.set_flag(local_run_id, "params_done")
            if not run.tags_done:
                self._send_tags(run_id, self.buffer.tags(local_run_id))
                self.buffer.set_flag(local_run_id, "tags_done")
            self.buffer.renew(local_run_id, self.owner)
            sent = self._send_metrics(local_run_id, run_id)
            if not run.artifacts_done and run.artifact_dir and Path(run.artifact_dir).exists():
                self.buffer.renew(local_run_id, self.owner)
                if any(Path(run.artifact_dir).iterdir()):
                    self._call(self.client.log_artifacts, run_id, run.artifact_dir)
                self.buffer.set_flag(local_run_id, "artifacts_done")
            version = run.model_version
            if run.registered_model_name and run.model_artifact_path and not run.model_registered:
                version = self._register(run, run_id)
                self.buffer.set_model_version(local_run_id, version)
            if not run.run_terminated:
                self._call(self.client.set_terminated, run_id, run.run_status, run.end_time_ms)
                self.buffer.set_flag(local_run_id, "run_terminated")
            self.buffer.renew(local_run_id, self.owner)
            self.buffer.complete(
                local_run_id, experiment_id=experiment_id, run_id=run_id, model_version=version
            )
            return ReplayResult(
                local_run_id, REPLAYED, experiment_id, run_id, version, metrics_sent=sent
            )
        except LeaseLostError as error:
            return ReplayResult(
                local_run_id, PENDING, metrics_sent=sent, error=str(error), leased_by="another"
            )
        except Exception as error:
            text = redact(f"{type(error).__name__}: {error}")[:1000]
            if is_rejection(error):
                self.buffer.park(local_run_id, text)
                return ReplayResult(local_run_id, PARKED, metrics_sent=sent, error=text)
            if is_outage(error):
                self.buffer.record_attempt(local_run_id, text, owner=self.owner)
                return ReplayResult(local_run_id, PENDING, metrics_sent=sent, error=text)
            # Not MLflow's availability: a bug or our own storage. Fail loudly; whoever comes
            # next may claim the run (if the warehouse is what failed, the lease just expires).
            with contextlib.suppress(Exception):
                self.buffer.release(local_run_id, self.owner)
            raise

    def flush(
        self,
        *,
        limit: int | None = None,
        budget_s: float | None = None,
        min_age_s: float = 0.0,
    ) -> FlushReport:
        """Replay pending runs oldest first; stop at the first outage (the rest would fail) or
        once `budget_s` is spent. A run another process is replaying (it holds the lease) is
        skipped and reported as busy.

        A run nobody has tried yet that finished less than `min_age_s` ago is probably being
        replayed by the training run that recorded it (which holds its lease); it is left
        alone. A failed attempt (counted in the buffer) means the training run gave up, and
        the caller takes over at once. Recordings whose process died are marked abandoned
        first (`FlushReport.abandoned`)."""
        report = FlushReport()
        report.abandoned = self.buffer.reap_dead_recordings()
        pending = self.buffer.pending(limit)
        if not pending:
            report.skipped_reason = "nothing pending"
            return report
        if not self.breaker.allows_request():
            state = self.breaker.current_state()
            report.skipped_reason = f"circuit breaker {state.state}: {state.last_error or ''}"
            return report
        deadline = time.monotonic() + budget_s if budget_s is not None else None
        young_after_ms = (time.time() - min_age_s) * 1000
        for run in pending:
            fresh = run.end_time_ms is not None and run.end_time_ms > young_after_ms
            if min_age_s and fresh and run.attempts == 0:
                continue
            if deadline is not None and time.monotonic() >= deadline:
                break
            result = self.replay(run.local_run_id)
            if result.state == REPLAYED:
                report.replayed.append(result)
            elif result.state == PARKED:
                report.parked.append(result)
            elif result.leased_by or result.state == ABANDONED:
                report.busy.append(result)
            else:
                report.failed.append(result)
                break
        return report

    # ------------------------------------------------------------------ replay steps

    def _ensure_run(self, run: BufferedRun) -> tuple[str, str]:
        if run.mlflow_run_id and run.mlflow_experiment_id:
            return run.mlflow_experiment_id, run.mlflow_run_id
        experiment_id = self._ensure_experiment(run.experiment_name)
        # A replay that crashed after create_run (or a create_run whose answer was lost) left a
        # run in MLflow: find it by our tag instead of creating a ghost duplicate.
        found = self._call(
            self.client.search_runs,
            [experiment_id],
            filter_string=f"tags.`{LOCAL_RUN_TAG}` = '{_quote(run.local_run_id)}'",
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
        else:
            # Creating is the one step that is not idempotent: make sure we still hold the run.
            self.buffer.renew(run.local_run_id, self.owner)
            created = self._call(
                self.client.create_run,
                experiment_id,
                start_time=run.start_time_ms,
                tags={LOCAL_RUN_TAG: run.local_run_id},
                run_name=run.run_name,
            )
            run_id = created.info.run_id
        self.buffer.set_mlflow_ids(run.local_run_id, experiment_id=experiment_id, run_id=run_id)
        return experiment_id, run_id

    def _ensure_experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self._call(self.client.get_experiment_by_name, name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self.config.is_local_store:
            location = (self.config.artifact_root.parent / "mlflow-artifacts").as_uri()
        try:
            return self._call(self.client.create_experiment, name, artifact_location=location)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self._call(self.client.get_experiment_by_name, name).experiment_id

    def _send_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            self._call(self.client.log_batch, run_id, params=items[i : i + PARAMS_PER_BATCH])

    def _send_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, v) for k, v in tags.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            self._call(self.client.log_batch, run_id, tags=items[i : i + PARAMS_PER_BATCH])

    def _send_metrics(self, local_run_id: str, run_id: str) -> int:
        sent = 0
        # (first, last) seq of metrics MLflow has acknowledged that the ledger does not yet
        # mark sent; the next claim records them in its own transaction.
        acknowledged: tuple[int, int] | None = None
        in_flight = self.buffer.in_flight_metrics(local_run_id)
        if in_flight:
            # A previous replay claimed these and may have sent some before dying: send only
            # what MLflow does not have.
            missing = self._not_in_mlflow(run_id, [p for _, p in in_flight])
            with self._guarded():
                self._log_points(run_id, missing)
            acknowledged = (in_flight[0][0], in_flight[-1][0])
            sent += len(missing)
        after = 0  # the first claim looks at every row; later ones start after the last claim
        while True:
            claimed = self.buffer.claim_metrics(
                local_run_id, CLAIM_METRICS, after_seq=after, sent=acknowledged
            )
            if not claimed:
                return sent
            with self._guarded():
                self._log_points(run_id, [p for _, p in claimed])
            acknowledged = (claimed[0][0], claimed[-1][0])
            after = claimed[-1][0]
            sent += len(claimed)

    def _log_points(self, run_id: str, points: list[MetricPoint]) -> None:
        from mlflow.entities import Metric

        for i in range(0, len(points), METRICS_PER_BATCH):
            chunk = [
                Metric(p.key, p.value, p.timestamp_ms, p.step)
                for p in points[i : i + METRICS_PER_BATCH]
            ]
            self.client.log_batch(run_id, metrics=chunk, synchronous=True)

    def _not_in_mlflow(self, run_id: str, points: list[MetricPoint]) -> list[MetricPoint]:
        have: set[tuple[str, float, int, int]] = set()
        for key in sorted({p.key for p in points}):
            for m in self._call(self.client.get_metric_history, run_id, key):
                have.add((m.key, float(m.value), int(m.timestamp), int(m.step)))
        return [p for p in points if (p.key, p.value, p.timestamp_ms, p.step) not in have]

    def _register(self, run: BufferedRun, run_id: str) -> str:
        from mlflow.exceptions import MlflowException

        name = run.registered_model_name
        assert name is not None and run.model_artifact_path is not None
        existing = self._call(
            self.client.search_model_versions,
            f"name = '{_quote(name)}' and run_id = '{_quote(run_id)}'",
        )
        if existing:
            return str(existing[0].version)
        try:
            self._call(self.client.create_registered_model, name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        mlflow_run = self._call(self.client.get_run, run_id)
        source = f"{mlflow_run.info.artifact_uri}/{run.model_artifact_path}"
        self.buffer.renew(run.local_run_id, self.owner)
        version = self._call(self.client.create_model_version, name, source, run_id=run_id)
        return str(version.version)

    # ------------------------------------------------------------------ registry

    def set_champion(self, model_name: str, version: str) -> None:
        self._call(self.client.set_registered_model_alias, model_name, "champion", version)


def _settled(run: BufferedRun) -> ReplayResult:
    return ReplayResult(
        run.local_run_id,
        run.state,
        run.mlflow_experiment_id,
        run.mlflow_run_id,
        run.model_version,
        error=run.abandoned_reason or run.last_error,
    )


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
