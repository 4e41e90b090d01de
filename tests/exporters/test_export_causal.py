"""fp32 causal-LM export of a ShadowPEFT adapter for every supported architecture.

Each architecture's shadow is implicit or explicit (hidden 32 vs base 64, projection folded)
per ``SHADOW_KINDS``; the adapter folder is exported with the base path it records.
Checks: folder layout, manifest, parity report, KV-cache decode with an empty first past,
left padding - always against the torch shadow in shadow-only mode.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from exporters import QUANTIZED_THRESHOLDS, quantize_export, verify
from exporters.package import checkpoint_sha256
from exporters.spec import DEFAULT_OPSET
from exporters.testing import TINY_VOCAB
from exporters.verify_session import OnnxCausalLM, positions
from runtime.manifest import MANIFEST_NAME, Manifest, check_files, read_manifest
from tests.tiny_models import ARCHITECTURES

pytestmark = pytest.mark.xdist_group("exporters")
TASK = "text-generation"


@pytest.fixture(params=ARCHITECTURES)
def case(request, shadow_exports):
    return shadow_exports(request.param)


def _torch_logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                     position_ids=torch.from_numpy(positions(mask))).logits.numpy()


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_returned_manifest_is_the_one_written(case):
    """One contract: ``ExportResult.manifest`` is the ``runtime.manifest.Manifest`` the
    exporter built and wrote, equal to the file read back (and to its JSON, key by key)."""
    written = read_manifest(case.folder)
    assert isinstance(case.result.manifest, Manifest)
    assert case.result.manifest == written
    on_disk = json.loads((case.folder / MANIFEST_NAME).read_text())
    assert case.result.manifest.to_dict() == on_disk
    assert list(on_disk)[:8] == ["format", "format_version", "task", "model_file",
                                 "ort_model_file", "precision", "opset",
                                 "min_onnxruntime_version"]
    assert on_disk["quantization"] is None and "verified_reason" not in on_disk
    assert set(case.result.files) == {p.name for p in case.folder.iterdir()}


def test_folder_has_the_design_layout_and_a_valid_manifest(case):
    folder = case.folder
    expected = {"model.onnx", "config.json", "generation_config.json", "genai_config.json",
                "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "shadow_edge.json", "parity_reference.npz"}
    if case.arch == "gpt2":  # the external-data path, forced
        expected.add("model.onnx.data")
    assert {p.name for p in folder.iterdir()} == expected
    manifest = read_manifest(folder)
    check_files(folder, manifest, hashes=True)
    assert manifest.task == TASK and manifest.precision == "fp32" and manifest.opset == DEFAULT_OPSET
    assert manifest.verified is True and manifest.parity["passed"] is True
    assert manifest.min_onnxruntime_version == "1.24.1"  # opset 23
    assert manifest.source.kind == "adapter" and manifest.source.base == str(case.base_dir)
    assert manifest.source.checkpoint_sha256 == checkpoint_sha256(case.checkpoint)
    explicit = case.kind == "explicit"
    assert manifest.model.num_layers == 2
    assert manifest.model.hidden_size == (32 if explicit else 64)
    head_dim = {"qwen3": 32, "gemma": 32, "gemma3_text": 32}.get(case.arch, 8 if explicit else 16)
    assert manifest.model.head_dim == head_dim
    assert manifest.model.num_key_value_heads == (4 if case.arch == "gpt2" else 2)
    assert manifest.model.vocab_size == TINY_VOCAB
    assert [t.name for t in manifest.inputs][:3] == ["input_ids", "attention_mask", "position_ids"]
    assert len(manifest.inputs) == 3 + 2 * 2 + 1 and len(manifest.outputs) == 1 + 2 * 2
    assert manifest.inputs[-1].name == "logits_to_keep"  # optional (issue 17)
    assert manifest.inputs[3].shape == ["batch_size", manifest.model.num_key_value_heads,
                                        "past_sequence_length", head_dim]
    assert (manifest.tokens.eos_token_id, manifest.tokens.pad_token_id,
            manifest.tokens.bos_token_id) == ([2], 0, 1)
    # parameters: shadow backbone (+ the base's embeddings when shared) + one [V, Hs] head
    peft = case.model.peft_model
    backbone = _numel(peft.shadow_model)
    if not explicit:
        backbone += peft.shadow_input_embeddings().weight.numel()
    assert manifest.detach.parameters == backbone + TINY_VOCAB * manifest.model.hidden_size
    assert manifest.detach.bytes == 4 * manifest.detach.parameters
    assert (manifest.detach.fold_max_rel_diff > 0) == explicit
    assert manifest.detach.fold_max_rel_diff <= 1e-5
    assert set(manifest.tool_versions) >= {"shadow_edge", "torch", "onnx", "onnxruntime"}
    generation = json.loads((folder / "generation_config.json").read_text())
    assert (generation["eos_token_id"], generation["pad_token_id"]) == (2, 0)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == case.arch and config["tie_word_embeddings"] is False


def test_parity_report_meets_the_fp32_gate(case):
    parity = read_manifest(case.folder).parity
    checks = {c["name"]: c for c in parity["checks"]}
    # Gemma 3 has a sliding window in effect: the gate adds a prompt longer than it
    window = {"logits_max_abs_diff_sliding_window", "kv_cache_max_abs_diff_sliding_window"}
    assert set(checks) == {"logits_max_abs_diff", "kv_cache_max_abs_diff",
                           "logits_max_abs_diff_random_ids", "kv_cache_max_abs_diff_random_ids",
                           "left_padding_max_abs_diff", "greedy_tokens_identical"} | (
        window if case.arch == "gemma3_text" else set())
    assert parity["reference"]["probes"] == {"text": [2, 8], "random_ids": [1, 8]} | (
        {"sliding_window": [1, 16]} if case.arch == "gemma3_text" else {})
    assert parity["reference"]["logits_dtype"] == "float32"
    scale = parity["logit_scale"]
    assert scale > 1.0  # peaked logits: the 1e-4 relative gate is meaningful
    for name in ("logits_max_abs_diff", "kv_cache_max_abs_diff", "left_padding_max_abs_diff",
                 "logits_max_abs_diff_random_ids", "kv_cache_max_abs_diff_random_ids"):
        assert checks[name]["threshold"] == pytest.approx(1e-4 * scale)
        assert checks[name]["value"] <= 1e-5 * scale  # measured: ~1e-7 relative
    for name in window & set(checks):  # the long probe's own scale
        assert checks[name]["passed"] and checks[name]["value"] <= 0.1 * checks[name]["threshold"]
    assert checks["greedy_tokens_identical"]["value"] == 32


def test_first_step_with_empty_past_and_cached_decode_equal_torch(case):
    onnx = OnnxCausalLM(case.folder / "model.onnx")
    ids = np.random.default_rng(1).integers(3, TINY_VOCAB, (2, 9))
    mask = np.ones_like(ids)
    reference = _torch_logits(case.model, ids, mask)
    tol = 1e-4 * np.abs(reference).max()
    full, present = onnx.step(ids, mask)  # past length 0
    assert present[0].shape == (2, onnx.kv_heads, 9, onnx.head_dim)
    assert np.abs(full - reference).max() <= tol
    cached = onnx.prefill_then_decode(ids, mask, prefill=1)  # 1 token, then 8 cached steps
    assert cached.shape == reference.shape
    assert np.abs(cached - reference).max() <= tol


def test_left_padded_batch_equals_unpadded_rows(case):
    onnx = OnnxCausalLM(case.folder / "model.onnx")
    rng = np.random.default_rng(2)
    long, short = rng.integers(3, TINY_VOCAB, 8), rng.integers(3, TINY_VOCAB, 5)
    ids = np.stack([long, np.concatenate([[0, 0, 0], short])])
    mask = np.array([[1] * 8, [0, 0, 0] + [1] * 5])
    padded, past = onnx.step(ids, mask)
    alone = _torch_logits(case.model, short[None], np.ones((1, 5), np.int64))[0]
    tol = 1e-4 * np.abs(alone).max()
    assert np.abs(padded[1, 3:] - alone).max() <= tol
    # decoding one more token for the padded batch still matches the unpadded row
    step, _ = onnx.step(np.array([[7], [9]]), np.concatenate([mask, [[1], [1]]], axis=1), past)
    alone_next = _torch_logits(case.model, np.concatenate([short, [9]])[None],
                               np.ones((1, 6), np.int64))[0, -1]
    assert np.abs(step[1, 0] - alone_next).max() <= tol


def _model_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.name.startswith("model.onnx"))


#: Tiny dims: the graph and the quantization scales weigh in, so the ratios are looser than
#: the issue's 0.3x / 0.2x, which test_quantization.py asserts on a larger model.
TINY_SIZE_RATIO = {"int8": 0.5, "int4": 0.6}


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_quantized_shadow_of_each_architecture(case, precision, tmp_path):
    """int8 must pass its gate. These tiny random shadows sit at the edge of the int4 gate
    (top-1 0.55-0.6 against 0.6, embeddings kept or not), so for int4 the gate itself is
    asserted on the larger model in test_quantization.py; here every architecture's 4-bit
    graph must be sound: logits close in direction, padding exact."""
    int4 = precision == "int4"
    result = quantize_export(case.folder, tmp_path / precision, precision,
                             checkpoint=None if int4 else case.model, keep_embeddings=int4)
    folder = result.output_dir
    unchecked = {"parity_reference.npz"} if int4 else set()  # no gate ran: no reference
    assert {p.name for p in folder.iterdir()} == {p.name for p in case.folder.iterdir()} - unchecked
    manifest = read_manifest(folder)
    check_files(folder, manifest, hashes=True)
    assert (manifest.task, manifest.precision, manifest.verified) == (TASK, precision, not int4)
    assert manifest.opset == DEFAULT_OPSET
    assert manifest.inputs == read_manifest(case.folder).inputs
    report = verify(folder, case.model, raise_on_failure=False)
    assert report.precision == precision
    checks = {c.name: c.value for c in report.checks}
    limits = QUANTIZED_THRESHOLDS[precision]
    if int4:
        assert 0.95 <= checks["mean_logit_cosine"] < 1.0
        assert checks["top1_agreement"] >= 0.5  # chance is 1/259
    else:
        assert report.passed and manifest.parity["passed"] is True
        assert checks["top1_agreement"] >= limits["top1_agreement"]
        assert limits["mean_logit_cosine"] <= checks["mean_logit_cosine"] < 1.0
    assert checks["left_padding_min_cosine"] >= limits["padding_cosine"]
    assert _model_bytes(folder) <= TINY_SIZE_RATIO[precision] * _model_bytes(case.folder)
