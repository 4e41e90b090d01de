"""Positions and last-token pooling from an attention mask: the one torch definition.

The core (training, ``generate``, encoders' absolute positions) and the exporters (the traced
ONNX graph) both use these, so the graph computes exactly what the torch reference does. The
runtime's numpy counterpart is ``runtime.generation.positions_from_mask`` (the runtime never
imports torch).

- Positions are ``cumsum(attention_mask) - 1`` clipped at 0 (docs/DESIGN.md), so a
  left-padded row gets the positions it has alone.
- The pooled position is the index of the last 1 in each row, right under left and right
  padding (``shadow-peft`` 0.1.x pools ``attention_mask.sum(-1) - 1``, wrong under left
  padding; FORMAT.md). A row without any token pools position 0, as transformers'
  ``*ForSequenceClassification`` does (``argmax`` of ``arange * mask``).
"""

from __future__ import annotations

import torch


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``cumsum(attention_mask) - 1`` clipped at 0.

    Args:
        attention_mask: ``[batch, seq]`` with 1 (or True) for tokens and 0 for padding.

    Returns:
        int64 ``[batch, seq]``, e.g. ``[[0, 0, 1, 1]]`` -> ``[[0, 0, 0, 1]]``.
    """
    return (attention_mask.to(torch.int64).cumsum(-1) - 1).clamp(min=0)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-padding position of each row.

    Computed as ``max(arange(seq) * mask)`` (ONNX: Mul + ReduceMax on int64, no ArgMax).

    Args:
        attention_mask: ``[batch, seq]`` with 1 (or True) for tokens and 0 for padding.

    Returns:
        int64 ``[batch]``. A row without any token maps to 0.

    Raises:
        ValueError: the mask is not 2-D.

    Example: ``[[0, 0, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]]`` -> ``[3, 1, 0]``.
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [batch, seq], got shape {tuple(attention_mask.shape)}.")
    mask = (attention_mask != 0).to(torch.int64)
    positions = torch.arange(mask.shape[-1], dtype=torch.int64, device=mask.device)
    return (positions * mask).amax(dim=-1)


def pool_last_token(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Hidden state of the last non-padding token of each row (a gather, traceable to ONNX).

    Args:
        hidden: ``[batch, seq, H]``.
        attention_mask: ``[batch, seq]`` or, with a KV cache, ``[batch, past + seq]`` (its
            last ``seq`` columns are used); ``None`` pools the last position.

    Returns:
        ``[batch, H]``, same dtype as ``hidden``.
    """
    if attention_mask is None:
        return hidden[:, -1, :]
    index = last_token_index(attention_mask[:, -hidden.shape[1]:]).to(hidden.device)
    index = index.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
    return torch.gather(hidden, 1, index).squeeze(1)
