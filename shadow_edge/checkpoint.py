"""Checkpoint file I/O: safetensors read/write, strict key checks, folder and Hub resolution.

A checkpoint folder (FORMAT.md) holds ``shadow_config.json``, ``shadow_adapter.safetensors``
and, when task heads are saved, ``shadow_modules.safetensors``. Every load is strict: a
missing or unexpected key, or a shape that does not fit, raises ``CheckpointError`` naming
the keys and the fix.

This module knows files, not models: it sits below ``model.py`` and ``tasks.py``, which
use it for their ``load_state_dict`` / ``save_pretrained`` / ``push_to_hub``. How a model is
rebuilt from these files is ``persistence.py`` (adapter and heads onto a given base) and
``loading.py`` (a checkpoint plus its base, by task).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.nn.modules.module import _IncompatibleKeys

from .config import ADAPTER_NAME, CONFIG_NAME, MODULES_NAME, ShadowConfig
from .errors import CheckpointError

logger = logging.getLogger(__name__)

CHECKPOINT_FILES = (CONFIG_NAME, ADAPTER_NAME, MODULES_NAME)


def _list_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


# ---- strict state loading ----
def load_strict(
    target: Mapping[str, torch.Tensor],
    source: Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
    what: str = "adapter",
) -> _IncompatibleKeys:
    """Copy ``source`` tensors into the ``target`` parameters/buffers (same keys).

    Args:
        target: key -> live parameter or buffer (``state_dict(keep_vars=True)``).
        source: key -> tensor from a file.
        strict: raise on missing or unexpected keys (else report them in the result).
        what: a name for messages.

    Raises:
        CheckpointError: strict and keys differ (names listed), or a shape differs (key,
            both shapes and the fix), whatever ``strict``.
    """
    missing = [k for k in target if k not in source]
    unexpected = [k for k in source if k not in target]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing keys: {_list_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_list_keys(unexpected)}")
        raise CheckpointError(
            f"The {what} weights do not match the model ({'; '.join(parts)}). Load the checkpoint "
            "on the base and shadow it was saved with (pass shadow_model= for explicit shadows)."
        )
    for key, value in source.items():
        if key in target and tuple(target[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{what} weight {key!r} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(target[key].shape)} in the model. The checkpoint was saved for a different "
                "base or shadow size: load it on the base model (and shadow_model=) it was trained with."
            )
    with torch.no_grad():
        for key, value in source.items():
            if key in target:
                target[key].copy_(value.to(device=target[key].device, dtype=target[key].dtype))
    return _IncompatibleKeys(missing_keys=missing, unexpected_keys=unexpected)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file on CPU.

    Raises:
        CheckpointError: the file is missing or corrupt.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(
            f"Missing {path.name} in {path.parent}. A checkpoint folder needs {CONFIG_NAME} and "
            f"{ADAPTER_NAME}; re-save it with save_pretrained."
        )
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}). Re-save the checkpoint.") from exc


# ---- resolve ----
def resolve_checkpoint_dir(path_or_repo: str | os.PathLike, *, token: str | None = None) -> Path:
    """Return a local folder for a checkpoint given as a folder, a Hub id or ``repo_id@revision``.

    Raises:
        CheckpointError: a local path that does not exist, or a Hub download failure.
    """
    text = os.fspath(path_or_repo)
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise CheckpointError(f"{local} is a file; pass the checkpoint folder that contains it.")
        return local
    looks_local = text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text
    if looks_local:
        raise CheckpointError(
            f"Checkpoint folder {text} does not exist. Pass a folder written by save_pretrained or a "
            "Hub id such as 'org/name' (optionally 'org/name@revision')."
        )
    repo_id, _, revision = text.partition("@")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            repo_id=repo_id, revision=revision or None, allow_patterns=list(CHECKPOINT_FILES), token=token
        )
    except (HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, OSError) as exc:
        raise CheckpointError(
            f"{text!r} is not a local folder (relative to {Path.cwd()}), and fetching it from the "
            f"Hugging Face Hub failed ({exc}). Fix the folder path, or check the repo id and "
            "revision, your network and token."
        ) from exc
    return Path(folder)


# ---- save ----
def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
    tmp.replace(path)


def write_checkpoint(
    save_directory: str | os.PathLike,
    config: ShadowConfig,
    adapter: dict[str, torch.Tensor],
    modules: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint folder: ``config``, the ``adapter`` tensors and, if any, the heads.

    Args:
        save_directory: the folder (created if needed).
        config: written as ``shadow_config.json``.
        adapter: FORMAT.md adapter keys -> tensors (``shadow_adapter.safetensors``).
        modules: ``{head}.{param}`` keys -> tensors (``shadow_modules.safetensors``); when
            empty or ``None`` a stale modules file is removed.

    Returns:
        The folder. Each file is written to a temporary name and renamed, so a failed save
        leaves no half-written file.
    """
    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_save_tensors(adapter, directory / ADAPTER_NAME)
    modules_path = directory / MODULES_NAME
    if modules:
        _atomic_save_tensors(modules, modules_path)
    elif modules_path.exists():
        modules_path.unlink()
    config.save_pretrained(directory)
    logger.info("saved ShadowPEFT checkpoint to %s", directory)
    return directory


def push_to_hub(
    model,
    repo_id: str,
    *,
    commit_message: str = "Add ShadowPEFT adapter",
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> str:
    """Create ``repo_id`` if needed and upload ``model.save_pretrained``'s files (no base weights).

    Returns the commit URL.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shadow-edge-push-") as folder:
        model.save_pretrained(folder)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=folder, commit_message=commit_message,
            revision=revision, create_pr=create_pr,
        )
    return str(getattr(info, "commit_url", None) or info)
