"""shadow-edge exporters: detach a shadow, export it to ONNX, quantize, verify and package.

Public API (plain functions; the CLI calls them)::

    from exporters import export
    result = export("ckpt/", "out/", precision="int8")   # -> ExportResult

Submodules: ``spec`` (what: I/O per task/architecture), ``detach`` (build + fold),
``onnx`` (how: torch.onnx dynamo export), ``quantize``, ``verify`` (parity gate),
``package`` (atomic folder + manifest), ``api`` (the pipeline), ``testing`` (tiny exports).

The functions ``quantize``, ``verify`` and ``detach`` share their names with submodules; the
package attribute is the function (import submodule contents with
``from exporters.quantize import convert_to_ort``). Importing this package imports torch.
"""

from __future__ import annotations

from .api import (
    STAGES,
    ExportResult,
    export,
    export_onnx,
    load,
    quantize,
    quantize_export,
    verify,
)
from .detach import Detached, detach, fold
from .detached import DetachedShadow
from .quantize import convert_to_ort
from .verify import QUANTIZED_THRESHOLDS, ParityCheck, ParityReport

# Re-bind the function names after the submodules of the same name were imported.
from .api import quantize, verify  # noqa: F811  isort: skip
from .detach import detach  # noqa: F811  isort: skip

__all__ = [
    "QUANTIZED_THRESHOLDS",
    "STAGES",
    "Detached",
    "DetachedShadow",
    "ExportResult",
    "ParityCheck",
    "ParityReport",
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
