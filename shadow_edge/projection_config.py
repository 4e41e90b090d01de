"""Config of the projected causal LM (``model_type = "causal_lm_with_hidden_projection"``).

Key names follow the checkpoints written by shadow-peft 0.1.x (``../shared/FORMAT.md``, "The
projected model"). The model is in ``shadow_edge.projection``.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

MODEL_TYPE = "causal_lm_with_hidden_projection"

# Backbone config fields mirrored at the top level, so HF utilities that read the outer
# config (cache construction, generation defaults) see the backbone's values. The original
# 0.1.x package writes the same keys.
_MIRRORED_FIELDS = (
    "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
    "intermediate_size", "max_position_embeddings", "rms_norm_eps", "layer_types",
    "sliding_window", "use_sliding_window", "max_window_layers", "attention_dropout",
    "bos_token_id", "eos_token_id", "pad_token_id",
)

class AutoModelForCausalLMWithHiddenProjectionConfig(PretrainedConfig):
    """Config of :class:`AutoModelForCausalLMWithHiddenProjection`.

    Args:
        shadow_model_class: backbone class as ``"module:Class"``, e.g.
            ``"transformers.models.qwen3.modeling_qwen3:Qwen3Model"``.
        shadow_model_config_class: backbone config class as ``"module:Class"``.
        shadow_model_config: the backbone's ``config.to_dict()``.
        base_hidden_size: H, the projection's output size and the head's input size.
            ``hidden_size`` is set to H as well (it is the size the head sees).
        vocab_size: V, the head's output size.
        **kwargs: other ``PretrainedConfig`` fields. Fields listed in ``_MIRRORED_FIELDS``
            default to the backbone config's values.

    Default-constructible (all fields empty) because transformers instantiates config
    classes without arguments in some save paths; the model checks the fields.
    """

    model_type = MODEL_TYPE

    def __init__(
        self,
        shadow_model_class: str = "",
        shadow_model_config_class: str = "",
        shadow_model_config: dict[str, Any] | None = None,
        base_hidden_size: int = 0,
        vocab_size: int = 0,
        **kwargs,
    ) -> None:
        backbone = dict(shadow_model_config or {})
        for key in _MIRRORED_FIELDS:
            if key in backbone and key not in kwargs:
                kwargs[key] = backbone[key]
        kwargs.setdefault("tie_word_embeddings", False)
        base_hidden_size = int(base_hidden_size or 0)
        if base_hidden_size > 0:
            kwargs["hidden_size"] = base_hidden_size
        super().__init__(**kwargs)
        self.shadow_model_class = str(shadow_model_class or "")
        self.shadow_model_config_class = str(shadow_model_config_class or "")
        self.shadow_model_config = backbone
        self.base_hidden_size = base_hidden_size
        self.vocab_size = int(vocab_size or 0)


__all__ = ["MODEL_TYPE", "AutoModelForCausalLMWithHiddenProjectionConfig"]
