"""Every documented ``python -m examples...`` command is a runnable entry point.

A module without its ``if __name__ == "__main__"`` block exits 0 and prints nothing, so the
command in its docstring silently does nothing (this happened to ``evaluate``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["examples.robot_intent.data", "examples.robot_intent.train",
           "examples.robot_intent.evaluate", "examples.robot_intent.demo",
           "examples.robot_intent.app", "examples.minilm_intent.train",
           "examples.minilm_intent.evaluate"]


@pytest.mark.parametrize("module", MODULES)
def test_module_prints_its_usage(module):
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout[:200]
