# Twoway: `make run` runs the whole system, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif
export TWOWAY_LOG_FORMAT ?= console
export UV_PYTHON_DOWNLOADS ?= never

.PHONY: help setup run test lint bench chaos clean

help:
	@echo "make run    - start RabbitMQ, MongoDB(-compatible) and every service (Ctrl-C stops all)"
	@echo "make test   - run the whole test suite (unit, integration, end-to-end)"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - benchmarks that print figures"
	@echo "make chaos  - kill every service and the broker under load; fails on loss or duplicates"

setup:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	@$(UV) sync --frozen --quiet

# The api's bearer token and the key of delivery-report references under `make run` only
# (development values: set your own anywhere else)
run: export TWOWAY_API_TOKEN ?= dev-token
# /receiveSMS takes the MO of the simulator gateway, open to anyone on this machine (config/gateways.yaml)
run: export TWOWAY_RECEIVE_GATEWAY ?= sim
# /subscribeSMS confirms each change by a code, which the gateway simulator records (off elsewhere)
run: export TWOWAY_SUBSCRIBE_MODE ?= public
run: export TWOWAY_REFERENCE_SECRET ?= dev-reference-secret
run: setup  # with a Docker engine: compose.yaml (real RabbitMQ and MongoDB); without: the devstack
	@echo "twoway: ingress http://127.0.0.1:8080  api http://127.0.0.1:8081 (openapi: /openapi.json)  gateway-sim http://127.0.0.1:8090"
	@echo "twoway: api token: $$TWOWAY_API_TOKEN  (curl -H 'Authorization: Bearer $$TWOWAY_API_TOKEN' http://127.0.0.1:8081/event-sources)"
	@if docker info >/dev/null 2>&1; then docker compose up --build; \
	else $(UV) run --frozen twoway-devstack run --procfile Procfile --data-dir .run; fi

test: setup
	$(UV) run --frozen pytest

lint: setup
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

bench: setup
	$(UV) run --frozen python -m benchmarks

chaos: setup
	$(UV) run --frozen python -m tests.chaos $(CHAOS_ARGS)

clean:
	rm -rf .run .venv .pytest_cache .mypy_cache .ruff_cache
