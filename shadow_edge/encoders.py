"""Bidirectional encoder bases: the BERT (incl. MiniLM), DistilBERT and RoBERTa families.

ShadowPEFT's equations (FORMAT.md steps 1-6) act on each position, so they apply to encoder
layers unchanged: the injection runs before encoder layer ``i >= 1`` and the update after
it, as for decoders. What differs, and lives here:

- **Detection** (:func:`is_encoder_config`): transformers maps the model type to a
  masked-LM model (``MODEL_FOR_MASKED_LM_MAPPING_NAMES``) and the config is not an
  encoder-decoder. Reads a config object or a parsed ``config.json`` dict, so the exporters
  can tell an encoder folder before loading any weights.
- **Supported families** (:data:`ENCODER_POSITIONS`): those whose position ids we know how
  to derive from the padding mask. Other encoders are refused with a clear error.
- **Position ids from the mask** (:func:`encoder_position_ids`), so a left-padded row gives
  the same result as the row alone: absolute-position families count real tokens from 0
  (``cumsum(mask) - 1``); the RoBERTa family counts from ``padding_idx + 1`` and puts
  padding at ``padding_idx``, as ``RobertaEmbeddings.create_position_ids_from_input_ids``
  does from the token ids. For right-padded or unpadded rows both equal transformers'
  defaults.
- **token_type_ids** go to a backbone whose ``forward`` takes them (BERT, RoBERTa), and are
  left out for one that has none (DistilBERT).
- **No KV cache**: every position attends to every other one.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .errors import ConfigError
from .pooling import positions_from_mask

#: How each supported encoder family numbers its positions: ``"absolute"`` (0, 1, ... over
#: real tokens) or ``"padding_offset"`` (RoBERTa: ``padding_idx + 1``, ... ; padding at
#: ``padding_idx``; see the module docstring).
ENCODER_POSITIONS = {
    "bert": "absolute",
    "distilbert": "absolute",
    "roberta": "padding_offset",
    "xlm-roberta": "padding_offset",
    "camembert": "padding_offset",
}
#: Where an encoder backbone keeps its layers (BERT/RoBERTa, DistilBERT).
ENCODER_LAYER_PATHS = (("encoder", "layer"), ("transformer", "layer"))


def _field(config: Any, name: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


@functools.cache
def _masked_lm_model_types() -> frozenset[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return frozenset(MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def is_encoder_config(config: Any) -> bool:
    """Whether ``config`` (an HF config or a ``config.json`` dict) is a bidirectional encoder.

    True for the model types transformers maps to a masked-LM model (BERT, DistilBERT,
    RoBERTa, ELECTRA, ...) unless the config is an encoder-decoder (BART). Decoder-only
    models (Llama, GPT-2, Gemma, ...) are False.
    """
    model_type = _field(config, "model_type")
    if model_type in ENCODER_POSITIONS:
        return True
    return model_type in _masked_lm_model_types() and not _field(config, "is_encoder_decoder", False)


def check_supported_encoder(config: Any) -> str:
    """Return the position scheme of a supported encoder config (see :data:`ENCODER_POSITIONS`).

    Raises:
        ConfigError: the encoder family is not supported.
    """
    model_type = _field(config, "model_type")
    scheme = ENCODER_POSITIONS.get(model_type)
    if scheme is None:
        raise ConfigError(
            f"the encoder type {model_type!r} is not supported; ShadowPEFT encoder bases are "
            f"{sorted(ENCODER_POSITIONS)}. Use one of these, or a decoder-only base."
        )
    return scheme


def encoder_position_ids(config: Any, attention_mask: torch.Tensor) -> torch.LongTensor:
    """Position ids of an encoder from its padding mask (module docstring).

    Args:
        config: the backbone's HF config (a supported encoder).
        attention_mask: int or bool ``[batch, seq]``, 1 for tokens and 0 for padding.

    Returns:
        int64 ``[batch, seq]``.

    Example (absolute): mask ``[[0, 1, 1], [1, 1, 0]]`` -> ``[[0, 0, 1], [0, 1, 1]]``;
    (RoBERTa, padding_idx 1) -> ``[[1, 2, 3], [2, 3, 1]]``.
    """
    if check_supported_encoder(config) == "padding_offset":
        mask = attention_mask.to(torch.int64)
        padding_idx = int(_field(config, "pad_token_id", 1) or 0)
        return mask.cumsum(-1) * mask + padding_idx
    return positions_from_mask(attention_mask)


@functools.cache
def _forward_parameters(module_type: type) -> frozenset[str]:
    return frozenset(inspect.signature(module_type.forward).parameters)


def encoder_inputs(
    module: nn.Module,
    config: Any,
    *,
    attention_mask: torch.Tensor | None,
    position_ids: torch.LongTensor | None,
    token_type_ids: torch.LongTensor | None,
) -> dict[str, Any]:
    """Keyword arguments (besides ids/embeddings) for an encoder ``module``'s forward.

    ``position_ids`` default to :func:`encoder_position_ids` of ``attention_mask``;
    ``token_type_ids`` are passed only when ``module.forward`` takes them.
    """
    kwargs: dict[str, Any] = {"attention_mask": attention_mask}
    if position_ids is None and attention_mask is not None:
        position_ids = encoder_position_ids(config, attention_mask)
    kwargs["position_ids"] = position_ids
    if token_type_ids is not None and "token_type_ids" in _forward_parameters(type(module)):
        kwargs["token_type_ids"] = token_type_ids
    return kwargs


def takes_token_type_ids(backbone: nn.Module) -> bool:
    """Whether the backbone uses ``token_type_ids``: its forward takes them and its config has
    more than one type (``type_vocab_size > 1``; RoBERTa checkpoints have 1)."""
    return ("token_type_ids" in _forward_parameters(type(backbone))
            and int(getattr(backbone.config, "type_vocab_size", 0) or 0) > 1)


def drop_pooler(backbone: nn.Module) -> None:
    """Remove a BERT-style ``pooler`` from a shadow backbone (in place).

    The shadow never uses its own pooler: the shadow classifier head carries a copy of the
    base's (``encoder_heads.PoolerHead``). Leaving it would add untrained, gradient-free
    weights to the adapter.
    """
    if isinstance(getattr(backbone, "pooler", None), nn.Module):
        backbone.pooler = None


__all__ = [
    "ENCODER_LAYER_PATHS",
    "ENCODER_POSITIONS",
    "check_supported_encoder",
    "drop_pooler",
    "encoder_inputs",
    "encoder_position_ids",
    "is_encoder_config",
    "takes_token_type_ids",
]
