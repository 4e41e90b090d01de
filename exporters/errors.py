"""The exporters' errors: a failed export step, and a failed parity gate.

Both belong to the ``shadow_edge.errors.ShadowEdgeError`` family, so the CLI maps them to
one line and exit code 1 (``shadow_edge.cli.errors``) without importing the exporters.
Bad input to an export (an unknown task, a bad option value) is the core's ``ConfigError``;
a checkpoint that cannot be read is its ``CheckpointError``.
"""

from __future__ import annotations

from shadow_edge.errors import ShadowEdgeError


class ExportError(ShadowEdgeError):
    """Detaching, folding, ONNX export, quantization or packaging failed."""


class ParityError(ExportError):
    """The exported model does not match the torch model within the documented tolerances.

    ``report`` holds the parity report (a dict) that failed.
    """

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


__all__ = ["ExportError", "ParityError"]
