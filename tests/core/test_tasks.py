"""Task wrappers: the seed's usage 3 and 4, modes, losses, trainable heads, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from shadow_edge import (
    ConfigError,
    ShadowConfig,
    ShadowForCausalLM,
    ShadowForSequenceClassification,
    get_shadow_model,
)
from tests.core.shadow_helpers import (
    SEQ_CLS_ARCHS,
    causal_base,
    clone_base,
    numel,
    randomize_adapter,
    seq_cls_base,
    token_batch,
)
from tests.tiny_models import ARCHITECTURES


def causal_model(arch, **config) -> ShadowForCausalLM:
    peft = get_shadow_model(causal_base(arch), ShadowConfig(**config))
    return ShadowForCausalLM(peft, inference_mode="base_shadow")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_seed_usage_3_both_modes_shapes(arch):
    model = causal_model(arch).eval()
    ids = token_batch(1, 6)
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert out.logits.shape == (1, 6, 256) and out.shadow_logits.shape == (1, 6, 256)
    model.set_inference_mode("shadow_only")
    only = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert only.logits.shape == (1, 6, 256)
    torch.testing.assert_close(only.logits, out.shadow_logits)
    torch.testing.assert_close(only.shadow_logits, only.logits)


def test_base_shadow_logits_are_the_base_and_shadow_paths():
    model = causal_model("qwen3", dropout=0.0).eval()
    base = clone_base(model.peft_model.base_model)
    ids = token_batch()
    out = model(input_ids=ids)
    # fresh adapter (U = 0): the base path equals the plain base
    torch.testing.assert_close(out.logits, base(input_ids=ids).logits, rtol=0, atol=0)
    start = model.peft_model.shadow_hidden_states(input_ids=ids)
    torch.testing.assert_close(out.shadow_logits, model.shadow_lm_head(start))


def test_shadow_only_does_not_run_the_base_layers():
    model = causal_model("llama").eval()
    model.set_inference_mode("shadow_only")
    calls = []
    handles = [layer.register_forward_hook(lambda *a: calls.append(1)) for layer in model.peft_model.decoder_layers]
    model(input_ids=token_batch())
    for handle in handles:
        handle.remove()
    assert calls == []


def test_unknown_inference_mode_raises_config_error():
    model = causal_model("llama")
    with pytest.raises(ConfigError, match="base_shadow"):
        model.set_inference_mode("shadow")
    with pytest.raises(ConfigError, match="Unknown inference mode"):
        ShadowForCausalLM(model.peft_model, inference_mode="fast")


@pytest.mark.parametrize("weight", [0.05, 1.0, 0.0])
def test_combined_causal_loss(weight):
    model = causal_model("qwen2", dropout=0.0).eval()
    model.shadow_loss_weight = weight
    randomize_adapter(model.peft_model)
    ids = token_batch()
    labels = ids.clone()
    labels[:, :2] = -100
    out = model(input_ids=ids, labels=labels)

    def ce(logits):
        return F.cross_entropy(logits[:, :-1].reshape(-1, 256), labels[:, 1:].reshape(-1), ignore_index=-100)

    torch.testing.assert_close(out.loss, ce(out.logits) + weight * ce(out.shadow_logits))
    model.set_inference_mode("shadow_only")
    torch.testing.assert_close(model(input_ids=ids, labels=labels).loss, ce(out.shadow_logits))


def test_default_shadow_loss_weight_is_0_05():
    assert causal_model("llama").shadow_loss_weight == 0.05


def test_causal_heads_frozen_by_default_and_shadow_head_is_a_copy():
    model = causal_model("llama")
    assert model.lm_head is model.peft_model.base_model.lm_head
    assert model.shadow_lm_head is not model.lm_head
    assert torch.equal(model.shadow_lm_head.weight, model.lm_head.weight)
    assert model.shadow_lm_head.weight.data_ptr() != model.lm_head.weight.data_ptr()
    assert not any(p.requires_grad for p in model.lm_head.parameters())
    assert not any(p.requires_grad for p in model.shadow_lm_head.parameters())
    assert model.saved_head_names() == []
    assert set(model.state_dict()) == set(model.peft_model.state_dict())


def test_modules_to_save_makes_the_shadow_lm_head_trainable():
    model = causal_model("llama", modules_to_save=["shadow_lm_head"])
    trainable, _ = model.get_nb_trainable_parameters()
    peft_trainable, _ = model.peft_model.get_nb_trainable_parameters()
    assert trainable == peft_trainable + 256 * 64
    assert model.saved_head_names() == ["shadow_lm_head"]
    assert "shadow_lm_head.weight" in model.state_dict()


def test_modules_to_save_with_a_head_of_the_other_task_raises():
    with pytest.raises(ConfigError, match="classifier_head"):
        causal_model("llama", modules_to_save=["classifier_head"])


@pytest.mark.parametrize("arch", SEQ_CLS_ARCHS)
def test_seed_usage_4_sequence_classification(arch):
    base = seq_cls_base(arch, num_labels=2)
    model = ShadowForSequenceClassification(get_shadow_model(base, ShadowConfig(num_shadow_layers=1))).eval()
    ids = token_batch(1, 6)
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert out.logits.shape == (1, 2) and out.shadow_logits.shape == (1, 2)
    model.set_inference_mode("shadow_only")
    only = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    torch.testing.assert_close(only.logits, out.shadow_logits)
    # both heads trainable by default; the shadow head is a copy of the base's score
    assert model.classifier_head is base.score
    assert model.saved_head_names() == ["classifier_head", "shadow_classifier_head"]
    trainable, _ = model.get_nb_trainable_parameters()
    adapter = sum(v.numel() for v in model.peft_model.state_dict().values())
    assert trainable == adapter + 2 * numel(base.score)


def test_seq_cls_modules_to_save_overrides_the_default():
    base = seq_cls_base("qwen3")
    model = ShadowForSequenceClassification(
        get_shadow_model(base, ShadowConfig(modules_to_save=["shadow_classifier_head"]))
    )
    assert not base.score.weight.requires_grad and model.shadow_classifier_head.weight.requires_grad
    assert [k for k in model.state_dict() if "classifier" in k] == ["shadow_classifier_head.weight"]


def test_seq_cls_shadow_logits_pool_the_last_real_token_under_left_padding():
    model = ShadowForSequenceClassification(get_shadow_model(seq_cls_base("llama"), ShadowConfig(dropout=0.0))).eval()
    ids = token_batch(1, 5)
    single = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    padded_ids = torch.cat([torch.zeros(1, 2, dtype=torch.long), ids], dim=1)
    padded_mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1]])
    right_ids = torch.cat([ids, torch.zeros(1, 2, dtype=torch.long)], dim=1)
    right_mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    batch = model(input_ids=torch.cat([padded_ids, right_ids]), attention_mask=torch.cat([padded_mask, right_mask]),
                  position_ids=(torch.cat([padded_mask, right_mask]).cumsum(-1) - 1).clamp(min=0))
    torch.testing.assert_close(batch.shadow_logits[0], single.shadow_logits[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(batch.shadow_logits[1], single.shadow_logits[0], rtol=1e-4, atol=1e-5)


def test_seq_cls_combined_loss():
    model = ShadowForSequenceClassification(get_shadow_model(seq_cls_base("qwen3"), ShadowConfig(dropout=0.0))).eval()
    ids, labels = token_batch(3, 5), torch.tensor([0, 2, 1])
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    expected = F.cross_entropy(out.logits, labels) + 0.05 * F.cross_entropy(out.shadow_logits, labels)
    torch.testing.assert_close(out.loss, expected)


def _train(model, batch, steps=6):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_causal_loss_decreases_and_only_adapter_weights_change(arch):
    model = causal_model(arch, dropout=0.0).train()
    base_before = {k: v.clone() for k, v in model.peft_model.base_model.state_dict().items()}
    ids = token_batch(2, 8)
    losses = _train(model, {"input_ids": ids, "labels": ids}, steps=5)
    assert losses[-1] < losses[0] - 0.05
    for key, value in model.peft_model.base_model.state_dict().items():
        assert torch.equal(value, base_before[key]), key


@pytest.mark.parametrize("arch", SEQ_CLS_ARCHS)
def test_seq_cls_loss_decreases(arch):
    model = ShadowForSequenceClassification(get_shadow_model(seq_cls_base(arch), ShadowConfig(dropout=0.0))).train()
    ids = token_batch(4, 6)
    losses = _train(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                            "labels": torch.tensor([0, 1, 2, 1])})
    assert losses[-1] < losses[0] - 0.05


def test_wrapper_exposes_hf_like_attributes():
    model = causal_model("llama")
    assert model.config is model.peft_model.base_model.config
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert model.generation_config.eos_token_id == 2
    assert model.supports_gradient_checkpointing


@pytest.mark.parametrize("mode", ["base_shadow", "shadow_only"])
def test_labels_without_any_target_give_zero_loss_not_nan(mode):
    """Why: an all -100 batch (or 1-token rows) would otherwise put NaN into AdamW's state."""
    model = causal_model("llama", dropout=0.0)
    model.set_inference_mode(mode)
    randomize_adapter(model.peft_model)
    ids = token_batch(2, 5)
    for labels, inputs in ((torch.full_like(ids, -100), ids), (ids[:, :1], ids[:, :1])):
        loss = model(input_ids=inputs, labels=labels).loss
        assert loss.item() == 0.0 and loss.requires_grad
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() and not g.any() for g in grads)
