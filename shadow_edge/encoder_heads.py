"""Classifier heads of encoder bases, applied to any hidden states (base or shadow).

An encoder's ``*ForSequenceClassification`` pools the *first* token (``[CLS]`` / ``<s>``)
and runs its own head on it:

| family | head (transformers) | :class:`EncoderClassifierHead` |
| --- | --- | --- |
| DistilBERT | ``pre_classifier`` -> ReLU -> dropout -> ``classifier`` | :class:`PreClassifierHead` |
| BERT, MiniLM | ``bert.pooler`` (dense + tanh) -> dropout -> ``classifier`` | :class:`PoolerHead` |
| RoBERTa | ``classifier`` (dense -> tanh -> ``out_proj``, on ``features[:, 0]``) | :class:`FeaturesHead` |

The heads here hold the base model's own modules (the same objects, so training
``classifier_head`` trains the base's head) and run them on ``[batch, seq, H]`` hidden states,
so the shadow head (a deep copy) scores the shadow state exactly as the base head scores the
base's. One difference from transformers, on purpose: the pooled token is the first
*non-padding* token of each row (:func:`first_token_index`), so left padding gives the same
logits as right padding; with right padding it is position 0, as in transformers.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .errors import ConfigError


def first_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the first non-padding position of each row (the number of leading zeros).

    Args:
        attention_mask: ``[batch, seq]``, 1 (or True) for tokens and 0 for padding.

    Returns:
        int64 ``[batch]``; a row without tokens maps to its last position.

    Example: ``[[1, 1, 0], [0, 0, 1]]`` -> ``[0, 2]``. Computed with CumSum + ReduceSum (no
    ArgMax), which exports to ONNX as it is.
    """
    mask = attention_mask.to(torch.int64)
    leading = (mask.cumsum(-1) == 0).to(torch.int64).sum(-1)
    return leading.clamp(max=mask.shape[-1] - 1)


def pool_first_token(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """``[batch, seq, H]`` -> ``[batch, 1, H]`` at :func:`first_token_index` (position 0 when
    ``attention_mask`` is ``None``). The length-1 sequence axis is kept because the
    transformers head modules read ``hidden[:, 0]`` themselves."""
    if attention_mask is None:
        return hidden[:, :1]
    index = first_token_index(attention_mask[:, -hidden.shape[1]:]).to(hidden.device)
    index = index.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
    return torch.gather(hidden, 1, index)


class EncoderClassifierHead(nn.Module):
    """Base class: ``forward(hidden_states [batch, seq, H], attention_mask [batch, seq] or
    None) -> logits [batch, num_labels]`` (float, dtype of the head).

    ``first_linear`` names the Linear that reads the pooled vector (a projection ``P`` folds
    into it: ``W @ P``); ``with_first_linear`` returns a copy with that Linear replaced.
    """

    #: dotted name of the Linear reading the pooled vector
    first_linear: str = ""
    #: dotted name of the Linear producing the logits
    last_linear: str = ""

    def pooled_logits(self, first_token: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.pooled_logits(pool_first_token(hidden_states, attention_mask))

    @property
    def num_labels(self) -> int:
        return int(self.get_submodule(self.last_linear).out_features)

    @property
    def in_features(self) -> int:
        return int(self.get_submodule(self.first_linear).in_features)

    def with_first_linear(self, linear: nn.Linear) -> EncoderClassifierHead:
        """A deep copy whose :attr:`first_linear` is ``linear`` (e.g. with a projection folded in)."""
        head = copy.deepcopy(self)
        parent_name, _, attr = self.first_linear.rpartition(".")
        parent = head.get_submodule(parent_name) if parent_name else head
        setattr(parent, attr, linear)
        return head

    def task_model_modules(self, backbone_prefix: str) -> dict[str, nn.Module]:  # pragma: no cover
        """The head's modules under their names in the transformers task model
        (``backbone_prefix`` is the backbone's attribute, e.g. ``"bert."``)."""
        raise NotImplementedError


class PreClassifierHead(EncoderClassifierHead):
    """DistilBERT: ``classifier(dropout(relu(pre_classifier(x))))`` on the first token."""

    first_linear, last_linear = "pre_classifier", "classifier"

    def __init__(self, pre_classifier: nn.Linear, dropout: nn.Module, classifier: nn.Linear):
        super().__init__()
        self.pre_classifier, self.dropout, self.classifier = pre_classifier, dropout, classifier

    def pooled_logits(self, first_token):
        x = torch.relu(self.pre_classifier(first_token[:, 0]))
        return self.classifier(self.dropout(x))

    def task_model_modules(self, backbone_prefix):
        return {"pre_classifier": self.pre_classifier, "classifier": self.classifier}


class PoolerHead(EncoderClassifierHead):
    """BERT / MiniLM: ``classifier(dropout(pooler(x)))``; the pooler is dense + tanh on the
    first token (``BertPooler``)."""

    first_linear, last_linear = "pooler.dense", "classifier"

    def __init__(self, pooler: nn.Module, dropout: nn.Module, classifier: nn.Linear):
        super().__init__()
        self.pooler, self.dropout, self.classifier = pooler, dropout, classifier

    def pooled_logits(self, first_token):
        return self.classifier(self.dropout(self.pooler(first_token)))

    def task_model_modules(self, backbone_prefix):
        return {f"{backbone_prefix}pooler": self.pooler, "classifier": self.classifier}


class FeaturesHead(EncoderClassifierHead):
    """RoBERTa: the ``RobertaClassificationHead`` itself (dense -> tanh -> ``out_proj`` on
    ``features[:, 0]``), fed the pooled token."""

    first_linear, last_linear = "classifier.dense", "classifier.out_proj"

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def pooled_logits(self, first_token):
        return self.classifier(first_token)

    def task_model_modules(self, backbone_prefix):
        return {"classifier": self.classifier}


def encoder_classifier_head(model: nn.Module) -> EncoderClassifierHead:
    """The :class:`EncoderClassifierHead` over an encoder ``*ForSequenceClassification``'s own
    head modules (shared, not copied).

    Raises:
        ConfigError: the model has none of the three head layouts in the module docstring.
    """
    classifier = getattr(model, "classifier", None)
    pre_classifier = getattr(model, "pre_classifier", None)
    dropout = getattr(model, "dropout", None)
    dropout = dropout if isinstance(dropout, nn.Module) else nn.Identity()
    pooler = getattr(getattr(model, "base_model", None), "pooler", None)
    if isinstance(pre_classifier, nn.Linear) and isinstance(classifier, nn.Linear):
        return PreClassifierHead(pre_classifier, dropout, classifier)
    if isinstance(classifier, nn.Linear) and isinstance(pooler, nn.Module):
        return PoolerHead(pooler, dropout, classifier)
    if isinstance(classifier, nn.Module) and all(
        isinstance(getattr(classifier, name, None), nn.Linear) for name in ("dense", "out_proj")
    ):
        return FeaturesHead(classifier)
    raise ConfigError(
        f"{type(model).__name__} has no encoder classifier head ShadowPEFT knows (DistilBERT's "
        "pre_classifier + classifier, BERT's pooler + classifier, RoBERTa's dense + out_proj); "
        "pass an AutoModelForSequenceClassification model of a supported encoder."
    )


__all__ = [
    "EncoderClassifierHead",
    "FeaturesHead",
    "PoolerHead",
    "PreClassifierHead",
    "encoder_classifier_head",
    "first_token_index",
    "pool_first_token",
]
