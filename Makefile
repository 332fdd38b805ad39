# dicomflow — two commands for a new user:  `make run` (local stack demo)  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-emulator.txt requirements-dev.txt pyproject.toml requirements-dev.lock | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
# `make test` runs pytest on this many pytest-xdist workers (0: in this process). Most of the suite waits on
# local services rather than computing, so 4 workers on a 2-core machine keep both cores busy. A test file is the
# unit of scheduling (--dist loadfile): a module's shared fixture (a local stack, the container image's venv) is
# set up once, and the files go out in collection order, the long end-to-end ones first. (--dist loadgroup
# would be finer, but with pytest 9.2 xdist 3.8 silently ignores its groups: pytest-xdist issue 1386.)
PYTEST_WORKERS ?= 4

.PHONY: test run lint unit integration e2e bench prereqs clean terraform-checks mutants lock

prereqs:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || { \
	  echo "error: Python 3.11+ is required; '$(PYTHON)' is $$($(PYTHON) --version 2>/dev/null || echo 'not found')." >&2; \
	  echo "       Install Python 3.11+ or run: make PYTHON=/path/to/python3.11 <target>" >&2; exit 1; }
	@command -v java >/dev/null 2>&1 || { \
	  echo "error: Java 17+ is required (the Pub/Sub emulator runs on it) but 'java' is not on PATH." >&2; \
	  echo "       Debian/Ubuntu: apt install openjdk-17-jre-headless" >&2; exit 1; }
	@java -version 2>&1 | awk -F'"' '/version/ { split($$2, v, "."); if ((v[1] == 1 ? v[2] : v[1]) + 0 < 17) exit 1 }' || { \
	  echo "error: Java 17+ is required; found: $$(java -version 2>&1 | head -1)" >&2; exit 1; }

# Installs the lock (exact versions, every file's hash checked), never the ranges: see docs/terraform.md "Dependencies".
$(STAMP): requirements.txt requirements-emulator.txt requirements-dev.txt pyproject.toml requirements-dev.lock | prereqs
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "error: could not create $(VENV) (is the venv module installed? Debian: apt install python3-venv)" >&2; exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .  # the dicomflow and healthcare-emulator commands
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

e2e: $(STAMP)
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

test: prereqs lint $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)
	PYTHON=$(PYTHON) scripts/terraform_checks.sh

# Regenerate requirements.txt and requirements-dev.lock from the ranges (pip-tools from PyPI, in .lockvenv).
lock:
	@test -x .lockvenv/bin/pip-compile || { $(PYTHON) -m venv .lockvenv && .lockvenv/bin/python -m pip install --quiet "pip-tools>=7.4,<8"; }
	PIP_TOOLS_COMPILE=.lockvenv/bin/pip-compile scripts/lock_requirements.sh

terraform-checks:
	PYTHON=$(PYTHON) scripts/terraform_checks.sh

run: prereqs $(STAMP)
	$(PY) -m devstack demo

bench: prereqs $(STAMP)
	$(PY) -m bench.planner
	$(PY) -m bench.intake
	$(PY) -m bench.end_to_end
	$(PY) -m bench.backfill
	$(PY) -m bench.emulator_throughput
	$(PY) -m bench.follow_up

# mutation testing of the core against the unit tests (not part of `make test`: ~7 minutes on 2 cores), in a
# venv of its own: mutmut brings setproctitle, with which gunicorn renames the function processes
MUTVENV := .mutvenv
mutants: prereqs
	@test -x $(MUTVENV)/bin/python || $(PYTHON) -m venv $(MUTVENV)
	$(MUTVENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(MUTVENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(MUTVENV)/bin/python -m pip install --quiet --disable-pip-version-check "mutmut==3.8.1"
	rm -rf mutants
	$(MUTVENV)/bin/python -m mutmut run --max-children $$(nproc) > mutants.log 2>&1 || { tail -20 mutants.log; exit 1; }
	$(MUTVENV)/bin/python scripts/mutation_score.py
	@echo "survivors: $(MUTVENV)/bin/python -m mutmut results; one of them: $(MUTVENV)/bin/python -m mutmut show NAME"

clean:
	rm -rf mutants mutants.log $(MUTVENV) $(VENV) .tfvenv .hclvenv .tfschema .lockvenv .pytest_cache .mypy_cache .ruff_cache
