"""The per-layer adapter math of ShadowPEFT (``FORMAT.md`` steps 2 and 3).

Notation: the base has L decoder layers and hidden size H; adapter slot ``j = 0 .. L-2``
belongs to base layer ``i = j + 1`` (layer 0 has no slot). Shapes: hidden and shadow states
are ``[batch, seq, H]`` float tensors. Parameter names are the checkpoint keys of
``shadow-peft`` 0.1.x (``shadow_injection_model.injection_downs`` etc.).
"""

from __future__ import annotations

import torch
from torch import nn

#: Std of the normal init of the injection down-projection D (FORMAT.md step 2).
INJECTION_INIT_STD = 0.02


class ShadowInjectionModel(nn.Module):
    """Injection before base layer ``j + 1`` (FORMAT.md step 2).

    ``h' = h + alpha * (dropout((h - s) @ D[j]) @ U[j])`` with ``D`` of shape ``[L-1, H, k]``
    drawn from N(0, 0.02) and ``U`` of shape ``[L-1, k, H]`` initialised to zeros, so a fresh
    adapter leaves the base output unchanged.
    """

    def __init__(
        self,
        *,
        num_slots: int,
        hidden_size: int,
        injection_hidden_size: int,
        alpha: float,
        dropout: float,
    ) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.injection_downs = nn.Parameter(torch.empty(num_slots, hidden_size, injection_hidden_size))
        self.injection_ups = nn.Parameter(torch.zeros(num_slots, injection_hidden_size, hidden_size))
        nn.init.normal_(self.injection_downs, mean=0.0, std=INJECTION_INIT_STD)
        self.dropout = nn.Dropout(dropout)

    @property
    def num_slots(self) -> int:
        return self.injection_downs.shape[0]

    def forward(self, hidden: torch.Tensor, shadow: torch.Tensor, slot: int) -> torch.Tensor:
        """Return the injected hidden state ``[batch, seq, H]`` for adapter ``slot``."""
        down = self.injection_downs[slot].to(hidden.dtype)
        up = self.injection_ups[slot].to(hidden.dtype)
        delta = self.dropout((hidden - shadow.to(hidden.dtype)) @ down) @ up
        return hidden + self.alpha * delta


def _gate(hidden_size: int, gate_hidden_size: int) -> nn.Sequential:
    # G_j: Linear(H, g) -> SiLU -> Linear(g, H) -> Sigmoid; indices 0 and 2 are the weights.
    return nn.Sequential(
        nn.Linear(hidden_size, gate_hidden_size, bias=False),
        nn.SiLU(),
        nn.Linear(gate_hidden_size, hidden_size, bias=False),
        nn.Sigmoid(),
    )


def _transform(hidden_size: int, gate_hidden_size: int, dropout: float) -> nn.Sequential:
    # T_j: Linear(H, g) -> SiLU -> Dropout -> Linear(g, H); indices 0 and 3 are the weights.
    return nn.Sequential(
        nn.Linear(hidden_size, gate_hidden_size, bias=False),
        nn.SiLU(),
        nn.Dropout(dropout),
        nn.Linear(gate_hidden_size, hidden_size, bias=False),
    )


class ShadowUpdateModel(nn.Module):
    """Shadow-state update after base layer ``j + 1`` (FORMAT.md step 3).

    ``x = LayerNorm(h_out)``; ``s' = s + G_j(x) * (T_j(x) - s)``. One LayerNorm (weight and
    bias) is shared by all slots.
    """

    def __init__(self, *, num_slots: int, hidden_size: int, gate_hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.update_gates = nn.ModuleList([_gate(hidden_size, gate_hidden_size) for _ in range(num_slots)])
        self.update_transforms = nn.ModuleList(
            [_transform(hidden_size, gate_hidden_size, dropout) for _ in range(num_slots)]
        )
        self.hidden_norm = nn.LayerNorm(hidden_size)

    @property
    def num_slots(self) -> int:
        return len(self.update_gates)

    def forward(self, hidden_out: torch.Tensor, shadow: torch.Tensor, slot: int) -> torch.Tensor:
        """Return the updated shadow state ``[batch, seq, H]`` for adapter ``slot``."""
        x = self.hidden_norm(hidden_out)
        gate = self.update_gates[slot](x)
        target = self.update_transforms[slot](x)
        return shadow + gate * (target - shadow)


def adapter_parameter_count(num_layers: int, hidden_size: int, injection_hidden_size: int, gate_hidden_size: int) -> int:
    """Parameters of injection + update for a base of ``num_layers`` layers.

    ``(L-1) * H * k * 2`` (D and U) + ``(L-1) * 4 * H * g`` (two Linears in G and in T)
    + ``2 * H`` (the shared LayerNorm).
    """
    slots = num_layers - 1
    return (
        slots * hidden_size * injection_hidden_size * 2
        + slots * 4 * hidden_size * gate_hidden_size
        + 2 * hidden_size
    )
