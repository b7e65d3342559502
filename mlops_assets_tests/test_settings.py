"""`load_settings`: good values load, bad ones fail once with every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_assets.settings import SettingsError, load_settings

FAILURES = "MLOPS_MLFLOW_CIRCUIT_BREAKER_FAILURE_THRESHOLD"
RECOVERY = "MLOPS_MLFLOW_CIRCUIT_BREAKER_RECOVERY_TIMEOUT"
BACKEND = "MLOPS_WAREHOUSE_BACKEND"
DSN = "MLOPS_WAREHOUSE_DSN"
PG_DSN = "postgresql://mlops@db.internal:5432/mlops"

# (environment, attribute path on Settings, expected value)
GOOD = [
    ({}, "mlflow.circuit_breaker_failure_threshold", 5),
    ({FAILURES: "1"}, "mlflow.circuit_breaker_failure_threshold", 1),
    ({FAILURES: "5"}, "mlflow.circuit_breaker_failure_threshold", 5),
    ({FAILURES: "20"}, "mlflow.circuit_breaker_failure_threshold", 20),
    ({}, "mlflow.circuit_breaker_recovery_timeout", 60.0),
    ({RECOVERY: "30"}, "mlflow.circuit_breaker_recovery_timeout", 30.0),
    ({RECOVERY: "60"}, "mlflow.circuit_breaker_recovery_timeout", 60.0),
    ({RECOVERY: "300"}, "mlflow.circuit_breaker_recovery_timeout", 300.0),
    ({"MLOPS_MLFLOW_ENABLE_CIRCUIT_BREAKER": "false"}, "mlflow.enable_circuit_breaker", False),
    ({"MLOPS_MLFLOW_MAX_RETRIES": "3"}, "mlflow.max_retries", 3),
    ({}, "warehouse.backend", "embedded"),
    ({}, "warehouse.dsn", None),
    ({DSN: ""}, "warehouse.dsn", None),
    ({BACKEND: "postgres", DSN: PG_DSN}, "warehouse.backend", "postgres"),
    ({BACKEND: "postgres", DSN: PG_DSN}, "warehouse.dsn", PG_DSN),
    ({DSN: "postgres://mlops@127.0.0.1/wh"}, "warehouse.dsn", "postgres://mlops@127.0.0.1/wh"),
]

# (environment, the variable the message must name, the text saying what is allowed)
BAD = [
    ({FAILURES: "0"}, FAILURES, "greater than or equal to 1"),
    ({FAILURES: "-3"}, FAILURES, "greater than or equal to 1"),
    ({FAILURES: "21"}, FAILURES, "less than or equal to 20"),
    ({FAILURES: "five"}, FAILURES, "valid integer"),
    ({RECOVERY: "29"}, RECOVERY, "greater than or equal to 30"),
    ({RECOVERY: "301"}, RECOVERY, "less than or equal to 300"),
    ({"MLOPS_MLFLOW_MAX_RETRIES": "11"}, "MLOPS_MLFLOW_MAX_RETRIES", "less than or equal to 10"),
    ({"MLOPS_MLFLOW_CONNECTION_TIMEOUT": "0"}, "MLOPS_MLFLOW_CONNECTION_TIMEOUT", "greater than 0"),
    (
        {"MLOPS_MLFLOW_ENABLE_CIRCUIT_BREAKER": "maybe"},
        "MLOPS_MLFLOW_ENABLE_CIRCUIT_BREAKER",
        "valid boolean",
    ),
    ({"MLOPS_MLFLOW_EXPERIMENT_NAME": ""}, "MLOPS_MLFLOW_EXPERIMENT_NAME", "at least 1 character"),
    ({BACKEND: "oracle"}, BACKEND, "'embedded' or 'postgres'"),
    ({DSN: "mysql://user@host:3306/db"}, DSN, "postgresql://user@host:5432/dbname"),
    ({DSN: "postgresql:///no_host"}, DSN, "postgresql://user@host:5432/dbname"),
    ({DSN: "postgresql://user@host:5432"}, DSN, "postgresql://user@host:5432/dbname"),
    ({DSN: "not a dsn"}, DSN, "postgresql://user@host:5432/dbname"),
    ({BACKEND: "postgres"}, DSN, "MLOPS_WAREHOUSE_BACKEND=postgres needs"),
]


def _ids(env: dict[str, str]) -> str:
    return ",".join(f"{k.removeprefix('MLOPS_')}={v}" for k, v in env.items()) or "defaults"


def _attr(obj: object, dotted: str) -> object:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize(
    ("env", "attribute", "expected"), GOOD, ids=[f"{_ids(e)}->{a}" for e, a, _ in GOOD]
)
def test_good_values_load(mlops_home, monkeypatch, env, attribute, expected):
    _set_env(monkeypatch, env)
    settings = load_settings()
    assert _attr(settings, attribute) == expected


@pytest.mark.parametrize(("env", "variable", "allowed"), BAD, ids=[_ids(e) for e, _, _ in BAD])
def test_bad_value_names_variable_and_what_is_allowed(
    mlops_home, monkeypatch, env, variable, allowed
):
    _set_env(monkeypatch, env)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    lines = [line for line in message.splitlines() if variable in line]
    assert lines, f"{variable} not named in: {message}"
    assert any(allowed in line for line in lines), f"{allowed!r} not in: {message}"
    # The offending value is echoed so the operator sees what was read.
    for value in env.values():
        if value:
            assert value in message


def test_every_problem_is_reported_at_once(mlops_home, monkeypatch):
    _set_env(
        monkeypatch,
        {
            "MLOPS_MLFLOW_CIRCUIT_BREAKER_FAILURE_THRESHOLD": "0",
            "MLOPS_MLFLOW_CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "301",
            "MLOPS_WAREHOUSE_BACKEND": "oracle",
        },
    )
    with pytest.raises(SettingsError) as caught:
        load_settings()
    problem_lines = str(caught.value).splitlines()[1:]
    assert len(problem_lines) == 3
    named = {line.strip().split("=", 1)[0] for line in problem_lines}
    assert named == {
        "MLOPS_MLFLOW_CIRCUIT_BREAKER_FAILURE_THRESHOLD",
        "MLOPS_MLFLOW_CIRCUIT_BREAKER_RECOVERY_TIMEOUT",
        "MLOPS_WAREHOUSE_BACKEND",
    }


def test_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)


def test_overrides_win_over_environment(mlops_home, monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_WAREHOUSE_BACKEND", "oracle")
    settings = load_settings(home=str(tmp_path / "explicit"), backend="embedded")
    assert settings.warehouse.backend == "embedded"
    assert settings.home == (tmp_path / "explicit").resolve()
    assert settings.embedded_path == (tmp_path / "explicit" / "warehouse.duckdb").resolve()


def test_home_comes_from_mlops_home(mlops_home):
    settings = load_settings()
    assert settings.home == mlops_home.resolve()
    assert settings.embedded_path == mlops_home.resolve() / "warehouse.duckdb"


def test_relative_home_is_taken_from_the_working_directory(mlops_home, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLOPS_HOME", "data/dir")
    assert load_settings().home == (tmp_path / "data" / "dir").resolve()


def test_nothing_is_read_until_load_settings_is_called(mlops_home, monkeypatch):
    settings = load_settings()
    monkeypatch.setenv("MLOPS_MLFLOW_CIRCUIT_BREAKER_FAILURE_THRESHOLD", "7")
    assert settings.mlflow.circuit_breaker_failure_threshold == 5
    assert load_settings().mlflow.circuit_breaker_failure_threshold == 7


# ------------------------------------------------------------------ tracking URI precedence


def test_tracking_uri_defaults_to_sqlite_under_home(mlops_home):
    settings = load_settings()
    expected = mlops_home.resolve() / "mlflow" / "mlflow.db"
    assert settings.tracking_uri == f"sqlite:///{expected}"
    assert Path(settings.tracking_uri.removeprefix("sqlite:///")).is_absolute()


def test_mlflow_tracking_uri_beats_the_default(mlops_home, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert load_settings().tracking_uri == "http://mlflow.internal:5000"


def test_mlops_setting_beats_mlflow_tracking_uri(mlops_home, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", "http://mlops-mlflow:5001")
    assert load_settings().tracking_uri == "http://mlops-mlflow:5001"


def test_explicit_override_beats_both_variables(mlops_home, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    monkeypatch.setenv("MLOPS_MLFLOW_TRACKING_URI", "http://mlops-mlflow:5001")
    settings = load_settings(tracking_uri="http://explicit:5002")
    assert settings.tracking_uri == "http://explicit:5002"


def test_empty_mlflow_tracking_uri_falls_back_to_home(mlops_home, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    assert load_settings().tracking_uri.startswith(f"sqlite:///{mlops_home.resolve()}")
