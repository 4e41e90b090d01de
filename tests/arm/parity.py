"""x86-vs-aarch64 parity of the robot-intent exports (a stage of ``make test-arm``).

    # x86, with torch: export the committed checkpoints, record the runtime's outputs
    python -m tests.arm.parity reference WORK [--commands 50]
    # aarch64, runtime only: run the same folders on the same commands and compare
    python -m tests.arm.parity compare WORK [--threads 2]

The exports are made by ``exporters.export`` (the code path of ``shadow-edge export
CHECKPOINT --int8 --ort --base SMOLLM2``) from ``examples/robot_intent/checkpoints/*`` with
the local SmolLM2 base (``shadow_edge.assets.smollm2_hf_dir()``). Both sides run the model
files of :data:`PLAN` on the same held-out test commands, greedy:

- classification (batches of 10): the label of each command and its softmax scores;
- generation (one command at a time, as an app runs them): ``generate()``'s token ids
  (``max_new_tokens`` 32, eos from the manifest), and as scores the logits of the chosen
  tokens, read from the decoding steps ``generate()`` ran.

Inputs (chat-template token ids), labels and token ids must be identical; score
differences must stay within :data:`TOLERANCE` and are printed. The compare side imports
only ``runtime`` and numpy.

Why generation skips ``fp32``'s ``model.ort``: qemu emulates every floating-point vector
instruction in software, so the fp32 SmolLM2 head (576 x 49,152) runs ~10x slower than
int8 (measured: ~12-48 s per command, idle to loaded machine); one fp32 file already takes
most of the stage. ``.ort`` is checked for int8 (the mobile deployment) and for both
classifiers.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

import runtime

REPO = Path(__file__).resolve().parents[2]
CHECKPOINTS = REPO / "examples" / "robot_intent" / "checkpoints"
TASKS = {"classification": "text-classification", "generation": "text-generation"}
# task -> (precision, model file) runs; cheap ones first so a failure shows early
PLAN = {"classification": (("fp32", "onnx"), ("fp32", "ort"), ("int8", "onnx"), ("int8", "ort")),
        "generation": (("int8", "onnx"), ("int8", "ort"), ("fp32", "onnx"))}
MIN_COMMANDS = 50
MAX_NEW_TOKENS = 32
CLASSIFY_BATCH = 10
REFERENCES = "references.json"
# Max |x86 - aarch64| allowed: softmax probabilities (classification) and chosen-token
# logits (generation, |logit| ~ 10-40). Measured under qemu (Cortex-A76): int8 scores within
# 1.3e-5, fp32 logits within 4.8e-6 (issue 15), so these leave a margin of ~10-100x.
TOLERANCE = {"classification": 1e-4, "generation": 1e-3}


def commands(n: int) -> list[str]:
    """``n`` held-out test commands, evenly spaced over the split (it is grouped by intent)."""
    path = REPO / "examples" / "robot_intent" / "data" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [rows[i * len(rows) // n]["text"] for i in range(n)]


def _inputs(model, texts: list[str], system_prompt: str) -> list[list[int]]:
    if model.manifest.is_generation:
        return [model.apply_chat_template([{"role": "system", "content": system_prompt},
                                           {"role": "user", "content": text}])
                for text in texts]
    return [model.tokenizer.encode(text) for text in texts]


def _generate_with_scores(model, prompt: list[int]) -> tuple[list[int], list[float]]:
    """``model.generate(prompt)`` greedy, and the logit of each token it chose.

    Why wrap ``runner.step``: the logits are those generate() decided on (no second pass,
    which would double the cost under emulation); the wrapper is removed afterwards.
    """
    runner = model.runner
    step, seen = runner.step, []

    def recording_step(*args, **kwargs):
        logits, cache = step(*args, **kwargs)
        seen.append(logits[0])
        return logits, cache

    runner.step = recording_step
    try:
        ids = model.generate(prompt, max_new_tokens=MAX_NEW_TOKENS).token_ids
    finally:
        del runner.step  # back to the class's method
    return ids, [float(logits[t]) for logits, t in zip(seen, ids)]


def run_model(model, texts: list[str], inputs: list[list[int]]) -> dict:
    """A loaded model's outputs: {"labels" | "token_ids", "scores", "seconds"}."""
    start = time.perf_counter()
    if model.manifest.is_generation:
        runs = [_generate_with_scores(model, prompt) for prompt in inputs]
        out = {"token_ids": [ids for ids, _ in runs], "scores": [s for _, s in runs]}
    else:
        results = model.classify(texts, batch_size=CLASSIFY_BATCH)
        out = {"labels": [r.label for r in results],
               "scores": [r.scores.astype(float).tolist() for r in results]}
    out["seconds"] = time.perf_counter() - start
    return out


def _environment() -> dict:
    return {"machine": platform.machine(), "python": platform.python_version(),
            **{name: version(name) for name in ("onnxruntime", "numpy", "tokenizers")}}


