# The two commands of the README: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## demo: generate the demo organisation, ingest it, then serve the app on http://localhost:8501
demo: $(INSTALLED)
	$(BIN)/finops demo
	$(BIN)/finops app

## test: lint, format check and the whole test suite (what CI runs)
test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

## bench: the scale benchmarks of DESIGN.md (minutes; run by hand)
bench: $(INSTALLED)
	$(BIN)/python benchmarks/ingest_chargeback.py
	$(BIN)/python benchmarks/ingest_cur.py
	$(BIN)/python benchmarks/gpu_samples.py

clean:
	rm -rf $(VENV) .finops .pytest_cache .ruff_cache
