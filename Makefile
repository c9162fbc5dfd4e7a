# The task vocabulary: every CI system calls these targets, and so can you.
VENV ?= .venv
PYTHON ?= python3
UV_VERSION := 0.13.9
BIN := $(abspath $(VENV))/bin
# PYTHONDONTWRITEBYTECODE is common in CI images: bytecode is compiled once, at install
# dvc runs each stage's `mlship ...` command; it must find the venv's tools
export PATH := $(BIN):$(PATH)
SHELL := /bin/bash

.DEFAULT_GOAL := help
.PHONY: help install docs kube pipeline train pull repro gate report register promote image push loadtest deploy serve score-dataproc monitor summary lint typecheck check test unit lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --editable .
	$(BIN)/python -m compileall -q src  # the editable sources too (a server starts faster)
	touch $@

install: $(VENV)/.installed ## create .venv and install the pinned dependencies

# the gate's verdict is the exit status; the HTML report is written also when it fails
GATE = status=0; mlship gate || status=$$?; mlship report || [ $$status -ne 0 ]; exit $$status

pipeline: train ## the main job: the whole local pipeline, gated and registered, summarised
	$(GATE)
	mlship register
	mlship image build --skip-without-engine
	mlship loadtest
	mlship report
	mlship summary

# `dvc repro --pull` first restores what the DVC remote holds; not while the default remote is
# the local folder dvc-remote/ and that is still empty (a fresh clone), where it only warns.
# stdin is /dev/null: a prompt (DVC asks before dropping a directory it cannot restore) must
# never wait on a terminal no one answers; DVC's own reminder to push is dropped: we push next.
PULL = $(if $(and $(filter local,$(shell $(BIN)/dvc remote default 2>/dev/null)),$(if $(wildcard dvc-remote/*),,empty)),,--pull)

train: install ## dvc repro (restoring cached outputs from the DVC remote first), then dvc push
	set -o pipefail; dvc repro $(PULL) </dev/null | sed -u '/^Use `dvc push`/d'
	dvc push --quiet
	@echo "outputs stored in the DVC remote ($$(dvc remote default))"

pull: install ## restore the pipeline outputs of this commit from the DVC remote
	dvc pull

repro: install ## run the DVC pipeline only (cached stages are skipped)
	dvc repro

gate: install ## judge the evaluated model, then write the HTML run report (also when it fails)
	$(GATE)

report: install ## the HTML run report (reports/report.html): verdict, criteria, plots
	mlship report

register: install ## register the gated model in MLflow with alias @candidate
	mlship register

promote: install ## move @champion to @candidate (APPROVER=name, ROLLBACK=1 to go back)
	mlship promote $(if $(APPROVER),--approver "$(APPROVER)") $(if $(ROLLBACK),--rollback)

image: install ## build the serving image with the model baked in (needs a Docker engine)
	mlship image build

push: install ## push the image to $$MLSHIP_REGISTRY (default 127.0.0.1:5001)
	mlship image push

loadtest: install ## locust against the image (or a local server) within the params budget
	mlship loadtest

deploy: install ## roll the pushed image out with kubectl (ENV=staging|production, CANARY=1), undo on failure
	mlship deploy --env $(or $(ENV),staging) $(if $(CANARY),--canary)

serve: install ## serve models/ on 127.0.0.1:8000 (MODEL=models:/name@alias, WORKERS=2)
	mlship serve --model "$(or $(MODEL),models)" --workers $(or $(WORKERS),2) \
		$(if $(MODEL),,$(if $(wildcard metrics/evaluate.json),--metrics metrics/evaluate.json))

score-dataproc: ## score MLSHIP_SCORE_INPUT on Dataproc Serverless with the image production runs
	bash .ci/spark/dataproc-score.sh

monitor: install ## live drift and accuracy from the server's samples (MLSHIP_MONITOR_SINK); exit 1: retrain
	mlship monitor $(if $(REFERENCE),--reference "$(REFERENCE)")

summary: install ## print the last run's metrics, reports and MLflow run
	mlship summary

lint: install ## ruff lint and format check; the package's floors (import-linter)
	ruff check .
	ruff format --check .
	lint-imports --no-cache

# the team's own code beside model/: what dvc.yaml's train stage depends on outside src/
TEAM_CODE = $(shell $(BIN)/python -c 'from pathlib import Path; from mlship.paths import \
	stage_dependencies as deps; print(*(d for d in deps(Path("dvc.yaml"), "train") if not \
	d.startswith(("src/", "$$")) and d != "model" and (Path(d).is_dir() or d.endswith(".py"))))')

typecheck: install ## mypy strict on src/, model/ and the team's code the train stage depends on
	mypy src model $(TEAM_CODE)

check: lint typecheck ## the project's checks on the current params.yaml (each CI's test stage)
	pytest tests/project --junitxml=reports/junit/check.xml

test: lint typecheck ## the project's checks and mlship's whole framework suite (what .ci/run runs)
	pytest -n 2 --junitxml=reports/junit/tests.xml

unit: install ## the fast unit tests only
	pytest tests/unit

kube: install ## build the Kubernetes control plane the tests run, once per machine (needs Go)
	PYTHON=$(BIN)/python bash tests/kube/build.sh

docs: install ## build the documentation site into site/ (strict: a broken link fails)
	mkdocs build --strict

lock: ## re-pin requirements.lock from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra pipeline --extra dev --extra gcs --extra s3 \
		--extra models --extra spark --python-version 3.11 --generate-hashes --quiet --output-file requirements.lock
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --quiet \
		--output-file requirements-serve.lock

clean: ## remove pipeline outputs and the local MLflow store (keeps .venv and the DVC cache)
	rm -rf data/raw/*.parquet data/reports/*.json data/reports/*.md models metrics/*.json \
		reports/*.csv reports/plots/*.json reports/gate.* reports/junit mlruns
