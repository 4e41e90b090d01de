"""Issue 17: prefill logits for the last position only (``logits_to_keep``) and one copy of a
tied embedding / head table, in fp32 and int8/int4 exports of tiny Llama shadows."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

import exporters.onnx as onnx_export
from exporters import export, quantize_export
from exporters.testing import TINY_VOCAB, tiny_model, tiny_tokenizer_files
from runtime.causal_lm import CausalLMRunner
from runtime.generation import positions_from_mask
from runtime.manifest import read_manifest
from runtime.onnx_probe import OnnxCausalLM
from runtime.session import create_session

HIDDEN = 64
#: table sizes: fp32 [V, H] floats; the 8-bit codes [V, H / 32, 32] bytes
TABLE = TINY_VOCAB * HIDDEN


def _tied_copy(seed: int = 0):
    """A model whose head is an independent tensor equal to the embedding (not the same
    Parameter): sharing must come from the weights, not from the config."""
    model = tiny_model("llama", seed=seed, tie_word_embeddings=False)
    with torch.no_grad():
        model.lm_head.weight = torch.nn.Parameter(model.model.embed_tokens.weight.clone())
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    return model


MODELS = {
    "tied": lambda: tiny_model("llama", tie_word_embeddings=True),
    "equal_copy": _tied_copy,
    "untied": lambda: tiny_model("llama", tie_word_embeddings=False),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{name: (torch model, {precision: export folder})}, int8 gated against torch."""
    root = tmp_path_factory.mktemp("head-graph")
    out = {}
    for name, make in MODELS.items():
        model = make().eval()
        source = root / f"{name}-source"
        model.save_pretrained(str(source))
        tiny_tokenizer_files(source)
        fp32 = export(source, root / f"{name}-fp32").output_dir
        int8 = quantize_export(fp32, root / f"{name}-int8", "int8", checkpoint=source).output_dir
        out[name] = (model, {"fp32": fp32, "int8": int8, "source": source})
    return out


