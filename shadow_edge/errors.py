"""The shadow-edge exception family.

Every message names the problem and the fix. The CLI maps each class to a one-line error
and an exit code (``exit_code``): 2 for usage errors, 1 for failures.
"""

from __future__ import annotations


class ShadowEdgeError(Exception):
    """Base class of all shadow-edge errors."""

    exit_code = 1


class ConfigError(ShadowEdgeError, ValueError):
    """An invalid configuration value or combination (e.g. a base with fewer than 2 layers)."""

    exit_code = 2


class DataError(ShadowEdgeError, ValueError):
    """Training data that cannot be used (wrong row shape, labels, nothing fits); the message
    names the row or field and the fix."""

    exit_code = 2


class CheckpointError(ShadowEdgeError):
    """A checkpoint folder or weight file is missing, corrupt or does not fit the base."""


class ExportError(ShadowEdgeError):
    """Detaching, folding, ONNX export, quantization or packaging failed."""


class ParityError(ExportError):
    """The exported model does not match the torch model within the documented tolerances.

    ``report`` holds the parity report (a dict) that failed.
    """

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


class ManifestError(ShadowEdgeError):
    """An export folder's manifest is missing, corrupt or from an incompatible version."""
