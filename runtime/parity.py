"""The parity gate without torch: compare an exported graph with stored reference logits.

At export time the exporter computes the torch reference (the unfolded source model in
shadow-only mode, full recompute, no cache) on a few *probe sets* and stores it in the
export folder as ``parity_reference.npz`` (:class:`ParityReference`); the gate is this
module's check of the new graph against that file. ``shadow-edge verify OUT`` re-runs the
same check later on any machine with the runtime's dependencies only (a Raspberry Pi, a
laptop without torch), so an export is judged on the CPU and onnxruntime build that will
run it. Every report records where it ran (:func:`runtime.cpu.platform_record`).

Probe sets (token ids int64 [rows, seq]):

- ``text``: windows of a built-in English sample, tokenized with the export's tokenizer;
- ``calibration``: windows of the user's ``--calibration-text`` (when given);
- ``random_ids``: uniformly random ids (special tokens avoided): inputs no training text
  looks like, which expose quantization damage that real text hides;
- ``sliding_window`` (models with a sliding attention window, e.g. Gemma 3): one random row
  of ``window + 8`` tokens, prefilled up to 12 tokens before its end and decoded through the
  KV cache, so the cached steps cross the window. Only those last positions are stored and
  compared (``ProbeSet.scored_from``): a wrong or missing window changes them.

Classification probes of a graph that takes ``token_type_ids`` (BERT) carry two segments
(``ProbeSet.token_type_ids``), so a graph that ignored them would differ from the reference.

Definitions
-----------
- *logit scale*: ``max |logit|`` of the reference logits of all probe sets. fp32 tolerances
  are ``FP32_RELATIVE_TOLERANCE * scale`` (1e-4 relative, issue #3), so they do not depend
  on how peaked a model's logits are.
- *top-1 agreement*: fraction of positions where ``argmax`` of ONNX and reference logits
  agree, teacher-forced (every position sees the same true prefix; on random-weight models
  free-running agreement is meaningless after the first divergence, ASSETS.md).
- *mean logit cosine*: mean over positions of ``cos(onnx_logits, reference_logits)``.

Causal-LM checks use the KV cache: each probe row is prefilled in part and the rest decoded
one token per step. Padding checks run a left-padded (for classification also
right-padded) batch and compare its rows with the same rows run alone, ONNX against ONNX.

Reference size: fp32 exports store float32 logits (the 1e-4 tolerance is below float16's
resolution) for 8-token rows; quantized exports store float16 (rounding moves a cosine by
< 1e-6, far below the thresholds) for 32-token rows. For a SmolLM2-sized vocabulary
(49,152) that is 98 KB per stored position; the numbers per export are in
``exporters/README.md``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .cpu import platform_record
from .errors import ModelFolderError
from .manifest import FileInfo, check_files, read_manifest
from .onnx_probe import OnnxCausalLM, OnnxClassifier
from .validation import check_file_name

logger = logging.getLogger(__name__)

REFERENCE_FILE = "parity_reference.npz"
REFERENCE_FORMAT = 1
TEXT_GENERATION, TEXT_CLASSIFICATION = "text-generation", "text-classification"
TEXT, CALIBRATION, RANDOM_IDS = "text", "calibration", "random_ids"
SLIDING_WINDOW = "sliding_window"
FP32_RELATIVE_TOLERANCE = 1e-4
GREEDY_STEPS = 32

#: Gate thresholds for quantized exports on real text (the ``text`` and ``calibration``
#: probe sets), per precision: ``top1_agreement`` / ``mean_logit_cosine`` (>=, vs torch
#: fp32, teacher-forced through the KV cache) and ``padding_cosine`` (>=, worst position of
#: a left/right-padded row vs the same row alone). Measured by this gate (AMD EPYC, AVX2,
#: onnxruntime 1.32.0; text 2 x 32 tokens, random ids 1 x 32):
#:
#:   model                                              prec.  text top-1, cos.  random top-1, cos.
#:   robot-intent generation shadow (SmolLM2, 2 layers)  int8   0.953  0.99972    1.000  0.99987
#:   Gemma 3 270M, first 2 layers + tied head            int8   0.953  0.99985    0.969  0.99977
#:   tiny random decoders (tests/exporters, 6 archs)     int8   0.94-1  0.9999-1  0.97-1  0.9999-1
#:   robot-intent generation shadow                      int4   0.781  0.9767     0.625  0.9803
#:   Gemma 3 270M, first 2 layers + tied head            int4   0.750  0.9829     0.594  0.9775
#:   tiny random decoders (tests/exporters, 6 archs)     int4   0.69-1  0.981-0.994  0.72-1  0.982-0.994
#:   robot-intent shadow, old dynamic int8 on AVX2       int8   0.929  0.9938     0.938  0.9978
#:   Gemma 3 270M shadow, old dynamic int8 (issue 10)    int8   -      0.9995     -      0.9645
#:
#: Every padded-row cosine was 1.0000 (int8 and int4 quantize activations per row and block).
#: The thresholds sit below the worst measured value with margin: they catch broken graphs
#: and gross quantization damage, not the last percent. The int8 cosine thresholds also sit
#: above the old dynamic int8 on a CPU where it saturates, so such damage fails the gate.
QUANTIZED_THRESHOLDS = {
    "int8": {"top1_agreement": 0.85, "mean_logit_cosine": 0.995, "padding_cosine": 0.999},
    "int4": {"top1_agreement": 0.60, "mean_logit_cosine": 0.97, "padding_cosine": 0.999},
}
#: Gate thresholds on random token ids (the ``random_ids`` probe set), from the same table:
#: looser, because quantization error grows on inputs unlike any text.
RANDOM_ID_THRESHOLDS = {
    "int8": {"top1_agreement": 0.80, "mean_logit_cosine": 0.99},
    "int4": {"top1_agreement": 0.50, "mean_logit_cosine": 0.95},
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

    ``logit_scale`` is ``max |reference logit|`` (the fp32 tolerance unit); ``platform``
    says where the ONNX side ran (:func:`runtime.cpu.platform_record`); ``reference``
    describes the reference used (:meth:`ParityReference.summary`).
    """

    precision: str
    task: str
    checks: list[ParityCheck] = field(default_factory=list)
    logit_scale: float | None = None
    platform: dict | None = None
    reference: dict | None = None

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
                "logit_scale": self.logit_scale, "checks": [asdict(c) for c in self.checks],
                "platform": self.platform, "reference": self.reference}

    def summary(self) -> str:
        return "; ".join(f"{c.name}={c.value:.4g} ({c.comparison} {c.threshold:.4g})"
                         f"{'' if c.passed else ' FAILED'}" for c in self.checks)


