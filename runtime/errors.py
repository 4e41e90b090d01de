"""The runtime's exception family (torch-free; separate from ``shadow_edge.errors``).

Every message names the problem and the fix. ``exit_code`` follows the CLI convention:
2 for usage errors (bad settings, a prompt that does not fit), 1 for failures (a missing or
corrupt model folder). The base class is *not* called ``RuntimeError`` so it never shadows
the builtin.
"""

from __future__ import annotations


class ShadowRuntimeError(Exception):
    """Base class of every error raised by ``runtime``."""

    exit_code = 1


class ModelFolderError(ShadowRuntimeError):
    """An export folder, its manifest or one of its files is missing or corrupt."""


class ManifestVersionError(ModelFolderError):
    """The manifest was written by a newer, incompatible shadow-edge (format_version too high)."""


class OnnxRuntimeVersionError(ShadowRuntimeError):
    """The installed onnxruntime is too old to run this export correctly."""


class InvalidSettingError(ShadowRuntimeError, ValueError):
    """A call or load setting is invalid (e.g. ``top_p=1.5``, ``threads=0``, wrong task)."""

    exit_code = 2


class ProviderUnavailableError(InvalidSettingError):
    """An execution provider was requested that the installed onnxruntime does not offer."""


class PromptTooLongError(InvalidSettingError):
    """A prompt (plus ``max_new_tokens``) does not fit the model's context window."""


class GrammarError(InvalidSettingError):
    """A grammar (``grammar=``) cannot be compiled, cannot be used with this export, or
    reached a point where no token can continue it."""


class MissingDependencyError(ShadowRuntimeError, ImportError):
    """An optional package is not installed; the message names the extra that installs it."""
