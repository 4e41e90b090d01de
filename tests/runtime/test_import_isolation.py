"""`runtime` works where torch, transformers, shadow_edge and exporters cannot be imported,
and without the optional llguidance (imported only when a grammar is used)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import runtime

# one xdist worker builds the session-scoped exports once (`make test` runs -n 2 --dist loadgroup)
pytestmark = pytest.mark.xdist_group("runtime")

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import importlib, importlib.abc, json, pkgutil, sys

BLOCKED = ("torch", "transformers", "shadow_edge", "exporters") + tuple(sys.argv[3:])

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
try:
    grammar = runtime.Grammar(regex="[a-z]{2,4}")
    constrained = gen.generate("héllo", max_new_tokens=8, grammar=grammar)
    grammar_out = {"text": constrained.text, "reason": constrained.finish_reason,
                   "streamed": "".join(gen.stream("héllo", max_new_tokens=8, grammar=grammar))}
except runtime.MissingDependencyError as error:
    grammar_out = {"error": str(error), "is_import_error": isinstance(error, ImportError)}
print(json.dumps({
    "modules": modules,
    "ids": result.token_ids,
    "streamed": "".join(gen.stream("héllo", max_new_tokens=8, eos_token_id=[])) == result.text,
    "label": cls.classify("turn on the light").label,
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
    "grammar": grammar_out,
}))
'''


def _run_isolated(exports, *extra_blocked: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(exports["fp32"]), str(exports["cls"]), *extra_blocked],
        capture_output=True, text=True, env=env, cwd=str(REPO), timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_runtime_imports_and_runs_with_heavy_packages_blocked(exports, generator):
    out = _run_isolated(exports)
    expected_modules = sorted(
        f"runtime.{p.stem}" for p in (REPO / "runtime").glob("*.py") if p.stem != "__init__"
    )
    assert out["modules"] == expected_modules
    assert out["loaded"] == []
    assert out["ids"] == generator.generate("héllo", max_new_tokens=8, eos_token_id=[]).token_ids
    assert out["streamed"] is True
    assert out["label"].startswith("label_")
    if importlib.util.find_spec("llguidance") is None:  # the base install: no `grammar` extra
        assert out["grammar"]["is_import_error"] is True
        return
    # llguidance itself pulls in none of the blocked packages
    expected = generator.generate("héllo", max_new_tokens=8,
                                  grammar=runtime.Grammar(regex="[a-z]{2,4}"))
    assert out["grammar"] == {"text": expected.text, "reason": "grammar",
                              "streamed": expected.text}


def test_runtime_works_without_llguidance_and_grammar_says_how_to_install(exports, generator):
    out = _run_isolated(exports, "llguidance")
    assert out["loaded"] == []
    assert out["ids"] == generator.generate("héllo", max_new_tokens=8, eos_token_id=[]).token_ids
    assert out["label"].startswith("label_")
    error = out["grammar"]["error"]
    assert "\n" not in error and "llguidance" in error
    assert "pip install 'shadow-edge[grammar]'" in error
    assert out["grammar"]["is_import_error"] is True


ALLOWED = {"onnxruntime", "numpy", "tokenizers", "jinja2"}
OPTIONAL = {"llguidance"}  # imported only inside functions, when a grammar is used


def test_runtime_source_imports_only_its_four_dependencies_and_the_stdlib():
    # why: the subprocess test sees only what one run imports; this reads every import line
    found, lazy = {}, {}
    for path in sorted((REPO / "runtime").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_functions = {
            id(inner) for fn in ast.walk(tree)
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) for inner in ast.walk(fn)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                target = lazy if id(node) in in_functions and root in OPTIONAL else found
                target.setdefault(root, set()).add(path.name)
    outside = {m: f for m, f in found.items() if m not in ALLOWED | sys.stdlib_module_names}
    assert outside == {}
    assert {"onnxruntime", "numpy", "tokenizers", "jinja2"} <= set(found)
    assert lazy == {"llguidance": {"constraint.py"}}
