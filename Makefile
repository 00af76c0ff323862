# CryptoViz: every target is the command CI and users run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help install migrate run demo test unit lint services-up services-down services-status clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install CryptoViz with its dev tools

migrate: install ## Apply database migrations (CRYPTOVIZ_DATABASE_URL, default SQLite data/cryptoviz.db)
	$(BIN)/cryptoviz db upgrade

run: migrate ## Run the main job on the configured settings (embedded defaults: SQLite + in-process bus)
	$(BIN)/cryptoviz run

demo: install ## Run the whole job offline against the built-in market simulator (data/demo.db)
	$(BIN)/cryptoviz demo

services-up: ## Start local Apache Kafka and PostgreSQL on 127.0.0.1 (writes .services/env)
	bash scripts/services.sh up

services-down: ## Stop the local Kafka and PostgreSQL
	bash scripts/services.sh down

services-status: ## Show whether the local services run
	bash scripts/services.sh status

test: install services-up ## Start the services and run every test (unit, integration, e2e)
	set -a && . .services/env && set +a && $(BIN)/python -m pytest $(PYTEST_ARGS)

unit: install ## Only the tests that need no service
	$(BIN)/python -m pytest -m "not integration and not faults" $(PYTEST_ARGS)

lint: install ## ruff and mypy
	$(BIN)/ruff check src tests
	$(BIN)/mypy

clean: ## Remove caches (keeps data/ and .services/)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
