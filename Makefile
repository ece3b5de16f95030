# capaudit — operator targets. Everything installs into .venv/ from the lock file.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CAPAUDIT := $(VENV)/bin/capaudit
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
CONFIG ?= configs/default.toml
PYTEST_ARGS ?=
BENCH_E2E_ARGS ?=
TEST_WORKERS ?= 3

.DEFAULT_GOAL := help
.PHONY: help install run run-s3 test lint docs serve simulate bench bench-dispatch bench-receiver bench-warehouse bench-e2e lock clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check 'uv==0.13.9'
	@$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.lock
	@$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## create .venv/ from the lock file

run: $(STAMP) ## run the audit on the sample data against the embedded simulator
	$(CAPAUDIT) run --config $(CONFIG)

run-s3: $(STAMP) ## the same audit with landing and lake on S3, against an embedded SeaweedFS
	$(PY) scripts/run-s3

# Two phases, both always run: the tests not marked `timed` on TEST_WORKERS pytest-xdist
# workers, then the `timed` ones alone (they measure rates and durations). `--dist loadscope`
# keeps a module's tests on one worker, so a module-scoped fixture (the report's runs, the lake
# readers' runs) is built once. Exit code 5 (nothing selected) of one phase is no failure when
# PYTEST_ARGS selects tests of the other phase only.
test: $(STAMP) ## run the whole test suite (installs Debian's chromium for the report test)
	@scripts/ensure-chromium
	@status=0; \
	for phase in "-n $(TEST_WORKERS) --dist loadscope --timed=exclude" "--timed=only"; do \
		echo "$(VENV)/bin/pytest -q $$phase $(PYTEST_ARGS)"; \
		$(VENV)/bin/pytest -q $$phase $(PYTEST_ARGS); code=$$?; \
		if [ $$code -ne 0 ] && [ $$code -ne 5 ]; then status=$$code; fi; \
		if [ $$code -ne 5 ]; then ran=1; fi; \
	done; \
	if [ -z "$$ran" ]; then echo "no test selected" >&2; exit 5; fi; \
	exit $$status

lint: $(STAMP) ## ruff and mypy --strict on pipeline/
	$(VENV)/bin/ruff check pipeline tests benchmarks
	$(VENV)/bin/ruff format --check pipeline tests benchmarks
	$(VENV)/bin/mypy

docs: $(STAMP) ## regenerate docs/configuration.md from pipeline/settings.py
	$(PY) -m pipeline.settings_doc > docs/configuration.md.tmp && mv docs/configuration.md.tmp docs/configuration.md

serve: $(STAMP) ## run the webhook receiver (needs CAPAUDIT_WEBHOOK_SECRET)
	$(CAPAUDIT) serve --config $(CONFIG)

simulate: $(STAMP) ## run the Sinch simulator as a server
	$(CAPAUDIT) simulate --config $(CONFIG)

bench: bench-dispatch bench-receiver bench-warehouse bench-e2e ## run all four benchmarks

bench-dispatch: $(STAMP) ## dispatcher pacing and CPU vs a bare aiohttp loop
	$(PY) -m benchmarks.dispatch

bench-receiver: $(STAMP) ## durable callbacks per second vs durability off
	$(PY) -m benchmarks.receiver

bench-warehouse: $(STAMP) ## contacts load and warehouse build at 10M rows vs bare DuckDB
	$(PY) -m benchmarks.warehouse

bench-e2e: $(STAMP) ## a whole capaudit run of 100,000 contacts vs the API's limit (BENCH_E2E_ARGS="--contacts 1000000")
	$(PY) -m benchmarks.e2e $(BENCH_E2E_ARGS)

lock: ## re-resolve requirements.lock from pyproject.toml (needs the registry)
	@test -x $(VENV)/bin/uv || (python3 -m venv $(VENV) && $(VENV)/bin/pip install -q 'uv==0.13.9')
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra dev --extra s3 --python-version 3.11 --generate-hashes -o requirements.lock

clean: ## remove generated outputs (keeps data/sample)
	rm -rf data/warehouse.duckdb* data/state.duckdb* data/lake data/landing data/reports .pytest_cache .mypy_cache .ruff_cache