@dataclass
class ProbeSet:
    """One probe set: ``input_ids`` int64 [rows, seq] and the reference ``logits``
    ([rows, seq - scored_from, vocab] for text generation, [rows, num_labels] for
    classification).

    ``prefill``: tokens run in the first step before cached decoding (text generation);
    ``scored_from``: the first position with stored logits (text generation);
    ``token_type_ids``: int64 [rows, seq] segment ids fed with the rows (classification
    graphs that take them), or ``None``.
    """

    name: str
    input_ids: np.ndarray
    logits: np.ndarray
    prefill: int = 0
    scored_from: int = 0
    token_type_ids: np.ndarray | None = None


@dataclass
class ParityReference:
    """What a parity check compares with: probe sets with reference logits, and for fp32
    text generation the reference's greedy continuation of ``greedy_prompt``.

    ``source`` says how the logits were made (e.g. ``"torch shadow_only, full recompute"``).
    """

    task: str
    precision: str
    probes: list[ProbeSet]
    pad_token_id: int = 0
    greedy_prompt: np.ndarray | None = None
    greedy_tokens: np.ndarray | None = None
    source: str = ""

    def probe(self, name: str) -> ProbeSet | None:
        return next((p for p in self.probes if p.name == name), None)

    def save(self, path: str | Path) -> Path:
        """Write the reference as one ``.npz`` file (numpy only, no pickle); returns the path."""
        path = Path(path)
        meta = {"format": REFERENCE_FORMAT, "task": self.task, "precision": self.precision,
                "pad_token_id": self.pad_token_id, "source": self.source,
                "probes": [{"name": p.name, "prefill": p.prefill, "scored_from": p.scored_from}
                           for p in self.probes]}
        arrays = {"meta": np.array(json.dumps(meta))}
        for p in self.probes:
            arrays[f"{p.name}.input_ids"] = np.asarray(p.input_ids, np.int32)
            arrays[f"{p.name}.logits"] = p.logits
            if p.token_type_ids is not None:
                arrays[f"{p.name}.token_type_ids"] = np.asarray(p.token_type_ids, np.int8)
        if self.greedy_prompt is not None:
            arrays["greedy.prompt"] = np.asarray(self.greedy_prompt, np.int32)
            arrays["greedy.tokens"] = np.asarray(self.greedy_tokens, np.int32)
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ParityReference:
        """Read a file written by :meth:`save`.

        Raises:
            ModelFolderError: missing, unreadable, or written by a newer shadow-edge.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            meta = json.loads(str(arrays["meta"]))
        except (OSError, ValueError, KeyError) as error:
            raise ModelFolderError(f"cannot read the parity reference {str(path)!r} ({error}); "
                                   "copy the export folder again or re-export it") from None
        if meta.get("format", 0) > REFERENCE_FORMAT:
            raise ModelFolderError(f"{str(path)!r} was written by a newer shadow-edge; upgrade "
                                   "shadow-edge (pip install -U shadow-edge) to verify it")
        def types(name: str) -> np.ndarray | None:
            found = arrays.get(f"{name}.token_type_ids")
            return None if found is None else found.astype(np.int64)

        probes = [ProbeSet(p["name"], arrays[f"{p['name']}.input_ids"].astype(np.int64),
                           arrays[f"{p['name']}.logits"], int(p["prefill"]),
                           int(p.get("scored_from", 0)), types(p["name"]))
                  for p in meta["probes"]]
        greedy = "greedy.prompt" in arrays
        return cls(task=meta["task"], precision=meta["precision"], probes=probes,
                   pad_token_id=int(meta["pad_token_id"]), source=meta.get("source", ""),
                   greedy_prompt=arrays["greedy.prompt"].astype(np.int64) if greedy else None,
                   greedy_tokens=arrays["greedy.tokens"].astype(np.int64) if greedy else None)

    def summary(self, file: str | None = None, nbytes: int | None = None,
                sha256: str | None = None) -> dict:
        """What the manifest and reports record about this reference (the manifest's
        ``parity.reference``: the file is not in ``files``, so an app may leave it out)."""
        return {"file": file, "bytes": nbytes, "sha256": sha256, "source": self.source,
                "logits_dtype": str(self.probes[0].logits.dtype) if self.probes else None,
                "probes": {p.name: list(p.input_ids.shape) for p in self.probes}}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of the last axis (float64), flattened over the leading axes."""
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(norms, 1e-30)


