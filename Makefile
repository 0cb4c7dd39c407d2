# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.smoothcache-installed

.PHONY: install test lint demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: this machine has the CPU build of 2.13.0 on disk; an unpinned torch pulls CUDA.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench scripts

demo: $(STAMP)
	$(VENV)/bin/smoothcache demo

bench: $(STAMP)
	$(PY) -m bench.overhead

clean:
	rm -rf $(VENV) demo_output .pytest_cache
