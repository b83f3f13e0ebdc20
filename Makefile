# The two commands: `make run` serves, `make test` tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: run test lint bench soak docs clean

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(BIN)/activate

run: $(BIN)/activate
	$(BIN)/twistd --pidfile= -n jsonservice --port $(PORT)

test: $(BIN)/activate
	$(BIN)/python -m pytest

lint: $(BIN)/activate
	$(BIN)/ruff check jsonservice twisted tests
	$(BIN)/ruff format --check jsonservice twisted tests
	$(BIN)/mypy --strict

clean:
	rm -rf $(VENV) build *.egg-info _trial_temp .pytest_cache .mypy_cache .ruff_cache twisted/plugins/dropin.cache
