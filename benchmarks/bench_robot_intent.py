"""The robot-intent app's own workload: latency per command of its exports (NOT a test).

Issue 17 asks for the product's workload, not only a cut SmolLM2. For the committed
robot-intent checkpoints (``examples/robot_intent/checkpoints``), exported with
``exporters.export`` (parity gate on; ``examples.robot_intent.demo.export_all``, cached
in ``--workdir``), on the held-out test commands (``data/test.generation.jsonl``; the
first ``--limit`` of them, all with ``--limit 0``), batch 1, ``--threads`` threads:

- generation export (``--precisions``, default int8): for each command, the chat prompt
  (system + user message, the app's) through ``runtime`` ``generate``, greedy, at most 32
  new tokens, eos ends it, as ``examples.robot_intent.app`` runs it:

  - time to first token: ``generate(..., max_new_tokens=1)`` (chat template, tokenizer,
    prefill, first token);
  - whole-command latency: ``generate(..., max_new_tokens=32)`` to the end of the action;
  - tokens per command (generated ids, eos included);

- with ``--grammar``, the same whole-command latency with the command's action grammar
  and beam search, as the app runs with ``--grammar`` (``examples.robot_intent.grammar``:
  ``GRAMMAR_BEAMS`` beams; building the grammar is timed too; each run of 16 commands has
  the home ``examples.robot_intent.evaluate.homes`` gives it, as in the evaluation);

- classification export: ``classify(command)``, one command per call.

Each command runs ``--rounds`` times (default 1) after one warm-up command; p50/p95 are
over all timed calls. The graph's ``logits_to_keep`` input (issue 17) is reported: an
export made before it computes the prompt's logits at every position.

Usage (the first run exports the two checkpoints, a few minutes)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_robot_intent.py --json robot.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TEST_FILE = REPO / "examples" / "robot_intent" / "data" / "test.generation.jsonl"
MAX_NEW_TOKENS = 32  # examples.robot_intent.app


def commands(limit: int) -> list[list[dict]]:
    """The chat messages (system + user) of the test commands, in file order."""
    rows = [json.loads(line)["prompt"] for line in TEST_FILE.read_text().splitlines() if line]
    return rows[:limit] if limit else rows


def percentiles(ms: list[float]) -> dict:
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(np.mean(ms)), "calls": len(ms)}


def bench_generation(folder: Path, prompts: list, threads: int, rounds: int) -> dict:
    import runtime

    model = runtime.load(folder, threads=threads)
    model.generate(prompts[0], max_new_tokens=MAX_NEW_TOKENS)  # warm-up
    first, whole, tokens = [], [], []
    for _ in range(rounds):
        for prompt in prompts:
            start = time.perf_counter()
            model.generate(prompt, max_new_tokens=1)
            first.append(1e3 * (time.perf_counter() - start))
            start = time.perf_counter()
            result = model.generate(prompt, max_new_tokens=MAX_NEW_TOKENS)
            whole.append(1e3 * (time.perf_counter() - start))
            tokens.append(len(result.token_ids))
    return {"logits_to_keep": model.runner.keeps_logits,
            "prompt_tokens_mean": float(np.mean([len(model.encode_prompt(p)) for p in prompts])),
            "time_to_first_token": percentiles(first), "whole_command": percentiles(whole),
            "tokens_per_command": {"mean": float(np.mean(tokens)),
                                   "p50": float(np.percentile(tokens, 50)),
                                   "max": int(max(tokens))}}


def bench_grammar(folder: Path, prompts: list, threads: int, rounds: int) -> dict:
    """Whole-command latency with each command's grammar and the app's beam search."""
    import runtime
    from examples.robot_intent.evaluate import BATCH, homes, read_examples
    from examples.robot_intent.grammar import (
        GRAMMAR_BEAMS,
        LENGTH_PENALTY,
        command_grammar,
        load_schema,
    )

    examples = read_examples("test")[0][:len(prompts)]
    home_list, schema = homes(examples, "test"), load_schema()
    model = runtime.load(folder, threads=threads)
    settings = {"max_new_tokens": MAX_NEW_TOKENS, "num_beams": GRAMMAR_BEAMS,
                "length_penalty": LENGTH_PENALTY}
    warm_up = command_grammar(examples[0].text, home_list[0], schema)
    model.generate(prompts[0], grammar=warm_up, **settings)  # warm-up (+ llguidance set-up)
    whole, tokens = [], []
    for _ in range(rounds):
        for i, prompt in enumerate(prompts):
            start = time.perf_counter()
            grammar = command_grammar(examples[i].text, home_list[i // BATCH], schema)
            result = model.generate(prompt, grammar=grammar, **settings)
            whole.append(1e3 * (time.perf_counter() - start))
            tokens.append(len(result.token_ids))
    return {"num_beams": GRAMMAR_BEAMS, "whole_command": percentiles(whole),
            "tokens_per_command": {"mean": float(np.mean(tokens))}}


def bench_classification(folder: Path, prompts: list, threads: int, rounds: int) -> dict:
    import runtime

    model = runtime.load(folder, threads=threads)
    texts = [next(m["content"] for m in p if m["role"] == "user") for p in prompts]
    model.classify(texts[0])  # warm-up
    times = []
    for _ in range(rounds):
        for text in texts:
            start = time.perf_counter()
            model.classify(text)
            times.append(1e3 * (time.perf_counter() - start))
    return {"per_command": percentiles(times)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/shadow-edge-bench/robot"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=200, help="test commands (0 = all 1274)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--precisions", nargs="+", default=["int8"])
    parser.add_argument("--grammar", action="store_true",
                        help="also time generation with each command's grammar and beam search")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    import onnxruntime

    from examples.robot_intent.demo import export_all
    from shadow_edge.assets import smollm2_hf_dir

    args.workdir.mkdir(parents=True, exist_ok=True)
    exports = export_all(("generation", "classification"), smollm2_hf_dir(), args.workdir,
                         precisions=tuple(args.precisions), reuse=True)
    prompts = commands(args.limit)
    results = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "settings": {k: str(v) for k, v in vars(args).items()},
               "versions": {"onnxruntime": onnxruntime.__version__},
               "commands": len(prompts), "generation": {}, "classification": {}}
    for precision in args.precisions:
        folder = exports[("generation", precision)][0]
        results["generation"][precision] = bench_generation(folder, prompts, args.threads,
                                                            args.rounds)
        if args.grammar:
            results["generation"][precision]["grammar"] = bench_grammar(
                folder, prompts, args.threads, args.rounds)
        folder = exports[("classification", precision)][0]
        results["classification"][precision] = bench_classification(folder, prompts,
                                                                    args.threads, args.rounds)
    print(f"\nRobot-intent test commands: {len(prompts)} x {args.rounds}, batch 1, "
          f"{args.threads} thread(s)")
    print("| export | precision | TTFT p50 / p95 ms | whole command p50 / p95 ms | "
          "tokens per command (mean) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for precision, row in results["generation"].items():
        first, whole = row["time_to_first_token"], row["whole_command"]
        print(f"| generation | {precision} | {first['p50_ms']:.1f} / {first['p95_ms']:.1f} | "
              f"{whole['p50_ms']:.1f} / {whole['p95_ms']:.1f} | "
              f"{row['tokens_per_command']['mean']:.1f} |")
        if "grammar" in row:
            constrained = row["grammar"]
            whole = constrained["whole_command"]
            print(f"| generation + grammar, {constrained['num_beams']} beams | {precision} | | "
                  f"{whole['p50_ms']:.1f} / {whole['p95_ms']:.1f} | "
                  f"{constrained['tokens_per_command']['mean']:.1f} |")
    for precision, row in results["classification"].items():
        cls = row["per_command"]
        print(f"| classification | {precision} | | {cls['p50_ms']:.2f} / {cls['p95_ms']:.2f} | |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
