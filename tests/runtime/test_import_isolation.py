"""`runtime` works where torch, transformers, shadow_edge and exporters cannot be imported."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# one xdist worker builds the session-scoped exports once (`make test` runs -n 2 --dist loadgroup)
pytestmark = pytest.mark.xdist_group("runtime")

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import importlib, importlib.abc, json, pkgutil, sys

BLOCKED = ("torch", "transformers", "shadow_edge", "exporters")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked import of {name}")
        return None

sys.meta_path.insert(0, Block())
import runtime
modules = sorted(m.name for m in pkgutil.iter_modules(runtime.__path__, "runtime."))
for name in modules:
    importlib.import_module(name)
gen = runtime.load(sys.argv[1], threads=1)
cls = runtime.load(sys.argv[2], threads=1)
result = gen.generate("héllo", max_new_tokens=8, eos_token_id=[])
print(json.dumps({
    "modules": modules,
    "ids": result.token_ids,
    "streamed": "".join(gen.stream("héllo", max_new_tokens=8, eos_token_id=[])) == result.text,
    "label": cls.classify("turn on the light").label,
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
}))
'''


def test_runtime_imports_and_runs_with_heavy_packages_blocked(exports, generator):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(exports["fp32"]), str(exports["cls"])],
        capture_output=True, text=True, env=env, cwd=str(REPO), timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    expected_modules = sorted(
        f"runtime.{p.stem}" for p in (REPO / "runtime").glob("*.py") if p.stem != "__init__"
    )
    assert out["modules"] == expected_modules
    assert out["loaded"] == []
    assert out["ids"] == generator.generate("héllo", max_new_tokens=8, eos_token_id=[]).token_ids
    assert out["streamed"] is True
    assert out["label"].startswith("label_")


ALLOWED = {"onnxruntime", "numpy", "tokenizers", "jinja2"}


def test_runtime_source_imports_only_its_four_dependencies_and_the_stdlib():
    # why: the subprocess test sees only what one run imports; this reads every import line
    found = {}
    for path in sorted((REPO / "runtime").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    outside = {m: f for m, f in found.items() if m not in ALLOWED | sys.stdlib_module_names}
    assert outside == {}
    assert {"onnxruntime", "numpy", "tokenizers", "jinja2"} <= set(found)
