"""Shared argument and option types of the ``shadow-edge`` commands (one place, reused).

Each is an ``Annotated`` alias, so a command declares e.g. ``model_dir: ModelDirArg``.
Validation that only needs the command line (existence of paths, ranges) happens here and
raises ``typer.BadParameter`` (exit code 2).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from runtime.manifest import MANIFEST_NAME  # light: json and the standard library only


class Task(str, Enum):
    """Task names (the manifest's, as in optimum)."""

    text_generation = "text-generation"
    text_classification = "text-classification"


def greater_than(low: float):
    """A callback rejecting values <= ``low`` (typer's ``min=`` is inclusive)."""
    def check(value):
        if value is not None and not value > low:
            raise typer.BadParameter(f"{value} is not > {low}. Pass a value above {low}.")
        return value
    return check


def below(high: float):
    """A callback rejecting values >= ``high`` (typer's ``max=`` is inclusive)."""
    def check(value):
        if value is not None and not value < high:
            raise typer.BadParameter(f"{value} is not < {high}. Pass a value below {high}.")
        return value
    return check


def _existing_path(value: Path | None) -> Path | None:
    if value is not None and not value.exists():
        raise typer.BadParameter(f"'{value}' does not exist. Check the path.")
    return value


def _export_folder(value: Path) -> Path:
    if not value.exists():
        raise typer.BadParameter(
            f"folder '{value}' does not exist. Pass the folder written by "
            "'shadow-edge export CKPT -o OUT'."
        )
    if not value.is_dir():
        raise typer.BadParameter(
            f"'{value}' is a file, not an export folder. Pass the folder written by "
            "'shadow-edge export CKPT -o OUT'."
        )
    return value


# --- paths ---------------------------------------------------------------------------------

ModelDirArg = Annotated[
    Path,
    typer.Argument(
        metavar="MODEL_DIR",
        help="Export folder written by 'shadow-edge export' (holds model.onnx and "
        f"{MANIFEST_NAME}).",
        callback=_export_folder,
        show_default=False,
    ),
]

CheckpointArg = Annotated[
    Path,
    typer.Argument(
        metavar="CKPT",
        help="ShadowPEFT checkpoint folder (shadow_config.json + shadow_adapter.safetensors) "
        "or a standalone shadow model folder.",
        callback=_existing_path,
        show_default=False,
    ),
]

BaseOpt = Annotated[
    str | None,
    typer.Option(
        "--base",
        help="Base model folder or Hub id the adapter (ours or HF peft's) was trained on. "
        "Default: the base recorded in the checkpoint (base_model_name_or_path). Other "
        "checkpoints hold all their weights and refuse it.",
        show_default=False,
    ),
]

# --- running an exported model -------------------------------------------------------------

ProviderOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--provider",
        metavar="NAME",
        help="onnxruntime execution provider: cpu, xnnpack, nnapi, coreml or a full name "
        "such as CPUExecutionProvider; repeat for a priority list (CPU is always the "
        "fallback). 'shadow-edge info' lists the available ones. Default: cpu.",
        show_default=False,
    ),
]

ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="onnxruntime intra-op threads. Default: onnxruntime's choice.",
        show_default=False,
    ),
]

OrtFormatOpt = Annotated[
    bool,
    typer.Option("--ort", help="Load model.ort (written by 'shadow-edge export --ort') instead "
                 "of model.onnx, as on a phone with a reduced onnxruntime build."),
]

JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables."),
]

# --- sampling (generate, chat) -------------------------------------------------------------

