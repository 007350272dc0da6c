# The two commands: `make run` runs the whole system locally, `make test` passes the tests.
# PYTHON makes the venv once (3.11 or newer); everything after runs from the venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One stamp per lock: a changed lock (or pyproject.toml) reinstalls what it locks.
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed
SECURITY_STAMP := $(VENV)/.security-installed
BENCH_STAMP := $(VENV)/.bench-installed
UV_STAMP := $(VENV)/.uv-installed
# uv installs into the venv, never into the Python it runs from.
UV_PIP := $(BIN)/uv pip install -q --python $(BIN)/python

.PHONY: screenshots security run test test-all test-unit test-integration test-e2e lint typecheck broker clean bench
.PHONY: venv lock audit fmt browser

# Python keeps its compiled modules even where the environment says not to (CI's image sets
# PYTHONDONTWRITEBYTECODE): without them every process the tests start compiles Flask,
# SQLAlchemy and pika again from source, and pytest rewrites every test module again
# (README: Tests). git ignores the __pycache__ folders.
unexport PYTHONDONTWRITEBYTECODE

# One list of what is type-checked and one lint, for `make typecheck`, `make lint` and `make test`.
TYPED := shared services dev bench chaos tests
MYPY := $(BIN)/mypy $(TYPED)
RUFF_CHECK := $(BIN)/ruff check .
# An unformatted file fails lint and test: `make fmt` formats it.
FORMAT_CHECK := $(BIN)/ruff format --check .

$(BIN)/python:
	@v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])') || { \
	  echo "make: '$(PYTHON)' does not run; set PYTHON to a Python 3.11 or newer" >&2; exit 1; }; \
	printf '3.11\n%s\n' "$$v" | sort -V -C || { \
	  echo "make: $(PYTHON) is Python $$v; the project needs Python 3.11 or newer" \
	    "(make PYTHON=python3.11 ...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }

# uv installs the locks (a venv from dev.lock in seconds, where pip took minutes). uv itself
# comes first, by pip, from requirements/uv.lock: uv's pin and hashes alone, cut from all.lock.
$(UV_STAMP): $(BIN)/python requirements/uv.lock
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements/uv.lock
	touch $@

# Every package from a lock, each checked against its hashes; then the project itself (editable,
# built by the locked setuptools), which brings nothing more. The Dockerfile installs the same way.
define install_lock
	$(UV_PIP) --require-hashes --no-deps -r $(1)
	$(UV_PIP) --no-deps --no-build-isolation -e .
	touch $@
endef

$(RUN_STAMP): $(UV_STAMP) requirements/run.lock pyproject.toml
	$(call install_lock,requirements/run.lock)

$(DEV_STAMP): $(UV_STAMP) requirements/dev.lock pyproject.toml
	$(call install_lock,requirements/dev.lock)

$(SECURITY_STAMP): $(UV_STAMP) requirements/security.lock pyproject.toml
	$(call install_lock,requirements/security.lock)

$(BENCH_STAMP): $(UV_STAMP) requirements/bench.lock pyproject.toml
	$(call install_lock,requirements/bench.lock)

venv: $(DEV_STAMP)

# The locks, from pyproject.toml and requirements/build.in, by uv, with every file's hash:
# all.lock resolves every extra at once and each lock installed is cut from it, so they all
# agree. A pin already in a lock is kept unless pyproject.toml no longer admits it;
# `make lock UPGRADE=1` takes the newest releases instead. uv.lock (uv alone, from uv.in) is
# what the installs bootstrap uv from.
UV_COMPILE := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock"
COMPILE := $(UV_COMPILE) pyproject.toml requirements/build.in
lock: $(DEV_STAMP)
	$(COMPILE) --all-extras $(if $(UPGRADE),--upgrade) -o requirements/all.lock
	$(COMPILE) -c requirements/all.lock -o requirements/prod.lock
	$(COMPILE) -c requirements/all.lock --extra run -o requirements/run.lock
	$(COMPILE) -c requirements/all.lock --extra dev -o requirements/dev.lock
	$(COMPILE) -c requirements/all.lock --extra security -o requirements/security.lock
	$(COMPILE) -c requirements/all.lock --extra bench -o requirements/bench.lock
	$(UV_COMPILE) -c requirements/all.lock requirements/uv.in -o requirements/uv.lock

# pip-audit over the locked test environment: fails on an advisory, and when the vulnerability
# service cannot be reached (nothing was audited). `make test` runs it with --allow-unreachable.
audit: $(DEV_STAMP)
	$(BIN)/python -m dev.audit requirements/dev.lock

broker:
	scripts/ensure-broker.sh --management

