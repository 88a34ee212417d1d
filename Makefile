# Postern: the README's two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: run test lint typecheck pytest bench reliability system-deps docs clean help images wheels lock compose-test

help:
	@echo "make run    - create .venv, install, start the whole cluster locally (mailctl up)"
	@echo "make test   - install what the suite needs, then lint, type-check and run every test"
	@echo "make bench  - side-by-side benchmarks against Postfix and Dovecot (bench/results/)"
	@echo "              e.g. make bench BENCH_ARGS='--only W4 --runs 1'"
	@echo "make reliability - faults under load, hostile input, fuzzing, mixed run (< 30 min)"
	@echo "              e.g. make reliability RELIABILITY_ARGS='--only baseline --mixed 60'"
	@echo "make images - build the compose images without a registry (debootstrap base, host wheels)"
	@echo "make compose-test - build the images, run the compose deployment and test it in Docker"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install when pyproject.toml changes; editable, so code changes need no reinstall.
$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[all]'
	@touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[test]'
	@touch $@

$(VENV)/.bench-deps: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[test,bench]'
	@touch $@

run: $(VENV)/.run-deps
	$(BIN)/mailctl up

system-deps:
	@scripts/system-deps test

LINTED := $(wildcard mailcore services tests bench reliability compose/tests compose/probe.py scripts/apt_sources.py)

lint: $(VENV)/.test-deps
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: $(VENV)/.test-deps
	$(BIN)/mypy

pytest: $(VENV)/.test-deps
	$(BIN)/pytest

test: $(VENV)/.test-deps system-deps lint typecheck pytest
	@scripts/compose-test-if-docker

# Compose images, registry-free: a Debian base from debootstrap (cached by its inputs),
# Python packages from wheels made here. BASE_IMAGE=python:3.11-slim-bookworm (and
# SCANNER_BASE_IMAGE=debian:bookworm-slim) build from a registry instead.
wheels: | $(BIN)/python
	PYTHON=$(BIN)/python scripts/build-wheels

images: wheels
	@scripts/system-deps compose
	@base=$${BASE_IMAGE:-$$(scripts/build-base)}; scanner=$${SCANNER_BASE_IMAGE:-$$base}; \
	set -e; for img in postern:Dockerfile:$$base postern-clamav:clamav.Dockerfile:$$scanner \
	    postern-spamd:spamd.Dockerfile:$$scanner postern-haproxy:haproxy.Dockerfile:$$scanner \
	    postern-prometheus:prometheus.Dockerfile:$$scanner; do \
	  IFS=: read -r name file from <<< "$$img"; \
	  echo "images: $$name:latest from $$from"; \
	  ctx=compose; [ $$name = postern ] && ctx=.; \
	  docker build -q -t $$name:latest -f compose/$$file --build-arg BASE_IMAGE=$$from $$ctx; \
	done

# The pins the images install: a fresh venv with Postern's runtime extras, frozen.
lock: | $(BIN)/python
	rm -rf build/lockvenv && $(PYTHON) -m venv build/lockvenv
	build/lockvenv/bin/pip install -q '.[all]'
	{ sed -n '1,2p' compose/requirements.lock; build/lockvenv/bin/pip freeze --all --exclude postern \
	  | grep -v -E '^(pip|setuptools|wheel)=='; } > compose/requirements.lock.new
	mv compose/requirements.lock.new compose/requirements.lock

compose-test: $(VENV)/.test-deps images
	$(BIN)/pytest -p no:randomly -x -q compose/tests

bench: $(VENV)/.bench-deps
	@scripts/system-deps bench
	$(BIN)/python -m bench $(BENCH_ARGS)

# Not part of `make test`: bounded (< 30 min on 2 cores), loopback only; writes
# docs/reliability.md. Its building blocks have unit tests in tests/reliability.
reliability: $(VENV)/.test-deps
	@scripts/system-deps test
	$(BIN)/python -m reliability $(RELIABILITY_ARGS)

docs: $(VENV)/.run-deps
	$(BIN)/python -m mailcore.config --write docs/configuration.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
