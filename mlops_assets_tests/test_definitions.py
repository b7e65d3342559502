"""The code location loads, and the product's assets are in it, each in its group."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from mlops_assets.definitions import defs

REPO = Path(__file__).resolve().parents[1]

# Asset key -> group. New assets only need a line here: the check is "at least these".
EXPECTED_GROUPS = {
    "training_dataset": "training",
    "training_run": "training",
    "training_baseline": "training",
    "production_predictions": "production",
    "production_metrics": "production",
    "feature_drift_report": "drift",
}


def _specs() -> dict[str, dg.AssetSpec]:
    return {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}


def test_definitions_are_loadable():
    dg.Definitions.validate_loadable(defs)


def test_expected_assets_are_present():
    missing = set(EXPECTED_GROUPS) - set(_specs())
    assert not missing, f"missing assets: {sorted(missing)}"


def test_expected_assets_are_in_their_groups():
    specs = _specs()
    groups = {key: specs[key].group_name for key in EXPECTED_GROUPS if key in specs}
    assert groups == EXPECTED_GROUPS


def test_no_asset_is_left_in_the_default_group():
    ungrouped = sorted(k for k, s in _specs().items() if s.group_name in (None, "default"))
    assert not ungrouped, f"assets in the default group: {ungrouped}"


def test_resources_the_assets_need_are_bound():
    assert {"warehouse", "mlflow"} <= set(defs.resources or {})
    graph = defs.resolve_asset_graph()
    training_run = graph.assets_def_for_key(dg.AssetKey("training_run"))
    assert {"warehouse", "mlflow"} <= training_run.required_resource_keys


def test_training_lineage():
    graph = defs.resolve_asset_graph()
    parents = {
        key: {p.to_user_string() for p in graph.get(dg.AssetKey(key)).parent_keys}
        for key in ("training_run", "training_baseline")
    }
    assert "training_dataset" in parents["training_run"]
    assert "training_run" in parents["training_baseline"]


def test_loading_the_code_location_reads_no_settings(tmp_path):
    """Settings are read at launch, never at import: a bad value must not break loading."""
    env = {
        **os.environ,
        "MLOPS_MLFLOW_CIRCUIT_BREAKER_FAILURE_THRESHOLD": "0",
        "MLOPS_WAREHOUSE_BACKEND": "oracle",
        "MLOPS_HOME": str(tmp_path / "home"),
    }
    code = (
        "import dagster as dg\n"
        "from mlops_assets.definitions import defs\n"
        "dg.Definitions.validate_loadable(defs)\n"
        "print(len(list(defs.resolve_all_asset_specs())))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.strip().splitlines()[-1]) >= len(EXPECTED_GROUPS)
    assert not (tmp_path / "home").exists(), "loading the definitions touched MLOPS_HOME"
