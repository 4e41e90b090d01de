"""Console output helpers: rich consoles for tables and progress, plain text for results.

Results that other programs read (generated text, JSON) go to stdout as plain text, never
through rich markup or wrapping. Progress and notes go to stderr.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console


def out() -> Console:
    """A rich console on stdout (created per call so test runners' redirection is seen)."""
    return Console(highlight=False, soft_wrap=True)


def err() -> Console:
    """A rich console on stderr, for progress bars and notes."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (keys in insertion order)."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def human_bytes(n: float | None) -> str:
    """``1536`` -> ``"1.5 KiB"`` (binary units); ``None`` -> ``"-"``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def note(message: str) -> None:
    """A plain one-line note on stderr (not part of the command's result)."""
    typer.echo(message, err=True)


def quiet_transformers() -> None:
    """Hide third-party chatter unless -v was given: transformers' progress bars and load
    reports (a base loaded for an adapter lists the heads the adapter brings as "MISSING"),
    and torch.onnx's notes about optional packages. The CLI draws its own progress and
    reports real problems as errors. Call only in commands that import transformers anyway.
    """
    import logging

    if logging.getLogger("shadow_edge").getEffectiveLevel() > logging.INFO:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)


def add_row(table, *values: Any) -> None:
    """Add a row of plain-text cells: brackets in paths, shapes or user text are not rich
    markup (``[batch_size, ...]`` would otherwise vanish as an unknown tag)."""
    from rich.text import Text

    table.add_row(*(value if isinstance(value, Text) else Text(str(value)) for value in values))
