"""onnxruntime sessions: execution providers, threads and graph optimisation level.

The default provider is CPU. XNNPACK (Arm/x86 CPUs, Android), NNAPI (Android) and CoreML
(Apple) are used only when the caller asks for them *and* the installed onnxruntime build
offers them; asking for one that is missing raises
:class:`~runtime.errors.ProviderUnavailableError` listing what is available. CPU is always
appended as the fallback for operators the accelerator does not take.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from .errors import InvalidSettingError, ModelFolderError, ProviderUnavailableError

logger = logging.getLogger(__name__)

# short name -> onnxruntime provider name
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "xnnpack": "XNNPACKExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}

# name -> onnxruntime.GraphOptimizationLevel
OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

# onnxruntime's load-time failures (they do not share a useful base class)
_ORT_LOAD_ERRORS = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)


def available_providers() -> list[str]:
    """The execution providers the installed onnxruntime build offers, e.g. ["CPUExecutionProvider"]."""
    return list(ort.get_available_providers())


def resolve_providers(requested: str | Sequence[str] | None) -> list[str]:
    """Turn user names ("cpu", "xnnpack", "nnapi", "coreml" or full onnxruntime names) into a
    provider list for :class:`onnxruntime.InferenceSession`, CPU last.

    Raises:
        ProviderUnavailableError: a requested provider is unknown or not in this build.
        InvalidSettingError: ``requested`` is neither a string nor a list of strings.
    """
    if requested is None:
        return ["CPUExecutionProvider"]
    if isinstance(requested, str):
        requested = [p for p in requested.split(",") if p.strip()]
    if not isinstance(requested, Sequence) or not all(isinstance(p, str) for p in requested):
        raise InvalidSettingError(
            f"providers must be a name such as 'cpu' or 'xnnpack,cpu', or a list of names, got "
            f"{requested!r}. Available here: {available_providers()}."
        )
    offered = available_providers()
    resolved: list[str] = []
    for name in requested:
        full = PROVIDER_ALIASES.get(name.strip().lower(), name.strip())
        if full not in offered:
            raise ProviderUnavailableError(
                f"execution provider {name!r} is not available in this onnxruntime build "
                f"(onnxruntime {ort.__version__} offers {offered}). Choose one of those, or install "
                "a build that has it (e.g. onnxruntime-android for NNAPI/XNNPACK, the macOS wheel "
                "for CoreML)."
            )
        if full not in resolved:
            resolved.append(full)
    if "CPUExecutionProvider" in resolved:
        resolved.remove("CPUExecutionProvider")
    resolved.append("CPUExecutionProvider")
    return resolved


def session_options(threads: int | None = None, optimization: str = "all") -> ort.SessionOptions:
    """Build :class:`onnxruntime.SessionOptions`.

    Args:
        threads: intra-op threads (>= 1); ``None`` lets onnxruntime pick (one per core).
        optimization: graph optimisation level, one of "disable", "basic", "extended", "all".

    Raises:
        InvalidSettingError: threads < 1 or an unknown optimisation level.
    """
    options = ort.SessionOptions()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InvalidSettingError(
                f"threads must be a positive integer, got {threads!r}. Use e.g. threads=2, or "
                "leave it unset to use every core."
            )
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not isinstance(optimization, str) or optimization not in OPTIMIZATION_LEVELS:
        raise InvalidSettingError(
            f"unknown graph optimization level {optimization!r}; use one of "
            f"{sorted(OPTIMIZATION_LEVELS)}."
        )
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def create_session(
    model_path: str | os.PathLike,
    *,
    providers: str | Sequence[str] | None = None,
    threads: int | None = None,
    optimization: str = "all",
) -> ort.InferenceSession:
    """Load ``model_path`` (.onnx or .ort; external data next to it) into an InferenceSession.

    ``InferenceSession.run`` is thread-safe, so one session serves concurrent callers.

    Raises:
        ModelFolderError: the file is missing or onnxruntime cannot load it (corrupt file).
        ProviderUnavailableError / InvalidSettingError: see :func:`resolve_providers`,
            :func:`session_options`.
    """
    path = Path(model_path)
    provider_list = resolve_providers(providers)
    options = session_options(threads, optimization)
    if not path.is_file():
        raise ModelFolderError(
            f"model file {str(path)!r} is missing. The export folder is incomplete: copy it "
            "again or re-export with `shadow-edge export`."
        )
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=provider_list)
    except _ORT_LOAD_ERRORS as exc:
        raise ModelFolderError(
            f"onnxruntime cannot load {str(path)!r}: {exc}. The file is corrupt or was written "
            "for a newer onnxruntime; re-export the model or upgrade onnxruntime."
        ) from None
    logger.debug("loaded %s with providers %s", path, session.get_providers())
    return session
