"""MLOPS_BACKFILL_PARTITIONS_PER_RUN sets the backfill policy of the production and drift
assets in the real code location, performance_alerts excepted (always one run for all its
days, so alerts are folded in date order), and a bad value fails the load naming the variable."""

from __future__ import annotations

import dagster as dg
import pytest

from mlops_assets.settings import SettingsError

BACKFILLED = ("production_predictions", "production_metrics", "feature_drift_report")


def _policies(monkeypatch: pytest.MonkeyPatch, value: str | None) -> dict[str, object]:
    from mlops_assets.definitions import defs

    if value is None:
        monkeypatch.delenv("MLOPS_BACKFILL_PARTITIONS_PER_RUN", raising=False)
    else:
        monkeypatch.setenv("MLOPS_BACKFILL_PARTITIONS_PER_RUN", value)
    graph = defs().get_repository_def().asset_graph
    return {
        key.to_user_string(): graph.get(key).backfill_policy for key in graph.get_all_asset_keys()
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, dg.BackfillPolicy.multi_run(31)),
        ("7", dg.BackfillPolicy.multi_run(7)),
        ("1", dg.BackfillPolicy.multi_run(1)),  # one run per partition, as a job backfill
        (" ALL ", dg.BackfillPolicy.single_run()),
    ],
)
def test_the_policy_applies_to_production_and_drift_only(monkeypatch, value, expected):
    policies = _policies(monkeypatch, value)
    assert {k: policies[k] for k in BACKFILLED} == dict.fromkeys(BACKFILLED, expected)
    # Whatever the setting: an asset backfill folds every alert in one run after the others.
    assert policies["performance_alerts"] == dg.BackfillPolicy.single_run()
    # Training is partitioned by model only and runs one model per run.
    assert policies["training_run"] is None


@pytest.mark.parametrize("value", ["0", "-3", "many", "2.5", "10001"])
def test_a_bad_value_fails_the_load_naming_the_variable(monkeypatch, value):
    with pytest.raises(SettingsError, match=r"MLOPS_BACKFILL_PARTITIONS_PER_RUN=.*1 to 10000"):
        _policies(monkeypatch, value)
