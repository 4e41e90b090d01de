#!/usr/bin/env bash
# `make test-int8-haswell`: re-run the int8 parity gate under `qemu-x86_64 -cpu Haswell`
# (AVX2, FMA, no AVX-512/VNNI), so a developer or CI on a VNNI machine also checks the
# kernels onnxruntime picks on an AVX2-only CPU. Exports are built and verified natively,
# then the same folders are re-verified inside the emulator (torch-free, tests/int8_kernel_paths.py).
#
# Where it does not apply it says so and exits 0:
# - a host without VNNI already runs the AVX2 kernels natively in `make test`;
#   FORCE=1 runs it anyway (e.g. to check the emulation itself);
# - the other direction (VNNI kernels on an AVX2 host) cannot be emulated: qemu's TCG has no
#   AVX-512, so on an AVX2-only host the VNNI path is covered only on a VNNI machine.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-${TMPDIR:-/tmp}/shadow-edge-int8-kernels}

if [ "$(uname -m)" != x86_64 ]; then
  echo "SKIP int8 Haswell run: the host is $(uname -m), not x86_64 (the Arm path is the qemu-aarch64 chroot's)."
  exit 0
fi
if ! grep -m1 -E '^flags' /proc/cpuinfo | grep -qwE 'avx512_vnni|avx_vnni|amx_int8'; then
  echo "SKIP int8 Haswell run: this CPU has no VNNI, so 'make test' already runs the AVX2 int8 kernels natively."
  echo "     (The VNNI path cannot be emulated here: qemu TCG has no AVX-512.) FORCE=1 runs the emulation anyway."
  [ "${FORCE:-0}" = 1 ] || exit 0
fi
QEMU=$(command -v qemu-x86_64 || command -v qemu-x86_64-static || true)
if [ -z "$QEMU" ]; then
  echo "qemu-x86_64 is missing: install it with 'apt-get install qemu-user' (Debian/Ubuntu) and rerun." >&2
  exit 1
fi

mkdir -p "$OUT"
echo "building and verifying int8 exports natively in $OUT"
"$PY" -m tests.int8_kernel_paths build "$OUT"
echo "re-verifying them under $QEMU -cpu Haswell"
# qemu lists each host CPUID feature TCG cannot emulate; those lines are noise here
OMP_NUM_THREADS=1 "$QEMU" -cpu Haswell "$PY" -m tests.int8_kernel_paths verify "$OUT" \
  2> >(grep -v "TCG doesn't support requested feature" >&2)
