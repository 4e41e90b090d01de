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
- wall time per prefill and per decode step (``session.run`` with the profiler on, so a
  little slower than ``runtime``'s own loop).

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


def run_rounds(session, prompt_tokens: int, new_tokens: int, rounds: int) -> tuple[float, float]:
    """(median prefill seconds, median seconds per decode step) over ``rounds``."""
    inputs = {i.name: i for i in session.get_inputs()}
    past_names = [n for n in inputs if n.startswith("past_key_values.")]
    kv_heads, head_dim = inputs[past_names[0]].shape[1], inputs[past_names[0]].shape[3]
    outputs = [o.name for o in session.get_outputs()]
    keep = {"logits_to_keep": np.array(1, np.int64)} if "logits_to_keep" in {
        i.name for i in session.get_overridable_initializers()} | set(inputs) else {}
    vocab = session.get_outputs()[0].shape[-1]
    high = vocab if isinstance(vocab, int) else 256  # random ids any vocabulary has
    prompt = np.random.default_rng(0).integers(0, high, (1, prompt_tokens), dtype=np.int64)

    def step(ids, past, length):
        n = ids.shape[1]
        feed = {"input_ids": ids, "attention_mask": np.ones((1, length + n), np.int64),
                "position_ids": np.arange(length, length + n, dtype=np.int64)[None], **keep}
        feed.update(zip(past_names, past))
        return session.run(outputs, feed)

    prefills, decodes = [], []
    for _ in range(rounds):
        empty = [np.zeros((1, kv_heads, 0, head_dim), np.float32)] * len(past_names)
        start = time.perf_counter()
        out = step(prompt, empty, 0)
        prefills.append(time.perf_counter() - start)
        start = time.perf_counter()
        for t in range(new_tokens):
            token = np.array([[int(out[0][0, -1].argmax())]], np.int64)
            out = step(token, out[1:], prompt_tokens + t)
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
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "profile")
        session = ort.InferenceSession(str(model_path), options,
                                       providers=["CPUExecutionProvider"])
        prefill, decode = run_rounds(session, args.prompt_tokens, args.new_tokens,
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
