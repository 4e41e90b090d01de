"""Pure error formatters: a known exception becomes one line and an exit code.

Exit codes follow click's convention (and ``shadow_edge.errors`` / ``runtime.errors``):
2 for usage errors (bad option values, wrong input), 1 for failures, 130 for Ctrl-C.
Unknown exceptions (bugs) map to ``None`` so the caller re-raises them with the traceback.

These functions only look at the exception; they never print (``shadow_edge.cli.group`` does).
"""

from __future__ import annotations

from dataclasses import dataclass

import typer
from typer._click import exceptions as click_exc

from runtime.errors import ShadowRuntimeError
from shadow_edge.errors import ShadowEdgeError

USAGE_EXIT = 2
FAILURE_EXIT = 1
INTERRUPT_EXIT = 130

# optional dependency (top-level import name) -> the extra that installs it
_EXTRA_FOR_MODULE = {
    "torch": "export",
    "transformers": "export",
    "safetensors": "export",
    "onnx": "export",
    "onnxscript": "export",
    "huggingface_hub": "export",
    "accelerate": "train",
    "hassil": "demo",
    "home_assistant_intents": "demo",
    "gguf": "demo",
    "llguidance": "grammar",
}

# Every exception type ``format_error`` knows; the CLI boundary catches exactly these.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    click_exc.ClickException,
    typer.Abort,
    KeyboardInterrupt,
    ShadowEdgeError,
    ShadowRuntimeError,
    ModuleNotFoundError,
    OSError,
)


@dataclass(frozen=True)
class ErrorReport:
    """What the CLI prints for a known error: ``message`` (one line) and the exit code."""

    message: str  # one line; a bare command's help text (NoArgsIsHelpError) is the exception
    exit_code: int


def one_line(text: str) -> str:
    """Collapse all whitespace (newlines included) in ``text`` to single spaces."""
    return " ".join(str(text).split())


def _with_fix(message: str, fix: str) -> str:
    message = one_line(message)
    if not message.endswith((".", "!", "?")):
        message += "."
    return f"{message} {fix}"


def format_usage_error(exc: click_exc.UsageError) -> ErrorReport:
    """A bad command line: click's message plus where to find the options."""
    ctx = exc.ctx
    command = ctx.command_path if ctx is not None else "shadow-edge"
    fix = f"Run '{command} --help' to see the options."
    return ErrorReport(f"Error: {_with_fix(exc.format_message(), fix)}", USAGE_EXIT)


def format_missing_module(exc: ModuleNotFoundError) -> ErrorReport | None:
    """An optional dependency is not installed: name the extra that brings it."""
    root = (exc.name or "").split(".")[0]
    extra = _EXTRA_FOR_MODULE.get(root)
    if extra is None:
        return None
    message = (
        f"Error: this command needs the optional dependency '{root}', which is not installed. "
        f"Install it with: pip install 'shadow-edge[{extra}]'"
    )
    return ErrorReport(message, FAILURE_EXIT)


def format_os_error(exc: OSError) -> ErrorReport:
    """A file-system failure (missing file, permissions, full disk...)."""
    if exc.strerror and exc.filename is not None:
        text = f"{exc.strerror}: '{exc.filename}'"
    else:
        text = str(exc) or type(exc).__name__
    return ErrorReport(f"Error: {_with_fix(text, 'Check the path and its permissions.')}",
                       FAILURE_EXIT)


def format_error(exc: BaseException) -> ErrorReport | None:
    """Map a known exception to its one-line report; ``None`` for anything else (a bug).

    Our own families carry ``exit_code`` (2 usage, 1 failure) and a message that already
    names the fix, so it is printed as is (on one line).
    """
    if isinstance(exc, click_exc.NoArgsIsHelpError):  # a bare command: show its help
        return ErrorReport(exc.format_message().rstrip("\n"), USAGE_EXIT)
    if isinstance(exc, click_exc.UsageError):
        return format_usage_error(exc)
    if isinstance(exc, click_exc.ClickException):
        return ErrorReport(f"Error: {one_line(exc.format_message())}", exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return ErrorReport("Aborted (interrupted).", INTERRUPT_EXIT)
    if isinstance(exc, typer.Abort):
        return ErrorReport("Aborted.", FAILURE_EXIT)
    if isinstance(exc, (ShadowEdgeError, ShadowRuntimeError)):
        text = one_line(str(exc)) or type(exc).__name__
        return ErrorReport(f"Error: {text}", int(getattr(exc, "exit_code", FAILURE_EXIT)))
    if isinstance(exc, ModuleNotFoundError):
        return format_missing_module(exc)
    if isinstance(exc, OSError):
        return format_os_error(exc)
    return None
