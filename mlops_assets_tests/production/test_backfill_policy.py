"""A run over many day x model partitions (what the assets' backfill policy launches) gives the
same rows as one run per partition, on the embedded warehouse and on PostgreSQL.

Copies of the trained model judge the same served days against the same baseline: one is
materialized one run per day, in date order; the others in ranged runs, the way a backfill run
of `BackfillPolicy.multi_run` / `single_run` is tagged. Metrics, drift rows and alerts (with
their escalations, which depend on the days before) must be equal; so must the per-partition
materialization metadata and check evaluations Dagster records. The heavy assets' ranged runs
of an asset backfill may finish later days first; alerts are folded by `performance_alerts`
alone, in a run of its own after them (its `single_run` policy), so that still gives the rows
of one run per day in date order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pytest

from mlops_assets.defs.partitions import partition_key
from mlops_assets.resources import WarehouseResource
from mlops_assets.storage.monitoring import monitoring_results
from mlops_assets_tests.production.conftest import Platform, trained_platform, unique_model

ASSETS = (
    "production_predictions",
    "production_metrics",
    "performance_alerts",
    "feature_drift_report",
)
DAYS = [dt.date(2026, 4, 1) + dt.timedelta(days=n) for n in range(6)]
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@pytest.fixture(params=["embedded", "postgres"])
def engine_platform(request: pytest.FixtureRequest, tmp_path) -> Iterator[Platform]:
    if request.param == "embedded":
        yield request.getfixturevalue("platform")
        return
    dsn = request.getfixturevalue("pg_dsn")
    home = tmp_path / "home"
    warehouse = WarehouseResource(home=str(home), backend="postgres", dsn=dsn)
    with trained_platform(home, warehouse) as platform:
        yield platform


def _assets(platform: Platform, keys: tuple[str, ...] = ASSETS) -> list[dg.AssetsDefinition]:
    from mlops_assets.definitions import defs

    definitions = defs()
    return [definitions.get_assets_def(dg.AssetKey(k)) for k in keys]


def _ranged(platform: Platform, keys: tuple[str, ...], model: str, days: list[dt.date]):
    """One ranged run of `keys` over `days` of `model`, tagged as a backfill run is."""
    result = dg.materialize(
        _assets(platform, keys),
        resources=platform.resources,
        instance=platform.instance,
        tags={
            RANGE_START: str(partition_key(days[0].isoformat(), model)),
            RANGE_END: str(partition_key(days[-1].isoformat(), model)),
        },
    )
    assert result.success
    return result


def _serve_shifting_days(platform: Platform) -> None:
    for day in DAYS:
        # Inputs and outcome both shift from the third day: drift and performance alerts open
        # and then escalate, which only comes out right if days are folded in date order.
        platform.serve(
            day.isoformat(),
            n_rows=300,
            feature_drift_from=DAYS[2].isoformat(),
            concept_drift_from=DAYS[2].isoformat(),
        )


def _one_by_one(platform: Platform, model: str) -> dict:
    """One run per day of every asset, in date order (the sensor's runs): the reference."""
    seen: dict = {}
    for day in DAYS:
        result = dg.materialize(
            _assets(platform),
            resources=platform.resources,
            instance=platform.instance,
            partition_key=partition_key(day.isoformat(), model),
        )
        seen |= _per_partition(result, model)
    return seen


def _expected(platform: Platform, model: str) -> dict:
    expected = monitoring_results(platform.wh, model=model, first=DAYS[0], last=DAYS[-1])
    # Guard against a vacuous comparison: every day has metrics and drift rows, and alerts
    # were opened and escalated along the way.
    assert {r["metric_date"] for r in expected["metrics"]} == set(DAYS)
    assert {r["partition_date"] for r in expected["drift"]} == set(DAYS)
    assert {r["kind"] for r in expected["alerts"]} == {"performance", "drift"}
    assert "escalated" in {r["event_type"] for r in expected["alerts"]}
    return expected


def _per_partition(result: dg.ExecuteInProcessResult, model: str) -> dict:
    """What Dagster recorded per (asset, day) of `model`: materialization metadata (bookkeeping
    dropped) and the check evaluations' outcome and metadata."""
    seen: dict = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        dims = mat.partition.keys_by_dimension  # type: ignore[union-attr]
        if dims["model"] != model:
            continue
        # The report's path and the partition's timings differ from run to run.
        meta = {
            k: _anonymous(v.value, model)
            for k, v in mat.metadata.items()
            if k not in ("report", "seconds")
        }
        seen[(mat.asset_key.to_user_string(), dims["date"])] = meta
    for evaluation in result.get_asset_check_evaluations():
        meta = {k: _anonymous(v.value, model) for k, v in evaluation.metadata.items()}
        if meta.get("model_name") != "<model>":
            continue
        meta.pop("model_name")
        seen[(evaluation.check_name, meta.pop("day"))] = (
            evaluation.passed,
            evaluation.severity,
            meta,
        )
    return seen


def _anonymous(value: object, model: str) -> object:
    """Metadata text names the model (a query to run, the model_name itself); alert changes
    name alert ids, which are the warehouse's surrogate keys."""
    if isinstance(value, str):
        return value.replace(model, "<model>")
    if isinstance(value, list):
        return [
            {k: v for k, v in item.items() if k != "alert_id"} if isinstance(item, dict) else item
            for item in value
        ]
    return value


def test_a_ranged_run_gives_the_rows_of_one_run_per_partition(engine_platform: Platform):
    platform = engine_platform
    _serve_shifting_days(platform)
    reference = platform.clone_model(unique_model("one"))
    batch = [platform.clone_model(unique_model(p)) for p in ("many_a", "many_b")]
    one_by_one = _one_by_one(platform, reference.name)

    # A range of a day x model partitioning is the product of the days and the models between
    # its ends (in the order models were added): 6 days x the two batch models.
    ranged = dg.materialize(
        _assets(platform),
        resources=platform.resources,
        instance=platform.instance,
        tags={
            RANGE_START: str(partition_key(DAYS[0].isoformat(), batch[0].name)),
            RANGE_END: str(partition_key(DAYS[-1].isoformat(), batch[1].name)),
        },
    )
    assert ranged.success
    assert len(ranged.get_asset_materialization_events()) == len(ASSETS) * len(DAYS) * 2

    expected = _expected(platform, reference.name)
    for contract in batch:
        got = monitoring_results(platform.wh, model=contract.name, first=DAYS[0], last=DAYS[-1])
        for kind in ("metrics", "drift", "alerts"):
            assert got[kind] == expected[kind], f"{kind} of {contract.name}"
        assert _per_partition(ranged, contract.name) == one_by_one


def test_heavy_runs_finishing_later_days_first_still_fold_alerts_in_date_order(
    engine_platform: Platform,
):
    """An asset backfill whose ranged runs of the heavy assets (cut by day, or a model's days
    beyond the cap) finish the later days first: its alerts run comes after all of them."""
    platform = engine_platform
    _serve_shifting_days(platform)
    reference = platform.clone_model(unique_model("in_order"))
    late_first = platform.clone_model(unique_model("late_first"))
    one_by_one = _one_by_one(platform, reference.name)

    heavy = tuple(k for k in ASSETS if k != "performance_alerts")
    later = _ranged(platform, heavy, late_first.name, DAYS[3:])
    earlier = _ranged(platform, heavy, late_first.name, DAYS[:3])
    # What the alerts asset's single_run policy makes of the backfill: one run, all the days.
    alerts = _ranged(platform, ("performance_alerts",), late_first.name, DAYS)

    expected = _expected(platform, reference.name)
    got = monitoring_results(platform.wh, model=late_first.name, first=DAYS[0], last=DAYS[-1])
    for kind in ("metrics", "drift", "alerts"):
        assert got[kind] == expected[kind], f"{kind} of {late_first.name}"
    seen: dict = {}
    for result in (later, earlier, alerts):
        seen |= _per_partition(result, late_first.name)
    assert seen == one_by_one


def test_an_alerts_day_follows_the_previous_day_of_its_model():
    """Declared so that an asset backfill starts a model's alert days only after its earlier
    ones (or together with them): the previous day of the same model, nothing else."""
    from mlops_assets.definitions import defs

    graph = defs().get_repository_def().asset_graph
    alerts = dg.AssetKey("performance_alerts")
    mapping = graph.get_partition_mapping(alerts, alerts)
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        graph.get(alerts)
        .partitions_def.empty_subset()
        .with_partition_keys([str(partition_key("2026-04-02", "a_model"))]),
        graph.get(alerts).partitions_def,
        graph.get(alerts).partitions_def,
    )
    assert set(upstream.partitions_subset.get_partition_keys()) == {
        str(partition_key("2026-04-01", "a_model"))
    }
