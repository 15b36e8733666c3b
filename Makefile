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
LATEST_VENV ?= .venv-latest
PYTEST_ARGS ?=
# make test and test-quick run the tests on two workers, one test file at a time each, the
# longest files first (pytest-xdist; tests/conftest.py orders them): a file keeps its module
# fixtures, and while one worker waits on a JVM, a broker or Airflow, the other runs.
# TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2
XDIST  := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
PYTEST := $(BIN)/pytest $(XDIST)

# Every environment installs from its lock in requirements/ (make lock writes them), with
# every hash checked, by uv; uv itself is installed by pip from its own hashed lock.
UV_VENV  ?= .venv-uv
UV       := $(UV_VENV)/bin/uv
UV_STAMP := $(UV_VENV)/.installed
LOCKS    := requirements
# Source builds (pyspark ships no wheel; Musify's editable install) get their build
# dependencies from a hashed lock too.
UV_PIP   := UV_BUILD_CONSTRAINT=$(LOCKS)/build.txt $(UV) pip
SYNC     := $(UV_PIP) sync --quiet --require-hashes --index-url https://pypi.org/simple
# uv leaves whichever copy it wrote last of a file that several distributions ship (dbt's
# namespace __init__.py files); settle.py reinstalls their owners in a fixed order, so an
# environment is the same bytes on every install.
SETTLE   := UV_BUILD_CONSTRAINT=$(LOCKS)/build.txt $(PYTHON) $(LOCKS)/settle.py

.PHONY: install lock test-latest run test test-quick lint typecheck bench docs clean dbt-sources

install: $(STAMP) $(TOOLS_STAMP) $(AIRFLOW_STAMP) $(BQEMU_STAMP)

$(UV_STAMP): $(LOCKS)/uv.txt
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install --quiet --no-deps --require-hashes -r $(LOCKS)/uv.txt
	touch $@

# (a venv made by uv has no pip: nothing here needs one)
define make_venv
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(1)
	$(SYNC) --python $(1)/bin/python $(2)
	$(SETTLE) $(1) -- $(UV) pip install --quiet --require-hashes --no-deps \
		--index-url https://pypi.org/simple --python $(1)/bin/python -r $(2)
endef

$(STAMP): $(LOCKS)/dev.txt $(LOCKS)/build.txt $(LOCKS)/settle.py pyproject.toml $(UV_STAMP)
	$(call make_venv,$(VENV),$(LOCKS)/dev.txt)
	$(UV_PIP) install --quiet --no-deps --python $(BIN)/python -e .
	touch $@

# checkov for tests/deploy: its pinned dependencies clash with dbt-core's, so it gets a venv.
$(TOOLS_STAMP): $(LOCKS)/tools.txt $(LOCKS)/settle.py $(UV_STAMP)
	$(call make_venv,$(TOOLS_VENV),$(LOCKS)/tools.txt)
	touch $@

# Airflow 3 (musify up, the DAG tests): its own venv, it cannot share dbt's dependencies.
$(AIRFLOW_STAMP): $(LOCKS)/airflow.txt $(LOCKS)/settle.py $(UV_STAMP)
	$(call make_venv,$(AIRFLOW_VENV),$(LOCKS)/airflow.txt)
	touch $@

# The BigQuery emulator for the dbt bigquery target's tests: its own venv (DuckDB 1.5).
$(BQEMU_STAMP): $(LOCKS)/bqemulator.txt $(LOCKS)/settle.py $(UV_STAMP)
	$(call make_venv,$(BQEMU_VENV),$(LOCKS)/bqemulator.txt)
	touch $@

# Re-resolve the locks whose declared requirements changed (pyproject.toml, requirements/
# *.in); `make lock UPGRADE=1` moves every pin to the newest version its range allows.
lock: $(UV_STAMP)
	$(UV_VENV)/bin/python $(LOCKS)/lock.py --uv $(UV) $(if $(UPGRADE),--upgrade)

# Not run by default: the test suite against the newest versions Musify's declared ranges
# allow (no lock), in its own venv; the side environments stay on their locks.
test-latest: install
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(LATEST_VENV)
	$(UV_PIP) install --quiet --refresh --upgrade --python $(LATEST_VENV)/bin/python \
		-e '.[broker,stream,java,warehouse,gcp,dev,deploy,dashboard]'
	$(UV_PIP) list --python $(LATEST_VENV)/bin/python --outdated --quiet || true
	$(LATEST_VENV)/bin/pytest $(XDIST) $(PYTEST_ARGS)

# The main job on the embedded defaults: the whole pipeline on this machine until Ctrl-C
# (broker, generator, Spark stream, Airflow, dashboard; state in MUSIFY_HOME).
run: install
	$(BIN)/musify up

test: install
	$(BIN)/ruff check src tests benchmarks requirements
	$(BIN)/ruff format --check src tests benchmarks requirements
	$(BIN)/mypy
	$(PYTEST) --durations=25 $(PYTEST_ARGS)

# The fast subset (under a minute): the tests with the cost marker fast (tests/conftest.py
# gives it to every test that needs no broker, JVM, emulator, Airflow or browser).
test-quick: install
	$(PYTEST) -m fast $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks requirements
	$(BIN)/ruff format --check src tests benchmarks requirements

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python -m benchmarks

# The dbt project's documentation site, one static HTML file (models, columns, tests,
# exposures, lineage; the catalog from the local warehouse when there is one):
# $(MUSIFY_HOME)/dbt-docs/static_index.html.
DOCS_HOME := $(abspath $(or $(MUSIFY_HOME),.musify))
docs: install
	mkdir -p $(DOCS_HOME)
	cd src/musify/dbt && MUSIFY_WAREHOUSE=$(DOCS_HOME)/warehouse.duckdb $(abspath $(BIN))/dbt \
		docs generate --static --quiet --profiles-dir . --target duckdb \
		--target-path $(DOCS_HOME)/dbt-docs --log-path $(DOCS_HOME)/logs/dbt
	@echo "dbt docs: $(DOCS_HOME)/dbt-docs/static_index.html"

# The dbt sources of the raw tables are derived from src/musify/events.py.
dbt-sources: install
	$(BIN)/python -c "from musify.warehouse.raw import dbt_sources_yaml as y; print(y(), end='')" \
		> src/musify/dbt/models/staging/sources.yml

clean:
	rm -rf $(VENV) $(TOOLS_VENV) $(AIRFLOW_VENV) $(BQEMU_VENV) $(UV_VENV) $(LATEST_VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
