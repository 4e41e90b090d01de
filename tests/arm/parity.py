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

Inputs (chat-template token ids) must be identical. Labels and greedy token ids must be
identical, except at a *near tie*: where x86's score of its own choice and its score of
aarch64's choice (softmax probabilities, or logits at the first differing decoding step;
aarch64's token must be among x86's :data:`TOP_K` there) are within twice the tolerance, a
change of each score by at most the tolerance can swap them, so a different choice there
is arithmetic, not a bug. Score differences (classification: all; generation: the chosen
tokens' logits up to the first differing step) must stay within the tolerance:

- fp32: :data:`FP32_TOLERANCE`, fixed;
- int8: twice the int8 scheme's own error ``e``, measured on x86 in the same reference run
  (the largest |int8 - fp32| of the same scores). Why: the int8 kernels quantize
  activations at run time, and onnxruntime's x86 (AVX2 / AVX-512) and Arm (NEON
  dot-product) kernels round them differently, so the two CPUs' int8 results are two
  approximations of fp32; when each is within ``e`` of fp32 they are within ``2 e`` of each
  other (triangle inequality), and a larger difference means one CPU's int8 is worse.

Each int8 row also counts how many commands give fp32's labels / tokens (x86 fp32 as the
reference) on aarch64 and on x86. The compare side imports only ``runtime`` and numpy.

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
TOP_K = 5  # per decoding step, the best ids and logits recorded (near-tie check)
MAX_NEW_TOKENS = 32
CLASSIFY_BATCH = 10
REFERENCES = "references.json"
# fp32's max |x86 - aarch64|: softmax probabilities (classification) and chosen-token
# logits (generation, |logit| ~ 10-40). Measured under qemu (Cortex-A76) with the 6-layer
# generation shadow: logits within 4.4e-5, probabilities within 3e-7 (2026-12-01), so these
# leave a margin of >= 20x. int8's tolerance is measured per run (module docstring).
FP32_TOLERANCE = {"classification": 1e-4, "generation": 1e-3}


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


def _top(logits) -> list[list[float]]:
    """The :data:`TOP_K` best ``[id, logit]`` pairs of one decoding step, best first."""
    ids = np.argsort(logits)[::-1][:TOP_K]
    return [[int(i), float(logits[i])] for i in ids]


