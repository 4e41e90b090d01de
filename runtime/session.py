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
import re
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from .errors import (
    InvalidSettingError,
    ModelFolderError,
    OnnxRuntimeVersionError,
    ProviderUnavailableError,
)

logger = logging.getLogger(__name__)

_SUFFIX = "ExecutionProvider"

#: short name -> onnxruntime provider name, derived from ``onnxruntime.get_all_providers()``
#: (the names onnxruntime registers, whether or not this build offers them), so every alias
#: names a real provider: "xnnpack" -> "XnnpackExecutionProvider", "cpu", "nnapi", "coreml",
#: "qnn", "cuda", "dml", "webgpu", ...
PROVIDER_ALIASES = {
    name.removesuffix(_SUFFIX).lower(): name for name in ort.get_all_providers()
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


#: Oldest onnxruntime that runs an export of a given ONNX opset correctly, as
#: (first opset, version). Measured on opset-23 SmolLM2 shadow exports against 1.32
#: (2026-11-29): 1.22 cannot load opset 23; 1.23.0 pairs the grouped query heads with the
#: wrong key/value heads in ``Attention``; 1.23.2 returns NaN for fully masked (left-padded)
#: rows; 1.24.1 is exact. Opsets 18-21 (``--opset 18``; int4 raises it to 21) load from 1.20.
MIN_ONNXRUNTIME = ((23, (1, 24, 1)), (21, (1, 20, 0)))


def _version_tuple(version: str) -> tuple[int, ...]:
    """"1.24.1" / "1.25.0.dev20250101" / "1.24.1+cpu" -> (1, 24, 1) / (1, 25, 0) / (1, 24, 1)."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def check_onnxruntime_version(opset: int | None, version: str | None = None) -> None:
    """Refuse to run an export of ONNX ``opset`` on an onnxruntime known to get it wrong.

    Args:
        opset: the export's ``ai.onnx`` opset (manifest ``opset``); ``None`` skips the check.
        version: onnxruntime version string; default: the installed one.

    Raises:
        OnnxRuntimeVersionError: ``version`` is older than :data:`MIN_ONNXRUNTIME` allows.
    """
    minimum = next((v for first, v in MIN_ONNXRUNTIME if opset is not None and opset >= first),
                   None)
    version = version or ort.__version__
    if minimum is None or _version_tuple(version) >= minimum:
        return
    raise OnnxRuntimeVersionError(
        f"this export uses ONNX opset {opset}, which onnxruntime {version} cannot run correctly. "
        f"Install onnxruntime>={'.'.join(map(str, minimum))} (pip install -U onnxruntime), or "
        "re-export for older runtimes with `shadow-edge export ... --opset 18` (int4 needs "
        "opset 21 and onnxruntime>=1.20 in any case)."
    )


def available_providers() -> list[str]:
    """The execution providers the installed onnxruntime build offers, e.g. ["CPUExecutionProvider"]."""
    return list(ort.get_available_providers())


def canonical_provider(name: str) -> str:
    """onnxruntime's spelling of a provider a user names: a short name ("xnnpack"), or a full
    name in any letter case ("XNNPACKExecutionProvider" -> "XnnpackExecutionProvider").

    Raises:
        ProviderUnavailableError: onnxruntime knows no provider of that name.
    """
    key = name.strip().lower()
    full = PROVIDER_ALIASES.get(key.removesuffix(_SUFFIX.lower()))
    if full is None:
        raise ProviderUnavailableError(
            f"unknown execution provider {name!r}. Use a short name among "
            f"{sorted(PROVIDER_ALIASES)} or a full onnxruntime name such as "
            "'XnnpackExecutionProvider' (available here: "
            f"{available_providers()})."
        )
    return full


def resolve_providers(requested: str | Sequence[str] | None) -> list[str]:
    """Turn user names (short names such as "cpu", "xnnpack", "nnapi", "coreml", "qnn", or
    full onnxruntime names in any case) into a provider list for
    :class:`onnxruntime.InferenceSession`, CPU last.

    Raises:
        ProviderUnavailableError: a requested provider is unknown, or not in this build.
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
        full = canonical_provider(name)
        if full not in offered:
            raise ProviderUnavailableError(
                f"execution provider {name!r} is not available in this onnxruntime build: "
                f"onnxruntime {ort.__version__} offers {offered}, not {full}. Choose one of "
                "those, or install a build that has it (e.g. onnxruntime-android for NNAPI/XNNPACK, the "
                "macOS wheel for CoreML, onnxruntime-qnn for QNN)."
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
    # errors only: at load onnxruntime warns that an overridable initializer (the optional
    # ``logits_to_keep`` input, runtime.causal_lm) "will not be treated as constant", which
    # is the point of it; failures still raise
    options.log_severity_level = 3
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
