"""Last-token pooling for sequence classification, correct under left and right padding.

``shadow-peft`` 0.1.x pools position ``attention_mask.sum(-1) - 1``, which is wrong under
left padding (FORMAT.md). Here the pooled position is the index of the last 1 in each row.
"""

from __future__ import annotations

import torch


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-padding position of each row.

    Args:
        attention_mask: ``[batch, seq]`` with 1 (or True) for tokens and 0 for padding.

    Returns:
        int64 ``[batch]``. A row without any token maps to its last position (``seq - 1``).

    Example: ``[[0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 0, 0]]`` -> ``[3, 3, 1]``.
    """
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [batch, seq], got shape {tuple(attention_mask.shape)}.")
    seq = attention_mask.shape[1]
    positions = torch.arange(seq, device=attention_mask.device).expand_as(attention_mask)
    present = attention_mask != 0
    index = torch.where(present, positions, torch.full_like(positions, -1)).max(dim=1).values
    return torch.where(index < 0, torch.full_like(index, seq - 1), index)


def pool_last_token(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Hidden state of the last non-padding token of each row.

    Args:
        hidden: ``[batch, seq, H]``.
        attention_mask: ``[batch, seq]`` or ``None`` (then the last position is used).

    Returns:
        ``[batch, H]``, same dtype as ``hidden``.
    """
    if attention_mask is None:
        return hidden[:, -1, :]
    index = last_token_index(attention_mask[:, -hidden.shape[1]:]).to(hidden.device)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
