"""One small model trained once for the production, drift and promotion tests.

The package fixture `platform` declares the demo's `match_outcome` contract (made cheaper: 30
trees, a 50-resample bootstrap, a verdict from 100 labelled rows), writes its history table
(2,000 rows ending on a fixed date), and trains it through the three training assets into an
embedded warehouse in a temporary data directory, tracked in a local sqlite MLflow store, on an
ephemeral Dagster instance. Tests then play the serving system: `platform.serve(day)` scores a
fixed day's matches with the trained model and writes them (and, unless told otherwise, their
results) into the contract's source tables, exactly as the demo's serving system does; the
production assets read them from there. Days are fixed dates, so the traffic (seeded per day)
and the verdicts do not change with the date the suite runs on. A test that needs alert state
of its own works on a clone of the model under another name (`clone_model`).
"""

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from mlops_assets import demo_serving
from mlops_assets.defs.partitions import MODELS, partition_key
from mlops_assets.defs.training.assets import TrainingRunOutput
from mlops_assets.lib import demo_data
from mlops_assets.lib.contract import ModelCatalog, ModelContract, Source
from mlops_assets.resources import MLflowResource, WarehouseResource
from mlops_assets.storage.warehouse import Warehouse

MODEL = demo_serving.MATCH
TRAINING = ("training_dataset", "training_run", "training_baseline")
PRODUCTION = ("production_predictions", "production_metrics")
# Training history ends here; production days are fixed dates after it, so the demo traffic
# (seeded per day) and the verdicts do not change with the date the suite runs on.
TRAIN_END = dt.date(2026, 1, 31)
MIN_LABELLED = 100


