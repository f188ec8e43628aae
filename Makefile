# Blueno: every target creates .venv when it is missing and installs into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.blueno-installed
export QT_QPA_PLATFORM ?= offscreen
SLOTS  ?= 2

.PHONY: run demo test lint test-reliability bench bench-peers screenshots clean-demo

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing Blueno and its dependencies into $(VENV) (about a minute the first time)"
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# Open the desktop app on the workspace (the repository root unless BLUENO_HOME is set);
# the demo dataset and grid are set up on first use.
run: $(STAMP)
	@QT_QPA_PLATFORM= $(PY) main.py --demo-setup

# The same demo, headless: the digits dataset, then the demo grid on $(SLOTS) CPU slots.
demo: $(STAMP)
	@$(PY) main.py data demo
	@$(PY) main.py --batch resources/examples/demo.toml --slots $(SLOTS)

lint: $(STAMP)
	@$(VENV)/bin/ruff check blueno gui etl tests benchmarks main.py
	@$(VENV)/bin/lint-imports

test: $(STAMP) lint
	@$(PY) -m pytest

test-reliability: $(STAMP)
	@$(PY) -m pytest -m slow tests/reliability

bench: $(STAMP)
	@$(PY) benchmarks/scheduler_overhead.py
	@$(PY) benchmarks/metrics_path.py
