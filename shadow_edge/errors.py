"""The shadow-edge exception family: its base class and the core's errors.

Every message names the problem and the fix. The CLI maps each class to a one-line error
and an exit code (``exit_code``): 2 for usage errors, 1 for failures. Each layer defines its
own errors: the exporters' ``ExportError`` and ``ParityError`` subclass ``ShadowEdgeError``
in ``exporters/errors.py``; the runtime has its own family (``runtime/errors.py``).
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
