"""Users point `training_dataset` at their own warehouse table instead of the demo generator."""

import datetime as dt

import dagster as dg
import pytest

from mlops_assets.defs.training.assets import training_dataset
from mlops_assets.lib import demo_data
from mlops_assets.resources import WarehouseResource


def _materialize(resource: WarehouseResource, table: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [training_dataset],
        resources={"warehouse": resource},
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {"training_dataset": {"config": {"source_table": table}}}},
        raise_on_error=False,
    )


@pytest.fixture
def warehouse(mlops_home):
    resource = WarehouseResource(home=str(mlops_home))
    history = demo_data.training_history(n_rows=300, seed=1, end=dt.date(2026, 1, 1))
    wh = resource.get()
    wh.execute("CREATE SCHEMA IF NOT EXISTS mine")
    wh.execute(
        "CREATE TABLE mine.history (match_id TEXT, match_date TIMESTAMP, "
        + ", ".join(
            f"{name} {'DOUBLE PRECISION' if kind == 'numeric' else 'TEXT'}"
            for name, kind in demo_data.FEATURES.items()
        )
        + ", outcome INTEGER)"
    )
    with wh.transaction() as tx:
        tx.insert_frame("mine.history", history)
    wh.execute("CREATE TABLE mine.partial AS SELECT match_id, outcome FROM mine.history")
    return resource, history


def test_reads_the_users_table(warehouse):
    resource, history = warehouse
    result = _materialize(resource, "mine.history")
    assert result.success
    frame = result.output_for_node("training_dataset")
    assert len(frame) == len(history)
    assert frame["outcome"].sum() == history["outcome"].sum()
    metadata = result.asset_materializations_for_node("training_dataset")[0].metadata
    assert metadata["source"].value == "mine.history"


def test_missing_columns_are_named(warehouse):
    resource, _ = warehouse
    result = _materialize(resource, "mine.partial")
    assert not result.success
    failure = result.failure_data_for_node("training_dataset")
    assert "missing columns" in failure.user_failure_data.description
    assert "home_elo" in failure.user_failure_data.description


def test_table_name_is_not_sql(warehouse):
    resource, _ = warehouse
    result = _materialize(resource, "mine.history; DROP TABLE mine.history")
    assert not result.success
    assert (
        "schema.table"
        in result.failure_data_for_node("training_dataset").user_failure_data.description
    )
    assert len(resource.get().query("SELECT * FROM mine.history")) == 300