def fast_contract(contract: ModelContract, **update: Any) -> ModelContract:
    """The demo's contract made cheap enough for tests (and any further `update`)."""
    recipe = contract.model.train
    assert recipe is not None
    fast = contract.model_copy(
        update={
            "model": contract.model.model_copy(
                update={
                    "train": recipe.model_copy(
                        update={"params": {**recipe.params, "n_estimators": 30}}
                    )
                }
            ),
            "baseline": contract.baseline.model_copy(update={"n_boot": 50, "reference_rows": 1000}),
            "monitoring": contract.monitoring.model_copy(update={"min_labelled": MIN_LABELLED}),
        },
        deep=True,
    )
    return fast.model_copy(update=update, deep=True) if update else fast


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

    @property
    def catalog(self) -> ModelCatalog:
        return self.resources["models"]

    def materialize(
        self,
        keys: tuple[str, ...] | list[str],
        *,
        day: str | None = None,
        model: str = MODEL,
        partition: str | None = None,
        catalog: ModelCatalog | None = None,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        """Materialize `keys` for (day, model), or the model partition `partition` (training).
        `catalog` replaces the declared models for this one run (a contract variant)."""
        from mlops_assets.definitions import defs

        definitions = defs()
        resources = dict(self.resources)
        if catalog is not None:
            resources["models"] = catalog
        return dg.materialize(
            [definitions.get_assets_def(dg.AssetKey(k)) for k in keys],
            resources=resources,
            instance=self.instance,
            partition_key=partition_key(day, model) if day else partition,
            raise_on_error=raise_on_error,
        )

    def predictor(self):
        """What the serving system loads: the trained run's saved model (its own copy)."""
        from mlops_assets.storage.models import Predictor

        artifact_root = self.resources["mlflow"].runtime().mlflow_config.artifact_root
        return Predictor(self.catalog.get(MODEL), artifact_root / self.run.local_run_id / "model")

    def serve(
        self,
        day: str,
        n_rows: int = 400,
        *,
        feature_drift_from: str | None = None,
        concept_drift_from: str | None = None,
        settle: bool = True,
    ) -> pd.DataFrame:
        """The serving system scores the day's matches into demo.match_predictions and (with
        `settle`) writes their results into demo.match_results. Returns the traffic."""
        drift = demo_data.DriftSchedule(
            feature_drift_from=dt.date.fromisoformat(feature_drift_from)
            if feature_drift_from
            else None,
            concept_drift_from=dt.date.fromisoformat(concept_drift_from)
            if concept_drift_from
            else None,
        )
        traffic = demo_serving.serve_matches(
            self.wh, self.predictor(), dt.date.fromisoformat(day), drift=drift, n_rows=n_rows
        )
        if settle:
            demo_serving.settle_matches(self.wh, traffic)
        return traffic

    def metric_rows(self, day: str, model: str = MODEL) -> dict[str, dict]:
        rows = self.wh.query(
            "SELECT * FROM mlops.production_metrics WHERE model_name = :m AND metric_date = :d",
            {"m": model, "d": dt.date.fromisoformat(day)},
        )
        return {r["metric"]: r for r in rows}

    def clone_model(
        self, name: str, *, own_sources: bool = False, **contract_update: Any
    ) -> ModelContract:
        """The trained run's training and baseline rows again under model `name`, and a copy
        of the contract declaring it (with `contract_update`): a model of its own for alert
        tests, judged against the same baseline. `own_sources`: its predictions and labels are
        read from tables of its own (demo.<name>_predictions / _results), not the demo's."""
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
        update: dict[str, Any] = {"name": name, **contract_update}
        base = self.catalog.get(MODEL)
        if own_sources:
            update["production"] = base.production.model_copy(
                update={
                    "predictions": Source(table=f"demo.{name}_predictions"),
                    "labels": Source(table=f"demo.{name}_results"),
                }
            )
        contract = base.model_copy(update=update, deep=True)
        self.catalog.add(contract)
        self.instance.add_dynamic_partitions(MODELS.name, [name])
        return contract


def unique_model(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def write_levels(
    platform: Platform,
    model: str,
    day: str,
    levels: Mapping[str, str] | None = None,
    *,
    basis: str = "realised",
) -> None:
    """Metric rows for one day written straight into mlops.production_metrics: every metric
    the contract monitors `ok` unless `levels` says otherwise (warning, critical or
    insufficient_data)."""
    wh = platform.wh
    baseline = 0.70
    rows = []
    for metric in platform.catalog.get(model).monitored_metrics():
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
                "n_settled": 0 if basis == "estimated" else 1000,
                "basis": basis,
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


@contextlib.contextmanager
def trained_platform(home: Path, warehouse: WarehouseResource) -> Iterator[Platform]:
    """The demo's match_outcome (made cheap) trained into `warehouse`, tracked in a local
    sqlite MLflow store under `home`, on an ephemeral Dagster instance."""
    from mlops_assets.platform import catalog_of, demo_models

    saved = dict(os.environ)
    # Everything is passed explicitly; no MLOPS_* / MLflow setting of the caller may leak in.
    for key in list(os.environ):
        if key.startswith(("MLOPS_", "MLFLOW_")) or key == "DAGSTER_HOME":
            del os.environ[key]
    tracking_uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    (home / "mlflow").mkdir(parents=True)
    catalog = ModelCatalog([fast_contract(catalog_of([demo_models()]).get(MODEL))])
    resources = {
        "warehouse": warehouse,
        "mlflow": MLflowResource(warehouse=warehouse, tracking_uri=tracking_uri),
        "models": catalog,
    }
    instance = dg.DagsterInstance.ephemeral()
    try:
        demo_serving.load_match_history(warehouse.get(), end=TRAIN_END, n_rows=2000)
        instance.add_dynamic_partitions(MODELS.name, [MODEL])
        platform = Platform(home, tracking_uri, resources, instance, run=None)  # type: ignore[arg-type]
        result = platform.materialize(TRAINING, partition=MODEL)
        run = result.output_for_node("training_run")
        assert run.tracking_status == "TRACKED" and run.mlflow_run_id, run
        platform.run = run
        yield platform
    finally:
        instance.dispose()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("production") / "home"
    with trained_platform(home, WarehouseResource(home=str(home))) as platform:
        yield platform
