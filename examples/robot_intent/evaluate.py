"""Evaluate the robot-intent shadows: torch (base_shadow, shadow_only) and ONNX (runtime).

    python -m examples.robot_intent.evaluate --task generation \\
        --checkpoint examples/robot_intent/checkpoints/generation \\
        --onnx out/gen-fp32 --onnx out/gen-int8 --grammar --json scores.json

Metrics (test split unless ``--split``): generation -> intent-name exact match, full-action
exact match, per-slot precision/recall/F1, macro-F1 over intent names, the rate of
generated names that are not real intents, and the out-of-scope false-accept / false-reject
rates; classification -> accuracy, macro-F1 and the same out-of-scope rates; per-intent
scores in the JSON output. ONNX rows also report agreement with torch shadow_only (and the
first ONNX row), example by example.

With ``--grammar`` every ONNX generation row is run twice: free, and constrained by the
app's grammar for each command (:func:`grammar.command_grammar`: the home's entities, with
those the command names required). ``--home-grammar`` adds a row constrained by the home
grammar alone (:func:`grammar.home_grammar`). Commands are grouped in batches of 16, and
each batch is one *home*: the areas, floors and device names its commands name, plus
distractors of the same split (``HOME_DISTRACTORS``), as a real home lists many entities a
command does not mention. Constrained rows decode by beam search (``--num-beams``, default
``grammar.GRAMMAR_BEAMS``, length penalty ``grammar.LENGTH_PENALTY``), as the app does,
one command at a time with the command grammar; free rows decode greedily.
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
DATA = Path(__file__).resolve().parent / "data"
BATCH = 16
#: Entities a home lists besides those its commands name: areas, floors, device names.
HOME_DISTRACTORS = {"area": 16, "floor": 4, "name": 24}


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


def homes(examples, split: str, batch_size: int = BATCH, seed: int = 0) -> list:
    """One :class:`grammar.Home` per batch of ``batch_size`` examples: the entities the
    batch's commands name, plus ``HOME_DISTRACTORS`` random values of ``split``'s pools."""
    from . import slots
    from .grammar import Home

    pools = {"area": slots.area_pool(split), "floor": slots.floor_pool(split)}
    names = [n for d in slots.DOMAINS for n in slots.name_pool(d, split)]
    out = []
    for start in range(0, len(examples), batch_size):
        rng = random.Random(f"{seed}/{start}")
        found = {kind: {str(e.slots[kind]) for e in examples[start:start + batch_size]
                        if kind in e.slots} for kind in ("area", "floor", "name")}
        for kind, count in HOME_DISTRACTORS.items():
            pool = names if kind == "name" else pools[kind]
            found[kind] |= set(rng.sample(pool, min(count, len(pool))))
        out.append(Home(tuple(sorted(found["area"])), tuple(sorted(found["floor"])),
                        tuple(sorted(found["name"]))))
    return out


def eval_runtime(folder: Path, tokenizer, task: str, examples, labels: list[str], name: str,
                 threads: int | None = None, batch_size: int = BATCH,
                 grammar_homes: list | None = None, num_beams: int = 1,
                 per_command: bool = True) -> Result:
    """Score an export folder through ``runtime`` (same token ids as torch).

    Generation with ``grammar_homes`` (one home per batch of ``batch_size`` examples) is
    constrained and decoded with ``num_beams`` beams: by each command's grammar in its
    batch's home (``per_command``, one command per call, as the app does), or by each
    home's grammar (a batch per call)."""
    import runtime

    model = runtime.load(folder, threads=threads)
    if task == "generation":
        prompts = [modeling.prompt_ids(tokenizer, e.text) for e in examples]
        grammars, decoding = None, {}
        if grammar_homes is not None:
            from .grammar import LENGTH_PENALTY, command_grammar, home_grammar, load_schema

            schema = load_schema()
            if per_command:
                grammars = [command_grammar(e.text, grammar_homes[i // batch_size], schema)
                            for i, e in enumerate(examples)]
                batch_size = 1
            else:
                grammars = [home_grammar(home, schema) for home in grammar_homes]
            decoding = {"num_beams": num_beams, "length_penalty": LENGTH_PENALTY}
        timed = runtime_generate(model, prompts, batch_size=batch_size, grammars=grammars,
                                 **decoding)
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


def read_examples(split: str, n: int = 0) -> tuple[list, list[str]]:
    """(examples of ``split`` from the committed data folder, sorted label names); a fixed
    sample of ``n`` when ``n`` > 0."""
    labels = json.loads((DATA / "labels.json").read_text())["labels"]
    examples = data_mod.read_split(DATA, split)
    return (fixed_sample(examples, n) if n else examples), labels


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Evaluate a robot-intent checkpoint and exports.")
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--onnx", type=Path, action="append", default=[],
                   help="export folder(s) to score with the runtime")
    p.add_argument("--split", choices=data_mod.SPLITS, default="test")
    p.add_argument("--n", type=int, default=0, help="fixed sample size (0: the whole split)")
    p.add_argument("--modes", default="base_shadow,shadow_only")
    p.add_argument("--grammar", action="store_true",
                   help="generation: also run each ONNX folder with each command's grammar")
    p.add_argument("--home-grammar", action="store_true",
                   help="generation: also run each ONNX folder with the home grammar alone")
    p.add_argument("--num-beams", type=int, default=None,
                   help="beams of the constrained rows (default: grammar.GRAMMAR_BEAMS)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="write all scores here")
    p.add_argument("--figures", type=Path, default=None,
                   help="write a confusion matrix (PNG) of the last ONNX row here")
    args = p.parse_args(argv)
    from .grammar import GRAMMAR_BEAMS

    num_beams = GRAMMAR_BEAMS if args.num_beams is None else args.num_beams

    import torch
    from transformers import AutoTokenizer

    from shadow_edge.assets import smollm2_hf_dir

    torch.set_num_threads(args.threads)
    examples, labels = read_examples(args.split, args.n)
    base_dir = smollm2_hf_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    model = load_torch(args.checkpoint, base_dir, args.task)
    results = [eval_torch(model, tokenizer, args.task, examples, labels, mode)
               for mode in args.modes.split(",") if mode]
    reference = next((r for r in results if r.name == "torch shadow_only"), None)
    # (row name suffix, homes, per_command): free, home grammar, command grammar
    variants = [("", None, False)]
    if args.task == "generation" and (args.grammar or args.home_grammar):
        grammar_homes = homes(examples, args.split)
        if args.home_grammar:
            variants.append((f" + home grammar, {num_beams} beams", grammar_homes, False))
        if args.grammar:
            variants.append((f" + grammar, {num_beams} beams", grammar_homes, True))
    first_onnx: dict[str, Result] = {}  # the first ONNX row of each variant
    for folder in args.onnx:
        for suffix, home_list, per_command in variants:
            r = eval_runtime(folder, tokenizer, args.task, examples, labels,
                             f"onnx {folder.name}{suffix}", threads=args.threads,
                             grammar_homes=home_list, num_beams=num_beams,
                             per_command=per_command)
            if reference is not None:
                r.agreement = agreement(r, reference)
            if suffix in first_onnx:
                r.extra["agreement_with_first_onnx"] = agreement(r, first_onnx[suffix])
            else:
                first_onnx[suffix] = r
            results.append(r)
    for r in results:
        print(json.dumps({**r.summary(), **r.extra}))
    if args.json:
        args.json.write_text(json.dumps(
            [dict(r.summary(), **r.extra, per_intent=r.scores["per_intent"],
                  slots=r.scores.get("slots")) for r in results], indent=1) + "\n")
    if args.figures and results:
        from .figures import confusion_png

        last = results[-1]
        gold = [e.intent for e in examples]
        pred = last.outputs if args.task == "classification" else [
            (o.split() or [""])[0] for o in last.outputs]
        confusion_png(gold, pred, labels, args.figures, title=f"{args.task}: {last.name}")


if __name__ == "__main__":
    main()
