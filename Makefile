# Tasks for the template itself. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV ?= uv
RUN := $(UV) run --no-sync
DEMO := build/demo
PORT ?= 3000
# Baked projects run many short Python processes; where bytecode caching is off (some CI
# images set this), each one recompiles MLflow, scikit-learn and BentoML on import.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help install lint test test-fast test-ci-runs demo clean bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: ## create .venv and node_modules/ with the template's dev and CI-running tools
	$(UV) sync --locked
	npm ci --no-audit --no-fund --loglevel=error

lint: install ## run pre-commit on the template's own files
	$(RUN) pre-commit run --all-files --show-diff-on-failure

test: install ## run every template test: bakes, CI files run for real, end-to-end pipelines
	$(RUN) pytest --durations=15

test-ci-runs: install ## only the baked CI files run for real with gitlab-ci-local and act
	$(RUN) pytest -m ci_run --durations=10

test-fast: install ## run the template tests except the slow end-to-end ones
	$(RUN) pytest -m "not slow" --durations=10

demo: install ## bake the default project into build/demo/ and run its whole pipeline
	-[ -d $(DEMO)/churn-model/.venv ] && $(MAKE) -C $(DEMO)/churn-model down
	rm -rf $(DEMO)
	$(RUN) cookiecutter --no-input -o $(DEMO) "$(CURDIR)"
	env -u VIRTUAL_ENV $(MAKE) -C $(DEMO)/churn-model install pipeline PORT=$(PORT)

bench: install ## serving speed: the default project's bento vs a bare ASGI app (wrk), then bench/batch.py
	$(RUN) python bench/serving.py $(BENCH_ARGS)

clean: ## remove build/ and test caches
	rm -rf build .pytest_cache .ruff_cache
