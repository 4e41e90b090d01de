"""Compare int8 schemes on one fp32 export: accuracy, batch independence, speed and size.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_schemes.py FP32_EXPORT [--texts FILE]

The order of the criteria is issue 10's: accuracy, batch independence, speed, size. The
reference is the fp32 export itself (equal to torch to 1e-4 x logit scale: the fp32 gate).
Probes: windows of real text (``--texts``, else the parity gate's built-in sample) tokenized
with the export's tokenizer, teacher-forced through the KV cache, and random token ids.
Speed: decode (16-token chunks after a 128-token prompt) and prefill (128 tokens) of every
scheme in interleaved rounds in this process, medians, as ratios to ``quantize_dynamic``
(shadow-edge's int8 before issue 10). One thread. Nothing here asserts a timing.

Schemes:

- ``dynamic``: ``quantize_dynamic`` QInt8 weights per channel, u8 activations per tensor;
- ``dynamic_reduce_range``: the same with 7-bit weights (avoids ``vpmaddubsw`` saturation);
- ``qdq_s8s8``: ``quantize_static`` QDQ, s8 activations and weights (calibrated on the probe
  text), run at graph optimisation level "basic" (onnxruntime 1.32's "all" rejects it);
- ``matmulnbits8_b32`` (shadow-edge's int8), ``matmulnbits8_b64``: 8-bit block-wise weights
  and embeddings, accuracy level 4;
- ``matmulnbits4_b32``: shadow-edge's int4, for scale.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from exporters.probes import SAMPLE_TEXT, random_ids, text_windows
from exporters.quantization import quantize, quantize_nbits
from runtime.onnx_probe import OnnxCausalLM
from runtime.parity import cosine
from runtime.tokenizer import Tokenizer

SCHEMES = ("dynamic", "dynamic_reduce_range", "qdq_s8s8", "matmulnbits8_b32",
           "matmulnbits8_b64", "matmulnbits4_b32")


def _prepared(source: Path, work: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / "prepared.onnx"
    try:
        quant_pre_process(str(source), str(out))
    except (AssertionError, KeyError, ValueError, TypeError):  # symbolic shapes: see quantization
        quant_pre_process(str(source), str(out), skip_symbolic_shape=True)
    return out


def build(scheme: str, source: Path, output: Path, calibration: list[dict]) -> None:
    """Write ``scheme``'s quantization of ``source`` to ``output``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    with tempfile.TemporaryDirectory() as work:
        if scheme.startswith("dynamic"):
            quantize_dynamic(str(_prepared(source, Path(work))), str(output),
                             weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=scheme.endswith("reduce_range"),
                             op_types_to_quantize=["MatMul", "Gather"])
        elif scheme == "qdq_s8s8":
            class Reader(CalibrationDataReader):
                def __init__(self):
                    self.feeds = iter(calibration)

                def get_next(self):
                    return next(self.feeds, None)

            quantize_static(str(_prepared(source, Path(work))), str(output), Reader(),
                            quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, per_channel=True,
                            op_types_to_quantize=["MatMul", "Gather"])
        elif scheme == "matmulnbits8_b64":
            quantize_nbits(source, output, 8, block_size=64)
        else:
            quantize(source, output, "int8" if scheme == "matmulnbits8_b32" else "int4")


def _model(path: Path, level: str) -> OnnxCausalLM:
    model = OnnxCausalLM.__new__(OnnxCausalLM)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = 1, 3
    if level == "basic":
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    model.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = model.session.get_inputs()
    model.past_names = [i.name for i in inputs if i.name.startswith("past_key_values.")]
    model.kv_heads, model.head_dim = int(inputs[3].shape[1]), int(inputs[3].shape[3])
    model.output_names = [o.name for o in model.session.get_outputs()]
    return model


def accuracy(model, reference, probes: np.ndarray) -> tuple[float, float]:
    """(top-1 agreement, mean cosine) vs ``reference`` teacher-forced, prefill half."""
    prefill = probes.shape[1] // 2
    mask = np.ones_like(probes)
    ours = model.prefill_then_decode(probes, mask, prefill)
    ref = reference.prefill_then_decode(probes, mask, prefill)
    top1 = float((ours.argmax(-1) == ref.argmax(-1)).mean())
    return top1, float(cosine(ours, ref).mean())


