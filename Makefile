# Two commands on a fresh clone: `make demo` and `make test`. Only Python >= 3.10 and make are needed.
# The other targets: docs/development.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint redis-server demo docs dist check-install bench wheel e2e e2e-services e2e-celery test-matrix test-airflow constraints clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# loadgroup: one test at a time to whichever worker is free (tests/conftest.py puts the slowest first).
# The alert state's Redis tests start a real redis-server: installed from Debian's package when missing
# (CI starts on a clean machine, as root).
test: lint redis-server
	$(BIN)/python -m pytest -n 2 --dist loadgroup

redis-server:
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The documentation site (docs/, mkdocs.yml) into site/; any warning fails the build.
docs: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The release artefacts: sdist and wheel in dist/, their metadata checked (twine) and their contents
# checked against what a user needs (scripts/check_dist.py: entry point, classifiers, licence, py.typed,
# constraints files in the sdist).
dist: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,release]'
	rm -rf dist build
	$(BIN)/python -m build --sdist --wheel --outdir dist .
	$(BIN)/python -m twine check --strict dist/*
	$(BIN)/python scripts/check_dist.py dist

# The wheel installed with the documented recipe (constraints first) into a clean virtualenv per
# Airflow line, then `airflow providers list`, `airflow config list` and one `airflow dags test`
# against the sandbox (scripts/check_install.sh; about 2 minutes per line).
CHECK_INSTALL_VERSIONS := 3.0.6 3.2.2 3.3.2
check-install: dist
	bash scripts/check_install.sh $(CHECK_INSTALL_VERSIONS)

# The end-to-end tiers: the built wheel (not the source tree) in a virtualenv of its own, inside a real
# Airflow started and stopped by e2e/run.py (LocalExecutor, SQLite) or e2e/run_celery.py (CeleryExecutor,
# Redis, PostgreSQL, two workers); both drive it through e2e/driver.py. Run from /tmp, so that
# `import airflow_provider_juhe` can only find the installed wheel.
E2E_VENV := .venv-e2e
E2E_CELERY_VENV := .venv-e2e-celery
# The alert state lives in the tier's Redis (apache-airflow-providers-redis). Airflow's constraints file pins these; without it, celery 5.7.0 resolves and breaks
# apache-airflow-providers-celery (ImportError: cannot import name 'retry' from 'celery.backends.database').
E2E_CELERY_PINS := 'apache-airflow[celery,postgres]==3.3.2' 'celery[redis]==5.6.3' 'apache-airflow-providers-redis>=4.7'

wheel: $(STAMP)
	rm -rf dist
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .

e2e: wheel
	test -x $(E2E_VENV)/bin/python || $(PYTHON) -m venv $(E2E_VENV)
	$(E2E_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(E2E_VENV)/bin/python -m pip install --quiet dist/*.whl
	$(E2E_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps dist/*.whl
	cd /tmp && $(CURDIR)/$(E2E_VENV)/bin/python $(CURDIR)/e2e/run.py

# PostgreSQL and Redis from Debian's packages when missing: CI starts on a clean machine, as root.
e2e-services:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v redis-server >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server; \
	fi

e2e-celery: wheel e2e-services
	test -x $(E2E_CELERY_VENV)/bin/python || $(PYTHON) -m venv $(E2E_CELERY_VENV)
	$(E2E_CELERY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(E2E_CELERY_VENV)/bin/python -m pip install --quiet dist/*.whl $(E2E_CELERY_PINS)
	$(E2E_CELERY_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps dist/*.whl
	cd /tmp && $(CURDIR)/$(E2E_CELERY_VENV)/bin/python $(CURDIR)/e2e/run_celery.py

# The CI matrix: the test suite on the oldest supported Airflow and on 3.2.2 (the newest without
# task_state_store, so the send ledger's fallback store), each leg in a virtualenv of its own,
# installed with the constraints file kept in constraints/ (resolved on this machine; Airflow's
# published ones cannot be fetched here). `make constraints AIRFLOW_VERSION=...` writes one anew.
MATRIX := 3.0.6 3.2.2
AIRFLOW_VERSION ?= 3.0.6
AF_VENV = .venv-af-$(AIRFLOW_VERSION)
AF_CONSTRAINTS = constraints/airflow-$(AIRFLOW_VERSION).txt

# Every leg runs even when one fails; the target fails if any did.
test-matrix:
	@status=0; for version in $(MATRIX); do \
		$(MAKE) --no-print-directory test-airflow AIRFLOW_VERSION=$$version || status=1; \
	done; exit $$status

test-airflow:
	test -x $(AF_VENV)/bin/python || $(PYTHON) -m venv $(AF_VENV)
	$(AF_VENV)/bin/python -m pip install --quiet --upgrade pip
	nice -n 10 $(AF_VENV)/bin/python -m pip install --quiet -c $(AF_CONSTRAINTS) 'apache-airflow==$(AIRFLOW_VERSION)' -e '.[test]'
	nice -n 10 $(AF_VENV)/bin/python -m pytest -p no:cacheprovider -n 2 --dist loadgroup

# Resolve a leg afresh: today's index needs these pins (each constraints file's header says why).
PINS_3.0.6 := 'fastapi==0.116.1' 'cadwyn<6' 'universal-pathlib<0.3' 'sqlalchemy<2'
PINS_3.2.2 := 'fastapi==0.156.0' 'svcs<26' 'sqlalchemy<2.1' 'universal-pathlib<0.3.10'
constraints:
	rm -rf $(AF_VENV) && $(PYTHON) -m venv $(AF_VENV)
	$(AF_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AF_VENV)/bin/python -m pip install --quiet 'apache-airflow==$(AIRFLOW_VERSION)' -e '.[test]' $(PINS_$(AIRFLOW_VERSION))
	$(AF_VENV)/bin/python -m pip freeze --exclude-editable > $(AF_CONSTRAINTS).new
	@echo "$(AF_CONSTRAINTS).new written: keep the header of $(AF_CONSTRAINTS) and replace the pins below it"

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python benchmarks/simulation.py
	$(BIN)/python benchmarks/bulk_send.py
	$(BIN)/python benchmarks/carrier_grouping.py
	$(BIN)/python benchmarks/dry_run_memory.py
	$(BIN)/python benchmarks/campaign.py
	$(BIN)/python benchmarks/ceiling.py
	$(BIN)/python benchmarks/deployed.py
	$(BIN)/python benchmarks/alert_state.py

clean:
	rm -rf $(VENV) $(E2E_VENV) $(E2E_CELERY_VENV) .venv-af-* dist build site .demo .pytest_cache .ruff_cache *.egg-info
