"""shadow-edge exporters: detach a shadow, export it to ONNX, quantize, verify and package.

Public API (plain functions; the CLI calls them)::

    from exporters import export
    result = export("ckpt/", "out/", precision="int8")   # -> ExportResult

Submodules, named for their concept: ``spec`` (what: I/O per task/architecture),
``sources`` (recognise a checkpoint), ``detached`` (the shadow-only torch model),
``detaching`` (build + fold: :func:`detach`), ``onnx`` (how: torch.onnx dynamo export),
``quantization`` (:func:`quantize`, :func:`convert_to_ort`), ``parity`` (the parity report
and gate: :func:`~exporters.parity.check_parity`), ``package`` (atomic folder + manifest),
``api`` (the pipeline: :func:`export`, :func:`verify`), ``errors`` (``ExportError``,
``ParityError``), ``testing`` (tiny exports).
Importing this package imports torch.
"""

from __future__ import annotations

from .api import STAGES, ExportResult, export, export_onnx, load, quantize_export, verify
from .detached import DetachedShadow
from .detaching import Detached, detach, fold
from .errors import ExportError, ParityError
from .parity import QUANTIZED_THRESHOLDS, ParityCheck, ParityReport, check_parity
from .quantization import convert_to_ort, quantize

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
    "load",
    "quantize",
    "quantize_export",
    "verify",
]
