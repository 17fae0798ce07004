#!/usr/bin/env bash
# Builds the C++ kernel tests and runs them on this machine's architecture and, if the tools are
# installed, on AArch64 under user-mode emulation. No Node and no addon build needed: the kernels
# are plain C++.
#   native/tests/kernel-agreement.cc     every SIMD AdamW kernel gives the scalar kernel's bits,
#                                        NaNs included
#   native/tests/grad-norm-agreement.cc  every gradient-norm kernel, on every thread count, gives
#                                        the canonical order's bits
#
#   scripts/test-kernels-cross.sh [--cases N] [--seed S]    (arguments go to both test programs)
#
# Native part (x86-64): g++ builds the tests with dispatch.cc and the scalar, SSE2, AVX2 and
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
# What the tests link besides the ISA kernels: dispatch, the norm's threaded driver and the pool.
COMMON_SOURCES=("$NATIVE/dispatch.cc" "$NATIVE/grad-norm.cc" "$NATIVE/step.cc"
  "$NATIVE/thread-pool.cc" "$NATIVE/kernels/adamw-scalar.cc" "$NATIVE/kernels/grad-norm-scalar.cc")
TESTS=(kernel-agreement grad-norm-agreement)

# build <compiler> <output prefix> <arch define> <extra link flags...> -- <kernel file>[:<flag>] ...
# Compiles the shared sources and the kernels once and links <output prefix>-<test> for each test.
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
  local test
  for test in "${TESTS[@]}"; do
    "$cxx" "${FLAGS[@]}" "-D$define" -c "$NATIVE/tests/$test.cc" -o "$output.$test.o"
    "$cxx" "$output.$test.o" "${objects[@]}" -pthread "${link_flags[@]}" -o "$output-$test"
  done
}

status=0
host="$(uname -m)"
digests=()      # the scalar AdamW kernel's digest line from each architecture's run
normDigests=()  # the gradient norm's digest line from each architecture's run

# run <label> <command prefix...> <program prefix>: runs both tests, echoes their output, keeps
# their digest lines.
run() {
  local label="$1"
  shift
  local program="${*: -1}" prefix=("${@:1:$#-1}") test log digest
  for test in "${TESTS[@]}"; do
    log="$OUT/$label-$test.log"
    "${prefix[@]}" "$program-$test" "${ARGS[@]}" | tee "$log" || status=1
    digest="$(sed -n -E 's/^ *scalar +digests: //p' "$log")"
    [[ -n "$digest" ]] && digests+=("$label:$digest")
    digest="$(sed -n -E 's/^ *norm +digests: //p' "$log")"
    [[ -n "$digest" ]] && normDigests+=("$label:$digest")
  done
  return 0
}
ARGS=("$@")

case "$host" in
  x86_64 | amd64)
    cxx="${CXX:-g++}"
    echo "== x86-64 ($("$cxx" --version | head -n 1))"
    build "$cxx" "$OUT/x86_64" SIMD_ADAMW_X86_64 -- adamw-sse2.cc adamw-avx2.cc:-mavx2 \
      adamw-avx512f.cc:-mavx512f grad-norm-sse2.cc grad-norm-avx2.cc:-mavx2 \
      grad-norm-avx512f.cc:-mavx512f
    run x86_64 "$OUT/x86_64"
    ;;
  aarch64 | arm64)
    cxx="${CXX:-g++}"
    echo "== aarch64 ($("$cxx" --version | head -n 1))"
    build "$cxx" "$OUT/aarch64" SIMD_ADAMW_AARCH64 -- adamw-neon.cc grad-norm-neon.cc
    run aarch64 "$OUT/aarch64"
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
    build "$cross" "$OUT/aarch64" SIMD_ADAMW_AARCH64 -static -- adamw-neon.cc grad-norm-neon.cc
    run aarch64 "$qemu" "$OUT/aarch64"
  fi
fi

# Both architectures ran the same cases: the scalar kernel must give the same bits on both, NaNs
# included (every operation is one correctly rounded IEEE operation and every NaN result is stored
# as 0x7fc00000), so their digests must be equal; and so must the gradient norms (the same double
# additions in the same order, NaN canonicalized).
# compare <what> <label:digest>...
compare() {
  local what="$1"
  shift
  (($# == 2)) || return 0
  if [[ "${1#*:}" == "${2#*:}" ]]; then
    echo "== $what x86-64 vs aarch64: same inputs and same results (${1#*:})"
  else
    echo "== $what x86-64 vs aarch64: DIGESTS DIFFER"
    printf '   %s\n' "$@"
    status=1
  fi
}
compare "scalar kernel" "${digests[@]}"
compare "gradient norm" "${normDigests[@]}"

exit "$status"
