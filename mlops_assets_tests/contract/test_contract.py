"""The model contract: what a valid declaration means, and one named error per problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mlops_assets.cli import main
from mlops_assets.lib.contract import (
    ContractError,
    ModelCatalog,
    UnknownModelError,
    load_contract_file,
    parse_contract,
)

MINIMAL = {
    "name": "credit_default",
    "task": "binary",
    "model": {"registered": {"name": "credit_default", "alias": "champion"}},
    "columns": {"target": "defaulted", "probability": "p_default"},
    "baseline": {"source": {"table": "raw.credit_validation"}},
    "production": {"predictions": {"table": "serving.credit_predictions"}},
}


def _with(**changes) -> dict:
    data = {**MINIMAL}
    for dotted, value in changes.items():
        node = data
        *path, last = dotted.split("__")
        for key in path:
            node[key] = dict(node[key])
            node = node[key]
        node[last] = value
    return data


def _problems(data: dict) -> list[str]:
    with pytest.raises(ContractError) as caught:
        parse_contract(data, source="models/credit.yaml")
    assert all(line.startswith("models/credit.yaml: ") for line in str(caught.value).splitlines())
    return caught.value.problems


def test_minimal_registered_model_gets_task_defaults():
    contract = parse_contract(MINIMAL, source="t")
    assert contract.model.registered.uri == "models:/credit_default@champion"
    assert list(contract.monitored_metrics()) == ["accuracy", "f1", "roc_auc", "log_loss"]
    assert contract.class_labels == ["0", "1"]
    assert contract.drift.engine == "scipy"  # the licence-free engine by default
    assert contract.alerts.severity_floor == "warning"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": "../../x"}, "name: model_name '../../x' is not allowed: use 1-50 characters"),
        ({"name": "a|b"}, "name: model_name 'a|b' is not allowed"),
        ({"name": ""}, "name: model_name '' is not allowed"),
        ({"name": "x" * 51}, "is not allowed: use 1-50 characters"),
        ({"task": "ranking"}, "task: Input should be 'binary', 'multiclass' or 'regression'"),
        ({"model": {}}, "model: give exactly one of registered or train"),
        (
            {"model": {"registered": {"name": "m"}}},
            "model.registered: give exactly one of alias or version",
        ),
        ({"columns__target": "bad column"}, "columns.target: column name 'bad column' must be"),
        ({"columns__features": {"x-1": "numeric"}}, "columns.features: column name 'x-1'"),
        ({"columns__features": {"x": "ordinal"}}, "columns.features.x: Input should be"),
        ({"production__predictions": {"table": "nodot"}}, "table must be schema.table"),
        (
            {"production__predictions": {"table": "a.b", "parquet": "/d"}},
            "give exactly one of table or parquet",
        ),
        (
            {"production__predictions": {"parquet": "/d", "lookback_seconds": 60}},
            "production.predictions: lookback_seconds applies to a table source",
        ),
        (
            {"production__labels": {"table": "a.b", "lookback_seconds": -1}},
            "production.labels.lookback_seconds: Input should be greater than or equal to 0",
        ),
        (
            {"baseline": {"source": {"table": "a.b", "lookback_seconds": 60}}},
            "baseline.source.lookback_seconds: Extra inputs are not permitted",
        ),
        ({"threshold": 1.5}, "threshold: Input should be less than or equal to 1"),
        ({"business_value": {"kind": "roi"}}, "business_value: kind roi needs odds_column"),
        (
            {"business_value": {"kind": "cost_matrix", "classes": ["0", "1"], "matrix": [[1]]}},
            "matrix must be 2 x 2",
        ),
        ({"monitoring": {"metrics": {"accuracy": {"warning": 0.2, "critical": 0.1}}}}, "critical"),
        ({"monitoring": {"metrics": {"auc": {"warning": 0.1, "critical": 0.2}}}}, "unknown metric"),
        ({"alerts": {"webhook_env": "http://x"}}, "webhook_env must be an environment variable"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"baseline": {}}, "baseline.source: a registered model needs validation data"),
    ],
)
def test_each_problem_is_named(changes, expected):
    problems = _problems(_with(**changes))
    assert any(expected in p for p in problems), problems


def test_task_specific_rules():
    regression = _with(task="regression")
    assert any("regression needs prediction" in p for p in _problems(regression))
    multiclass = _with(task="multiclass")
    problems = _problems(multiclass)
    assert any("multiclass needs probabilities" in p for p in problems)
    assert any("classes: multiclass needs classes" in p for p in problems)
    roi_on_regression = _with(
        task="regression",
        columns={"target": "y", "prediction": "y_hat"},
        business_value={"kind": "roi", "odds_column": "o"},
    )
    assert any("regression supports only kind none" in p for p in _problems(roi_on_regression))


def test_metrics_and_levels_come_from_the_task():
    """One source of truth: the task's metric names, default monitored set and levels."""
    from mlops_assets.lib.evaluation import monitored_levels
    from mlops_assets.lib.tasks import MulticlassTask, RegressionTask

    # A metric of another task is refused, naming the task and what it knows.
    problems = _problems(_with(monitoring={"metrics": {"mae": {"warning": 0.1, "critical": 0.2}}}))
    assert any("unknown metric(s) mae for task binary (known: accuracy," in p for p in problems)
    multiclass = parse_contract(
        _with(
            task="multiclass",
            classes=["a", "b", "c"],
            columns={"target": "y", "probabilities": {"a": "pa", "b": "pb", "c": "pc"}},
        ),
        source="t",
    )
    assert list(multiclass.monitored_metrics()) == list(MulticlassTask.default_monitored)
    levels = monitored_levels(multiclass, {"log_loss": 0.3})
    assert levels["log_loss"] == MulticlassTask.default_levels["log_loss"]
    regression = parse_contract(
        _with(task="regression", columns={"target": "y", "prediction": "y_hat"}), source="t"
    )
    # MAE's levels are a fraction of its baseline value; unknown until there is one.
    assert monitored_levels(regression, {"mae": 2.0})["mae"] == pytest.approx(
        tuple(2.0 * f for f in RegressionTask.relative_levels["mae"])
    )
    assert "mae" not in monitored_levels(regression, {})
    from mlops_assets.lib.tasks.business import ROI_LEVELS

    betting = parse_contract(
        _with(business_value={"kind": "roi", "odds_column": "odds"}), source="t"
    )
    assert monitored_levels(betting, {})["roi"] == ROI_LEVELS
    declared = parse_contract(
        _with(monitoring={"metrics": {"f1": {"warning": 0.2, "critical": 0.3}}}), source="t"
    )
    assert monitored_levels(declared, {}) == {"f1": (0.2, 0.3)}


