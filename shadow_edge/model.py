"""``ShadowPeftModel``: a frozen base plus a trainable shadow (FORMAT.md steps 1-3).

The forward pass keeps its state explicit: ``shadow_hidden_states`` computes the shadow
start state ``s`` (step 1); ``forward_with_shadow`` then runs the base inside a
``ShadowPass`` (``shadow_pass.py``), whose layer hooks inject (step 2) and update ``s``
(step 3) for that one call only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn
from transformers import PreTrainedModel

from .backbone import (
    build_implicit_shadow,
    carried_projection,
    find_decoder_stack,
    get_backbone,
    hidden_size_of,
    input_embeddings_of,
    prepare_shadow_model,
    remove_input_embeddings,
)
from .cache import OUTPUT_CACHE_FIELD, ShadowCache, cache_argument_name, resolve_shadow_cache
from .checkpoint import load_strict, push_to_hub
from .config import ShadowConfig
from .encoders import check_supported_encoder, encoder_inputs, is_encoder_config
from .errors import ConfigError
from .export_shadow import export_shadow
from .layers import ShadowInjectionModel, ShadowUpdateModel
from .parameters import count_parameters, write_parameter_summary
from .persistence import load_adapter, save_checkpoint
from .projection import register_auto_classes  # noqa: F401  (importing the core registers the Auto classes)
from .shadow_pass import ShadowPass

logger = logging.getLogger(__name__)

#: Prefixes of the adapter keys in ``shadow_adapter.safetensors`` (FORMAT.md).
ADAPTER_PREFIXES = (
    "shadow_model.",
    "shadow_hidden_projection.",
    "shadow_injection_model.",
    "shadow_update_model.",
)


class ShadowPeftModel(nn.Module):
    """A frozen HF decoder (or encoder) with a ShadowPEFT adapter.

    Args:
        base_model: an HF decoder-only model (``*ForCausalLM`` or ``*ForSequenceClassification``)
            with at least 2 decoder layers, or a BERT / DistilBERT / RoBERTa encoder
            (``encoders.py``: bidirectional attention, no KV cache, position ids from the
            padding mask). All its parameters are frozen.
        shadow_config: the adapter hyper-parameters.
        shadow_model: an explicit shadow (task model, backbone, or a projected model carrying
            ``shadow_hidden_projection``); ``None`` builds an implicit shadow from the base.

    Public attributes (used by the exporters): ``base_model``, ``shadow_model`` (the shadow
    backbone, possibly without input embeddings), ``shadow_hidden_projection``
    (``nn.Linear(Hs, H, bias=False)`` or ``None`` when ``Hs == H``), ``shadow_injection_model``,
    ``shadow_update_model``, ``shadow_config``, ``embeddings_shared``, ``is_encoder``.

    Threads: several threads may run forwards of one model (and of its plain base) at once;
    each sees only its own pass (``shadow_pass.py``). A ``ShadowCache`` belongs to one thread.

    Raises:
        ConfigError: ``shadow_config`` is not a ``ShadowConfig``; the base has fewer than 2
            decoder layers or an unsupported layout or encoder family; an explicit shadow
            without input embeddings has another hidden size than the base.
    """

    def __init__(
        self,
        base_model: PreTrainedModel,
        shadow_config: ShadowConfig,
        *,
        shadow_model: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(shadow_config, ShadowConfig):
            raise ConfigError(
                f"shadow_config must be a ShadowConfig, got {type(shadow_config).__name__}; "
                "build one with ShadowConfig(...) (or ShadowConfig.from_dict(d) for a dict)."
            )
        if isinstance(base_model, ShadowPeftModel) or isinstance(getattr(base_model, "peft_model", None),
                                                                 ShadowPeftModel):
            raise ConfigError(
                f"{type(base_model).__name__} already carries a shadow adapter; pass the plain HF "
                "model (its .base_model / .peft_model.base_model) to get_shadow_model."
            )
        stack = find_decoder_stack(base_model)
        self.is_encoder = is_encoder_config(base_model.config)
        if self.is_encoder:
            check_supported_encoder(base_model.config)
        num_layers = len(stack.layers)
        if num_layers < 2:
            raise ConfigError(
                f"ShadowPEFT needs a base with at least 2 decoder layers (injection starts at layer 1); "
                f"{type(base_model).__name__} has {num_layers}. Use a deeper base model."
            )
        for parameter in base_model.parameters():
            parameter.requires_grad = False
        self.base_model = base_model
        hidden_size = hidden_size_of(base_model.config)
        reference = base_model.get_input_embeddings().weight

        projection = None
        if shadow_model is None:
            backbone = build_implicit_shadow(base_model, shadow_config).to(
                device=reference.device, dtype=reference.dtype
            )
            remove_input_embeddings(backbone)
            explicit_config = None
        else:
            projection = carried_projection(shadow_model)
            backbone = prepare_shadow_model(shadow_model).to(device=reference.device)
            explicit_config = backbone.config.to_dict()
        self.shadow_model = backbone
        self.embeddings_shared = input_embeddings_of(backbone) is None

        shadow_hidden = hidden_size_of(backbone.config)
        if self.embeddings_shared and shadow_hidden != hidden_size:
            raise ConfigError(
                f"The explicit shadow has no input embeddings, so it would be fed the base's "
                f"(size {hidden_size}), but its hidden size is {shadow_hidden}. Keep its embeddings "
                "(prepare_shadow_model(..., remove_embed_tokens=False)) or use a shadow of hidden "
                f"size {hidden_size}."
            )
        self.shadow_hidden_projection: nn.Linear | None = None
        if shadow_hidden != hidden_size:
            fits = projection is not None and (projection.in_features, projection.out_features) == (
                shadow_hidden,
                hidden_size,
            ) and projection.bias is None
            if fits:
                self.shadow_hidden_projection = _copy_linear(projection)
            else:
                if projection is not None:
                    logger.warning(
                        "the shadow model's shadow_hidden_projection (%d -> %d) does not map %d -> %d; "
                        "using a new random projection",
                        projection.in_features, projection.out_features, shadow_hidden, hidden_size,
                    )
                self.shadow_hidden_projection = nn.Linear(shadow_hidden, hidden_size, bias=False)
            self.shadow_hidden_projection.to(device=reference.device, dtype=reference.dtype)

        self.shadow_injection_model = ShadowInjectionModel(
            num_slots=num_layers - 1,
            hidden_size=hidden_size,
            injection_hidden_size=shadow_config.injection_hidden_size,
            alpha=shadow_config.alpha,
            dropout=shadow_config.dropout,
        ).to(device=reference.device, dtype=reference.dtype)
        self.shadow_update_model = ShadowUpdateModel(
            num_slots=num_layers - 1,
            hidden_size=hidden_size,
            gate_hidden_size=shadow_config.gate_hidden_size,
            dropout=shadow_config.dropout,
        ).to(device=reference.device, dtype=reference.dtype)
        self.shadow_config = dataclasses.replace(
            shadow_config,
            shadow_model_config=explicit_config,
            shadow_embeddings_shared=self.embeddings_shared,
        )

    # ---- structure ----
    @property
    def decoder_layers(self) -> nn.ModuleList:
        """The base model's decoder layers (layer ``i >= 1`` has adapter slot ``i - 1``)."""
        return find_decoder_stack(self.base_model).layers

    @property
    def is_explicit(self) -> bool:
        """Whether the shadow was passed in (explicit) rather than built from the base."""
        return self.shadow_config.shadow_model_config is not None

    def shadow_input_embeddings(self) -> nn.Module:
        """The embedding table that feeds the shadow: the base's when shared, else the shadow's."""
        if self.embeddings_shared:
            return self.base_model.get_input_embeddings()
        return input_embeddings_of(self.shadow_model)

    # ---- forward ----
    def shadow_hidden_states(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: Any = None,
        token_type_ids: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """The shadow start state ``s = P(shadow_backbone(inputs).last_hidden_state)`` (step 1).

        Args:
            input_ids: int64 ``[batch, seq]``.
            attention_mask: ``[batch, past + seq]`` (1 = token, 0 = padding).
            position_ids: int64 ``[batch, seq]``; ``None`` lets a decoder count from the cache
                (an encoder derives them from ``attention_mask``, ``encoders.py``).
            inputs_embeds: ``[batch, seq, H]`` base-space embeddings (only with shared embeddings).
            cache: the shadow backbone's ``DynamicCache`` (updated in place), or ``None``.
            token_type_ids: int64 ``[batch, seq]`` segment ids, for encoders that have them.

        Returns:
            float ``[batch, seq, H]``.

        Raises:
            ConfigError: neither ``input_ids`` nor ``inputs_embeds``, or only ``inputs_embeds``
                for a shadow with its own embedding table.
        """
        backbone = self.shadow_model
        kwargs: dict[str, Any] = {"attention_mask": attention_mask, "position_ids": position_ids}
        if self.is_encoder:
            kwargs = encoder_inputs(backbone, backbone.config, attention_mask=attention_mask,
                                    position_ids=position_ids, token_type_ids=token_type_ids)
        if self.embeddings_shared:
            if inputs_embeds is None:
                if input_ids is None:
                    raise ConfigError("Pass input_ids (int64 [batch, seq]) or inputs_embeds.")
                inputs_embeds = self.base_model.get_input_embeddings()(input_ids)
            kwargs["inputs_embeds"] = inputs_embeds
        else:
            if input_ids is None:
                raise ConfigError(
                    "This explicit shadow has its own input embeddings, so it needs input_ids; "
                    "pass input_ids (or prepare the shadow with remove_embed_tokens=True)."
                )
            kwargs["input_ids"] = input_ids
        if not self.is_encoder:  # encoders have no KV cache (ShadowCache.for_model refuses them)
            kwargs["use_cache"] = cache is not None
            kwargs[cache_argument_name(backbone)] = cache
        hidden = backbone(**kwargs).last_hidden_state
        if self.shadow_hidden_projection is not None:
            hidden = self.shadow_hidden_projection(hidden.to(self.shadow_hidden_projection.weight.dtype))
        return hidden

    def forward_with_shadow(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values: ShadowCache | None = None,
        use_cache: bool | None = None,
        cache: ShadowCache | None = None,
        token_type_ids: torch.LongTensor | None = None,
        run_backbone: bool = False,
        **kwargs: Any,
    ) -> tuple[Any, torch.Tensor, ShadowCache | None]:
        """Run the base with the shadow adapter (the ``"base_shadow"`` path).

        Args:
            past_key_values: a ``ShadowCache`` to extend (created when ``use_cache`` and ``None``);
                ``cache=`` is accepted as the same argument (transformers 5.24's name).
            use_cache: keep KV caches (default ``False`` unless a cache is given).
            token_type_ids: segment ids (encoders that have them; passed to the base as is
                otherwise).
            run_backbone: run only the base's backbone (its output has ``last_hidden_state``);
                the encoder classifier applies its head itself.
            kwargs: passed to the base model's forward (e.g. ``labels`` for the base's own
                loss; the task wrappers compute their losses themselves).

        Returns:
            ``(base_output, shadow_start, cache)``: the base's ModelOutput (``logits`` etc.),
            the shadow start state ``[batch, seq, H]`` and the ``ShadowCache`` (or ``None``).

        Raises:
            ConfigError: the cache is not a ``ShadowCache`` with a base half (see
                ``cache.resolve_shadow_cache``).
        """
        cache = resolve_shadow_cache(
            past_key_values, cache, use_cache=use_cache, new_cache=lambda: ShadowCache.for_model(self),
            need_base=True,
        )
        shadow_start = self.shadow_hidden_states(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=None if input_ids is not None else inputs_embeds,
            cache=cache.shadow if cache is not None else None,
            token_type_ids=token_type_ids,
        )
        base = get_backbone(self.base_model) if run_backbone else self.base_model
        base_kwargs: dict[str, Any] = {"attention_mask": attention_mask, "position_ids": position_ids}
        if self.is_encoder:
            base_kwargs = encoder_inputs(base, self.base_model.config, attention_mask=attention_mask,
                                         position_ids=position_ids, token_type_ids=token_type_ids)
        else:
            base_kwargs["use_cache"] = cache is not None
            base_kwargs[cache_argument_name(base)] = cache.base if cache is not None else None
            if token_type_ids is not None:
                base_kwargs["token_type_ids"] = token_type_ids
        with ShadowPass(self.shadow_injection_model, self.shadow_update_model, self.decoder_layers, shadow_start):
            output = base(input_ids=input_ids, inputs_embeds=inputs_embeds, **base_kwargs, **kwargs)
        return output, shadow_start, cache

    def forward(self, *args: Any, **kwargs: Any):
        """The base model's output with the shadow adapter applied (see ``forward_with_shadow``).

        With a cache, the output's cache field holds the ``ShadowCache`` (base + shadow), so
        it can be passed back as ``past_key_values=`` for the next step.
        """
        output, _, cache = self.forward_with_shadow(*args, **kwargs)
        if cache is not None:
            output[OUTPUT_CACHE_FIELD] = cache
        return output

    # ---- parameters ----
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """``(trainable, total)`` parameter counts (shared parameters counted once)."""
        return count_parameters(self)

    def print_trainable_parameters(self, file: TextIO | None = None) -> str:
        """Write ``Trainable params: N || Total params: M || Trainable%: P`` to ``file``.

        ``file`` defaults to ``sys.stdout`` (the PEFT method of the same name prints). The
        line is also returned.
        """
        return write_parameter_summary(self, file)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter weights under the FORMAT.md key prefixes (detached, on CPU, contiguous)."""
        return {key: value.detach().cpu().contiguous() for key, value in self.adapter_tensors().items()}

    def _adapter_modules(self) -> dict[str, nn.Module]:
        modules = {"shadow_model": self.shadow_model}
        if self.shadow_hidden_projection is not None:
            modules["shadow_hidden_projection"] = self.shadow_hidden_projection
        modules["shadow_injection_model"] = self.shadow_injection_model
        modules["shadow_update_model"] = self.shadow_update_model
        return modules

    def adapter_tensors(self, keep_vars: bool = False) -> dict[str, torch.Tensor]:
        """The live adapter tensors under the FORMAT.md keys (parameters with ``keep_vars``)."""
        state: dict[str, torch.Tensor] = OrderedDict()
        for name, module in self._adapter_modules().items():
            for key, value in module.state_dict(keep_vars=keep_vars).items():
                state[f"{name}.{key}"] = value
        return state

    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """Adapter-only state dict (FORMAT.md keys), so HF ``Trainer`` saves only the adapter."""
        out = OrderedDict() if destination is None else destination
        for key, value in self.adapter_tensors(keep_vars=keep_vars).items():
            out[prefix + key] = value if keep_vars else value.detach()
        return out

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True, assign: bool = False):
        """Load adapter weights (the keys of ``state_dict()``).

        Raises:
            CheckpointError: with ``strict``, a missing or unexpected key (names listed); always,
                a shape mismatch (key, both shapes and the fix).

        Returns:
            ``torch.nn.modules.module._IncompatibleKeys`` (missing, unexpected).
        """
        return load_strict(self.adapter_tensors(keep_vars=True), state_dict, strict=strict, what="adapter")

    # ---- training helpers ----
    def activation_checkpointing_enable(
        self, activation_checkpointing_kwargs: dict | None = None, every_n_layers: int = 1, offload: bool = False
    ) -> None:
        """Enable HF activation (gradient) checkpointing on the base and on the shadow backbone.

        Arguments as transformers' ``activation_checkpointing_enable`` (``every_n_layers`` and
        ``offload`` apply where the installed transformers supports them).
        """
        for module in (self.base_model, self.shadow_model):
            if not getattr(module, "supports_gradient_checkpointing", False):
                continue
            if hasattr(module, "activation_checkpointing_enable"):  # transformers >= 5.24
                module.activation_checkpointing_enable(
                    activation_checkpointing_kwargs, every_n_layers=every_n_layers, offload=offload
                )
            else:
                module.gradient_checkpointing_enable(gradient_checkpointing_kwargs=activation_checkpointing_kwargs)

    def activation_checkpointing_disable(self) -> None:
        """Disable activation checkpointing on the base and on the shadow backbone."""
        for module in (self.base_model, self.shadow_model):
            if not getattr(module, "supports_gradient_checkpointing", False):
                continue
            if hasattr(module, "activation_checkpointing_disable"):
                module.activation_checkpointing_disable()
            else:
                module.gradient_checkpointing_disable()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None, **options: Any) -> None:
        """The older name of ``activation_checkpointing_enable`` (HF ``Trainer`` and PEFT call it)."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, **options)

    def gradient_checkpointing_disable(self) -> None:
        """The older name of ``activation_checkpointing_disable``."""
        self.activation_checkpointing_disable()

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether the base model checkpoints activations."""
        return _is_checkpointing(self.base_model)

    def set_adapter_trainable(self, trainable: bool) -> None:
        """Set ``requires_grad`` of every adapter parameter (shadow, projection, injection, update)."""
        for module in self._adapter_modules().values():
            module.requires_grad_(trainable)

    # ---- export and persistence ----
    def export_shadow(self, *, lm_head: nn.Module | None = None) -> PreTrainedModel:
        """A standalone HF model of the shadow, with the base's head unless ``lm_head`` is given.

        See :func:`shadow_edge.export_shadow.export_shadow` for the layout and the errors.
        """
        return export_shadow(self, lm_head=lm_head)

    def save_pretrained(self, save_directory: str | Path, **extra_config: Any) -> Path:
        """Write ``shadow_config.json`` and ``shadow_adapter.safetensors`` (FORMAT.md).

        ``extra_config`` sets ShadowConfig fields in the written file (e.g. ``task_type``).
        """
        return save_checkpoint(self, save_directory, modules=None, **extra_config)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Save to a temporary folder and upload it (see ``checkpoint.push_to_hub``)."""
        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        model: PreTrainedModel,
        pretrained_shadow_path: str | Path,
        *,
        is_trainable: bool = False,
        shadow_model: nn.Module | None = None,
    ) -> ShadowPeftModel:
        """Build on ``model`` and load a checkpoint (folder, Hub id or ``repo@revision``).

        An explicit shadow comes from ``shadow_model`` or is rebuilt from the checkpoint's
        ``shadow_model_config``. ``is_trainable=False`` freezes everything and sets eval mode.

        Raises:
            CheckpointError: missing folder or file, corrupt file, or weights that do not fit.
        """
        return load_adapter(
            cls, model, pretrained_shadow_path, is_trainable=is_trainable,
            shadow_model=shadow_model,
        )


def _is_checkpointing(module: nn.Module) -> bool:
    flag = getattr(type(module), "is_activation_checkpointing", None)
    if flag is not None:
        return bool(module.is_activation_checkpointing)
    return bool(getattr(module, "is_gradient_checkpointing", False))


def _copy_linear(linear: nn.Linear) -> nn.Linear:
    out = nn.Linear(linear.in_features, linear.out_features, bias=False)
    with torch.no_grad():
        out.weight.copy_(linear.weight.detach())
    out.weight.requires_grad = linear.weight.requires_grad
    return out


def get_shadow_model(
    model: PreTrainedModel,
    shadow_config: ShadowConfig,
    *,
    shadow_model: nn.Module | None = None,
) -> ShadowPeftModel:
    """Wrap ``model`` with a ShadowPEFT adapter (PEFT's ``get_peft_model``); see ``ShadowPeftModel``."""
    return ShadowPeftModel(model, shadow_config, shadow_model=shadow_model)


__all__ = ["ADAPTER_PREFIXES", "ShadowPeftModel", "count_parameters", "get_backbone", "get_shadow_model"]
