# Quick start on a fresh machine:  make render   then   make test
# Everything installs itself: the project virtualenv (.venv), and checkov (.venv-checkov) and the AWS CLI
# (.venv-awscli) each in its own virtualenv: both pin a boto3/botocore that must never reach the project.

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
CHECKOV     := $(CHECKOV_VENV)/bin/checkov
AWSCLI_VENV := .venv-awscli
AWSCLI_VERSION := 1.46.2
ENV         ?= dev
ADKIT       := $(BIN)/adkit
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv tools postgres graphviz render check-render lint cfn-lint scan ruff test test-fast \
        bootstrap pipeline deploy plan status logs diagram cost destroy clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# Two steps: `make render` installs the generator with its runtime dependencies (.installed-render: rendering,
# plus boto3/rich/cfn-flip so every `adkit` command, e.g. the offline `diagram` and `cost`, runs; rendering itself
# imports none of them); test tools and the reference service's requirements come with `make venv`.
$(VENV)/.installed-render: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[deploy]'
	@touch $@

$(VENV)/.installed: $(VENV)/.installed-render pyproject.toml $(wildcard apprunner/requirements.txt)
	$(BIN)/python -m pip install --quiet -e '.[deploy,dev]' $(if $(wildcard apprunner/requirements.txt),-r apprunner/requirements.txt)
	@touch $@

$(CHECKOV_VENV)/.installed:
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	@touch $@

# AWS CLI v1 pins botocore exactly: its own virtualenv, so the project's boto3 never moves.
$(AWSCLI_VENV)/.installed:
	@test -x $(AWSCLI_VENV)/bin/python || $(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AWSCLI_VENV)/bin/python -m pip install --quiet awscli==$(AWSCLI_VERSION)
	@touch $@

venv: $(VENV)/.installed ## create/refresh the project virtualenv

tools: $(CHECKOV_VENV)/.installed $(AWSCLI_VENV)/.installed ## install checkov and the AWS CLI, each in its own virtualenv

postgres: ## install PostgreSQL server binaries from Debian (contract tests start throwaway clusters)
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "PostgreSQL present: $$(ls -d /usr/lib/postgresql/*/bin | head -1)"; \
	else \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql openssl; \
	fi

graphviz: ## install Graphviz from Debian (`adkit diagram` draws SVG/PNG with its `dot`)
	@if command -v dot >/dev/null 2>&1; then \
	  echo "Graphviz present: $$(command -v dot)"; \
	else \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends graphviz; \
	fi

render: $(VENV)/.installed-render ## render every environment and the account-level stacks into templates/ (installs only what rendering needs)
	$(BIN)/python -m generator render

check-render: venv ## fail if templates/ differs from a fresh render
	$(BIN)/python -m generator render --check

cfn-lint: venv ## cfn-lint every rendered template (errors and warnings fail)
	$(BIN)/cfn-lint 'templates/**/*.yaml'

scan: tools ## checkov over every rendered template (any failed check fails)
	$(CHECKOV) --skip-download --quiet --compact --framework cloudformation -d templates

lint: check-render cfn-lint scan ## golden check, cfn-lint and checkov

ruff: venv ## Python lint
	$(BIN)/ruff check generator tests apprunner

test: venv tools postgres graphviz ruff ## lint, scans and every test (the CI command)
	$(BIN)/pytest $(PYTEST_ARGS)

bootstrap: venv ## deploy the account-level bootstrap stack
	$(ADKIT) bootstrap

pipeline: venv ## deploy the account-level pipeline stack
	$(ADKIT) pipeline

deploy: venv ## deploy one environment: make deploy ENV=dev [IMAGE_TAG=<sha>]
	$(ADKIT) deploy $(ENV) $(if $(IMAGE_TAG),--image-tag $(IMAGE_TAG))

plan: venv ## show the change set for one environment, then delete it: make plan ENV=dev
	$(ADKIT) plan $(ENV) $(if $(IMAGE_TAG),--image-tag $(IMAGE_TAG))

status: venv ## stack states and outputs: make status ENV=dev
	$(ADKIT) status $(ENV)

logs: venv ## recent logs of one environment: make logs ENV=dev
	$(ADKIT) logs $(ENV)

diagram: venv ## architecture diagram from the rendered templates: make diagram ENV=dev (docs/architecture-dev.svg)
	$(ADKIT) diagram $(ENV) --output docs/architecture-$(ENV).svg

cost: venv ## monthly cost estimate from config and templates: make cost ENV=dev
	$(ADKIT) cost $(ENV)

destroy: venv ## delete a non-production environment: make destroy ENV=dev
	$(ADKIT) destroy $(ENV)

clean: ## remove virtualenvs and caches
	rm -rf $(VENV) $(CHECKOV_VENV) $(AWSCLI_VENV) .pytest_cache .ruff_cache *.egg-info
