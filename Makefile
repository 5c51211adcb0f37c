# NexGen ETL — the two commands are `make demo` and `make test`; each sets up what it needs first.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export NEXGEN_HOME := $(CURDIR)

.PHONY: setup setup-test demo airflow test test-unit jars lock requirements clean bench

setup:
	@scripts/setup.sh

# the tests also need Chromium and its driver (the browser test of the Airflow UI)
setup-test:
	@scripts/setup.sh --with-browser

jars:
	@scripts/resolve_jars.sh $(VENV)/bin/python

demo: setup
	$(VENV)/bin/nexgen-etl demo

# the Airflow UI at http://localhost:8080 (AIRFLOW_PORT=…), local S3 and sample data; Ctrl-C stops everything.
# NEXGEN_AIRFLOW_DB=postgres: a throwaway PostgreSQL (Debian's, which setup then installs) as the metadata DB
airflow:
	@scripts/setup.sh $(if $(filter postgres,$(NEXGEN_AIRFLOW_DB)),--with-postgres)
	$(VENV)/bin/nexgen-etl airflow --port $(or $(AIRFLOW_PORT),8080) --db $(or $(NEXGEN_AIRFLOW_DB),sqlite)

# two pytest workers, one test file each at a time (module fixtures stay on one worker): the suite is mostly
# single-threaded waits (JVM start, Spark planning, Airflow, S3 retries), so two run side by side on 2 cores
TEST_WORKERS ?= 2

test: setup-test
	$(VENV)/bin/ruff check src tests bench dags include
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-unit: setup-test
	$(VENV)/bin/pytest tests/unit tests/dags tests/setup $(PYTEST_ARGS)

# Benchmark (see bench/run.py): BENCH_STORES/BENCH_SKUS/BENCH_DAYS (default 50×200×730), BENCH_REPS (3),
# BENCH_SECTIONS (a,b,c,d), BENCH_DISCOVERY_OBJECTS (100000; 0 skips). Data under bench/data (git-ignored).
bench: setup
	$(VENV)/bin/python -u bench/run.py

# the uv that setup installed (scripts/bootstrap.sh), else one on PATH
UV = $(firstword $(wildcard .nexgen/tools/uv-*/bin/uv) uv)

lock: setup
	$(UV) lock --python 3.11
	$(MAKE) requirements

requirements:
	$(UV) export --frozen --no-hashes --no-emit-project --no-dev --format requirements-txt > requirements.txt

clean:
	rm -rf .nexgen test-artifacts .pytest_cache

# one batch over a 300 MB CSV with a 1g driver heap; prints run time and peak RSS (BIGFILE_ARGS="--mb 500 --gzip")
.PHONY: bigfile
bigfile: setup
	$(VENV)/bin/python bench/bigfile.py $(BIGFILE_ARGS)
