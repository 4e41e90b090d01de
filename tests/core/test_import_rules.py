"""Import direction of the layers, read from the source (as tests/runtime/test_import_isolation.py
does for the runtime).

The rules (docs/DESIGN.md, "Layers"):

- the core is ``shadow_edge`` without ``shadow_edge/cli``; it never imports ``exporters``,
  ``runtime`` or ``shadow_edge.cli``. One exception, by name only: ``shadow_edge/__init__.py``
  re-exports the exporters' ``ExportError`` and ``ParityError`` lazily (resolved on attribute
  access, never by ``import shadow_edge``);
- ``shadow_edge/cli`` is the CLI: it may import everything;
- ``exporters`` never imports ``shadow_edge.cli``;
- the core's modules import each other in one direction: the graph of their module-level
  imports has no cycle, and no core module imports one of ours inside a function (the way a
  cycle gets hidden) unless :data:`FUNCTION_LEVEL_ALLOWED` names it with its reason.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "shadow_edge"

#: (file, imported module) -> why the import sits inside a function. Empty: the core has none.
FUNCTION_LEVEL_ALLOWED: dict[tuple[str, str], str] = {}

#: Lazy public names of ``shadow_edge/__init__.py`` that live outside the core.
REEXPORTED = {"ExportError": "exporters.errors", "ParityError": "exporters.errors"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (imports for annotations, never run)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.update(id(inner) for inner in ast.walk(node))
    return found


def _function_nodes(tree: ast.Module) -> set[int]:
    return {id(inner) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for inner in ast.walk(fn)}


def imports_of(path: Path) -> list[tuple[str, str]]:
    """``(absolute module, where)`` for each import in ``path``; ``where`` is ``"module"``,
    ``"function"`` or ``"type-checking"``. ``from . import x`` yields the submodule ``pkg.x``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_functions, typing_only = _function_nodes(tree), _type_checking_nodes(tree)
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            # `from pkg import name` may import the submodule pkg.name
            names = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names
                                if (REPO / Path(*f"{prefix}.{alias.name}".split("."))).with_suffix(".py").exists()]
        else:
            continue
        where = ("type-checking" if id(node) in typing_only
                 else "function" if id(node) in in_functions else "module")
        found.extend((name, where) for name in names)
    return found


def core_files() -> list[Path]:
    return sorted(p for p in CORE.glob("*.py"))


def test_the_core_never_imports_exporters_runtime_or_the_cli():
    outside = {}
    for path in core_files():
        for name, where in imports_of(path):
            if name.split(".")[0] in ("exporters", "runtime") or name.startswith("shadow_edge.cli"):
                outside.setdefault(path.name, set()).add((name, where))
    # the lazy re-export's annotation import is the only one, and it never runs
    assert outside == {"__init__.py": {("exporters.errors", "type-checking")}}


def test_the_core_lazy_table_points_outside_only_for_the_exporter_errors():
    tree = ast.parse((CORE / "__init__.py").read_text(encoding="utf-8"))
    table = next(ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "_LAZY")
    assert {name: module for name, module in table.items() if "." in module} == REEXPORTED


def test_importing_every_core_module_loads_no_exporters_runtime_or_cli_module():
    # why: the source test above sees import lines; this sees what an import really pulls in
    modules = [f"shadow_edge.{p.stem}" for p in core_files() if p.stem != "__init__"]
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('exporters', 'runtime')"
            " or m.startswith('shadow_edge.cli'))))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=str(REPO), timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_exporters_never_import_the_cli():
    found = {(path.name, name) for path in sorted((REPO / "exporters").glob("*.py"))
             for name, _ in imports_of(path) if name.startswith("shadow_edge.cli")}
    assert found == set()


def core_graph() -> dict[str, set[str]]:
    """Core module -> the core modules it imports at module level (run at import time)."""
    graph = {}
    for path in core_files():
        own = _module_name(path)
        graph[own] = {name for name, where in imports_of(path)
                      if where == "module" and name.startswith("shadow_edge.")
                      and not name.startswith("shadow_edge.cli") and name != own}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_chain():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_core_has_no_import_cycle():
    graph = core_graph()
    # the graph is the real one: the layers of docs/DESIGN.md are in it
    assert {"shadow_edge.checkpoint", "shadow_edge.persistence"} <= graph["shadow_edge.model"]
    assert "shadow_edge.model" in graph["shadow_edge.tasks"]
    assert "shadow_edge.tasks" in graph["shadow_edge.loading"]
    assert find_cycle(graph) is None


def test_file_io_sits_below_the_models_and_loading_above_them():
    graph = core_graph()

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    models = {"shadow_edge.model", "shadow_edge.tasks", "shadow_edge.loading"}
    assert reachable("shadow_edge.checkpoint") & models == set()
    assert reachable("shadow_edge.persistence") & models == set()
    assert "shadow_edge.loading" not in reachable("shadow_edge.tasks")


def test_no_function_level_import_of_our_own_modules_in_the_core():
    found = {}
    for path in core_files():
        for name, where in imports_of(path):
            if where == "function" and name.split(".")[0] in ("shadow_edge", "exporters", "runtime"):
                found[(path.name, name)] = FUNCTION_LEVEL_ALLOWED.get((path.name, name), "not allowed")
    assert found == FUNCTION_LEVEL_ALLOWED
