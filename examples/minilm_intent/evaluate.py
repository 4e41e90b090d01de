"""Evaluate the MiniLM intent shadow and compare it with the SmolLM2 classifier.

    python -m examples.minilm_intent.evaluate --checkpoint examples/minilm_intent/checkpoint \\
        --out /tmp/minilm-intent-eval --compare-checkpoint examples/robot_intent/checkpoints/classification

On the robot-intent test split (``--n`` for a fixed sample): torch ``shadow_only`` and
``base_shadow`` accuracy and macro-F1; then each model is exported with ``exporters.export``
(fp32 and int8, parity gate on) and run alone through the torch-free ``runtime``:
accuracy, agreement with torch shadow_only, latency (median of single commands, and
milliseconds per command in batches of 64) and file size. ``--compare-checkpoint`` exports
the SmolLM2 classifier (implicit 1-layer shadow, 3.54M layer parameters; the MiniLM shadow
has 2 layers, 3.55M) on the cached SmolLM2 base and measures it the same way, in the same
process; ``--compare-export`` reuses existing export folders instead. Results go to
``OUT/results.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding
from transformers.utils import logging as hf_logging

import runtime
from examples.robot_intent.metrics import classification_scores
from exporters import export
from shadow_edge.assets import minilm_dir, smollm2_hf_dir

from . import data, modeling

logger = logging.getLogger("minilm_intent.evaluate")
PRECISIONS = ("fp32", "int8")
LATENCY_COMMANDS = 200
BATCH = 64


def _parse(argv):
    p = argparse.ArgumentParser(description="Evaluate the MiniLM intent shadow (and compare).")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for exports and results.json")
    p.add_argument("--split", choices=data.SPLITS, default="test")
    p.add_argument("--n", type=int, default=None, help="fixed random sample of the split")
    p.add_argument("--compare-checkpoint", type=Path, default=None,
                   help="a SmolLM2 classifier checkpoint to export and measure alike")
    p.add_argument("--compare-export", type=Path, action="append", default=[],
                   help="an existing classifier export folder to measure alike (repeatable)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime and torch threads")
    p.add_argument("--reuse-exports", action="store_true", help="keep existing export folders")
    return p.parse_args(argv)


def scores(gold: list[str], pred: list[str]) -> dict:
    """``n``, accuracy and macro-F1 over the gold intents (the robot-intent example's
    :func:`~examples.robot_intent.metrics.classification_scores`; scikit-learn's macro
    average)."""
    full = classification_scores(gold, pred)
    return {key: full[key] for key in ("n", "accuracy", "macro_f1")}


@torch.no_grad()
def torch_predictions(model, tok, examples, labels, mode: str) -> tuple[list[str], float]:
    """Predicted intent names in ``mode`` and milliseconds per command (batches of 64)."""
    model.set_inference_mode(mode)
    collate = DataCollatorWithPadding(tok)
    rows = modeling.features(tok, examples)
    preds = []
    start = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        batch = collate([{k: v for k, v in r.items() if k != "labels"} for r in rows[i:i + BATCH]])
        preds += model(**batch).logits.argmax(-1).tolist()
    ms = 1000 * (time.perf_counter() - start) / len(rows)
    return [labels[p] for p in preds], ms


def runtime_row(folder: Path, examples, labels, threads: int, reference: list[str] | None) -> dict:
    """Accuracy, agreement, latency and size of one export folder, run by ``runtime``."""
    model = runtime.load(folder, threads=threads)
    texts = [e.text for e in examples]
    start = time.perf_counter()
    preds = [r.label for r in model.classify(texts, batch_size=BATCH)]
    batched_ms = 1000 * (time.perf_counter() - start) / len(texts)
    single = []
    for text in texts[:LATENCY_COMMANDS]:
        start = time.perf_counter()
        model.classify(text)
        single.append(1000 * (time.perf_counter() - start))
    manifest = model.manifest
    size = sum(info.bytes for name, info in manifest.files.items() if name.startswith("model.onnx"))
    row = {**scores([labels[e.label] for e in examples], preds), "folder": str(folder),
           "precision": manifest.precision, "verified": manifest.verified,
           "ms_per_command_batch64": round(batched_ms, 3),
           "ms_single_command_p50": round(statistics.median(single), 3),
           "model_mb": round(size / 1e6, 1), "parameters": manifest.detach.parameters}
    if reference is not None:
        row["agreement_with_torch_shadow_only"] = sum(
            a == b for a, b in zip(preds, reference)) / len(preds)
    return row


def _export(checkpoint: Path, folder: Path, precision: str, base, reuse: bool) -> Path:
    if reuse and (folder / "shadow_edge.json").is_file():
        return folder
    logger.info("exporting %s -> %s (%s)", checkpoint, folder, precision)
    return export(checkpoint, folder, base=base, precision=precision, force=True).output_dir


def main(argv=None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # transformers' progress bars and load reports are not this script's output
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    labels = data.read_labels()
    examples = data.fixed_sample(data.read_split(args.split), args.n)
    gold = [labels[e.label] for e in examples]
    tok = modeling.tokenizer()
    model = modeling.load_model(args.checkpoint, labels)
    results = {"split": args.split, "n": len(examples), "threads": args.threads, "rows": {}}
    reference = None
    for mode in ("shadow_only", "base_shadow"):
        preds, ms = torch_predictions(model, tok, examples, labels, mode)
        results["rows"][f"MiniLM torch {mode}"] = {**scores(gold, preds), "ms_per_command_batch64": round(ms, 3)}
        reference = preds if mode == "shadow_only" else reference
    for precision in PRECISIONS:
        folder = _export(args.checkpoint, args.out / f"minilm-{precision}", precision,
                         minilm_dir(), args.reuse_exports)
        results["rows"][f"MiniLM ONNX {precision}"] = runtime_row(
            folder, examples, labels, args.threads, reference)
    compare = list(args.compare_export)
    if args.compare_checkpoint is not None:
        base = smollm2_hf_dir()
        compare += [_export(args.compare_checkpoint, args.out / f"smollm2-{precision}", precision,
                            base, args.reuse_exports) for precision in PRECISIONS]
    for folder in compare:
        row = runtime_row(folder, examples, labels, args.threads, None)
        results["rows"][f"SmolLM2 ONNX {row['precision']} ({folder.name})"] = row
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    return 0


def table(results: dict) -> str:
    """The results as a Markdown table."""
    header = ("| model | accuracy | macro-F1 | = torch shadow_only | ms/cmd (batch 64) "
              "| ms single (p50) | model MB |")
    lines = [f"{results['split']} split, n = {results['n']}, {results['threads']} threads",
             "", header, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in results["rows"].items():
        agreement = row.get("agreement_with_torch_shadow_only")
        lines.append(
            f"| {name} | {row['accuracy']:.3f} | {row['macro_f1']:.3f} | "
            f"{'' if agreement is None else f'{agreement:.3f}'} | {row['ms_per_command_batch64']:.2f} | "
            f"{row.get('ms_single_command_p50', '')} | {row.get('model_mb', '')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
