# mcp-router developer tasks. `make all` is what CI runs: lint + types + tests.
#
# Broker-backed targets (run, test, bench) first make sure RabbitMQ answers at
# $MCP_AMQP_URL (default amqp://guest:guest@localhost:5672/), starting a local
# one if needed: see scripts/ensure-rabbitmq.sh. `make up` runs RabbitMQ,
# Jaeger and the router with Docker Compose instead.

PYTHON ?= python3
VENV ?= .venv
CONFIG ?= .
HTTP ?= 127.0.0.1:8080
CONSOLE_HTTP ?= 127.0.0.1:8081
PYTEST_ARGS ?=
COMPOSE ?= docker compose

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# pytest exits 5 when it collected nothing; make fails on it like on any other
# non-zero code, but say why.
define pytest
	@$(BIN)/pytest -q $(PYTEST_ARGS) $(1) || { rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests in '$(or $(1),tests)': failing" >&2; fi; \
	  exit $$rc; }
endef

.DEFAULT_GOAL := all

.PHONY: all help install broker run console check asyncapi test unit behaviour conformance lint types bench bench-strategies bench/soak bench-console up down clean

all: lint types test ## lint + types + the whole test suite

help: ## list the targets
	@grep -E '^[a-z/]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

install: $(STAMP) ## create the venv and install the package with its dev extras

# Re-run only when the dependencies may have changed; delete the stamp to force.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

broker: ## make sure RabbitMQ answers at MCP_AMQP_URL (starts a local one)
	@scripts/ensure-rabbitmq.sh

run: install broker ## route with the configuration in CONFIG (.), serving HTTP (127.0.0.1:8080)
	$(BIN)/mcp-router run --config $(CONFIG) --http $(HTTP)

console: install broker ## the operator's console alone, reading the broker (CONSOLE_HTTP=127.0.0.1:8081)
	$(BIN)/mcp-router console --config $(CONFIG) --http $(CONSOLE_HTTP)

check: install ## lint the configuration in CONFIG (no broker needed)
	$(BIN)/mcp-router check --config $(CONFIG)

ASYNCAPI ?= build/asyncapi.yaml

asyncapi: install ## AsyncAPI 3 document of the configuration (ASYNCAPI=build/asyncapi.yaml)
	@mkdir -p $(dir $(ASYNCAPI))
	$(BIN)/mcp-router asyncapi --config $(CONFIG) --output $(ASYNCAPI)

test: install broker ## the whole suite: unit, conformance and integration (needs RabbitMQ)
	$(call pytest,--durations=25)

unit: install ## unit tests only (no broker)
	$(call pytest,tests/unit)

behaviour: install ## the settle/delivery behaviour suite, on the fake broker and on RabbitMQ
	$(call pytest,tests/behaviour)

conformance: install ## the standards' own suites: JSON Schema, CEL, AsyncAPI (no broker)
	$(call pytest,tests/conformance)

lint: install ## ruff
	$(BIN)/ruff check .

types: install ## mypy --strict (configured in pyproject.toml)
	$(BIN)/mypy

bench: install broker ## throughput, latency, --workers scaling and per-stage costs (real broker)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.stages
	$(BIN)/python -m bench.journal
	$(BIN)/python bench/encryption.py

bench/soak: install broker ## 10 minutes at half load, spans exported: RSS every 10 s (not in CI)
	$(BIN)/python -m bench.soak
bench-strategies: install ## what each routing strategy costs per message (no broker)
	$(BIN)/python bench/strategies.py

bench-console: install broker ## the console's cost: throughput with a browser watching /
	$(BIN)/python -m bench.console

up: ## RabbitMQ, Jaeger and the router in Docker (compose.yaml)
	$(COMPOSE) up -d --build

down: ## stop what `make up` started
	$(COMPOSE) down

clean: ## remove caches and build output (keeps the venv)
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
