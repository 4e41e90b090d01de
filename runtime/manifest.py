"""The export-folder manifest ``shadow_edge.json`` (format "shadow-edge", format_version 1).

The schema is the one in ``docs/DESIGN.md`` ("Manifest"), defined here once: the exporter
builds a :class:`Manifest` (``exporters.api``) and calls :func:`write_manifest`; the runtime
calls :func:`read_manifest`. The format's shared names (:data:`MANIFEST_NAME`,
:data:`PRECISIONS`, :class:`TensorSpec`, :data:`MIN_OPSET`) live here too, and the exporters
import them.

Compatibility rules:

- ``format`` must be ``"shadow-edge"``.
- A ``format_version`` greater than :data:`FORMAT_VERSION` is refused with
  :class:`~runtime.errors.ManifestVersionError` (the reader is too old).
- Unknown keys (added by later writers of the same version) are kept in ``extra`` so that a
  read/write round trip does not lose them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ManifestVersionError, ModelFolderError
from .validation import MANIFEST_NAME as _MANIFEST_NAME
from .validation import check_file_name as _check_file_name
from .validation import check_int as _check_int
from .validation import check_mapping as _check_mapping
from .validation import check_str as _check_str
from .validation import field_error as _fail

logger = logging.getLogger(__name__)

FORMAT_NAME = "shadow-edge"
FORMAT_VERSION = 1
MANIFEST_NAME = _MANIFEST_NAME
TASKS = ("text-generation", "text-classification")
PRECISIONS = ("fp32", "int8", "int4")
#: Oldest ONNX opset an export may use: the torch.onnx dynamo exporter emits 18 and newer
#: natively (older ones need a lossy version conversion that fails on common ops).
MIN_OPSET = 18
SOURCE_KINDS = ("adapter", "standalone")
#: transformers' ``config.problem_type`` values; they decide how scores come from logits
#: (``runtime.classification.score_function``).
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


def _check_version(version) -> int:
    """``format_version`` as an int >= 1; ManifestVersionError if newer than this reader."""
    version = _check_int(version, "format_version", minimum=1)
    if version > FORMAT_VERSION:
        raise ManifestVersionError(
            f"{MANIFEST_NAME} has format_version {version}, but this runtime reads up to "
            f"{FORMAT_VERSION}. Upgrade shadow-edge (`pip install -U shadow-edge`) or "
            "re-export the model with the installed version."
        )
    return version


def _split_known(cls, data: dict) -> tuple[dict, dict]:
    names = {f.name for f in fields(cls)}
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    return known, extra


@dataclass
class TensorSpec:
    """One ONNX graph input or output: name, element type and shape.

    ``shape`` entries are ints (fixed) or strings (named dynamic axes, e.g. "batch_size");
    any sequence is stored as a list (the JSON form). The exporters' I/O spec
    (``exporters.spec``) describes graphs with this same class.
    """

    name: str
    dtype: str
    shape: list[int | str]

    def __post_init__(self):
        self.shape = list(self.shape)

    @classmethod
    def from_dict(cls, data: dict, path: str = "inputs[]") -> TensorSpec:
        data = _check_mapping(data, path)
        shape = data.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool)) for d in shape
        ):
            raise _fail(f"{path}.shape", f"must be a list of ints or axis names, got {shape!r}")
        return cls(
            name=_check_str(data.get("name"), f"{path}.name"),
            dtype=_check_str(data.get("dtype"), f"{path}.dtype"),
            shape=list(shape),
        )

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass
class ModelInfo:
    """Facts about the detached backbone the runtime needs (sizes for the KV cache, labels).

    ``id2label`` maps int class ids to names (JSON stores the keys as strings).
    ``problem_type`` is the classifier's ``config.problem_type`` (one of
    :data:`PROBLEM_TYPES`, or ``None`` when the config leaves it unset).
    ``num_key_value_heads`` and ``head_dim`` size ``past_key_values.{i}.key/value``.
    """

    architecture: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    max_position_embeddings: int | None = None
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    num_labels: int | None = None
    id2label: dict[int, str] | None = None
    problem_type: str | None = None

    @classmethod
    def from_dict(cls, data: dict, path: str = "model") -> ModelInfo:
        data = _check_mapping(data, path)
        id2label = data.get("id2label")
        if id2label is not None:
            id2label = _check_mapping(id2label, f"{path}.id2label")
            try:
                id2label = {int(k): str(v) for k, v in id2label.items()}
            except ValueError as exc:
                raise _fail(f"{path}.id2label", f"must have integer keys ({exc})") from None
        return cls(
            architecture=_check_str(data.get("architecture"), f"{path}.architecture"),
            num_layers=_check_int(data.get("num_layers"), f"{path}.num_layers", minimum=1),
            hidden_size=_check_int(data.get("hidden_size"), f"{path}.hidden_size", minimum=1),
            vocab_size=_check_int(data.get("vocab_size"), f"{path}.vocab_size", minimum=1),
            max_position_embeddings=_check_int(
                data.get("max_position_embeddings"), f"{path}.max_position_embeddings",
                optional=True, minimum=1,
            ),
            num_key_value_heads=_check_int(
                data.get("num_key_value_heads"), f"{path}.num_key_value_heads",
                optional=True, minimum=1,
            ),
            head_dim=_check_int(data.get("head_dim"), f"{path}.head_dim", optional=True, minimum=1),
            num_labels=_check_int(
                data.get("num_labels"), f"{path}.num_labels", optional=True, minimum=1
            ),
            id2label=id2label,
            problem_type=_check_str(data.get("problem_type"), f"{path}.problem_type",
                                    optional=True, choices=PROBLEM_TYPES),
        )

    def to_dict(self) -> dict:
        return {
            "architecture": self.architecture,
            "num_layers": self.num_layers,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_size": self.hidden_size,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "num_labels": self.num_labels,
            "id2label": (
                None if self.id2label is None
                else {str(k): v for k, v in sorted(self.id2label.items())}
            ),
            "problem_type": self.problem_type,
        }


@dataclass
class TokenInfo:
    """Special token ids. ``eos_token_id`` is always a list (HF allows an int or a list).

    ``tokenizer_vocab_size`` is 1 + the largest token id in ``tokenizer.json`` (None when
    unknown, e.g. exports from before it was recorded); constrained decoding needs it to be
    at most ``model.vocab_size`` (:func:`runtime.grammar.constrained_decoding_status`).
    """

    eos_token_id: list[int] = field(default_factory=list)
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    tokenizer_vocab_size: int | None = None

    @classmethod
    def from_dict(cls, data: dict, path: str = "tokens") -> TokenInfo:
        data = _check_mapping(data, path)
        eos = data.get("eos_token_id")
        if eos is None:
            eos = []
        elif not isinstance(eos, list):
            eos = [eos]
        eos = [_check_int(e, f"{path}.eos_token_id[]", minimum=0) for e in eos]
        return cls(
            eos_token_id=eos,
            pad_token_id=_check_int(
                data.get("pad_token_id"), f"{path}.pad_token_id", optional=True, minimum=0
            ),
            bos_token_id=_check_int(
                data.get("bos_token_id"), f"{path}.bos_token_id", optional=True, minimum=0
            ),
            tokenizer_vocab_size=_check_int(
                data.get("tokenizer_vocab_size"), f"{path}.tokenizer_vocab_size", optional=True,
                minimum=1,
            ),
        )

    def to_dict(self) -> dict:
        return {
            "eos_token_id": list(self.eos_token_id),
            "pad_token_id": self.pad_token_id,
            "bos_token_id": self.bos_token_id,
            "tokenizer_vocab_size": self.tokenizer_vocab_size,
        }


@dataclass
class SourceInfo:
    """Where the model came from: checkpoint path or id, its SHA-256, the base, the kind."""

    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    base: str | None = None
    kind: str | None = None

    @classmethod
    def from_dict(cls, data: dict, path: str = "source") -> SourceInfo:
        data = _check_mapping(data, path)
        return cls(
            checkpoint=_check_str(data.get("checkpoint"), f"{path}.checkpoint", optional=True),
            checkpoint_sha256=_check_str(
                data.get("checkpoint_sha256"), f"{path}.checkpoint_sha256", optional=True
            ),
            base=_check_str(data.get("base"), f"{path}.base", optional=True),
            kind=_check_str(data.get("kind"), f"{path}.kind", optional=True),
        )

    def to_dict(self) -> dict:
        return {
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "base": self.base,
            "kind": self.kind,
        }


@dataclass
class DetachInfo:
    """The detached model's size: parameter count, bytes (fp32) and the fold check's result."""

    parameters: int = 0
    bytes: int = 0
    fold_max_rel_diff: float | None = None

    @classmethod
    def from_dict(cls, data: dict, path: str = "detach") -> DetachInfo:
        data = _check_mapping(data, path)
        diff = data.get("fold_max_rel_diff")
        if diff is not None and (isinstance(diff, bool) or not isinstance(diff, (int, float))):
            raise _fail(f"{path}.fold_max_rel_diff", f"must be a number or null, got {diff!r}")
        return cls(
            parameters=_check_int(data.get("parameters", 0), f"{path}.parameters", minimum=0),
            bytes=_check_int(data.get("bytes", 0), f"{path}.bytes", minimum=0),
            fold_max_rel_diff=None if diff is None else float(diff),
        )

    def to_dict(self) -> dict:
        return {
            "parameters": self.parameters,
            "bytes": self.bytes,
            "fold_max_rel_diff": self.fold_max_rel_diff,
        }


@dataclass
class FileInfo:
    """Size in bytes and SHA-256 (hex) of one file in the folder."""

    bytes: int
    sha256: str

    @classmethod
    def from_dict(cls, data: dict, path: str = "files[]") -> FileInfo:
        data = _check_mapping(data, path)
        return cls(
            bytes=_check_int(data.get("bytes"), f"{path}.bytes", minimum=0),
            sha256=_check_str(data.get("sha256"), f"{path}.sha256"),
        )

    @classmethod
    def of(cls, file: str | os.PathLike) -> FileInfo:
        """Measure ``file``: its size and SHA-256, read in 1 MiB chunks."""
        digest = hashlib.sha256()
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return cls(bytes=os.path.getsize(file), sha256=digest.hexdigest())

    def to_dict(self) -> dict:
        return {"bytes": self.bytes, "sha256": self.sha256}


@dataclass
class Manifest:
    """The whole ``shadow_edge.json``. Field order and meaning follow docs/DESIGN.md.

    ``min_onnxruntime_version`` is the oldest onnxruntime that runs the file's opset
    (for other runtimes; ours checks the opset itself). ``quantization`` describes an
    int8/int4 scheme (``None`` for fp32; an int8 export without it came from
    ``quantize_dynamic``, see ``runtime.cpu``). ``verified_reason`` says why ``verified`` is
    false when the gate was skipped.

    Raises :class:`~runtime.errors.ModelFolderError` on invalid values (the message names
    the field) and :class:`~runtime.errors.ManifestVersionError` for a newer format_version.
    """

    task: str
    model: ModelInfo
    model_file: str = "model.onnx"
    precision: str = "fp32"
    opset: int | None = None
    min_onnxruntime_version: str | None = None
    ort_model_file: str | None = None
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    tokens: TokenInfo = field(default_factory=TokenInfo)
    source: SourceInfo = field(default_factory=SourceInfo)
    detach: DetachInfo = field(default_factory=DetachInfo)
    files: dict[str, FileInfo] = field(default_factory=dict)
    tool_versions: dict[str, str] = field(default_factory=dict)
    verified: bool = False
    parity: dict | None = None
    quantization: dict | None = None
    verified_reason: str | None = None
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _check_str(self.format, "format", choices=(FORMAT_NAME,))
        _check_version(self.format_version)
        _check_str(self.task, "task", choices=TASKS)
        _check_str(self.precision, "precision", choices=PRECISIONS)
        _check_file_name(self.model_file, "model_file")
        _check_file_name(self.ort_model_file, "ort_model_file", optional=True)
        for name in self.files:
            _check_file_name(name, f"files[{name!r}]")
        _check_int(self.opset, "opset", optional=True, minimum=1)
        _check_str(self.min_onnxruntime_version, "min_onnxruntime_version", optional=True)
        _check_str(self.verified_reason, "verified_reason", optional=True)
        if self.quantization is not None:
            _check_mapping(self.quantization, "quantization")
        if not isinstance(self.verified, bool):
            raise _fail("verified", f"must be true or false, got {self.verified!r}")
        if self.task == "text-generation":
            for name in ("num_key_value_heads", "head_dim"):
                if getattr(self.model, name) is None:
                    raise _fail(f"model.{name}", "is required for task 'text-generation'")
        else:
            if self.model.num_labels is None:
                raise _fail("model.num_labels", "is required for task 'text-classification'")
            if self.model.id2label is not None and len(self.model.id2label) != self.model.num_labels:
                raise _fail(
                    "model.id2label",
                    f"has {len(self.model.id2label)} labels but num_labels is "
                    f"{self.model.num_labels}",
                )

    @property
    def is_generation(self) -> bool:
        return self.task == "text-generation"

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        """Validate and convert parsed JSON. Unknown top-level keys go to ``extra``."""
        data = _check_mapping(data, "<root>")
        fmt = data.get("format")
        if fmt != FORMAT_NAME:
            raise ModelFolderError(
                f"{MANIFEST_NAME}: 'format' is {fmt!r}, expected {FORMAT_NAME!r}; this is not a "
                "shadow-edge manifest. Point to a folder written by `shadow-edge export`."
            )
        # check before anything else: newer schemas may differ
        version = _check_version(data.get("format_version"))
        known, extra = _split_known(cls, data)
        known.pop("extra", None)
        if extra:
            logger.debug("manifest: keeping unknown keys %s", sorted(extra))
        if "model" not in known or "task" not in known:
            missing = [k for k in ("task", "model") if k not in known]
            raise _fail(missing[0], "is missing")
        files = _check_mapping(known.get("files") or {}, "files")
        tool_versions = _check_mapping(known.get("tool_versions") or {}, "tool_versions")
        parity = known.get("parity")
        if parity is not None:
            parity = _check_mapping(parity, "parity")
        return cls(
            task=known["task"],
            model=ModelInfo.from_dict(known["model"]),
            model_file=known.get("model_file", "model.onnx"),
            precision=known.get("precision", "fp32"),
            opset=known.get("opset"),
            min_onnxruntime_version=known.get("min_onnxruntime_version"),
            ort_model_file=known.get("ort_model_file"),
            inputs=[
                TensorSpec.from_dict(t, f"inputs[{i}]")
                for i, t in enumerate(known.get("inputs") or [])
            ],
            outputs=[
                TensorSpec.from_dict(t, f"outputs[{i}]")
                for i, t in enumerate(known.get("outputs") or [])
            ],
            tokens=TokenInfo.from_dict(known.get("tokens") or {}),
            source=SourceInfo.from_dict(known.get("source") or {}),
            detach=DetachInfo.from_dict(known.get("detach") or {}),
            files={name: FileInfo.from_dict(v, f"files[{name!r}]") for name, v in files.items()},
            tool_versions={str(k): str(v) for k, v in tool_versions.items()},
            verified=known.get("verified", False),
            parity=parity,
            quantization=known.get("quantization"),
            verified_reason=known.get("verified_reason"),
            format=fmt,
            format_version=version,
            extra=extra,
        )

    def to_dict(self) -> dict:
        """JSON-ready dict in the documented key order (unknown ``extra`` keys last);
        ``verified_reason`` only when set."""
        out = {
            "format": self.format,
            "format_version": self.format_version,
            "task": self.task,
            "model_file": self.model_file,
            "ort_model_file": self.ort_model_file,
            "precision": self.precision,
            "opset": self.opset,
            "min_onnxruntime_version": self.min_onnxruntime_version,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "model": self.model.to_dict(),
            "tokens": self.tokens.to_dict(),
            "source": self.source.to_dict(),
            "detach": self.detach.to_dict(),
            "files": {name: info.to_dict() for name, info in sorted(self.files.items())},
            "tool_versions": dict(sorted(self.tool_versions.items())),
            "verified": self.verified,
            "parity": self.parity,
            "quantization": self.quantization,
        }
        if self.verified_reason is not None:
            out["verified_reason"] = self.verified_reason
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """Read and validate ``folder/shadow_edge.json``.

    Raises:
        ModelFolderError: the folder or the manifest is missing, not JSON, or invalid.
        ManifestVersionError: written by a newer shadow-edge (format_version too high).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(
            f"model folder {str(folder)!r} does not exist or is not a folder. Pass the folder "
            "written by `shadow-edge export` (it holds model.onnx and shadow_edge.json)."
        )
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ModelFolderError(
            f"{str(folder)!r} has no {MANIFEST_NAME}, so it is not a shadow-edge export folder. "
            "Export the checkpoint with `shadow-edge export CKPT -o FOLDER` and load FOLDER."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFolderError(
            f"{str(path)!r} is not valid JSON or cannot be read ({exc}); the folder is corrupt. "
            "Fix its permissions, or re-export the model with `shadow-edge export`."
        ) from None
    return Manifest.from_dict(data)


def write_manifest(
    folder: str | os.PathLike, manifest: Manifest, *, overwrite: bool = False
) -> Path:
    """Write ``manifest`` to ``folder/shadow_edge.json`` atomically (temp file + rename).

    Returns the path written. Raises ModelFolderError if the folder is missing, or if a
    manifest exists there and ``overwrite`` is false.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(
            f"cannot write {MANIFEST_NAME}: folder {str(folder)!r} does not exist. Create it first."
        )
    path = folder / MANIFEST_NAME
    if path.exists() and not overwrite:
        raise ModelFolderError(
            f"{str(path)!r} already exists. Pass overwrite=True to replace it."
        )
    text = json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n"
    # an ordinary new file (mode 0666 minus the umask), not mkstemp's private 0600
    tmp = folder / f".shadow_edge.{os.getpid()}.{secrets.token_hex(4)}.json.tmp"
    try:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return path


def check_files(folder: str | os.PathLike, manifest: Manifest, *, hashes: bool = False) -> None:
    """Check that every file listed in ``manifest.files`` exists with the recorded size.

    With ``hashes=True`` also compare SHA-256 (reads every byte; slow for large models), and
    require the model file to be listed (else there is nothing to verify it against).
    Raises ModelFolderError naming the first file that is missing, truncated or changed.
    """
    folder = Path(folder)
    if hashes and manifest.model_file not in manifest.files:
        raise ModelFolderError(
            f"cannot verify {manifest.model_file!r}: {MANIFEST_NAME} in {str(folder)!r} records "
            "no size or SHA-256 for it. Re-export the model, or load without verify_hashes."
        )
    for name, info in manifest.files.items():
        path = folder / name
        if not path.is_file():
            raise ModelFolderError(
                f"{str(folder)!r} is missing {name!r}, listed in {MANIFEST_NAME}. The folder is "
                "incomplete: copy it again or re-export the model."
            )
        size = path.stat().st_size
        if size != info.bytes:
            raise ModelFolderError(
                f"{name!r} in {str(folder)!r} has {size} bytes, but {MANIFEST_NAME} records "
                f"{info.bytes}. The file is truncated or changed: copy it again or re-export."
            )
        if hashes and FileInfo.of(path).sha256 != info.sha256:
            raise ModelFolderError(
                f"{name!r} in {str(folder)!r} does not match its SHA-256 in {MANIFEST_NAME}. "
                "The file is corrupt or changed: copy it again or re-export."
            )
