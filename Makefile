# Twoway: `make run` runs the whole system, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif
export TWOWAY_LOG_FORMAT ?= console
export UV_PYTHON_DOWNLOADS ?= never

.PHONY: help setup run test lint bench clean

help:
	@echo "make run    - start RabbitMQ, MongoDB(-compatible) and every service (Ctrl-C stops all)"
	@echo "make test   - run the whole test suite (unit, integration, end-to-end)"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - benchmarks that print figures"

setup:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	@$(UV) sync --frozen --quiet

run: setup
	$(UV) run --frozen twoway-devstack run --procfile Procfile --data-dir .run

test: setup
	$(UV) run --frozen pytest

lint: setup
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

bench: setup
	$(UV) run --frozen python -m benchmarks

clean:
	rm -rf .run .venv .pytest_cache .mypy_cache .ruff_cache
