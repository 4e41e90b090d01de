"""The CLI's error boundary: a Typer group whose ``main`` turns known errors into one line.

Typer normally prints usage errors in a multi-line panel and lets library exceptions escape
with a traceback. Here every exception in :data:`~shadow_edge.cli.errors.KNOWN_ERRORS`
becomes the one-line message from :func:`~shadow_edge.cli.errors.format_error` on stderr and
its exit code. ``SHADOW_EDGE_DEBUG=1`` prints the traceback first. Unknown exceptions (bugs)
propagate unchanged, with their traceback.

The boundary lives in ``main`` (not in ``__call__``) so Typer's ``CliRunner`` goes through it
too.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Any

from typer.core import TyperGroup

from shadow_edge.quiet import DEBUG_ENV, debug_enabled

from .errors import KNOWN_ERRORS, format_error

__all__ = ["DEBUG_ENV", "ShadowEdgeGroup", "debug_enabled"]


class ShadowEdgeGroup(TyperGroup):
    """Root command group of ``shadow-edge`` with the one-line error boundary."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(
                args=args, prog_name=prog_name, complete_var=complete_var,
                standalone_mode=False, **extra,
            )
        except KNOWN_ERRORS as exc:
            report = format_error(exc)
            if report is None:  # e.g. a ModuleNotFoundError for a module we don't know
                raise
            if debug_enabled():
                traceback.print_exc(file=sys.stderr)
            if report.message:
                sys.stderr.write(report.message + "\n")
                sys.stderr.flush()
            code = report.exit_code
        else:
            code = result if isinstance(result, int) and not isinstance(result, bool) else 0
        if standalone_mode:
            sys.exit(code)
        return code
