# pricetrail — the two commands a new user needs are `make run` and `make test`.
# Every target installs what it needs first (into .venv, once per change of pyproject.toml).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

$(STAMP): pyproject.toml
	@# test -x, not test -d: a half-made venv (an interrupted first install) is made again
	test -x $(BIN)/pip || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[pipeline,dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install pricetrail with its dependencies

run: $(STAMP)  ## the main job: every product's chain on the default (synthetic) data, promote, push to the local remote
	@# A failed gate makes `pricetrail run` exit 1; the cache is pushed all the same (.dvc-remote/ by default).
	$(BIN)/pricetrail run --push

# Test processes (pytest-xdist); each test file runs whole in one of them, so a module's fixtures are built once.
TEST_WORKERS ?= 2

test: $(STAMP)  ## lint, then the whole test suite (unit, integration with real dvc repro, real data when ../shared exists)
	$(BIN)/ruff check lib stages tests bench serve
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check lib stages tests bench serve

bench-etl: $(STAMP)  ## DuckDB vs pandas ETL on the real data (needs ../shared)
	$(BIN)/python bench/etl_benchmark.py

bench-pricing: $(STAMP)  ## pricing against known curves: regret vs naive policies and a regression, elasticity, bands, uplift; time vs ad80da7
	$(BIN)/python bench/pricing_benchmark.py --time-against ad80da7 --part both

bench-quality: $(STAMP)  ## price regret on synthetic data, model vs baselines on real data
	$(BIN)/python bench/quality_benchmark.py

bench-pipeline: $(STAMP)  ## wall time of the smoke and default pipelines, and of a no-op rerun
	$(BIN)/python bench/pipeline_timing.py

bench-registry: $(STAMP)  ## registry bytes in git per promotion and a one-product rerun, old registry vs pointers
	$(BIN)/python bench/registry_benchmark.py

bench-flow: $(STAMP)  ## the weekly flow vs sequential dvc repro at 8 and 40 products; no-op; one product changed
	$(BIN)/python bench/flow_benchmark.py --products 8 40
	$(BIN)/python bench/flow_benchmark.py --products 200 --skip-sequential --budget tiny

bench-lineage: $(STAMP)  ## lineage views and fleet report at 100 and 1,000 products, 20 revisions of history, vs dvc metrics show
	$(BIN)/python bench/lineage_benchmark.py --products 100 1000 --revisions 20

bench-router: $(STAMP)  ## the price router under waitress: warm latency, 8 clients, first request, start, memory; vs per-request loading
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python bench/router_benchmark.py

bench-remote: $(STAMP)  ## push/pull times and bytes on moto_server, router first request from S3 vs the local cache
	$(BIN)/python bench/remote_benchmark.py

bench-lambda: $(STAMP)  ## the Lambda handler as its image runs it: install size, init, first price from S3, p99, RSS; vs the torch design (4465042)
	$(BIN)/python bench/lambda_benchmark.py --naive-rev 4465042

bench-startup: $(STAMP)  ## each stage's start-up beside the import floor of what it runs; vs 4465042
	$(BIN)/python bench/stage_startup.py --against 4465042

bench-dvc-launch: $(STAMP)  ## a product job's DVC command in a new interpreter vs forked from the launcher
	$(BIN)/python bench/dvc_launch.py

bench-catalogue: $(STAMP)  ## every real product (~800): the no-op and one product's data changed; vs dfd4261 (needs ../shared)
	$(BIN)/python bench/catalogue_benchmark.py --naive-rev dfd4261

bench-real-run: $(STAMP)  ## every real product through one pricetrail run, tiny budgets (~2 h, needs ../shared)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python bench/real_catalogue_run.py --budget tiny

bench-real-run-100: $(STAMP)  ## 100 real products drawn at random, default budgets: the bookkeeping share (needs ../shared)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python bench/real_catalogue_run.py --budget default --products 100

.PHONY: bench-dvc-launch bench-real-run bench-real-run-100 bench-catalogue bench-startup help install run test lint bench-etl bench-pricing bench-quality bench-pipeline bench-registry bench-flow bench-lineage bench-router bench-remote bench-lambda
