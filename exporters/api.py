"""The export pipeline as plain functions (the CLI calls these).

``export`` runs the stages load -> fold -> export -> quantize -> verify -> write and reports
each to the optional ``progress(stage, info)`` callback. Everything is written into a
temporary sibling of the output folder and renamed into place only after the parity gate
passed; any failure leaves neither the output nor the temporary folder behind.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import ShadowRuntimeError
from runtime.grammar import count_token_ids
from runtime.manifest import (
    MANIFEST_NAME,
    MIN_OPSET,
    PRECISIONS,
    DetachInfo,
    Manifest,
    ModelInfo,
    SourceInfo,
    TokenInfo,
    read_manifest,
    write_manifest,
)
from runtime.parity import REFERENCE_FILE, ParityReference, verify_folder
from runtime.session import check_onnxruntime_version
from runtime.tokenizer import Tokenizer
from shadow_edge.errors import ConfigError

from . import onnx as onnx_export
from . import package, sources
from .errors import ExportError, ParityError
from .folding import Detached, detach, notify
from .memory import collect, release_source, release_weights
from .parity import ParityReport, build_reference, gate, stored_probe_ids
from .probes import read_calibration_text
from .quantization import (
    INT8_MIN_ONNXRUNTIME,
    convert_to_ort,
    model_opset,
    quantization_record,
    quantize,
)
from .spec import DEFAULT_OPSET, TEXT_GENERATION, architecture_spec

logger = logging.getLogger(__name__)

Progress = Callable[[str, dict], None]
STAGES = ("load", "fold", "export", "quantize", "verify", "write")
MODEL_FILE = onnx_export.MODEL_FILE
#: Files of the folder that the manifest's ``files`` table does not list (docs/DESIGN.md).
UNLISTED_FILES = (MANIFEST_NAME, REFERENCE_FILE)


@dataclass
class ExportResult:
    """What :func:`export` produced: the folder (absolute), the
    :class:`~runtime.manifest.Manifest` written into it (equal to
    ``runtime.manifest.read_manifest(output_dir)``) and the parity report (``None`` with
    ``verify=False``). ``files`` maps every file name in the folder to its size in bytes."""

    output_dir: Path
    manifest: Manifest
    parity: ParityReport | None
    files: dict[str, int] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.output_dir / MODEL_FILE


def load_checkpoint(checkpoint, *, base=None, task: str | None = None,
                    trust_remote_code: bool = False,
                    progress: Progress | None = None) -> Detached:
    """Load a *checkpoint* and fold it: the ``load`` and ``fold`` stages of :func:`export`
    (:func:`exporters.folding.detach`). ``runtime.load`` is the other side: it loads an
    *export folder*."""
    return detach(checkpoint, base=base, task=task, trust_remote_code=trust_remote_code,
                  progress=progress)


def export_onnx(checkpoint, output_path, *, base=None, task: str | None = None,
                opset: int | None = None, external_data: bool | None = None,
                trust_remote_code: bool = False) -> onnx_export.OnnxExport:
    """Detach ``checkpoint`` and write one fp32 ONNX file (no folder, no gate).

    ``checkpoint`` is anything :func:`exporters.folding.detach` accepts, or a
    :class:`~exporters.folding.Detached`.

    Raises:
        ConfigError: ``opset`` below :data:`runtime.manifest.MIN_OPSET`.
        CheckpointError / ExportError: as :func:`export`.
    """
    check_export_options(precision="fp32", opset=opset, verify=False)
    detached = checkpoint if isinstance(checkpoint, Detached) else load_checkpoint(
        checkpoint, base=base, task=task, trust_remote_code=trust_remote_code)
    return onnx_export.export_onnx(detached.model, output_path, opset=opset,
                                   external_data=external_data)


def _special_ids(detached: Detached) -> tuple:
    tokens = detached.tokens
    return tuple(i for i in (*tokens.eos_token_id, tokens.pad_token_id, tokens.bos_token_id)
                 if i is not None)


def _tokenizer(folders) -> Tokenizer | None:
    """The tokenizer of the first folder in ``folders`` with a ``tokenizer.json``."""
    for folder in folders:
        if (Path(folder) / "tokenizer.json").is_file():
            return Tokenizer.from_folder(folder)
    return None


def _calibration(calibration_text: str | Path | None) -> str | None:
    """The calibration text: ``Path`` -> the file's text, ``str`` -> itself."""
    if isinstance(calibration_text, Path):
        return read_calibration_text(calibration_text)
    if calibration_text is not None and not calibration_text.strip():
        raise ConfigError("calibration_text is empty; pass text from your domain (or a Path)")
    return calibration_text


