"""The package root: lazy public names (PEP 562), so `import shadow_edge` stays torch-free."""

from __future__ import annotations

import subprocess
import sys

import shadow_edge


def test_all_lists_every_lazy_name_and_each_resolves():
    assert shadow_edge.__all__ == sorted(shadow_edge._LAZY)
    for name in shadow_edge.__all__:
        assert getattr(shadow_edge, name).__name__ == name


def test_import_does_not_load_torch():
    code = "import sys, shadow_edge; shadow_edge.ShadowConfig; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
