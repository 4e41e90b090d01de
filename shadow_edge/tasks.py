"""Task wrappers: ``ShadowForCausalLM`` and ``ShadowForSequenceClassification``.

Both share ``ShadowTaskModel``: inference modes, the combined loss
``base_loss + shadow_loss_weight * shadow_loss`` (FORMAT.md step 5), trainable task heads
(``modules_to_save``), persistence, and the HF ``Trainer`` hooks (adapter-only state dict,
gradient checkpointing). A subclass only says which heads it has and how it scores.

Modes: ``"base_shadow"`` (default) returns the base's ``logits`` and the shadow head's
``shadow_logits``; ``"shadow_only"`` runs only the shadow backbone and head (FORMAT.md
step 6) and returns the shadow logits as both.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import GenerationConfig, PreTrainedModel

from . import generation
from .cache import OUTPUT_CACHE_FIELD, ShadowCache, resolve_shadow_cache
from .checkpoint import load_strict, push_to_hub, resolve_checkpoint_dir
from .config import ShadowConfig
from .encoder_heads import EncoderClassifierHead, encoder_classifier_head
from .errors import CheckpointError, ConfigError
from .export_shadow import export_shadow
from .model import ShadowPeftModel
from .parameters import count_parameters, write_parameter_summary
from .persistence import load_heads, save_checkpoint
from .pooling import pool_last_token
from .task_outputs import (
    ShadowCausalLMOutputWithPast,
    ShadowSequenceClassifierOutput,
    causal_lm_loss,
)
from .task_types import CAUSAL_LM, HEADS, SEQ_CLS

logger = logging.getLogger(__name__)

INFERENCE_MODES = ("base_shadow", "shadow_only")
#: Default weight of the shadow loss (shadow-peft 0.1.x and FORMAT.md step 5).
DEFAULT_SHADOW_LOSS_WEIGHT = 0.05


def _kept(hidden: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """``hidden`` ``[batch, seq, H]`` at ``positions`` (all of it when None)."""
    return hidden if positions is None else hidden[:, positions.to(hidden.device)]


def _to_head_dtype(hidden: torch.Tensor, head: nn.Module) -> torch.Tensor:
    # An explicit shadow may run in another dtype than the base (whose head was copied).
    parameter = next(head.parameters(), None)
    return hidden if parameter is None else hidden.to(parameter.dtype)


def _install_trainable_copy(base: nn.Module, head: nn.Module) -> nn.Module:
    """Put a deep copy of ``head`` in its place inside ``base`` and return the copy.

    The frozen base must not change during training, but a trainable base head
    (``modules_to_save`` naming ``lm_head``, or the default ``classifier_head``) is part of
    it, and with tied embeddings (SmolLM2, Gemma, Qwen2.5-0.5B) its weight *is* the input
    embedding table. As PEFT's ``ModulesToSaveWrapper`` does, the base's forward then uses a
    separate copy that trains and is saved; the original module and its tensors stay as
    they were (a tied copy is untied from the embeddings). An encoder head
    (:class:`EncoderClassifierHead`) is not itself a module of the base but holds several
    (BERT: ``bert.pooler``, ``dropout``, ``classifier``); each is replaced by its copy.
    """
    where = {id(module): name for name, module in base.named_modules() if name}
    trained = copy.deepcopy(head)
    if id(head) in where:
        places = [(where[id(head)], trained)]
    else:
        places = [(where[id(part)], getattr(trained, attr))
                  for attr, part in head.named_children() if id(part) in where]
    if not places:
        raise ConfigError(
            f"the head {type(head).__name__} is not a submodule of {type(base).__name__}, so a "
            "trainable copy cannot replace it; drop it from ShadowConfig.modules_to_save."
        )
    for name, module in places:
        parent, _, leaf = name.rpartition(".")
        setattr(base.get_submodule(parent) if parent else base, leaf, module)
    return trained


class ShadowTaskModel(nn.Module):
    """Shared base of the task wrappers (see the module docstring).

    Args:
        peft_model: the ``ShadowPeftModel``.
        shadow_loss_weight: weight of the shadow loss in ``base_shadow`` training (default 0.05).
        inference_mode: ``"base_shadow"`` or ``"shadow_only"``.

    Raises:
        ConfigError: unknown inference mode, or the base has no head of this task.
    """

    task_type: ClassVar[str]
    head_names: ClassVar[tuple[str, str]]  # (base head, shadow head)
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    accepts_loss_kwargs = False  # HF Trainer: we average the loss ourselves

    def __init__(
        self,
        peft_model: ShadowPeftModel,
        *,
        shadow_loss_weight: float = DEFAULT_SHADOW_LOSS_WEIGHT,
        inference_mode: str = "base_shadow",
    ) -> None:
        super().__init__()
        self.peft_model = peft_model
        self.shadow_loss_weight = float(shadow_loss_weight)
        self.set_inference_mode(inference_mode)
        base_name, shadow_name = self.head_names
        requested = list(peft_model.shadow_config.modules_to_save)
        foreign = [m for m in requested if m not in self.head_names]
        if foreign:
            raise ConfigError(
                f"ShadowConfig.modules_to_save names {foreign}, which {type(self).__name__} does not have; "
                f"use names among {list(self.head_names)}."
            )
        trainable = requested or list(self.default_trainable_heads)
        base_head = self._find_base_head(peft_model.base_model)
        setattr(self, shadow_name, copy.deepcopy(base_head))
        if base_name in trainable:
            base_head = _install_trainable_copy(peft_model.base_model, base_head)
        setattr(self, base_name, base_head)
        for name in self.head_names:
            getattr(self, name).requires_grad_(name in trainable)

    # ---- subclass hooks ----
    default_trainable_heads: ClassVar[tuple[str, ...]] = ()

    def _find_base_head(self, base: PreTrainedModel) -> nn.Module:
        raise NotImplementedError

    def _score_shadow(self, shadow_hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor,
              positions: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def _output(self, **fields: Any):
        raise NotImplementedError

    def _base_logits(self, output: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
        return output.logits

    def _config_extras(self) -> dict[str, Any]:
        return {}

    # ---- modes ----
    def set_inference_mode(self, mode: str) -> None:
        """Choose ``"base_shadow"`` (base + shadow) or ``"shadow_only"`` (detached shadow).

        Raises:
            ConfigError: ``mode`` is not one of them.
        """
        if mode not in INFERENCE_MODES:
            raise ConfigError(
                f"Unknown inference mode {mode!r}; use one of {list(INFERENCE_MODES)}."
            )
        self.inference_mode = mode

    # ---- HF-model-like attributes ----
    @property
    def config(self):
        """The base model's HF config."""
        return self.peft_model.base_model.config

    @property
    def shadow_config(self):
        return self.peft_model.shadow_config

    @property
    def device(self) -> torch.device:
        return self.peft_model.base_model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.peft_model.base_model.dtype

    # ---- forward ----
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        past_key_values: ShadowCache | None = None,
        use_cache: bool | None = None,
        cache: ShadowCache | None = None,
        return_dict: bool | None = None,
        logits_to_keep: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        **kwargs: Any,
    ):
        """Score a batch; with ``labels``, also the loss (FORMAT.md steps 4-6).

        Args:
            input_ids: int64 ``[batch, seq]``.
            attention_mask: ``[batch, past + seq]``.
            position_ids: int64 ``[batch, seq]`` (default: counted from the cache length).
            labels: task labels (causal LM: ``[batch, seq]`` with -100 ignored).
            past_key_values: a ``ShadowCache`` to extend; ``use_cache=True`` creates one.
                ``cache=`` is the same argument under transformers 5.24's name.
            return_dict: ``False`` returns ``output.to_tuple()`` (HF's convention).
            logits_to_keep: causal LM only: int64 ``[n]`` sorted positions; both heads are
                applied there only (``logits`` ``[batch, n, vocab]``) and the loss is taken
                over those positions' next tokens. Training passes the supervised positions
                (``training_data.PadCollator(supervised_logits_only=True)``), which skips
                the vocabulary-sized heads on the prompt without changing the loss.
            token_type_ids: int64 ``[batch, seq]`` segment ids (encoders that have them).
            kwargs: extra base-model arguments (``base_shadow`` mode only), e.g.
                ``output_hidden_states=True`` (the base's ``hidden_states`` are returned).

        Returns:
            A ModelOutput with ``loss``, ``logits``, ``shadow_logits``, the cache
            (``past_key_values``) and, in ``base_shadow`` mode, the base's ``hidden_states``
            and ``attentions`` when requested.

        Raises:
            ConfigError: the cache is not a ``ShadowCache`` (e.g. a ``DynamicCache``) or lacks
                the base half that ``base_shadow`` needs; ``logits_to_keep`` for a
                classifier.
        """
        if logits_to_keep is not None:
            if self.task_type != CAUSAL_LM:
                raise ConfigError("logits_to_keep applies to causal LMs only; drop it for "
                                  f"{type(self).__name__}.")
            kwargs["logits_to_keep"] = logits_to_keep
        if self.inference_mode == "shadow_only":
            cache = resolve_shadow_cache(
                past_key_values, cache, use_cache=use_cache, need_base=False,
                new_cache=lambda: ShadowCache.for_model(self.peft_model, shadow_only=True),
            )
            shadow_hidden = self.peft_model.shadow_hidden_states(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                cache=cache.shadow if cache is not None else None,
                token_type_ids=token_type_ids,
            )
            shadow_logits = self._score_shadow(_kept(shadow_hidden, logits_to_keep), attention_mask)
            loss = self._loss(shadow_logits, labels, logits_to_keep) if labels is not None else None
            out = self._output(loss=loss, logits=shadow_logits, shadow_logits=shadow_logits, cache=cache)
            return out.to_tuple() if return_dict is False else out

        output, shadow_hidden, cache = self.peft_model.forward_with_shadow(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            past_key_values=past_key_values,
            use_cache=use_cache,
            cache=cache,
            token_type_ids=token_type_ids,
            run_backbone=self.peft_model.is_encoder,
            **kwargs,
        )
        logits = self._base_logits(output, attention_mask)
        shadow_logits = self._score_shadow(_kept(shadow_hidden, logits_to_keep), attention_mask)
        loss = None
        if labels is not None:
            loss = self._loss(logits, labels, logits_to_keep)
            if self.shadow_loss_weight:
                loss = loss + self.shadow_loss_weight * self._loss(shadow_logits, labels,
                                                                   logits_to_keep)
        out = self._output(loss=loss, logits=logits, shadow_logits=shadow_logits, cache=cache)
        out.hidden_states = getattr(output, "hidden_states", None)
        out.attentions = getattr(output, "attentions", None)
        return out.to_tuple() if return_dict is False else out

    # ---- parameters and state ----
    def saved_head_names(self) -> list[str]:
        """Heads written to ``shadow_modules.safetensors`` and included in ``state_dict()``.

        ``modules_to_save`` when set, else the task's default trainable heads; plus any head
        the user made trainable.
        """
        listed = self.peft_model.shadow_config.modules_to_save or self.default_trainable_heads
        return [
            name for name in self.head_names
            if name in listed or any(p.requires_grad for p in getattr(self, name).parameters())
        ]

    def modules_state_dict(self, keep_vars: bool = False) -> dict[str, torch.Tensor]:
        """The saved heads' tensors under ``{head}.{param}`` keys (``shadow_modules.safetensors``)."""
        state: dict[str, torch.Tensor] = {}
        for name in self.saved_head_names():
            for key, value in getattr(self, name).state_dict(keep_vars=keep_vars).items():
                state[f"{name}.{key}"] = value
        return state

    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """Adapter keys plus the saved heads' keys; nothing of the frozen base (for ``Trainer``)."""
        out = self.peft_model.state_dict(destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key, value in self.modules_state_dict(keep_vars=keep_vars).items():
            out[prefix + key] = value if keep_vars else value.detach()
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load the keys of ``state_dict()`` (strict: missing/unexpected keys raise ``CheckpointError``)."""
        target = dict(self.peft_model.adapter_tensors(keep_vars=True))
        target.update(self.modules_state_dict(keep_vars=True))
        return load_strict(target, state_dict, strict=strict, what=type(self).__name__)

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """``(trainable, total)`` parameter counts, heads included."""
        return count_parameters(self)

    def print_trainable_parameters(self, file=None) -> str:
        """Write the trainable-parameter summary line (see ``ShadowPeftModel``)."""
        return write_parameter_summary(self, file)

    def activation_checkpointing_enable(
        self, activation_checkpointing_kwargs: dict | None = None, every_n_layers: int = 1, offload: bool = False
    ) -> None:
        """Forwarded to the base and the shadow backbone (``ShadowPeftModel``)."""
        self.peft_model.activation_checkpointing_enable(activation_checkpointing_kwargs, every_n_layers, offload)

    def activation_checkpointing_disable(self) -> None:
        self.peft_model.activation_checkpointing_disable()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None, **options: Any) -> None:
        """The older name of ``activation_checkpointing_enable``."""
        self.peft_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs, **options)

    def gradient_checkpointing_disable(self) -> None:
        self.peft_model.gradient_checkpointing_disable()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.peft_model.is_gradient_checkpointing

    # ---- persistence ----
    def checkpoint_extras(self) -> dict[str, Any]:
        """ShadowConfig fields this wrapper records when saving (task type, labels, base)."""
        base_config = self.peft_model.base_model.config
        name = getattr(base_config, "_name_or_path", None) or getattr(
            self.peft_model.base_model, "name_or_path", None
        )
        return {
            "task_type": self.task_type,
            "base_model_name_or_path": name or self.peft_model.shadow_config.base_model_name_or_path,
            **self._config_extras(),
        }

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write the adapter, ``shadow_modules.safetensors`` (saved heads) and the config."""
        return save_checkpoint(
            self.peft_model, save_directory, modules=self.modules_state_dict(), **self.checkpoint_extras()
        )

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Save to a temporary folder and upload it (see ``checkpoint.push_to_hub``)."""
        return push_to_hub(self, repo_id, **kwargs)

    def export_shadow(self, *, lm_head: nn.Module | None = None) -> PreTrainedModel:
        """A standalone HF model of the shadow with this wrapper's trained shadow head.

        ``lm_head`` (causal LM only) overrides the head. See
        :func:`shadow_edge.export_shadow.export_shadow` for the layout and the errors.
        """
        return export_shadow(self, lm_head=lm_head)

    @classmethod
    def from_pretrained(
        cls,
        model: PreTrainedModel,
        pretrained_shadow_path: str | Path,
        *,
        is_trainable: bool = False,
        shadow_model: nn.Module | None = None,
        shadow_loss_weight: float = DEFAULT_SHADOW_LOSS_WEIGHT,
        inference_mode: str = "base_shadow",
    ):
        """Build on ``model`` and load a checkpoint, heads included (see ``ShadowPeftModel``).

        Raises:
            CheckpointError: missing folder/file, corrupt file, weights that do not fit, or a
                checkpoint saved from the other task's wrapper.
        """
        directory = resolve_checkpoint_dir(pretrained_shadow_path)
        saved_task = ShadowConfig.from_pretrained(directory).task_type
        if saved_task is not None and saved_task != cls.task_type:
            raise CheckpointError(
                f"{directory} was saved from a {saved_task} wrapper, not {cls.task_type}. Load it with "
                f"{TASK_MODELS[saved_task].__name__}.from_pretrained (on a matching base), or, to reuse "
                f"only the adapter for another task, with ShadowPeftModel.from_pretrained and wrap it "
                f"in {cls.__name__}."
            )
        peft_model = ShadowPeftModel.from_pretrained(
            model, directory, is_trainable=is_trainable, shadow_model=shadow_model)
        wrapper = cls(peft_model, shadow_loss_weight=shadow_loss_weight, inference_mode=inference_mode)
        load_heads(wrapper, directory)
        if not is_trainable:
            wrapper.requires_grad_(False)
            wrapper.eval()
        return wrapper


class ShadowForCausalLM(ShadowTaskModel):
    """Causal LM wrapper: ``lm_head`` (the base's) and ``shadow_lm_head`` (a copy of it).

    Both heads are frozen by default (``modules_to_save`` makes them train and save). A
    trainable ``lm_head`` is a copy put in the base's place, so the frozen base (and its
    embeddings, when tied to the head) never change.
    ``generate`` decodes with a KV cache in both modes (``shadow_edge.generation``).
    """

    task_type = CAUSAL_LM
    head_names = HEADS[CAUSAL_LM]
    default_trainable_heads = ()

    def _find_base_head(self, base: PreTrainedModel) -> nn.Module:
        if self.peft_model.is_encoder:
            raise ConfigError(
                f"{type(base).__name__} is an encoder ({base.config.model_type}), which cannot "
                "generate text; use ShadowForSequenceClassification, or a decoder-only base."
            )
        head = base.get_output_embeddings()
        if head is None:
            raise ConfigError(
                f"{type(base).__name__} has no lm_head; pass an AutoModelForCausalLM model."
            )
        return head

    def _score_shadow(self, shadow_hidden, attention_mask):
        return self.shadow_lm_head(_to_head_dtype(shadow_hidden, self.shadow_lm_head))

    def _loss(self, logits, labels, positions=None):
        return causal_lm_loss(logits, labels, positions)

    def _output(self, *, loss, logits, shadow_logits, cache):
        return ShadowCausalLMOutputWithPast(
            loss=loss, logits=logits, shadow_logits=shadow_logits, **{OUTPUT_CACHE_FIELD: cache}
        )

    @property
    def generation_config(self) -> GenerationConfig:
        """The base's generation config (token ids used as ``generate`` defaults)."""
        config = getattr(self.peft_model.base_model, "generation_config", None)
        return config if config is not None else GenerationConfig.from_model_config(self.config)

    def generate(self, input_ids: torch.LongTensor | None = None, attention_mask=None, **kwargs: Any) -> torch.LongTensor:
        """Greedy or sampled decoding with a KV cache (``use_cache=True`` by default).

        See ``shadow_edge.generation.generate`` for the arguments. Returns int64
        ``[batch, prompt + new]``.
        """
        return generation.generate(self, input_ids, attention_mask=attention_mask, **kwargs)


class ShadowForSequenceClassification(ShadowTaskModel):
    """Sequence classification: ``classifier_head`` (the base's ``score``/``classifier``) and
    ``shadow_classifier_head`` (a copy), both trainable by default. A trainable
    ``classifier_head`` is a copy put in the base's place, so the base's own head stays as
    loaded.

    Decoders: the shadow head scores the shadow start state of the last non-padding token
    (``pooling.pool_last_token``, correct for left and right padding). Encoders (BERT,
    DistilBERT, RoBERTa): both heads are the architecture's own head run on the first
    non-padding token (``encoder_heads.py``), the base's on the base backbone's output, the
    shadow's on the shadow start state.
    """

    task_type = SEQ_CLS
    head_names = HEADS[SEQ_CLS]
    default_trainable_heads = ("classifier_head", "shadow_classifier_head")

    def _find_base_head(self, base: PreTrainedModel) -> nn.Module:
        if self.peft_model.is_encoder:
            return encoder_classifier_head(base)
        for attr in ("score", "classifier"):
            head = getattr(base, attr, None)
            if isinstance(head, nn.Module):
                return head
        raise ConfigError(
            f"{type(base).__name__} has no classifier head (score/classifier); pass an "
            "AutoModelForSequenceClassification model."
        )

    def _score_shadow(self, shadow_hidden, attention_mask):
        head = self.shadow_classifier_head
        if isinstance(head, EncoderClassifierHead):
            return head(_to_head_dtype(shadow_hidden, head), attention_mask)
        pooled = pool_last_token(shadow_hidden, attention_mask)
        return head(_to_head_dtype(pooled, head))

    def _base_logits(self, output, attention_mask):
        if isinstance(self.classifier_head, EncoderClassifierHead):  # the backbone ran alone
            return self.classifier_head(output.last_hidden_state, attention_mask)
        return output.logits

    def _loss(self, logits, labels, positions=None):
        from transformers.loss.loss_utils import ForSequenceClassificationLoss

        return ForSequenceClassificationLoss(labels=labels, pooled_logits=logits, config=self.config)

    def _output(self, *, loss, logits, shadow_logits, cache):
        return ShadowSequenceClassifierOutput(loss=loss, logits=logits, shadow_logits=shadow_logits)

    def _config_extras(self) -> dict[str, Any]:
        id2label = getattr(self.config, "id2label", None)
        return {
            "num_labels": self.config.num_labels,
            "id2label": {int(k): str(v) for k, v in id2label.items()} if id2label else None,
            "problem_type": getattr(self.config, "problem_type", None),
        }


#: Task type -> its task wrapper (``load_shadow_checkpoint`` and the wrong-task message).
TASK_MODELS: dict[str, type[ShadowTaskModel]] = {
    CAUSAL_LM: ShadowForCausalLM, SEQ_CLS: ShadowForSequenceClassification}
