# Every target sets up .venv from the pinned files first, so each works on a fresh clone.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STACK ?= dev
IMAGE ?= localhost/langsmith-dataplane-listener:dev

.PHONY: setup plan plan-all test lint snapshots image image-smoke demo bench

$(BIN)/.installed: requirements.txt requirements-dev.txt listener/requirements.txt listener/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(BIN)/.installed

plan: setup  ## offline plan of one stack (STACK=dev)
	$(BIN)/python -m tools.plan $(STACK)

plan-all: setup
	$(BIN)/python -m tools.plan --all

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint listener/Dockerfile

test: lint  ## lint, then every test of the program and the listener
	$(BIN)/python -m pytest

snapshots: setup  ## rewrite tests/snapshots/*.json from the current program
	UPDATE_SNAPSHOTS=1 $(BIN)/python -m pytest tests/test_snapshots.py

image:  ## build the listener image with podman (base from Debian packages, cached in /var/cache/langsmith-dataplane)
	tools/container/build $(IMAGE)

image-smoke: setup image  ## run the image locked down against the emulator and fakekube until DEPLOYED
	$(BIN)/python -m tools.container.smoke $(IMAGE)

demo: setup  ## the emulator, fakekube and the listener on 127.0.0.1 rolling out one Agent Server; Ctrl-C stops
	$(BIN)/python -m tools.demo

bench: setup  ## the listener at N = 100 and 1,000 deployments (about 12 minutes); BENCH_ARGS="--n 100" for one
	$(BIN)/python -m bench.listener_bench $(BENCH_ARGS) --json bench/listener-results.json
