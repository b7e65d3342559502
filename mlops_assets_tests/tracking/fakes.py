"""Test doubles for the MLflow client: an in-memory MLflow, and wrappers that break a real one.

`FakeMlflowClient` implements the calls `MlflowTracker` makes. Like MLflow's `file:` store it
appends every metric it is sent, so a replay that sends a metric twice shows up as a duplicate
in `metric_counts()` (the SQL store would silently ignore an identical metric).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_ALREADY_EXISTS

MetricTuple = tuple[str, float, int, int]  # key, value, timestamp_ms, step
_TAG_FILTER = re.compile(r"tags\.`([^`]+)` = '((?:[^'\\]|\\.)*)'")


class SimulatedCrash(BaseException):  # noqa: N818 - stands for the process dying, not an error
    """Raised where the process would die: not an Exception, so nothing in the tracker handles
    it, and the ledger is left exactly as a `kill -9` at that point would leave it."""


@dataclass
class FakeRun:
    run_id: str
    experiment_id: str
    start_time: int | None
    run_name: str | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[MetricTuple] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    status: str = "RUNNING"
    end_time: int | None = None


class FakeMlflowClient:
    """In-memory MLflow. Set `down = True` to refuse every call like a stopped server, or
    `fail_metric_batches_after = k` to refuse every metric `log_batch` after the first k
    (with `store_failing_batch = True` the failing batch is stored before the error, as when
    the server committed it but its answer was lost)."""

    def __init__(self) -> None:
        self.experiments: dict[str, str] = {}  # name -> id
        self.runs: dict[str, FakeRun] = {}
        self.registered: dict[str, list[SimpleNamespace]] = {}
        self.calls: list[str] = []
        self.metric_batches = 0
        self.down = False
        self.fail_metric_batches_after: int | None = None
        self.store_failing_batch = False
        self._ids = itertools.count(1)

    # -- plumbing

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise ConnectionError(f"[Errno 111] Connection refused ({name})")

    def metric_counts(self, run_id: str) -> Counter[MetricTuple]:
        return Counter(self.runs[run_id].metrics)

    def run_for(self, local_run_id: str) -> FakeRun:
        found = [r for r in self.runs.values() if r.tags.get("mlops.local_run_id") == local_run_id]
        assert len(found) == 1, f"expected one MLflow run for {local_run_id}, found {len(found)}"
        return found[0]

    # -- experiments and runs

    def search_experiments(self, max_results: int | None = None) -> list[Any]:
        self._enter("search_experiments")
        return [SimpleNamespace(experiment_id=i, name=n) for n, i in self.experiments.items()]

    def get_experiment_by_name(self, name: str) -> Any:
        self._enter("get_experiment_by_name")
        if name not in self.experiments:
            return None
        return SimpleNamespace(experiment_id=self.experiments[name], name=name)

    def create_experiment(self, name: str, artifact_location: str | None = None) -> str:
        self._enter("create_experiment")
        if name in self.experiments:
            raise MlflowException("exists", error_code=RESOURCE_ALREADY_EXISTS)
        self.experiments[name] = str(next(self._ids))
        return self.experiments[name]

    def search_runs(
        self, experiment_ids: list[str], filter_string: str = "", max_results: int = 1000
    ) -> list[Any]:
        self._enter("search_runs")
        match = _TAG_FILTER.fullmatch(filter_string.strip())
        assert match, f"unexpected filter {filter_string!r}"
        key, value = match.group(1), match.group(2).replace("\\'", "'").replace("\\\\", "\\")
        found = [
            SimpleNamespace(info=SimpleNamespace(run_id=r.run_id))
            for r in self.runs.values()
            if r.experiment_id in experiment_ids and r.tags.get(key) == value
        ]
        return found[:max_results]

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict[str, str] | None = None,
        run_name: str | None = None,
    ) -> Any:
        self._enter("create_run")
        run = FakeRun(f"run{next(self._ids)}", experiment_id, start_time, run_name)
        run.tags.update(tags or {})
        self.runs[run.run_id] = run
        return SimpleNamespace(info=SimpleNamespace(run_id=run.run_id))

    def get_run(self, run_id: str) -> Any:
        self._enter("get_run")
        return SimpleNamespace(info=SimpleNamespace(artifact_uri=f"fake://artifacts/{run_id}"))

    def set_terminated(self, run_id: str, status: str = "FINISHED", end_time: int | None = None):
        self._enter("set_terminated")
        self.runs[run_id].status = status
        self.runs[run_id].end_time = end_time

    # -- logging

    def log_batch(
        self,
        run_id: str,
        metrics: Any = (),
        params: Any = (),
        tags: Any = (),
        synchronous: bool | None = None,
    ) -> None:
        self._enter("log_batch")
        run = self.runs[run_id]
        for p in params:
            if p.key in run.params and run.params[p.key] != p.value:
                raise MlflowException(
                    f"Changing param values is not allowed. Param with key='{p.key}' was "
                    "already logged with a different value",
                    error_code=INVALID_PARAMETER_VALUE,
                )
        if metrics:
            self.metric_batches += 1
            limit = self.fail_metric_batches_after
            if limit is not None and self.metric_batches > limit:
                if self.store_failing_batch:
                    run.metrics.extend((m.key, m.value, m.timestamp, m.step) for m in metrics)
                raise ConnectionError("[Errno 104] Connection reset by peer (log_batch)")
        run.params.update({p.key: p.value for p in params})
        run.tags.update({t.key: t.value for t in tags})
        run.metrics.extend((m.key, m.value, m.timestamp, m.step) for m in metrics)

    def get_metric_history(self, run_id: str, key: str) -> list[Any]:
        self._enter("get_metric_history")
        return [
            SimpleNamespace(key=k, value=v, timestamp=t, step=s)
            for k, v, t, s in self.runs[run_id].metrics
            if k == key
        ]

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None):
        from pathlib import Path

        self._enter("log_artifacts")
        root = Path(local_dir)
        self.runs[run_id].artifacts.extend(
            str(p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file()
        )

    # -- registry

    def search_model_versions(self, filter_string: str) -> list[Any]:
        self._enter("search_model_versions")
        name = re.search(r"name = '([^']*)'", filter_string).group(1)  # type: ignore[union-attr]
        run_id = re.search(r"run_id = '([^']*)'", filter_string).group(1)  # type: ignore[union-attr]
        return [v for v in self.registered.get(name, []) if v.run_id == run_id]

    def create_registered_model(self, name: str) -> None:
        self._enter("create_registered_model")
        if name in self.registered:
            raise MlflowException("exists", error_code=RESOURCE_ALREADY_EXISTS)
        self.registered[name] = []

    def create_model_version(self, name: str, source: str, run_id: str | None = None) -> Any:
        self._enter("create_model_version")
        version = SimpleNamespace(version=str(len(self.registered[name]) + 1), run_id=run_id)
        self.registered[name].append(version)
        return version

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._enter("set_registered_model_alias")


class InterceptingClient:
    """Wraps a real `MlflowClient`; `before_metric_batch(n)` runs before the n-th metric
    `log_batch` (1-based) reaches the server. It may stop the server or raise."""

    def __init__(self, inner: Any, before_metric_batch: Callable[[int], None]):
        self._inner = inner
        self._before = before_metric_batch
        self.metric_batches = 0

    def log_batch(self, run_id: str, metrics: Any = (), **kwargs: Any) -> Any:
        if metrics:
            self.metric_batches += 1
            self._before(self.metric_batches)
        return self._inner.log_batch(run_id, metrics=metrics, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