def _generate_with_scores(model, prompt: list[int]) -> tuple[list[int], list[float],
                                                              list[list[list[float]]]]:
    """``model.generate(prompt)`` greedy: the token ids (eos included when chosen), the
    logit of each chosen token, and each decoding step's :func:`_top`.

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
    return (ids, [float(logits[t]) for logits, t in zip(seen, ids)],
            [_top(logits) for logits in seen])


def run_model(model, texts: list[str], inputs: list[list[int]]) -> dict:
    """A loaded model's outputs: {"labels" | "token_ids", "scores", "seconds"}, and for
    generation "top" (each decoding step's :func:`_top`)."""
    start = time.perf_counter()
    if model.manifest.is_generation:
        runs = [_generate_with_scores(model, prompt) for prompt in inputs]
        out = {"token_ids": [ids for ids, _, _ in runs], "scores": [s for _, s, _ in runs],
               "top": [t for _, _, t in runs]}
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


def _first_difference(a: list, b: list) -> int | None:
    """Index of the first differing token (or the shorter length); None when equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare_outputs(ref: dict, got: dict, tolerance: float) -> dict:
    """Compare one model file's outputs on two CPUs (or two precisions), command by command.

    Returns ``n``; ``identical`` (labels / token ids equal); ``near_ties`` (different only
    where ``ref``'s score of its choice minus its score of ``got``'s choice is <= 2 *
    ``tolerance``, those margins listed in ``tie_margins``); ``other`` (different
    anywhere else); ``max_score_diff`` over the comparable scores (module docstring).
    """
    generation = "token_ids" in ref
    key = "token_ids" if generation else "labels"
    identical, ties, diffs = 0, [], [0.0]
    for i, (a, b) in enumerate(zip(ref[key], got[key])):
        if generation:
            k = _first_difference(a, b)
            end = len(a) if k is None else k
            diffs.append(float(np.max(np.abs(np.subtract(ref["scores"][i][:end],
                                                         got["scores"][i][:end])), initial=0.0)))
            same, margin = k is None, None
            if not same and k < len(ref["top"][i]) and k < len(b):
                top = dict(map(tuple, ref["top"][i][k]))  # id -> logit of x86's best ids
                if b[k] in top:
                    margin = max(top.values()) - top[b[k]]
        else:
            diffs.append(float(np.max(np.abs(np.subtract(ref["scores"][i], got["scores"][i])))))
            same = a == b
            # x86's probability of its label minus its probability of aarch64's label
            margin = max(ref["scores"][i]) - ref["scores"][i][int(np.argmax(got["scores"][i]))]
        if same:
            identical += 1
        elif margin is not None and margin <= 2 * tolerance:
            ties.append(margin)
    n = len(ref[key])
    return {"n": n, "identical": identical, "near_ties": len(ties), "tie_margins": ties,
            "other": n - identical - len(ties), "max_score_diff": max(diffs),
            "tolerance": tolerance}


def tolerances(models: dict) -> dict[str, float]:
    """Per model file: :data:`FP32_TOLERANCE`, or for int8 twice the x86 int8 error (the
    largest |int8 - fp32| of the task's ``.onnx`` files, compared as in
    :func:`compare_outputs`; see the module docstring), never below fp32's."""
    out = {}
    for name, ref in models.items():
        fixed = FP32_TOLERANCE[ref["task"]]
        if "-int8/" in name:
            fp32, int8 = models[f"{ref['task']}-fp32/onnx"], models[f"{ref['task']}-int8/onnx"]
            out[name] = max(fixed, 2 * compare_outputs(fp32, int8, 0.0)["max_score_diff"])
        else:
            out[name] = fixed
    return out


def compare(work: Path, threads: int) -> int:
    """Run every recorded model file here; print one row each; 0 when all agree."""
    data = json.loads((work / REFERENCES).read_text(encoding="utf-8"))
    limits = tolerances(data["models"])
    print(f"reference: {data['environment']}\nthis run:  {_environment()}", flush=True)
    print(f"{'model file':<26} {'n':>3} {'inputs =':>8} {'outputs =':>9} {'near tie':>8} "
          f"{'max |score diff|':>16} {'tolerance':>9} {'= fp32 here/x86':>15} {'seconds':>8} "
          f"{'x86 s':>6}", flush=True)
    failed, ties = [], {}
    for name, ref in data["models"].items():
        model = runtime.load(work / ref["folder"], threads=threads,
                             use_ort_format=ref["model_file"] == "ort")
        inputs = _inputs(model, data["commands"], data["system_prompt"])
        got = run_model(model, data["commands"], ref["inputs"])
        row = compare_outputs(ref, got, limits[name])
        same_inputs = sum(a == b for a, b in zip(ref["inputs"], inputs))
        vs_fp32 = ""
        if "-int8/" in name:  # how often int8 gives fp32's labels / tokens, here and on x86
            fp32 = data["models"][f"{ref['task']}-fp32/onnx"]
            vs_fp32 = (f"{compare_outputs(fp32, got, 0.0)['identical']}/"
                       f"{compare_outputs(fp32, ref, 0.0)['identical']}")
        print(f"{name:<26} {row['n']:>3} {same_inputs:>8} {row['identical']:>9} "
              f"{row['near_ties']:>8} {row['max_score_diff']:>16.2e} {row['tolerance']:>9.2e} "
              f"{vs_fp32:>15} {got['seconds']:>8.1f} {ref['seconds']:>6.1f}", flush=True)
        if row["tie_margins"]:
            ties[name] = row["tie_margins"]
        if (row["n"] < MIN_COMMANDS or row["other"] or same_inputs < row["n"]
                or row["max_score_diff"] > row["tolerance"]):
            failed.append(name)
    for name, margins in ties.items():
        print(f"near ties in {name}: x86 score of its choice minus its score of aarch64's: "
              + ", ".join(f"{m:.3g}" for m in margins))
    if failed:
        print(f"PARITY FAILED for {failed}: inputs must be identical, labels and greedy tokens "
              f"identical except at near ties, on >= {MIN_COMMANDS} commands, scores within "
              "the tolerance")
        return 1
    print(f"parity: {len(data['models'])} model files x {len(data['commands'])} commands: "
          "identical inputs; labels and greedy tokens identical except at near ties; scores "
          "within tolerance")
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
