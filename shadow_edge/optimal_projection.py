"""Least-squares initialisation of a hidden projection between two LM heads.

Used by ``AutoModelForCausalLMWithHiddenProjection.wrap(..., init_optimal_projection=True)``
(the seed README's "pseudo-inverse recipe"), solved by least squares instead of forming an
explicit pseudo-inverse (issue 2, "Better than the original").
"""

from __future__ import annotations

import torch

from .errors import ConfigError


def solve_optimal_projection(
    target_head_weight: torch.Tensor, reference_head_weight: torch.Tensor
) -> torch.Tensor:
    """Least-squares projection P (``[H, Hs]``) minimising ``||W_t @ P - W_r||_F``.

    W_t is the target (large) head's weight ``[V, H]``, W_r the reference (small) head's
    weight ``[V, Hs]``. Then ``lm_head(P @ h)`` approximates ``reference_head(h)`` for every
    shadow hidden state h. The Frobenius objective separates into Hs ordinary least-squares
    problems, one per column of W_r (Golub & Van Loan, *Matrix Computations*, 4th ed.,
    §5.3); ``torch.linalg.lstsq`` solves them together. On CPU the LAPACK ``gelsd`` driver
    (SVD based) returns the minimum-norm solution, so a rank-deficient W_t gives the same P
    as ``pinv(W_t) @ W_r`` without forming the pseudo-inverse; on other devices the default
    driver (QR, full-rank W_t required) is used.

    Args:
        target_head_weight: ``[V, H]``, any float dtype.
        reference_head_weight: ``[V, Hs]``, any float dtype, same V.

    Returns:
        ``[H, Hs]`` float32 tensor on the target's device (the projection's ``weight``).

    Raises:
        ConfigError: the inputs are not 2-D or their vocabulary sizes differ.
    """
    if target_head_weight.ndim != 2 or reference_head_weight.ndim != 2:
        raise ConfigError(
            "lm_head and reference_lm_head weights must be 2-D [vocab, hidden]; got shapes "
            f"{tuple(target_head_weight.shape)} and {tuple(reference_head_weight.shape)}."
        )
    if target_head_weight.shape[0] != reference_head_weight.shape[0]:
        raise ConfigError(
            f"lm_head has vocab size {target_head_weight.shape[0]} but reference_lm_head has "
            f"{reference_head_weight.shape[0]}; both heads must score the same vocabulary."
        )
    a = target_head_weight.detach().float()
    b = reference_head_weight.detach().float().to(a.device)
    driver = "gelsd" if a.device.type == "cpu" else None
    return torch.linalg.lstsq(a, b, driver=driver).solution
