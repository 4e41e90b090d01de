"""ShadowPEFT sources beyond the per-architecture causal LMs (test_export_causal.py):
a classifier adapter, a projected standalone folder, and bad adapters / bases."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers as tf

import shadow_edge as se
from exporters import export
from exporters.testing import TINY_VOCAB, tiny_model, tiny_model_folder
from exporters.verify_session import OnnxCausalLM, OnnxClassifier, positions
from runtime.manifest import read_manifest
from shadow_edge.errors import CheckpointError

pytestmark = pytest.mark.xdist_group("exporters")


def _shadow_logits(model, ids, mask):
    model.set_inference_mode("shadow_only")
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                     position_ids=torch.from_numpy(positions(mask))).logits.numpy()


def test_implicit_classifier_adapter_pools_like_the_torch_shadow(tmp_path):
    base_dir = tiny_model_folder(tmp_path / "base", "llama", "text-classification", num_layers=2)
    base = tf.AutoModelForSequenceClassification.from_pretrained(base_dir, dtype=torch.float32)
    model = se.ShadowForSequenceClassification(
        se.get_shadow_model(base, se.ShadowConfig(num_shadow_layers=1)))
    model.save_pretrained(tmp_path / "ckpt")
    result = export(tmp_path / "ckpt", tmp_path / "out", base=base_dir)
    manifest = read_manifest(result.output_dir)
    assert manifest.task == "text-classification" and manifest.verified
    assert manifest.model.id2label == {0: "label_0", 1: "label_1", 2: "label_2"}
    classifier = OnnxClassifier(result.model_path)
    ids = np.array([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    reference = _shadow_logits(model, ids, mask)
    assert np.abs(classifier.logits(ids, mask) - reference).max() <= 1e-4 * np.abs(reference).max()


def test_base_with_other_shapes_is_a_checkpoint_error(shadow_exports, tmp_path):
    checkpoint = shadow_exports("qwen3").checkpoint
    wrong = tiny_model_folder(tmp_path / "wrong", "qwen3", num_layers=3, hidden_size=32)
    with pytest.raises(CheckpointError):
        export(checkpoint, tmp_path / "out", base=wrong)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong"]


def test_adapter_without_a_recorded_base_needs_base(shadow_exports, tmp_path):
    import shutil

    checkpoint = shadow_exports("qwen3").checkpoint
    copy = shutil.copytree(checkpoint, tmp_path / "ckpt")
    config = json.loads((copy / "shadow_config.json").read_text())
    config["base_model_name_or_path"] = None
    (copy / "shadow_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="--base"):
        export(copy, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_corrupt_adapter_weights_are_a_checkpoint_error(shadow_exports, tmp_path):
    import shutil

    case = shadow_exports("qwen3")
    base_dir, checkpoint = case.base_dir, case.checkpoint
    copy = shutil.copytree(checkpoint, tmp_path / "ckpt")
    (copy / "shadow_adapter.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError):
        export(copy, tmp_path / "out", base=base_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_projected_standalone_folder_folds_the_projection(tmp_path):
    """An ``AutoModelForCausalLMWithHiddenProjection`` folder (``export_shadow`` output)."""
    from torch import nn

    from exporters.testing import tiny_tokenizer_files

    small = tiny_model("llama", num_layers=1, hidden_size=32, seed=3)
    torch.manual_seed(5)
    head = nn.Linear(64, TINY_VOCAB, bias=False)
    projection = nn.Linear(32, 64, bias=False)
    wrapped = se.AutoModelForCausalLMWithHiddenProjection.wrap(small, projection, head)
    folder = tmp_path / "projected"
    wrapped.save_pretrained(folder)
    tiny_tokenizer_files(folder)
    assert json.loads((folder / "config.json").read_text())["model_type"] == \
        "causal_lm_with_hidden_projection"
    result = export(folder, tmp_path / "out")
    manifest = read_manifest(result.output_dir)
    assert manifest.source.kind == "standalone" and manifest.verified
    assert manifest.model.hidden_size == 32 and manifest.model.vocab_size == TINY_VOCAB
    assert 0.0 < manifest.detach.fold_max_rel_diff <= 1e-5
    backbone = sum(p.numel() for p in wrapped.shadow_model.parameters())
    assert manifest.detach.parameters == backbone + TINY_VOCAB * 32
    ids = np.random.default_rng(2).integers(3, TINY_VOCAB, (2, 5))
    mask = np.ones_like(ids)
    with torch.no_grad():
        reference = wrapped(input_ids=torch.from_numpy(ids)).logits.numpy()
    logits = OnnxCausalLM(result.model_path).step(ids, mask)[0]
    assert np.abs(logits - reference).max() <= 1e-4 * np.abs(reference).max()
