"""The `mlops-assets` command: bad settings exit 2 with one line per problem; queries print CSV."""

from __future__ import annotations

import csv
import io

import pytest

from mlops_assets.cli import main

# None of the variables `demo` deliberately sets itself (demo.DEMO_BREAKER_ENV).
BAD_ENV = {
    "MLOPS_MLFLOW_MAX_RETRIES": "11",
    "MLOPS_MLFLOW_RETRY_DELAY": "-1",
    "MLOPS_WAREHOUSE_BACKEND": "oracle",
}


@pytest.mark.parametrize(
    "command",
    [["query", "SELECT 1"], ["demo"], ["status"], ["flush"], ["buffer"], ["ack", "1"]],
    ids=lambda c: c[0],
)
def test_bad_settings_exit_2_with_one_line_per_problem(mlops_home, monkeypatch, capsys, command):
    for key, value in BAD_ENV.items():
        monkeypatch.setenv(key, value)
    assert main(command) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: ")
    problems = lines[1:]
    assert len(problems) == len(BAD_ENV)
    for variable, value in BAD_ENV.items():
        matching = [line for line in problems if line.strip().startswith(f"{variable}=")]
        assert len(matching) == 1, f"{variable} should be on exactly one line: {err}"
        assert repr(value) in matching[0]
    assert "less than or equal to 10" in err
    assert "greater than or equal to 0" in err
    assert "'embedded' or 'postgres'" in err
    # Nothing was created: the configuration was rejected before any I/O.
    assert not mlops_home.exists()


def test_breaker_value_out_of_range_exits_2(mlops_home, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_MLFLOW_CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "29")
    assert main(["status"]) == 2
    problem_lines = capsys.readouterr().err.strip().splitlines()[1:]
    assert [line.strip() for line in problem_lines] == [
        "MLOPS_MLFLOW_CIRCUIT_BREAKER_RECOVERY_TIMEOUT='29': "
        "Input should be greater than or equal to 30"
    ]


def test_single_bad_value_is_one_problem_line(mlops_home, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_WAREHOUSE_DSN", "mysql://root@localhost/db")
    assert main(["query", "SELECT 1"]) == 2
    err = capsys.readouterr().err
    problem_lines = err.strip().splitlines()[1:]
    assert len(problem_lines) == 1
    assert problem_lines[0].strip().startswith("MLOPS_WAREHOUSE_DSN='mysql://root@localhost/db'")


def test_query_prints_csv_from_the_embedded_warehouse(mlops_home, tmp_path, capsys):
    home = tmp_path / "cli-home"
    assert main(["--home", str(home), "query", "SELECT 41 + 1 AS answer, 'a,b' AS text"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows == [["answer", "text"], ["42", "a,b"]]
    # --home wins over MLOPS_HOME.
    assert (home / "warehouse.duckdb").is_file()
    assert not mlops_home.exists()


def test_query_reads_migrated_tables(mlops_home, capsys):
    assert main(["query", "SELECT count(*) AS n FROM mlops.training_runs"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "0"]


def test_missing_command_is_a_usage_error(mlops_home, capsys):
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "usage: mlops-assets" in capsys.readouterr().err


def test_models_validate_warns_when_a_predictions_table_has_no_load_column(
    mlops_home, tmp_path, monkeypatch, capsys
):
    """Found walking the README: without columns.loaded_at a table is polled by its timestamp,
    so an out-of-order or re-delivered batch was skipped by the sensor without a word."""
    models = tmp_path / "models"
    models.mkdir()
    body = """type: mlops_assets.MonitoredModel
attributes:
  name: {name}
  task: binary
  model: {{registered: {{name: credit, alias: champion}}}}
  columns: {{id: loan_id, timestamp: scored_at, target: defaulted, probability: p{extra}}}
  baseline: {{source: {{table: raw.credit_validation}}}}
  production: {{predictions: {{table: serving.{name}}}}}
"""
    (models / "a.yaml").write_text(body.format(name="credit_a", extra=""))
    (models / "b.yaml").write_text(body.format(name="credit_b", extra=", loaded_at: written_at"))
    monkeypatch.setenv("MLOPS_MODELS_PATH", str(models))
    assert main(["models", "validate"]) == 0
    out, err = capsys.readouterr()
    assert "2 model declaration(s) valid" in out
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err
    assert "model credit_a: columns.loaded_at: not set" in warnings[0]
    assert "out-of-order or re-delivered batch" in warnings[0]


def test_status_on_an_empty_health_table_says_how_to_fill_it(mlops_home, capsys):
    """Found walking the README: monitoring runs do not write the health table, and `status`
    printed a bare header, as if no model were monitored."""
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "no rows" in out and "--select group:lifecycle" in out, out
