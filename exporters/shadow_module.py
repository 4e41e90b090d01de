"""The detached shadow as one torch module (:class:`DetachedShadow`): backbone -> (projection)
-> head. Built and folded by ``exporters.folding``.

This is the model that goes to the edge (FORMAT.md, "shadow_only" mode, step 6). It is a
plain ``nn.Module`` so it can be traced by ``torch.onnx.export`` and used as a torch
reference. Positions and last-token pooling are the core's (``shadow_edge.pooling``), so
the graph computes what training did: ``position_ids = cumsum(attention_mask) - 1``,
clipped at 0 on padding, so left padding gives the same logits as the unpadded row.

Encoder shadows (BERT, DistilBERT, RoBERTa; classification only) run the core's encoder
path instead: position ids from the mask by the family's rule
(``shadow_edge.encoders.encoder_position_ids``), ``token_type_ids`` where the backbone uses
them, no cache, and the architecture's own head on the first non-padding token
(``shadow_edge.encoder_heads``).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, replace

import torch
from torch import nn

from shadow_edge.encoder_heads import EncoderClassifierHead
from shadow_edge.encoders import encoder_inputs, is_encoder_config, takes_token_type_ids
from shadow_edge.pooling import pool_last_token, positions_from_mask

from .errors import ExportError
from .spec import (
    TEXT_CLASSIFICATION,
    TEXT_GENERATION,
    ModelDims,
    architecture_spec,
    check_architecture_task,
)

logger = logging.getLogger(__name__)


def cache_argument(backbone: nn.Module) -> str:
    """The backbone's cache keyword: ``cache`` (transformers >= 5.24) or ``past_key_values``."""
    parameters = inspect.signature(backbone.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


@dataclass(frozen=True)
class Tokens:
    """Special token ids written to generation_config.json and the manifest."""

    eos_token_id: list[int]
    pad_token_id: int | None
    bos_token_id: int | None


class DetachedShadow(nn.Module):
    """Shadow-only model: ``head(projection(backbone(input_ids).last_hidden_state))``.

    Args:
        backbone: an HF base model with its input embeddings (e.g. ``LlamaModel``, ``BertModel``).
        head: ``nn.Linear(H, V)`` (causal LM), ``nn.Linear(H, num_labels)`` (decoder
            classifier) or an ``EncoderClassifierHead`` (encoder classifier).
        task: ``"text-generation"`` or ``"text-classification"``.
        projection: bias-free ``nn.Linear(Hs, H)`` or ``None``; :func:`exporters.folding.fold`
            folds it into the head.
        id2label: class names for classification.
        problem_type: the classifier's ``config.problem_type`` (how the runtime scores).

    ``forward(input_ids, attention_mask, position_ids=None, cache=None, token_type_ids=None)``
    returns ``(logits, cache)``: logits float32 [batch, seq, V] for text-generation, [batch,
    num_labels] for text-classification (pooled at the last non-padding token for decoders,
    by the encoder head for encoders; an encoder's cache is always ``None``).

    Raises:
        ConfigError: an encoder backbone with task text-generation.
        ExportError: an encoder backbone without an ``EncoderClassifierHead``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Linear,
        *,
        task: str,
        projection: nn.Linear | None = None,
        id2label: dict[int, str] | None = None,
        problem_type: str | None = None,
    ):
        super().__init__()
        self.backbone = backbone
        self.projection = projection
        self.head = head
        self.task = task
        self.id2label = dict(id2label) if id2label else None
        self.problem_type = problem_type
        self._cache_arg = cache_argument(backbone)
        self.encoder = is_encoder_config(backbone.config)
        if self.encoder:
            check_architecture_task(backbone.config, task)
            if not isinstance(head, EncoderClassifierHead):
                raise ExportError(
                    f"the encoder {type(backbone).__name__} needs its architecture's classifier "
                    f"head (pooled first token), got {type(head).__name__}; export the "
                    "*ForSequenceClassification model or the ShadowForSequenceClassification"
                )
        #: the graph takes token_type_ids (BERT-style segment embeddings)
        self.token_type_ids = self.encoder and takes_token_type_ids(backbone)

    @property
    def config(self):
        return self.backbone.config

    @property
    def num_labels(self) -> int | None:
        if self.task != TEXT_CLASSIFICATION:
            return None
        return self.head.num_labels if self.encoder else self.head.out_features

    def dims(self) -> ModelDims:
        """Sizes for the I/O spec; ``vocab_size`` is the head's output size for a causal LM
        (a projected shadow predicts the base vocabulary)."""
        dims = architecture_spec(self.config).dims(self.config, num_labels=self.num_labels)
        if self.task == TEXT_GENERATION:
            dims = replace(dims, vocab_size=int(self.head.out_features))
        return replace(dims, token_type_ids=self.token_type_ids)

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None,
                token_type_ids=None):
        if self.encoder:
            return self._encode(input_ids, attention_mask, position_ids, token_type_ids), None
        if attention_mask is None:
            past = cache.get_seq_length() if cache is not None else 0
            attention_mask = torch.ones(
                input_ids.shape[0], past + input_ids.shape[1], dtype=torch.int64,
                device=input_ids.device,
            )
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask)[:, -input_ids.shape[1]:]
        kwargs = {self._cache_arg: cache} if cache is not None else {}
        out = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            use_cache=cache is not None, **kwargs,
        )
        hidden = out.last_hidden_state
        if self.projection is not None:
            hidden = self.projection(hidden)
        if self.task == TEXT_CLASSIFICATION:
            hidden = pool_last_token(hidden, attention_mask)
        return self.head(hidden), out.past_key_values

    def _encode(self, input_ids, attention_mask, position_ids, token_type_ids):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kwargs = encoder_inputs(self.backbone, self.config, attention_mask=attention_mask,
                                position_ids=position_ids, token_type_ids=token_type_ids)
        hidden = self.backbone(input_ids=input_ids, **kwargs).last_hidden_state
        if self.projection is not None:
            hidden = self.projection(hidden)
        return self.head(hidden, attention_mask)

    @torch.no_grad()
    def logits(self, input_ids, attention_mask=None, position_ids=None, *,
               token_type_ids=None) -> torch.Tensor:
        """Full-recompute logits (no cache), the torch reference for parity."""
        return self(input_ids, attention_mask, position_ids, token_type_ids=token_type_ids)[0]

    def parameter_count(self) -> tuple[int, int]:
        """(parameters, bytes) over unique tensors (tied weights counted once)."""
        seen: set[int] = set()
        count = size = 0
        for parameter in self.parameters():
            key = parameter.data_ptr()
            if key in seen:
                continue
            seen.add(key)
            count += parameter.numel()
            size += parameter.numel() * parameter.element_size()
        return count, size
