"""``shadow-edge classify``: labels and scores for texts with an exported classifier.

Torch-free: only ``runtime`` is imported, inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from . import console
from .inputs import read_texts
from .loading import load_for_task
from .options import JsonOpt, ModelDirArg, OrtFormatOpt, ProviderOpt, ThreadsOpt, usage_error


def gather_texts(texts: list[str] | None, file: Path | None) -> list[str]:
    """Texts from the arguments and/or ``--file``; ``BadParameter`` when none or one is empty."""
    gathered = list(texts or [])
    for i, text in enumerate(gathered, 1):
        if not text.strip():
            raise usage_error(f"text {i} is empty. Pass non-empty texts.", param_hint="'TEXTS'")
    if file is not None:
        gathered += read_texts(file)
    if not gathered:
        raise usage_error("no texts to classify. Pass texts as arguments or --file texts.txt.",
                          param_hint="'TEXTS'")
    return gathered


def classify_command(
    model_dir: ModelDirArg,
    texts: Annotated[list[str] | None, typer.Argument(
        metavar="TEXTS...", help="Texts to classify (or use --file).", show_default=False)] = None,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help='UTF-8 file of texts: one per line, or {"text": ...} rows in a '
        '.jsonl file.', show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", min=1, help="Texts per onnxruntime call.")] = 32,
    threshold: Annotated[float, typer.Option(
        "--threshold", min=0.0, max=1.0,
        help="Multi-label models: list every label scoring at least this.")] = 0.5,
    as_json: JsonOpt = False,
    provider: ProviderOpt = None,
    threads: ThreadsOpt = None,
    ort: OrtFormatOpt = False,
) -> None:
    """Classify texts with an exported model.

    Prints the label and its score per text (--json adds every score), scored as the
    transformers pipeline does for the model's problem_type (softmax; sigmoid for
    multi-label and one-logit models, whose labels above --threshold are all listed; raw
    values for regression). Runs on onnxruntime only.
    Example: shadow-edge classify out "turn off the fan" -f more.txt
    """
    items = gather_texts(texts, file)
    model = load_for_task(model_dir, "text-classification", provider, threads, ort)
    outputs = model.classify(items, batch_size=batch_size, threshold=threshold)
    multi_label = model.manifest.model.problem_type == "multi_label_classification"
    results: list[dict[str, Any]] = [
        {"text": text, **out.as_dict(model.labels)} for text, out in zip(items, outputs)
    ]
    if as_json:
        console.echo_json(results)
        return
    from rich.table import Table

    table = Table(show_header=True)
    table.add_column("labels" if multi_label else "label")
    table.add_column("score", justify="right")
    table.add_column("text")
    for row in results:
        label = (", ".join(row["labels"]) or "-") if multi_label else row["label"]
        console.add_row(table, label, f"{row['score']:.3f}", row["text"])
    console.out().print(table)
