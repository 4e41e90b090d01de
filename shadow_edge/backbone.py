"""Find a base model's layer stack; build an implicit shadow; prepare an explicit one.

Supported decoder layouts (the seed README's table): ``model.layers`` (Llama, Mistral,
Qwen, Gemma), ``transformer.h`` (GPT-2) and ``model.decoder.layers`` (nested decoders such
as OPT); encoder layouts (``encoders.py``): ``bert.encoder.layer`` (BERT, RoBERTa) and
``distilbert.transformer.layer``. A task model (``*ForCausalLM``,
``*ForSequenceClassification``) or a bare backbone (``LlamaModel``, ``BertModel``) may be
passed.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from .config import ShadowConfig
from .encoders import ENCODER_LAYER_PATHS, drop_pooler, is_encoder_config
from .errors import ConfigError

logger = logging.getLogger(__name__)

# Config keys (first present wins) across HF configs; GPT-2 uses n_layer/n_embd/n_head/n_inner,
# DistilBERT n_layers/dim/n_heads/hidden_dim, and both map the standard names through
# ``attribute_map``.
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model", "dim")
_OVERRIDE_KEYS = {
    "shadow_intermediate_size": ("intermediate_size", "n_inner", "ffn_dim", "hidden_dim"),
    "shadow_num_attention_heads": ("num_attention_heads", "n_head", "n_heads"),
    "shadow_num_key_value_heads": ("num_key_value_heads", "num_kv_heads"),
    "shadow_head_dim": ("head_dim",),
}
# Config lists with one entry per layer; cut to the shadow's layer count.
_PER_LAYER_KEYS = ("layer_types", "no_rope_layers")


@dataclass
class DecoderStack:
    """Where the decoder layers live: ``backbone`` (e.g. ``LlamaModel``) and its ``layers``."""

    backbone: nn.Module
    layers: nn.ModuleList


def get_backbone(model: nn.Module) -> PreTrainedModel:
    """Return the transformer backbone of ``model`` (``LlamaModel`` for ``LlamaForCausalLM``).

    The backbone is the module whose forward returns ``last_hidden_state``: ``model.model``,
    ``model.transformer``, the model's ``base_model_prefix`` attribute (``model.bert``,
    ``model.distilbert``), or ``model`` itself when it is already a backbone.

    Raises:
        ConfigError: no backbone with a layer stack is found.
    """
    for attr in ("model", "transformer", getattr(model, "base_model_prefix", None) or "model"):
        candidate = getattr(model, attr, None)
        if isinstance(candidate, nn.Module) and _layers_of(candidate) is not None:
            return candidate
    if _layers_of(model) is not None:
        return model
    raise ConfigError(
        f"Cannot find the layer stack of {type(model).__name__}: expected model.layers, "
        "transformer.h or model.decoder.layers (decoders), or encoder.layer / transformer.layer "
        "(BERT, RoBERTa, DistilBERT). Pass a Hugging Face decoder-only model or one of these "
        "encoders."
    )


def _layers_of(backbone: nn.Module) -> nn.ModuleList | None:
    for path in (("layers",), ("h",), ("decoder", "layers"), *ENCODER_LAYER_PATHS):
        obj = backbone
        for name in path:
            obj = getattr(obj, name, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    return None


def find_decoder_stack(model: nn.Module) -> DecoderStack:
    """Return the backbone and its decoder-layer ``ModuleList``.

    Raises:
        ConfigError: the model has none of the supported layouts.
    """
    backbone = get_backbone(model)
    layers = _layers_of(backbone)
    assert layers is not None  # get_backbone checked it
    return DecoderStack(backbone=backbone, layers=layers)


def _first_key(config: PretrainedConfig, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if key in config.to_dict() or key in getattr(config, "attribute_map", {}):
            return key
    return None


def hidden_size_of(config: PretrainedConfig) -> int:
    """Hidden size of an HF config (``hidden_size``, GPT-2's ``n_embd`` or ``d_model``)."""
    for key in _HIDDEN_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise ConfigError(f"{type(config).__name__} has no hidden_size / n_embd / d_model field.")


def num_layers_of(config: PretrainedConfig) -> int:
    """Number of decoder layers of an HF config."""
    for key in _LAYER_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise ConfigError(f"{type(config).__name__} has no num_hidden_layers / n_layer field.")


def shrink_config(config: PretrainedConfig, num_layers: int) -> PretrainedConfig:
    """Return a deep copy of ``config`` with ``num_layers`` layers and per-layer lists cut.

    ``layer_types`` (Qwen2/Qwen3) and similar per-layer lists are cut to the first
    ``num_layers`` entries; ``max_window_layers`` is clamped.
    """
    cfg = copy.deepcopy(config)
    key = _first_key(cfg, _LAYER_KEYS)
    if key is None:
        raise ConfigError(f"{type(cfg).__name__} has no num_hidden_layers / n_layer field.")
    old = num_layers_of(cfg)
    setattr(cfg, key, num_layers)
    for name in _PER_LAYER_KEYS:
        value = getattr(cfg, name, None)
        if isinstance(value, (list, tuple)) and len(value) == old:
            setattr(cfg, name, list(value)[:num_layers])
    window = getattr(cfg, "max_window_layers", None)
    if isinstance(window, int) and window > num_layers:
        cfg.max_window_layers = num_layers
    return cfg


def build_implicit_shadow(base_model: nn.Module, shadow_config: ShadowConfig) -> PreTrainedModel:
    """Build the implicit shadow: the base's backbone class with fewer layers (FORMAT.md).

    The config is a deep copy of the base backbone's, with ``num_hidden_layers =
    num_shadow_layers``, the optional size overrides applied and per-layer lists cut. The
    weights are freshly initialised (random). ``use_cache`` is left to the caller.

    Raises:
        ConfigError: an override names a field the architecture does not have (e.g.
            ``shadow_num_key_value_heads`` for GPT-2), or the new config is invalid.
    """
    backbone = get_backbone(base_model)
    cfg = shrink_config(backbone.config, shadow_config.num_shadow_layers)
    for field_name, keys in _OVERRIDE_KEYS.items():
        value = getattr(shadow_config, field_name)
        if value is None:
            continue
        key = _first_key(cfg, keys)
        if key is None:
            raise ConfigError(
                f"ShadowConfig.{field_name}={value} but {type(cfg).__name__} has none of the fields "
                f"{list(keys)}. Leave {field_name}=None for this architecture."
            )
        setattr(cfg, key, value)
    try:
        shadow = type(backbone)(cfg)
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise ConfigError(
            f"Cannot build the implicit shadow {type(backbone).__name__} from the overrides "
            f"({exc}). Check num_shadow_layers and the shadow_* size overrides."
        ) from exc
    if is_encoder_config(cfg):
        drop_pooler(shadow)
    logger.debug("built implicit shadow %s with %d layers", type(shadow).__name__, num_layers_of(cfg))
    return shadow


def input_embeddings_of(backbone: nn.Module) -> nn.Module | None:
    """The backbone's input embedding module, or ``None`` when it was removed."""
    try:
        return backbone.get_input_embeddings()
    except (NotImplementedError, AttributeError):
        return None


def remove_input_embeddings(backbone: nn.Module) -> bool:
    """Detach the input embedding module from ``backbone`` (``embed_tokens``, GPT-2's ``wte``).

    The backbone is then driven through ``inputs_embeds``. Returns ``True`` when a module
    was removed, ``False`` when there was none.
    """
    embedding = input_embeddings_of(backbone)
    if embedding is None:
        return False
    for name, module in list(backbone.named_modules()):
        if module is embedding and name:
            parent_name, _, attr = name.rpartition(".")
            parent = backbone.get_submodule(parent_name) if parent_name else backbone
            setattr(parent, attr, None)
            return True
    return False


def embedding_attribute_name(backbone: nn.Module) -> str | None:
    """Dotted name of the backbone's input embedding module (``"embed_tokens"``, ``"wte"``)."""
    embedding = input_embeddings_of(backbone)
    for name, module in backbone.named_modules():
        if module is embedding and name:
            return name
    return None


def carried_projection(shadow_model: nn.Module) -> nn.Linear | None:
    """A trained ``shadow_hidden_projection`` Linear carried by an explicit shadow, if any.

    Duck-typed: ``AutoModelForCausalLMWithHiddenProjection`` (ours or shadow-peft's) exposes
    ``.shadow_model`` (the backbone) and ``.shadow_hidden_projection``.
    """
    projection = getattr(shadow_model, "shadow_hidden_projection", None)
    return projection if isinstance(projection, nn.Linear) else None


def prepare_shadow_model(shadow_model: nn.Module, *, remove_embed_tokens: bool = False) -> PreTrainedModel:
    """Prepare an explicit shadow: keep the backbone only, optionally share embeddings.

    Args:
        shadow_model: a task model (``Qwen3ForCausalLM``), a backbone (``Qwen3Model``) or a
            projected model exposing ``.shadow_model`` (its projection is not part of the
            returned backbone; ``get_shadow_model`` reuses it separately).
        remove_embed_tokens: remove the backbone's input embeddings so the shadow is fed the
            base model's input embeddings (embedding sharing).

    Returns:
        The backbone module (its task head dropped). The module is modified in place when
        ``remove_embed_tokens`` is set.
    """
    inner = getattr(shadow_model, "shadow_model", None)
    if carried_projection(shadow_model) is not None and isinstance(inner, nn.Module):
        shadow_model = inner
    backbone = get_backbone(shadow_model)
    if is_encoder_config(backbone.config):
        drop_pooler(backbone)  # the shadow classifier head carries the base's pooler
    if remove_embed_tokens:
        remove_input_embeddings(backbone)
    return backbone
