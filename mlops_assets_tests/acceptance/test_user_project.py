"""Issue 9 acceptance: a user's own Dagster project declares a model in YAML and runs it.

A throwaway project in a temporary folder, laid out as `dg` scaffolds one (pyproject.toml with
[tool.dg], a package whose definitions.py hands its defs folder to
`mlops_assets.platform_definitions`, one `defs/<model>/defs.yaml` of type
`mlops_assets.MonitoredModel`). It is loaded and materialized in subprocesses with the installed
package: the venv's python, cwd the project, PYTHONPATH the project and this repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"
PYPROJECT = """\
[project]
name = "credit_team"
version = "0.1.0"
dependencies = ["mlops_assets"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "credit_team"
"""
DEFINITIONS = """\
from pathlib import Path

import dagster as dg

import mlops_assets


@dg.definitions
def defs() -> dg.Definitions:
    return mlops_assets.platform_definitions(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    )
"""
MATERIALIZE = """\
import json

import dagster as dg

from credit_team.definitions import defs

definitions = defs()
instance = dg.DagsterInstance.get()
instance.add_dynamic_partitions("models", ["credit_default"])
result = dg.materialize(
    [definitions.get_assets_def(dg.AssetKey(k))
     for k in ("training_dataset", "training_run", "training_baseline")],
    resources=definitions.resources,
    instance=instance,
    partition_key="credit_default",
)
run = result.output_for_node("training_run")
print(json.dumps({
    "success": result.success,
    "model_name": run.model_name,
    "tracking_status": run.tracking_status,
    "mlflow_run_id": run.mlflow_run_id,
    "metrics": run.metrics,
    "models": definitions.metadata["mlops_assets/models"].value
        if hasattr(definitions.metadata["mlops_assets/models"], "value")
        else definitions.metadata["mlops_assets/models"],
}))
"""


def _declaration(history: Path) -> dict:
    return {
        "type": "mlops_assets.MonitoredModel",
        "attributes": {
            "name": MODEL,
            "task": "binary",
            "model": {
                "train": {
                    "source": {"parquet": str(history)},
                    "estimator": "sklearn.ensemble.GradientBoostingClassifier",
                    "params": {"n_estimators": 30, "max_depth": 2},
                }
            },
            "columns": {
                "id": "loan_id",
                "timestamp": "decided_at",
                "target": "defaulted",
                "probability": "p_default",
                "features": {
                    "income": "numeric",
                    "debt_ratio": "numeric",
                    "grade": "categorical",
                },
            },
            "baseline": {"n_boot": 30, "reference_rows": 200},
            "production": {"predictions": {"table": "serving.credit_predictions"}},
        },
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "credit_team_project"
    package = root / "credit_team"
    (package / "defs" / MODEL).mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "definitions.py").write_text(DEFINITIONS)
    (package / "defs" / "__init__.py").write_text("")
    (root / "materialize.py").write_text(MATERIALIZE)
    history = tmp_path / "data" / "credit_history"
    history.mkdir(parents=True)
    rng = np.random.default_rng(5)
    n = 1200
    frame = pd.DataFrame(
        {
            "income": rng.lognormal(10, 0.4, n),
            "debt_ratio": rng.uniform(0, 1, n),
            "grade": rng.choice(["A", "B", "C"], n),
        }
    )
    logit = 2.5 * frame["debt_ratio"] - 1.5 + (frame["grade"] == "C") * 0.8
    frame["defaulted"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame.to_parquet(history / "history.parquet", index=False)
    _write_model(root, _declaration(history))
    return root


def _write_model(root: Path, document: dict) -> Path:
    path = root / "credit_team" / "defs" / MODEL / "defs.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLOPS_", "MLFLOW_", "DAGSTER_")) and k != "PYTHONPATH"
    }
    home = project.parent / "home"
    dagster_home = project.parent / "dagster_home"
    dagster_home.mkdir(exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env |= {
        "PYTHONPATH": os.pathsep.join([str(project), str(REPO)]),
        "MLOPS_HOME": str(home),
        "MLOPS_MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "DAGSTER_HOME": str(dagster_home),
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _validate(project: Path) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    return _run(
        project,
        str(bin_dir / "dagster"),
        "definitions",
        "validate",
        "-m",
        "credit_team.definitions",
    )


def test_a_user_project_declares_a_model_in_yaml_and_trains_it(project: Path):
    validated = _validate(project)
    assert validated.returncode == 0, validated.stdout + validated.stderr

    done = _run(project, "materialize.py")
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["success"] is True
    assert out["model_name"] == MODEL and out["models"] == MODEL
    assert out["tracking_status"] == "TRACKED" and out["mlflow_run_id"]
    assert 0.5 < out["metrics"]["accuracy"] <= 1.0
    assert out["metrics"]["roc_auc"] > 0.6

    # What it left behind, read from this process: the run and the baseline in the warehouse.
    from mlops_assets.storage.warehouse import DuckDBWarehouse

    wh = DuckDBWarehouse(project.parent / "home" / "warehouse.duckdb")
    rows = wh.query(
        "SELECT r.mlflow_run_id, b.baseline_mlflow_run_id FROM mlops.training_runs r "
        "JOIN mlops.training_baselines b ON b.local_run_id = r.local_run_id "
        "WHERE r.model_name = :m",
        {"m": MODEL},
    )
    assert rows == [
        {"mlflow_run_id": out["mlflow_run_id"], "baseline_mlflow_run_id": out["mlflow_run_id"]}
    ]


def test_a_bad_declaration_fails_naming_file_and_field(project: Path, tmp_path: Path):
    document = _declaration(tmp_path / "data" / "credit_history")
    document["attributes"]["task"] = "ternary"
    document["attributes"]["columns"]["id"] = "loan id"
    path = _write_model(project, document)
    validated = _validate(project)
    output = validated.stdout + validated.stderr
    assert validated.returncode != 0, output
    # One line per problem, each naming the field and the file (with its line).
    assert f"attributes.task at {path}:" in output, output
    assert f"attributes.columns.id at {path}:" in output, output
    assert "'ternary'" in output and "'loan id'" in output, output
