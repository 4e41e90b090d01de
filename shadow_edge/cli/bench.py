"""``shadow-edge bench``: speed of an exported model on this device.

Generation: prefill and greedy-decode tokens/s at batch 1 through the KV cache (random
prompt ids, no early stop), the best of ``--repeats`` runs after a warm-up
(``runtime.bench.bench_generator``). Classification: latency per call, p50/p95
(``runtime.bench.bench_classifier``). Torch-free. Comparisons against torch and
onnxruntime-genai are in ``benchmarks/``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from . import console
from .options import JsonOpt, ModelDirArg, OrtFormatOpt, ProviderOpt, ThreadsOpt


def bench_command(
    model_dir: ModelDirArg,
    prompt_tokens: Annotated[int, typer.Option(
        "--prompt-tokens", min=1, help="Prompt length in tokens (generation).")] = 128,
    new_tokens: Annotated[int, typer.Option(
        "--new-tokens", min=1, help="Tokens to decode per run (generation).")] = 128,
    sequence_length: Annotated[int, typer.Option(
        "--sequence-length", min=1, help="Tokens per text (classification).")] = 32,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, help="Texts per call (classification).")] = 1,
    repeats: Annotated[int, typer.Option(
        "--repeats", min=1, help="Timed runs (generation: the best is kept; classification: "
        "the latency percentiles are over them).")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random input ids.")] = 0,
    as_json: JsonOpt = False,
    provider: ProviderOpt = None,
    threads: ThreadsOpt = None,
    ort: OrtFormatOpt = False,
) -> None:
    """Measure tokens/s or latency on this device.

    Generation: prefill and decode tokens/s at batch 1. Classification: latency per call
    (p50/p95). Only onnxruntime work is timed, after warm-up runs.
    """
    import runtime
    from runtime.bench import bench_classifier, bench_generator

    model = runtime.load(model_dir, providers=provider, threads=threads, use_ort_format=ort)
    manifest = model.manifest
    if manifest.is_generation:
        numbers = bench_generator(model, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                                  repeats=repeats, seed=seed)
    else:
        numbers = bench_classifier(model, sequence_length=sequence_length,
                                   batch_size=batch_size, repeats=repeats, seed=seed)
    model_bytes = sum(f.bytes for name, f in manifest.files.items()
                      if name.startswith(manifest.model_file))
    report: dict[str, Any] = {
        "folder": str(model_dir), "task": manifest.task, "precision": manifest.precision,
        "providers": list(model.providers), "threads": threads, "ort_format": ort,
        "model_bytes": model_bytes,
        **numbers,
    }
    if manifest.is_generation:
        # every decode step reads every weight once: a lower bound on memory traffic
        report["weight_read_gb_per_s"] = model_bytes * numbers["decode_tokens_per_s"] / 1e9
    if as_json:
        console.echo_json(report)
        return
    from rich.markup import escape
    from rich.table import Table

    title = f"{model_dir} ({manifest.precision}, {', '.join(model.providers)})"
    table = Table(title=escape(title),
                  show_header=True, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report.items():
        if isinstance(value, float):
            console.add_row(table, key, f"{value:.2f}")
        elif key in {"prompt_tokens", "new_tokens", "sequence_length", "batch_size", "repeats"}:
            console.add_row(table, key, str(value))
    console.add_row(table, "model size", console.human_bytes(model_bytes))
    console.out().print(table)