def _raise_if_failed(report: ParityReport, what: str) -> ParityReport:
    if not report.passed:
        failed = ", ".join(c.name for c in report.failures())
        raise ParityError(f"the {report.precision} export does not match {what} ({failed}): "
                          f"{report.summary()}. Re-export it, or try a higher precision",
                          report.to_dict())
    return report


def verify(onnx_path, checkpoint=None, *, precision: str | None = None, base=None,
           task: str | None = None, raise_on_failure: bool = True,
           trust_remote_code: bool = False) -> ParityReport:
    """Re-run the parity gate on this machine.

    ``onnx_path`` is an export folder (task and precision from its manifest) or a ``.onnx``
    file. Without ``checkpoint`` the folder's stored torch reference is used (no torch run;
    :func:`runtime.parity.verify_folder`). With ``checkpoint`` (path, model or
    :class:`Detached`) the reference is recomputed in torch on the stored probe ids (or on
    fresh probes for a ``.onnx`` file or a folder without a reference).

    Raises:
        ParityError: a check failed and ``raise_on_failure`` (``error.report`` has details).
        ConfigError: the checkpoint records another task than the export folder's; a
            :class:`Detached` whose source model an export already let go.
        runtime ``ModelFolderError``: unreadable folder, or no stored reference (without
            ``checkpoint``).
        CheckpointError: unreadable checkpoint.
    """
    path = Path(onnx_path)
    if checkpoint is None:
        if not path.is_dir():
            raise ConfigError(f"{path} is not an export folder; pass the folder, or a "
                              "checkpoint to compare the .onnx file with")
        report = verify_folder(path)
        return _raise_if_failed(report, "its stored torch reference") if raise_on_failure \
            else report
    probes, folders = None, [path.parent]
    if path.is_dir():
        manifest = read_manifest(path)
        recorded = (sources.recorded_task_of(checkpoint, base)
                    if isinstance(checkpoint, (str, Path)) and Path(checkpoint).is_dir() else None)
        if recorded is not None and recorded != manifest.task:
            raise ConfigError(
                f"{path} is a {manifest.task} export, but {checkpoint} is a {recorded} "
                "checkpoint; pass the checkpoint the folder was exported from"
            )
        if (path / REFERENCE_FILE).is_file():
            probes = stored_probe_ids(ParityReference.load(path / REFERENCE_FILE))
        folders = [path]
        path = path / manifest.model_file
        precision = precision or manifest.precision
        task = task or manifest.task
    detached = checkpoint if isinstance(checkpoint, Detached) else load_checkpoint(
        checkpoint, base=base, task=task, trust_remote_code=trust_remote_code)
    reference = _reference(detached, precision or "fp32", probes=probes,
                           tokenizer_dirs=folders + list(detached.asset_dirs))
    return gate(path, reference, raise_on_failure=raise_on_failure)


