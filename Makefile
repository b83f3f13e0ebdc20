# The two commands: `make run` serves, `make test` tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: run test test-pure test-compiled compiled trial lint bench soak docs clean

# `make run` installs what serving needs (with --http and --metrics); the other
# targets add the test and development extras (tls and metrics included, so their
# tests run).
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip 'setuptools>=77'

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[web,metrics]'
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet 'setuptools>=77' -e '.[test,dev,tls,metrics,web]'
	touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(BIN)/twistd --pidfile= -n jsonservice --port $(PORT)

# `make test`: the whole suite on the sources, while the compiled core builds
# beside it (at the lowest priority: the suite has timing-based complexity
# tests); then the core's tests again, against the compiled build.
test: $(DEV_STAMP)
	@$(MAKE) --no-print-directory -j2 test-pure compiled
	@$(MAKE) --no-print-directory test-compiled

test-pure: $(DEV_STAMP)
	$(BIN)/python -m pytest

# The compiled build of the hot path (mypyc; README, "Installing: the compiled
# core"), installed apart from the editable sources, into build/compiled:
# tested by `make test`, measured by `make bench`.  Without a C compiler it
# holds the pure modules (and test-compiled says it skips).
COMPILED_STAMP := build/compiled/.built
CORE_TESTS := tests/test_compiled.py tests/test_connection.py tests/test_framing.py tests/test_codec.py \
	tests/test_codec_properties.py tests/test_shapes.py tests/test_protocol.py tests/test_service.py \
	tests/test_typed.py tests/test_adversarial.py tests/test_regressions.py tests/test_backpressure.py

$(COMPILED_STAMP): $(DEV_STAMP) setup.py $(wildcard build_backend/*) $(wildcard jsonservice/*.py)
	@echo "building the compiled core into build/compiled (log: build/compile.log)"
	@rm -rf build/compiled build/lib.* build/temp.* build/bdist.* && mkdir -p build
	@nice -n 19 $(BIN)/python -m pip install --no-deps --no-build-isolation --target build/compiled . > build/compile.log 2>&1 \
		|| { tail -20 build/compile.log; exit 1; }
	@rm -rf build/compiled/*.dist-info build/compiled/bin
	@touch $@

compiled: $(COMPILED_STAMP)

# (Run from inside build/compiled, with a copy of the tests: the working
# directory comes first on sys.path, ahead of PYTHONPATH.)
test-compiled: $(COMPILED_STAMP)
	@if (cd build/compiled && ../../$(BIN)/python -c 'import sys, jsonservice._mypyc as m; sys.exit(not m.compiled())'); then \
		echo "testing the compiled core (build/compiled) with the core's tests: $(notdir $(CORE_TESTS))"; \
		rm -rf build/compiled/tests && cp -r tests pyproject.toml build/compiled/ \
		&& cd build/compiled && JSONSERVICE_EXPECT_COMPILED=1 ../../$(BIN)/python -m pytest -q -p no:cacheprovider $(CORE_TESTS); \
	else \
		echo "SKIPPED: the core did not compile here (see build/compile.log), so its compiled tests do not run"; \
	fi

lint: $(DEV_STAMP)
	$(BIN)/ruff check jsonservice twisted tests examples docs bench setup.py build_backend
	$(BIN)/ruff format --check jsonservice twisted tests examples docs bench setup.py build_backend
	$(BIN)/mypy --strict

# The benchmarks measure the compiled core, as a wheel installs it.
bench: $(DEV_STAMP) $(COMPILED_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	PYTHONPATH=$(CURDIR)/build/compiled $(BIN)/python -m bench $(BENCH_ARGS)
	PYTHONPATH=$(CURDIR)/build/compiled $(BIN)/python -m bench.fanout $(FANOUT_ARGS)

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