def test_trained_here_needs_features_and_labels_table_needs_cursor():
    data = _with(model={"train": {"source": {"table": "raw.history"}}})
    data["production"] = {
        "predictions": {"table": "s.p"},
        "labels": {"table": "s.labels"},
    }
    problems = _problems(data)
    assert any(p.startswith("(top level)") and "columns.features: required" in p for p in problems)
    assert any("columns.labelled_at: required" in p for p in problems)


def test_all_problems_at_once_one_line_each():
    problems = _problems({"name": "a b", "task": "x", "columns": {}, "production": {}})
    joined = "\n".join(problems)
    for field in ("name:", "task:", "model:", "columns.target:", "production.predictions:"):
        assert field in joined
    assert len(problems) >= 5


def test_yaml_file_errors_name_the_file(tmp_path: Path):
    path = tmp_path / "credit.yaml"
    path.write_text("type: mlops_assets.MonitoredModel\nattributes:\n  name: [unclosed\n")
    with pytest.raises(ContractError, match=r"credit.yaml: cannot read YAML"):
        load_contract_file(path)
    path.write_text("just text")
    with pytest.raises(ContractError, match=r"credit.yaml: expected `type: mlops_assets"):
        load_contract_file(path)


def test_catalog_rejects_duplicates_and_names_known_models():
    contract = parse_contract(MINIMAL, source="t")
    with pytest.raises(ContractError, match="declared twice"):
        ModelCatalog([contract, contract])
    catalog = ModelCatalog([contract])
    with pytest.raises(UnknownModelError, match="declared: credit_default"):
        catalog.get("other")


def _write_model(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(textwrap.dedent(body))


GOOD_YAML = """
type: mlops_assets.MonitoredModel
attributes:
  name: credit_default
  task: binary
  model: {registered: {name: credit_default, alias: champion}}
  columns: {target: defaulted, probability: p_default}
  baseline: {source: {table: raw.credit_validation}}
  production: {predictions: {parquet: /data/credit/predictions}}
"""


def test_models_cli_lists_and_validates(tmp_path, monkeypatch, capsys, mlops_home):
    folder = tmp_path / "models"
    _write_model(folder, "credit", GOOD_YAML)
    monkeypatch.setenv("MLOPS_MODELS_PATH", str(folder))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "credit_default" in out and "models:/credit_default@champion" in out
    assert main(["models", "validate"]) == 0
    assert "1 model declaration(s) valid: credit_default" in capsys.readouterr().out

    _write_model(folder, "broken", GOOD_YAML.replace("task: binary", "task: ranking"))
    assert main(["models", "validate"]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "broken.yaml: task: Input should be" in err
    assert "Traceback" not in err


def test_demo_models_are_component_instances():
    from mlops_assets.platform import catalog_of, demo_models

    catalog = catalog_of([demo_models()])
    assert catalog.names == ["match_outcome", "wine_cultivar"]
    match, wine = catalog.get("match_outcome"), catalog.get("wine_cultivar")
    assert match.task == "binary" and match.model.train is not None
    assert match.business_value.kind == "roi" and match.business_value.value_margin == 0.02
    assert wine.task == "multiclass" and wine.model.registered is not None
    assert wine.columns.features is None  # taken from the registered model's signature