def _reference(detached: Detached, precision: str, *, calibration_text: str | None = None,
               probes=None, tokenizer_dirs=None) -> ParityReference:
    if detached.reference is None:
        raise ConfigError("this Detached no longer holds its source model (an export let it "
                          "go to save memory); load the checkpoint again with "
                          "exporters.load_checkpoint")
    dirs = detached.asset_dirs if tokenizer_dirs is None else tokenizer_dirs
    config = detached.model.config
    return build_reference(
        detached.reference, task=detached.task, precision=precision,
        vocab_size=int(config.vocab_size),
        pad_token_id=detached.tokens.pad_token_id, special_ids=_special_ids(detached),
        tokenizer=_tokenizer(dirs) if probes is None else None,
        calibration_text=calibration_text, probes=probes,
        sliding_window=architecture_spec(config).attention_window(config),
        token_type_ids=bool(getattr(detached.model, "token_type_ids", False)),
    )


def _embedding_rows(detached: Detached) -> int:
    """Ids the exported graph takes: the input embedding's rows (and the vocabulary)."""
    rows = detached.model.backbone.get_input_embeddings().num_embeddings
    return min(int(rows), detached.model.dims().vocab_size)


def _check(path: Path, reference: ParityReference) -> ParityReport:
    """The export-time gate: store ``reference`` next to ``path`` and check ``path``."""
    stored = reference.save(path.parent / REFERENCE_FILE)
    report = gate(path, reference)
    report.reference = reference.summary(REFERENCE_FILE, stored.stat().st_size,
                                         package.sha256_file(stored))
    return report


def _tokenizer_ids(folder: Path) -> int | None:
    """1 + the largest id in the copied tokenizer.json (constrained decoding needs every id
    to have a logit), or None without a readable one."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        return count_token_ids(path)
    except ValueError as error:
        logger.warning("%s; the manifest records no tokenizer_vocab_size", error)
        return None


def min_onnxruntime(precision: str, opset: int | None) -> str | None:
    """The manifest's ``min_onnxruntime_version``: the opset's floor
    (:func:`package.min_onnxruntime_version`), raised for int8's 8-bit embedding gather."""
    floor = package.min_onnxruntime_version(opset)
    if precision != "int8":
        return floor
    needed = ".".join(map(str, INT8_MIN_ONNXRUNTIME))
    if floor is None:
        return needed
    as_tuple = tuple(int(part) for part in floor.split("."))
    return floor if as_tuple >= INT8_MIN_ONNXRUNTIME else needed


def _manifest(detached: Detached, exported: onnx_export.OnnxExport, *, precision: str,
              ort_file: str | None, folder: Path, parity: ParityReport | None,
              no_verify_reason: str | None, keep_embeddings: bool = False) -> Manifest:
    """The export's :class:`~runtime.manifest.Manifest` (schema: docs/DESIGN.md), built from
    the detached model and the files in ``folder``; the one place the manifest is made.

    Raises:
        ExportError: a value breaks the schema (a bug: the message names the field).
    """
    dims = detached.model.dims()
    id2label = detached.model.id2label
    opset = model_opset(folder / MODEL_FILE)  # int4 raises it (quantization.py)
    try:
        return Manifest(
            task=detached.task,
            model_file=MODEL_FILE,
            ort_model_file=ort_file,
            precision=precision,
            opset=opset,
            # what other runtimes (optimum, onnxruntime-genai) need too; README "Runtimes"
            min_onnxruntime_version=min_onnxruntime(precision, opset),
            inputs=list(exported.inputs),
            outputs=list(exported.outputs),
            model=ModelInfo(
                architecture=dims.architecture, num_layers=dims.num_layers,
                num_key_value_heads=dims.num_key_value_heads, head_dim=dims.head_dim,
                hidden_size=dims.hidden_size, vocab_size=dims.vocab_size,
                max_position_embeddings=dims.max_position_embeddings,
                num_labels=dims.num_labels,
                id2label={int(k): str(v) for k, v in sorted(id2label.items())} if id2label
                else None,
                problem_type=detached.model.problem_type,
            ),
            tokens=TokenInfo(eos_token_id=list(detached.tokens.eos_token_id),
                             pad_token_id=detached.tokens.pad_token_id,
                             bos_token_id=detached.tokens.bos_token_id,
                             tokenizer_vocab_size=_tokenizer_ids(folder)),
            source=SourceInfo(checkpoint=detached.checkpoint,
                              checkpoint_sha256=package.checkpoint_sha256(detached.checkpoint),
                              base=detached.base, kind=detached.kind),
            detach=DetachInfo(parameters=detached.parameters, bytes=detached.bytes,
                              fold_max_rel_diff=detached.fold_max_rel_diff),
            files=package.file_table(folder, skip=UNLISTED_FILES),
            tool_versions=package.tool_versions(),
            verified=parity is not None and parity.passed,
            parity=parity.to_dict() if parity is not None else None,
            quantization=quantization_record(precision, keep_embeddings),
            verified_reason=no_verify_reason,
        )
    except ShadowRuntimeError as error:
        raise ExportError(f"the manifest is invalid: {error}") from error


