"""The committed runtime fixtures are complete, unedited, and what the builder makes today.

Why: the runtime tests read exports built once by ``python -m tests.runtime.fixtures.build``
(so they run without torch); without these checks an exporter change would leave them
testing yesterday's format.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import runtime
from runtime.parity import REFERENCE_FILE
from tests.runtime import fixtures
from tests.runtime.fixtures.build import RECIPE


def test_committed_files_match_their_index():
    index = fixtures.read_index(fixtures.COMMITTED)
    assert index["recipe"] == json.loads(json.dumps(RECIPE)), (
        f"build.RECIPE changed since the fixtures were built; run `{fixtures.REBUILD}`")
    assert fixtures.digests(fixtures.COMMITTED) == index["files"], (
        f"files under {fixtures.COMMITTED} differ from index.json; run `{fixtures.REBUILD}`")


# Measured on the build machine, so not reproducible bit for bit on another CPU.
MEASURED = ("value", "threshold")


def _comparable(root, name: str, digest: str):
    """What a rebuild must reproduce of one file: its digest, or for files that hold
    measurements, their content without them (compared with a tolerance for arrays).

    - ``model.ort``: onnxruntime's flatbuffer writer orders tables differently from run to
      run (same model, other bytes), so it is left out here (and from the manifests'
      ``files``); :func:`test_rebuilding_gives_the_committed_fixtures` compares what the
      ``.ort`` files compute instead.
    - manifests: the parity gate's measured values, the logit scale, the platform it ran on
      (CPU features), the stored reference's hash and tool versions vary with the CPU and
      toolchain; the rest (I/O, sizes, model hashes, verdicts) must match.
    - ``references.npz`` and the exports' ``parity_reference.npz``: torch's float logits
      (their rounding depends on the CPU's vector units: AVX2 vs AVX-512), compared to 1e-5
      relative; their integer arrays (probe ids) exactly.
    - the transformers recording: checked by the tests that use it (check mode).
    """
    if name.endswith(".ort") or name == fixtures.TRANSFORMERS_FILE:
        return None
    if digest is None:
        return "missing"
    if name.endswith("shadow_edge.json"):
        manifest = json.loads((root / name).read_text(encoding="utf-8"))
        manifest.pop("tool_versions", None)
        manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.endswith(".ort")}
        if manifest.get("parity"):
            manifest["parity"].pop("logit_scale", None)
            manifest["parity"].pop("platform", None)
            manifest["parity"].get("reference", {}).pop("sha256", None)
            for check in manifest["parity"]["checks"]:
                for key in MEASURED:
                    check.pop(key, None)
        return manifest
    if name == fixtures.REFERENCES_NPZ or name.endswith(REFERENCE_FILE):
        with np.load(root / name) as arrays:
            return {key: arrays[key] for key in arrays.files}
    return digest


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not np.issubdtype(a.dtype, np.floating):
        return np.array_equal(a, b)
    return np.allclose(a, b, rtol=1e-5, atol=1e-5 * (np.abs(a).max() if a.size else 0.0))


def _same(a, b) -> bool:
    if isinstance(a, dict) and a and all(isinstance(v, np.ndarray) for v in a.values()):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(_same_array(a[k], b[k]) for k in a))
    return a == b


def test_rebuilding_gives_the_committed_fixtures(tmp_path):
    pytest.importorskip("torch")
    from tests.runtime.fixtures.build import build

    committed = fixtures.read_index(fixtures.COMMITTED)
    fresh = tmp_path / "fixtures"
    index = build(fresh, record=False)
    names = sorted(committed["files"].keys() | index["files"].keys())
    differ = [name for name in names if not _same(
        _comparable(fixtures.COMMITTED, name, committed["files"].get(name)),
        _comparable(fresh, name, index["files"].get(name)))]
    assert not differ, (
        f"rebuilding the runtime fixtures changes {differ}: run `{fixtures.REBUILD}` and commit "
        f"(tool versions then: {committed['tool_versions']}, now: {index['tool_versions']})")
    ids = [fixtures.load_references(fresh)["prefill"]["input_ids"]]
    logits = []
    for root in (fixtures.COMMITTED, fresh):
        runner = runtime.load(root / "fp32", use_ort_format=True, threads=1).runner
        out, _ = runner.step(np.array(ids), np.ones((1, len(ids[0])), np.int64),
                             np.arange(len(ids[0]))[None], runner.empty_cache(1),
                             all_logits=True)
        logits.append(out)
    np.testing.assert_array_equal(*logits)
