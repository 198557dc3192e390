# Contoso Data Hub — every target does its own setup and is idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
VPY       := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
NODE_STAMP := node_modules/.installed
# checkov (IaC scan) lives in its own venv: its exact pins conflict with the app's dependencies.
TOOLS     := .venv-tools
TPY       := $(TOOLS)/bin/python
TOOLS_STAMP := $(TOOLS)/.installed

.PHONY: help setup tools iac-scan test lint typecheck unit integration demo verify browser bench sandbox devhost clean

help:
	@echo "make demo   - run the whole flow end to end on the local sandbox (writes out/)"
	@echo "make test   - lint, type-check, IaC scan (checkov) and the unit + integration suites"
	@echo "make iac-scan - checkov over infra/ (0 failed checks, every Bicep file parsed)"
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

$(TOOLS_STAMP): requirements-tools.txt scripts/find-python.sh
	@py=$$(scripts/find-python.sh) || exit 1; \
	if [ ! -x $(TPY) ] || ! $(TPY) -c 'import sys; sys.exit(0 if sys.version_info[:2]==(3,13) else 1)' 2>/dev/null; then \
	  rm -rf $(TOOLS); echo "creating $(TOOLS) with $$py"; $$py -m venv $(TOOLS); fi
	$(TPY) -m pip install --quiet --disable-pip-version-check -r requirements-tools.txt
	@touch $@

setup: $(STAMP) $(NODE_STAMP)

tools: $(TOOLS_STAMP)

# checkov exits 0 when it could not parse a file (the file is then not scanned at all) and logs a
# crashed check without failing, so both are treated as failures here.
iac-scan: $(TOOLS_STAMP)
	@out=$$($(TOOLS)/bin/checkov -d infra --framework bicep --skip-download --quiet --compact 2>&1); rc=$$?; \
	echo "$$out"; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	if grep -qE 'Parsing errors: [1-9]|Failed to run check' <<<"$$out"; then \
	  echo "iac-scan: a Bicep file was not parsed or a check did not run; see above" >&2; exit 1; fi

lint: $(STAMP)
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

typecheck: $(STAMP)
	$(VPY) -m mypy

unit: setup
	$(VPY) -m pytest -m unit

integration: setup
	$(VPY) -m pytest -m integration

test: setup lint typecheck iac-scan
	$(VPY) -m pytest -m "unit or integration"

demo: setup
	$(VPY) -m sandbox demo

# Headless Chromium for the browser checks of make verify (Debian package; needs root/apt).
browser:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

# The long suites, then scripts/verify_report.py: out/verify.json always, and the figures section of
# docs/reliability.md for a complete run. Fails if pytest failed or the report is not complete.
verify: setup browser
	@mkdir -p out
	$(VPY) -m pytest -m verify --no-header --junitxml=out/verify-junit.xml; rc=$$?; \
	if ! $(VPY) scripts/verify_report.py && [ $$rc -eq 0 ]; then rc=1; fi; \
	exit $$rc

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	@touch $@

bench: setup $(BENCH_STAMP)
	$(VPY) -m bench
	$(VPY) -m bench.docs

sandbox: setup
	$(VPY) -m sandbox serve --app

devhost: setup
	$(VPY) -m sandbox devhost

clean:
	rm -rf $(VENV) $(TOOLS) node_modules .sandbox out .pytest_cache .mypy_cache .ruff_cache
