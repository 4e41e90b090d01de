"""Nothing in the frozen base changes during training, whatever modules_to_save names: a
trainable base head trains as a separate copy (PEFT's ModulesToSaveWrapper idea), also
when the head is tied to the input embeddings (SmolLM2, Gemma, Qwen2.5-0.5B)."""

from __future__ import annotations

import pytest
import torch

from shadow_edge import (
    ShadowConfig,
    ShadowForCausalLM,
    ShadowForSequenceClassification,
    get_shadow_model,
)
from tests.core.shadow_helpers import causal_base, randomize_adapter, seq_cls_base, token_batch


def _snapshot(base):
    """Every base parameter (tied ones once) and a copy of its values, before wrapping."""
    return [(name, p, p.detach().clone()) for name, p in base.named_parameters()]


def _train(model, steps: int = 3):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    model.train()
    for step in range(steps):
        ids = token_batch(2, 6, seed=step)
        labels = ids if isinstance(model, ShadowForCausalLM) else torch.tensor([0, 2])
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _assert_unchanged(snapshot):
    moved = [name for name, p, before in snapshot if not torch.equal(p.detach(), before)]
    assert moved == []


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("modules_to_save", [["lm_head"], ["lm_head", "shadow_lm_head"],
                                             ["shadow_lm_head"], []])
def test_causal_lm_training_leaves_every_base_parameter_bitwise_unchanged(tied, modules_to_save):
    base = causal_base("llama", tie_word_embeddings=tied)
    embeddings = base.get_input_embeddings().weight
    assert (base.lm_head.weight is embeddings) == tied
    snapshot = _snapshot(base)
    original_head = base.lm_head
    peft = get_shadow_model(base, ShadowConfig(dropout=0.0, modules_to_save=modules_to_save))
    randomize_adapter(peft)
    model = ShadowForCausalLM(peft)
    _train(model)
    _assert_unchanged(snapshot)  # the case: one step moved tied embeddings by 0.58
    before = {name: values for name, _, values in snapshot}
    head_name = "model.embed_tokens.weight" if tied else "lm_head.weight"
    assert torch.equal(original_head.weight, before[head_name])
    if "lm_head" in modules_to_save:  # a trained copy, used by the base's forward and saved
        assert model.lm_head is base.lm_head and model.lm_head is not original_head
        assert model.lm_head.weight.data_ptr() != embeddings.data_ptr()
        assert not torch.equal(model.lm_head.weight, original_head.weight)
        assert "lm_head.weight" in model.state_dict()
    else:
        assert model.lm_head is original_head


@pytest.mark.parametrize("modules_to_save", [[], ["classifier_head"], ["shadow_classifier_head"]])
def test_classifier_training_leaves_the_base_head_unchanged(modules_to_save):
    base = seq_cls_base("llama", num_labels=3)
    snapshot = _snapshot(base)
    original_head = base.score
    model = ShadowForSequenceClassification(
        get_shadow_model(base, ShadowConfig(dropout=0.0, modules_to_save=modules_to_save)))
    _train(model)
    _assert_unchanged(snapshot)
    trains_base_head = modules_to_save != ["shadow_classifier_head"]  # [] = both by default
    assert (model.classifier_head is not original_head) == trains_base_head
    if trains_base_head:
        assert not torch.equal(model.classifier_head.weight, original_head.weight)


def test_trained_copy_round_trips_through_a_checkpoint(tmp_path):
    base = causal_base("llama", tie_word_embeddings=True)
    peft = get_shadow_model(base, ShadowConfig(dropout=0.0, modules_to_save=["lm_head"]))
    model = ShadowForCausalLM(peft)
    _train(model, steps=1)
    model.save_pretrained(tmp_path / "ckpt")
    fresh = causal_base("llama", tie_word_embeddings=True)
    snapshot = _snapshot(fresh)
    loaded = ShadowForCausalLM.from_pretrained(fresh, tmp_path / "ckpt")
    _assert_unchanged(snapshot)  # loading the saved head does not write into the base
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    ids = token_batch(1, 5)
    model.eval()
    torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
