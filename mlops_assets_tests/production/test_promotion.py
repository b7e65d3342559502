"""The blocking champion_gate: a much worse run stays out of production, a comparable one is
promoted (training_runs.is_champion, active_model and the MLflow `champion` alias agree).

Runs under its own model name (a copy of the package's contract, same history table) so the
package's `match_outcome` champion is left alone. The bad run is the same contract with bad
parameters: a contract variant declared for that one run.
"""

import dagster as dg
import pytest

from mlops_assets.defs.partitions import MODELS
from mlops_assets.lib.contract import ModelCatalog
from mlops_assets.storage.monitoring import active_model
from mlops_assets_tests.production.conftest import MODEL as DEMO_MODEL
from mlops_assets_tests.production.conftest import TRAINING

MODEL = "promotion_model"
BAD = {"n_estimators": 1, "num_leaves": 2, "learning_rate": 0.001}


def _snapshot(platform) -> dict:
    from mlflow.tracking import MlflowClient

    wh = platform.wh
    client = MlflowClient(tracking_uri=platform.tracking_uri)
    return {
        "champions": [
            r["local_run_id"]
            for r in wh.query(
                "SELECT local_run_id FROM mlops.training_runs WHERE model_name = :m "
                "AND is_champion",
                {"m": MODEL},
            )
        ],
        "active": active_model(wh, MODEL).local_run_id,
        "alias": str(client.get_model_version_by_alias(MODEL, "champion").version),
        "baselines": {
            r["local_run_id"]
            for r in wh.query(
                "SELECT local_run_id FROM mlops.training_baselines WHERE model_name = :m",
                {"m": MODEL},
            )
        },
    }


def _train(platform, catalog=None, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    return platform.materialize(
        TRAINING, partition=MODEL, catalog=catalog, raise_on_error=raise_on_error
    )


@pytest.fixture(scope="module")
def promotion(platform):
    contract = platform.catalog.get(DEMO_MODEL).model_copy(update={"name": MODEL}, deep=True)
    platform.catalog.add(contract)
    platform.instance.add_dynamic_partitions(MODELS.name, [MODEL])
    recipe = contract.model.train
    bad = contract.model_copy(
        update={
            "model": contract.model.model_copy(
                update={"train": recipe.model_copy(update={"params": {**recipe.params, **BAD}})}
            )
        },
        deep=True,
    )
    first = _train(platform)
    bad_result = _train(platform, catalog=ModelCatalog([bad]), raise_on_error=False)
    after_bad = _snapshot(platform)
    comparable = _train(platform)  # the declared contract again: the champion's parameters
    return first, bad_result, after_bad, comparable


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def _gate(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [gate] = [e for e in result.get_asset_check_evaluations() if e.check_name == "champion_gate"]
    return gate


def test_a_much_worse_run_is_blocked_by_the_champion_gate(promotion):
    first, bad, after_bad, _ = promotion
    first_run = first.output_for_node("training_run")
    bad_run = bad.output_for_node("training_run")
    assert _gate(first).passed is True
    assert bad_run.metrics["accuracy"] < first_run.metrics["accuracy"] - 0.05

    gate = _gate(bad)
    assert gate.passed is False and gate.severity == dg.AssetCheckSeverity.ERROR
    reason = gate.metadata["reason"].value
    assert reason.startswith(f"worse than champion {first_run.local_run_id} on accuracy"), reason
    # Blocking: the run fails and the baseline production would be judged by is not written.
    assert bad.success is False
    assert _materialized(bad) == {"training_dataset", "training_run"}
    assert bad_run.local_run_id not in after_bad["baselines"]
    assert after_bad["champions"] == [first_run.local_run_id]
    assert after_bad["active"] == first_run.local_run_id
    assert after_bad["alias"] == first_run.model_version == "1"
    # The bad run is still tracked and registered, just not promoted.
    assert bad_run.tracking_status == "TRACKED" and bad_run.model_version == "2"


def test_a_comparable_run_is_promoted(platform, promotion):
    first, _, _, comparable = promotion
    run = comparable.output_for_node("training_run")
    first_run = first.output_for_node("training_run")
    assert comparable.success
    assert _gate(comparable).passed is True
    assert _gate(comparable).metadata["reason"].value == "not worse than the champion"
    assert run.metrics["accuracy"] == pytest.approx(first_run.metrics["accuracy"], abs=0.01)
    assert _materialized(comparable) == set(TRAINING)
    now = _snapshot(platform)
    assert now["champions"] == [run.local_run_id]
    assert now["active"] == run.local_run_id
    assert now["alias"] == run.model_version == "3"
    assert run.local_run_id in now["baselines"]
