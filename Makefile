# HLE-ROS. Quickstart: `make demo`, `make test` (both set up .venv first; see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# What `make test` runs (not taken from the environment); narrow it on the command line: make test TESTS=test/core/test_cli.py
TESTS := test

# The test box has 2 cores: one BLAS/OpenMP thread pool of 2; override from the environment (OMP_NUM_THREADS=1 make test).
export OMP_NUM_THREADS ?= 2
export MKL_NUM_THREADS ?= $(OMP_NUM_THREADS)

.PHONY: help setup test test-fast lint demo clean

help:
	@echo "make setup  create/update $(VENV): requirements, the hle_ros messages (CMake), pip install -e ."
	@echo "make demo   setup, then the end-to-end demo (python -m hle_ros.demo; folder demo_out/)"
	@echo "make test   setup, then the whole test suite (pytest over test/)"
	@echo "make test-fast  setup, then the tests not marked slow (pytest -m 'not slow'; make test still runs all)"
	@echo "make lint   requirements-dev.txt into $(VENV), then ruff over the repository and mypy over hle_core"
	@echo "make clean  remove build/ (the message build tree); keeps $(VENV)"

setup:
	@HLE_VENV="$(abspath $(VENV))" bash scripts/setup_env.sh

# The oracle of test/core/test_pq.py: panopticapi in a venv of its own (it pins numpy<2); built once.
PANOPTICAPI := .venv-panopticapi/bin/python
$(PANOPTICAPI): scripts/panopticapi_venv.sh
	@echo "[setup] panopticapi tool venv (the PQ oracle of the tests) ..."
	@bash scripts/panopticapi_venv.sh
	@touch $(PANOPTICAPI)

# pytest exit code 5 means no test was collected: that is a failure too.
test: setup $(PANOPTICAPI)
	@echo "[test] pytest $(TESTS) (OMP_NUM_THREADS=$(OMP_NUM_THREADS))"
	@$(PY) -m pytest -q -rs -p no:cacheprovider $(TESTS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "[test] ERROR: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: setup $(PANOPTICAPI)
	@echo "[test-fast] pytest -m 'not slow' $(TESTS) (OMP_NUM_THREADS=$(OMP_NUM_THREADS))"
	@$(PY) -m pytest -q -rs -p no:cacheprovider -m "not slow" $(TESTS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "[test-fast] ERROR: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The lint tools are not part of `make setup` (make test / CI do not need them): installed here, pinned.
LINT_STAMP := $(VENV)/.hle_lint.stamp
$(LINT_STAMP): requirements-dev.txt | setup
	@echo "[lint] pip install -r requirements-dev.txt"
	@$(PY) -m pip install --progress-bar off -q -r requirements-dev.txt
	@touch $(LINT_STAMP)

# Configuration: [tool.ruff] and [tool.mypy] in pyproject.toml. Both run; either one's findings fail the target.
lint: setup $(LINT_STAMP)
	@echo "[lint] ruff check ."; $(VENV)/bin/ruff check .; ruff_rc=$$?; \
	echo "[lint] mypy (hle_core)"; $(VENV)/bin/mypy; mypy_rc=$$?; \
	[ $$ruff_rc -eq 0 ] && [ $$mypy_rc -eq 0 ]

demo: setup
	@$(PY) -m hle_ros.demo $(DEMO_ARGS)

clean:
	rm -rf build
