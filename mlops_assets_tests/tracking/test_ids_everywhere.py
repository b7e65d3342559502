"""After an outage-and-replay story, no table or view holding an MLflow id still shows a local
id or lacks the id of a replayed run. The columns are found in information_schema, so a table
added later is checked too. Real `mlflow server`, both warehouse engines."""

from __future__ import annotations

import datetime as dt
import uuid

import dagster as dg
import pytest

from mlops_assets.defs.partitions import partition_key
from mlops_assets.demo import LIFECYCLE, PRODUCTION, TRAINING
from mlops_assets.runtime import build_runtime
from mlops_assets.storage.mlflow_buffer import REPLAYED
from mlops_assets.storage.warehouse import Warehouse

pytestmark = [pytest.mark.mlflow_server, pytest.mark.slow, pytest.mark.timeout(1200)]

# Columns that hold an MLflow run id, experiment id or model version (or a list of them).
ID_COLUMN_PATTERNS = ("%mlflow%", "%model_version%", "champion_version")


def id_columns(warehouse: Warehouse) -> dict[str, list[str]]:
    """`schema.table` -> its MLflow id columns, for every table and view in mlops/curated."""
    found: dict[str, list[str]] = {}
    for pattern in ID_COLUMN_PATTERNS:
        for r in warehouse.query(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE table_schema IN ('mlops', 'curated') AND column_name LIKE :p "
            "ORDER BY table_schema, table_name, column_name",
            {"p": pattern},
        ):
            columns = found.setdefault(f"{r['table_schema']}.{r['table_name']}", [])
            if r["column_name"] not in columns:
                columns.append(r["column_name"])
    return found


def local_run_columns(warehouse: Warehouse, table: str) -> list[str]:
    schema, name = table.split(".")
    return [
        r["column_name"]
        for r in warehouse.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = :s "
            "AND table_name = :t AND column_name LIKE '%local_run_id'",
            {"s": schema, "t": name},
        )
    ]


def test_outage_then_replay_leaves_no_local_id_anywhere(
    backend: str, mlflow_server, monkeypatch: pytest.MonkeyPatch, experiment_name: str
):
    from mlops_assets import demo_serving
    from mlops_assets.platform import catalog_of, demo_models, platform_definitions
    from mlops_assets.storage.models import Predictor

    mlflow_server.start()
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.setenv("MLOPS_MLFLOW_CONNECTION_TIMEOUT", "5")
    # The breaker is not the subject here; without it MLflow is used the moment it is back.
    monkeypatch.setenv("MLOPS_MLFLOW_ENABLE_CIRCUIT_BREAKER", "false")
    model = f"ids_{uuid.uuid4().hex[:6]}"
    # The demo's football model under a name of its own, small and quick.
    base = catalog_of([demo_models()]).get("match_outcome")
    recipe = base.model.train.model_copy(update={"params": {"n_estimators": 30}})
    contract = base.model_copy(
        update={
            "name": model,
            "model": base.model.model_copy(update={"train": recipe}),
            "baseline": base.baseline.model_copy(update={"n_boot": 20, "reference_rows": 300}),
            "monitoring": base.monitoring.model_copy(update={"min_labelled": 50}),
        }
    )
    defs = platform_definitions(contract)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("models", [model])
    wh = build_runtime().warehouse
    demo_serving.load_match_history(wh, end=dt.date.today() - dt.timedelta(days=4), n_rows=1500)

    def serve(day: dt.date) -> None:
        model_dir = build_runtime().mlflow_config.artifact_root / outage.local_run_id / "model"
        traffic = demo_serving.serve_matches(
            wh,
            Predictor(contract, model_dir),
            day,
            drift=demo_serving.demo_data.DriftSchedule(),
            n_rows=200,
        )
        demo_serving.settle_matches(wh, traffic)

    def materialize(keys, **kwargs):
        return dg.materialize(
            [defs.get_assets_def(dg.AssetKey(k)) for k in keys],
            resources=defs.resources,
            instance=instance,
            raise_on_error=True,
            **kwargs,
        )

    days = [dt.date.today() - dt.timedelta(days=n) for n in (3, 2, 1)]
    try:
        # MLflow down: train, monitor two days, build the health table and the views.
        mlflow_server.stop()
        outage = materialize(TRAINING, partition_key=model).output_for_node("training_run")
        assert outage.mlflow_run_id is None
        for day in days[:2]:
            serve(day)
            materialize(PRODUCTION, partition_key=partition_key(day.isoformat(), model))
        materialize(LIFECYCLE)
        # MLflow back: a production day runs before any flush (its drift report goes to MLflow
        # at once), then the buffer is flushed. The health table is NOT rebuilt afterwards.
        mlflow_server.start()
        serve(days[2])
        materialize(PRODUCTION, partition_key=partition_key(days[2].isoformat(), model))
        report = build_runtime().tracker.flush()
        assert not report.failed, report
    finally:
        mlflow_server.start()

    warehouse = build_runtime().warehouse
    run = build_runtime().tracker.buffer.get(outage.local_run_id)
    assert run is not None and run.state == REPLAYED and run.model_version
    columns = id_columns(warehouse)
    assert {"mlops.ml_model_health_status", "curated.unified_model_lifecycle"} <= set(columns)
    problems = []
    for table, cols in columns.items():
        for col in cols:
            # No local id anywhere (columns that show "the best id we have" fall back to it).
            rows = warehouse.query(
                f"SELECT count(*) AS n FROM {table} WHERE CAST({col} AS TEXT) LIKE :p",  # noqa: S608
                {"p": f"%{outage.local_run_id}%"},
            )
            if rows[0]["n"]:
                problems.append(f"{table}.{col}: {rows[0]['n']} row(s) show the local id")
            # No missing id on rows that belong to the replayed run.
            for local_col in local_run_columns(warehouse, table):
                rows = warehouse.query(
                    f"SELECT count(*) AS n FROM {table} WHERE {local_col} = :id "  # noqa: S608
                    f"AND {col} IS NULL",
                    {"id": outage.local_run_id},
                )
                if rows[0]["n"]:
                    problems.append(f"{table}.{col}: {rows[0]['n']} row(s) of the run are NULL")
    assert not problems, "\n".join(problems)
    health = warehouse.query(
        "SELECT model_version, champion_version, active_mlflow_run_ids, pending_replay "
        "FROM mlops.ml_model_health_status WHERE model_name = :m",
        {"m": model},
    )
    assert health == [
        {
            "model_version": run.model_version,
            "champion_version": run.model_version,
            "active_mlflow_run_ids": f'["{run.mlflow_run_id}"]',
            "pending_replay": False,
        }
    ]

    # Drift reports went to monitoring runs (one per day, one file each); the training run
    # stayed finished and holds no report.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.uri, mlflow_server.uri)
    training = client.get_run(run.mlflow_run_id)
    assert training.info.status == "FINISHED"
    assert "drift_reports" not in {a.path for a in client.list_artifacts(run.mlflow_run_id)}
    experiment = client.get_experiment_by_name(experiment_name)
    monitoring = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlops.kind` = 'monitoring' and "
        f"tags.`mlops.parent_local_run_id` = '{outage.local_run_id}'",
    )
    assert sorted(r.data.tags["mlops.monitoring_day"] for r in monitoring) == [
        d.isoformat() for d in days
    ]
    for r in monitoring:
        assert [a.path for a in client.list_artifacts(r.info.run_id)] == [
            f"drift_{r.data.tags['mlops.monitoring_day']}.html"
        ]
