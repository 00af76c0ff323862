# CryptoViz: every target is the command CI and users run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
MUTATE ?= validate sources.numbers writer_loop store.sink

.PHONY: help install migrate run demo test unit lint bench truth fuzz audit mutate browser services-up services-down services-status clean screenshot

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools
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

browser: ## Install headless Chromium for the browser test (Debian packages)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

test: install services-up browser ## Start the services and run every test (unit, integration, e2e, faults)
	set -a && . .services/env && set +a && $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install services-up ## Benchmarks against real Kafka and PostgreSQL (writes benchmarks/results.json)
	set -a && . .services/env && set +a && $(BIN)/python -m benchmarks.run $(BENCH_ARGS)

truth: install ## Reconciliation vs ground truth: the scenario library, interval rule and baseline (writes benchmarks/truth.json)
	$(BIN)/python -m benchmarks.truth

fuzz: install ## Longer property-based fuzzing of every parser
	CRYPTOVIZ_FUZZ_EXAMPLES=50000 $(BIN)/python -m pytest -m fuzz $(PYTEST_ARGS)

audit: install ## Known vulnerabilities in the installed dependencies (pip-audit; fails when it cannot audit one)
	@# --strict: a dependency that could not be looked up is a failure, not a silent "no known vulnerabilities".
	$(BIN)/pip-audit --skip-editable --progress-spinner off --strict || { \
	  echo "make audit: pip-audit found vulnerabilities or could not audit every dependency (is its vulnerability service reachable from here?); see docs/security.md" >&2; exit 1; }

mutate: install ## Mutation testing of the core modules against the unit tests (mutmut; score per module)
	@# mutmut mutates a copy under mutants/ and runs only the service-free unit tests listed in [tool.mutmut];
	@# MUTATE names the modules whose mutants run (adding reconcile.consensus: about an hour on 2 cores).
	rm -rf mutants && mkdir mutants
	@echo "make mutate: mutmut run on $(MUTATE) (about 10 min on 2 cores; progress in mutants/run.log)"
	CRYPTOVIZ_PROPERTY_EXAMPLES=$${CRYPTOVIZ_PROPERTY_EXAMPLES:-300} \
	  $(BIN)/mutmut run --max-children $${MUTATE_JOBS:-2} $(foreach m,$(MUTATE),'cryptoviz.$(m).*') \
	  > mutants/run.log 2>&1 || \
	  { tail -n 40 mutants/run.log; echo "make mutate: mutmut run failed (mutants/run.log)" >&2; exit 1; }
	$(BIN)/python scripts/mutation_score.py --list

screenshot: install browser ## Regenerate docs/img/dashboard.png: the dashboard in headless Chromium on the simulator's market
	DASHBOARD_SCREENSHOT=docs/img/dashboard.png $(BIN)/python -m pytest -q -p no:cacheprovider \
	  tests/e2e/test_browser.py -k test_dashboard_shows_the_market_and_updates_live

unit: install ## Only the tests that need no service
	$(BIN)/python -m pytest -m "not integration and not faults" $(PYTEST_ARGS)

lint: install ## ruff and mypy
	$(BIN)/ruff check src tests
	$(BIN)/mypy

clean: ## Remove caches (keeps data/ and .services/)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info