def left_pad(ids: np.ndarray, pad_id: int, pads: int) -> tuple[np.ndarray, np.ndarray]:
    """Row 0 keeps its length; row 1 loses its first ``pads`` tokens and is left-padded."""
    batch_ids, mask = ids.copy(), np.ones_like(ids)
    batch_ids[1, :pads] = pad_id
    mask[1, :pads] = 0
    return batch_ids, mask


def _suffix(probe: ProbeSet) -> str:
    return "" if probe.name == TEXT else f"_{probe.name}"


def _thresholds(precision: str, probe: ProbeSet) -> dict:
    random = probe.name in (RANDOM_IDS, SLIDING_WINDOW)  # both are random ids
    return (RANDOM_ID_THRESHOLDS if random else QUANTIZED_THRESHOLDS)[precision]


def _agreement(report: ParityReport, onnx: np.ndarray, ref: np.ndarray, probe: ProbeSet,
               precision: str, name: str, what: str) -> None:
    limits = _thresholds(precision, probe)
    flat_o, flat_r = onnx.reshape(-1, onnx.shape[-1]), ref.reshape(-1, ref.shape[-1])
    agreement = float((flat_o.argmax(-1) == flat_r.argmax(-1)).mean())
    report.add(f"{name}{_suffix(probe)}", agreement, limits["top1_agreement"], ">=",
               f"{probe.name}: {flat_o.shape[0]} {what}")
    report.add(f"mean_logit_cosine{_suffix(probe)}", float(cosine(flat_o, flat_r).mean()),
               limits["mean_logit_cosine"], ">=", f"{probe.name}: mean over {flat_o.shape[0]} "
               f"{what}")


