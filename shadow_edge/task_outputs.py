"""The task wrappers' outputs and the causal-LM loss (FORMAT.md step 5).

The outputs are transformers' ``ModelOutput`` classes plus ``shadow_logits``; the loss is
transformers' ``ForCausalLMLoss`` definition, made safe for batches without targets and for
``logits_to_keep``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import CausalLMOutputWithPast, SequenceClassifierOutput


@dataclass
class ShadowCausalLMOutputWithPast(CausalLMOutputWithPast):
    """``CausalLMOutputWithPast`` plus ``shadow_logits`` ``[batch, seq, vocab]``."""

    shadow_logits: torch.Tensor | None = None


@dataclass
class ShadowSequenceClassifierOutput(SequenceClassifierOutput):
    """``SequenceClassifierOutput`` plus ``shadow_logits`` ``[batch, num_labels]``."""

    shadow_logits: torch.Tensor | None = None


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor,
                   positions: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy, mean over labels != -100 (HF's ``ForCausalLMLoss``).

    Args:
        logits: ``[batch, seq, vocab]``, any float dtype (computed in float32); with
            ``positions``, ``[batch, len(positions), vocab]``: the logits of those positions.
        labels: int64 ``[batch, seq]``; position t is scored by the logits at t - 1.
        positions: int64 ``[n]``, sorted positions the logits belong to (``logits_to_keep``);
            a position without a next token is ignored.

    Returns:
        A float32 scalar. With no target at all (every label -100, or one-token rows) it
        is 0, still attached to the graph, instead of the NaN of an empty mean, so one such
        batch does not turn the optimizer state into NaN.
    """
    if positions is None:
        shift_logits = logits[:, :-1, :].float()
        shift_labels = labels[:, 1:].to(logits.device)
    else:
        positions = positions.to(labels.device)
        valid = positions + 1 < labels.shape[1]
        shift_logits = logits[:, valid.to(logits.device), :].float()
        shift_labels = labels[:, positions[valid] + 1].to(logits.device)
    total = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100,
        reduction="sum",
    )
    return total / (shift_labels != -100).sum().clamp(min=1)
