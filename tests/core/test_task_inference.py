"""The task of a checkpoint comes from what it holds; ``task=`` is an override, not a must.

Why: shadow-peft 0.1.1 records no ``task_type``, so its classification checkpoints were
loaded as causal LMs and failed ("holds heads ['classifier_head', ...] that
ShadowForCausalLM does not have") unless the user passed the task.
"""

from __future__ import annotations

import importlib

import pytest
import torch

import shadow_edge
from shadow_edge.errors import CheckpointError
from shadow_edge.task_inference import (
    CAUSAL_LM,
    FROM_BASE,
    HEADS,
    SEQ_CLS,
    checkpoint_task_type,
    infer_task_type,
    task_from_architectures,
)
from tests.core.shadow_helpers import causal_base, clone_base, seq_cls_base, token_batch


def test_head_names_are_the_task_wrappers():
    assert HEADS[CAUSAL_LM] == shadow_edge.ShadowForCausalLM.head_names
    assert HEADS[SEQ_CLS] == shadow_edge.ShadowForSequenceClassification.head_names


@pytest.mark.parametrize(("evidence", "task", "why"), [
    ({"task_type": "SEQ_CLS", "saved_heads": ["lm_head"]}, SEQ_CLS, "task_type in its config"),
    ({"task_type": None, "saved_heads": ["shadow_classifier_head"]}, SEQ_CLS, "the heads it holds"),
    ({"task_type": None, "saved_heads": ["shadow_lm_head"]}, CAUSAL_LM, "the heads it holds"),
    ({"task_type": None, "modules_to_save": ["classifier_head"]}, SEQ_CLS, "its modules_to_save"),
    ({"task_type": None, "base_architectures": ["Qwen3ForSequenceClassification"]}, SEQ_CLS,
     FROM_BASE),
    ({"task_type": None, "base_architectures": ["GPT2LMHeadModel"]}, CAUSAL_LM, FROM_BASE),
    ({"task_type": None, "base_architectures": ["LlamaModel"]}, None, "nothing"),
])
def test_infer_task_type_takes_the_strongest_evidence(evidence, task, why):
    assert infer_task_type(**evidence) == (task, why)


def test_heads_of_both_tasks_are_an_error():
    with pytest.raises(CheckpointError, match="both tasks"):
        infer_task_type(task_type=None, saved_heads=["lm_head", "classifier_head"])


def test_architectures_without_a_task_head_say_nothing():
    assert task_from_architectures(None) is None
    assert task_from_architectures(["MistralForCausalLM"]) == CAUSAL_LM


@pytest.fixture(scope="module")
def shadow_peft():
    """The original package, for this module only (see test_compat_shadow_peft.py)."""
    yield importlib.import_module("shadow_peft")
    shadow_edge.register_auto_classes(override=True)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_shadow_peft_classifier_checkpoint_loads_without_task(tmp_path, shadow_peft):
    base = seq_cls_base("llama")
    base.save_pretrained(tmp_path / "base")
    theirs = shadow_peft.ShadowForSequenceClassification(
        shadow_peft.get_shadow_model(clone_base(base), shadow_peft.ShadowConfig(num_shadow_layers=1)))
    with torch.no_grad():
        theirs.shadow_classifier_head.weight.add_(1.0)
    theirs.eval().save_pretrained(tmp_path / "ckpt")
    assert checkpoint_task_type(tmp_path / "ckpt") == (SEQ_CLS, "the heads it holds")
    ours = shadow_edge.load_shadow_checkpoint(tmp_path / "ckpt", base=str(tmp_path / "base"))
    assert isinstance(ours, shadow_edge.ShadowForSequenceClassification)
    ids = token_batch(2, 5)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        want = theirs(input_ids=ids, attention_mask=mask)
        got = ours(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(got.shadow_logits, want.shadow_logits, rtol=0, atol=1e-5)


def test_a_base_missing_weights_is_refused(tmp_path):
    """Strict base loading: a weight the base folder lacks would be random."""
    from safetensors.torch import load_file, save_file

    base = causal_base("llama")
    model = shadow_edge.ShadowForCausalLM(shadow_edge.get_shadow_model(
        base, shadow_edge.ShadowConfig(num_shadow_layers=1)))
    model.save_pretrained(tmp_path / "ckpt")
    base.save_pretrained(tmp_path / "base")
    state = load_file(str(tmp_path / "base" / "model.safetensors"))
    state.pop("model.layers.0.self_attn.o_proj.weight")
    save_file(state, str(tmp_path / "base" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing keys: model.layers.0.self_attn.o_proj"):
        shadow_edge.load_shadow_checkpoint(tmp_path / "ckpt", base=str(tmp_path / "base"))


def test_classifier_on_a_causal_base_needs_its_heads_in_the_checkpoint(tmp_path):
    """A SEQ_CLS checkpoint on a causal-LM base folder: the base has no ``score``, so the
    checkpoint must bring both classifier heads (then the missing key is expected)."""
    causal = causal_base("llama")
    causal.save_pretrained(tmp_path / "base")
    model = shadow_edge.ShadowForSequenceClassification(shadow_edge.get_shadow_model(
        seq_cls_base("llama"), shadow_edge.ShadowConfig(num_shadow_layers=1)))
    model.save_pretrained(tmp_path / "ckpt")
    loaded = shadow_edge.load_shadow_checkpoint(tmp_path / "ckpt", base=str(tmp_path / "base"))
    torch.testing.assert_close(loaded.shadow_classifier_head.weight,
                               model.shadow_classifier_head.weight)
    (tmp_path / "ckpt" / "shadow_modules.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing keys: score.weight"):
        shadow_edge.load_shadow_checkpoint(tmp_path / "ckpt", base=str(tmp_path / "base"))
