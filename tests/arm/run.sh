#!/usr/bin/env bash
# `make test-arm`: the runtime on aarch64 (Raspberry Pi 5 class), under emulation.
#
# Stages, each timed:
#   host     qemu-user-static, binfmt-support, debootstrap (apt-get when missing); register
#            qemu-aarch64 with binfmt_misc
#   rootfs   an arm64 Debian rootfs (debootstrap; cached, rebuilt when the recipe changes)
#   deps     a venv in it with the package's dependencies from PyPI's aarch64 wheels: the
#            base install plus the optional `grammar` extra (llguidance), pytest, hypothesis
#            and the grammar tests' checkers, pinned to the x86 venv's versions (cached)
#   install  this checkout's wheel (--no-deps) and the sources + tests, copied in
#   x86-ref  the robot-intent exports and their x86 outputs (tests/arm/parity.py, torch);
#            runs on the host in parallel with the stages above (they leave a core idle)
#   parity   the robot-intent exports on aarch64 vs x86 (labels, greedy tokens, scores)
#   tests    pytest tests/runtime on aarch64: torch-free, against the committed fixtures;
#            runs in parallel with x86-ref and parity (qemu runs each on one core)
#
# aarch64 programs run through qemu-user-static as a Cortex-A76 (QEMU_CPU), the Pi 5's
# core. qemu's default CPU advertises SME, with which onnxruntime's int8 kernels give wrong
# labels and garbage text (fp32 is fine); the Pi 5 has no SME. qemu 7.2 crashes in
# `import onnxruntime` when it sees the host's x86 /proc/cpuinfo, so an arm64 one (Pi 5
# values) is bind-mounted over it. Commands run with `env -i` so no host setting (pip
# index, proxies) leaks in; pip gets the host's extra CA certificates.
#
# Settings (environment):
#   SHADOW_EDGE_ARM_ROOTFS    rootfs folder, default $SHADOW_EDGE_CACHE/arm64-rootfs
#                             (~/.cache/shadow_edge/arm64-rootfs); delete it to rebuild
#   SHADOW_EDGE_ARM_MIRROR    Debian mirror, default http://deb.debian.org/debian
#   SHADOW_EDGE_ARM_COMMANDS  robot-intent commands per task, default 50 (>= 50)
#   PYTHON                    the x86 Python with torch, default .venv/bin/python
#
# Safety: /proc, /sys and /dev are mounted into the rootfs only while this script runs;
# the EXIT trap unmounts them. Every deletion first unmounts and checks that nothing is
# mounted below the folder, and uses `rm -rf --one-file-system` (deleting through a /dev
# bind mount would remove the host's device nodes).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${SHADOW_EDGE_CACHE:-$HOME/.cache/shadow_edge}
ROOTFS=${SHADOW_EDGE_ARM_ROOTFS:-$CACHE/arm64-rootfs}
ROOTFS=$(realpath -m "$ROOTFS")
PARTIAL="$ROOTFS.partial"
MIRROR=${SHADOW_EDGE_ARM_MIRROR:-http://deb.debian.org/debian}
COMMANDS=${SHADOW_EDGE_ARM_COMMANDS:-50}
PY=${PYTHON:-$REPO/.venv/bin/python}
SUITE=bookworm                       # Raspberry Pi OS 12 is bookworm-based; Python 3.11
PACKAGES=python3,python3-venv,ca-certificates
RECIPE="debootstrap --arch=arm64 --variant=minbase --include=$PACKAGES $SUITE"
VENV=/opt/shadow-edge-venv
EXTRAS=grammar                          # optional runtime extra whose tests run too
TEST_PACKAGES="pytest hypothesis jsonschema lark"
CPU_MODEL=cortex-a76
MIN_RUN_FRACTION=0.90
BINFMT=/proc/sys/fs/binfmt_misc

log() { printf '[test-arm] %s\n' "$*"; }
die() { printf '[test-arm] ERROR: %s\n' "$*" >&2; exit 1; }

# ---- mounts and deletion -------------------------------------------------------------
mounts_under() {  # mount points at or below $1, deepest first
  awk -v root="$1" '$5 == root || index($5, root "/") == 1 {print $5}' /proc/self/mountinfo |
    sort -r
}

unmount_under() {
  local point
  for point in $(mounts_under "$1"); do
    umount "$point" 2>/dev/null || umount -l "$point" || true
  done
}

safe_rm() {  # delete a folder of ours: never through a mount, never another file system
  local path
  path=$(realpath -m "$1")
  case "$path" in
    "$ROOTFS" | "$ROOTFS"/* | "$PARTIAL" | "$HOST_TMP") ;;
    *) die "refusing to delete $path: not a folder of make test-arm" ;;
  esac
  [[ -e $path ]] || return 0
  unmount_under "$path"
  if [[ -n $(mounts_under "$path") ]]; then
    die "refusing to delete $path: still mounted: $(mounts_under "$path" | tr '\n' ' ')"
  fi
  rm -rf --one-file-system -- "$path"
}

# `run.sh --check`: can this machine run the stages at all? Prints why not and exits 1
# (.ci/run uses it to say why test-arm cannot run in a CI container without privileges).
if [[ ${1:-} == --check ]]; then
  [[ $EUID -eq 0 ]] || { echo "needs root (debootstrap, chroot, mounts)"; exit 1; }
  if [[ ! -e $BINFMT/register ]] && ! mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null
  then
    echo "cannot mount binfmt_misc on $BINFMT (needs CAP_SYS_ADMIN: a VM, or a container" \
      "started with --privileged)"
    exit 1
  fi
  probe=$(mktemp -d /tmp/shadow-edge-arm-check.XXXXXX)
  if ! mount -t tmpfs tmpfs "$probe" 2>/dev/null; then
    rmdir "$probe"
    echo "cannot mount file systems (the chroot needs /proc, /sys and /dev mounted): needs" \
      "CAP_SYS_ADMIN"
    exit 1
  fi
  umount "$probe" && rmdir "$probe"
  command -v qemu-aarch64-static >/dev/null && command -v debootstrap >/dev/null ||
    command -v apt-get >/dev/null ||
    { echo "qemu-user-static and debootstrap are missing and there is no apt-get"; exit 1; }
  exit 0
fi

[[ -x $PY ]] || { echo "[test-arm] ERROR: $PY not found: run 'make setup' first (the x86 side needs torch)" >&2; exit 1; }
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")  # absolute, venv symlink kept

HOST_TMP=$(mktemp -d /tmp/shadow-edge-arm.XXXXXX)
declare -A BG_PID=() BG_START=()  # background stages by name (start_background)
cleanup() {
  local status=$? name pid
  for name in "${!BG_PID[@]}"; do
    pid=${BG_PID[$name]}
    if [[ -s $HOST_TMP/$name.out ]]; then
      log "$name, stopped unfinished; its output so far:"
      tail -20 "$HOST_TMP/$name.out"
    fi
    if kill -0 "$pid" 2>/dev/null; then
      pkill -TERM -P "$pid" 2>/dev/null || true  # e.g. `timeout`, which passes it on
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  unmount_under "$ROOTFS"
  unmount_under "$PARTIAL"
  if [[ -n $(mounts_under "$ROOTFS") ]]; then
    log "WARNING: still mounted below $ROOTFS: $(mounts_under "$ROOTFS" | tr '\n' ' ')"
  fi
  safe_rm "$HOST_TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_api() {  # /proc (with an arm64 cpuinfo), /sys (read-only) and /dev into the rootfs
  [[ -z $(mounts_under "$ROOTFS") ]] || unmount_under "$ROOTFS"
  mount -t proc proc "$ROOTFS/proc"
  mount --bind "$HOST_TMP/cpuinfo" "$ROOTFS/proc/cpuinfo"
  mount --bind /sys "$ROOTFS/sys"
  mount -o remount,bind,ro "$ROOTFS/sys"
  mount --bind /dev "$ROOTFS/dev"
}

write_cpuinfo() {  # what a Raspberry Pi 5 (BCM2712, Cortex-A76) shows, one entry per host core
  local i
  for ((i = 0; i < $(nproc); i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\n' "$i"
    printf 'Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid'
    printf ' asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\n'
    printf 'CPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n'
  done > "$HOST_TMP/cpuinfo"
  printf 'Revision\t: d04170\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n' >> "$HOST_TMP/cpuinfo"
}

in_rootfs() {  # in_rootfs SECONDS DIR COMMAND...: run in the rootfs, clean environment
  local seconds=$1 dir=$2
  shift 2
  env -i HOME=/root LANG=C.UTF-8 QEMU_CPU=$CPU_MODEL PYTHONPATH=/src \
    PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    timeout --kill-after=30 "$seconds" chroot "$ROOTFS" /bin/sh -c 'cd "$0" && exec "$@"' \
    "$dir" "$@"
}

# ---- stages --------------------------------------------------------------------------
stage_host() {
  [[ $EUID -eq 0 ]] || die "make test-arm needs root (debootstrap, chroot, mounts): run it as root"
  local missing=()
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring)
  if ((${#missing[@]})); then
    command -v apt-get >/dev/null ||
      die "missing ${missing[*]} and no apt-get: install them with your package manager"
    log "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >"$HOST_TMP/apt.log" 2>&1 ||
      die "apt-get install ${missing[*]} failed: $(tail -5 "$HOST_TMP/apt.log")"
  fi
  if [[ ! -e $BINFMT/register ]]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null ||
      die "cannot mount binfmt_misc on $BINFMT, so aarch64 programs cannot run here. It needs" \
        "root with CAP_SYS_ADMIN on the host (a VM, or a container started with --privileged)."
  fi
  if [[ ! -e $BINFMT/qemu-aarch64 ]]; then
    update-binfmts --enable qemu-aarch64 >"$HOST_TMP/binfmt.log" 2>&1 ||
      die "cannot register qemu-aarch64 with binfmt_misc: $(cat "$HOST_TMP/binfmt.log")." \
        "Writing $BINFMT/register needs root with CAP_SYS_ADMIN on the host."
  fi
  grep -qx enabled "$BINFMT/qemu-aarch64" ||
    die "binfmt entry qemu-aarch64 is disabled: run 'update-binfmts --enable qemu-aarch64'"
  INTERPRETER=$(awk '$1 == "interpreter" {print $2}' "$BINFMT/qemu-aarch64")
  FIX_BINARY=$(awk '$1 == "flags:" {print ($2 ~ /F/) ? "yes" : "no"}' "$BINFMT/qemu-aarch64")
  log "binfmt: qemu-aarch64 -> $INTERPRETER (fix binary: $FIX_BINARY);" \
    "$(qemu-aarch64-static --version | head -1)"
}

ensure_interpreter() {  # without binfmt's F flag the kernel looks up qemu inside the chroot
  if [[ $FIX_BINARY == no && ! -x $1$INTERPRETER ]]; then
    mkdir -p "$(dirname "$1$INTERPRETER")"
    cp "$(command -v qemu-aarch64-static)" "$1$INTERPRETER"
  fi
}

stage_rootfs() {
  if [[ -f $ROOTFS/.shadow-edge-rootfs && $(cat "$ROOTFS/.shadow-edge-rootfs") == "$RECIPE" ]]
  then
    log "rootfs: cached at $ROOTFS"
    ensure_interpreter "$ROOTFS"
    return
  fi
  [[ -e $ROOTFS ]] && { log "rootfs: $ROOTFS is incomplete or of another recipe: rebuilding"
                        safe_rm "$ROOTFS"; }
  safe_rm "$PARTIAL"
  mkdir -p "$(dirname "$ROOTFS")"
  log "rootfs: $RECIPE (first stage: download and unpack)"
  debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" --foreign \
    "$SUITE" "$PARTIAL" "$MIRROR" >"$HOST_TMP/debootstrap.log" 2>&1 ||
    die "debootstrap failed (mirror $MIRROR): $(tail -5 "$HOST_TMP/debootstrap.log")"
  ensure_interpreter "$PARTIAL"
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin timeout 120 chroot "$PARTIAL" /bin/true ||
    die "aarch64 programs do not run through qemu/binfmt (chroot $PARTIAL /bin/true failed)"
  log "rootfs: second stage (configures the packages under emulation, ~8 min)"
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 timeout --kill-after=30 3600 \
    chroot "$PARTIAL" /debootstrap/debootstrap --second-stage >>"$HOST_TMP/debootstrap.log" 2>&1 ||
    { unmount_under "$PARTIAL"
      die "debootstrap --second-stage failed: $(tail -5 "$HOST_TMP/debootstrap.log")"; }
  unmount_under "$PARTIAL"
  echo "$RECIPE" >"$PARTIAL/.shadow-edge-rootfs"
  mv -T "$PARTIAL" "$ROOTFS"
  log "rootfs: built at $ROOTFS ($(du -sh --one-file-system "$ROOTFS" | cut -f1))"
}

stage_deps() {
  # The x86 venv's versions of the runtime's dependencies and the test tools: both sides of
  # the parity check run the same onnxruntime, numpy and tokenizers.
  "$PY" - >"$HOST_TMP/constraints.txt" <<'EOF'
from importlib.metadata import PackageNotFoundError, version
for name in ("onnxruntime", "numpy", "tokenizers", "jinja2", "typer", "rich", "llguidance",
             "pytest", "hypothesis", "jsonschema", "lark"):
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        pass
EOF
  rm -rf "$HOST_TMP/wheel"
  "$PY" -m pip wheel -q --no-deps -w "$HOST_TMP/wheel" "$REPO" >"$HOST_TMP/wheel.log" 2>&1 ||
    die "building the shadow-edge wheel failed: $(tail -5 "$HOST_TMP/wheel.log")"
  WHEEL=$(basename "$(ls "$HOST_TMP"/wheel/shadow_edge-*.whl)")
  local stamp  # the pins, the packages and the wheel's requirements (base + $EXTRAS)
  stamp=$( (cat "$HOST_TMP/constraints.txt"
            echo "$EXTRAS $TEST_PACKAGES"
            "$PY" -c 'import sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
print("\n".join(line for line in wheel.read(meta).decode().splitlines()
                if line.startswith("Requires-Dist") and
                ("extra ==" not in line or f"extra == \"{sys.argv[2]}\"" in line)))' \
              "$HOST_TMP/wheel/$WHEEL" "$EXTRAS") | sha256sum | cut -c1-16)
  mkdir -p "$ROOTFS/tmp/shadow-edge"
  cp "$HOST_TMP/constraints.txt" "$HOST_TMP/wheel/$WHEEL" "$ROOTFS/tmp/shadow-edge/"
  if [[ -f $ROOTFS$VENV/.deps && $(cat "$ROOTFS$VENV/.deps") == "$stamp" ]]; then
    log "deps: cached ($VENV, $(tr '\n' ' ' <"$HOST_TMP/constraints.txt"))"
    return
  fi
  log "deps: pip install $WHEEL[$EXTRAS] $TEST_PACKAGES (aarch64 wheels from PyPI)"
  mkdir -p "$ROOTFS/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/" \
    2>/dev/null || true
  in_rootfs 600 / update-ca-certificates >"$HOST_TMP/ca.log" 2>&1 ||
    die "update-ca-certificates failed in the rootfs: $(tail -5 "$HOST_TMP/ca.log")"
  in_rootfs 300 / python3 -m venv "$VENV" || die "python3 -m venv failed in the rootfs"
  # --no-compile: byte-compiling every module of numpy, onnxruntime, rich's pygments...
  # under emulation takes minutes; Python compiles what it imports on first use.
  in_rootfs 2400 /tmp/shadow-edge pip install -q --no-compile --disable-pip-version-check \
    --constraint constraints.txt "$WHEEL[$EXTRAS]" $TEST_PACKAGES ||
    die "pip install in the aarch64 rootfs failed (network to PyPI? CA certificates?)"
  echo "$stamp" >"$ROOTFS$VENV/.deps"
}

stage_install() {
  in_rootfs 600 /tmp/shadow-edge pip install -q --no-compile --disable-pip-version-check \
    --no-deps --force-reinstall "$WHEEL" || die "pip install $WHEEL failed in the rootfs"
  safe_rm "$ROOTFS/src"
  safe_rm "$ROOTFS/work"
  mkdir -p "$ROOTFS/src" "$ROOTFS/work"
  (cd "$REPO" && tar -c --exclude=__pycache__ --exclude=.hypothesis pyproject.toml runtime \
     tests/__init__.py tests/conftest.py tests/tiny_models.py tests/runtime tests/arm) |
    tar -x -C "$ROOTFS/src" || die "copying the sources into $ROOTFS/src failed"
  in_rootfs 300 /src python -c 'import platform
from importlib.metadata import version
from importlib.util import find_spec
print("[test-arm] in the rootfs: python", platform.python_version(), platform.machine(),
      *(f"{name} {version(name)}" for name in ("onnxruntime", "numpy", "tokenizers",
                                                 "llguidance")),
      "| torch installed:", find_spec("torch") is not None)
import onnxruntime, tokenizers, llguidance' ||
    die "the runtime's dependencies do not import on aarch64 (see above)"
}

# ---- background stages: the x86 reference (host) and the aarch64 tests (one qemu core) --
start_background() {  # start_background NAME COMMAND...: stdout to NAME.out, stderr to NAME.log
  local name=$1
  shift
  "$@" >"$HOST_TMP/$name.out" 2>"$HOST_TMP/$name.log" &
  BG_PID[$name]=$!
  BG_START[$name]=$(date +%s)
}

wait_background() {  # wait_background NAME: print its output (and stderr if it failed),
  local name=$1 status=0  # set BG_SECONDS to how long it ran, return its status
  wait "${BG_PID[$name]}" || status=$?
  unset "BG_PID[$name]"
  BG_SECONDS=$(($(date +%s) - BG_START[$name]))
  cat "$HOST_TMP/$name.out"
  ((status == 0)) || tail -20 "$HOST_TMP/$name.log" >&2
  log "$name: ran $BG_SECONDS s in the background"
  return "$status"
}

x86_reference() {
  cd "$REPO" && PYTHONPATH=$REPO OMP_NUM_THREADS=1 exec "$PY" -m tests.arm.parity reference \
    "$HOST_TMP/robot-intent" --commands "$COMMANDS"
}

stage_x86_reference() {  # waits for the x86 reference started with the first stage
  wait_background x86-ref || die "x86 reference failed (its last output above)"
  cp -r "$HOST_TMP/robot-intent" "$ROOTFS/work/robot-intent"
}

stage_tests() {
  local status=0
  in_rootfs 3600 /src python -m pytest tests/runtime -q -p no:cacheprovider -rfEs \
    --junitxml=/work/runtime-tests.xml || status=$?
  "$PY" - "$ROOTFS/work/runtime-tests.xml" "$MIN_RUN_FRACTION" <<'EOF' || status=1
import sys
import xml.etree.ElementTree as ET

cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
outcome = [next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
           for case in cases]
counts = {k: outcome.count(k) for k in ("passed", "skipped", "failure", "error")}
fraction = counts["passed"] / max(len(cases), 1)
print(f"[test-arm] aarch64 runtime tests: {len(cases)} collected, {counts['passed']} passed, "
      f"{counts['skipped']} skipped, {counts['failure']} failed, {counts['error']} errors: "
      f"{fraction:.1%} ran and passed (required: {float(sys.argv[2]):.0%})")
sys.exit(0 if fraction >= float(sys.argv[2]) and not counts["failure"] + counts["error"] else 1)
EOF
  return "$status"
}

stage_parity() {
  in_rootfs 2400 /src python -m tests.arm.parity compare /work/robot-intent
}

# ---- main ----------------------------------------------------------------------------
TIMES=()
run_stage() {  # stages die on errors; tests and parity return their status
  local name=$1 start status=0
  shift
  start=$(date +%s)
  log "== $name"
  "$@" || status=$?
  TIMES+=("$(printf '%-8s %5d s' "$name" $(($(date +%s) - start)))")
  log "== $name: $(($(date +%s) - start)) s"
  return "$status"
}

[[ $COMMANDS -ge 50 ]] || die "SHADOW_EDGE_ARM_COMMANDS must be >= 50 (got $COMMANDS)"
mkdir -p "$(dirname "$ROOTFS")"
exec 9>"$ROOTFS.lock"
flock -n 9 || { log "waiting for another make test-arm (lock $ROOTFS.lock)"; flock 9; }
write_cpuinfo
START=$(date +%s)
FAILED=()
run_stage host stage_host
start_background x86-ref x86_reference
run_stage rootfs stage_rootfs
mount_api
run_stage deps stage_deps
run_stage install stage_install
start_background tests stage_tests
run_stage x86-ref stage_x86_reference
run_stage parity stage_parity || FAILED+=(parity)
wait_background tests || FAILED+=(tests)
TIMES+=("$(printf '%-8s %5d s (beside x86-ref and parity)' tests "$BG_SECONDS")")
log "stage times:"
printf '           %s\n' "${TIMES[@]}"
log "total $(($(date +%s) - START)) s"
((${#FAILED[@]} == 0)) || die "failed: ${FAILED[*]}"
log "passed"
