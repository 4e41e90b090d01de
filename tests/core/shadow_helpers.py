"""Builders shared by the core tests: tiny bases, randomised adapters, parameter counts."""

from __future__ import annotations

import torch
import transformers as tf

from tests.tiny_models import tiny_config

SEQ_CLS_ARCHS = ("qwen3", "llama")


def causal_base(arch: str, *, seed: int = 0, **config_overrides) -> tf.PreTrainedModel:
    """A tiny random ``*ForCausalLM`` in eval mode (vocab 256, hidden 64, 4 layers by default)."""
    torch.manual_seed(seed)
    return tf.AutoModelForCausalLM.from_config(tiny_config(arch, **config_overrides)).eval()


def seq_cls_base(arch: str, *, num_labels: int = 3, seed: int = 0, **config_overrides) -> tf.PreTrainedModel:
    """A tiny random ``*ForSequenceClassification`` with ``num_labels`` labels."""
    torch.manual_seed(seed)
    cfg = tiny_config(arch, **config_overrides)
    cfg.num_labels = num_labels
    cfg.id2label = {i: f"label_{i}" for i in range(num_labels)}
    cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    return tf.AutoModelForSequenceClassification.from_config(cfg).eval()


def clone_base(model: tf.PreTrainedModel) -> tf.PreTrainedModel:
    """A fresh model of the same class and config with the same weights (an unwrapped base)."""
    fresh = type(model)(model.config)
    fresh.load_state_dict(model.state_dict())
    return fresh.eval()


@torch.no_grad()
def randomize(module: torch.nn.Module, *, seed: int = 1, std: float = 0.2) -> None:
    """Fill every parameter of ``module`` with N(0, std) noise (U starts at zero otherwise)."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in module.parameters():
        parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def randomize_adapter(peft_model, *, seed: int = 1) -> None:
    """Randomise injection, update (and projection) so the adapter changes the base output."""
    randomize(peft_model.shadow_injection_model, seed=seed)
    randomize(peft_model.shadow_update_model, seed=seed + 1)
    if peft_model.shadow_hidden_projection is not None:
        randomize(peft_model.shadow_hidden_projection, seed=seed + 2)


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def token_batch(batch: int = 2, seq: int = 7, *, seed: int = 3, low: int = 3) -> torch.LongTensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, 256, (batch, seq), generator=generator)
