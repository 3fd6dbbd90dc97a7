# om2p-lite: build the book, run the tests.  `make help` lists the targets.
#   make book   -> _build/html/index.html  (OM2P_BUDGET=book unless set)
#   make test   -> lint, no stored outputs, unit tests, every chapter at smoke budget,
#                  smoke build of the book and a headless-browser check of its pages

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
EXTRAS       ?= book,test,envs,scale
CHROMIUM     ?= /usr/bin/chromium
OM2P_BUDGET  ?= book
NOTEBOOKS    := $(sort $(wildcard book/*.ipynb))
NBVAL_WORKERS ?= 2
JB_FLAGS     := --builder html --all -W --keep-going

# Builds and tests are static: chapters skip their live ipywidgets (om2p_lite.book.widgets).
export OM2P_STATIC := 1

# Tools, kernels and scripts all come from the project's virtualenv.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help setup book test lint unit nbval browser-check bench bench-gpu results table hooks clean

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

book: setup  ## build the book at OM2P_BUDGET (default book) into _build/html
	OM2P_BUDGET=$(OM2P_BUDGET) $(BIN)/jupyter-book build . $(JB_FLAGS)
	@echo "book: open _build/html/index.html"

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

lint: setup  ## ruff and the no-outputs check
	$(BIN)/ruff check .
	$(PY) scripts/check_no_outputs.py

unit: setup  ## pytest over tests/
	$(BIN)/pytest tests -n auto

nbval: setup  ## run every book/*.ipynb at OM2P_BUDGET=smoke, one kernel per notebook
	@if [ -z "$(NOTEBOOKS)" ]; then echo "nbval: no notebooks under book/"; exit 1; fi
	@printf 'nbval: %s\n' $(NOTEBOOKS)
	OM2P_BUDGET=smoke $(BIN)/pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 \
	  -n $(NBVAL_WORKERS) --dist loadfile -p no:cacheprovider -v $(NOTEBOOKS)

browser-check: setup  ## build the book at smoke budget into _build/smoke, open it in Chromium
	OM2P_BUDGET=smoke $(BIN)/jupyter-book build . $(JB_FLAGS) --path-output _build/smoke
	$(PY) scripts/browser_check.py --html _build/smoke/_build/html --screenshots _build \
	  --chromium $(CHROMIUM)

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

clean:  ## remove build outputs and caches (keeps .venv)
	rm -rf _build .pytest_cache .ruff_cache .jupyter_cache *.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -print -exec rm -rf {} +
