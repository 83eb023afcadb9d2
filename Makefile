# gbg-receiver: `make run` serves on 127.0.0.1:8000, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements/dev.txt | cksum | cut -d' ' -f1)
# Branch coverage of receiver/ by the tests' own process (children are not counted);
# make test fails below this floor. The README states the latest figure.
COVERAGE_FLOOR := 70

.PHONY: install run test lint check clean bench reliability lock mutate

install: $(STAMP)

$(STAMP): pyproject.toml requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

# Demo settings (deploy/demo.env) fill in only what is unset; without GBG credentials
# the bundled simulator plays GBG on the URL they name.
run: $(STAMP)
	@simulator=$$([ -n "$$RECEIVER_GBG_CLIENT_ID" ] || echo --simulator); \
	. deploy/demo.env && \
	$(BIN)/gbg-receiver migrate && \
	exec $(BIN)/gbg-receiver serve $$simulator

# Modules in a random order, and the tests within each (the seed is printed: rerun one
# order with --random-order-seed=N): no test may lean on another test's leftovers.
test: $(STAMP)
	$(BIN)/pytest --random-order --cov=receiver --cov-branch --cov-report=term:skip-covered \
	  --cov-fail-under=$(COVERAGE_FLOOR)

# The crash, outage, fault and hostile-input suite alone (make test runs it too).
reliability: $(STAMP)
	$(BIN)/pytest -m reliability

# Mutation testing of the rules that matter ([tool.mutmut] in pyproject.toml says which);
# slow (about 20 minutes on 2 cores), so not in CI. Prints each module's score; fails under
# 85 %. docs/testing.md has the latest figures and every surviving mutant.
mutate: $(STAMP)
	$(BIN)/mutmut run
	$(BIN)/python tests/mutation_score.py

lint: $(STAMP)
	$(BIN)/ruff check receiver tests wsgi.py bench
	$(BIN)/ruff format --check receiver tests wsgi.py bench
	$(BIN)/mypy

check: lint test

clean:
	rm -rf $(VENV) var dist build mutants .pytest_cache .ruff_cache .mypy_cache .coverage

# Benchmarks: 127.0.0.1 only, bounded; prints a table and writes bench/RESULTS.md.
bench: $(STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/run.py

# Locked dependencies (hashes): runtime.txt for images and plain installs, dev.txt for
# make install (runtime + postgres + test + dev tools). After changing pyproject.toml's
# dependencies: make lock, review the diff, commit both files.
# Extras stay in the pins (coverage[toml]==...): the venv's first pip (23.2) refuses a
# stripped lock once a newer release of such a package appears on the index.
LOCK := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(BIN)/pip-compile --quiet \
	--generate-hashes --allow-unsafe --no-strip-extras --no-emit-index-url --no-emit-find-links
lock: $(STAMP)
	$(LOCK) --extra postgres -o requirements/runtime.txt pyproject.toml
	$(LOCK) --extra postgres --extra test --extra dev -o requirements/dev.txt pyproject.toml
