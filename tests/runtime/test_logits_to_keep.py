"""Issue 17: exports from before ``logits_to_keep`` still run; a graph with the input added
returns the last position only when the runtime asks (torch-free)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import runtime
from runtime.generation import positions_from_mask
from runtime.kv_cache import CausalLMRunner
from runtime.manifest import read_manifest
from runtime.session import create_session


def _runner(folder, model_file="model.onnx") -> CausalLMRunner:
    return CausalLMRunner(create_session(folder / model_file, threads=1), read_manifest(folder))


def _with_logits_to_keep(source, target) -> None:
    """Add the input to an old graph the way the exporter does (``exporters.head_graph``):
    an overridable int64 scalar, default 0, slicing the logits' sequence axis."""
    model = onnx.load(str(source))
    graph = model.graph
    graph.input.append(helper.make_tensor_value_info("logits_to_keep", onnx.TensorProto.INT64, []))
    graph.initializer.extend([
        numpy_helper.from_array(np.array(0, np.int64), "logits_to_keep"),
        numpy_helper.from_array(np.array([0], np.int64), "ltk_axes0"),
        numpy_helper.from_array(np.array([1], np.int64), "ltk_axes1"),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), "ltk_end")])
    producer = next(n for n in graph.node if "logits" in n.output)
    producer.output[list(producer.output).index("logits")] = "all_logits"
    graph.node.extend([
        helper.make_node("Unsqueeze", ["logits_to_keep", "ltk_axes0"], ["ltk_1d"]),
        helper.make_node("Neg", ["ltk_1d"], ["ltk_start"]),
        helper.make_node("Slice", ["all_logits", "ltk_start", "ltk_end", "ltk_axes1"],
                         ["logits"])])
    onnx.save(model, str(target))


def test_old_export_without_the_input_still_generates(exports):
    runner = _runner(exports["fp32"])
    assert not runner.keeps_logits
    ids = np.array([[5, 9, 11, 40, 7]], np.int64)
    mask = np.ones_like(ids)
    last, _ = runner.step(ids, mask, positions_from_mask(mask), runner.empty_cache(1))
    every, _ = runner.step(ids, mask, positions_from_mask(mask), runner.empty_cache(1),
                           all_logits=True)
    assert last.shape == (1, runner.vocab_size) and every.shape == (1, 5, runner.vocab_size)
    np.testing.assert_array_equal(last, every[:, -1])
    result = runtime.load(exports["fp32"], threads=1).generate([5, 9, 11], max_new_tokens=4,
                                                              eos_token_id=[])
    assert len(result.token_ids) == 4


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_runner_feeds_logits_to_keep_when_the_graph_has_it(exports, precision, tmp_path):
    folder = exports[precision]
    _with_logits_to_keep(folder / "model.onnx", tmp_path / "model.onnx")
    new = CausalLMRunner(create_session(tmp_path / "model.onnx", threads=1),
                         read_manifest(folder))
    old = _runner(folder)
    assert new.keeps_logits and not old.keeps_logits
    ids = np.array([[5, 9, 11, 40, 7], [3, 3, 8, 21, 6]], np.int64)
    mask = np.ones_like(ids)
    feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions_from_mask(mask),
             **dict(zip(new.past_names, new.empty_cache(2).values))}
    assert new.session.run(["logits"], {**feeds, "logits_to_keep": np.array(1)})[0].shape[1] == 1
    last_new, cache_new = new.step(ids, mask, positions_from_mask(mask), new.empty_cache(2))
    last_old, cache_old = old.step(ids, mask, positions_from_mask(mask), old.empty_cache(2))
    np.testing.assert_array_equal(last_new, last_old)
    every = new.step(ids, mask, positions_from_mask(mask), new.empty_cache(2), all_logits=True)[0]
    assert every.shape == (2, 5, new.vocab_size)
    for a, b in zip(cache_new.values, cache_old.values):
        np.testing.assert_array_equal(a, b)
