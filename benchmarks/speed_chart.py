"""Draw the README speed table as a PNG bar chart from the benchmarks' JSON files.

Panels, each drawn when its file is given:

- ``--runtime``: ``bench_runtime.py --json`` - decode tokens/s per engine and precision
  (torch, onnxruntime-genai, the shadow-edge runtime), the table's main column;
- ``--ttft``: ``bench_ttft.py --json`` - time to first token, logits for every prompt
  position vs the last one only, per precision;
- ``--robot``: ``bench_robot_intent.py --json`` - the robot-intent exports' p50 and p95
  per command (generation: whole command; classification).

Usage (needs ``pip install 'shadow-edge[bench]'`` for matplotlib)::

    .venv/bin/python benchmarks/speed_chart.py --runtime benchmarks/results_runtime.json \\
        --ttft ttft.json --robot robot.json -o benchmarks/speed.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def runtime_bars(results: dict) -> tuple[list[str], list[float]]:
    """(labels, decode tokens/s) of every engine row in a bench_runtime result."""
    labels, values = [], []
    if results.get("torch_cached"):
        labels.append("torch + cache\nfp32")
        values.append(results["torch_cached"]["decode_tokens_per_s"])
    if results.get("torch_uncached"):
        labels.append("torch, no cache\nfp32")
        values.append(results["torch_uncached"]["decode_tokens_per_s"])
    for precision, row in (results.get("genai") or {}).items():
        if isinstance(row, dict) and "decode_tokens_per_s" in row:
            labels.append(f"ort-genai\n{precision}")
            values.append(row["decode_tokens_per_s"])
    for precision, row in (results.get("runtime") or {}).items():
        labels.append(f"shadow-edge\n{precision}")
        values.append(row["decode_tokens_per_s"])
    return labels, values


def draw(runtime: dict | None, ttft: dict | None, robot: dict | None, output: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in (runtime, ttft, robot) if p is not None]
    if not panels:
        raise SystemExit("give at least one of --runtime, --ttft, --robot")
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    axes = list(axes[0])
    if runtime is not None:
        ax = axes.pop(0)
        labels, values = runtime_bars(runtime)
        labels = [label.replace("\n", " ") for label in labels]
        colors = ["tab:blue" if "shadow-edge" in label else "tab:gray" for label in labels]
        bars = ax.bar(labels, values, color=colors)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
        ax.set_ylabel("decode tokens/s (higher is better)")
        ax.set_title(f"Decode, batch 1 ({runtime.get('date', '')[:10]})", fontsize=10)
        ax.tick_params(axis="x", labelsize=7, labelrotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    if ttft is not None:
        ax = axes.pop(0)
        precisions = list(ttft["ttft"])
        modes = [m for m in next(iter(ttft["ttft"].values())) if m != "speedup"]
        width = 0.8 / len(modes)
        for i, mode in enumerate(modes):
            values = [ttft["ttft"][p][mode]["median_ms"] for p in precisions]
            bars = ax.bar([x + i * width for x in range(len(precisions))], values, width,
                          label=f"logits: {mode}")
            ax.bar_label(bars, fmt="%.0f", fontsize=8)
        ax.set_xticks([x + width * (len(modes) - 1) / 2 for x in range(len(precisions))],
                      precisions)
        ax.set_ylabel("time to first token, ms (lower is better)")
        ax.set_title(f"Prefill of {ttft['settings'].get('prompt_tokens', '?')} tokens",
                     fontsize=10)
        ax.legend(fontsize=8)
    if robot is not None:
        ax = axes.pop(0)
        labels, p50, p95 = [], [], []
        for precision, row in robot.get("generation", {}).items():
            labels.append(f"generation\n{precision}")
            p50.append(row["whole_command"]["p50_ms"])
            p95.append(row["whole_command"]["p95_ms"])
            if "grammar" in row:  # --grammar: each command's grammar with beam search
                labels.append(f"+ grammar, {row['grammar']['num_beams']} beams\n{precision}")
                p50.append(row["grammar"]["whole_command"]["p50_ms"])
                p95.append(row["grammar"]["whole_command"]["p95_ms"])
        for precision, row in robot.get("classification", {}).items():
            labels.append(f"classification\n{precision}")
            p50.append(row["per_command"]["p50_ms"])
            p95.append(row["per_command"]["p95_ms"])
        xs = range(len(labels))
        for offset, values, name in ((0.0, p50, "p50"), (0.4, p95, "p95")):
            bars = ax.bar([x + offset for x in xs], values, 0.4, label=name)
            ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.set_xticks([x + 0.2 for x in xs], labels)
        ax.set_ylabel("ms per command (lower is better)")
        ax.set_title(f"Robot-intent app, {robot.get('commands', '?')} test commands",
                     fontsize=10)
        ax.legend(fontsize=8)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", type=Path, help="bench_runtime.py --json output")
    parser.add_argument("--ttft", type=Path, help="bench_ttft.py --json output")
    parser.add_argument("--robot", type=Path, help="bench_robot_intent.py --json output")
    parser.add_argument("-o", "--output", type=Path, default=Path("benchmarks/speed.png"))
    args = parser.parse_args(argv)
    read = (lambda p: json.loads(p.read_text()) if p else None)
    path = draw(read(args.runtime), read(args.ttft), read(args.robot), args.output)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
