# The two quick-start commands: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint dev bench clean celery-workers

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,celery]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mlops-assets demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest -ra

dev: $(STAMP)
	mkdir -p .mlops/dagster
	test -f .mlops/dagster/dagster.yaml || printf 'telemetry:\n  enabled: false\n' > .mlops/dagster/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.mlops/dagster $(BIN)/dagster dev -w workspace.yaml

# Two Celery workers with their own data directories (two "hosts"), until Ctrl-C. Start the
# daemon or webserver with MLOPS_EXECUTOR=celery and the same MLOPS_CELERY_BROKER and warehouse.
celery-workers: $(STAMP)
	$(BIN)/python -m mlops_assets_tests.celery_cluster --workers 2

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/drift_speed.py
	$(BIN)/python bench/mlflow_outage.py
	$(BIN)/python bench/replay_throughput.py

clean:
	rm -rf $(VENV) .mlops
