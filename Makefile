# The two commands a newcomer runs: `make run` (set up, then the demo pipeline) and
# `make test` (set up, then the whole test suite). Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Stage commands in dvc.yaml call `python`: put the venv first so they use it.
export PATH := $(BIN):$(PATH)
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: setup run test test-fast lint format typecheck check deps leaderboard submit \
	kaggle-bundle kaggle-push download-competition demo-data clean

setup: $(VENV)/.installed

# The pipeline's packages and the development tools (tests, lint, types) in one environment.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

run: setup
	$(BIN)/dvc repro
	@$(BIN)/python -m stages.ensemble --summary

test: setup
	$(BIN)/python -m pytest

# The unit tier: everything but the end-to-end tests that drive real dvc and git (marked slow).
test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

# What CI checks besides the tests (.ci/run); `pre-commit install` runs the same before a commit.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .

typecheck: setup
	$(BIN)/mypy

# Every check CI runs: lint, types, then the whole test suite.
check: lint typecheck test

# Every experiment with the params it changed and its headline numbers, best OOF first.
leaderboard: setup
	$(BIN)/python -m commands.leaderboard

# Check submissions/submission.csv, then upload it with the kaggle tool (kaggle_competition in
# params.yaml; MESSAGE="..." to write your own message).
submit: setup
	$(BIN)/python -m commands.submit $(if $(MESSAGE),--message "$(MESSAGE)")

# Code competitions: this run (blended with ensemble_runs) as a Kaggle dataset + offline notebook
# in kaggle/ (ARGS="--wheels --gpu --runs a b" to pass options), then upload both.
kaggle-bundle: setup
	$(BIN)/python -m commands.bundle $(ARGS)

kaggle-push: setup
	$(BIN)/python -m commands.kaggle_push

# Get the competition named by kaggle_competition (params.yaml) with the kaggle tool and unzip it
# into data/<slug>; then set `competition: data/<slug>`.
download-competition: setup
	$(BIN)/python -m commands.get_competition

# Rewrite each stage's code deps in dvc.yaml from the imports of the code it runs.
deps: setup
	$(BIN)/python -m commands.code_deps

# Rebuild data/demo from Debian's dataset-fashion-mnist (only needed to change the demo).
demo-data: setup
	$(BIN)/python data/demo/make_demo.py

clean:
	rm -rf $(VENV)
