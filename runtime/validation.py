"""Field checks for JSON-backed schemas (the manifest); errors name the field and the fix."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from .errors import ModelFolderError

MANIFEST_NAME = "shadow_edge.json"


def field_error(path: str, problem: str) -> ModelFolderError:
    return ModelFolderError(
        f"{MANIFEST_NAME}: field {path!r} {problem}. Re-export the model with "
        "`shadow-edge export` or fix the field by hand."
    )


def check_int(value: Any, path: str, *, optional: bool = False, minimum: int | None = None):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(path, f"must be an integer{' or null' if optional else ''}, got {value!r}")
    if minimum is not None and value < minimum:
        raise field_error(path, f"must be >= {minimum}, got {value}")
    return value


def check_str(value: Any, path: str, *, optional: bool = False, choices=None):
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise field_error(path, f"must be a string{' or null' if optional else ''}, got {value!r}")
    if choices is not None and value not in choices:
        raise field_error(path, f"must be one of {list(choices)}, got {value!r}")
    return value


def check_mapping(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise field_error(path, f"must be a JSON object, got {type(value).__name__}")
    return value


def check_file_name(value: Any, path: str, *, optional: bool = False):
    """A file name relative to the export folder: no absolute path, drive or ``..`` part (a
    manifest must not point the runtime at files outside its folder)."""
    value = check_str(value, path, optional=optional)
    if value is None:
        return None
    parts = PurePosixPath(value.replace("\\", "/")).parts
    if not value or PureWindowsPath(value).drive or value.startswith(("/", "\\")) or ".." in parts:
        raise field_error(path, f"must be a file name inside the export folder, got {value!r}")
    return value
