# The two commands: `make run` serves, `make test` tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: run test trial lint bench soak docs clean

# `make run` installs what serving needs (with --http and --metrics); the other
# targets add the test and development extras (tls and metrics included, so their
# tests run).
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[web,metrics]'
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev,tls,metrics,web]'
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/twistd --pidfile= -n jsonservice --port $(PORT)

test: $(DEV_STAMP)
	$(BIN)/python -m pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check jsonservice twisted tests examples docs
	$(BIN)/ruff format --check jsonservice twisted tests examples docs
	$(BIN)/mypy --strict

bench: $(DEV_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench.fanout $(FANOUT_ARGS)

# Bounded soak run against a real twistd on 127.0.0.1 (SOAK_SECONDS, default 60).
soak: $(DEV_STAMP)
	$(BIN)/python -m soak.run --seconds $${SOAK_SECONDS:-60}

# The test kit's trial-visible tests under trial itself (pytest runs them too).
trial: $(DEV_STAMP)
	$(BIN)/python -m twisted.trial tests

# API reference (pydoctor, configured in pyproject.toml) into build/apidocs;
# fails on any docstring warning.  Inventories are built offline from what is installed.
docs: $(DEV_STAMP)
	$(BIN)/python docs/inventories.py build/inventories
	rm -rf build/apidocs
	$(BIN)/pydoctor -q --project-version="$$($(BIN)/python -c 'import jsonservice; print(jsonservice.__version__)')"

clean:
	rm -rf $(VENV) build *.egg-info _trial_temp .pytest_cache .mypy_cache .ruff_cache twisted/plugins/dropin.cache
