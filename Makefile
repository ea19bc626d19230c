# tickerflow: `make run` and `make test` work from a fresh clone with only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := constraints.txt
# `make run` installs the runtime only; `make test` adds the dev tools (pytest, ruff, mypy, moto, ...).
# Both install from the same constraints file, so the two venvs hold the same versions of what they share.
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

# Telemetry stays off without an environment block here: the CLI's main() and the tests' conftest apply
# tickerflow/runtime/environment.py before anything imports Prefect or MLflow.

.PHONY: install install-dev run test test-fast lint constraints settings-table bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

$(RUN_STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install --quiet -c $(CONSTRAINTS) -e .
	touch $(RUN_STAMP)

# the dev install is a superset of the runtime one: it satisfies `make run` too
$(TEST_STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $(TEST_STAMP) $(RUN_STAMP)

install: $(RUN_STAMP)

install-dev: $(TEST_STAMP)

run: $(RUN_STAMP)
	$(BIN)/tickerflow run

lint: $(TEST_STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy

# Two workers (pytest-xdist): the suite's slow tests wait on child processes as much as they compute; the
# integration tests share their servers on one worker (--dist loadgroup). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not integration and not slow"

# after a change of dependencies in pyproject.toml: install, test, then record the versions that passed
constraints: $(TEST_STAMP)
	{ sed -n '/^#/p' $(CONSTRAINTS); $(PIP) freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' | LC_ALL=C sort -f; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

# after a change of a setting in models/tickerflow_model/config.py: the table of every setting in docs/GUIDE.md
settings-table: $(TEST_STAMP)
	$(BIN)/python -c "import pathlib; from tickerflow.cli.settings import with_settings_table as w; \
	p = pathlib.Path('docs/GUIDE.md'); p.write_text(w(p.read_text()))"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