run: $(RUN_STAMP)
	scripts/ensure-broker.sh --management
	@# RabbitMQ's own /metrics (queue depths) on :15692, beside the services' (README). The
	@# plugin tool (an Erlang VM: 3-7 s here) only when :15692 does not answer yet.
	timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/15692' 2>/dev/null \
	  || { command -v rabbitmq-plugins >/dev/null && rabbitmq-plugins enable rabbitmq_prometheus >/dev/null; } \
	  || echo "==> rabbitmq_prometheus not enabled here: enable it on the broker for queue depths"
	mkdir -p var
	$(BIN)/honcho start -f Procfile -e dev/local.env

# `make test`: lint, types, audit and every test not marked `slow` (unit, integration, the
# pipeline's end-to-end smoke and the browser tests), a few minutes. `make test-all`: that, then
# the `slow` tests (the full end-to-end suite, the chaos smoke) and the API fuzzer.
test: $(DEV_STAMP) broker browser
	$(BIN)/python -m dev.audit --allow-unreachable requirements/dev.lock
	@# promtool checks and tests the alert rules (deploy/prometheus/alerts.yml).
	command -v promtool >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
	$(RUFF_CHECK)
	$(FORMAT_CHECK)
	@# The layers' import rules (pyproject.toml's [tool.importlinter]; README: Layout).
	$(BIN)/lint-imports
	@# mypy beside pytest where a core is spare (dev/alongside.py): its report follows pytest's,
	@# and either failing fails the target.
	CHROMIUM=$(CHROMIUM) $(BIN)/python -m dev.alongside --beside "$(MYPY)" -- \
	  $(BIN)/pytest -q -m "not slow"

test-all: test
	CHROMIUM=$(CHROMIUM) $(BIN)/pytest -q -m slow
	$(MAKE) security

# On every core (pytest-xdist): the unit tests need no broker, store or port of their own.
# xdist counts the cores this process may use, not a container's CPU quota: there, set
# UNIT_WORKERS to the quota (1: one process, as pytest alone).
UNIT_WORKERS ?= auto
test-unit: $(DEV_STAMP)
	$(BIN)/pytest -q -n $(UNIT_WORKERS) tests/unit

# The browser tests drive Debian's Chromium (Playwright never downloads a browser here):
# installed when missing, as the broker and promtool are; where it cannot be, make stops
# saying how. APT_GET is the installer (the unit test of this rule replaces it).
CHROMIUM ?= /usr/bin/chromium
APT_GET ?= apt-get
browser:
	@test -x $(CHROMIUM) || { echo "==> installing chromium from Debian's packages"; \
	  $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq chromium \
	  && test -x $(CHROMIUM); } || { echo "make: $(CHROMIUM) is missing and could not be" \
	  "installed; install it (as root: apt-get install chromium) or set CHROMIUM to a" \
	  "Chromium binary" >&2; exit 1; }

test-integration: $(DEV_STAMP) broker
	$(BIN)/pytest -q tests/integration

test-e2e: $(DEV_STAMP) broker browser
	CHROMIUM=$(CHROMIUM) $(BIN)/pytest -q tests/e2e

# The API fuzzer (Schemathesis over /api/openapi.json, 100 cases per operation and phase)
# against the whole system on its own vhost and PostgreSQL database: zero 5xx, every answer
# as described. FUZZ_SEED=N repeats a run.
security: $(SECURITY_STAMP) broker
	$(BIN)/pytest -q -s tests/security

# The README's screenshots, taken by the browser test, and the dashboard's picture (drawn by
# matplotlib, from the bench's lock, over a throwaway Prometheus).
screenshots: $(DEV_STAMP) $(BENCH_STAMP) broker browser
	command -v prometheus >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
	CHROMIUM=$(CHROMIUM) SCREENSHOT_DIR=docs $(BIN)/pytest -q tests/e2e/test_browser.py \
	  tests/e2e/test_metrics.py::test_the_dashboard_picture

lint: $(DEV_STAMP)
	$(RUFF_CHECK)
	$(FORMAT_CHECK)
	$(BIN)/lint-imports

typecheck: $(DEV_STAMP)
	$(MYPY)

# Formats the tree, then applies ruff's safe fixes (import order and the like).
fmt: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(BENCH_STAMP) broker
	$(BIN)/python -m bench

# The fault matrix against real processes (its own RabbitMQ node, PostgreSQL at 127.0.0.1:5432
# when it answers): one row per fault; CHAOS_ARGS="--seed N --only NAME" repeats a failure.
.PHONY: chaos
chaos: $(DEV_STAMP)
	command -v rabbitmq-server >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server; }
	@# The cluster-partition row cuts a node off with iptables rules on loopback.
	command -v iptables >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables; }
	$(BIN)/python -m chaos $(CHAOS_ARGS)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
