"""Checking: the torch side of the parity gate, and the gate itself.

:func:`build_reference` runs the torch *reference* (the unfolded source model in shadow-only
mode, full recompute, no cache) on the probe sets of :mod:`exporters.probes` and returns a
:class:`runtime.parity.ParityReference`. :func:`gate` compares a graph with it using the
torch-free checks of :mod:`runtime.parity` (definitions and thresholds are documented
there) and raises :class:`shadow_edge.errors.ParityError` carrying the report when a check
fails. The exporter stores the reference in the export folder, so ``shadow-edge verify
OUT`` can repeat exactly this gate on another machine without torch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from runtime.errors import ModelFolderError
from runtime.generation import positions_from_mask
from runtime.manifest import PRECISIONS
from runtime.parity import (
    FP32_RELATIVE_TOLERANCE,
    GREEDY_STEPS,
    QUANTIZED_THRESHOLDS,
    RANDOM_ID_THRESHOLDS,
    SLIDING_WINDOW,
    TEXT,
    ParityCheck,
    ParityReference,
    ParityReport,
    ProbeSet,
    check_model,
)
from shadow_edge.errors import ConfigError

from .errors import ExportError, ParityError
from .folding import Reference
from .probes import build_probes, probe_shapes, segment_ids, sliding_window_prefill
from .spec import TEXT_GENERATION, normalize_task

logger = logging.getLogger(__name__)

__all__ = [
    "FP32_RELATIVE_TOLERANCE",
    "GREEDY_STEPS",
    "PRECISIONS",
    "QUANTIZED_THRESHOLDS",
    "RANDOM_ID_THRESHOLDS",
    "TEXT",
    "ParityCheck",
    "ParityReport",
    "build_reference",
    "check_parity",
    "gate",
    "stored_probe_ids",
    "torch_logits",
]


def torch_logits(reference: Reference, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """float32 logits of the torch ``reference`` for int64 ``ids`` / ``mask`` [batch, seq]."""
    with torch.no_grad():
        out = reference(torch.from_numpy(ids), torch.from_numpy(mask),
                        torch.from_numpy(positions_from_mask(mask)))
    return out.detach().float().numpy()


def _classifier_logits(reference: Reference, ids: np.ndarray,
                       types: np.ndarray | None) -> np.ndarray:
    """Row by row (HF classifiers pool by pad id and refuse batches without one), with no
    ``position_ids``: each classifier counts its own (RoBERTa starts at padding_idx + 1)."""
    rows = []
    with torch.no_grad():
        for i in range(ids.shape[0]):
            kwargs = {} if types is None else {"token_type_ids": torch.from_numpy(types[i:i + 1])}
            row = torch.from_numpy(ids[i:i + 1])
            rows.append(reference(row, torch.ones_like(row), None, **kwargs).detach().float())
    return torch.cat(rows).numpy()


def _greedy(reference: Reference, prompt: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` greedy tokens of one row, each from a full recompute (no cache)."""
    running, tokens = prompt[None].astype(np.int64), []
    for _ in range(steps):
        token = int(torch_logits(reference, running, np.ones_like(running))[0, -1].argmax())
        tokens.append(token)
        running = np.concatenate([running, [[token]]], axis=1)
    return np.array(tokens, np.int64)


