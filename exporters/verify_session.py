"""The verifier's private onnxruntime driver: sessions for the exporter's own checks (e.g.
that an ``.ort`` file loads). Not the product runtime: apps run exports with ``runtime``.

The probe drivers the parity gate runs (:class:`OnnxCausalLM`, :class:`OnnxClassifier`)
live in ``runtime/onnx_probe.py`` so the gate also runs on devices without torch; they are
re-exported here with ``positions`` (``cumsum(mask) - 1``, DESIGN.md).
"""

from __future__ import annotations

from pathlib import Path

from runtime.generation import positions_from_mask as positions
from runtime.onnx_probe import OnnxCausalLM, OnnxClassifier

from .errors import ExportError

__all__ = ["OnnxCausalLM", "OnnxClassifier", "ort_errors", "positions", "session"]


def ort_errors() -> tuple[type[BaseException], ...]:
    """The exceptions onnxruntime raises for a model it cannot load or run. Its pybind error
    types (``InvalidArgument``, ``Fail``, ...) do not derive from ``RuntimeError``."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return (RuntimeError, ValueError, state.Fail, state.InvalidArgument, state.InvalidGraph,
            state.InvalidProtobuf, state.NoSuchFile, state.NotImplemented,
            state.RuntimeException)


def session(path: str | Path):
    """An onnxruntime CPU session, one thread (deterministic and friendly to shared CPUs).

    Raises:
        ExportError: onnxruntime cannot load the file.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except ort_errors() as error:
        raise ExportError(f"onnxruntime cannot load {path}: {error}") from error