def _planned():
    for task, runs in PLAN.items():
        for precision, model_file in runs:
            yield task, precision, model_file


def reference(work: Path, n: int, threads: int) -> dict:
    """Export the checkpoints into ``work/exports`` and record their outputs (x86, torch)."""
    from examples.robot_intent.app import SYSTEM_PROMPT
    from exporters import export
    from shadow_edge.assets import smollm2_hf_dir

    base = str(smollm2_hf_dir())
    texts = commands(n)
    with_ort = {(task, precision) for task, precision, model_file in _planned()
                if model_file == "ort"}
    exported = set()
    models = {}
    for task, precision, model_file in _planned():
        folder = work / "exports" / f"{task}-{precision}"
        if (task, precision) not in exported:
            start = time.perf_counter()
            export(CHECKPOINTS / task, folder, base=base, task=TASKS[task], precision=precision,
                   ort=(task, precision) in with_ort, force=True)
            print(f"exported {folder.name} in {time.perf_counter() - start:.0f} s", flush=True)
            exported.add((task, precision))
        model = runtime.load(folder, threads=threads, use_ort_format=model_file == "ort")
        inputs = _inputs(model, texts, SYSTEM_PROMPT)
        models[f"{folder.name}/{model_file}"] = {
            "task": task, "folder": f"exports/{folder.name}", "model_file": model_file,
            "inputs": inputs, **run_model(model, texts, inputs)}
    data = {"environment": _environment(), "system_prompt": SYSTEM_PROMPT, "commands": texts,
            "models": models}
    (work / REFERENCES).write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
    return data


def compare_model(ref: dict, inputs: list[list[int]], got: dict) -> dict:
    """Identical counts and the largest score difference of one model file."""
    key = "token_ids" if ref["task"] == "generation" else "labels"
    diffs = [np.max(np.abs(np.subtract(a, b)), initial=0.0) if len(a) == len(b) else np.inf
             for a, b in zip(ref["scores"], got["scores"])]
    return {"n": len(ref[key]), "inputs": sum(a == b for a, b in zip(ref["inputs"], inputs)),
            "identical": sum(a == b for a, b in zip(ref[key], got[key])),
            "max_score_diff": float(max(diffs)), "tolerance": TOLERANCE[ref["task"]],
            "seconds": got["seconds"], "x86_seconds": ref["seconds"]}


def compare(work: Path, threads: int) -> int:
    """Run every recorded model file here; print one row each; 0 when all agree."""
    data = json.loads((work / REFERENCES).read_text(encoding="utf-8"))
    print(f"reference: {data['environment']}\nthis run:  {_environment()}", flush=True)
    print(f"{'model file':<26} {'n':>3} {'inputs =':>8} {'outputs =':>9} {'max |score diff|':>16} "
          f"{'tolerance':>9} {'seconds':>8} {'x86 s':>6}", flush=True)
    failed = []
    for name, ref in data["models"].items():
        model = runtime.load(work / ref["folder"], threads=threads,
                             use_ort_format=ref["model_file"] == "ort")
        inputs = _inputs(model, data["commands"], data["system_prompt"])
        row = compare_model(ref, inputs, run_model(model, data["commands"], ref["inputs"]))
        print(f"{name:<26} {row['n']:>3} {row['inputs']:>8} {row['identical']:>9} "
              f"{row['max_score_diff']:>16.2e} {row['tolerance']:>9.0e} {row['seconds']:>8.1f} "
              f"{row['x86_seconds']:>6.1f}", flush=True)
        if (row["n"] < MIN_COMMANDS or row["identical"] < row["n"] or row["inputs"] < row["n"]
                or row["max_score_diff"] > row["tolerance"]):
            failed.append(name)
    if failed:
        print(f"PARITY FAILED for {failed}: inputs, labels and greedy tokens must be identical "
              f"on >= {MIN_COMMANDS} commands, scores within the tolerance")
        return 1
    print(f"parity: {len(data['models'])} model files x {len(data['commands'])} commands: "
          "identical inputs, labels and greedy tokens; scores within tolerance")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("reference", help="x86: export and record (needs torch)")
    ref.add_argument("work", type=Path)
    ref.add_argument("--commands", type=int, default=MIN_COMMANDS)
    ref.add_argument("--threads", type=int, default=1)
    cmp_ = sub.add_parser("compare", help="aarch64: run and compare (runtime only)")
    cmp_.add_argument("work", type=Path)
    cmp_.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "compare":
        return compare(args.work, args.threads)
    if args.commands < MIN_COMMANDS:
        parser.error(f"--commands must be >= {MIN_COMMANDS}")
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = reference(args.work, args.commands, args.threads)
    print(f"x86 reference: {len(data['models'])} model files x {len(data['commands'])} "
          f"commands in {time.perf_counter() - start:.0f} s (exports included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