def build_reference(reference: Reference, *, task: str, precision: str, vocab_size: int,
                    pad_token_id: int | None = None, special_ids: tuple = (), tokenizer=None,
                    calibration_text: str | None = None,
                    probes: dict[str, np.ndarray] | None = None,
                    greedy_steps: int = GREEDY_STEPS, sliding_window: int | None = None,
                    token_type_ids: bool = False) -> ParityReference:
    """The reference logits of the gate's probe sets.

    Args:
        reference: torch callable ``(input_ids, attention_mask, position_ids) -> logits``.
        task, precision: select the probe shapes and what is stored (fp32: float32 logits
            and the greedy continuation; quantized: float16 logits).
        tokenizer: the export's :class:`runtime.tokenizer.Tokenizer` (real-text probes).
        calibration_text: the user's text, probed as the ``calibration`` set.
        probes: given probe ids ``{name: int64 [rows, seq]}`` (e.g. a stored reference's)
            instead of building them.
        sliding_window: text generation: the attention window in effect (tokens), probed
            by a longer row (``exporters.probes.sliding_window_prefill``); ``None``: none.
        token_type_ids: text classification: the graph takes ``token_type_ids``; the probe
            rows then have two segments (``exporters.probes.segment_ids``).

    Raises:
        ConfigError: calibration text without a tokenizer, or too short.
    """
    task = normalize_task(task)
    if probes is None:
        probes = build_probes(task, precision, vocab_size=vocab_size, tokenizer=tokenizer,
                              calibration_text=calibration_text, special_ids=special_ids,
                              sliding_window=sliding_window)
    shapes = probe_shapes(task, precision)
    dtype = np.float32 if precision == "fp32" else np.float16
    sets = []
    for name, ids in probes.items():
        types = scored_from = None
        if task == TEXT_GENERATION:
            logits = torch_logits(reference, ids, np.ones_like(ids))
            prefill = min(shapes.get(name, (0, 0, ids.shape[1] // 2))[2], ids.shape[1])
            if name == SLIDING_WINDOW:  # only the cached steps at its end are stored
                prefill = scored_from = sliding_window_prefill(ids.shape[1])
                logits = logits[:, scored_from:]
        else:
            types = segment_ids(ids) if token_type_ids else None
            logits, prefill = _classifier_logits(reference, ids, types), 0
        sets.append(ProbeSet(name, ids, logits.astype(dtype), prefill, scored_from or 0, types))
    prompt = tokens = None
    if task == TEXT_GENERATION and precision == "fp32":
        prompt = probes[TEXT][0]
        tokens = _greedy(reference, prompt, greedy_steps)
    return ParityReference(task=task, precision=precision, probes=sets,
                           pad_token_id=int(pad_token_id if pad_token_id is not None else 0),
                           greedy_prompt=prompt, greedy_tokens=tokens,
                           source="torch shadow_only, full recompute")


def gate(onnx_path: str | Path, reference: ParityReference, *,
         raise_on_failure: bool = True) -> ParityReport:
    """Check ``onnx_path`` against ``reference`` (:func:`runtime.parity.check_model`).

    Raises:
        ParityError: a check failed and ``raise_on_failure`` (``error.report`` is the dict).
        ExportError: onnxruntime cannot load or run the graph.
    """
    try:
        report = check_model(onnx_path, reference)
    except ModelFolderError as error:
        raise ExportError(f"{error}") from error
    if raise_on_failure and not report.passed:
        failed = ", ".join(c.name for c in report.failures())
        raise ParityError(
            f"the {reference.precision} export does not match the torch model ({failed}): "
            f"{report.summary()}. The export is not trustworthy; try a higher precision "
            "or report the model", report.to_dict(),
        )
    return report


def check_parity(onnx_path: str | Path, reference: Reference, *, task: str,
                 precision: str = "fp32", vocab_size: int, pad_token_id: int | None = None,
                 special_ids: tuple = (), tokenizer=None, calibration_text: str | None = None,
                 raise_on_failure: bool = True, sliding_window: int | None = None,
                 token_type_ids: bool = False) -> ParityReport:
    """Build the reference (:func:`build_reference`) and gate ``onnx_path`` on it.

    Raises:
        ParityError: a check failed (``error.report`` is the report dict).
        ConfigError: unknown precision or task; bad calibration text.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    built = build_reference(reference, task=task, precision=precision, vocab_size=vocab_size,
                            pad_token_id=pad_token_id, special_ids=tuple(special_ids),
                            tokenizer=tokenizer, calibration_text=calibration_text,
                            sliding_window=sliding_window, token_type_ids=token_type_ids)
    return gate(onnx_path, built, raise_on_failure=raise_on_failure)


def stored_probe_ids(reference: ParityReference) -> dict[str, np.ndarray]:
    """The probe ids of a stored reference, to rebuild it with another torch model."""
    return {p.name: p.input_ids for p in reference.probes}

