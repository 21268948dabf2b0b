# Two commands do everything on a fresh machine with Python 3.11+ and make:
#   make dev   - the whole system on embedded defaults (broker + PostgreSQL + consumer + bridge)
#   make test  - install everything into .venv/ and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install dev test lint fmt schemas bench soak clean lock

# constraints.txt pins every package to the versions the suite passed with (`make lock` renews it).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,embedded,otel]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/ucs-tasks dev

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy consumer producer_tools schemas observability
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Benchmarks (bench/README.md): the `bench` extra on top of the dev install.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,embedded,otel,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run_all.py

soak: $(BENCH_STAMP)
	$(BIN)/python bench/soak.py

schemas: $(STAMP)
	$(BIN)/ucs-tasks schemas export

# Renew constraints.txt from a fresh resolution of every extra (then run `make test`).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet '.[dev,embedded,otel,bench]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^ucs-tasks' > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .devstack .pytest_cache .mypy_cache .ruff_cache
