"""HF Trainer: adapter-only checkpoints, resume, gradient checkpointing (the seed's last usage)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import Trainer, TrainingArguments

from shadow_edge import (
    CheckpointError,
    ShadowConfig,
    ShadowForCausalLM,
    ShadowForSequenceClassification,
    get_shadow_model,
)
from tests.core.shadow_helpers import causal_base, seq_cls_base, token_batch


class TokenDataset(torch.utils.data.Dataset):
    def __init__(self, n=8, seq=8):
        self.ids = token_batch(n, seq, seed=21)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.ids[i]}


def new_model():
    return ShadowForCausalLM(get_shadow_model(causal_base("llama"), ShadowConfig(dropout=0.0)), shadow_loss_weight=0.05)


def args(out, max_steps, **kw):
    return TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=2, max_steps=max_steps, save_steps=2,
        learning_rate=5e-3, logging_steps=1, report_to=[], use_cpu=True, seed=0, dataloader_num_workers=0,
        **kw,
    )


def adapter_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_trainer_saves_adapter_only_and_resume_restores_weights(tmp_path):
    model = new_model()
    trainer = Trainer(model=model, args=args(tmp_path, 4), train_dataset=TokenDataset())
    result = trainer.train()
    assert math.isfinite(result.training_loss)
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    final = adapter_state(model)

    saved = load_file(tmp_path / "checkpoint-2" / "model.safetensors")
    assert set(saved) == set(final)  # adapter keys only, no base weights
    assert not any(k.startswith(("model.", "lm_head")) for k in saved)

    resumed = new_model()
    assert not torch.equal(resumed.state_dict()["shadow_injection_model.injection_ups"],
                           final["shadow_injection_model.injection_ups"])
    trainer2 = Trainer(model=resumed, args=args(tmp_path, 4), train_dataset=TokenDataset())
    trainer2.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert trainer2.state.global_step == 4
    for key, value in resumed.state_dict().items():
        torch.testing.assert_close(value, final[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
def test_trainer_with_gradient_checkpointing_trains(tmp_path):
    model = new_model()
    trainer = Trainer(model=model, args=args(tmp_path, 2, gradient_checkpointing=True), train_dataset=TokenDataset())
    before = model.state_dict()["shadow_injection_model.injection_ups"].clone()
    trainer.train()
    assert model.is_gradient_checkpointing
    assert not torch.equal(before, model.state_dict()["shadow_injection_model.injection_ups"])


def test_seq_cls_state_dict_holds_heads_and_loads_strictly():
    model = ShadowForSequenceClassification(get_shadow_model(seq_cls_base("qwen3"), ShadowConfig()))
    state = model.state_dict()
    assert {"classifier_head.weight", "shadow_classifier_head.weight"} <= set(state)
    other = ShadowForSequenceClassification(get_shadow_model(seq_cls_base("qwen3", seed=4), ShadowConfig()))
    result = other.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    torch.testing.assert_close(other.shadow_classifier_head.weight, model.shadow_classifier_head.weight)
    partial = dict(state)
    partial.pop("classifier_head.weight")
    with pytest.raises(CheckpointError, match="classifier_head.weight"):
        other.load_state_dict(partial)
    # Trainer passes strict=False: the difference is reported, not dropped silently
    assert other.load_state_dict(partial, strict=False).missing_keys == ["classifier_head.weight"]