def _write_manifest(folder: Path, manifest: Manifest) -> Manifest:
    """Write the onnxruntime-genai config (when the export has one) and ``manifest`` into
    ``folder``; returns the manifest with ``files`` re-measured when the genai config was added."""
    if package.write_genai_config(folder, manifest):
        manifest = dataclasses.replace(manifest,
                                       files=package.file_table(folder, skip=UNLISTED_FILES))
    write_manifest(folder, manifest)
    return manifest


def check_export_options(*, precision: str, int4_keep_embeddings: bool = False,
                         opset: int | None = None, verify: bool = True,
                         calibration_text: str | Path | None = None) -> None:
    """Validate the user's export options before any work (what :func:`export` calls first;
    the CLI passes its flags through unchecked).

    Raises:
        ConfigError: an unknown precision, ``int4_keep_embeddings`` without int4, an opset
            below :data:`runtime.manifest.MIN_OPSET`, or calibration text with
            ``verify=False``.
        runtime.errors.OnnxRuntimeVersionError: ``verify`` with an onnxruntime too old for
            ``opset``.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    if int4_keep_embeddings and precision != "int4":
        raise ConfigError("--int4-keep-embeddings (int4_keep_embeddings=True) only applies to "
                          "--int4 (precision='int4'). Add --int4 or drop it.")
    if opset is not None and opset < MIN_OPSET:
        raise ConfigError(f"opset {opset} is too old for the torch dynamo exporter; use "
                          f"--opset {MIN_OPSET} or newer")
    if verify:  # an old onnxruntime would fail the parity gate with wrong numbers, late
        check_onnxruntime_version(opset or DEFAULT_OPSET)
    elif calibration_text is not None:
        raise ConfigError("--calibration-text feeds the parity gate, which --no-verify skips; "
                          "drop one of them")


def export(checkpoint, output_dir, *, base=None, task: str | None = None,
           precision: str = "fp32", int4_keep_embeddings: bool = False, ort: bool = False,
           opset: int | None = None, force: bool = False, verify: bool = True,
           progress: Progress | None = None, external_data: bool | None = None,
           trust_remote_code: bool = False,
           calibration_text: str | Path | None = None) -> ExportResult:
    """Detach, export, quantize, verify and package ``checkpoint`` into ``output_dir``.

    Args:
        checkpoint: ShadowPEFT adapter folder (ours or shadow-peft 0.1.x), HF peft SHADOW
            adapter or ``unload_shadow()`` folder, HF model folder (incl. the projected LM),
            or an in-memory ShadowFor* / HF model.
        output_dir: the export folder to create (layout: docs/DESIGN.md).
        base: base model path/id or model, for adapters (ours, shadow-peft's or HF peft's)
            that do not record theirs; any other source refuses it (ConfigError).
        task: ``"text-generation"`` or ``"text-classification"``; default: inferred from what
            the checkpoint holds (:func:`exporters.sources.recorded_task_of`). It overrides
            only a guess; a checkpoint that says otherwise is a ConfigError.
        precision: ``"fp32"``, ``"int8"`` or ``"int4"``.
        int4_keep_embeddings: keep the embedding table in fp32 for int4.
        ort: also write ``model.ort`` + ``model.required_operators.config``.
        opset: ONNX opset (default 23, :data:`exporters.spec.DEFAULT_OPSET`).
        force: replace an existing ``output_dir`` (atomically).
        verify: run the parity gate (``False``: manifest says ``verified: false`` and why).
        progress: ``callback(stage, info)`` for stages load/fold/export/quantize/verify/write
            (the gate's torch reference logits are computed at the end of ``fold``, before
            the source model is let go; ``verify`` runs the ONNX side).
        external_data: force (True) / forbid (False) ``model.onnx.data``; default by size.
        calibration_text: text from your domain that the parity gate also probes (a ``str``
            is the text, a ``Path`` a UTF-8 file), next to the built-in English sample and
            random ids (exporters/README.md, "Parity gate"). The weight-only int8/int4
            schemes need no calibration of their own.

    Raises:
        ConfigError: bad precision/task/option combination; unreadable calibration text.
        CheckpointError: the checkpoint or base cannot be loaded.
        OutputExistsError: ``output_dir`` exists and ``force`` is false (an ExportError and
            a ConfigError: a usage error for the CLI).
        ExportError: the output is not writable; export failed.
        ParityError: the parity gate failed (nothing is written).
        runtime.errors.OnnxRuntimeVersionError: ``verify`` with an onnxruntime too old for
            ``opset`` (upgrade it, or pass ``opset=18``).
    """
    check_export_options(precision=precision, int4_keep_embeddings=int4_keep_embeddings,
                         opset=opset, verify=verify, calibration_text=calibration_text)
    calibration = _calibration(calibration_text)
    output = Path(output_dir).absolute()
    # staged_output refuses an existing output (without force) before any work is done
    with package.staged_output(output, force=force) as staging:
        detached = load_checkpoint(checkpoint, base=base, task=task,
                                   trust_remote_code=trust_remote_code, progress=progress)
        package.check_tokenizer_fits(detached.asset_dirs, _embedding_rows(detached))
        # the gate's torch logits first: then the source model (for an adapter, the whole
        # base) can be let go before the graph exists (memory.py)
        reference = (_reference(detached, precision, calibration_text=calibration)
                     if verify else None)
        release_source(detached)
        work = staging / ".work"
        fp32_dir = staging if precision == "fp32" else work
        notify(progress, "export", opset=opset, external_data=external_data)
        exported = onnx_export.export_onnx(detached.model, fp32_dir / MODEL_FILE, opset=opset,
                                           external_data=external_data)
        release_weights(detached.model)  # the file has them; config and sizes stay
        if precision != "fp32":
            notify(progress, "quantize", precision=precision,
                   keep_embeddings=int4_keep_embeddings)
            quantize(exported.path, staging / MODEL_FILE, precision,
                     keep_embeddings=int4_keep_embeddings, external_data=exported.external_data)
            shutil.rmtree(work)
        parity = None
        if verify:
            notify(progress, "verify", precision=precision)
            parity = _check(staging / MODEL_FILE, reference)
        notify(progress, "write", output_dir=str(output), ort=ort)
        ort_file = None
        if ort:
            ort_file = convert_to_ort(staging / MODEL_FILE)[0].name
        package.write_model_config(detached.model.config, staging,
                                   id2label=detached.model.id2label,
                                   problem_type=detached.model.problem_type)
        if detached.task == TEXT_GENERATION:
            package.write_generation_config(detached.asset_dirs, staging, detached.tokens)
        package.copy_tokenizer(detached.asset_dirs, staging)
        manifest = _write_manifest(staging, _manifest(
            detached, exported, precision=precision, ort_file=ort_file, folder=staging,
            parity=parity, keep_embeddings=int4_keep_embeddings,
            no_verify_reason=None if verify else
            "exported with --no-verify: the parity gate was skipped"))
        files = {f.name: f.stat().st_size for f in sorted(staging.iterdir()) if f.is_file()}
    logger.info("export written to %s", output)
    return ExportResult(output_dir=output, manifest=manifest, parity=parity, files=files)


def quantize_export(export_dir, output_dir, precision: str, *, keep_embeddings: bool = False,
                    checkpoint=None, base=None, force: bool = False,
                    trust_remote_code: bool = False,
                    calibration_text: str | Path | None = None) -> ExportResult:
    """Quantize an existing fp32 export folder into a new folder (no torch export needed).

    The side files are copied, ``model.onnx`` is replaced by its ``precision`` version and
    the manifest is updated. With ``checkpoint`` (the export's source) the parity gate runs
    (probing ``calibration_text`` too, as in :func:`export`) and its reference is stored;
    without it the manifest says ``verified: false`` and why.

    Raises:
        ConfigError: the folder is not an fp32 export, or a bad precision; a
            :class:`Detached` ``checkpoint`` whose source model an export already let go.
        ExportError / ParityError: as :func:`export`.
    """
    source = Path(export_dir)
    manifest = read_manifest(source)
    if manifest.precision != "fp32" or manifest.ort_model_file:
        raise ConfigError(f"{source} is a {manifest.precision} export; quantize_export needs "
                          "a plain fp32 export folder (re-export with precision='fp32')")
    if calibration_text is not None and checkpoint is None:
        raise ConfigError("calibration_text feeds the parity gate, which needs checkpoint=")
    check_export_options(precision=precision, int4_keep_embeddings=keep_embeddings,
                         opset=manifest.opset, verify=checkpoint is not None,
                         calibration_text=calibration_text)
    calibration = _calibration(calibration_text)
    output = Path(output_dir).absolute()
    with package.staged_output(output, force=force) as staging:
        reference = None
        if checkpoint is not None:
            detached = checkpoint if isinstance(checkpoint, Detached) else load_checkpoint(
                checkpoint, base=base, task=manifest.task, trust_remote_code=trust_remote_code)
            reference = _reference(detached, precision, calibration_text=calibration)
            del detached  # the torch model is not needed past its reference logits
            collect()
        for file in source.iterdir():
            if file.is_file() and file.name not in (*UNLISTED_FILES, MODEL_FILE,
                                                    MODEL_FILE + ".data"):
                shutil.copyfile(file, staging / file.name)
        package.copy_tokenizer_dirs(source, staging)
        quantize(source / MODEL_FILE, staging / MODEL_FILE, precision,
                 keep_embeddings=keep_embeddings,
                 external_data=(source / (MODEL_FILE + ".data")).exists())
        parity = _check(staging / MODEL_FILE, reference) if reference is not None else None
        opset = model_opset(staging / MODEL_FILE)
        try:
            manifest = dataclasses.replace(
                manifest, precision=precision, opset=opset,
                min_onnxruntime_version=min_onnxruntime(precision, opset),
                quantization=quantization_record(precision, keep_embeddings),
                verified=parity is not None and parity.passed,
                parity=parity.to_dict() if parity is not None else None,
                verified_reason=None if parity is not None else (
                    f"quantized from the fp32 export {source} without a torch reference; "
                    "run `shadow-edge verify`"),
                files=package.file_table(staging, skip=UNLISTED_FILES))
        except ShadowRuntimeError as error:
            raise ExportError(f"the manifest is invalid: {error}") from error
        # the genai config is written here also for fp32 folders from before it
        manifest = _write_manifest(staging, manifest)
        files = {f.name: f.stat().st_size for f in sorted(staging.iterdir()) if f.is_file()}
    return ExportResult(output_dir=output, manifest=manifest, parity=parity, files=files)