def _big_tables(folder) -> list[tuple[str, list[int], int]]:
    """(name, dims, data type) of initializers holding a vocabulary-sized table (4-bit codes
    pack two to a byte: half the elements)."""
    proto = onnx.load(str(folder / "model.onnx"))
    return [(t.name, list(t.dims), t.data_type) for t in proto.graph.initializer
            if int(np.prod(t.dims)) >= TABLE // 2]


def _torch_logits(model, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(ids)).logits.float().numpy()


class TestLogitsToKeep:
    def test_is_an_optional_input_recorded_in_the_manifest(self, built):
        folder = built["untied"][1]["fp32"]
        session = create_session(folder / "model.onnx")
        assert "logits_to_keep" not in {i.name for i in session.get_inputs()}
        overridable = {i.name: i for i in session.get_overridable_initializers()}
        assert overridable["logits_to_keep"].type == "tensor(int64)"
        assert overridable["logits_to_keep"].shape == []
        manifest = json.loads((folder / "shadow_edge.json").read_text())
        assert manifest["inputs"][-1] == {"name": "logits_to_keep", "dtype": "int64", "shape": []}
        assert manifest["outputs"][0]["shape"][1] == "logits_sequence_length"
        assert CausalLMRunner(session, read_manifest(folder)).keeps_logits

    @pytest.mark.parametrize("precision", ["fp32", "int8"])
    @pytest.mark.parametrize("name", ["tied", "untied"])
    def test_all_positions_equal_torch_and_last_positions_equal_their_rows(
            self, built, name, precision):
        model, folders = built[name]
        onnx_model = OnnxCausalLM(folders[precision] / "model.onnx")
        ids = np.random.default_rng(3).integers(3, TINY_VOCAB, (2, 9))
        mask = np.ones_like(ids)
        reference = _torch_logits(model, ids)
        scale = np.abs(reference).max()
        feeds = {"input_ids": ids[:, :7], "attention_mask": mask[:, :7],
                 "position_ids": positions_from_mask(mask[:, :7]),
                 **dict(zip(onnx_model.past_names, onnx_model.empty_past(2)))}
        names = onnx_model.output_names
        full, *present = onnx_model.session.run(names, feeds)  # default: every position
        assert full.shape == (2, 7, TINY_VOCAB)
        if precision == "fp32":
            assert np.abs(full - reference[:, :7]).max() <= 1e-4 * scale
        else:  # 8-bit weights: close in direction and same top-1 as torch
            assert (full.argmax(-1) == reference[:, :7].argmax(-1)).mean() >= 0.9
        for keep, rows in ((1, 1), (3, 3), (7, 7), (50, 7), (0, 7)):
            kept, *kept_present = onnx_model.session.run(
                names, {**feeds, "logits_to_keep": np.array(keep, np.int64)})
            assert kept.shape == (2, rows, TINY_VOCAB)
            assert np.abs(kept - full[:, 7 - rows:]).max() <= 1e-6 * scale
            for a, b in zip(kept_present, present):  # the cache does not depend on it
                np.testing.assert_array_equal(a, b)
        # then a cached decode step, last position only
        step_feeds = {"input_ids": ids[:, 7:8], "attention_mask": mask[:, :8],
                      "position_ids": positions_from_mask(mask[:, :8])[:, -1:],
                      "logits_to_keep": np.array(1, np.int64), **dict(zip(onnx_model.past_names,
                                                                            present))}
        step = onnx_model.session.run(["logits"], step_feeds)[0]
        if precision == "fp32":
            assert np.abs(step[:, 0] - reference[:, 7]).max() <= 1e-4 * scale
        else:
            cosine = (step[:, 0] * reference[:, 7]).sum(-1) / (
                np.linalg.norm(step[:, 0], axis=-1) * np.linalg.norm(reference[:, 7], axis=-1))
            assert cosine.min() >= 0.99

    @pytest.mark.parametrize("precision", ["fp32", "int8"])
    def test_runner_feeds_one_for_generation_and_all_for_teacher_forcing(self, built, precision):
        folder = built["tied"][1][precision]
        runner = CausalLMRunner(create_session(folder / "model.onnx", threads=1),
                                read_manifest(folder))
        ids = np.random.default_rng(4).integers(3, TINY_VOCAB, (2, 6))
        mask = np.ones_like(ids)
        last, cache = runner.step(ids, mask, positions_from_mask(mask), runner.empty_cache(2))
        every, every_cache = runner.step(ids, mask, positions_from_mask(mask),
                                         runner.empty_cache(2), all_logits=True)
        assert last.shape == (2, TINY_VOCAB) and every.shape == (2, 6, TINY_VOCAB)
        assert np.abs(last - every[:, -1]).max() <= 1e-6 * np.abs(every).max()
        for a, b in zip(cache.values, every_cache.values):
            np.testing.assert_array_equal(a, b)


class TestTiedTable:
    @pytest.mark.parametrize("name", ["tied", "equal_copy"])
    def test_fp32_stores_the_table_once(self, built, name):
        tables = _big_tables(built[name][1]["fp32"])
        assert [dims for _, dims, _ in tables] == [[HIDDEN, TINY_VOCAB]]  # the head's [H, V]
        untied = _big_tables(built["untied"][1]["fp32"])
        assert sorted(dims for _, dims, _ in untied) == [[HIDDEN, TINY_VOCAB], [TINY_VOCAB, HIDDEN]]
        size = (built[name][1]["fp32"] / "model.onnx").stat().st_size
        untied_size = (built["untied"][1]["fp32"] / "model.onnx").stat().st_size
        assert untied_size - size == pytest.approx(4 * TABLE, rel=0.02)

    def test_int8_shares_one_set_of_codes(self, built):
        tables = _big_tables(built["tied"][1]["int8"])
        assert [(dims, dtype) for _, dims, dtype in tables] == [
            ([TINY_VOCAB, HIDDEN // 32, 32], onnx.TensorProto.UINT8)]
        proto = onnx.load(str(built["tied"][1]["int8"] / "model.onnx"))
        codes = tables[0][0]
        users = sorted(n.op_type for n in proto.graph.node if codes in n.input)
        assert users == ["GatherBlockQuantized", "MatMulNBits"]
        untied = _big_tables(built["untied"][1]["int8"])
        assert len(untied) == 2
        manifest = json.loads((built["tied"][1]["int8"] / "shadow_edge.json").read_text())
        assert manifest["verified"] and manifest["parity"]["passed"]

    @pytest.mark.parametrize("precision", ["fp32", "int8", "int4"])
    def test_outputs_equal_an_export_that_keeps_two_copies(self, built, precision, tmp_path,
                                                           monkeypatch):
        model, folders = built["tied"]
        monkeypatch.setattr(onnx_export, "tied_head", lambda model: False)
        two = export(folders["source"], tmp_path / "two-fp32", verify=False).output_dir
        assert len(_big_tables(two)) == 2
        one = folders["fp32"]
        if precision != "fp32":
            two = quantize_export(two, tmp_path / f"two-{precision}", precision).output_dir
            one = quantize_export(one, tmp_path / f"one-{precision}", precision).output_dir
            assert len(_big_tables(one)) == 1 and len(_big_tables(two)) == 2
        ids = np.random.default_rng(5).integers(3, TINY_VOCAB, (2, 8))
        mask = np.ones_like(ids)
        shared = OnnxCausalLM(one / "model.onnx").prefill_then_decode(ids, mask, 3)
        separate = OnnxCausalLM(two / "model.onnx").prefill_then_decode(ids, mask, 3)
        # the same codes and scales (both made by onnxruntime's block kernel): same logits
        assert np.abs(shared - separate).max() <= 1e-5 * np.abs(separate).max()
        if precision == "fp32":
            reference = _torch_logits(model, ids)
            assert np.abs(shared - reference).max() <= 1e-4 * np.abs(reference).max()

    def test_untied_weights_keep_two_tables_and_equal_torch(self, built):
        model, folders = built["untied"]
        assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
        manifest = json.loads((folders["fp32"] / "shadow_edge.json").read_text())
        assert manifest["verified"]
        ids = np.random.default_rng(6).integers(3, TINY_VOCAB, (1, 6))
        logits = OnnxCausalLM(folders["fp32"] / "model.onnx").step(ids, np.ones_like(ids))[0]
        reference = _torch_logits(model, ids)
        assert np.abs(logits - reference).max() <= 1e-4 * np.abs(reference).max()


def test_classification_export_is_unchanged(exports):
    folder = exports.get("llama", "text-classification")
    session = create_session(folder / "model.onnx")
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert session.get_overridable_initializers() == []
    manifest = json.loads((folder / "shadow_edge.json").read_text())
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask"]


@pytest.mark.parametrize(("arch", "sizes"), [("gpt2", {}), ("gemma", {}),
                                             ("llama", {"hidden_size": 48})])
def test_other_tied_layouts_share_one_table(arch, sizes, tmp_path, monkeypatch):
    """GPT-2 gathers through a reshaped copy of input_ids, Gemma scales the embedding, and
    a hidden size of 48 is not a multiple of the 32-wide blocks (MatMulNBits pads it)."""
    from exporters.folding import detach
    from exporters.onnx import export_onnx
    from exporters.quantization import quantize

    model = detach(tiny_model(arch, tie_word_embeddings=True, **sizes)).model
    hidden = sizes.get("hidden_size", HIDDEN)
    ids = np.random.default_rng(7).integers(3, TINY_VOCAB, (2, 6))
    reference = model.logits(torch.from_numpy(ids)).numpy()
    logits = {}
    for shared in (True, False):
        monkeypatch.setattr(onnx_export, "tied_head", lambda model, shared=shared: shared)
        folder = tmp_path / f"shared-{shared}"
        assert export_onnx(model, folder / "model.onnx").shared_table is shared
        quantize(folder / "model.onnx", folder / "int8" / "model.onnx", "int8")
        tables = [t for t in onnx.load(str(folder / "model.onnx")).graph.initializer
                  if int(np.prod(t.dims)) == TINY_VOCAB * hidden]
        codes = [t for t in onnx.load(str(folder / "int8" / "model.onnx")).graph.initializer
                 if int(np.prod(t.dims)) >= TINY_VOCAB * hidden]
        assert (len(tables), len(codes)) == ((1, 1) if shared else (2, 2))
        for precision, path in (("fp32", folder / "model.onnx"),
                                ("int8", folder / "int8" / "model.onnx")):
            logits[shared, precision] = OnnxCausalLM(path).prefill_then_decode(
                ids, np.ones_like(ids), 2)
    scale = np.abs(reference).max()
    assert np.abs(logits[True, "fp32"] - reference).max() <= 1e-4 * scale
    assert np.abs(logits[True, "int8"] - logits[False, "int8"]).max() <= 1e-5 * scale
