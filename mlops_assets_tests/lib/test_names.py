"""Model names become paths, partition keys and MLflow names: one pattern at the boundary."""

import dagster as dg
import pytest

from mlops_assets.lib.names import validate_model_name


@pytest.mark.parametrize("name", ["match_outcome", "m", "A_1_v2", "x" * 50])
def test_valid_names_pass_unchanged(name: str):
    assert validate_model_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "../../x",  # would write drift reports outside the data directory
        "a|b",  # '|' separates multi-partition dimensions
        "",  # empty: predictions written, then failures
        ".hidden",  # must start with a letter
        "9lives",
        "A-1.v2",  # '-' and '.' cannot be part of a table name
        "a/b",
        "a b",
        "x" * 51,  # <model>__predictions must fit PostgreSQL's 63-byte identifiers
        "naïve",
    ],
)
def test_invalid_names_are_refused_with_the_rule(name: str):
    with pytest.raises(ValueError, match="letters, digits") as caught:
        validate_model_name(name)
    assert "model_name" in str(caught.value)


@pytest.mark.parametrize("name", ["../../x", "a|b", ""])
def test_a_model_declaration_refuses_before_anything_runs(name: str):
    from mlops_assets.lib.contract import ContractError, parse_contract

    declaration = {
        "name": name,
        "task": "binary",
        "model": {"registered": {"name": "m", "alias": "champion"}},
        "columns": {"target": "y", "probability": "p"},
        "baseline": {"source": {"table": "raw.v"}},
        "production": {"predictions": {"table": "s.p"}},
    }
    with pytest.raises(ContractError, match="model_name") as caught:
        parse_contract(declaration, source="m.yaml")
    assert "letters, digits" in str(caught.value)


def test_partition_keys_and_settings_use_the_same_rule(monkeypatch: pytest.MonkeyPatch):
    from mlops_assets.defs.partitions import partition_key
    from mlops_assets.settings import SettingsError, load_settings

    assert partition_key("2026-01-02", "m1") == dg.MultiPartitionKey(
        {"date": "2026-01-02", "model": "m1"}
    )
    with pytest.raises(ValueError, match="model_name"):
        partition_key("2026-01-02", "a|b")
    monkeypatch.setenv("MLOPS_MLFLOW_REGISTERED_MODEL_NAME", "../../x")
    with pytest.raises(SettingsError, match="MLOPS_MLFLOW_REGISTERED_MODEL_NAME"):
        load_settings()
