"""Run the same int8 exports' parity gate on another CPU's kernels (``make test-int8-haswell``).

onnxruntime picks its int8 kernels by CPU features at run time, so one export runs different
code on an AVX2-only x86 CPU, an AVX-512 VNNI x86 CPU and an Arm board. This script builds
verified exports natively, then re-runs their stored parity gate (:mod:`runtime.parity`,
torch-free) under an emulated CPU::

    python -m tests.int8_kernel_paths build OUT           # natively: tiny int8 exports
    qemu-x86_64 -cpu Haswell .venv/bin/python -m tests.int8_kernel_paths verify OUT

``verify`` imports only the runtime, so it also runs in a torch-free Arm chroot (issue 15):
``qemu-aarch64 ... python -m tests.int8_kernel_paths verify OUT`` on folders built on x86.
Each folder prints one line; the exit code is 1 when any gate fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: (architecture, precision) of the built exports; tiny random decoders as in tests/exporters.
EXPORTS = (("llama", "int8"), ("qwen2", "int8"), ("qwen3", "int8"), ("mistral", "int8"),
           ("gemma", "int8"), ("gpt2", "int8"), ("llama", "int4"), ("llama", "fp32"))
SIZES = {"hidden_size": 128, "vocab_size": 2048, "num_layers": 2}


def build(out: Path) -> list[Path]:
    """Export, quantize and verify (natively) every entry of :data:`EXPORTS` under ``out``."""
    from exporters.testing import tiny_export

    folders = []
    for arch, precision in EXPORTS:
        name = f"{arch}-{precision}"
        if (out / name / "shadow_edge.json").is_file():
            folders.append(out / name)
            continue
        folders.append(tiny_export(out, arch, precision=precision, name=name, sizes=SIZES))
        print(f"built {name}", flush=True)
    return folders


def verify(out: Path) -> bool:
    """Re-run the stored gate of every export folder in ``out``; print one line each."""
    from runtime.cpu import platform_record
    from runtime.parity import verify_folder

    print(f"platform: {json.dumps(platform_record())}")
    passed = True
    for folder in sorted(p.parent for p in out.glob("*/shadow_edge.json")):
        report = verify_folder(folder)
        passed &= report.passed
        print(f"{'ok  ' if report.passed else 'FAIL'} {folder.name}: {report.summary()}",
              flush=True)
    return passed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("build", "verify"))
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.out)
        return 0
    return 0 if verify(args.out) else 1


if __name__ == "__main__":
    sys.exit(main())
