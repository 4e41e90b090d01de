"""Encoder sources (BERT incl. MiniLM, DistilBERT, RoBERTa): recognised before loading.

An encoder exports only as a classifier, with its own head (``shadow_edge.encoder_heads``).
Three wrong turns are closed here, each as a one-line error or the right model:

- an encoder folder whose ``architectures`` is a bare backbone or a masked/causal LM
  (``BertModel``, ``BertForMaskedLM``) has no trained classifier: loading it as
  ``AutoModelForSequenceClassification`` would invent a random head and ship a wrong
  classifier (even with ``--no-verify`` this is refused), and loading it as
  ``AutoModelForCausalLM`` would make a text generator of it;
- an encoder asked for text generation;
- an in-memory encoder classifier, which must keep its architecture's head and first-token
  pooling (not the decoders' last-token pooling).

Detection reads the config (``shadow_edge.encoders.is_encoder_config``): model type and
``is_encoder_decoder``, from a config object or a ``config.json`` dict.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from shadow_edge.encoder_heads import EncoderClassifierHead, encoder_classifier_head
from shadow_edge.encoders import is_encoder_config
from shadow_edge.errors import CheckpointError, ConfigError

from .spec import TEXT_CLASSIFICATION, TEXT_GENERATION

CLASSIFIER_SUFFIX = "ForSequenceClassification"


def _generation_error(model_type: str, what: str) -> ConfigError:
    return ConfigError(
        f"{what} is an encoder ({model_type}): it cannot generate text; export it as "
        f"{TEXT_CLASSIFICATION!r} (drop --task), or use a decoder-only model for {TEXT_GENERATION!r}"
    )


def check_encoder_folder(folder: Path, config: dict, task: str | None) -> None:
    """Refuse an encoder HF folder that cannot give a right classifier (module docstring).

    Args:
        config: the folder's parsed ``config.json``.
        task: the requested task (canonical) or ``None``.

    Raises:
        ConfigError: text generation requested.
        CheckpointError: the folder holds no ``*ForSequenceClassification`` model.
    """
    model_type = config.get("model_type")
    if task == TEXT_GENERATION:
        raise _generation_error(model_type, str(folder))
    archs = config.get("architectures") or []
    if not any(a.endswith(CLASSIFIER_SUFFIX) for a in archs):
        raise CheckpointError(
            f"{folder} holds a {'/'.join(archs) or model_type} encoder without a trained "
            "classification head, so there is nothing to export: train a classifier on it "
            "(ShadowForSequenceClassification, `shadow-edge train`) and export that checkpoint"
        )


def encoder_head(model: nn.Module, task: str | None) -> EncoderClassifierHead:
    """The classifier head of an in-memory encoder model (its own modules, not copies).

    Raises:
        ConfigError: text generation requested, or the model is not a
            ``*ForSequenceClassification`` with a known head.
    """
    what = type(model).__name__
    if task == TEXT_GENERATION:
        raise _generation_error(model.config.model_type, what)
    if not what.endswith(CLASSIFIER_SUFFIX):
        raise ConfigError(
            f"{what} is an encoder without a classification head, so there is nothing to "
            "export; export a *ForSequenceClassification model (trained) or a "
            "ShadowForSequenceClassification"
        )
    return encoder_classifier_head(model)


def is_encoder(model_or_config) -> bool:
    """Whether an in-memory model (by its config) or a config is a bidirectional encoder."""
    config = getattr(model_or_config, "config", model_or_config)
    return is_encoder_config(config)


__all__ = ["check_encoder_folder", "encoder_head", "is_encoder"]
