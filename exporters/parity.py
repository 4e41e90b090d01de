"""Checking: the parity report and gate between the torch shadow and its ONNX export.

Every check compares onnxruntime against the torch *reference* (the unfolded source model in
shadow-only mode, full recompute, no cache) on deterministic random prompts, and records
``name, value, threshold, comparison, passed``. :func:`check_parity` raises
:class:`shadow_edge.errors.ParityError` carrying the report when any check fails.

Definitions
-----------
- *logit scale*: ``max |logit|`` of the torch reference logits on the probe batch. fp32
  tolerances are ``FP32_RELATIVE_TOLERANCE * scale`` (1e-4 relative, issue #3), so they
  do not depend on how peaked a model's logits are.
- *top-1 agreement*: fraction of positions where ``argmax`` of ONNX and torch logits agree,
  teacher-forced (every position sees the same true prefix; on random-weight models
  free-running agreement is meaningless after the first divergence, ASSETS.md).
- *mean logit cosine*: mean over positions of ``cos(onnx_logits, torch_logits)``.

Causal-LM checks use the KV cache: the prompt is prefilled in part, the rest is decoded one
token per step, and those logits are compared to torch's full recompute. Padding checks run
a left-padded (and for classification also right-padded) batch and compare its rows with
the same rows run unpadded.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from shadow_edge.errors import ConfigError, ParityError

from .detaching import Reference, probe_inputs
from .ort_model import OnnxCausalLM, OnnxClassifier, positions
from .spec import TEXT_GENERATION, normalize_task

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8", "int4")
FP32_RELATIVE_TOLERANCE = 1e-4
GREEDY_STEPS = 32

#: Gate thresholds for quantized exports, per precision:
#: ``top1_agreement`` / ``mean_logit_cosine`` (>=, vs torch fp32, teacher-forced through the KV
#: cache) and ``padding_cosine`` (>=, worst position of a left/right-padded row vs the same
#: row unpadded). Measured (batch 4 x 32 random-token prompts, seed 0):
#:
#:   model                                            prec.  top-1  cosine  padding cos.
#:   SmolLM2-135M embeddings + first 4 layers + head  int8   0.844  0.9985  0.994
#:   SmolLM2-135M embeddings + first 4 layers + head  int4   0.820  0.9972  1.000
#:   SmolLM2-135M implicit 1-layer shadow adapter     int8   0.938  1.0000  1.000
#:   SmolLM2-135M implicit 1-layer shadow adapter     int4   0.734  0.9997  1.000
#:   tiny random llama (hidden 128, vocab 2048)       int8   0.977  0.9998  -
#:   tiny random llama (hidden 128, vocab 2048)       int4   0.70   0.984   1.000
#:
#: The thresholds sit below the worst measured value with margin: they catch broken graphs
#: (top-1 near 1/V, cosine near 0) and gross quantization damage, not the last percent.
#: int8 padding is not exact because dynamic quantization picks one activation scale per
#: tensor, i.e. per batch; int4 (weight-only, fp32 compute) is batch-independent.
QUANTIZED_THRESHOLDS = {
    "int8": {"top1_agreement": 0.75, "mean_logit_cosine": 0.99, "padding_cosine": 0.98},
    "int4": {"top1_agreement": 0.60, "mean_logit_cosine": 0.97, "padding_cosine": 0.999},
}


@dataclass
class ParityCheck:
    """One measured check: ``value`` compared (``"<="`` or ``">="``) with ``threshold``."""

    name: str
    value: float
    threshold: float
    comparison: str  # "<=" or ">="
    passed: bool
    detail: str = ""


@dataclass
class ParityReport:
    """All checks of one parity run; ``passed`` only when there are checks and all pass.
    ``logit_scale`` is ``max |torch logit|`` on the probe batch (the fp32 tolerance unit)."""

    precision: str
    task: str
    checks: list[ParityCheck] = field(default_factory=list)
    logit_scale: float | None = None

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def add(self, name: str, value: float, threshold: float, comparison: str, detail: str = ""):
        value = float(value)
        ok = value <= threshold if comparison == "<=" else value >= threshold
        self.checks.append(ParityCheck(name, value, float(threshold), comparison, bool(ok), detail))

    def check(self, name: str) -> ParityCheck:
        return next(c for c in self.checks if c.name == name)

    def failures(self) -> list[ParityCheck]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "precision": self.precision, "task": self.task,
                "logit_scale": self.logit_scale, "checks": [asdict(c) for c in self.checks]}

    def summary(self) -> str:
        return "; ".join(f"{c.name}={c.value:.4g} ({c.comparison} {c.threshold:.4g})"
                         f"{'' if c.passed else ' FAILED'}" for c in self.checks)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(norms, 1e-30)


def _torch_logits(reference: Reference, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = reference(torch.from_numpy(ids), torch.from_numpy(mask),
                        torch.from_numpy(positions(mask)))
    return out.detach().float().numpy()


def _left_pad(ids: np.ndarray, pad_id: int, pads: int) -> tuple[np.ndarray, np.ndarray]:
    """Row 0 keeps its length; row 1 loses its first ``pads`` tokens and is left-padded."""
    batch_ids, mask = ids.copy(), np.ones_like(ids)
    batch_ids[1, :pads] = pad_id
    mask[1, :pads] = 0
    return batch_ids, mask


def _quantized(report: ParityReport, onnx_logits: np.ndarray, torch_logits: np.ndarray,
               precision: str, what: str):
    limits = QUANTIZED_THRESHOLDS[precision]
    flat_o = onnx_logits.reshape(-1, onnx_logits.shape[-1])
    flat_t = torch_logits.reshape(-1, torch_logits.shape[-1])
    agreement = float((flat_o.argmax(-1) == flat_t.argmax(-1)).mean())
    report.add("top1_agreement", agreement, limits["top1_agreement"], ">=",
               f"teacher-forced over {flat_o.shape[0]} {what}")
    report.add("mean_logit_cosine", float(_cosine(flat_o, flat_t).mean()),
               limits["mean_logit_cosine"], ">=", f"mean over {flat_o.shape[0]} {what}")


def causal_lm_report(onnx_path, reference: Reference, *, precision: str = "fp32",
                     vocab_size: int, pad_token_id: int | None = None,
                     special_ids: tuple = (), greedy_steps: int = GREEDY_STEPS,
                     seed: int = 0) -> ParityReport:
    """Parity report for a text-generation export (does not raise; see :func:`check_parity`)."""
    model = OnnxCausalLM(onnx_path)
    report = ParityReport(precision=precision, task=TEXT_GENERATION)
    seq = 8 if precision == "fp32" else 32
    batch = 2 if precision == "fp32" else 4
    ids = probe_inputs(vocab_size, batch=batch, seq=seq, seed=seed, avoid=special_ids).numpy()
    mask = np.ones_like(ids)
    ref = _torch_logits(reference, ids, mask)
    scale = float(np.abs(ref).max())
    report.logit_scale = scale
    tol = FP32_RELATIVE_TOLERANCE * scale
    prefill = seq // 2
    cached = model.prefill_then_decode(ids, mask, prefill)
    pad_id = int(pad_token_id if pad_token_id is not None else 0)
    pads = seq // 4
    padded_ids, padded_mask = _left_pad(ids, pad_id, pads)
    padded = model.step(padded_ids, padded_mask)[0][1, pads:]
    alone = model.step(ids[1:, pads:], mask[1:, pads:])[0][0]
    pad_diff = float(np.abs(padded - alone).max())
    if precision == "fp32":
        full = model.step(ids, mask)[0]
        report.add("logits_max_abs_diff", np.abs(full - ref).max(), tol, "<=",
                   f"first step (past length 0), batch {batch} x {seq}; tolerance 1e-4 x scale")
        report.add("kv_cache_max_abs_diff", np.abs(cached - ref).max(), tol, "<=",
                   f"prefill {prefill} then {seq - prefill} cached decode steps vs full recompute")
        report.add("left_padding_max_abs_diff", pad_diff, tol, "<=",
                   f"row left-padded by {pads} vs the same row unpadded")
        prompt = ids[0]
        onnx_tokens = model.greedy(prompt, greedy_steps)
        torch_tokens, running = [], torch.from_numpy(prompt[None])
        for _ in range(greedy_steps):
            step_mask = np.ones(tuple(running.shape), np.int64)
            token = int(_torch_logits(reference, running.numpy(), step_mask)[0, -1].argmax())
            torch_tokens.append(token)
            running = torch.cat([running, torch.tensor([[token]])], dim=1)
        same = next((i for i, (a, b) in enumerate(zip(onnx_tokens, torch_tokens)) if a != b),
                    greedy_steps)
        report.add("greedy_tokens_identical", same, greedy_steps, ">=",
                   "leading identical greedy tokens: ONNX KV cache vs torch full recompute")
    else:
        _quantized(report, cached, ref, precision, "positions (prefill + KV-cached decode)")
        report.add("left_padding_min_cosine", float(_cosine(padded, alone).min()),
                   QUANTIZED_THRESHOLDS[precision]["padding_cosine"], ">=",
                   f"row left-padded by {pads} vs unpadded, worst position")
    return report


def classification_report(onnx_path, reference: Reference, *, precision: str = "fp32",
                          vocab_size: int, pad_token_id: int | None = None,
                          special_ids: tuple = (), seed: int = 0) -> ParityReport:
    """Parity report for a text-classification export (does not raise; see :func:`check_parity`)."""
    model = OnnxClassifier(onnx_path)
    report = ParityReport(precision=precision, task="text-classification")
    batch, seq = (4, 8) if precision == "fp32" else (32, 12)
    ids = probe_inputs(vocab_size, batch=batch, seq=seq, seed=seed, avoid=special_ids).numpy()
    mask = np.ones_like(ids)
    # Row by row: HF classifiers pool by pad id and refuse batches without a pad token.
    ref = np.concatenate([_torch_logits(reference, ids[i:i + 1], mask[i:i + 1])
                          for i in range(batch)])
    scale = float(np.abs(ref).max())
    report.logit_scale = scale
    onnx_logits = model.logits(ids, mask)
    pad_id = int(pad_token_id if pad_token_id is not None else 0)
    pads = seq // 4
    left_ids, left_mask = _left_pad(ids, pad_id, pads)
    right_ids, right_mask = ids.copy(), np.ones_like(ids)
    right_ids[1, seq - pads:], right_mask[1, seq - pads:] = pad_id, 0
    left = model.logits(left_ids, left_mask)[1]
    right = model.logits(right_ids, right_mask)[1]
    left_alone = model.logits(ids[1:, pads:], mask[1:, pads:])[0]
    right_alone = model.logits(ids[1:, :seq - pads], mask[1:, :seq - pads])[0]
    left_diff = float(np.abs(left - left_alone).max())
    right_diff = float(np.abs(right - right_alone).max())
    argmax = float((onnx_logits.argmax(-1) == ref.argmax(-1)).mean())
    if precision == "fp32":
        tol = FP32_RELATIVE_TOLERANCE * scale
        report.add("argmax_agreement", argmax, 1.0, ">=", f"{batch} rows; must be identical")
        report.add("logits_max_abs_diff", np.abs(onnx_logits - ref).max(), tol, "<=",
                   "tolerance 1e-4 x scale")
        report.add("left_padding_max_abs_diff", left_diff, tol, "<=",
                   f"row left-padded by {pads} vs unpadded")
        report.add("right_padding_max_abs_diff", right_diff, tol, "<=",
                   f"row right-padded by {pads} vs unpadded")
    else:
        limits = QUANTIZED_THRESHOLDS[precision]
        report.add("argmax_agreement", argmax, limits["top1_agreement"], ">=", f"{batch} rows")
        report.add("mean_logit_cosine", float(_cosine(onnx_logits, ref).mean()),
                   limits["mean_logit_cosine"], ">=", f"mean over {batch} rows")
        worst = min(float(_cosine(left, left_alone).min()), float(_cosine(right, right_alone).min()))
        report.add("padding_min_cosine", worst, limits["padding_cosine"], ">=",
                   "left/right-padded row vs unpadded")
    return report


def check_parity(onnx_path: str | Path, reference: Reference, *, task: str, precision: str = "fp32",
           vocab_size: int, pad_token_id: int | None = None, special_ids: tuple = (),
           raise_on_failure: bool = True) -> ParityReport:
    """Build the parity report for ``onnx_path`` against ``reference`` and gate on it.

    Args:
        reference: torch callable ``(input_ids, attention_mask, position_ids) -> logits``
            (int64 tensors; float logits [batch, seq, V] or [batch, num_labels]).
        task: ``"text-generation"`` or ``"text-classification"``.
        precision: ``"fp32"``, ``"int8"`` or ``"int4"`` (selects the checks and thresholds).
        vocab_size: the input vocabulary (probe prompts are drawn from it).
        special_ids: token ids never used in probe prompts (pad/bos/eos).

    Raises:
        ParityError: a check failed (``error.report`` is the report dict).
        ConfigError: unknown precision or task.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    task = normalize_task(task)
    run = causal_lm_report if task == TEXT_GENERATION else classification_report
    report = run(onnx_path, reference, precision=precision, vocab_size=vocab_size,
                 pad_token_id=pad_token_id, special_ids=tuple(special_ids))
    logger.info("parity (%s, %s): %s", task, precision, report.summary())
    if raise_on_failure and not report.passed:
        failed = ", ".join(c.name for c in report.failures())
        raise ParityError(
            f"the {precision} export does not match the torch model ({failed}): "
            f"{report.summary()}. The export is not trustworthy; try a higher precision "
            "or report the model", report.to_dict(),
        )
    return report
