# driftline: every target bootstraps .venv on first use; nothing needs installing by hand.
#   make demo   the main job: the whole loop on the local stack (DEMO_ARGS=--fast for a short run)
#   make test   every test tier (unit, flows, e2e), each in its own pytest process
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
UV_VERSION := 0.13.8
# Peer tools for `make bench` (Evidently needs pandas < 3): their own environment, never made by `make install`.
PEERS_VENV ?= .venv-peers
PEERS_REQUIREMENTS := benchmarks/peers/requirements.txt
PEERS_INSTALLED := $(PEERS_VENV)/.installed
# The MLflow server for `driftline up --mlflow` and the MLflow tests: its own environment (full MLflow does not
# fit our pins; driftline's client is mlflow-skinny from the `mlflow` extra). Made by `make test`, not `make install`.
MLFLOW_VENV ?= .venv-mlflow
MLFLOW_REQUIREMENTS := infra/mlflow/requirements.txt
MLFLOW_INSTALLED := $(MLFLOW_VENV)/.installed
export DO_NOT_TRACK := 1
export WHYLOGS_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# MLflow honours DO_NOT_TRACK only when it is exactly "true".
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install demo up down status test test-unit test-flows test-e2e bench peers peers-lock mlflow-server mlflow-lock lint format lock clean postgres chromium

install: $(INSTALLED)

# --compile-bytecode: uv writes no .pyc by default, and with PYTHONDONTWRITEBYTECODE set (as on CI) every
# process would compile Prefect, pydantic and the rest from source again: ~1.2 s of each flow run's start.
$(INSTALLED): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)" 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	@touch $@

demo: $(INSTALLED)
	$(BIN)/driftline demo $(DEMO_ARGS)

up: $(INSTALLED)
	$(BIN)/driftline up

down: $(INSTALLED)
	$(BIN)/driftline down

status: $(INSTALLED)
	$(BIN)/driftline status

# Separate processes: Prefect settings chosen by one tier must not leak into another. The loop's flows
# tests (marker `loop`) run a second time on a Prefect server backed by a real PostgreSQL.
test: $(INSTALLED) postgres mlflow-server chromium
	$(BIN)/pytest tests/unit
	$(BIN)/pytest tests/flows
	DRIFTLINE_TEST_PREFECT_DATABASE=postgresql $(BIN)/pytest tests/flows -m loop
	$(BIN)/pytest tests/e2e

# PostgreSQL's server binaries (Debian's `postgresql`) for DRIFTLINE_PREFECT_DATABASE=postgresql and its
# tests: installed when missing if we are root (CI), otherwise the command to run is printed.
postgres:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's postgresql package"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else \
	    echo "PostgreSQL is not installed; run: sudo apt-get install -y postgresql" >&2; exit 1; \
	  fi; \
	fi

# Debian's Chromium for the e2e test that opens the Prefect UI (no browser download): installed when missing if
# we are root (CI), otherwise the command to run is printed and that test skips (under CI=true it fails).
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium package"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else \
	    echo "Chromium is not installed (the UI test skips); run: sudo apt-get install -y --no-install-recommends chromium" >&2; \
	  fi; \
	fi

test-unit: $(INSTALLED)
	$(BIN)/pytest tests/unit

test-flows: $(INSTALLED) mlflow-server
	$(BIN)/pytest tests/flows

test-e2e: $(INSTALLED) mlflow-server chromium
	$(BIN)/pytest tests/e2e

# BENCH_ARGS=evidently runs one benchmark. The Evidently comparison needs $(PEERS_VENV); when it cannot be
# made (no PyPI) that benchmark says so and skips its entries, the others run.
bench: $(INSTALLED)
	@$(MAKE) --no-print-directory peers || echo "bench: could not create $(PEERS_VENV)/ (is PyPI reachable?): the Evidently comparison will be skipped" >&2
	DRIFTLINE_BENCH_PEERS_VENV=$(PEERS_VENV) $(BIN)/python -m benchmarks $(BENCH_ARGS)

peers: $(PEERS_INSTALLED)

$(PEERS_INSTALLED): $(PEERS_REQUIREMENTS) | $(INSTALLED)
	@test -x $(PEERS_VENV)/bin/python || $(BIN)/uv venv --quiet --python $(PYTHON) $(PEERS_VENV)
	$(BIN)/uv pip install --python $(PEERS_VENV)/bin/python --quiet -r $(PEERS_REQUIREMENTS)
	@touch $@

mlflow-server: $(MLFLOW_INSTALLED)

$(MLFLOW_INSTALLED): $(MLFLOW_REQUIREMENTS) | $(INSTALLED)
	@test -x $(MLFLOW_VENV)/bin/python || $(BIN)/uv venv --quiet --python $(PYTHON) $(MLFLOW_VENV)
	$(BIN)/uv pip install --python $(MLFLOW_VENV)/bin/python --quiet --compile-bytecode -r $(MLFLOW_REQUIREMENTS)
	@touch $@

# Re-pin the MLflow server after changing infra/mlflow/requirements.in.
mlflow-lock: $(INSTALLED)
	$(BIN)/uv pip compile infra/mlflow/requirements.in --python-version 3.11 --quiet -o $(MLFLOW_REQUIREMENTS)

# Re-pin the peer tools after changing benchmarks/peers/requirements.in.
peers-lock: $(INSTALLED)
	$(BIN)/uv pip compile benchmarks/peers/requirements.in --python-version 3.11 --quiet -o $(PEERS_REQUIREMENTS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin every dependency after changing pyproject.toml.
lock: $(INSTALLED)
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra dask --extra mlflow --python-version 3.11 --quiet -o requirements.lock

clean:
	-$(BIN)/driftline down
	rm -rf $(VENV) $(MLFLOW_VENV) .driftline .pytest_cache .ruff_cache
