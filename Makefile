# dicomflow — two commands for a new user:  `make run` (local stack demo)  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-emulator.txt requirements-dev.txt pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: test run lint unit integration e2e bench prereqs clean terraform-checks mutants

prereqs:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || { \
	  echo "error: Python 3.11+ is required; '$(PYTHON)' is $$($(PYTHON) --version 2>/dev/null || echo 'not found')." >&2; \
	  echo "       Install Python 3.11+ or run: make PYTHON=/path/to/python3.11 <target>" >&2; exit 1; }
	@command -v java >/dev/null 2>&1 || { \
	  echo "error: Java 17+ is required (the Pub/Sub emulator runs on it) but 'java' is not on PATH." >&2; \
	  echo "       Debian/Ubuntu: apt install openjdk-17-jre-headless" >&2; exit 1; }
	@java -version 2>&1 | awk -F'"' '/version/ { split($$2, v, "."); if ((v[1] == 1 ? v[2] : v[1]) + 0 < 17) exit 1 }' || { \
	  echo "error: Java 17+ is required; found: $$(java -version 2>&1 | head -1)" >&2; exit 1; }

$(STAMP): requirements.txt requirements-emulator.txt requirements-dev.txt pyproject.toml | prereqs
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "error: could not create $(VENV) (is the venv module installed? Debian: apt install python3-venv)" >&2; exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
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
	$(PY) -m pytest $(PYTEST_ARGS)
	PYTHON=$(PYTHON) scripts/terraform_checks.sh

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

# mutation testing of the core against the unit tests (not part of `make test`: ~6 minutes on 2 cores)
mutants: prereqs $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check "mutmut==3.8.1"
	rm -rf mutants
	$(PY) -m mutmut run --max-children $$(nproc) > mutants.log 2>&1 || { tail -20 mutants.log; exit 1; }
	$(PY) scripts/mutation_score.py
	@echo "survivors: $(PY) -m mutmut results; one of them: $(PY) -m mutmut show NAME"

clean:
	rm -rf mutants mutants.log $(VENV) .tfvenv .hclvenv .tfschema .pytest_cache .mypy_cache .ruff_cache
