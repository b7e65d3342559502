"""The freshness check: yesterday's metrics must exist for every trained model by the due hour."""

import datetime as dt

import dagster as dg
import pytest

from mlops_assets.defs.partitions import MODELS
from mlops_assets.defs.production.checks import FreshnessConfig, yesterday_metrics_fresh
from mlops_assets.resources import WarehouseResource


@pytest.fixture
def setup(mlops_home):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(MODELS.name, ["m1", "m2"])
    resource = WarehouseResource(home=str(mlops_home))
    return instance, resource, resource.get()


def _insert_metric(wh, model: str, day: dt.date) -> None:
    wh.execute(
        "INSERT INTO mlops.production_metrics (model_name, metric_date, metric, level, "
        "n_predictions, n_settled, training_local_run_id, computed_at) "
        "VALUES (:m, :d, 'accuracy', 'ok', 10, 10, 'local-x', CURRENT_TIMESTAMP)",
        {"m": model, "d": day},
    )


def _evaluate(instance, resource, due_hour: int) -> dg.AssetCheckResult:
    context = dg.build_asset_check_context(instance=instance)
    return yesterday_metrics_fresh(
        context, config=FreshnessConfig(due_hour_utc=due_hour), warehouse=resource
    )


def test_fails_naming_the_model_without_yesterdays_metrics(setup):
    instance, resource, wh = setup
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    _insert_metric(wh, "m1", yesterday)
    _insert_metric(wh, "m2", yesterday - dt.timedelta(days=1))  # stale: the day before
    result = _evaluate(instance, resource, due_hour=0)
    assert result.passed is False
    assert result.metadata["missing"].value == "m2"
    assert result.metadata["day"].value == yesterday.isoformat()


def test_passes_before_the_due_hour_and_when_complete(setup):
    instance, resource, wh = setup
    now = dt.datetime.now(dt.UTC)
    if now.hour < 23:
        not_due = _evaluate(instance, resource, due_hour=23)
        assert not_due.passed is True
        assert not_due.metadata["status"].value == "not due yet"
    yesterday = now.date() - dt.timedelta(days=1)
    _insert_metric(wh, "m1", yesterday)
    _insert_metric(wh, "m2", yesterday)
    complete = _evaluate(instance, resource, due_hour=0)
    assert complete.passed is True
    assert complete.metadata["missing"].value == "none"
