# om2p-lite: build the book, run the tests.  `make help` lists the targets.
#   make book   -> _build/html/index.html  (OM2P_BUDGET=book unless set); chapters whose
#                  code did not change come from the execution cache of that budget
#   make test   -> lint, no stored outputs, unit tests (with the Colab and JupyterLab
#                  launch tests), every chapter at smoke budget, smoke build of the book
#                  and a headless-browser check of its pages

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV         ?= .venv
BIN          := $(VENV)/bin
PY           := $(BIN)/python
STAMP        := $(VENV)/.setup-done
# Installed before the project so pip finds torch satisfied (this machine: a local CPU
# wheel). Set TORCH_SPEC= (empty) to keep a torch you installed yourself, e.g. a CUDA build.
TORCH_SPEC   ?= torch==2.13.0
EXTRAS       ?= book,test,envs,scale,download
CHROMIUM     ?= /usr/bin/chromium
OM2P_BUDGET  ?= book
NOTEBOOKS    := $(sort $(wildcard book/*.ipynb))
NBVAL_WORKERS ?= 2
# --all re-reads every page, so a chapter that failed before is executed again (the cache
# serves the ones that passed); -W --keep-going turns any warning, a failed cell among
# them, into a failed build after every page was tried.
JB_FLAGS     := --builder html --all -W --keep-going
BUDGETS      := smoke book full
ifeq ($(filter $(OM2P_BUDGET),$(BUDGETS)),)
$(error OM2P_BUDGET=$(OM2P_BUDGET): not a budget. Fix: one of $(BUDGETS))
endif
# REEXECUTE=1 empties the budget's execution cache first (e.g. after changing the library:
# the cache is keyed on the notebooks' code only).
REEXECUTE    ?=
GPU_RECORD   ?= data/results/gpu/smoke-$(shell date +%Y%m%d-%H%M%S).json
# Before the chapters run, make what they would otherwise make in a cell: chapter 04's
# datasets missing from data/cache/, stored toy results that are absent or out of date.
BOOK_DATA    ?= $(PY) -m om2p_lite.book.stored --missing --budget $(OM2P_BUDGET)

# Builds and tests are static: chapters skip their live ipywidgets (om2p_lite.book.widgets);
# tests/test_jupyterlab_widgets.py unsets it for the live sliders.
export OM2P_STATIC := 1

# Tools, kernels and scripts all come from the project's virtualenv.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help setup book book-data test test-gpu lint unit nbval browser-check sync bench \
        bench-gpu results table hooks clean

# $(call jb_build,BUDGET): build the book at BUDGET into _build/BUDGET (its execution cache
# in _build/BUDGET/_build/.jupyter_cache). On failure the half-built site is moved to
# _build/BUDGET/_build/html-failed, so no complete-looking site is left, and make fails.
define jb_build
rm -rf _build/$(1)/_build/html-failed
$(if $(REEXECUTE),rm -rf _build/$(1)/_build/.jupyter_cache)
OM2P_BUDGET=$(1) $(BIN)/jupyter-book build . $(JB_FLAGS) --path-output _build/$(1) || { \
  if [ -d _build/$(1)/_build/html ]; then \
    mv _build/$(1)/_build/html _build/$(1)/_build/html-failed; fi; \
  echo "book: FAILED at OM2P_BUDGET=$(1) (errors above). No site was written; the" \
       "unfinished pages are in _build/$(1)/_build/html-failed"; exit 1; }
endef

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

setup: $(STAMP)  ## create .venv and install the project (fast when already done)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@if [ -n "$(TORCH_SPEC)" ]; then $(PY) -m pip install --quiet "$(TORCH_SPEC)"; fi
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "note: no browser at $(CHROMIUM); install Debian's chromium for the browser check"; \
	  fi; \
	fi
	@touch $@

book: setup  ## build the book at OM2P_BUDGET (default book) into _build/html (cached)
	@rm -rf _build/html
	$(BOOK_DATA)
	$(call jb_build,$(OM2P_BUDGET))
	ln -sfn $(OM2P_BUDGET)/_build/html _build/html
	@echo "book: open _build/html/index.html (OM2P_BUDGET=$(OM2P_BUDGET))"

# Progress bars (tqdm) are off in test logs and in the static book's pages (a frozen bar
# helps no reader); `make test TQDM_DISABLE=0` shows them. `make results`/`bench` keep them.
test unit nbval browser-check test-gpu book: export TQDM_DISABLE ?= 1

# Two pytest workers share the 2 CI cores: one torch thread each. Two threads per worker
# oversubscribe the cores, and waiting torch threads make small models 10-40x slower.
unit nbval: export OMP_NUM_THREADS ?= 1

test: setup  ## lint, output check, unit tests, notebooks (smoke), browser check
	@echo "== 1/5 ruff"
	$(BIN)/ruff check .
	@echo "== 2/5 notebooks carry no outputs"
	$(PY) scripts/check_no_outputs.py
	@echo "== 3/5 unit tests"
	$(MAKE) --no-print-directory unit
	@echo "== 4/5 notebooks at OM2P_BUDGET=smoke (nbval)"
	$(MAKE) --no-print-directory nbval
	@echo "== 5/5 smoke build of the book and browser check"
	$(MAKE) --no-print-directory browser-check

lint: setup  ## ruff, the no-outputs check, setup cells in step with pyproject
	$(BIN)/ruff check .
	$(PY) scripts/check_no_outputs.py
	$(PY) scripts/sync_setup.py --check

sync:  ## write the repository URL from pyproject.toml into _config.yml and the setup cells
	$(PY) scripts/sync_setup.py

unit: setup  ## pytest over tests/ (with the Colab and JupyterLab launch tests)
	$(BIN)/pytest tests -n auto

nbval: setup  ## run every book/*.ipynb at OM2P_BUDGET=smoke, one kernel per notebook
	@if [ -z "$(NOTEBOOKS)" ]; then echo "nbval: no notebooks under book/"; exit 1; fi
	@printf 'nbval: %s\n' $(NOTEBOOKS)
	OM2P_BUDGET=smoke $(BIN)/pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 \
	  -n $(NBVAL_WORKERS) --dist loadfile -p no:cacheprovider -v $(NOTEBOOKS)

browser-check: setup  ## build the book at smoke budget into _build/smoke, open it in Chromium
	$(call jb_build,smoke)
	$(PY) scripts/browser_check.py --html _build/smoke/_build/html --screenshots _build \
	  --chromium $(CHROMIUM)

test-gpu: setup  ## on CUDA: unit tests and every chapter at smoke; record in data/results/gpu
	@$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else \
	  'test-gpu: torch sees no CUDA device. Fix: run it on a GPU machine with a CUDA build' \
	  ' of torch (make setup TORCH_SPEC= keeps the one you installed)')"
	@set +e; \
	OM2P_DEVICE=cuda OM2P_BUDGET=smoke $(BIN)/pytest tests -q -p no:cacheprovider \
	  --ignore=tests/test_colab_launch.py --ignore=tests/test_jupyterlab_widgets.py; \
	unit=$$?; \
	OM2P_DEVICE=cuda OM2P_BUDGET=smoke $(PY) scripts/run_chapters.py --record $(GPU_RECORD) \
	  --note unit_tests_exit_code=$$unit; \
	chapters=$$?; \
	echo "test-gpu: unit tests exit $$unit, chapters exit $$chapters; record $(GPU_RECORD)"; \
	test $$unit = 0 -a $$chapters = 0

book-data: setup  ## remake the stored toy results chapters read at `book` (data/book/)
	$(PY) -m om2p_lite.book.stored

bench: setup  ## CPU benchmarks (< 10 min): ratio tables, JSON in data/results/bench
	$(PY) bench/run_all.py

bench-gpu: setup  ## the same benchmarks on CUDA, at the GPU budget
	$(PY) bench/run_all.py --budget gpu --device cuda

results: setup  ## run (or resume) the main results grid into data/results/main
	$(PY) -m om2p_lite grid --experiment data/results/main.toml

table: setup  ## print the main results table (normalised scores) from data/results/main
	$(PY) -m om2p_lite table --results data/results/main --metric normalised

hooks: setup  ## strip notebook outputs on every commit (git filter from .gitattributes)
	$(BIN)/nbstripout --install

clean:  ## remove build outputs and caches, the book's execution caches too (keeps .venv)
	rm -rf _build .pytest_cache .ruff_cache .jupyter_cache *.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -print -exec rm -rf {} +
