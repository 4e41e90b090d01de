"""Where one KV-cached decode step of a causal-LM export spends its time (NOT a test).

Loads ``FOLDER/model.onnx`` in onnxruntime with its profiler on (1 thread, CPU), runs
``--commands`` rounds of one ``--prompt-tokens`` prefill (random ids, ``logits_to_keep`` 1)
followed by ``--new-tokens`` greedy decode steps, and prints, from onnxruntime's profile:

- the median kernel time of each node, summed per operator type, for one step (the median
  over the calls of a node is a decode step's time, as decode calls outnumber prefills):
  the 12 costliest operator types;
- each ``MatMul`` / ``MatMulNBits`` node's median with its weight shape [K, N] (a
  ``MatMul`` whose weight is a graph initializer; "-" otherwise), so the time can be set
  against the bytes it reads;
- wall time per prefill and per decode step (``runtime.causal_lm.CausalLMRunner`` steps
  with the profiler on, so a little slower than ``runtime``'s own loop).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_decode_step.py /tmp/shadow-edge-bench/robot/robot-intent-generation-int8
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime.causal_lm import CausalLMRunner
from runtime.generation import positions_from_mask
from runtime.manifest import read_manifest
from runtime.session import session_options


def run_rounds(runner: CausalLMRunner, prompt_tokens: int, new_tokens: int,
               rounds: int) -> tuple[float, float]:
    """(median prefill seconds, median seconds per decode step) over ``rounds``, greedy,
    batch 1, through the runtime's own step runner (it feeds ``logits_to_keep``)."""
    high = min(runner.vocab_size, 4000)
    prompt = np.random.default_rng(0).integers(0, high, (1, prompt_tokens), dtype=np.int64)
    prefills, decodes = [], []
    for _ in range(rounds):
        mask = np.ones_like(prompt)
        start = time.perf_counter()
        logits, cache = runner.step(prompt, mask, positions_from_mask(mask), runner.empty_cache(1))
        prefills.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(new_tokens):
            token = logits.argmax(-1)[:, None].astype(np.int64)
            mask = np.ones((1, cache.length + 1), np.int64)
            logits, cache = runner.step(token, mask, np.array([[cache.length]]), cache)
        decodes.append((time.perf_counter() - start) / new_tokens)
    return float(np.median(prefills)), float(np.median(decodes))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="export folder (text-generation)")
    parser.add_argument("--prompt-tokens", type=int, default=25)
    parser.add_argument("--new-tokens", type=int, default=13)
    parser.add_argument("--commands", type=int, default=30)
    args = parser.parse_args(argv)
    model_path = args.folder / "model.onnx"
    with tempfile.TemporaryDirectory() as scratch:
        options = session_options(threads=1)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "profile")
        session = ort.InferenceSession(str(model_path), options,
                                       providers=["CPUExecutionProvider"])
        runner = CausalLMRunner(session, read_manifest(args.folder))
        prefill, decode = run_rounds(runner, args.prompt_tokens, args.new_tokens,
                                     args.commands)
        events = json.loads(Path(session.end_profiling()).read_text())
    calls = collections.defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            calls[(event["args"]["op_name"], event["name"].removesuffix("_kernel_time"))].append(
                event["dur"])
    per_op = collections.Counter()
    per_node = {}
    for (op, node), durations in calls.items():
        per_node[node] = float(np.median(durations))
        per_op[op] += per_node[node]
    total = sum(per_op.values())
    print(f"{model_path}: prefill {prefill * 1e3:.2f} ms ({args.prompt_tokens} tokens), "
          f"decode step {decode * 1e3:.2f} ms (wall, profiler on)")
    print(f"one decode step, kernel time: {total / 1e3:.2f} ms")
    for op, microseconds in per_op.most_common(12):
        print(f"  {op:<24} {microseconds / 1e3:7.3f} ms  {100 * microseconds / total:5.1f}%")
    graph = onnx.load(str(model_path), load_external_data=False).graph
    weights = {t.name: list(t.dims) for t in graph.initializer}
    print("matrix products (median us, weight K x N):")
    for node in graph.node:
        if node.op_type in ("MatMul", "MatMulNBits") and node.name in per_node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            dims = weights.get(node.input[1]) if node.op_type == "MatMul" else None
            shape = (f"{attrs['K']} x {attrs['N']}" if "K" in attrs
                     else " x ".join(map(str, dims)) if dims else "-")
            print(f"  {node.name:<28} {per_node[node.name]:8.1f}  {shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
