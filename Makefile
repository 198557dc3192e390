# Contoso Data Hub — every target does its own setup and is idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
VPY       := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: help setup test lint typecheck unit integration demo verify bench sandbox devhost clean

help:
	@echo "make demo   - run the whole flow end to end on the local sandbox (writes out/)"
	@echo "make test   - lint, type-check and the unit + integration suites"
	@echo "make verify - the long reliability suites"
	@echo "make bench  - benchmarks (writes out/bench.json)"
	@echo "make sandbox - start the local world (python -m sandbox serve --app)"

$(STAMP): requirements.txt requirements-dev.txt scripts/find-python.sh
	@py=$$(scripts/find-python.sh) || exit 1; \
	if [ ! -x $(VPY) ] || ! $(VPY) -c 'import sys; sys.exit(0 if sys.version_info[:2]==(3,13) else 1)' 2>/dev/null; then \
	  rm -rf $(VENV); echo "creating $(VENV) with $$py"; $$py -m venv $(VENV); fi
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(STAMP) $(NODE_STAMP)

lint: $(STAMP)
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

typecheck: $(STAMP)
	$(VPY) -m mypy

unit: setup
	$(VPY) -m pytest -m unit

integration: setup
	$(VPY) -m pytest -m integration

test: setup lint typecheck
	$(VPY) -m pytest -m "unit or integration"

demo: setup
	$(VPY) -m sandbox demo

verify: setup
	$(VPY) -m pytest -m verify --no-header

bench: setup
	$(VPY) -m bench

sandbox: setup
	$(VPY) -m sandbox serve --app

devhost: setup
	$(VPY) -m sandbox devhost

clean:
	rm -rf $(VENV) node_modules .sandbox out .pytest_cache .mypy_cache .ruff_cache
