# Tasks for the template itself. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# uv from PATH; on a machine without it, the pinned version (the one .ci/run installs) in a
# venv of its own under build/, installed by the first target that needs it and put on PATH
# (alone: the venv's python stays off it) for the baked projects' own make targets.
UV_VERSION := 0.13.9
LOCAL_UV := $(CURDIR)/build/tools/bin/uv
UV ?= $(or $(shell command -v uv 2>/dev/null),$(LOCAL_UV))
ifeq ($(UV),$(LOCAL_UV))
export PATH := $(CURDIR)/build/tools/bin:$(PATH)
endif
RUN := $(UV) run --no-sync
DEMO := build/demo
PORT ?= 3000
# Baked projects run many short Python processes; where bytecode caching is off (some CI
# images set this), each one recompiles MLflow, scikit-learn and BentoML on import.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help uv install lint test test-fast test-ci-runs demo clean bench bench-ci

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(LOCAL_UV):
	@echo "uv is not on PATH: installing uv $(UV_VERSION) into build/"
	python3 -m venv $(CURDIR)/build/uv-venv
	$(CURDIR)/build/uv-venv/bin/python -m pip install --quiet --disable-pip-version-check \
		"uv==$(UV_VERSION)"
	mkdir -p $(dir $(LOCAL_UV))
	ln -sf $(CURDIR)/build/uv-venv/bin/uv $(CURDIR)/build/uv-venv/bin/uvx $(dir $(LOCAL_UV))

uv: $(filter $(LOCAL_UV),$(UV)) ## the uv the targets use (the pinned one installed into build/ when none is on PATH)
	@$(UV) --version

install: uv ## create .venv and node_modules/ with the template's dev and CI-running tools
	$(UV) sync --locked
	npm ci --no-audit --no-fund --loglevel=error

lint: install ## run pre-commit on the template's own files
	$(RUN) pre-commit run --all-files --show-diff-on-failure

# Two workers, whole modules each: the long lanes (tests/conftest.py) side by side, one per core.
PARALLEL := -n 2 --dist loadfile --no-loadscope-reorder

test: install ## run every template test: bakes, CI files run for real, end-to-end pipelines (MARK= a marker expression for a part)
	$(RUN) pytest $(PARALLEL) --durations=15 $(if $(MARK),-m "$(MARK)",)

test-ci-runs: install ## only the baked CI files run for real with gitlab-ci-local and act
	$(RUN) pytest -m ci_run --durations=10

test-fast: install ## run the template tests except the slow end-to-end ones
	$(RUN) pytest -m "not slow" --durations=10

demo: install ## bake the default project into build/demo/ and run its whole pipeline
	-[ -d $(DEMO)/churn-model/.venv ] && $(MAKE) -C $(DEMO)/churn-model down UV=$(UV)
	rm -rf $(DEMO)
	$(RUN) cookiecutter --no-input -o $(DEMO) "$(CURDIR)"
	env -u VIRTUAL_ENV $(MAKE) -C $(DEMO)/churn-model install pipeline PORT=$(PORT) UV=$(UV)

bench: install ## serving speed: the default project's bento vs a bare ASGI app (wrk), then bench/batch.py
	$(RUN) python bench/serving.py $(BENCH_ARGS)

bench-ci: install ## CI speed: each pipeline stage and pull-request job of the default project, and the graph's critical path
	$(RUN) python bench/ci.py $(BENCH_ARGS)

clean: ## remove build/ and test caches
	rm -rf build .pytest_cache .ruff_cache
