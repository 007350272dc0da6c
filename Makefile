# The two commands: `make run` runs the whole system locally, `make test` passes the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: screenshots security run test test-unit test-integration test-e2e lint typecheck broker clean bench

$(STAMP): pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV) || { \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

broker:
	scripts/ensure-broker.sh --management

run: $(STAMP)
	scripts/ensure-broker.sh --management
	mkdir -p var
	$(BIN)/honcho start -f Procfile -e dev/local.env

test: $(STAMP) broker
	$(BIN)/ruff check .
	$(BIN)/mypy shared services dev bench chaos
	$(BIN)/pytest -q

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP) broker
	$(BIN)/pytest -q tests/integration

test-e2e: $(STAMP) broker
	$(BIN)/pytest -q tests/e2e

# The API fuzzer (Schemathesis over /api/openapi.json, 100 cases per operation and phase)
# against the whole system on its own vhost and PostgreSQL database: zero 5xx, every answer
# as described. FUZZ_SEED=N repeats a run.
security: $(STAMP) broker
	$(BIN)/pip install -q -e ".[security]"
	$(BIN)/pytest -q -s tests/security

# The README's screenshots, taken by the browser test.
screenshots: $(STAMP) broker
	SCREENSHOT_DIR=docs $(BIN)/pytest -q tests/e2e/test_browser.py

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy shared services dev

bench: $(STAMP) broker
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m bench

# The fault matrix against real processes (its own RabbitMQ node, PostgreSQL at 127.0.0.1:5432
# when it answers): one row per fault; CHAOS_ARGS="--seed N --only NAME" repeats a failure.
.PHONY: chaos
chaos: $(STAMP)
	command -v rabbitmq-server >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server; }
	@# The cluster-partition row cuts a node off with iptables rules on loopback.
	command -v iptables >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables; }
	$(BIN)/python -m chaos $(CHAOS_ARGS)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
