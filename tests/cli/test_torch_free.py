"""The run-only commands work in a process where torch and transformers cannot be imported
(the base install on a device), and ``import shadow_edge.cli`` never pulls them in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shadow_edge.cli import app

REPO = Path(__file__).resolve().parents[2]
# one xdist worker builds the session fixtures (tiny bases, checkpoints, exports) once
pytestmark = pytest.mark.xdist_group("cli-models")
BLOCKED = ("torch", "transformers", "safetensors", "onnx", "onnxscript", "accelerate",
           "exporters", "huggingface_hub")

# A meta-path finder that refuses the blocked top-level packages, then runs the CLI.
# It raises ModuleNotFoundError, as a missing package does.
LAUNCHER = """
import os, sys
BLOCKED = os.environ["BLOCKED_MODULES"].split(",")
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
from shadow_edge.cli import main
main(sys.argv[1:])
"""


def run_blocked(*args: str, blocked=BLOCKED) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "BLOCKED_MODULES": ",".join(blocked)}
    env.pop("SHADOW_EDGE_DEBUG", None)
    return subprocess.run([sys.executable, "-c", LAUNCHER, *args], check=False, cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def test_importing_the_cli_imports_no_heavy_module():
    code = ("import sys, shadow_edge.cli; heavy = [m for m in sys.modules if m.split('.')[0] "
            f"in {BLOCKED!r} or m.split('.')[0] in ('onnxruntime', 'numpy')]; print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_generate_classify_info_run_without_torch(tiny_exports):
    runner = CliRunner()
    lm, cls = str(tiny_exports["lm"]), str(tiny_exports["cls"])

    gen = run_blocked("generate", lm, "turn on", "--max-new-tokens", "6")
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout == runner.invoke(app, ["generate", lm, "turn on",
                                             "--max-new-tokens", "6"]).stdout

    labels = run_blocked("classify", cls, "turn on the lamp", "off", "--json")
    assert labels.returncode == 0, labels.stderr
    expected = runner.invoke(app, ["classify", cls, "turn on the lamp", "off", "--json"])
    assert json.loads(labels.stdout) == json.loads(expected.stdout)

    info = run_blocked("info", lm, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["manifest"]["task"] == "text-generation"


def test_verify_reruns_the_stored_gate_without_torch(tiny_exports):
    """Why: a device without torch must be able to check an export where it will run."""
    for kind in ("lm", "cls"):
        proc = run_blocked("verify", str(tiny_exports[kind]), "--json")
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["passed"] is True and report["platform"]["machine"]


def test_export_without_torch_names_the_extra_to_install(tiny_checkpoints, tmp_path):
    """Why: on the base install, exporters is present but torch is not."""
    blocked = tuple(m for m in BLOCKED if m != "exporters")
    proc = run_blocked("export", str(tiny_checkpoints["lm"]), "-o", str(tmp_path / "o"),
                       blocked=blocked)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "pip install 'shadow-edge[export]'" in proc.stderr
    assert "Traceback" not in proc.stderr
