# Every target sets up what it needs: a fresh clone runs `make test` or `make demo` directly.
SHELL := /bin/bash
# The Lambda runtime is Python 3.12; prefer it locally, fall back to any python3 >= 3.11.
PYTHON ?= $(shell for p in python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python3.12 python3.13 $(HOME)/.pyenv/versions/3.13*/bin/python3.13 python3; do \
	  if "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then echo "$$p"; break; fi; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Security scanners live apart too: checkov pins many libraries of its own.
SEC_VENV := .venv-security
SEC_STAMP := $(SEC_VENV)/.installed
# SAM CLI lives apart from the project's tools: it pins its own boto3, cfn-lint, etc.
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed

.PHONY: test demo bench lint typecheck cfn-lint security unit clean local-stack test-sam-local

$(STAMP): requirements-dev.txt src/requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "No Python >= 3.11 found" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src devtools bench tests
	$(BIN)/ruff format --check src devtools bench tests

typecheck: $(STAMP)
	$(BIN)/mypy

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

$(SEC_STAMP): devtools/security/requirements-security.txt
	@test -n "$(PYTHON)" || { echo "No Python >= 3.11 found" >&2; exit 1; }
	$(PYTHON) -m venv $(SEC_VENV)
	$(SEC_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SEC_VENV)/bin/python -m pip install --quiet -r devtools/security/requirements-security.txt
	touch $(SEC_STAMP)

# checkov on the template (every skip is justified in the template's Metadata) and pip-audit on
# the runtime requirements (what it could not audit is said, never passed off as clean).
security: $(STAMP) $(SEC_STAMP)
	$(SEC_VENV)/bin/checkov -f template.yaml --framework cloudformation --skip-download --compact --quiet
	$(BIN)/python -m devtools.security.audit $(SEC_VENV)/bin/pip-audit src/requirements.txt

test: lint typecheck cfn-lint security
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/python -m devtools.demo

# SAM CLI (its own venv) for the artifact row: `sam build` of the template, zipped.
bench: $(STAMP) $(SAM_STAMP)
	$(BIN)/python -m bench.bench

# The Auth0 simulator and moto's server on the ports events/env.json names, for `sam local invoke`.
local-stack: $(STAMP)
	$(BIN)/python -m devtools.local_stack

$(SAM_STAMP): devtools/sam_local/requirements-sam.txt
	@test -n "$(PYTHON)" || { echo "No Python >= 3.11 found" >&2; exit 1; }
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet -r devtools/sam_local/requirements-sam.txt
	touch $(SAM_STAMP)

# `sam build` + three `sam local invoke`s in Docker against the local stack (sets Docker up).
test-sam-local: $(STAMP) $(SAM_STAMP)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' || { \
	  echo "test-sam-local needs Python 3.12 (the template's runtime); found $(PYTHON)" >&2; exit 1; }
	PYTHON312="$$($(PYTHON) -c 'import sys; print(sys.executable)')" SAM=$(SAM_VENV)/bin/sam \
	  bash devtools/sam_local/run.sh

clean:
	rm -rf $(VENV) $(SAM_VENV) $(SEC_VENV) .sam-local .pytest_cache .mypy_cache .ruff_cache .hypothesis .aws-sam
