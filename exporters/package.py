"""Write an export folder atomically: stage everything in a temporary sibling, then rename.

- An existing output is refused unless ``force=True`` (CLI ``--force``); with force it is
  swapped out (old folder renamed aside, new one renamed in, old one removed), so readers
  never see a half-written folder.
- The temporary folder is removed on any failure, so a failed export leaves nothing behind.
  A killed export cannot clean up; its leftovers (``.OUT.<id>.tmp`` staging folders and
  ``.OUT.old-<id>`` asides) are removed by the next export to the same output. A running
  export holds an advisory lock (``flock``) on its folders, so only leftovers whose owning
  process is gone are swept (the kernel drops the lock when the process dies).
- Library temp files of an export (onnxruntime's quantizer, the ORT converter) go to a
  per-export temp root inside the staging folder (``tempfile.tempdir`` while the export
  runs), so they leave with it, even after a kill.
- Folders and files are created the ordinary way, so their permissions follow the umask
  (0755/0644 under umask 022), not the private 0700/0600 of ``mkdtemp``/``mkstemp``.

Also writes the side files of the layout in ``docs/DESIGN.md``: config.json,
generation_config.json, genai_config.json (causal LM, for onnxruntime-genai), tokenizer
files (special_tokens_map.json included) and the ``files`` table of the manifest; the
manifest itself is a :class:`runtime.manifest.Manifest` built by ``exporters.api``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from runtime.errors import ShadowRuntimeError
from runtime.manifest import FileInfo, Manifest
from runtime.tokenizer import SPECIAL_TOKEN_NAMES, Tokenizer
from shadow_edge.errors import ConfigError

from .errors import ExportError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, so nothing is swept
    fcntl = None

logger = logging.getLogger(__name__)

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
    "added_tokens.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model",
)
GENERATION_CONFIG = "generation_config.json"
GENAI_CONFIG = "genai_config.json"
#: The decoder-only model types onnxruntime-genai 0.18 runs (its model_type list); each
#: selects its generic decoder with our I/O names, which are genai's defaults.
GENAI_MODEL_TYPES = ("gemma", "gemma2", "gemma3_text", "gpt2", "granite", "llama", "mistral",
                     "nemotron", "olmo", "qwen2", "qwen3")
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
#: transformers' folder of named chat templates (``runtime.tokenizer.CHAT_TEMPLATE_DIR``)
TOKENIZER_DIRS = ("additional_chat_templates",)
#: The per-export temp root inside the staging folder (removed before the rename).
SCRATCH_DIR = ".scratch"


class OutputExistsError(ExportError, ConfigError):
    """The output folder exists and ``force`` was not given: a usage error (CLI exit 2),
    and an :class:`ExportError` as the export documents it."""


def check_output(output_dir: str | Path, *, force: bool = False) -> Path:
    """Fail fast (before any work) when ``output_dir`` cannot be written.

    First sweeps what killed exports to the same output left behind (:func:`sweep_stale`).

    Raises:
        OutputExistsError: the output exists without ``force``.
        ExportError: the output is a file, or its parent is not a writable folder.
    """
    output = Path(output_dir).absolute()
    sweep_stale(output)
    if output.exists() and not force:
        raise OutputExistsError(f"output folder {output} already exists; pass --force "
                                "(force=True) to replace it, or choose another folder")
    if output.exists() and not output.is_dir():
        raise ExportError(f"output path {output} is a file, not a folder; choose a folder path")
    parent = output.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ExportError(f"cannot create the output folder {output}: {existing} is not a "
                          "writable folder; choose a writable output path")
    return output


def _staging_pattern(output: Path) -> re.Pattern:
    # ".OUT.<8 chars>.tmp" (ours: hex; older versions: mkdtemp's [a-z0-9_]) and ".OUT.old-<hex>"
    name = re.escape(output.name)
    return re.compile(rf"\.{name}\.(?:(?P<tmp>[a-z0-9_]{{8}})\.tmp|old-(?P<old>[0-9a-f]{{8}}))")


def _lock(folder: Path, *, wait: bool) -> int | None:
    """An fd of ``folder`` holding an exclusive ``flock``; ``None`` if another process holds
    it (``wait=False``) or the platform has no ``fcntl`` (then nothing is ever swept)."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the last fd releases the flock


