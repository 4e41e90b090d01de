"""Sequence-classification export: last-token pooling under padding, in onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from exporters.testing import TINY_VOCAB, tiny_model
from exporters.verify_session import OnnxClassifier
from runtime.manifest import check_files, read_manifest
from tests.exporters.conftest import ARCH_SIZES

pytestmark = pytest.mark.xdist_group("exporters")
TASK = "text-classification"


@pytest.fixture(scope="module")
def folder(exports):
    return exports.get("llama", TASK)


@pytest.fixture(scope="module")
def torch_model():
    return tiny_model("llama", TASK, **ARCH_SIZES["llama"])


def test_folder_and_manifest(folder):
    assert {p.name for p in folder.iterdir()} == {
        "model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "shadow_edge.json", "parity_reference.npz"}
    manifest = read_manifest(folder)
    check_files(folder, manifest, hashes=True)
    assert manifest.task == TASK and manifest.verified
    assert manifest.model.num_labels == 3
    assert manifest.model.id2label == {0: "label_0", 1: "label_1", 2: "label_2"}
    assert [(t.name, t.shape) for t in manifest.inputs] == [
        ("input_ids", ["batch_size", "sequence_length"]),
        ("attention_mask", ["batch_size", "sequence_length"])]
    assert [(t.name, t.shape) for t in manifest.outputs] == [("logits", ["batch_size", 3])]
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "label_0", "1": "label_1", "2": "label_2"}
    checks = {c["name"]: c for c in manifest.parity["checks"]}
    assert checks["argmax_agreement"]["value"] == 1.0
    assert checks["logits_max_abs_diff"]["value"] <= 1e-5 * manifest.parity["logit_scale"]


def test_pooling_graph_has_no_argmax_and_uses_int64_indices(folder):
    graph = onnx.load(str(folder / "model.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert "ArgMax" not in ops
    assert "ReduceMax" in ops and ops & {"GatherElements", "Gather", "GatherND"}


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_rows_equal_unpadded_rows_and_torch(folder, torch_model, side):
    model = OnnxClassifier(folder / "model.onnx")
    rng = np.random.default_rng(5)
    rows = [rng.integers(3, TINY_VOCAB, n) for n in (9, 4, 6, 1)]
    width = 9
    ids = np.zeros((4, width), np.int64)
    mask = np.zeros((4, width), np.int64)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span], mask[i, span] = row, 1
    batched = model.logits(ids, mask)
    assert batched.shape == (4, 3) and batched.dtype == np.float32
    for i, row in enumerate(rows):
        alone = model.logits(row[None], np.ones((1, len(row)), np.int64))[0]
        with torch.no_grad():
            reference = torch_model(torch.from_numpy(row[None])).logits[0].numpy()
        tol = 1e-4 * np.abs(reference).max()
        assert np.abs(batched[i] - alone).max() <= tol
        assert np.abs(alone - reference).max() <= tol
        assert batched[i].argmax() == reference.argmax()


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "mistral", "gemma", "gemma3_text", "gpt2"])
def test_every_architecture_exports_a_classifier_that_pools_like_torch(arch, tmp_path):
    """The llama classifier is tested in depth above; the other architectures share the
    backbone export with their causal tests, and here pass the gate and pool left- and
    right-padded rows like torch, through the fused opset-23 attention."""
    from exporters import export

    model = tiny_model(arch, TASK, **ARCH_SIZES[arch])
    result = export(model, tmp_path / arch)
    assert result.parity.passed and result.manifest.opset == 23
    graph = onnx.load(str(tmp_path / arch / "model.onnx"))
    assert sum(node.op_type == "Attention" for node in graph.graph.node) == ARCH_SIZES[arch].get(
        "num_layers", 2)
    ids = torch.tensor([[5, 9, 11, 30, 31], [0, 0, 7, 8, 9], [7, 8, 9, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():  # torch references on unpadded rows
        full = model(input_ids=ids[:1]).logits[0].numpy()
        alone = model(input_ids=torch.tensor([[7, 8, 9]])).logits[0].numpy()
    logits = OnnxClassifier(tmp_path / arch / "model.onnx").logits(ids.numpy(), mask.numpy())
    assert logits.shape == (3, 3)
    for row, reference in ((0, full), (1, alone), (2, alone)):
        np.testing.assert_allclose(logits[row], reference, atol=1e-4)


def test_graph_pools_edge_rows_like_the_core_definition(folder, torch_model):
    """Rows with no token, one token (first or last position) and no padding: the graph
    pools the position ``shadow_edge.pooling.last_token_index`` gives (0 for no token)."""
    from exporters.shadow_module import DetachedShadow

    detached = DetachedShadow(torch_model.model, torch_model.score, task=TASK).eval()
    ids = np.array([[5, 6, 7, 8], [5, 0, 0, 0], [0, 0, 0, 8], [5, 6, 7, 8]], np.int64)
    mask = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1]], np.int64)
    graph = OnnxClassifier(folder / "model.onnx").logits(ids, mask)
    reference = detached.logits(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(graph, reference, atol=1e-4, equal_nan=True)
    with torch.no_grad():  # the one-token rows equal that token alone
        for row, token in ((1, 5), (2, 8)):
            alone = torch_model(input_ids=torch.tensor([[token]])).logits[0].numpy()
            np.testing.assert_allclose(graph[row], alone, atol=1e-4)
