"""Train a robot-intent shadow on the frozen SmolLM2-135M-Instruct base (the library's loop).

    python -m examples.robot_intent.train --task classification \\
        --out examples/robot_intent/checkpoints/classification --max-steps 1400

The model comes from :mod:`modeling`, the examples from :mod:`data` (balanced: rare intents
are repeated up to ``MIN_PER_INTENT`` rows), and the training is
:func:`shadow_edge.training.train`: a short shadow-only warm-up (``--shadow-steps``), then
joint ShadowPEFT training (base frozen, loss = base loss + 1.0 x shadow loss) with a
cosine schedule. Every ``--eval-steps`` both inference modes are scored on a fixed
validation sample; the kept model is the one whose *weaker* mode scores best (full-action
exact match for generation, accuracy for classification), so the attached model
(``base_shadow``) is trained as seriously as the detached one. The kept adapter is written
in fp16 after checking that fp16 and fp32 give the same validation predictions;
``train_report.json`` records the run (steps per second included).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from shadow_edge.training import TrainingSettings, train

from . import data as data_mod
from . import modeling
from .metrics import classification_scores, generation_scores
from .predict import torch_classify, torch_generate

logger = logging.getLogger("robot_intent.train")

BASE_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
MIN_PER_INTENT = 48  # rare intents are repeated up to this many train rows
SHADOW_LAYERS = ",".join(str(i) for i in modeling.GENERATION_SHADOW_LAYERS)  # --shadow-layers


def _parse(argv):
    p = argparse.ArgumentParser(description="Train a robot-intent shadow (base frozen).")
    p.add_argument("--task", choices=("generation", "classification"), required=True)
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    p.add_argument("--data", type=Path, default=Path(__file__).parent / "data",
                   help="folder from `python -m examples.robot_intent.data`")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this saved checkpoint's weights")
    p.add_argument("--max-steps", type=int, required=True, help="optimizer steps in total")
    p.add_argument("--shadow-steps", type=int, default=0,
                   help="shadow-only warm-up steps before joint training")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock safety stop")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4, help="peak lr of the shadow and adapters")
    p.add_argument("--head-lr", type=float, default=2e-3, help="peak lr of trainable heads")
    p.add_argument("--warmup-steps", type=int, default=30)
    p.add_argument("--eval-steps", type=int, default=200)
    p.add_argument("--eval-size", type=int, default=120,
                   help="validation examples scored per evaluation and mode")
    p.add_argument("--eval-modes", default="shadow_only,base_shadow",
                   help="inference modes scored at each evaluation (the kept model is the one "
                        "whose weakest mode scores best)")
    p.add_argument("--shadow-layers", default=SHADOW_LAYERS,
                   help="generation: how many first base layers the explicit shadow copies, "
                        "or their indices (e.g. 0,1,15,16,17,18)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("fp16", "fp32"), default="fp16",
                   help="dtype of the saved adapter")
    p.add_argument("--bf16", action="store_true",
                   help="train in bf16 mixed precision (faster on CPUs with AVX-512 BF16/AMX)")
    p.add_argument("--overwrite", action="store_true")
    return p.parse_args(argv)


def balanced(train_rows: list, rng: random.Random) -> list:
    """The training rows with rare intents repeated up to ``MIN_PER_INTENT`` rows, shuffled."""
    counts = Counter(e.intent for e in train_rows)
    rows = list(train_rows)
    for intent, n in counts.items():
        if n < MIN_PER_INTENT:
            pool = [e for e in train_rows if e.intent == intent]
            rows += [pool[i % n] for i in range(MIN_PER_INTENT - n)]
    rng.shuffle(rows)
    return rows


class Task:
    """What differs between the two tasks: the model, the examples and the validation score."""

    def __init__(self, name: str, tokenizer, labels: list[str], base_dir: Path, *,
                 modes=("shadow_only", "base_shadow"), shadow_layers: str = SHADOW_LAYERS):
        self.name, self.tok, self.labels, self.modes = name, tokenizer, labels, tuple(modes)
        if name == "generation":
            layers = ([int(i) for i in shadow_layers.split(",")] if "," in shadow_layers
                      else int(shadow_layers))
            self.model = modeling.build_generation_model(base_dir, layers=layers)
        else:
            self.model = modeling.build_classification_model(base_dir, labels)
        self.model.peft_model.base_model.name_or_path = BASE_ID
        self.model.peft_model.base_model.config._name_or_path = BASE_ID
        self.label_id = {label: i for i, label in enumerate(labels)}

    def example(self, e) -> dict:
        if self.name == "generation":
            ids, labels = modeling.generation_features(self.tok, e)
            return {"input_ids": ids, "labels": labels}
        return {"input_ids": modeling.classification_ids(self.tok, e.text),
                "labels": self.label_id[e.intent]}

    def score_mode(self, model, val, mode: str) -> dict:
        model.set_inference_mode(mode)
        if self.name == "generation":
            prompts = [modeling.prompt_ids(self.tok, e.text) for e in val]
            out = torch_generate(model, self.tok, prompts)
            s = generation_scores([e.intent for e in val], [e.slots for e in val],
                                  out.outputs, set(self.labels))
            return {"score": s["action_exact_match"], "intent": s["intent_exact_match"]}
        rows = [modeling.classification_ids(self.tok, e.text) for e in val]
        out = torch_classify(model, rows, self.tok.eos_token_id)
        s = classification_scores([e.intent for e in val], [self.labels[p] for p in out.outputs])
        return {"score": s["accuracy"], "macro_f1": s["macro_f1"]}

    def evaluator(self, val):
        def evaluate(model):
            scores = {mode: self.score_mode(model, val, mode) for mode in self.modes}
            details = {f"{mode}_{k}": round(v, 4) for mode, s in scores.items()
                       for k, v in s.items()}
            return min(s["score"] for s in scores.values()), details
        return evaluate


def _fp16_copy(src: Path, dst: Path) -> None:
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    for path in dst.glob("*.safetensors"):
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(path).items()}
        save_file(tensors, str(path), metadata={"format": "pt"})


def load_weights(model, folder: Path) -> None:
    """Load a saved adapter (any float dtype) into ``model`` strictly, in fp32."""
    from safetensors.torch import load_file

    state = {}
    for path in sorted(folder.glob("*.safetensors")):
        state.update({k: v.float() for k, v in load_file(path).items()})
    model.load_state_dict(state, strict=True)


def save_checkpoint(task: Task, out: Path, dtype: str, val) -> dict:
    """Write the model to ``out`` (fp16 when the validation predictions match fp32)."""
    work = out.parent / f".{out.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        task.model.save_pretrained(work / "fp32")
        chosen, parity = work / "fp32", {}
        if dtype == "fp16":
            evaluate = task.evaluator(val)
            _fp32_score, fp32_details = evaluate(task.model)
            _fp16_copy(work / "fp32", work / "fp16")
            load_weights(task.model, work / "fp16")
            _fp16_score, fp16_details = evaluate(task.model)
            same = fp16_details == fp32_details
            parity = {"fp32_validation": fp32_details, "fp16_validation": fp16_details,
                      "fp16_parity": same}
            if same:
                chosen = work / "fp16"
            else:
                logger.warning("fp16 changes validation results; keeping fp32")
                load_weights(task.model, work / "fp32")
        parity["saved_dtype"] = "fp16" if chosen.name == "fp16" else "fp32"
        if out.exists():
            shutil.rmtree(out)
        chosen.replace(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return parity


def run(argv=None) -> dict:
    args = _parse(argv)
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        raise SystemExit(f"{args.out} is not empty; pass --overwrite to replace it")
    from transformers import AutoTokenizer

    from shadow_edge.assets import smollm2_hf_dir

    started = time.monotonic()
    torch.manual_seed(args.seed)
    base_dir = smollm2_hf_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    labels = json.loads((args.data / "labels.json").read_text())["labels"]
    train_rows = data_mod.read_split(args.data, "train")
    val = data_mod.read_split(args.data, "validation")
    val = random.Random(1).sample(val, min(args.eval_size, len(val)))
    task = Task(args.task, tokenizer, labels, base_dir, modes=args.eval_modes.split(","),
                shadow_layers=args.shadow_layers)
    if args.init is not None:
        load_weights(task.model, args.init)
    examples = [task.example(e) for e in balanced(train_rows, random.Random(args.seed))]
    settings = TrainingSettings(
        max_steps=args.max_steps, max_minutes=args.max_minutes, lr=args.lr,
        head_lr=args.head_lr, batch_size=args.batch_size, warmup_steps=args.warmup_steps,
        lr_scheduler="cosine", shadow_only_steps=args.shadow_steps, eval_steps=args.eval_steps,
        logging_steps=20, seed=args.seed, threads=args.threads, bf16=args.bf16,
    )
    trainable, total = task.model.get_nb_trainable_parameters()
    logger.info("task=%s examples=%d val=%d trainable=%d total=%d", args.task, len(examples),
                len(val), trainable, total)
    result = train(task.model, examples, settings, pad_token_id=tokenizer.eos_token_id,
                   evaluate=task.evaluator(val))
    parity = save_checkpoint(task, args.out, args.dtype, val)
    report = {
        "task": args.task,
        "command": "python -m examples.robot_intent.train " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "steps": result.steps, "steps_by_phase": result.steps_by_phase,
        "train_minutes": round(result.seconds / 60, 2),
        "steps_per_second": round(result.steps_per_second, 3),
        "total_minutes": round((time.monotonic() - started) / 60, 2),
        "batch_size": args.batch_size, "lr": args.lr, "head_lr": args.head_lr, "bf16": args.bf16,
        "shadow_loss_weight": task.model.shadow_loss_weight, "trainable_parameters": trainable,
        "train_loss": result.train_loss, "best": result.best, "history": result.history,
        "train_size": len(examples), "threads": args.threads, **parity,
    }
    (args.out / "train_report.json").write_text(json.dumps(report, indent=1) + "\n")
    logger.info("done: %s", {k: v for k, v in report.items() if k != "history"})
    return report


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stdout)
    run(argv)


if __name__ == "__main__":
    main()
