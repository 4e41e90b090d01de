"""Issue 17, export memory: a folder source's detached model shares its tensors, the export
lets the source and its own weights go between stages, onnxscript's rewrite rules forget the
traced graph, and a model the caller passed in is never touched (exporters/memory.py)."""

from __future__ import annotations

import gc
import inspect

import pytest
import torch
import transformers
from torch import nn

import shadow_edge as se
from exporters import export, verify
from exporters.folding import detach
from exporters.loaded import copy_fp32
from exporters.memory import forget_rewriter_graphs, release_source, release_weights
from exporters.onnx import export_onnx
from exporters.testing import tiny_model, tiny_model_folder
from shadow_edge.errors import ConfigError

pytestmark = pytest.mark.xdist_group("exports")


def _pair():
    model = nn.Sequential(nn.Embedding(12, 4), nn.Linear(4, 12))
    model.register_buffer("steps", torch.tensor([3]))
    return model


def test_a_shared_copy_reuses_float32_tensors_and_converts_the_rest():
    source = _pair()
    copy = copy_fp32(source, share_weights=True)
    assert copy is not source and copy[0] is not source[0]
    assert copy[0].weight is source[0].weight and copy.steps is source.steps
    copy[1] = nn.Linear(4, 12)  # the module tree is the copy's own
    assert isinstance(source[1], nn.Linear) and source[1] is not copy[1]
    half = _pair().half()
    converted = copy_fp32(half, share_weights=True)
    assert converted[0].weight.dtype == torch.float32 and half[0].weight.dtype == torch.float16
    assert torch.equal(converted[0].weight, half[0].weight.float())
    owned = copy_fp32(source)  # the default: tensors of its own
    assert owned[0].weight.data_ptr() != source[0].weight.data_ptr()
    assert torch.equal(owned[0].weight, source[0].weight)


def test_releasing_a_shared_copy_leaves_the_source_as_it_was():
    source = _pair()
    before = source[1].weight.detach().clone()
    copy = copy_fp32(source, share_weights=True)
    release_weights(copy)
    assert {p.device.type for p in copy.parameters()} == {"meta"}
    assert copy[1].weight.shape == (12, 4) and copy[1].out_features == 12
    assert {p.device.type for p in source.parameters()} == {"cpu"}
    assert torch.equal(source[1].weight, before)
    assert not torch.__future__.get_overwrite_module_params_on_conversion()


def test_the_rewriter_forgets_the_traced_graph(tmp_path):
    from onnxscript.rewriter._matcher import SimplePatternMatcher

    model = detach(tiny_model("llama", num_layers=1)).model
    export_onnx(model, tmp_path / "model.onnx")
    matchers = [m for m in gc.get_objects() if issubclass(type(m), SimplePatternMatcher)]
    assert matchers  # torch.onnx ran onnxscript's rewrite rules
    assert [m for m in matchers if getattr(m, "_graph", None) is not None] == []
    forget_rewriter_graphs()  # idempotent


def _tied_adapter(root):
    """A ShadowPEFT adapter (implicit 1-layer shadow) on a base whose head is its embedding;
    returns (base folder, adapter folder, the in-memory ShadowForCausalLM)."""
    base_dir = tiny_model_folder(root / "base", "llama", num_layers=2, tie_word_embeddings=True)
    base = transformers.AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    assert base.lm_head.weight is base.model.embed_tokens.weight
    model = se.ShadowForCausalLM(se.get_shadow_model(base, se.ShadowConfig(num_shadow_layers=1)))
    model.save_pretrained(root / "ckpt")
    return base_dir, root / "ckpt", model


def test_a_folder_source_shares_its_tensors_and_an_in_memory_one_is_copied(tmp_path):
    base_dir, ckpt, model = _tied_adapter(tmp_path)
    loaded = detach(ckpt, base=base_dir)
    source = inspect.getclosurevars(inspect.unwrap(loaded.reference)).nonlocals["model"]
    source_storage = {p.data_ptr() for p in source.parameters()}
    detached = list(loaded.model.parameters())
    assert detached and {p.data_ptr() for p in detached} <= source_storage  # no second copy
    in_memory = detach(model)
    assert not {p.data_ptr() for p in in_memory.model.parameters()} & {
        p.data_ptr() for p in model.parameters()}
    for mine, theirs in zip(in_memory.model.parameters(), detached, strict=True):
        assert torch.equal(mine, theirs)


def test_exporting_an_in_memory_model_leaves_it_usable(tmp_path):
    _, _, model = _tied_adapter(tmp_path)
    model.set_inference_mode("shadow_only")
    ids = torch.tensor([[5, 9, 11, 40, 7]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
    result = export(model, tmp_path / "out")
    assert result.parity.passed
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, before)


def test_a_tied_folder_head_gets_its_own_equal_tensor(tmp_path):
    folder = tiny_model_folder(tmp_path / "tied", "llama", num_layers=1, tie_word_embeddings=True)
    loaded = detach(folder)
    head = loaded.model.head.weight
    embedding = loaded.model.backbone.get_input_embeddings().weight
    assert head.data_ptr() != embedding.data_ptr()  # untie_head: the graph needs a constant head
    assert torch.equal(head, embedding)


def test_exporting_a_detached_shadow_leaves_the_callers_model_usable(tmp_path):
    model = detach(tiny_model("llama", num_layers=1, tie_word_embeddings=True)).model
    ids = torch.tensor([[5, 9, 11, 40, 7]])
    before = model.logits(ids).detach().clone()
    storage = {p.data_ptr() for p in model.parameters()}
    result = export(model, tmp_path / "out")
    assert result.parity.passed
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert {p.data_ptr() for p in model.parameters()} == storage
    assert torch.equal(model.logits(ids), before)


def test_a_base_passed_as_a_model_is_not_shared(tmp_path):
    base_dir, ckpt, _ = _tied_adapter(tmp_path)
    base = transformers.AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    loaded = detach(ckpt, base=base)
    assert not {p.data_ptr() for p in loaded.model.parameters()} & {
        p.data_ptr() for p in base.parameters()}


def test_a_detached_model_without_its_source_is_refused(tmp_path):
    loaded = detach(tiny_model("llama", num_layers=1))
    out = export(loaded.model, tmp_path / "out").output_dir
    assert verify(out / "model.onnx", loaded).passed
    release_source(loaded)
    with pytest.raises(ConfigError, match="no longer holds its source model"):
        verify(out / "model.onnx", loaded)
