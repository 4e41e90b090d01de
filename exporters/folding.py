"""Build the shadow-only model (``exporters.shadow_module.DetachedShadow``) from any supported
source and fold its projection into the head: :func:`detach` (load + fold) and :func:`fold`.

Sources (:func:`detach`):

- a ShadowPEFT adapter folder (``shadow_config.json``), loaded with
  ``shadow_edge.load_shadow_checkpoint`` and the base from ``base=`` or the path recorded in
  the checkpoint;
- an in-memory ``ShadowForCausalLM`` / ``ShadowForSequenceClassification``;
- a standalone HF model folder or in-memory HF model, including the
  ``causal_lm_with_hidden_projection`` type (``AutoModelForCausalLMWithHiddenProjection``).

The fold (FORMAT.md step 6): a bias-free projection P [H, Hs] and a head W [V, H] (+ bias b)
become one Linear with weight ``W @ P`` [V, Hs] and the same bias. An encoder's head starts
with a Linear on the pooled token (DistilBERT's ``pre_classifier``, BERT's pooler dense,
RoBERTa's ``dense``); P folds into that one the same way (pooling a token commutes with a
per-position linear map). The folded model is checked against the unfolded one before
export (max relative logit change <= 1e-5).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from shadow_edge.backbone import input_embeddings_of
from shadow_edge.encoder_heads import EncoderClassifierHead

from . import sources
from .errors import ExportError
from .loaded import Loaded
from .shadow_module import DetachedShadow
from .spec import TEXT_CLASSIFICATION, TEXT_GENERATION

logger = logging.getLogger(__name__)

#: Largest relative logit change the fold may cause: max|logits_folded - logits| / max|logits|.
#: The fold is exact in real arithmetic; float32 re-association costs ~1e-7 relative.
FOLD_TOLERANCE = 1e-5

# A torch reference: (input_ids, attention_mask, position_ids) -> logits (full recompute).
Reference = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Detached(Loaded):
    """The result of :func:`detach`: the loaded source (:class:`~exporters.loaded.Loaded`)
    with ``model`` folded, plus the fold check and the size of the detached model.

    ``reference`` is the *unfolded* source model in shadow-only mode, used by the parity gate
    (``None`` once ``exporters.memory.release_source`` let it go).
    ``kind`` is ``"adapter"`` or ``"standalone"``. ``asset_dirs`` are folders to copy
    tokenizer / generation config files from, in order of preference.
    """

    fold_max_rel_diff: float = 0.0
    parameters: int = 0
    bytes: int = 0


def fold_head(head: nn.Linear, projection: nn.Linear | None) -> nn.Linear:
    """Return a new Linear equal to ``head(projection(x))`` (computed in float64).

    Raises:
        ExportError: the projection has a bias (it cannot fold into a single matrix).
    """
    if projection is None:
        return head
    if projection.bias is not None:
        raise ExportError(
            "the shadow hidden projection has a bias, so it cannot be folded into the head; "
            "ShadowPEFT projections are bias-free - re-create it with bias=False"
        )
    weight = head.weight.detach().double() @ projection.weight.detach().double()
    folded = nn.Linear(weight.shape[1], weight.shape[0], bias=head.bias is not None)
    folded = folded.to(dtype=head.weight.dtype, device=head.weight.device)
    with torch.no_grad():
        folded.weight.copy_(weight.to(head.weight.dtype))
        if head.bias is not None:
            folded.bias.copy_(head.bias.detach())
    return folded


def probe_inputs(vocab_size: int, *, batch: int = 2, seq: int = 8, seed: int = 0,
                 avoid: tuple[int, ...] = ()) -> torch.Tensor:
    """Deterministic random token ids int64 [batch, seq], avoiding special ids in ``avoid``."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch, seq), generator=generator)
    for special in avoid:
        if special is not None and 0 <= special < vocab_size:
            ids[ids == special] = (special + 1 + len(avoid)) % vocab_size
    return ids


