"""Export a trained shadow as a standalone Hugging Face model (the seed's ``export_shadow``).

The exported model computes the shadow-only path of FORMAT.md step 6,
``head(P(shadow_backbone(input_ids)))``, and loads back with the Auto classes after
``save_pretrained``:

- **Same hidden size (Hs == H, no projection):** an ordinary transformers task model, e.g.
  ``LlamaForCausalLM`` (the base's class when the shadow has the base's architecture, else
  the Auto class's model for the shadow's config). Its config is the shadow backbone's
  (``num_hidden_layers`` of the shadow, size overrides applied); its backbone weights are the
  shadow's; its input embeddings are the table that fed the shadow during training
  (``ShadowPeftModel.shadow_input_embeddings()``: the base's when shared, else the shadow's
  own); its head is described below. ``tie_word_embeddings`` is kept only when the head
  equals the embedding table.
- **Different hidden sizes:** an :class:`~shadow_edge.projection.AutoModelForCausalLMWithHiddenProjection`
  bundling the shadow backbone (which then must have its own Hs-sized embeddings: an
  H-sized shared table cannot feed it, and ``ShadowPeftModel`` refuses that combination),
  the trained ``shadow_hidden_projection`` and the head. Causal LM only.

Loading a projected export in a new process: ``import shadow_edge`` alone does not register
the projected model with the Auto classes (the package imports lazily, so that its CLI and
runtime never import torch). Do ``import shadow_edge.projection`` (or call
``shadow_edge.register_auto_classes()``) before ``AutoModelForCausalLM.from_pretrained``;
the seed's ``import shadow_peft`` line becomes that import. Same-size exports are plain
transformers models and need nothing.

Which head: given a ``ShadowPeftModel`` (the seed's ``model.peft_model.export_shadow()``)
the base's ``lm_head`` (or classifier) is exported, as in shadow-peft 0.1.x. Given a task
wrapper (``ShadowForCausalLM`` / ``ShadowForSequenceClassification``) its *shadow* head is
exported, so the exported logits equal the wrapper's ``"shadow_only"`` logits (a trained
``shadow_lm_head`` is kept). ``lm_head=`` overrides both for causal LMs.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, PreTrainedModel

from .backbone import embedding_attribute_name, input_embeddings_of
from .encoder_heads import EncoderClassifierHead, encoder_classifier_head
from .encoders import is_encoder_config
from .errors import ConfigError
from .projection import AutoModelForCausalLMWithHiddenProjection

logger = logging.getLogger(__name__)

# Fields a sequence-classification export takes from the base config.
_LABEL_FIELDS = ("num_labels", "id2label", "label2id", "problem_type", "pad_token_id")


def export_shadow(model: nn.Module, *, lm_head: nn.Module | None = None) -> PreTrainedModel:
    """Return a standalone HF model of the shadow path (weights copied, nothing shared).

    Args:
        model: a ``ShadowPeftModel``, or a task wrapper (``ShadowForCausalLM`` /
            ``ShadowForSequenceClassification``) whose shadow head is then exported.
        lm_head: causal LM only: the head to export instead, ``nn.Linear(H, V)`` (bias kept
            on a same-size export; the projected format needs a bias-free head).

    Returns:
        The exported model in eval mode, in the shadow backbone's dtype and device:
        a ``*ForCausalLM`` / ``*ForSequenceClassification`` when Hs == H, else an
        ``AutoModelForCausalLMWithHiddenProjection``. Causal exports carry a copy of the
        base's ``generation_config``. Logits: ``[batch, seq, V]`` (causal) or
        ``[batch, num_labels]`` (classification, pooled by transformers: decoders on the last
        non-``pad_token_id`` token, encoders on the first token, so right padding).

    Raises:
        ConfigError: ``model`` is neither a ``ShadowPeftModel`` nor a task wrapper;
            ``lm_head`` given for a classification base; a projected export's head is not a
            bias-free ``nn.Linear(H, V)``; the weights (backbone or head) do not fit the
            exported architecture (the message names the keys and shapes); a
            classification shadow with a projection (no standalone HF format exists); a
            projected shadow without its own input embeddings. (The exporters' ONNX errors,
            ``ExportError``, are not raised here: this export is the core's.)
    """
    peft, head = _resolve_model_and_head(model, lm_head)
    base = peft.base_model
    causal = base.get_output_embeddings() is not None
    if peft.shadow_hidden_projection is None:
        exported = _export_same_size(peft, head, causal)
    else:
        if not causal:
            raise ConfigError(
                "This classification shadow has a hidden projection (Hs != H); there is no "
                "standalone transformers format for it. Export it to ONNX with shadow-edge's "
                "exporters instead."
            )
        if input_embeddings_of(peft.shadow_model) is None:
            raise ConfigError(
                "The shadow backbone has no input embeddings but a different hidden size than "
                "the base, so the export cannot feed it; train the shadow with its own "
                "embeddings (prepare_shadow_model(..., remove_embed_tokens=False))."
            )
        exported = AutoModelForCausalLMWithHiddenProjection.wrap(
            peft.shadow_model,
            peft.shadow_hidden_projection,
            head if head is not None else base.get_output_embeddings(),
        )
    if causal and getattr(base, "generation_config", None) is not None:
        exported.generation_config = copy.deepcopy(base.generation_config)
    logger.info("exported the shadow as %s", type(exported).__name__)
    return exported.eval()


def _resolve_model_and_head(model: nn.Module, lm_head: nn.Module | None):
    """``(peft_model, head or None)``; ``None`` means the base's own head."""
    head = None
    if hasattr(model, "peft_model") and hasattr(model, "head_names"):  # a task wrapper
        head = getattr(model, model.head_names[1])
        model = model.peft_model
    if not (hasattr(model, "base_model") and hasattr(model, "shadow_model")
            and hasattr(model, "shadow_hidden_projection")):
        raise ConfigError(
            f"export_shadow expects a ShadowPeftModel or a ShadowForCausalLM / "
            f"ShadowForSequenceClassification, got {type(model).__name__}."
        )
    if lm_head is not None:
        if model.base_model.get_output_embeddings() is None:
            raise ConfigError(
                "lm_head= is for causal-LM shadows; this base is a classifier. Pass the "
                "ShadowForSequenceClassification wrapper to export its shadow classifier."
            )
        head = lm_head
    return model, head


def _named_child(parent: nn.Module, child: nn.Module) -> str:
    """Dotted name of ``child`` inside ``parent`` (``""`` when it is ``parent``)."""
    for name, module in parent.named_modules():
        if module is child:
            return name
    raise ConfigError(f"{type(child).__name__} is not a submodule of {type(parent).__name__}.")


def _new_export_model(base: PreTrainedModel, config, causal: bool) -> PreTrainedModel:
    """A fresh task model for ``config``: the base's class when the shadow has the base's
    architecture, else the Auto class's model for the shadow's config."""
    if type(config) is type(base.config):
        return type(base)(config)
    auto = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
    try:
        return auto.from_config(config)
    except ValueError as exc:
        raise ConfigError(
            f"transformers has no {auto.__name__} model for the shadow's "
            f"{type(config).__name__} ({exc}); use a shadow of a supported architecture."
        ) from exc


def _export_same_size(peft, head: nn.Module | None, causal: bool) -> PreTrainedModel:
    """Hs == H: the shadow backbone inside an ordinary transformers task model."""
    base = peft.base_model
    shadow = peft.shadow_model
    embeddings = peft.shadow_input_embeddings()
    config = copy.deepcopy(shadow.config)
    if not causal:
        for field in _LABEL_FIELDS:
            if hasattr(base.config, field):
                setattr(config, field, copy.deepcopy(getattr(base.config, field)))
    if hasattr(config, "use_cache"):
        config.use_cache = True

    if head is None:
        if causal:
            head = base.get_output_embeddings()
        else:
            head = _base_classifier(base)
    tie = causal and bool(getattr(config, "tie_word_embeddings", False))  # a classifier ties nothing
    if tie:
        tie = head.weight.shape == embeddings.weight.shape and torch.equal(
            head.weight.detach().cpu(), embeddings.weight.detach().cpu()
        )
        config.tie_word_embeddings = tie

    exported = _new_export_model(base, config, causal)
    reference = next(shadow.parameters())
    exported.to(device=reference.device, dtype=reference.dtype)

    prefix = _named_child(exported, exported.base_model)
    prefix = f"{prefix}." if prefix else ""
    state = {prefix + key: value for key, value in shadow.state_dict().items()}
    embedding_name = embedding_attribute_name(exported.base_model)
    state.update(_prefixed(embeddings, f"{prefix}{embedding_name}."))
    if isinstance(head, EncoderClassifierHead):  # e.g. BERT: bert.pooler + classifier
        for name, module in head.task_model_modules(prefix).items():
            state.update(_prefixed(module, f"{name}."))
    else:
        head_name = _head_name(exported)
        state.update(_prefixed(head, f"{head_name}."))
    if tie:  # the exported head is the embedding table itself
        state.update(_prefixed(embeddings, f"{_head_name(exported)}."))
    try:
        exported.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(
            f"The shadow's weights do not fit {type(exported).__name__}: {exc}. The shadow "
            "backbone or head does not match the exported architecture."
        ) from exc
    return exported


def _prefixed(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in module.state_dict().items()}


def _head_name(exported: PreTrainedModel) -> str:
    """The task head's attribute name (``lm_head``, ``score``, ...): the one child with
    parameters besides the backbone."""
    names = [
        name for name, child in exported.named_children()
        if child is not exported.base_model and any(True for _ in child.parameters())
    ]
    if len(names) != 1:
        raise ConfigError(
            f"Cannot tell the task head of {type(exported).__name__} (candidates {names}); "
            "export_shadow supports models with one head besides the backbone."
        )
    return names[0]


def _base_classifier(base: PreTrainedModel) -> nn.Module:
    if is_encoder_config(base.config):
        return encoder_classifier_head(base)
    for name, child in base.named_children():
        if child is not base.base_model and any(True for _ in child.parameters()):
            return child
    raise ConfigError(f"{type(base).__name__} has no classifier head to export.")


__all__ = ["export_shadow"]
