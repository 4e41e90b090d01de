"""The projected causal LM: a shadow backbone, a hidden projection and a (large) lm_head.

``AutoModelForCausalLMWithHiddenProjection`` computes, per position,

    logits = lm_head(shadow_hidden_projection(backbone(input_ids).last_hidden_state))

with the backbone of hidden size Hs (e.g. ``Qwen3Model``), a bias-free projection Hs -> H and
a bias-free head H -> V taken from a larger base model. It is the distribution format of a
pre-trained shadow that targets a larger base, and what ``export_shadow`` returns when the
shadow and base hidden sizes differ.

File format (``../shared/FORMAT.md``, "The projected model"), identical to the original
``shadow-peft`` 0.1.x so either package reads the other's checkpoints:

- ``config.json``: ``model_type = "causal_lm_with_hidden_projection"``,
  ``shadow_model_class`` / ``shadow_model_config_class`` as ``"module:Class"`` strings,
  ``shadow_model_config`` (the backbone's ``config.to_dict()``), ``base_hidden_size`` (H),
  ``vocab_size`` (V), and copies of the backbone's generation-relevant fields.
- ``model.safetensors``: ``shadow_model.*`` (backbone), ``shadow_hidden_projection.weight``
  [H, Hs] and ``lm_head.weight`` [V, H].

The class strings are imported only through :func:`shadow_edge.safe_import.import_class`,
i.e. from ``transformers`` unless ``trust_remote_code=True``.

Auto-class registration: importing this module calls :func:`register_auto_classes` once
(``import shadow_edge`` alone does not: it is lazy), so ``AutoModelForCausalLM`` then loads
projected checkpoints. An owner registered earlier (e.g. ``shadow_peft``) is kept with a
warning unless ``override=True``; both packages read the same files.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import torch
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers import initialization as hf_init
from transformers.modeling_outputs import CausalLMOutputWithPast

from .backbone import input_embeddings_of, prepare_shadow_model
from .cache import OUTPUT_CACHE_FIELD, cache_argument_name
from .errors import CheckpointError, ConfigError
from .optimal_projection import solve_optimal_projection
from .projection_config import (
    _MIRRORED_FIELDS,
    MODEL_TYPE,
    AutoModelForCausalLMWithHiddenProjectionConfig,
)
from .safe_import import import_class

logger = logging.getLogger(__name__)

# Scoped trust flag: PreTrainedModel.from_pretrained consumes ``trust_remote_code`` before it
# builds the model, so our from_pretrained hands it to __init__ through this variable.
_TRUST_REMOTE_CODE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "shadow_edge_projection_trust_remote_code", default=False
)


class AutoModelForCausalLMWithHiddenProjection(PreTrainedModel, GenerationMixin):
    """Shadow backbone -> ``shadow_hidden_projection`` (Hs -> H) -> ``lm_head`` (H -> V).

    Attributes:
        shadow_model: the backbone (e.g. ``Qwen3Model``), output ``[batch, seq, Hs]``.
        shadow_hidden_projection: ``nn.Linear(Hs, H, bias=False)``, weight ``[H, Hs]``.
        lm_head: ``nn.Linear(H, V, bias=False)``, weight ``[V, H]``.

    The KV cache lives in the backbone (projection and head act per position), so
    ``generate`` uses it as for any HF causal LM.

    Args:
        config: an :class:`AutoModelForCausalLMWithHiddenProjectionConfig`.
        trust_remote_code: allow backbone classes outside transformers (default: the flag
            passed to :meth:`from_pretrained`, else ``False``).

    Raises:
        ConfigError: a config field is missing or invalid, or names a class outside
            transformers without ``trust_remote_code=True``.
    """

    config_class = AutoModelForCausalLMWithHiddenProjectionConfig
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _is_stateful = False
    loss_type = "ForCausalLM"

    def __init__(
        self,
        config: AutoModelForCausalLMWithHiddenProjectionConfig,
        *,
        trust_remote_code: bool | None = None,
    ) -> None:
        super().__init__(config)
        trust = _TRUST_REMOTE_CODE.get() if trust_remote_code is None else trust_remote_code
        for field in ("shadow_model_class", "shadow_model_config_class", "shadow_model_config"):
            if not getattr(config, field, None):
                raise ConfigError(
                    f"The projected model's config has no {field!r}; it is not a "
                    "causal_lm_with_hidden_projection checkpoint, or its config.json is broken."
                )
        if int(config.base_hidden_size) <= 0 or int(config.vocab_size) <= 0:
            raise ConfigError(
                f"The projected model's config needs positive base_hidden_size and vocab_size "
                f"(got {config.base_hidden_size} and {config.vocab_size}); fix config.json."
            )
        config_class = import_class(
            config.shadow_model_config_class,
            trust_remote_code=trust,
            expected_base=PretrainedConfig,
        )
        model_class = import_class(
            config.shadow_model_class, trust_remote_code=trust, expected_base=PreTrainedModel
        )
        backbone_config = config_class.from_dict(dict(config.shadow_model_config))
        attn = getattr(config, "_attn_implementation_internal", None)
        if attn:
            backbone_config._attn_implementation = attn
        backbone = model_class(backbone_config)
        if backbone.base_model is not backbone:  # a *ForCausalLM class was named: keep its body
            logger.warning(
                "shadow_model_class %r is a task model; using its backbone %s.",
                config.shadow_model_class, type(backbone.base_model).__name__,
            )
            backbone = backbone.base_model
        self.shadow_model = backbone
        shadow_hidden = int(backbone.config.hidden_size)
        self.shadow_hidden_projection = nn.Linear(
            shadow_hidden, int(config.base_hidden_size), bias=False
        )
        self.lm_head = nn.Linear(int(config.base_hidden_size), int(config.vocab_size), bias=False)
        self._mirror_backbone_fields()
        self.post_init()

    def _mirror_backbone_fields(self) -> None:
        """Copy the backbone config's generation-relevant fields (resolved through its
        ``attribute_map``, e.g. GPT-2's ``n_layer``) onto the outer config."""
        inner = self.shadow_model.config
        for key in _MIRRORED_FIELDS:
            if hasattr(inner, key):
                setattr(self.config, key, getattr(inner, key))
        if getattr(inner, "head_dim", None) is None:
            self.config.head_dim = int(inner.hidden_size) // int(inner.num_attention_heads)

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, backbone ``initializer_range``, default 0.02) for the projection and
        head; the backbone initialises its own modules."""
        if isinstance(module, nn.Linear):
            std = getattr(self.shadow_model.config, "initializer_range", None) or 0.02
            hf_init.normal_(module.weight, mean=0.0, std=std)

    def get_input_embeddings(self) -> nn.Module | None:
        """The backbone's token embedding table, ``[V_backbone, Hs]``."""
        return input_embeddings_of(self.shadow_model)

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Replace the backbone's token embedding table (an ``nn.Embedding(V_backbone, Hs)``)."""
        self.shadow_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        """``lm_head``, weight ``[V, H]``."""
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        """Replace ``lm_head`` (a bias-free ``nn.Linear(H, V)``)."""
        self.lm_head = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: Any = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Backbone -> projection -> head.

        Args:
            input_ids: int64 ``[batch, seq]`` (or ``inputs_embeds`` float ``[batch, seq, Hs]``).
            attention_mask: ``[batch, past + seq]``, 1 for tokens, 0 for padding.
            position_ids: int64 ``[batch, seq]``; the backbone derives them when omitted.
            cache / past_key_values: a transformers ``Cache`` (both names accepted).
            labels: int64 ``[batch, seq]``; -100 is ignored. The loss is next-token
                cross-entropy (labels shifted left by one), transformers' ``ForCausalLM``
                loss.
            use_cache: return the updated cache.
            logits_to_keep: 0 = all positions; an int n = the last n; a tensor = those
                positions.

        Returns:
            ``CausalLMOutputWithPast`` with ``logits`` ``[batch, seq, V]`` (the model's
            dtype), ``loss`` (float32 scalar) when labels are given, and the cache.
        """
        return_dict = kwargs.pop("return_dict", None)
        cache = cache if cache is not None else past_key_values
        backbone_kwargs = {cache_argument_name(self.shadow_model): cache}
        outputs = self.shadow_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **backbone_kwargs,
            **kwargs,
        )
        hidden = outputs.last_hidden_state
        if isinstance(logits_to_keep, int):
            hidden = hidden[:, -logits_to_keep:, :] if logits_to_keep > 0 else hidden
        else:
            hidden = hidden[:, logits_to_keep, :]
        logits = self.lm_head(self.shadow_hidden_projection(hidden))
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs
            )
        result = CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
            **{OUTPUT_CACHE_FIELD: getattr(outputs, OUTPUT_CACHE_FIELD, None)},
        )
        return result.to_tuple() if return_dict is False else result

    def freeze(
        self, *, backbone: bool = False, embed_tokens: bool = True, lm_head: bool = True
    ) -> None:
        """Set ``requires_grad=False`` on the chosen parts (never re-enables anything).

        ``backbone`` freezes all of ``shadow_model`` (embeddings included); ``embed_tokens``
        only the backbone's input embeddings; ``lm_head`` the head. The projection stays
        trainable.
        """
        parts = []
        if backbone:
            parts.append(self.shadow_model)
        if embed_tokens and self.get_input_embeddings() is not None:
            parts.append(self.get_input_embeddings())
        if lm_head:
            parts.append(self.lm_head)
        for part in parts:
            part.requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        *model_args,
        freeze_backbone: bool = False,
        freeze_embed_tokens: bool = True,
        freeze_lm_head: bool = True,
        trust_remote_code: bool | None = False,
        **kwargs,
    ):
        """Load a projected model (local folder or Hub id), strictly, then freeze parts.

        Args:
            pretrained_model_name_or_path: folder with ``config.json`` and
                ``model.safetensors`` (or a Hub repo id).
            freeze_backbone: ``requires_grad=False`` on the whole backbone.
            freeze_embed_tokens: ``requires_grad=False`` on the backbone's input embeddings
                (default ``True``, as in shadow-peft 0.1.x).
            freeze_lm_head: ``requires_grad=False`` on ``lm_head`` (default ``True``).
                The projection is always left trainable.
            trust_remote_code: allow ``shadow_model_class`` / ``shadow_model_config_class``
                outside transformers.
            **kwargs: passed to ``PreTrainedModel.from_pretrained`` (``dtype``, ``revision``,
                ``output_loading_info``, ...).

        Raises:
            ConfigError: the config names a class outside transformers (without trust) or
                has invalid fields.
            CheckpointError: the weights miss keys or have unexpected keys, or shapes that
                do not fit config.json (key and both shapes named; pass
                ``ignore_mismatched_sizes=True`` to keep such weights random instead).
        """
        want_info = kwargs.pop("output_loading_info", False)
        # Shape mismatches are reported by us (CheckpointError naming key and shapes), not
        # by transformers' bare RuntimeError; an explicit ignore_mismatched_sizes=True is kept.
        allow_mismatch = bool(kwargs.pop("ignore_mismatched_sizes", False))
        token = _TRUST_REMOTE_CODE.set(bool(trust_remote_code))
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, trust_remote_code=trust_remote_code,
                output_loading_info=True, ignore_mismatched_sizes=True, **kwargs,
            )
        finally:
            _TRUST_REMOTE_CODE.reset(token)
        problems = [
            f"{name.replace('_', ' ')}: {', '.join(sorted(info.get(name) or []))}"
            for name in ("missing_keys", "unexpected_keys") if info.get(name)
        ]
        mismatched = sorted(info.get("mismatched_keys") or [])
        if mismatched and not allow_mismatch:
            problems.append("shape mismatches: " + ", ".join(
                f"{key} is {tuple(saved)} in the checkpoint but {tuple(expected)} in the model"
                for key, saved, expected in mismatched
            ))
        if problems:
            raise CheckpointError(
                f"Projected checkpoint {pretrained_model_name_or_path!s} does not fit its "
                f"config.json ({'; '.join(problems)}). Re-export it, or fix config.json "
                "(e.g. base_hidden_size, vocab_size, shadow_model_config) to match the weights."
            )
        model.freeze(backbone=freeze_backbone, embed_tokens=freeze_embed_tokens,
                     lm_head=freeze_lm_head)
        return (model, info) if want_info else model

    @classmethod
    def wrap(
        cls,
        shadow_model: PreTrainedModel,
        shadow_hidden_projection: nn.Linear,
        lm_head: nn.Linear,
        init_optimal_projection: bool = False,
        reference_lm_head: nn.Linear | None = None,
        *,
        trust_remote_code: bool = False,
    ) -> AutoModelForCausalLMWithHiddenProjection:
        """Build a projected model from live modules (weights are copied, not shared).

        Args:
            shadow_model: a ``*ForCausalLM`` (its backbone is taken) or a backbone, hidden
                size Hs. It must have its input embeddings.
            shadow_hidden_projection: ``nn.Linear(Hs, H, bias=False)``.
            lm_head: ``nn.Linear(H, V, bias=False)``, e.g. the large base's head.
            init_optimal_projection: ignore ``shadow_hidden_projection``'s weights and set
                the projection to :func:`solve_optimal_projection` ``(lm_head.weight,
                reference_lm_head.weight)``, the least-squares P minimising
                ``||W_lm_large @ P - W_lm_small||_F``.
            reference_lm_head: the small model's own head ``[V, Hs]``; required with
                ``init_optimal_projection``.
            trust_remote_code: needed when the backbone class is not a transformers class.

        Returns:
            The new model in the backbone's dtype and device.

        Raises:
            ConfigError: wrong module types, biases, mismatched sizes, missing embeddings,
                or a missing ``reference_lm_head``.
        """
        backbone = prepare_shadow_model(shadow_model)
        if input_embeddings_of(backbone) is None:
            raise ConfigError(
                f"The shadow backbone {type(backbone).__name__} has no input embeddings "
                "(removed for embedding sharing); restore them with set_input_embeddings(...) "
                "before wrapping."
            )
        for name, module in (("shadow_hidden_projection", shadow_hidden_projection),
                             ("lm_head", lm_head)):
            if not isinstance(module, nn.Linear) or module.bias is not None:
                raise ConfigError(
                    f"{name} must be a bias-free nn.Linear (the format stores only its "
                    f"weight); got {module!r}."
                )
        shadow_hidden = int(backbone.config.hidden_size)
        base_hidden, vocab = lm_head.in_features, lm_head.out_features
        if shadow_hidden_projection.in_features != shadow_hidden or (
            shadow_hidden_projection.out_features != base_hidden
        ):
            raise ConfigError(
                f"shadow_hidden_projection maps {shadow_hidden_projection.in_features} -> "
                f"{shadow_hidden_projection.out_features}, but the backbone's hidden size is "
                f"{shadow_hidden} and lm_head expects {base_hidden}; pass "
                f"nn.Linear({shadow_hidden}, {base_hidden}, bias=False)."
            )
        config = AutoModelForCausalLMWithHiddenProjectionConfig(
            shadow_model_class=_class_string(type(backbone)),
            shadow_model_config_class=_class_string(type(backbone.config)),
            shadow_model_config=backbone.config.to_dict(),
            base_hidden_size=base_hidden,
            vocab_size=vocab,
        )
        attn = getattr(backbone.config, "_attn_implementation_internal", None)
        if attn:
            config._attn_implementation = attn
        reference = next(backbone.parameters())
        out = cls(config, trust_remote_code=trust_remote_code)
        out.to(device=reference.device, dtype=reference.dtype)
        _copy_state(out.shadow_model, backbone.state_dict(), "shadow_model")
        if init_optimal_projection:
            if reference_lm_head is None:
                raise ConfigError(
                    "init_optimal_projection=True needs reference_lm_head (the small model's "
                    "own lm_head, weight [V, Hs]); pass it or set init_optimal_projection=False."
                )
            if tuple(reference_lm_head.weight.shape) != (vocab, shadow_hidden):
                raise ConfigError(
                    f"reference_lm_head weight has shape {tuple(reference_lm_head.weight.shape)}"
                    f", expected [V, Hs] = [{vocab}, {shadow_hidden}]."
                )
            weight = solve_optimal_projection(lm_head.weight, reference_lm_head.weight)
            with torch.no_grad():
                out.shadow_hidden_projection.weight.copy_(weight)
            residual = (lm_head.weight.float() @ weight - reference_lm_head.weight.float()).norm()
            logger.info(
                "optimal projection: relative residual %.6f",
                (residual / reference_lm_head.weight.float().norm()).item(),
            )
        else:
            _copy_state(out.shadow_hidden_projection, shadow_hidden_projection.state_dict(),
                        "shadow_hidden_projection")
        _copy_state(out.lm_head, lm_head.state_dict(), "lm_head")
        return out


def _class_string(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _copy_state(module: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """``load_state_dict(strict=True)``, re-raised as ConfigError naming the keys."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"Cannot copy weights into {name}: {exc}") from exc


