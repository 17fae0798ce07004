#!/usr/bin/env bash
# Builds native/tests/kernel-agreement.cc and checks that every SIMD kernel gives the scalar
# kernel's bits, NaNs included, on this machine's architecture and, if the tools are installed, on
# AArch64 under user-mode emulation. No Node and no addon build needed: the kernels are plain C++.
#
#   scripts/test-kernels-cross.sh [--cases N] [--seed S]    (arguments go to the test program)
#
# Native part (x86-64): g++ builds the test with dispatch.cc and the scalar, SSE2, AVX2 and
# AVX-512F kernels (each kernel with its own -m flag, as CMakeLists.txt does); CPUID decides at run
# time which of them this CPU can run, the rest are reported as skipped. On an AArch64 host the
# native part tests NEON directly.
#
# AArch64 part on an x86-64 host needs a cross compiler and qemu's user-mode emulator. On Debian or
# Ubuntu:
#   sudo apt-get install -y g++-aarch64-linux-gnu qemu-user
# (qemu-user-static works too). Without them the part is skipped with a message, not failed.
# Override the tools with CXX (native), AARCH64_CXX and QEMU_AARCH64.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATIVE="$ROOT/native"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/simd-adamw-kernels.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT

# The addon's flags (CMakeLists.txt), so the kernels are compiled as they ship.
FLAGS=(-std=c++17 -O3 -Wall -Wextra -Wpedantic -Werror -ffp-contract=off -fno-math-errno)
COMMON_SOURCES=("$NATIVE/tests/kernel-agreement.cc" "$NATIVE/dispatch.cc"
  "$NATIVE/kernels/adamw-scalar.cc")

# build <compiler> <output> <arch define> <extra link flags...> -- <kernel file>[:<flag>] ...
build() {
  local cxx="$1" output="$2" define="$3"
  shift 3
  local link_flags=()
  while [[ "$1" != "--" ]]; do
    link_flags+=("$1")
    shift
  done
  shift
  local objects=() source
  for source in "${COMMON_SOURCES[@]}"; do
    objects+=("$output.$(basename "$source").o")
    "$cxx" "${FLAGS[@]}" "-D$define" -c "$source" -o "${objects[-1]}"
  done
  local spec kernel isa_flag
  for spec in "$@"; do
    kernel="${spec%%:*}"
    isa_flag=()
    [[ "$spec" == *:* ]] && isa_flag=("${spec#*:}")
    objects+=("$output.$kernel.o")
    "$cxx" "${FLAGS[@]}" "${isa_flag[@]}" "-D$define" -c "$NATIVE/kernels/$kernel" \
      -o "${objects[-1]}"
  done
  "$cxx" "${objects[@]}" "${link_flags[@]}" -o "$output"
}

status=0
host="$(uname -m)"
digests=()  # the scalar kernel's digest line from each architecture's run

# run <label> <command...>: runs the test, echoes its output, keeps its digest line.
run() {
  local label="$1"
  shift
  local log="$OUT/$label.log"
  "$@" | tee "$log" || status=1
  local digest
  digest="$(sed -n -E 's/^ *scalar +digests: //p' "$log")"
  [[ -n "$digest" ]] && digests+=("$label:$digest")
  return 0
}

case "$host" in
  x86_64 | amd64)
    cxx="${CXX:-g++}"
    echo "== x86-64 ($("$cxx" --version | head -n 1))"
    build "$cxx" "$OUT/kernel-agreement-x86_64" SIMD_ADAMW_X86_64 -- adamw-sse2.cc \
      adamw-avx2.cc:-mavx2 adamw-avx512f.cc:-mavx512f
    run x86_64 "$OUT/kernel-agreement-x86_64" "$@"
    ;;
  aarch64 | arm64)
    cxx="${CXX:-g++}"
    echo "== aarch64 ($("$cxx" --version | head -n 1))"
    build "$cxx" "$OUT/kernel-agreement-aarch64" SIMD_ADAMW_AARCH64 -- adamw-neon.cc
    run aarch64 "$OUT/kernel-agreement-aarch64" "$@"
    ;;
  *)
    echo "== $host: no SIMD kernels for this architecture, native part skipped"
    ;;
esac

if [[ "$host" != aarch64 && "$host" != arm64 ]]; then
  cross="${AARCH64_CXX:-aarch64-linux-gnu-g++}"
  qemu="${QEMU_AARCH64:-}"
  if [[ -z "$qemu" ]]; then
    qemu="$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)"
  fi
  if ! command -v "$cross" > /dev/null || [[ -z "$qemu" ]]; then
    echo "== aarch64 SKIPPED: needs $cross and qemu-aarch64" \
      "(sudo apt-get install -y g++-aarch64-linux-gnu qemu-user)"
  else
    echo "== aarch64 under $(basename "$qemu") ($("$cross" --version | head -n 1))"
    # Static, so qemu needs no AArch64 sysroot to find the C++ runtime.
    build "$cross" "$OUT/kernel-agreement-aarch64" SIMD_ADAMW_AARCH64 -static -- adamw-neon.cc
    run aarch64 "$qemu" "$OUT/kernel-agreement-aarch64" "$@"
  fi
fi

# Both architectures ran the same cases: the scalar kernel must give the same bits on both, NaNs
# included (every operation is one correctly rounded IEEE operation and every NaN result is stored
# as 0x7fc00000), so their digests must be equal.
if ((${#digests[@]} == 2)); then
  if [[ "${digests[0]#*:}" == "${digests[1]#*:}" ]]; then
    echo "== scalar kernel x86-64 vs aarch64: same inputs and same results (${digests[0]#*:})"
  else
    echo "== scalar kernel x86-64 vs aarch64: DIGESTS DIFFER"
    printf '   %s\n' "${digests[@]}"
    status=1
  fi
fi

exit "$status"
