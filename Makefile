# Musify: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TOOLS_VENV  ?= .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed
AIRFLOW_VENV  ?= .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
BQEMU_VENV  ?= .venv-bqemu
BQEMU_STAMP := $(BQEMU_VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test test-quick lint typecheck bench clean dbt-sources

install: $(STAMP) $(TOOLS_STAMP) $(AIRFLOW_STAMP) $(BQEMU_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[broker,stream,java,warehouse,gcp,dev,deploy,dashboard]'
	touch $(STAMP)

# checkov for tests/deploy: its pinned dependencies clash with dbt-core's, so it gets a venv.
$(TOOLS_STAMP): deploy/tools-requirements.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet -r deploy/tools-requirements.txt
	touch $(TOOLS_STAMP)

# Airflow 3 (musify up, the DAG tests): its own venv, it cannot share dbt's dependencies.
$(AIRFLOW_STAMP): src/musify/orchestration/requirements-airflow.txt
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -r src/musify/orchestration/requirements-airflow.txt
	touch $(AIRFLOW_STAMP)

# The BigQuery emulator for the dbt bigquery target's tests: its own venv (DuckDB 1.5).
$(BQEMU_STAMP): src/musify/warehouse/requirements-bqemulator.txt
	$(PYTHON) -m venv $(BQEMU_VENV)
	$(BQEMU_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BQEMU_VENV)/bin/python -m pip install --quiet -r src/musify/warehouse/requirements-bqemulator.txt
	touch $(BQEMU_STAMP)

# The main job on the embedded defaults: the whole pipeline on this machine until Ctrl-C
# (broker, generator, Spark stream, Airflow, dashboard; state in MUSIFY_HOME).
run: install
	$(BIN)/musify up

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

# The fast subset: everything not marked slow.
test-quick: install
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python -m benchmarks

# The dbt sources of the raw tables are derived from src/musify/events.py.
dbt-sources: install
	$(BIN)/python -c "from musify.warehouse.raw import dbt_sources_yaml as y; print(y(), end='')" \
		> dbt/models/staging/sources.yml

clean:
	rm -rf $(VENV) $(TOOLS_VENV) $(AIRFLOW_VENV) $(BQEMU_VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