def fold(model: DetachedShadow, *, tolerance: float = FOLD_TOLERANCE) -> tuple[DetachedShadow, float]:
    """Fold ``model.projection`` into the head and prove the logits did not move.

    Returns ``(folded_model, max_relative_diff)``; a model without projection is returned as
    is with diff 0.0.

    Raises:
        ExportError: the folded logits differ by more than ``tolerance`` (relative to the
            largest |logit|).
    """
    if model.projection is None:
        return model, 0.0
    if isinstance(model.head, EncoderClassifierHead):
        first = model.head.get_submodule(model.head.first_linear)
        head = model.head.with_first_linear(fold_head(first, model.projection))
    else:
        head = fold_head(model.head, model.projection)
    folded = DetachedShadow(
        model.backbone, head, task=model.task, id2label=model.id2label,
        problem_type=model.problem_type,
    ).eval()
    ids = probe_inputs(model.config.vocab_size)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        before = model.logits(ids, mask)
        after = folded.logits(ids, mask)
    scale = before.abs().max().clamp_min(torch.finfo(before.dtype).tiny)
    rel = float((after - before).abs().max() / scale)
    if not rel <= tolerance:  # also catches NaN
        raise ExportError(
            f"folding the projection into the head changed the logits by {rel:.3g} relative "
            f"(limit {tolerance:g}); the projection or head weights are not finite or badly "
            "scaled - check the checkpoint"
        )
    logger.info("folded projection into the head: max relative logit change %.3g", rel)
    return folded, rel


def untie_head(model: DetachedShadow) -> None:
    """Give a causal LM's head its own tensor where it is the input embedding's.

    A folder source shares its tensors with the detached model
    (``exporters.loaded.copy_fp32``), so a base that ties ``lm_head`` to ``embed_tokens``
    arrives tied. The traced graph then reads the head as a ``Transpose`` of the embedding,
    which ``exporters.head_graph`` does not take; with two equal tensors it finds the
    constant head and stores the table once anyway (``share_tied_table``).
    """
    if model.task != TEXT_GENERATION or not isinstance(model.head, nn.Linear):
        return
    embedding = input_embeddings_of(model.backbone)
    weight = model.head.weight
    table = getattr(embedding, "weight", None)
    if isinstance(table, torch.Tensor) and weight.data_ptr() == table.data_ptr():
        model.head.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)


def detach(source, *, base=None, task: str | None = None, trust_remote_code: bool = False,
           fold_tolerance: float = FOLD_TOLERANCE,
           progress: Callable[[str, dict], None] | None = None) -> Detached:
    """Build, fold and check the shadow-only model from ``source``.

    Args:
        source: adapter folder, HF model folder (path or str), or an in-memory
            ShadowFor* / HF ``PreTrainedModel`` / :class:`DetachedShadow`.
        base: base model path/id or in-memory model, for adapter checkpoints.
        task: ``"text-generation"`` / ``"text-classification"`` (or PEFT aliases); default:
            taken from the checkpoint.
        progress: optional ``callback(stage, info)``, called with ``"load"`` and ``"fold"``.

    Raises:
        CheckpointError: the source is not a checkpoint we know, is corrupt, or lacks a base.
        ConfigError: unknown task.
        ExportError: the fold check failed.
    """
    name = str(source) if isinstance(source, (str, Path)) else type(source).__name__
    notify(progress, "load", checkpoint=name, base=str(base) if base is not None else None)
    loaded = sources.load(source, base=base, task=task, trust_remote_code=trust_remote_code)
    untie_head(loaded.model)
    model, rel = fold(loaded.model, tolerance=fold_tolerance)
    model.eval()
    parameters, size = model.parameter_count()
    notify(progress, "fold", projection=loaded.model.projection is not None,
            fold_max_rel_diff=rel, parameters=parameters, bytes=size)
    logger.info("detached %s shadow: %d parameters, %d bytes", loaded.task, parameters, size)
    loaded_fields = {f.name: getattr(loaded, f.name) for f in fields(Loaded)}
    return Detached(**{**loaded_fields, "model": model}, fold_max_rel_diff=rel,
                    parameters=parameters, bytes=size)


def notify(progress, stage: str, **info) -> None:
    """Log the start of an export ``stage`` and pass ``info`` to the ``progress`` callback."""
    logger.info("export stage %s %s", stage, info)
    if progress is not None:
        progress(stage, info)


__all__ = [
    "FOLD_TOLERANCE",
    "TEXT_CLASSIFICATION",
    "TEXT_GENERATION",
    "Detached",
    "DetachedShadow",
    "detach",
    "fold",
    "fold_head",
    "probe_inputs",
    "untie_head",
]
