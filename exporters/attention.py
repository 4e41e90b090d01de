"""Fused attention for export: one ``scaled_dot_product_attention`` call per layer.

From opset 23 the torch.onnx dynamo exporter writes ``F.scaled_dot_product_attention`` as the
ONNX ``Attention`` operator (https://onnx.ai/onnx/operators/onnx__Attention.html), which
takes the key/value heads as they are when ``q_num_heads`` is a multiple of
``kv_num_heads``. transformers' own "sdpa" path repeats the key/value heads first
(``repeat_kv``: Unsqueeze + Expand + Reshape of the whole cache at every step) whenever a
mask is given, and a decomposed opset-18 graph spells the softmax out in ~20 nodes per layer.

:func:`fused_attention` switches a backbone to :func:`grouped_sdpa_attention` for the time of
the export (registered with transformers' ``AttentionInterface`` under
:data:`ATTENTION_NAME`, with the sdpa boolean mask). The mask is the model's own padding +
causal (+ sliding window) mask, so left-padded rows stay exact. Measured on the 2-layer
SmolLM2 shadow (benchmarks/README.md): 200 -> 102 nodes, int4 decode +26%.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .errors import ExportError

#: Name under which :func:`grouped_sdpa_attention` is registered in transformers.
ATTENTION_NAME = "shadow_edge_grouped_sdpa"
#: First opset with the ``Attention``, ``RMSNormalization`` and ``RotaryEmbedding`` operators.
FUSED_ATTENTION_MIN_OPSET = 23


def grouped_sdpa_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor,
                           value: torch.Tensor, attention_mask: torch.Tensor | None,
                           dropout: float = 0.0, scaling: float | None = None, **kwargs):
    """transformers attention function: SDPA with ``enable_gqa`` when heads are grouped.

    Args:
        query: [batch, heads, sequence, head_dim]; key/value: [batch, kv_heads,
            total_sequence, head_dim] (past already concatenated by the cache).
        attention_mask: bool [batch, 1, sequence, total_sequence] (True = attend) or an
            additive float mask, built by transformers' sdpa mask function.

    Returns:
        ``(attention output [batch, sequence, heads, head_dim], None)``.

    Raises:
        ExportError: no mask (the export always needs one: padding and past length are
            dynamic), or a feature SDPA cannot express (logit soft-capping, position bias).
    """
    if kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None:
        raise ExportError("this architecture needs attention soft-capping or a position bias, "
                          "which the fused attention export does not support; use --opset 18")
    if attention_mask is None:
        raise ExportError("the fused attention export got no attention mask; use --opset 18 "
                          "and report the architecture")
    grouped = query.shape[1] != key.shape[1]
    output = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=0.0, scale=scaling,
        enable_gqa=grouped,
    )
    return output.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register :func:`grouped_sdpa_attention` (and the sdpa mask) with transformers; return
    its name. Idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, grouped_sdpa_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    return ATTENTION_NAME


def _configs(model: nn.Module) -> list:
    """Every distinct transformers config reachable from ``model``'s submodules."""
    seen, configs = set(), []
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation") and id(config) not in seen:
            seen.add(id(config))
            configs.append(config)
    return configs


@contextmanager
def fused_attention(model: nn.Module):
    """Run ``model`` (its HF backbone) with :func:`grouped_sdpa_attention` inside the block,
    then restore every config's attention implementation, also on error."""
    name = register()
    configs = _configs(model)
    saved = [config._attn_implementation for config in configs]
    try:
        for config in configs:
            config._attn_implementation = name
        yield model
    finally:
        for config, value in zip(configs, saved):
            config._attn_implementation = value
