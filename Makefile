# Postern: the README's two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: run test lint typecheck pytest bench reliability system-deps docs clean help

help:
	@echo "make run    - create .venv, install, start the whole cluster locally (mailctl up)"
	@echo "make test   - install what the suite needs, then lint, type-check and run every test"
	@echo "make bench  - side-by-side benchmarks against Postfix and Dovecot (bench/results/)"
	@echo "              e.g. make bench BENCH_ARGS='--only W4 --runs 1'"
	@echo "make reliability - faults under load, hostile input, fuzzing, mixed run (< 30 min)"
	@echo "              e.g. make reliability RELIABILITY_ARGS='--only baseline --mixed 60'"

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

LINTED := $(wildcard mailcore services tests bench reliability)

lint: $(VENV)/.test-deps
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: $(VENV)/.test-deps
	$(BIN)/mypy

pytest: $(VENV)/.test-deps
	$(BIN)/pytest

test: $(VENV)/.test-deps system-deps lint typecheck pytest

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
