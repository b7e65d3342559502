"""One small model trained once for the production, drift and promotion tests.

The package fixture `platform` trains `match_outcome` (2,000 rows, 30 trees) into an embedded
warehouse in a temporary data directory, tracked in a local sqlite MLflow store, on an
ephemeral Dagster instance. Every test then materializes the production assets for fixed
days (so the generated traffic is the same whatever day the suite runs) and, where it needs
alert state of its own, on a clone of the model under another name.
"""

import datetime as dt
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mlops_assets.defs.partitions import MODELS, partition_key
from mlops_assets.defs.production.assets import MONITORED
from mlops_assets.defs.training.assets import TrainingRunOutput
from mlops_assets.resources import MLflowResource, WarehouseResource
from mlops_assets.storage.warehouse import Warehouse

MODEL = "match_outcome"
TRAINING = ("training_dataset", "training_run", "training_baseline")
# Training history ends here; production days are fixed dates after it, so the demo traffic
# (seeded per day) and the verdicts do not change with the date the suite runs on.
TRAIN_END = "2026-01-31"


def training_config(**training_run: Any) -> dict:
    return {
        "ops": {
            "training_dataset": {"config": {"n_rows": 2000, "end_date": TRAIN_END}},
            "training_run": {"config": {"n_estimators": 30, **training_run}},
            "training_baseline": {"config": {"n_boot": 50, "reference_rows": 1000}},
        }
    }


def traffic(n_rows: int = 400, min_settled: int = 100, **traffic_config: Any) -> dict:
    """Run config for production_predictions + production_metrics."""
    return {
        "ops": {
            "production_predictions": {"config": {"n_rows": n_rows, **traffic_config}},
            "production_metrics": {"config": {"min_settled": min_settled}},
        }
    }


@dataclass
class Platform:
    home: Path
    tracking_uri: str
    resources: dict[str, Any]
    instance: dg.DagsterInstance
    run: TrainingRunOutput

    @property
    def wh(self) -> Warehouse:
        return self.resources["warehouse"].get()

    def materialize(
        self,
        keys: tuple[str, ...] | list[str],
        *,
        day: str | None = None,
        model: str = MODEL,
        run_config: Mapping[str, Any] | None = None,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        from mlops_assets.definitions import defs

        config = dict(run_config or {})
        # Shared run configs name more assets than a run may select; keep the selected ones.
        config["ops"] = {k: v for k, v in config.get("ops", {}).items() if k in keys}
        return dg.materialize(
            [defs.get_assets_def(dg.AssetKey(k)) for k in keys],
            resources=self.resources,
            instance=self.instance,
            partition_key=partition_key(day, model) if day else None,
            run_config=config,
            raise_on_error=raise_on_error,
        )

    def metric_rows(self, day: str, model: str = MODEL) -> dict[str, dict]:
        rows = self.wh.query(
            "SELECT * FROM mlops.production_metrics WHERE model_name = :m AND metric_date = :d",
            {"m": model, "d": dt.date.fromisoformat(day)},
        )
        return {r["metric"]: r for r in rows}

    def clone_model(self, name: str) -> str:
        """The trained run's training and baseline rows again under model `name`: a model of
        its own for alert tests, judged against the same baseline. Returns the local run id."""
        wh = self.wh
        local_id = f"{self.run.local_run_id}-{name}"
        for table in ("mlops.training_runs", "mlops.training_baselines"):
            row = wh.query(
                f"SELECT * FROM {table} WHERE local_run_id = :id",  # noqa: S608
                {"id": self.run.local_run_id},
            )[0]
            row |= {"local_run_id": local_id, "model_name": name}
            columns = list(row)
            wh.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
                f"VALUES ({', '.join(':' + c for c in columns)})",
                row,
            )
        self.instance.add_dynamic_partitions(MODELS.name, [name])
        return local_id


def unique_model(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def write_levels(
    platform: Platform, model: str, day: str, levels: Mapping[str, str] | None = None
) -> None:
    """Metric rows for one day written straight into mlops.production_metrics: every monitored
    metric `ok` unless `levels` says otherwise (warning, critical or insufficient_data)."""
    wh = platform.wh
    baseline = 0.70
    rows = []
    for metric in MONITORED:
        level = (levels or {}).get(metric, "ok")
        drop = {"ok": 0.01, "warning": 0.06, "critical": 0.12, "insufficient_data": None}[level]
        rows.append(
            {
                "model_name": model,
                "metric_date": dt.date.fromisoformat(day),
                "metric": metric,
                "value": None if drop is None else baseline - drop,
                "baseline_value": baseline,
                "degradation_abs": drop,
                "warning_threshold": None if drop is None else 0.05,
                "critical_threshold": None if drop is None else 0.10,
                "level": level,
                "n_predictions": 1000,
                "n_settled": 1000,
                "training_local_run_id": "written-by-test",
                "computed_at": dt.datetime(2026, 1, 1),
            }
        )
    with wh.transaction() as tx:
        tx.execute(
            "DELETE FROM mlops.production_metrics WHERE model_name = :m AND metric_date = :d",
            {"m": model, "d": dt.date.fromisoformat(day)},
        )
        columns = list(rows[0])
        tx.executemany(
            f"INSERT INTO mlops.production_metrics ({', '.join(columns)}) "  # noqa: S608
            f"VALUES ({', '.join(':' + c for c in columns)})",
            rows,
        )


@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    saved = dict(os.environ)
    # Everything is passed explicitly; no MLOPS_* / MLflow setting of the caller may leak in.
    for key in list(os.environ):
        if key.startswith(("MLOPS_", "MLFLOW_")) or key == "DAGSTER_HOME":
            del os.environ[key]
    home = tmp_path_factory.mktemp("production") / "home"
    tracking_uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    (home / "mlflow").mkdir(parents=True)
    warehouse = WarehouseResource(home=str(home))
    resources = {
        "warehouse": warehouse,
        "mlflow": MLflowResource(warehouse=warehouse, tracking_uri=tracking_uri),
    }
    instance = dg.DagsterInstance.ephemeral()
    try:
        from mlops_assets.definitions import defs

        result = dg.materialize(
            [defs.get_assets_def(dg.AssetKey(k)) for k in TRAINING],
            resources=resources,
            instance=instance,
            run_config=training_config(),
        )
        run = result.output_for_node("training_run")
        assert run.tracking_status == "TRACKED" and run.mlflow_run_id, run
        yield Platform(home, tracking_uri, resources, instance, run)
    finally:
        instance.dispose()
        os.environ.clear()
        os.environ.update(saved)
