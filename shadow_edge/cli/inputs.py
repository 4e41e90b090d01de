"""Reading user input files (texts to classify, JSONL training data) with clear errors.

Every problem raises ``typer.BadParameter`` (exit code 2) naming the file, the line and the
fix: a file that is not UTF-8, a JSON line that does not parse, a row without the expected
keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .options import usage_error


def read_utf8(path: Path, *, param_hint: str) -> str:
    """The whole file as text; ``BadParameter`` if it is missing or not valid UTF-8."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise usage_error(f"file '{path}' does not exist. Check the path.",
                                 param_hint=param_hint) from None
    except IsADirectoryError:
        raise usage_error(f"'{path}' is a folder; pass a file.",
                                 param_hint=param_hint) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise usage_error(
            f"file '{path}' is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}). "
            "Re-save it as UTF-8, e.g. iconv -t UTF-8.",
            param_hint=param_hint,
        ) from None


def read_jsonl(path: Path, *, param_hint: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one per non-blank line."""
    rows = []
    for number, line in enumerate(read_utf8(path, param_hint=param_hint).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise usage_error(
                f"line {number} of '{path}' is not valid JSON ({exc.msg}). Write one JSON "
                "object per line.",
                param_hint=param_hint,
            ) from None
        if not isinstance(row, dict):
            raise usage_error(
                f"line {number} of '{path}' is a JSON {type(row).__name__}, not an object. "
                'Write one object per line, e.g. {"text": "..."}.',
                param_hint=param_hint,
            )
        rows.append(row)
    if not rows:
        raise usage_error(f"file '{path}' has no rows. Add one JSON object per line.",
                                 param_hint=param_hint)
    return rows


def read_texts(path: Path, *, param_hint: str = "'--file'") -> list[str]:
    """Texts from ``path``: one per line, or ``{"text": ...}`` rows when it ends in ``.jsonl``.

    Blank lines are skipped. Raises ``BadParameter`` for an empty file or a row without a
    non-empty string ``text``.
    """
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        texts = []
        for number, row in enumerate(read_jsonl(path, param_hint=param_hint), 1):
            text = row.get("text")
            if not isinstance(text, str) or not text.strip():
                raise usage_error(
                    f"row {number} of '{path}' has no non-empty \"text\" field. Give each row "
                    'a "text", e.g. {"text": "turn on the light"}.',
                    param_hint=param_hint,
                )
            texts.append(text)
        return texts
    texts = [line for line in read_utf8(path, param_hint=param_hint).splitlines() if line.strip()]
    if not texts:
        raise usage_error(f"file '{path}' has no text. Put one text per line.",
                                 param_hint=param_hint)
    return texts