def register_auto_classes(*, exist_ok: bool = True, override: bool = False) -> bool:
    """Register the projected model with ``AutoConfig`` and ``AutoModelForCausalLM``.

    Idempotent. Called once when this module is imported.

    Args:
        exist_ok: when another class already owns ``model_type``
            ``"causal_lm_with_hidden_projection"`` (e.g. the original ``shadow_peft``),
            keep it and log a warning (``True``) or raise (``False``).
        override: replace another owner with ours (no warning).

    Returns:
        ``True`` when ``AutoConfig`` now resolves the model type to our config class.

    Raises:
        ConfigError: another class owns the model type, ``exist_ok=False`` and
            ``override=False``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    ours = AutoModelForCausalLMWithHiddenProjectionConfig
    try:  # (the lazy mapping's dict.get would miss registered extras)
        current = CONFIG_MAPPING[MODEL_TYPE]
    except KeyError:
        current = None
    # Keyed by our config class, so it never displaces another package's model class.
    AutoModelForCausalLM.register(ours, AutoModelForCausalLMWithHiddenProjection, exist_ok=True)
    if current is ours:
        return True
    if current is not None and not override:
        owner = f"{current.__module__}.{current.__qualname__}"
        if not exist_ok:
            raise ConfigError(
                f"model_type {MODEL_TYPE!r} is already registered by {owner}; pass "
                "override=True to register shadow-edge's class instead."
            )
        logger.warning(
            "model_type %r is already registered by %s; keeping it. Call "
            "shadow_edge.register_auto_classes(override=True) to use shadow-edge's class.",
            MODEL_TYPE, owner,
        )
        return False
    AutoConfig.register(MODEL_TYPE, ours, exist_ok=True)
    return True


register_auto_classes()

__all__ = [
    "MODEL_TYPE",
    "AutoModelForCausalLMWithHiddenProjection",
    "AutoModelForCausalLMWithHiddenProjectionConfig",
    "register_auto_classes",
    "solve_optimal_projection",
]
