"""What machine a model runs on: CPU architecture, the instruction sets onnxruntime's int8
kernels choose between, and the onnxruntime version. Torch-free: numpy and the standard library.

Parity reports record :func:`platform_record` so a result says where it was measured: the
same int8 export runs different kernels on an AVX2 laptop, an AVX-512 VNNI server and an
Arm board. Flags come first from numpy's run-time CPU detection (CPUID on x86, the kernel's
HWCAP on Arm: what onnxruntime's own dispatch sees, also inside ``qemu -cpu Haswell``),
then, for the flags numpy does not track (``avx_vnni``, ``amx_int8``, ``i8mm``, ``sve2``,
``bf16``), from ``/proc/cpuinfo``. The CPU model name comes from ``/proc/cpuinfo`` (under
qemu-user that file is the host's, so the model name is too).

:func:`warn_if_int8_can_saturate` warns once per process when an int8 export made with
onnxruntime's ``quantize_dynamic`` (u8 activations x s8 weights: shadow-edge's int8 before
the block-wise scheme, whose manifests have no ``quantization`` record) runs on x86 without
VNNI: there onnxruntime computes u8 x s8 products with ``vpmaddubsw``, which saturates pairs
of products at 16 bits (onnxruntime's quantization documentation, "when and why do I need
to try U8U8"). Measured on the robot-intent generation shadow on an AMD EPYC with AVX2:
13.7% of 300 greedy actions differed from fp32, and rows of a batch changed each other's
argmax (exporters/README.md, "int8 schemes tried").
"""

from __future__ import annotations

import functools
import logging
import platform
from pathlib import Path

logger = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")

#: The flags that select onnxruntime's (MLAS) CPU kernels for int8/int4 and fp32 work:
#: x86 SIMD widths and the int8 dot-product extensions (VNNI, AMX), Arm's NEON dot product
#: (``asimddp``), int8 matrix multiply (``i8mm``), SVE and half/bfloat16 arithmetic.
RELEVANT_FLAGS = (
    # x86
    "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "amx_bf16",
    # aarch64 / arm
    "neon", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "fphp",
)
#: numpy's run-time feature names -> /proc/cpuinfo spelling.
NUMPY_FLAGS = {
    "SSE41": "sse4_1", "SSE42": "sse4_2", "AVX": "avx", "AVX2": "avx2", "FMA3": "fma",
    "F16C": "f16c", "AVX512F": "avx512f", "AVX512BW": "avx512bw", "AVX512VL": "avx512vl",
    "AVX512VNNI": "avx512_vnni", "AVX512BF16": "avx512_bf16", "AVX512FP16": "avx512_fp16",
    "NEON": "neon", "ASIMD": "asimd", "ASIMDHP": "asimdhp", "ASIMDDP": "asimddp",
    "SVE": "sve", "FPHP": "fphp",
}
#: int8 dot-product instructions that make u8 x s8 int8 GEMMs exact on x86.
X86_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
X86_MACHINES = ("x86_64", "i386", "i686")


def parse_cpuinfo(text: str) -> tuple[str | None, set[str], str | None]:
    """(CPU model name, feature flags, flag key) from the text of ``/proc/cpuinfo`` (first
    CPU); the key is ``"flags"`` (x86), ``"features"`` (Arm) or ``None``."""
    model, flags, key_seen = None, set(), None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model is None and value.strip():
            model = value.strip()
        elif key in ("flags", "features") and key_seen is None:
            flags, key_seen = set(value.split()), key
    return model, flags, key_seen


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str | None, frozenset[str]]:
    """(model name, flags) from ``/proc/cpuinfo`` when it describes this architecture (a
    qemu-user guest of another architecture sees the host's file: then nothing)."""
    try:
        model, flags, key = parse_cpuinfo(CPUINFO.read_text(encoding="utf-8", errors="replace"))
    except OSError:  # not Linux, or /proc not mounted
        return None, frozenset()
    if key != ("flags" if machine() in X86_MACHINES else "features"):
        return None, frozenset()
    return model, frozenset(flags)


@functools.lru_cache(maxsize=1)
def _numpy_flags() -> frozenset[str] | None:
    """The :data:`NUMPY_FLAGS` numpy's run-time dispatch detected, or ``None`` if this numpy
    does not expose its detection (a private table, present in numpy 1.20 to 2.x)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return None
    return frozenset(NUMPY_FLAGS[name] for name, on in features.items()
                     if on and name in NUMPY_FLAGS)


def machine() -> str:
    """The CPU architecture as Python reports it, normalised: x86_64, aarch64, arm, ..."""
    name = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(name, name)


def cpu_flags() -> list[str]:
    """The :data:`RELEVANT_FLAGS` this CPU has, sorted (empty when unknown): numpy's run-time
    detection where it covers a flag, ``/proc/cpuinfo`` for the rest."""
    detected = _numpy_flags()
    listed = set(RELEVANT_FLAGS) & _cpuinfo()[1]
    if detected is None:
        return sorted(listed)
    return sorted(set(detected) | (listed - set(NUMPY_FLAGS.values())))


def platform_record() -> dict:
    """Where a measurement ran: ``{"machine", "cpu", "cpu_flags", "onnxruntime", "python"}``.

    ``cpu_flags`` holds only :data:`RELEVANT_FLAGS`; ``cpu`` is the model name or ``None``.
    """
    import onnxruntime

    return {"machine": machine(), "cpu": _cpuinfo()[0], "cpu_flags": cpu_flags(),
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def int8_can_saturate(arch: str | None = None, flags=None) -> bool:
    """Whether u8 x s8 int8 GEMMs can saturate here: x86 without any VNNI/AMX flag.

    ``arch``/``flags`` default to this machine's (:func:`cpu_flags`); with an unknown flag
    list on x86 the answer is ``True`` (the safe side for a warning).
    """
    arch = machine() if arch is None else arch
    flags = set(cpu_flags() if flags is None else flags)
    return arch in X86_MACHINES and not flags & set(X86_VNNI_FLAGS)


def uses_dynamic_int8(precision: str, quantization: dict | None) -> bool:
    """Whether an export holds onnxruntime ``quantize_dynamic`` int8 (MatMulInteger):
    int8 exports record ``quantization.method``; shadow-edge wrote dynamic int8 without
    that record before, so an int8 manifest without it is dynamic too."""
    if precision != "int8":
        return False
    method = (quantization or {}).get("method")
    return method is None or method == "quantize_dynamic"


_warned: set[str] = set()


def warn_if_int8_can_saturate(precision: str, quantization: dict | None, folder: str) -> bool:
    """Log one warning per process (returns whether it applied) when a dynamic int8 export
    runs on x86 without VNNI."""
    if not (uses_dynamic_int8(precision, quantization) and int8_can_saturate()):
        return False
    if "dynamic-int8" not in _warned:
        _warned.add("dynamic-int8")
        logger.warning(
            "%s is a dynamic int8 export (onnxruntime quantize_dynamic, u8 x s8). This x86 CPU "
            "has no VNNI, where such kernels can saturate and lose accuracy (rows of a batch "
            "also change each other's results). Re-export it with the current shadow-edge "
            "(`shadow-edge export CKPT -o OUT --int8`: block-wise 8-bit weights, exact on every "
            "CPU) and check it here with `shadow-edge verify OUT`.", folder)
    return True
