"""A model trained here reads its history from the user's own table (`model.train.source`), with
the user's own column names: nothing of the demo's schema is assumed."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from mlops_assets.defs.partitions import MODELS
from mlops_assets.defs.training.assets import training_dataset
from mlops_assets.lib.contract import ContractError, ModelCatalog, parse_contract
from mlops_assets.resources import WarehouseResource

MODEL = "churn"


def _contract(table: str) -> dict:
    return {
        "name": MODEL,
        "task": "binary",
        "model": {"train": {"source": {"table": table}, "estimator": "lightgbm"}},
        "columns": {
            "id": "customer_id",
            "timestamp": "scored_at",
            "target": "churned",
            "probability": "p_churn",
            "features": {
                "tenure_months": "numeric",
                "monthly_fee": "numeric",
                "plan": "categorical",
            },
        },
        "production": {"predictions": {"table": "mine.churn_scores"}},
    }


def _history(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    tenure = rng.integers(1, 72, n)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "scored_at": pd.date_range("2025-01-01", periods=n, freq="h"),
            "tenure_months": tenure.astype(float),
            "monthly_fee": rng.uniform(10, 90, n),
            "plan": rng.choice(["basic", "plus", "pro"], n),
            "churned": (rng.uniform(size=n) < 1 / (1 + tenure / 12)).astype(int),
        }
    )


@pytest.fixture
def warehouse(mlops_home):
    resource = WarehouseResource(home=str(mlops_home))
    history = _history()
    wh = resource.get()
    wh.execute("CREATE SCHEMA IF NOT EXISTS mine")
    wh.execute(
        "CREATE TABLE mine.history (customer_id TEXT, scored_at TIMESTAMP, "
        "tenure_months DOUBLE PRECISION, monthly_fee DOUBLE PRECISION, plan TEXT, "
        "churned INTEGER)"
    )
    with wh.transaction() as tx:
        tx.insert_frame("mine.history", history)
    wh.execute(
        "CREATE TABLE mine.partial AS SELECT customer_id, scored_at, churned FROM mine.history"
    )
    return resource, history


def _materialize(resource: WarehouseResource, table: str) -> dg.ExecuteInProcessResult:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(MODELS.name, [MODEL])
    catalog = ModelCatalog([parse_contract(_contract(table), source="test")])
    return dg.materialize(
        [training_dataset],
        partition_key=MODEL,
        resources={"warehouse": resource, "models": catalog},
        instance=instance,
        raise_on_error=False,
    )


def test_reads_the_users_table_with_its_own_columns(warehouse):
    resource, history = warehouse
    result = _materialize(resource, "mine.history")
    assert result.success
    frame = result.output_for_node("training_dataset")
    assert len(frame) == len(history)
    assert {"tenure_months", "monthly_fee", "plan", "churned"} <= set(frame.columns)
    assert frame["churned"].sum() == history["churned"].sum()
    metadata = result.asset_materializations_for_node("training_dataset")[0].metadata
    assert metadata["source"].value == "table mine.history"
    assert metadata["role"].value == "training history"


def test_missing_columns_are_named_with_the_model(warehouse):
    resource, _ = warehouse
    result = _materialize(resource, "mine.partial")
    assert not result.success
    description = result.failure_data_for_node("training_dataset").user_failure_data.description
    assert f"model {MODEL}" in description
    assert "mine.partial" in description
    for column in ("tenure_months", "monthly_fee", "plan"):
        assert column in description
    assert "churned" not in description.split("column(s)")[-1]


def test_table_name_is_not_sql():
    with pytest.raises(ContractError) as caught:
        parse_contract(_contract("mine.history; DROP TABLE mine.history"), source="churn.yaml")
    message = str(caught.value)
    assert "churn.yaml: model.train.source" in message
    assert "schema.table" in message
