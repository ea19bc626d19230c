# tickerflow: `make run` and `make test` work from a fresh clone with only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Telemetry stays off without an environment block here: the CLI's main() and the tests' conftest apply
# tickerflow/environment.py before anything imports Prefect or MLflow.

.PHONY: install run test test-fast lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/tickerflow run

lint: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m mypy

test: lint
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration and not slow"

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
