"""Issue 17: the runtime feeds ``logits_to_keep`` = 1 to graphs that take it, and exports
from before it (no such input) still run (torch-free; making such a graph needs ``onnx``, an
export dependency, so that test skips in a runtime-only install such as ``make test-arm``'s)."""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from runtime.causal_lm import CausalLMRunner
from runtime.generation import positions_from_mask
from runtime.manifest import read_manifest
from runtime.session import create_session

IDS = np.array([[5, 9, 11, 40, 7], [3, 3, 8, 21, 6]], np.int64)


def _runner(path, folder) -> CausalLMRunner:
    return CausalLMRunner(create_session(path, threads=1), read_manifest(folder))


def _without_logits_to_keep(source, target) -> None:
    """The graph as exported before issue 17: ``logits_to_keep`` is a constant 0, not an
    input, so the logits cover every position."""
    onnx = pytest.importorskip("onnx")  # an export dependency, not the runtime's
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    kept = [i for i in graph.input if i.name != "logits_to_keep"]
    del graph.input[:]
    graph.input.extend(kept)
    kept = [t for t in graph.initializer if t.name != "logits_to_keep"]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.node.insert(0, helper.make_node(
        "Constant", [], ["logits_to_keep"], value=numpy_helper.from_array(np.array(0, np.int64))))
    onnx.save(model, str(target))


@pytest.mark.parametrize("precision", ["fp32", "int8", "int4"])
def test_exports_take_the_optional_input_and_the_runner_feeds_it(exports, precision):
    folder = exports[precision]
    runner = _runner(folder / "model.onnx", folder)
    assert runner.keeps_logits
    assert "logits_to_keep" not in {i.name for i in runner.session.get_inputs()}
    assert read_manifest(folder).inputs[-1].name == "logits_to_keep"
    mask = np.ones_like(IDS)
    feeds = {"input_ids": IDS, "attention_mask": mask, "position_ids": positions_from_mask(mask),
             **dict(zip(runner.past_names, runner.empty_cache(2).values))}
    every = runner.session.run(["logits"], feeds)[0]
    for keep, rows in ((1, 1), (2, 2), (0, 5), (9, 5)):
        kept = runner.session.run(["logits"], {**feeds, "logits_to_keep": np.array(keep)})[0]
        assert kept.shape == (2, rows, runner.vocab_size)
        np.testing.assert_allclose(kept, every[:, 5 - rows:], rtol=0, atol=1e-5)
    last, _ = runner.step(IDS, mask, positions_from_mask(mask), runner.empty_cache(2))
    all_rows, _ = runner.step(IDS, mask, positions_from_mask(mask), runner.empty_cache(2),
                              all_logits=True)
    assert last.shape == (2, runner.vocab_size) and all_rows.shape == (2, 5, runner.vocab_size)
    np.testing.assert_allclose(last, all_rows[:, -1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_an_export_without_the_input_still_runs(exports, precision, tmp_path):
    folder = exports[precision]
    _without_logits_to_keep(folder / "model.onnx", tmp_path / "model.onnx")
    old = _runner(tmp_path / "model.onnx", folder)
    new = _runner(folder / "model.onnx", folder)
    assert not old.keeps_logits and new.keeps_logits
    mask = np.ones_like(IDS)
    last_old, cache_old = old.step(IDS, mask, positions_from_mask(mask), old.empty_cache(2))
    last_new, cache_new = new.step(IDS, mask, positions_from_mask(mask), new.empty_cache(2))
    np.testing.assert_allclose(last_old, last_new, rtol=0, atol=1e-5)
    for a, b in zip(cache_old.values, cache_new.values):
        np.testing.assert_array_equal(a, b)
    # the whole generation loop on the old graph
    copy = tmp_path / "folder"
    copy.mkdir()
    for file in folder.iterdir():
        if file.is_file() and file.name != "model.onnx":
            (copy / file.name).write_bytes(file.read_bytes())
    (copy / "model.onnx").write_bytes((tmp_path / "model.onnx").read_bytes())
    manifest = read_manifest(copy)
    manifest.files.pop("model.onnx", None)
    manifest.ort_model_file = None
    from runtime.manifest import write_manifest

    write_manifest(copy, manifest, overwrite=True)
    old_ids = runtime.load(copy, threads=1).generate([5, 9, 11], max_new_tokens=6,
                                                     eos_token_id=[]).token_ids
    new_ids = runtime.load(folder, threads=1).generate([5, 9, 11], max_new_tokens=6,
                                                       eos_token_id=[]).token_ids
    assert old_ids == new_ids and len(new_ids) == 6


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_gate_probe_computes_only_the_positions_it_scores(exports, precision, tmp_path):
    """``OnnxCausalLM`` (the parity gate's driver) asks the graph for the scored positions
    only: a long sliding-window probe's full logits would be [seq, vocab] float32 each. The
    kept rows equal the same rows of the all-position run, with and without the input."""
    from runtime.onnx_probe import OnnxCausalLM

    folder = exports[precision]
    _without_logits_to_keep(folder / "model.onnx", tmp_path / "model.onnx")
    ids = np.array([[5, 9, 11, 40, 7, 13, 2, 19], [3, 3, 8, 21, 6, 30, 12, 4]], np.int64)
    mask = np.ones_like(ids)
    for path, keeps in ((folder / "model.onnx", True), (tmp_path / "model.onnx", False)):
        model = OnnxCausalLM(path)
        assert model.keeps_logits is keeps
        every, present = model.step(ids, mask)
        assert every.shape[:2] == (2, 8)
        for keep in (1, 3, 8):
            kept, kept_present = model.step(ids, mask, logits_to_keep=keep)
            assert kept.shape == (2, keep, every.shape[2])
            np.testing.assert_allclose(kept, every[:, -keep:], rtol=0, atol=1e-5)
            for a, b in zip(present, kept_present):
                np.testing.assert_array_equal(a, b)
        cached = model.prefill_then_decode(ids, mask, 5)
        assert cached.shape == every.shape
        np.testing.assert_allclose(cached, every, rtol=0, atol=1e-4)
        for scored_from in (0, 2, 5, 6):  # before, at and after the end of the prefill
            scored = model.prefill_then_decode(ids, mask, 5, scored_from=scored_from)
            assert scored.shape == (2, 8 - scored_from, every.shape[2])
            np.testing.assert_allclose(scored, cached[:, scored_from:], rtol=0, atol=1e-5)
        # a prefill longer than the row (a stored reference's number) is the whole row
        longer = model.prefill_then_decode(ids, mask, 12, scored_from=3)
        assert longer.shape == (2, 5, every.shape[2])
        np.testing.assert_allclose(longer, every[:, 3:], rtol=0, atol=1e-4)
        with pytest.raises(ValueError, match="logits_to_keep must be >= 0"):
            model.step(ids, mask, logits_to_keep=-1)