def sweep_stale(output: Path) -> list[Path]:
    """Remove what interrupted exports to ``output`` left next to it; return what went.

    A staging folder or an aside of the old output is removed only when no process holds
    its lock, i.e. its export is not running any more. An aside whose swap was cut short
    (the output is missing) is renamed back into place instead, keeping the previous export.
    """
    parent = Path(output).parent
    if not parent.is_dir():
        return []
    pattern = _staging_pattern(Path(output))
    removed: list[Path] = []
    for entry in sorted(parent.iterdir()):
        match = pattern.fullmatch(entry.name)
        if match is None or not entry.is_dir() or entry.is_symlink():
            continue
        try:
            fd = _lock(entry, wait=False)
        except OSError as error:  # e.g. another user's folder: not ours to sweep
            logger.debug("not sweeping %s: %s", entry, error)
            continue
        if fd is None:
            continue
        try:
            if match["old"] and not output.exists():
                os.rename(entry, output)
                logger.warning("restored %s from an interrupted export's %s", output, entry.name)
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
            logger.info("removed %s, left by an interrupted export", entry)
        finally:
            _unlock(fd)
    return removed


def _make_staging(output: Path) -> Path:
    """Create ``.OUT.<hex>.tmp`` with plain ``mkdir`` (mode 0777 minus the umask)."""
    for _ in range(100):
        staging = output.parent / f".{output.name}.{secrets.token_hex(4)}.tmp"
        try:
            staging.mkdir()
        except FileExistsError:
            continue
        return staging
    raise FileExistsError(f"no free temporary name next to {output}")  # pragma: no cover


_scratch_lock = threading.Lock()
_scratch_roots: list[str] = []
_tempdir_before: list[str | None] = []


@contextlib.contextmanager
def _temp_root(folder: Path) -> Iterator[None]:
    """Point ``tempfile.tempdir`` (the default of every ``tempfile`` call in this process) at
    ``folder`` while the block runs; nested or concurrent exports restore in any order."""
    with _scratch_lock:
        if not _scratch_roots:
            _tempdir_before[:] = [tempfile.tempdir]
        _scratch_roots.append(str(folder))
        tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        with _scratch_lock:
            _scratch_roots.remove(str(folder))
            tempfile.tempdir = _scratch_roots[-1] if _scratch_roots else _tempdir_before[0]


