"""The code location loads, the product's assets are in it, each in its group, and the models it
serves are the demo's or the YAML files MLOPS_MODELS_PATH names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mlops_assets.definitions import defs as load_defs
from mlops_assets.lib.contract import ContractError, ModelCatalog
from mlops_assets.platform import MODELS_PATH_VARIABLE

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


DEMO_MODELS = {"match_outcome", "wine_cultivar"}
MODEL_FILES = sorted((REPO / "mlops_assets" / "defs" / "models").rglob("defs.yaml"))


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    """The code location as `dg dev` loads it: the demo's models (no MLOPS_MODELS_PATH)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(MODELS_PATH_VARIABLE, raising=False)
        return load_defs()


def _specs(defs: dg.Definitions) -> dict[str, dg.AssetSpec]:
    return {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}


def _catalog(defs: dg.Definitions) -> ModelCatalog:
    with dg.build_resources({"models": defs.resources["models"]}) as resources:
        return resources.models


def test_definitions_are_loadable(defs):
    dg.Definitions.validate_loadable(defs)


def test_expected_assets_are_present(defs):
    missing = set(EXPECTED_GROUPS) - set(_specs(defs))
    assert not missing, f"missing assets: {sorted(missing)}"


def test_expected_assets_are_in_their_groups(defs):
    specs = _specs(defs)
    groups = {key: specs[key].group_name for key in EXPECTED_GROUPS if key in specs}
    assert groups == EXPECTED_GROUPS


def test_no_asset_is_left_in_the_default_group(defs):
    ungrouped = sorted(k for k, s in _specs(defs).items() if s.group_name in (None, "default"))
    assert not ungrouped, f"assets in the default group: {ungrouped}"


def test_resources_the_assets_need_are_bound(defs):
    assert {"warehouse", "mlflow", "models"} <= set(defs.resources or {})
    graph = defs.resolve_asset_graph()
    training_run = graph.assets_def_for_key(dg.AssetKey("training_run"))
    assert {"warehouse", "mlflow", "models"} <= training_run.required_resource_keys
    production = graph.assets_def_for_key(dg.AssetKey("production_predictions"))
    assert "models" in production.required_resource_keys


def test_without_a_models_path_the_demo_models_are_served(defs):
    assert set(_catalog(defs).names) == DEMO_MODELS
    assert defs.metadata["mlops_assets/models"].value == ", ".join(sorted(DEMO_MODELS))


def test_training_lineage(defs):
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
        **{k: v for k, v in os.environ.items() if k != MODELS_PATH_VARIABLE},
        "MLOPS_MLFLOW_CIRCUIT_BREAKER_FAILURE_THRESHOLD": "0",
        "MLOPS_WAREHOUSE_BACKEND": "oracle",
        "MLOPS_HOME": str(tmp_path / "home"),
    }
    code = (
        "import dagster as dg\n"
        "from mlops_assets.definitions import defs as load\n"
        "defs = load()\n"
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


# Each costs a tenth of a second or more to import; a run worker that loads the code location
# pays it before its first step (issue 12, finding 10). The asset functions import them.
HEAVY_MODULES = ("pandas", "scipy", "mlflow", "sklearn", "lightgbm", "requests")


def test_loading_the_code_location_imports_no_heavy_module():
    """Loading as a code server or run worker does (import, build, resolve the repository)
    leaves pandas, scipy, mlflow, scikit-learn, LightGBM and requests unimported."""
    code = (
        "import json, sys\n"
        "import dagster as dg\n"
        "from mlops_assets.definitions import defs as load\n"
        "defs = load()\n"
        "dg.Definitions.validate_loadable(defs)\n"
        "defs.get_repository_def().get_all_jobs()\n"
        f"print(json.dumps(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != MODELS_PATH_VARIABLE}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


# --------------------------------------------------------------------------- MLOPS_MODELS_PATH


def _model_file(folder: Path, template: Path, name: str, **changes) -> Path:
    """A copy of one of the demo's model files under another name, with `changes` applied."""
    document = yaml.safe_load(template.read_text())
    document["attributes"] |= {"name": name, **changes}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_models_path_serves_exactly_the_models_in_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    (folder / "nested").mkdir(parents=True)
    binary, multiclass = MODEL_FILES  # match_outcome, wine_cultivar (sorted by folder)
    _model_file(folder, binary, "churn", description="Customer churn")
    _model_file(folder / "nested", multiclass, "grape_variety")
    monkeypatch.setenv(MODELS_PATH_VARIABLE, str(folder))
    loaded = load_defs()
    dg.Definitions.validate_loadable(loaded)
    catalog = _catalog(loaded)
    assert catalog.names == ["churn", "grape_variety"]
    assert catalog.get("churn").task == "binary"
    assert catalog.get("churn").description == "Customer churn"
    assert catalog.get("grape_variety").task == "multiclass"
    assert loaded.metadata["mlops_assets/models"].value == "churn, grape_variety"
    # The platform's assets do not depend on which models are declared.
    assert set(EXPECTED_GROUPS) <= set(_specs(loaded))


def test_a_bad_model_file_fails_the_load_naming_file_and_field(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    binary, _ = MODEL_FILES
    _model_file(folder, binary, "good")
    bad = _model_file(folder, binary, "bad", task="ternary")
    monkeypatch.setenv(MODELS_PATH_VARIABLE, str(folder))
    with pytest.raises(ContractError) as caught:
        load_defs()
    lines = [line for line in str(caught.value).splitlines() if "task" in line]
    assert len(lines) == 1, str(caught.value)
    assert str(bad) in lines[0]
    assert "ternary" in lines[0] or "binary" in lines[0]


def test_a_models_path_that_is_not_a_folder_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_PATH_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(ContractError, match=MODELS_PATH_VARIABLE):
        load_defs()
