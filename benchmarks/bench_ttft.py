"""Time to first token: prefill with logits for every position vs the last one only (NOT a test).

Issue 17: a causal-LM graph exported since then takes the optional input ``logits_to_keep``
(``exporters.head_graph``). With its default 0 the graph computes the head on every prompt
position, which is exactly what graphs before issue 17 computed (the extra ``Slice`` of
the hidden states at start 0 copies [batch, seq, hidden] floats, ~0.3 MB at 128 x 576);
the runtime's generation feeds 1. Both paths run here on the same session, side by side in
interleaved rounds, through the runtime's own step (``CausalLMRunner.step`` with
``all_logits=True``, the teacher-forced path, vs ``all_logits=False``, the generation path),
and the medians and their ratio are printed.

Model: SmolLM2-135M-Instruct's config and weights cut to its first ``--layers`` layers
(``bench_runtime.prepare_hf``: a tied 49,152 x 576 head), exported fp32 and int8 into
``--workdir`` (cached; the tag ``issue17`` keeps older exports without the input apart).
Time to first token = one prefill forward of a ``--prompt-tokens`` prompt at batch 1 plus
the argmax of the last row.

Usage (the first run exports, a few minutes; later runs reuse the exports)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ttft.py --json ttft.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_runtime import model_arguments, prepare_export, prepare_hf, prompt_ids

TAG = "issue17"
MODES = ("all positions", "last position")


def load_runner(folder: Path, threads: int):
    from runtime.causal_lm import CausalLMRunner
    from runtime.manifest import read_manifest
    from runtime.session import create_session

    manifest = read_manifest(folder)
    runner = CausalLMRunner(create_session(folder / manifest.model_file, threads=threads),
                            manifest)
    if not runner.keeps_logits:
        raise SystemExit(f"{folder} has no logits_to_keep input (exported before issue 17); "
                         "delete it and run again")
    return runner


def first_token_ms(runner, ids: np.ndarray, all_logits: bool) -> tuple[float, int]:
    """(milliseconds, token) of one prefill + argmax at batch 1."""
    mask = np.ones_like(ids)
    positions = np.arange(ids.shape[1], dtype=np.int64)[None]
    start = time.perf_counter()
    logits, _ = runner.step(ids, mask, positions, runner.empty_cache(1), all_logits=all_logits)
    token = int((logits[0, -1] if all_logits else logits[0]).argmax())
    return 1e3 * (time.perf_counter() - start), token


def bench(runner, prompt_tokens: int, repeats: int) -> dict:
    ids = np.array([prompt_ids(runner.vocab_size, prompt_tokens)], np.int64)
    for mode in (True, False):  # warm-up (allocations, kernel selection)
        first_token_ms(runner, ids, mode)
    times = {m: [] for m in MODES}
    tokens = set()
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits both
        for mode, all_logits in zip(MODES, (True, False)):
            ms, token = first_token_ms(runner, ids, all_logits)
            times[mode].append(ms)
            tokens.add(token)
    if len(tokens) != 1:
        raise SystemExit(f"the two paths chose different first tokens: {sorted(tokens)}")
    row = {mode: {"median_ms": statistics.median(t), "best_ms": min(t)}
           for mode, t in times.items()}
    row["speedup"] = row[MODES[0]]["median_ms"] / row[MODES[1]]["median_ms"]
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_arguments(parser)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    import onnxruntime

    args.workdir.mkdir(parents=True, exist_ok=True)
    hf = prepare_hf(args.workdir, args.layers)
    results = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "settings": {k: str(v) for k, v in vars(args).items()},
               "versions": {"onnxruntime": onnxruntime.__version__}, "ttft": {}}
    for precision in args.precisions:
        folder = prepare_export(args.workdir, hf, precision, TAG)
        results["ttft"][precision] = bench(load_runner(folder, args.threads),
                                           args.prompt_tokens, args.repeats)
    print(f"\nTime to first token, {args.prompt_tokens}-token prompt, batch 1, "
          f"{args.threads} thread(s), median of {args.repeats} interleaved rounds")
    print(f"| precision | {MODES[0]} ms | {MODES[1]} ms | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for precision, row in results["ttft"].items():
        print(f"| {precision} | {row[MODES[0]]['median_ms']:.1f} | "
              f"{row[MODES[1]]['median_ms']:.1f} | {row['speedup']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