def batch_dependence(model, rows: list[np.ndarray], pad_id: int) -> tuple[float, bool]:
    """(max |row in a left-padded batch - row alone| / max |logit|, argmax all equal)."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, width - len(row):], mask[i, width - len(row):] = row, 1
    batch = model.step(ids, mask)[0]
    worst, same = 0.0, True
    for i, row in enumerate(rows):
        alone = model.step(row[None], np.ones((1, len(row)), np.int64))[0][0]
        part = batch[i, width - len(row):]
        worst = max(worst, float(np.abs(part - alone).max() / np.abs(alone).max()))
        same &= bool((part.argmax(-1) == alone.argmax(-1)).all())
    return worst, same


def speed(models: dict, prompt: np.ndarray, rounds: int) -> dict[str, dict[str, float]]:
    """Median prefill and decode tokens/s per model, interleaved rounds."""
    prefill = {name: [] for name in models}
    decode = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            mask = np.ones_like(prompt)
            start = time.perf_counter()
            logits, past = model.step(prompt, mask)
            prefill[name].append(prompt.shape[1] / (time.perf_counter() - start))
            start = time.perf_counter()
            for _ in range(16):
                mask = np.concatenate([mask, [[1]]], axis=1)
                token = np.array([[int(logits[0, -1].argmax())]])
                logits, past = model.step(token, mask, past)
            decode[name].append(16 / (time.perf_counter() - start))
    return {name: {"prefill": statistics.median(prefill[name]),
                   "decode": statistics.median(decode[name])} for name in models}


def _bytes(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path, help="an fp32 text-generation export folder")
    parser.add_argument("--texts", type=Path, help="UTF-8 text to probe (default: built-in)")
    parser.add_argument("--workdir", type=Path, default=Path("int8-schemes"))
    parser.add_argument("--schemes", default=",".join(SCHEMES))
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    source = args.export / "model.onnx"
    tokenizer = Tokenizer.from_folder(args.export)
    text = args.texts.read_text(encoding="utf-8") if args.texts else SAMPLE_TEXT
    manifest = json.loads((args.export / "shadow_edge.json").read_text())
    vocab, pad = manifest["model"]["vocab_size"], manifest["tokens"]["pad_token_id"] or 0
    probes = text_windows(tokenizer.encode(text), 8, 32)
    rand = random_ids(vocab, 4, 32, avoid=(pad,))
    calibration = []
    reference = OnnxCausalLM(source)
    for row in text_windows(tokenizer.encode(text), 8, 64):
        feed = {"input_ids": row[None], "attention_mask": np.ones((1, 64), np.int64),
                "position_ids": np.arange(64)[None]}
        feed.update(zip(reference.past_names, reference.empty_past(1)))
        calibration.append(feed)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results, models = {}, {}
    for scheme in args.schemes.split(","):
        path = args.workdir / f"{scheme}.onnx"
        if not path.exists():
            build(scheme, source, path, calibration)
        model = _model(path, "basic" if scheme == "qdq_s8s8" else "all")
        top1, cos = accuracy(model, reference, probes)
        rtop1, rcos = accuracy(model, reference, rand)
        drift, same = batch_dependence(model, [probes[0], probes[1][:20], probes[2][:9]], pad)
        results[scheme] = {"size_vs_fp32": _bytes(path) / _bytes(source), "top1_text": top1,
                           "cosine_text": cos, "top1_random_ids": rtop1,
                           "cosine_random_ids": rcos, "batch_max_rel_diff": drift,
                           "batch_argmax_identical": same}
        models[scheme] = model
        print(scheme, json.dumps({k: round(v, 5) if isinstance(v, float) else v
                                  for k, v in results[scheme].items()}), flush=True)
    timed = speed(models, text_windows(tokenizer.encode(text), 1, 128), args.rounds)
    base = timed.get("dynamic") or next(iter(timed.values()))
    for scheme, numbers in timed.items():
        results[scheme].update({f"{k}_tokens_per_s": v for k, v in numbers.items()})
        results[scheme].update({f"{k}_vs_dynamic": v / base[k] for k, v in numbers.items()})
        print(f"{scheme:22s} prefill {numbers['prefill']:8.1f} tok/s "
              f"x{numbers['prefill'] / base['prefill']:.2f}  decode {numbers['decode']:7.1f} "
              f"tok/s x{numbers['decode'] / base['decode']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