MaxNewTokensOpt = Annotated[
    int,
    typer.Option("--max-new-tokens", min=1, help="Maximum number of tokens to generate."),
]
TemperatureOpt = Annotated[
    float,
    typer.Option(
        "--temperature", min=0.0,
        help="Sampling temperature; 0 means greedy decoding.",
    ),
]
TopKOpt = Annotated[
    int,
    typer.Option("--top-k", min=0, help="Sample from the k most likely tokens; 0 disables."),
]
TopPOpt = Annotated[
    float,
    typer.Option(
        "--top-p", max=1.0, callback=greater_than(0.0),
        help="Nucleus sampling: the smallest token set with this total probability; 1 disables.",
    ),
]
RepetitionPenaltyOpt = Annotated[
    float,
    typer.Option(
        "--repetition-penalty", callback=greater_than(0.0),
        help="Penalty for tokens already in the sequence (CTRL, Keskar et al. 2019); 1 disables.",
    ),
]
NumBeamsOpt = Annotated[
    int,
    typer.Option(
        "--num-beams", min=1,
        help="Beam search with this many beams (1 = greedy or sampling); keeps the likeliest "
        "whole outputs, best with a grammar. Not with sampling, --stop or --stream.",
    ),
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", help="Random seed for sampling (reproducible output).",
                 show_default=False),
]
SystemOpt = Annotated[
    str | None,
    typer.Option(
        "--system",
        help="System message placed before the prompt with the model's chat template. "
        "Escapes such as \\n are processed (see --escape).",
        show_default=False,
    ),
]
StopOpt = Annotated[
    list[str] | None,
    typer.Option("--stop", metavar="TEXT", show_default=False,
                 help="Stop when the output contains this text, special tokens included, e.g. "
                 "--stop '\\n' or --stop '<|im_start|>' (repeatable; escapes are processed, "
                 "see --escape)."),
]
EscapeOpt = Annotated[
    bool,
    typer.Option(
        "--escape/--no-escape",
        help="Process escapes in the prompt, --system and --stop, as llama.cpp does: \\n, "
        "\\r, \\t, \\', \\\", \\\\ and \\xHH (a byte; bytes combine into UTF-8). "
        "Any other backslash is kept.",
    ),
]

#: The one-character escapes of :func:`process_escapes`.
ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "'": "'", '"': '"', "\\": "\\"}
_HEX_DIGITS = "0123456789abcdefABCDEF"


def process_escapes(text: str) -> str:
    """Replace the escapes a user types on a command line by the characters they stand for,
    as llama.cpp's ``--escape`` (on by default there) does.

    ``\\n``, ``\\r``, ``\\t``, ``\\'``, ``\\"`` and ``\\\\`` give one character; ``\\xHH`` gives
    the byte HH, and a run of such bytes is read as UTF-8 (``\\xe2\\x86\\x92`` is "→"). Any
    other backslash, and a trailing one, stays as typed.

    Raises:
        ValueError: a run of ``\\x`` bytes that is not valid UTF-8.
    """
    pieces: list[str] = []
    run = bytearray()  # consecutive \xHH bytes

    def end_run() -> None:
        try:
            pieces.append(run.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise ValueError(
                f"the \\x escapes in {text!r} do not form valid UTF-8 ({error.reason}); write "
                "the character itself, or all its UTF-8 bytes (e.g. \\xc3\\xa9 for é)"
            ) from None
        run.clear()

    i = 0
    while i < len(text):
        pair, digits = text[i:i + 2], text[i + 2:i + 4]
        if pair == "\\x" and len(digits) == 2 and all(c in _HEX_DIGITS for c in digits):
            run.append(int(digits, 16))
            i += 4
            continue
        end_run()
        if pair[:1] == "\\" and pair[1:] in ESCAPES and len(pair) == 2:
            pieces.append(ESCAPES[pair[1]])
            i += 2
        else:
            pieces.append(text[i])
            i += 1
    end_run()
    return "".join(pieces)

# --- constrained decoding (generate, chat; needs shadow-edge[grammar]) -----------------------

GrammarFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--grammar", metavar="FILE.lark", callback=_existing_path, show_default=False,
        help="Constrain the output to a Lark grammar (llguidance's dialect) read from FILE. "
        "Needs pip install 'shadow-edge[grammar]', as do --regex, --json-schema and --choice.",
    ),
]
RegexOpt = Annotated[
    str | None,
    typer.Option("--regex", metavar="PATTERN", show_default=False,
                 help="Constrain the output to match this regular expression."),
]
JsonSchemaOpt = Annotated[
    Path | None,
    typer.Option("--json-schema", metavar="FILE.json", callback=_existing_path,
                 show_default=False,
                 help="Constrain the output to JSON valid under the JSON schema in FILE."),
]
ChoiceOpt = Annotated[
    list[str] | None,
    typer.Option("--choice", metavar="TEXT", show_default=False,
                 help="Constrain the output to exactly one of these texts (repeatable)."),
]


def usage_error(message: str, param_hint: str | None = None) -> typer.BadParameter:
    """A ``BadParameter`` (exit 2) bound to the running command, so the one-line error can
    say which command's ``--help`` to read."""
    from typer._click.globals import get_current_context

    return typer.BadParameter(message, ctx=get_current_context(silent=True),
                              param_hint=param_hint)
