# Musify: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install run test test-quick lint typecheck bench clean dbt-sources

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[broker,stream,warehouse,dev]'
	touch $(STAMP)

# The main job on the embedded defaults: a day of a 1,000-user service into MUSIFY_HOME.
run: install
	$(BIN)/musify generate --nusers 1000 --days 1 --output-dir $${MUSIFY_HOME:-.musify}/generator/events

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
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
