# Blueno: every target creates .venv when it is missing and installs into it.
PYTHON ?= python3
# Which TensorFlow: cpu (the default), or gpu (CUDA wheels, for a GPU box) in a .venv-gpu of its own.
TF     ?= cpu
VENV   := .venv$(if $(filter gpu,$(strip $(TF))),-gpu)
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.blueno-installed
export QT_QPA_PLATFORM ?= offscreen
SLOTS  ?= 2

.PHONY: run demo test lint test-reliability bench bench-peers screenshots system-gui-libs system-test-tools

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing Blueno and its dependencies into $(VENV) (about a minute the first time; log: $(VENV)/install.log)"
	@{ $(PY) -m pip install --disable-pip-version-check --upgrade pip && \
	   $(PY) -m pip install --disable-pip-version-check -e '.[test,ray,$(strip $(TF))]'; } > $(VENV)/install.log 2>&1 \
	   || { tail -n 40 $(VENV)/install.log; echo "installing failed: see $(VENV)/install.log"; exit 1; }
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

# Debian's Chromium, for the test that opens an HTML report in a real browser: installed when
# missing and we may (root, apt); otherwise that one test is skipped, and says why.
system-test-tools:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the report test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	      || echo "could not install chromium: the report's browser test will be skipped"; \
	  else echo "note: without chromium (apt-get install chromium) the report's browser test is skipped"; fi; }

test: $(STAMP) system-test-tools system-gui-libs lint
	@$(PY) -m pytest

test-reliability: $(STAMP)
	@$(PY) -m pytest -m slow tests/reliability

# MLflow and huey live in their own venv: they must not change the packages TensorFlow needs.
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.blueno-bench-installed
$(BENCH_STAMP): pyproject.toml
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	@echo "installing Blueno with MLflow and huey into $(BENCH_VENV) (log: $(BENCH_VENV)/install.log)"
	@$(BENCH_VENV)/bin/python -m pip install --disable-pip-version-check -e '.[bench]' > $(BENCH_VENV)/install.log 2>&1 \
	   || { tail -n 40 $(BENCH_VENV)/install.log; exit 1; }
	@touch $(BENCH_STAMP)

# Blueno head to head with MLflow and huey: prints the ratio table (about 4 minutes).
bench-peers: $(BENCH_STAMP)
	@$(BENCH_VENV)/bin/python benchmarks/peers/run_all.py

bench: $(STAMP)
	@$(PY) benchmarks/scheduler_overhead.py
	@$(PY) benchmarks/makespan_keras.py
	@$(PY) benchmarks/metrics_path.py
	@$(PY) benchmarks/es_sync.py
	@$(PY) benchmarks/gcs_sync.py

# Debian packages a real window needs (Xvfb and Qt's xcb plugin libraries): installed when missing
# and we may (root, apt); otherwise the real-window test is skipped, and says why.
XCB_LIBS := xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
	libxcb-xkb1 libxkbcommon-x11-0 libxcb-shape0 libxcb-randr0 libegl1 libgl1 libfontconfig1 libdbus-1-3
system-gui-libs:
	@command -v xvfb-run >/dev/null && ldconfig -p | grep -q libxcb-cursor || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Xvfb and the xcb libraries for the real-window test and screenshots"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(XCB_LIBS)) >/dev/null 2>&1 \
	      || echo "could not install Xvfb: the real-window test will be skipped"; \
	  else echo "note: without Xvfb (sudo apt-get install $(XCB_LIBS)) the real-window test is skipped"; fi; }

# PNGs of every view of the demo workspace, rendered in a real (virtual) X window; a workspace
# without a finished run first trains the small screenshots grid.
SHOTS ?= screenshots
screenshots: $(STAMP) system-gui-libs
	@command -v xvfb-run >/dev/null || { echo "screenshots need Xvfb: sudo apt-get install $(XCB_LIBS)"; exit 1; }
	@$(PY) main.py data demo >/dev/null
	@$(PY) main.py runs ls --state succeeded --json | $(PY) -c "import json, sys; sys.exit(not json.load(sys.stdin))" \
	  || { echo "no finished run yet: training resources/examples/screenshots.toml (4 short trainings)"; \
	       $(PY) main.py --batch resources/examples/screenshots.toml --slots $(SLOTS); }
	@QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m gui.screenshots $(SHOTS)