def causal_lm_report(onnx_path, reference: ParityReference) -> ParityReport:
    """Parity report of a text-generation graph against ``reference`` (does not raise on a
    failed check)."""
    model = OnnxCausalLM(onnx_path)
    precision = reference.precision
    report = ParityReport(precision=precision, task=TEXT_GENERATION)
    scale = max(float(np.abs(p.logits.astype(np.float32)).max()) for p in reference.probes)
    report.logit_scale = scale
    tol = FP32_RELATIVE_TOLERANCE * scale
    for probe in reference.probes:
        ids, ref = probe.input_ids, probe.logits.astype(np.float32)
        mask = np.ones_like(ids)
        cached = model.prefill_then_decode(ids, mask, probe.prefill, scored_from=probe.scored_from)
        seq = ids.shape[1]
        if precision == "fp32":
            full = model.step(ids, mask, logits_to_keep=seq - probe.scored_from
                              if probe.scored_from else 0)[0]
            report.add(f"logits_max_abs_diff{_suffix(probe)}", np.abs(full - ref).max(), tol,
                       "<=", f"{probe.name}: first step (past length 0), {ids.shape[0]} x {seq}; "
                       "tolerance 1e-4 x scale")
            report.add(f"kv_cache_max_abs_diff{_suffix(probe)}", np.abs(cached - ref).max(), tol,
                       "<=", f"{probe.name}: prefill {probe.prefill} then {seq - probe.prefill} "
                       "cached decode steps vs full recompute")
        else:
            _agreement(report, cached, ref, probe, precision, "top1_agreement",
                       "positions (prefill + KV-cached decode)")
    text = reference.probe(TEXT) or reference.probes[0]
    pads = text.input_ids.shape[1] // 4
    padded_ids, padded_mask = left_pad(text.input_ids[:2], reference.pad_token_id, pads)
    padded = model.step(padded_ids, padded_mask)[0][1, pads:]
    alone = model.step(text.input_ids[1:2, pads:], np.ones_like(text.input_ids[1:2, pads:]))[0][0]
    if precision == "fp32":
        report.add("left_padding_max_abs_diff", np.abs(padded - alone).max(), tol, "<=",
                   f"{text.name}: row left-padded by {pads} vs the same row alone")
        onnx_tokens = model.greedy(reference.greedy_prompt, len(reference.greedy_tokens))
        same = next((i for i, (a, b) in enumerate(zip(onnx_tokens, reference.greedy_tokens))
                     if a != b), len(reference.greedy_tokens))
        report.add("greedy_tokens_identical", same, len(reference.greedy_tokens), ">=",
                   "leading identical greedy tokens: ONNX KV cache vs reference full recompute")
    else:
        report.add("left_padding_min_cosine", float(cosine(padded, alone).min()),
                   QUANTIZED_THRESHOLDS[precision]["padding_cosine"], ">=",
                   f"{text.name}: row left-padded by {pads} vs the same row alone, worst "
                   "position")
    return report


