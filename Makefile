# gbg-receiver: `make run` serves on 127.0.0.1:8000, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install run test lint check clean bench reliability

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

# Demo defaults apply only when nothing is configured: webhook credentials demo /
# demo-password, API token demo-token, and the bundled GBG simulator.
run: $(STAMP)
	@if [ -z "$$RECEIVER_WEBHOOK_USERNAME$$RECEIVER_WEBHOOK_API_KEY" ] && [ "$$RECEIVER_WEBHOOK_AUTH" != none ]; then \
	  export RECEIVER_WEBHOOK_USERNAME=demo RECEIVER_WEBHOOK_PASSWORD=demo-password; \
	  echo "make run: webhook credentials demo / demo-password (set RECEIVER_WEBHOOK_USERNAME and _PASSWORD to choose)" >&2; \
	fi; \
	if [ -z "$$RECEIVER_API_TOKENS" ]; then \
	  export RECEIVER_API_TOKENS=demo-token; \
	  echo "make run: API token demo-token (set RECEIVER_API_TOKENS to choose)" >&2; \
	fi; \
	$(BIN)/gbg-receiver migrate && \
	exec $(BIN)/gbg-receiver serve $(if $(RECEIVER_GBG_CLIENT_ID),,--simulator)

test: $(STAMP)
	$(BIN)/pytest

# The crash, outage, fault and hostile-input suite alone (make test runs it too).
reliability: $(STAMP)
	$(BIN)/pytest -m reliability

lint: $(STAMP)
	$(BIN)/ruff check receiver tests wsgi.py deploy bench
	$(BIN)/ruff format --check receiver tests wsgi.py deploy bench
	$(BIN)/mypy

check: lint test

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

# Benchmarks: 127.0.0.1 only, bounded; prints a table and writes bench/RESULTS.md.
bench: $(STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/run.py
