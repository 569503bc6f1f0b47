# Two commands on a fresh clone: `make demo` and `make test`. Only Python >= 3.10 and make are needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint demo bench e2e clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The end-to-end tier: the built wheel (not the source tree) in its own virtualenv, inside a real
# Airflow (api-server, scheduler, dag-processor, triggerer) started and stopped by e2e/run.py.
E2E_VENV := .venv-e2e
e2e: $(STAMP)
	rm -rf dist
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .
	test -x $(E2E_VENV)/bin/python || $(PYTHON) -m venv $(E2E_VENV)
	$(E2E_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(E2E_VENV)/bin/python -m pip install --quiet dist/*.whl
	$(E2E_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps dist/*.whl
	cd /tmp && $(CURDIR)/$(E2E_VENV)/bin/python $(CURDIR)/e2e/run.py

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python benchmarks/bulk_send.py
	$(BIN)/python benchmarks/carrier_grouping.py
	$(BIN)/python benchmarks/dry_run_memory.py
	$(BIN)/python benchmarks/campaign.py

clean:
	rm -rf $(VENV) $(E2E_VENV) dist build .demo .pytest_cache .ruff_cache *.egg-info
