"""shadow-edge exporters: detach a shadow, export it to ONNX, quantize, verify and package.

Public API (plain functions; the CLI calls them)::

    from exporters import export
    result = export("ckpt/", "out/", precision="int8")   # -> ExportResult
    result.manifest                                      # the runtime.manifest.Manifest written

Submodules, named for their concept: ``spec`` (what: I/O per task/architecture),
``sources`` (recognise a checkpoint), ``shadow_module`` (:class:`DetachedShadow`, the
shadow-only torch module), ``folding`` (load + fold: :func:`detach`, :func:`fold`),
``onnx`` (how: torch.onnx dynamo export), ``quantization`` (:func:`quantize`,
:func:`convert_to_ort`), ``parity`` (the parity report and gate:
:func:`~exporters.parity.check_parity`), ``verify_session`` (the gate's onnxruntime
drivers), ``package`` (atomic folder, side files), ``api`` (the pipeline: :func:`export`,
:func:`verify`, :func:`load_checkpoint`), ``testing`` (tiny exports).
:func:`load_checkpoint` reads a *checkpoint* (``runtime.load`` reads an *export folder*).
Importing this package imports torch.
"""

from __future__ import annotations

from .api import (
    STAGES,
    ExportResult,
    export,
    export_onnx,
    load_checkpoint,
    quantize_export,
    verify,
)
from .errors import ExportError, ParityError
from .folding import Detached, detach, fold
from .parity import QUANTIZED_THRESHOLDS, ParityCheck, ParityReport, check_parity
from .quantization import convert_to_ort, quantize
from .shadow_module import DetachedShadow

__all__ = [
    "QUANTIZED_THRESHOLDS",
    "STAGES",
    "Detached",
    "DetachedShadow",
    "ExportError",
    "ExportResult",
    "ParityCheck",
    "ParityError",
    "ParityReport",
    "check_parity",
    "convert_to_ort",
    "detach",
    "export",
    "export_onnx",
    "fold",
    "load_checkpoint",
    "quantize",
    "quantize_export",
    "verify",
]
