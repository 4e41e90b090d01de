"""Joint training of a robot-intent shadow on the frozen SmolLM2-135M-Instruct base.

    python -m examples.robot_intent.train --task classification --max-minutes 25 \\
        --out examples/robot_intent/checkpoints/classification

The loop is plain PyTorch on the core API (``get_shadow_model`` + task wrapper); the base
is frozen. Two phases share the ``--max-minutes`` wall-clock budget:

1. ``--shadow-minutes`` of shadow pre-training: the task wrapper in ``"shadow_only"`` mode,
   loss = the shadow loss alone (the base does not run, so a step is 10-30x cheaper);
2. joint training for the rest: ``"base_shadow"`` mode, loss =
   ``base_loss + 1.0 * shadow_loss``, which also trains the injection and update modules.

In each phase the learning rate warms up for ``--warmup-steps`` and then follows a cosine
over the phase's *time* budget (times ``--joint-lr-scale`` in the joint phase), so a run
slowed down by a busy machine still anneals. Every ``--eval-minutes`` the shadow-only model
is scored on the validation split; the best model of the last (joint) phase is kept. At the
end the best adapter is written in fp16 (``--dtype fp16``) after checking that fp16 and
fp32 give the same validation predictions; ``train_report.json`` records the run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from . import data as data_mod
from . import modeling
from .metrics import classification_scores, generation_scores
from .predict import torch_classify, torch_generate

logger = logging.getLogger("robot_intent.train")

BASE_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
MIN_PER_INTENT = 48  # rare intents are repeated up to this many train rows per epoch


def _parse(argv):
    p = argparse.ArgumentParser(description="Train a robot-intent shadow (base frozen).")
    p.add_argument("--task", choices=("generation", "classification"), required=True)
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    p.add_argument("--data", type=Path, default=None,
                   help="folder from `python -m examples.robot_intent.data` (default: build)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this saved checkpoint's weights (e.g. to continue the "
                        "joint phase of a committed checkpoint with --shadow-minutes 0)")
    p.add_argument("--max-minutes", type=float, default=25.0)
    p.add_argument("--shadow-minutes", type=float, default=0.0,
                   help="minutes of shadow-only pre-training at the start (phase 1)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--joint-lr-scale", type=float, default=1.0,
                   help="multiply the learning rates by this in the joint phase (phase 2)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4, help="peak lr of the adapter and shadow")
    p.add_argument("--head-lr", type=float, default=2e-3, help="peak lr of trainable heads")
    p.add_argument("--warmup-steps", type=int, default=30)
    p.add_argument("--eval-minutes", type=float, default=4.0)
    p.add_argument("--eval-size", type=int, default=160,
                   help="validation examples scored at each evaluation (generation)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is faster than 2 on a machine shared with other jobs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16")
    p.add_argument("--overwrite", action="store_true")
    return p.parse_args(argv)


def _splits(folder: Path | None):
    if folder is None:
        splits = data_mod.build_splits()
        return splits["train"], splits["validation"], data_mod.labels_of(splits)
    labels = json.loads((folder / "labels.json").read_text())["labels"]
    return data_mod.read_split(folder, "train"), data_mod.read_split(folder, "validation"), labels


def _balanced_epoch(train, rng: random.Random):
    counts = Counter(e.intent for e in train)
    rows = list(train)
    for intent, n in counts.items():
        if n < MIN_PER_INTENT:
            pool = [e for e in train if e.intent == intent]
            rows += [pool[i % n] for i in range(MIN_PER_INTENT - n)]
    rng.shuffle(rows)
    return rows


def _lr_factor(step: int, elapsed: float, budget: float, warmup: int, max_steps: int | None):
    if step < warmup:
        return (step + 1) / warmup
    progress = elapsed / budget
    if max_steps:
        progress = max(progress, step / max_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class _Task:
    """What differs between the two tasks: model, batches, validation score."""

    def __init__(self, args, tokenizer, labels, base_dir):
        self.args, self.tok, self.labels = args, tokenizer, labels
        if args.task == "generation":
            self.model = modeling.build_generation_model(base_dir)
        else:
            self.model = modeling.build_classification_model(base_dir, labels)
        self.model.peft_model.base_model.name_or_path = BASE_ID
        self.model.peft_model.base_model.config._name_or_path = BASE_ID
        self.label_id = {name: i for i, name in enumerate(labels)}

    def batch(self, rows):
        if self.args.task == "generation":
            feats = [modeling.generation_features(self.tok, e) for e in rows]
            ids, mask, labels = modeling.pad_batch([f[0] for f in feats], self.tok.eos_token_id,
                                                   [f[1] for f in feats])
        else:
            ids, mask = modeling.pad_batch(
                [modeling.classification_ids(self.tok, e.text) for e in rows], self.tok.eos_token_id
            )
            labels = torch.tensor([self.label_id[e.intent] for e in rows])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def shadow_loss(self, batch):
        """Phase-1 loss: the shadow head's loss alone (the base does not run).

        For generation the shadow head is applied only at the positions that predict a
        target token, which is the same mean next-token cross-entropy as the full
        ``"shadow_only"`` forward but avoids the vocab-sized matmul on the prompt.
        """
        if self.args.task != "generation":
            return self.model(**batch).loss
        hidden = self.model.peft_model.shadow_hidden_states(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
        labels = batch["labels"][:, 1:]
        keep = labels != modeling.IGNORE_INDEX
        logits = self.model.shadow_lm_head(hidden[:, :-1][keep])
        return torch.nn.functional.cross_entropy(logits.float(), labels[keep])

    def score(self, val) -> tuple[float, dict]:
        """Shadow-only validation score (intent exact match / accuracy)."""
        model = self.model
        model.eval()
        model.set_inference_mode("shadow_only")
        try:
            if self.args.task == "generation":
                prompts = [modeling.prompt_ids(self.tok, e.text) for e in val]
                out = torch_generate(model, self.tok, prompts)
                s = generation_scores([e.intent for e in val], [e.slots for e in val],
                                      out.outputs, set(self.labels))
                return s["intent_exact_match"], {k: v for k, v in s.items() if k != "per_intent"}
            rows = [modeling.classification_ids(self.tok, e.text) for e in val]
            out = torch_classify(model, rows, self.tok.eos_token_id)
            s = classification_scores([e.intent for e in val], [self.labels[p] for p in out.outputs])
            return s["accuracy"], {k: v for k, v in s.items() if k != "per_intent"}
        finally:
            model.set_inference_mode("base_shadow")
            model.train()


def _optimizer(model, args):
    heads = {id(p) for name in model.head_names for p in getattr(model, name).parameters()}
    groups = [
        {"params": [p for p in model.parameters() if p.requires_grad and id(p) not in heads],
         "lr": args.lr, "base_lr": args.lr},
        {"params": [p for p in model.parameters() if p.requires_grad and id(p) in heads],
         "lr": args.head_lr, "base_lr": args.head_lr},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, weight_decay=0.0)


def _fp16_copy(src: Path, dst: Path) -> None:
    from safetensors.torch import load_file, save_file

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    for path in dst.glob("*.safetensors"):
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(path).items()}
        save_file(tensors, str(path), metadata={"format": "pt"})


def _load_into(task: _Task, folder: Path) -> None:
    """Load a saved adapter (any float dtype) into the live model, strictly, in fp32."""
    from safetensors.torch import load_file

    state = {}
    for path in sorted(folder.glob("*.safetensors")):
        state.update({k: v.float() for k, v in load_file(path).items()})
    task.model.load_state_dict(state, strict=True)


def train(argv=None) -> dict:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        raise SystemExit(f"{args.out} is not empty; pass --overwrite to replace it")
    from transformers import AutoTokenizer

    from shadow_edge.assets import smollm2_hf_dir

    started = time.monotonic()
    base_dir = smollm2_hf_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    train_rows, val, labels = _splits(args.data)
    rng = random.Random(args.seed)
    val_eval = list(val)
    if args.task == "generation":
        val_eval = random.Random(1).sample(val_eval, min(args.eval_size, len(val_eval)))
    task = _Task(args, tokenizer, labels, base_dir)
    if args.init is not None:
        _load_into(task, args.init)
    model = task.model
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("task=%s train=%d val=%d trainable=%d total=%d", args.task, len(train_rows),
                len(val_eval), trainable, total)
    optimizer = _optimizer(model, args)
    work = args.out.parent / f".{args.out.name}.work"
    best_dir, history = work / "best-fp32", []
    best, step, epoch, last_eval, losses = -1.0, 0, 0, time.monotonic(), []
    phases = [("shadow_only", min(args.shadow_minutes, args.max_minutes) * 60.0),
              ("base_shadow", max(0.0, args.max_minutes - args.shadow_minutes) * 60.0)]
    phases = [(mode, seconds) for mode, seconds in phases if seconds > 0]
    steps_by_phase = {}
    model.train()
    t0 = time.monotonic()
    for mode, phase_budget in phases:
        model.set_inference_mode(mode)
        phase_start, phase_step, done = time.monotonic(), 0, False
        logger.info("phase %s for %.1f min", mode, phase_budget / 60)
        while not done:
            epoch += 1
            rows = _balanced_epoch(train_rows, rng)
            for i in range(0, len(rows) - args.batch_size + 1, args.batch_size):
                elapsed = time.monotonic() - phase_start
                factor = _lr_factor(phase_step, elapsed, phase_budget, args.warmup_steps,
                                    args.max_steps)
                if mode == "base_shadow":
                    factor *= args.joint_lr_scale
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
                batch = task.batch(rows[i:i + args.batch_size])
                loss = task.shadow_loss(batch) if mode == "shadow_only" else model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                step += 1
                phase_step += 1
                if step % 20 == 0:
                    logger.info("step %d (%s) epoch %d %.1f min loss %.4f lr x%.2f", step, mode,
                                epoch, (time.monotonic() - t0) / 60,
                                sum(losses[-20:]) / 20, factor)
                over_time = time.monotonic() - phase_start > phase_budget
                over_steps = args.max_steps is not None and phase_step >= args.max_steps
                if over_time or over_steps or time.monotonic() - last_eval > args.eval_minutes * 60:
                    score, detail = task.score(val_eval)
                    model.set_inference_mode(mode)
                    last_eval = time.monotonic()
                    history.append({"step": step, "phase": mode,
                                    "minutes": round((last_eval - t0) / 60, 2),
                                    "val_score": score, **detail})
                    logger.info("eval step %d: shadow-only val %.4f %s", step, score, detail)
                    # keep the best of the last (joint) phase: a phase-1 model has untrained
                    # injection/update modules and base head, so it is not a joint checkpoint
                    if mode == phases[-1][0] and score > best:
                        best = score
                        model.save_pretrained(best_dir)
                if over_time or over_steps:
                    done = True
                    break
        steps_by_phase[mode] = phase_step
    model.set_inference_mode("base_shadow")
    minutes = (time.monotonic() - t0) / 60
    _finalize(task, args, best_dir, work, val_eval)
    report = {
        "task": args.task, "command": "python -m examples.robot_intent.train " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "steps": step, "steps_by_phase": steps_by_phase, "epochs": epoch,
        "shadow_minutes": args.shadow_minutes, "max_minutes": args.max_minutes, "train_minutes": round(minutes, 2),
        "total_minutes": round((time.monotonic() - started) / 60, 2),
        "batch_size": args.batch_size, "lr": args.lr, "head_lr": args.head_lr,
        "joint_lr_scale": args.joint_lr_scale,
        "shadow_loss_weight": model.shadow_loss_weight, "trainable_parameters": trainable,
        "best_val_shadow_only": best, "history": history, "dtype": args.dtype,
        "train_size": len(train_rows), "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
    }
    report.update(json.loads((work / "parity.json").read_text()))
    (args.out / "train_report.json").write_text(json.dumps(report, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    logger.info("done: %s", {k: v for k, v in report.items() if k != "history"})
    return report


def _finalize(task: _Task, args, best_dir: Path, work: Path, val_eval) -> None:
    """Write the best adapter to ``args.out`` (fp16 when its validation predictions match fp32)."""
    _load_into(task, best_dir)
    fp32_score, _ = task.score(val_eval)
    parity = {"fp32_val_shadow_only": fp32_score}
    chosen = best_dir
    if args.dtype == "fp16":
        half_dir = work / "best-fp16"
        _fp16_copy(best_dir, half_dir)
        _load_into(task, half_dir)
        fp16_score, _ = task.score(val_eval)
        parity["fp16_val_shadow_only"] = fp16_score
        parity["fp16_parity"] = abs(fp16_score - fp32_score) < 1e-9
        if parity["fp16_parity"]:
            chosen = half_dir
        else:
            logger.warning("fp16 changes validation results (%.4f vs %.4f); keeping fp32",
                           fp16_score, fp32_score)
    parity["saved_dtype"] = "fp16" if chosen != best_dir else "fp32"
    tmp = args.out.parent / f".{args.out.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(chosen, tmp)
    if args.out.exists():
        shutil.rmtree(args.out)
    tmp.replace(args.out)
    (work / "parity.json").write_text(json.dumps(parity))


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        stream=sys.stdout)
    train(argv)


if __name__ == "__main__":
    main()