@contextlib.contextmanager
def staged_output(output_dir: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``output_dir``; move it into place on success.

    The output is checked first (:func:`check_output`: the one existing-output check of an
    export), so enter this before any expensive work. While the block runs the folder is locked against :func:`sweep_stale` and holds the
    process's temp root (``SCRATCH_DIR``, removed before the move). On an exception inside
    the block the temporary folder (and any parent folder created for it) is deleted and the
    exception re-raised; the previous output (with ``force``) is left untouched.
    """
    output = check_output(output_dir, force=force)
    created = [p for p in (output.parent, *output.parent.parents) if not p.exists()]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        staging = _make_staging(output)
    except OSError as error:
        raise ExportError(f"cannot write next to {output}: {error}; choose a writable output "
                          "path") from error
    lock = _lock(staging, wait=True)
    try:
        scratch = staging / SCRATCH_DIR
        scratch.mkdir()
        with _temp_root(scratch):
            yield staging
        shutil.rmtree(scratch)
        _ordinary_modes(staging)
        _swap_into_place(staging, output, force=force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # deepest first; only if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        _unlock(lock)


def _ordinary_modes(staging: Path) -> None:
    """Give every file and folder below ``staging`` the mode of a new file / folder under
    the process's umask (0644 / 0755 under umask 022).

    Why: libraries may write private files (onnxruntime's quantizer writes the external
    ``model.onnx.data`` 0600), which another user of the device could not read. The umask
    is read off ``staging`` itself (a plain ``mkdir``: 0777 minus the umask), not with
    ``os.umask``, which would change it for every thread for a moment.
    """
    dir_mode = staging.stat().st_mode & 0o777
    for path in staging.rglob("*"):
        if not path.is_symlink():
            path.chmod(dir_mode if path.is_dir() else dir_mode & 0o666)


def _swap_into_place(staging: Path, output: Path, *, force: bool) -> None:
    if not output.exists():
        os.rename(staging, output)
        return
    if not force:  # created by someone else while we worked
        raise ExportError(f"output folder {output} appeared during the export; pass --force "
                          "to replace it")
    aside = output.with_name(f".{output.name}.old-{uuid.uuid4().hex[:8]}")
    lock = _lock(output, wait=True)  # the lock moves with the folder: not swept while we work
    try:
        os.rename(output, aside)
        try:
            os.rename(staging, output)
        except OSError as error:
            os.rename(aside, output)
            raise ExportError(f"cannot move the export into {output}: {error}") from error
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        _unlock(lock)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of the file at ``path``, read ``chunk`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(path: str | Path | None) -> str | None:
    """Hash of a checkpoint: sha256 over (relative path, file sha256) of every file, sorted.

    Hidden files and folders (e.g. ``.git``, ``.cache``) are skipped. ``None`` for
    in-memory sources.
    """
    if path is None or not Path(path).is_dir():
        return None
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        digest.update(relative.as_posix().encode() + b"\0" + sha256_file(file).encode() + b"\n")
    return digest.hexdigest()


def copy_tokenizer(asset_dirs: list[Path], folder: Path) -> list[str]:
    """Copy tokenizer files from the first of ``asset_dirs`` that has any; return their names.

    Named chat templates (``additional_chat_templates/``) are copied too, so transformers and
    the runtime pick the same template from the export as from the source. When the template
    is only in ``chat_template.jinja`` (transformers 5 layout) it is also written into
    ``tokenizer_config.json`` as ``chat_template``, which readers of older layouts look at
    (the .jinja file still wins for transformers and our runtime). ``special_tokens_map.json``
    is written from ``tokenizer_config.json`` when the source has none (transformers 5 no
    longer saves it), so every export has the file the layout promises.
    """
    source = tokenizer_source(asset_dirs)
    if source is not None:
        present = [name for name in TOKENIZER_FILES if (source / name).is_file()]
        for name in present:
            shutil.copyfile(source / name, folder / name)
        copy_tokenizer_dirs(source, folder)
        config_path, template_path = folder / "tokenizer_config.json", folder / "chat_template.jinja"
        if config_path.is_file() and template_path.is_file():
            config = json.loads(config_path.read_text(encoding="utf-8"))
            if not config.get("chat_template"):
                config["chat_template"] = template_path.read_text(encoding="utf-8")
                config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
        if SPECIAL_TOKENS_MAP not in present:
            write_special_tokens_map(folder)
            present.append(SPECIAL_TOKENS_MAP)
        return present
    logger.warning("no tokenizer files found in %s; the export folder has no tokenizer",
                   [str(d) for d in asset_dirs])
    return []


def copy_tokenizer_dirs(source: Path, folder: Path) -> None:
    """Copy the templates of ``TOKENIZER_DIRS`` (``additional_chat_templates/*.jinja``) from
    ``source`` into ``folder``, as new folders and files (modes follow the umask)."""
    for name in TOKENIZER_DIRS:
        if (Path(source) / name).is_dir():
            (folder / name).mkdir()
            for file in sorted((Path(source) / name).glob("*.jinja")):
                shutil.copyfile(file, folder / name / file.name)


def write_special_tokens_map(folder: Path) -> Path:
    """special_tokens_map.json from ``tokenizer_config.json``'s special tokens (by role, plus
    ``additional_special_tokens``), in transformers 4's layout; ``{}`` without a config."""
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    tokens = {name: config[name] for name in SPECIAL_TOKEN_NAMES if config.get(name) is not None}
    extra = config.get("additional_special_tokens") or config.get("extra_special_tokens")
    if isinstance(extra, list) and extra:
        tokens["additional_special_tokens"] = extra
    path = folder / SPECIAL_TOKENS_MAP
    path.write_text(json.dumps(tokens, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def tokenizer_source(asset_dirs: list[Path]) -> Path | None:
    """The first of ``asset_dirs`` holding tokenizer files (the one :func:`copy_tokenizer`
    copies from), or ``None``."""
    return next((Path(d) for d in asset_dirs
                 if any((Path(d) / name).is_file() for name in TOKENIZER_FILES)), None)


def check_tokenizer_fits(asset_dirs: list[Path], vocab_size: int) -> None:
    """Refuse, before any work, a tokenizer with ids the model has no embedding rows for (the
    runtime's Gather would fail on them).

    Raises:
        ExportError: naming the tokens and the fix.
    """
    source = tokenizer_source(asset_dirs)
    if source is None or not (source / "tokenizer.json").is_file():
        return
    try:
        tokenizer = Tokenizer.from_folder(source)
    except ShadowRuntimeError as error:
        raise ExportError(f"the tokenizer in {source} cannot be read: {error}") from error
    outside = [token_id for token_id, _ in tokenizer.tokens_from(vocab_size)]
    if outside:
        raise ExportError(
            f"the tokenizer in {source} has tokens the model has no embedding for: "
            f"{tokenizer.describe_ids(outside)}; the model takes ids 0-{vocab_size - 1}. Resize "
            "the embeddings (model.resize_token_embeddings(len(tokenizer))) and retrain, or "
            "remove these tokens from the tokenizer, then export again."
        )


def write_model_config(config, folder: Path, *, id2label: dict[int, str] | None,
                       problem_type: str | None = None) -> None:
    """config.json: the detached backbone's HF config (+ id2label/label2id and problem_type
    for classification)."""
    data = config.to_dict()
    data["tie_word_embeddings"] = False  # the export always holds a separate head
    if id2label is not None:
        data["id2label"] = {str(k): v for k, v in sorted(id2label.items())}
        data["label2id"] = {v: int(k) for k, v in sorted(id2label.items())}
        data["num_labels"] = len(id2label)
        data["problem_type"] = problem_type
    (folder / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n",
                                        encoding="utf-8")


def write_generation_config(asset_dirs: list[Path], folder: Path, tokens) -> None:
    """generation_config.json: copied from the source when present, with our token ids."""
    data: dict = {}
    for source in asset_dirs:
        candidate = Path(source) / GENERATION_CONFIG
        if candidate.is_file():
            data = json.loads(candidate.read_text(encoding="utf-8"))
            break
    eos = tokens.eos_token_id
    data.update({"eos_token_id": eos[0] if len(eos) == 1 else eos,
                 "pad_token_id": tokens.pad_token_id, "bos_token_id": tokens.bos_token_id})
    (folder / GENERATION_CONFIG).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n",
                                            encoding="utf-8")


def tool_versions() -> dict[str, str]:
    """Installed versions of shadow_edge and the export toolchain (missing ones left out)."""
    from importlib.metadata import PackageNotFoundError, version

    import shadow_edge

    versions = {"shadow_edge": shadow_edge.__version__}
    for name in ("torch", "transformers", "onnx", "onnxscript", "onnxruntime"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def min_onnxruntime_version(opset: int | None) -> str | None:
    """The oldest onnxruntime that runs an export of ONNX ``opset`` correctly, e.g.
    ``"1.24.1"`` for opset 23 (``runtime.session.MIN_ONNXRUNTIME``, where the measurements
    are); ``None`` when no floor is known."""
    from runtime.session import MIN_ONNXRUNTIME

    found = next((v for first, v in MIN_ONNXRUNTIME if opset is not None and opset >= first), None)
    return ".".join(map(str, found)) if found else None


def genai_config(manifest: Manifest, model_config: dict) -> dict | None:
    """The onnxruntime-genai config (``genai_config.json``) of a causal-LM export, from its
    manifest (sizes, token ids, file name) and the model type and attention head count of
    its ``config.json`` (``model_config``).

    ``past_present_share_buffer`` is false: our ``present.*`` outputs grow with the sequence
    (past + new), they are not genai's preallocated max-length buffers. genai batches must
    be right-padded (its position ids ignore left padding).

    Returns ``None`` for a classifier, or a model type genai does not run
    (:data:`GENAI_MODEL_TYPES`).
    """
    from .spec import TEXT_GENERATION, past_key_names, present_names

    model, tokens = manifest.model, manifest.tokens
    model_type = model_config.get("model_type")
    num_attention_heads = model_config.get("num_attention_heads") or model_config.get("n_head")
    if manifest.task != TEXT_GENERATION or model_type not in GENAI_MODEL_TYPES:
        return None
    # "past_key_values.0.key" -> "past_key_values.%d.key": genai's per-layer name patterns
    past_key, past_value = (n.replace(".0.", ".%d.") for n in past_key_names(1))
    present_key, present_value = (n.replace(".0.", ".%d.") for n in present_names(1))
    eos = tokens.eos_token_id
    context = model.max_position_embeddings
    config = {
        "model": {
            "type": model_type,
            "context_length": context,
            "vocab_size": model.vocab_size,
            "eos_token_id": eos[0] if len(eos) == 1 else eos,
            "pad_token_id": tokens.pad_token_id if tokens.pad_token_id is not None
            else (eos[0] if eos else 0),
            "decoder": {
                "filename": manifest.model_file,
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "head_size": model.head_dim,
                "hidden_size": model.hidden_size,
                "num_attention_heads": int(num_attention_heads),
                "num_hidden_layers": model.num_layers,
                "num_key_value_heads": model.num_key_value_heads,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "position_ids": "position_ids", "past_key_names": past_key,
                           "past_value_names": past_value},
                "outputs": {"logits": "logits", "present_key_names": present_key,
                            "present_value_names": present_value},
            },
        },
        "search": {"do_sample": False, "num_beams": 1, "num_return_sequences": 1,
                   "max_length": context, "min_length": 0, "past_present_share_buffer": False,
                   "temperature": 1.0, "top_k": 1, "top_p": 1.0, "repetition_penalty": 1.0,
                   "length_penalty": 1.0, "early_stopping": True, "no_repeat_ngram_size": 0,
                   "diversity_penalty": 0.0},
    }
    if tokens.bos_token_id is not None:
        config["model"]["bos_token_id"] = tokens.bos_token_id
    return config


def write_genai_config(folder: Path, manifest: Manifest) -> bool:
    """Write :func:`genai_config` of the export in ``folder`` (its ``config.json`` written
    already); ``False`` (nothing written) when there is none for this export."""
    model_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config = genai_config(manifest, model_config)
    if config is None:
        logger.info("no %s: task %s, model type %s", GENAI_CONFIG, manifest.task,
                    model_config.get("model_type"))
        return False
    (folder / GENAI_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return True


def file_table(folder: Path, *, skip: tuple[str, ...] = ()) -> dict[str, FileInfo]:
    """Size and SHA-256 of each file in ``folder`` but ``skip`` (the manifest's ``files``)."""
    return {file.name: FileInfo.of(file)
            for file in sorted(folder.iterdir()) if file.is_file() and file.name not in skip}