def classification_report(onnx_path, reference: ParityReference) -> ParityReport:
    """Parity report of a text-classification graph against ``reference`` (does not raise on
    a failed check)."""
    model = OnnxClassifier(onnx_path)
    precision = reference.precision
    report = ParityReport(precision=precision, task=TEXT_CLASSIFICATION)
    report.logit_scale = max(float(np.abs(p.logits).max()) for p in reference.probes)
    tol = FP32_RELATIVE_TOLERANCE * report.logit_scale
    for probe in reference.probes:
        ids, ref = probe.input_ids, probe.logits.astype(np.float32)
        onnx = model.logits(ids, np.ones_like(ids), probe.token_type_ids)
        if precision == "fp32":
            agreement = float((onnx.argmax(-1) == ref.argmax(-1)).mean())
            report.add(f"argmax_agreement{_suffix(probe)}", agreement, 1.0, ">=",
                       f"{probe.name}: {ids.shape[0]} rows; must be identical")
            report.add(f"logits_max_abs_diff{_suffix(probe)}", np.abs(onnx - ref).max(), tol,
                       "<=", f"{probe.name}: tolerance 1e-4 x scale")
        else:
            _agreement(report, onnx, ref, probe, precision, "argmax_agreement", "rows")
    text = reference.probe(TEXT) or reference.probes[0]
    ids, pad_id = text.input_ids, reference.pad_token_id
    seq = ids.shape[1]
    pads = seq // 4
    left_ids, left_mask = left_pad(ids[:2], pad_id, pads)
    right_ids, right_mask = ids[:2].copy(), np.ones_like(ids[:2])
    right_ids[1, seq - pads:], right_mask[1, seq - pads:] = pad_id, 0
    left = model.logits(left_ids, left_mask)[1]
    right = model.logits(right_ids, right_mask)[1]
    left_alone = model.logits(ids[1:2, pads:], np.ones_like(ids[1:2, pads:]))[0]
    right_alone = model.logits(ids[1:2, :seq - pads], np.ones_like(ids[1:2, :seq - pads]))[0]
    if precision == "fp32":
        report.add("left_padding_max_abs_diff", np.abs(left - left_alone).max(), tol, "<=",
                   f"{text.name}: row left-padded by {pads} vs alone")
        report.add("right_padding_max_abs_diff", np.abs(right - right_alone).max(), tol, "<=",
                   f"{text.name}: row right-padded by {pads} vs alone")
    else:
        worst = min(float(cosine(left, left_alone).min()), float(cosine(right, right_alone).min()))
        report.add("padding_min_cosine", worst, QUANTIZED_THRESHOLDS[precision]["padding_cosine"],
                   ">=", f"{text.name}: left/right-padded row vs alone")
    return report


def check_model(onnx_path, reference: ParityReference) -> ParityReport:
    """Run the gate's checks of ``onnx_path`` (.onnx or .ort) against ``reference``; the
    report records this machine (:func:`runtime.cpu.platform_record`). Does not raise on a
    failed check: look at ``report.passed``.

    Raises:
        ModelFolderError: onnxruntime cannot load or run the model.
    """
    run = causal_lm_report if reference.task == TEXT_GENERATION else classification_report
    report = run(onnx_path, reference)
    report.platform = platform_record()
    logger.info("parity (%s, %s) on %s: %s", reference.task, reference.precision,
                report.platform["machine"], report.summary())
    return report


def verify_folder(folder: str | Path) -> ParityReport:
    """Re-run the parity gate of an export folder on this machine, against the reference the
    exporter stored in it (no torch needed). Does not raise on a failed check.

    Raises:
        ModelFolderError: not an export folder, or it holds no parity reference (exported
            with ``--no-verify`` or by an older shadow-edge): verify it against its checkpoint
            (``shadow-edge verify OUT --against CKPT``, needs torch) or re-export it.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    recorded = (manifest.parity or {}).get("reference") or {}
    name = check_file_name(recorded.get("file"), "parity.reference.file", optional=True)
    path = folder / (name or REFERENCE_FILE)
    if name is None or not path.is_file():
        raise ModelFolderError(
            f"{str(folder)!r} holds no parity reference ({REFERENCE_FILE}): it was exported "
            "with --no-verify or by an older shadow-edge, or the file was left out. Verify it "
            "against its checkpoint with `shadow-edge verify OUT --against CKPT` (needs "
            "torch), or re-export it."
        )
    check_files(folder, manifest, hashes=True)
    if recorded.get("sha256") and FileInfo.of(path).sha256 != recorded["sha256"]:
        raise ModelFolderError(f"{str(path)!r} does not match its SHA-256 in the manifest; copy "
                               "the export folder again or re-export it")
    reference = ParityReference.load(path)
    report = check_model(folder / manifest.model_file, reference)
    report.reference = reference.summary(path.name, path.stat().st_size, recorded.get("sha256"))
    return report
