"""Evaluate the robot-intent shadows: torch (base_shadow, shadow_only) and ONNX (runtime).

    python -m examples.robot_intent.evaluate --task generation \\
        --checkpoint examples/robot_intent/checkpoints/generation \\
        --onnx out/gen-fp32 --onnx out/gen-int8 --n 300

Metrics (test split unless ``--split``): generation -> intent-name exact match, full-action
exact match, macro-F1 over intent names, the rate of generated names that are not real
intents; classification -> accuracy and macro-F1; per-intent scores in the JSON output.
ONNX rows also report agreement with torch shadow_only, example by example.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from . import data as data_mod
from . import modeling
from .metrics import classification_scores, generation_scores
from .predict import runtime_classify, runtime_generate, torch_classify, torch_generate

TASKS = ("generation", "classification")


@dataclass
class Result:
    """One row of the results table."""

    name: str
    task: str
    scores: dict
    outputs: list
    seconds: float
    new_tokens: int = 0
    agreement: float | None = None  # fraction equal to the reference outputs
    extra: dict = field(default_factory=dict)

    @property
    def primary(self) -> float:
        key = "intent_exact_match" if self.task == "generation" else "accuracy"
        return self.scores[key]

    def summary(self) -> dict:
        out = {"name": self.name, "task": self.task, "seconds": round(self.seconds, 2),
               **{k: v for k, v in self.scores.items() if k != "per_intent"}}
        if self.new_tokens:
            out["tokens_per_second"] = round(self.new_tokens / self.seconds, 1)
        else:
            out["ms_per_command"] = round(1000 * self.seconds / self.scores["n"], 2)
        if self.agreement is not None:
            out["agreement_with_torch_shadow_only"] = self.agreement
        return out


def fixed_sample(examples: list, n: int, seed: int = 0) -> list:
    """A fixed, seeded simple random sample of ``n`` examples (order-independent).

    The test split is already balanced (at most 40 commands per intent), so a simple random
    sample keeps its distribution; per-intent quality is reported by the macro-F1.
    """
    if n >= len(examples):
        return list(examples)
    ordered = sorted(examples, key=lambda e: (e.intent, e.text))
    return random.Random(seed).sample(ordered, n)


def _score(task: str, examples, outputs, labels: list[str]) -> dict:
    if task == "generation":
        return generation_scores([e.intent for e in examples], [e.slots for e in examples],
                                 outputs, set(labels))
    return classification_scores([e.intent for e in examples], outputs)


def eval_torch(model, tokenizer, task: str, examples, labels: list[str], mode: str,
               batch_size: int = 16) -> Result:
    """Score a loaded task model in ``mode`` ("base_shadow" or "shadow_only")."""
    model.set_inference_mode(mode)
    if task == "generation":
        prompts = [modeling.prompt_ids(tokenizer, e.text) for e in examples]
        timed = torch_generate(model, tokenizer, prompts, batch_size=batch_size)
        outputs = timed.outputs
    else:
        rows = [modeling.classification_ids(tokenizer, e.text) for e in examples]
        timed = torch_classify(model, rows, tokenizer.eos_token_id)
        outputs = [labels[i] for i in timed.outputs]
    return Result(f"torch {mode}", task, _score(task, examples, outputs, labels), outputs,
                  timed.seconds, timed.new_tokens)


def eval_runtime(folder: Path, tokenizer, task: str, examples, labels: list[str], name: str,
                 threads: int | None = None, batch_size: int = 16) -> Result:
    """Score an export folder through ``runtime`` (same token ids as torch)."""
    import runtime

    model = runtime.load(folder, threads=threads)
    if task == "generation":
        prompts = [modeling.prompt_ids(tokenizer, e.text) for e in examples]
        timed = runtime_generate(model, prompts, batch_size=batch_size)
        outputs = timed.outputs
    else:
        rows = [modeling.classification_ids(tokenizer, e.text) for e in examples]
        timed = runtime_classify(model, rows)
        outputs = [model.labels[i] for i in timed.outputs]
    return Result(name, task, _score(task, examples, outputs, labels), outputs, timed.seconds,
                  timed.new_tokens)


def agreement(result: Result, reference: Result) -> float:
    """Fraction of examples whose output equals the reference's (text or label)."""
    same = sum(a.strip() == b.strip() if isinstance(a, str) else a == b
               for a, b in zip(result.outputs, reference.outputs, strict=True))
    return same / len(reference.outputs)


def load_torch(checkpoint: Path, base_dir: Path, task: str):
    """Load a committed checkpoint on the cached base (fp32, eval mode)."""
    from shadow_edge import load_shadow_checkpoint

    task_name = "CAUSAL_LM" if task == "generation" else "SEQ_CLS"
    return load_shadow_checkpoint(checkpoint, base=str(base_dir), task=task_name)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Evaluate a robot-intent checkpoint and exports.")
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--onnx", type=Path, action="append", default=[],
                   help="export folder(s) to score with the runtime")
    p.add_argument("--split", choices=data_mod.SPLITS, default="test")
    p.add_argument("--n", type=int, default=0, help="fixed sample size (0: the whole split)")
    p.add_argument("--modes", default="base_shadow,shadow_only")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None, help="write all scores here")
    args = p.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    from shadow_edge.assets import smollm2_hf_dir

    torch.set_num_threads(args.threads)
    splits = data_mod.build_splits()
    labels = data_mod.labels_of(splits)
    examples = splits[args.split]
    if args.n:
        examples = fixed_sample(examples, args.n)
    base_dir = smollm2_hf_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    model = load_torch(args.checkpoint, base_dir, args.task)
    results = [eval_torch(model, tokenizer, args.task, examples, labels, mode)
               for mode in args.modes.split(",") if mode]
    reference = next((r for r in results if r.name == "torch shadow_only"), None)
    for folder in args.onnx:
        r = eval_runtime(folder, tokenizer, args.task, examples, labels, f"onnx {folder.name}",
                         threads=args.threads)
        if reference is not None:
            r.agreement = agreement(r, reference)
        results.append(r)
    for r in results:
        print(json.dumps(r.summary()))
    if args.json:
        args.json.write_text(json.dumps(
            [dict(r.summary(), per_intent=r.scores["per_intent"]) for r in results], indent=1))


if __name__ == "__main__":
    main()
