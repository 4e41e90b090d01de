"""``tests/runtime`` must collect where only the runtime is installed (``pip install
shadow-edge``, as on a Raspberry Pi and in ``make test-arm``'s aarch64 rootfs): no module
of it may import an export or training dependency at import time (issue 15)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Dependencies of the `export` / `train` extras, absent from a runtime-only install
# (huggingface_hub is not listed: tokenizers depends on it).
NOT_IN_A_RUNTIME_INSTALL = ("torch", "transformers", "onnx", "onnxscript", "safetensors",
                            "peft", "accelerate", "datasets", "matplotlib")

BLOCKER = f"""
import importlib.abc, sys
BLOCKED = {NOT_IN_A_RUNTIME_INSTALL!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Block())
import pytest
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                      "tests/runtime"]))
"""


def test_runtime_tests_collect_without_export_or_training_dependencies():
    proc = subprocess.run([sys.executable, "-c", BLOCKER], cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert len(collected) > 300, proc.stdout[-2000:]
