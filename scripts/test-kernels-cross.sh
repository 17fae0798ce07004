#!/usr/bin/env bash
# Builds the C++ kernel tests with CMake (-DSIMD_ADAMW_NATIVE_TESTS=ON: every ISA of
# native/simd/isa-list.h for the target architecture, and every op of native/ops/op-list.h) and
# runs them on this machine's architecture and, if the tools are installed, on AArch64 under
# user-mode emulation. No Node and no addon build needed: the kernels are plain C++.
#   kernel-agreement     every SIMD ISA's adamw kernel gives the scalar ISA's bits, NaNs included
#   grad-norm-agreement  every gradient-norm kernel, on every thread count, gives the canonical
#                        order's bits
#   runner-test          the generic runner (elementwise and per-tensor passes, every thread count
#                        bitwise the same) and plans (runs checked before any write)
#   phased-agreement     the phased ops (adafactor, came): every SIMD ISA gives the scalar ISA's
#                        bits and every thread count one thread's, over whole plans (factored and
#                        unfactored tensors, grad dtypes, paramBf16, the gradient factor, NaN/Inf),
#                        every NaN canonical; the chunk partition and the workspace size
#   blockwise8-codes-test  the 8-bit quantizer (native/ops/blockwise8-codes.h): every float32 in
#                        [-1, 1] against an exact nearest-code reference, natively; a brute-force
#                        sample under qemu (--sample-only: the exhaustive pass takes minutes there)
#   fuzz-kernels         the fuzz corpus (NaN payloads, extreme scalars, odd ranges) and 300
#                        generated inputs, every SIMD ISA against scalar (no sanitizers here; the
#                        sanitized fuzz run is scripts/fuzz-kernels.sh)
#
#   scripts/test-kernels-cross.sh [--cases N] [--seed S]    (arguments go to the agreement tests)
#
# Native part: CPUID decides at run time which compiled ISAs this CPU can run, the rest are
# reported as skipped. On an AArch64 host the native part tests NEON directly.
#
# AArch64 part on an x86-64 host needs a cross compiler and qemu's user-mode emulator. On Debian or
# Ubuntu:
#   sudo apt-get install -y g++-aarch64-linux-gnu qemu-user
# (qemu-user-static works too). Without them the part is skipped with a message, not failed.
# Override the tools with CXX (native), AARCH64_CXX and QEMU_AARCH64.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/simd-adamw-kernels.XXXXXX")"
trap 'rm -rf "$OUT"' EXIT
TESTS=(kernel-agreement grad-norm-agreement runner-test phased-agreement blockwise8-codes-test
  fuzz-kernels)
CORPUS="$ROOT/native/tests/corpus/fuzz-kernels"
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)

# build <build dir> <cmake arguments...>: configures and builds the tests with the addon's flags.
build() {
  local dir="$1"
  shift
  cmake -S "$ROOT" -B "$dir" "${generator[@]}" -DSIMD_ADAMW_NATIVE_TESTS=ON -DSIMD_ADAMW_WERROR=ON \
    "$@" > "$dir.configure.log" || {
    cat "$dir.configure.log"
    return 1
  }
  grep -E "ISAs for" "$dir.configure.log" | sed 's/^-- /   /'
  cmake --build "$dir" --target "${TESTS[@]}" -j "$(nproc 2> /dev/null || echo 2)" > "$dir.build.log" || {
    cat "$dir.build.log"
    return 1
  }
}

status=0
host="$(uname -m)"
digests=()      # the scalar AdamW kernel's digest line from each architecture's run
normDigests=()  # the gradient norm's digest line from each architecture's run
phasedDigests=()  # the phased ops' scalar digest line from each architecture's run

# run <label> <command prefix...> <program prefix>: runs both tests, echoes their output, keeps
# their digest lines.
run() {
  local label="$1"
  shift
  local program="${*: -1}" prefix=("${@:1:$#-1}") test log digest
  for test in "${TESTS[@]}"; do
    log="$OUT/$label-$test.log"
    local args=("${ARGS[@]}")
    [[ "$test" == runner-test ]] && args=()
    # Its own case count: every case is a whole plan of up to four tensors, run on every ISA.
    [[ "$test" == phased-agreement ]] && args=()
    if [[ "$test" == blockwise8-codes-test ]]; then
      args=()
      ((${#prefix[@]} > 0)) && args=(--sample-only)
    fi
    [[ "$test" == fuzz-kernels ]] && args=(--runs 300 --seed 1 "$CORPUS")
    "${prefix[@]}" "$program/$test" "${args[@]}" | tee "$log" || status=1
    digest="$(sed -n -E 's/^ *scalar +digests: //p' "$log")"
    [[ -n "$digest" ]] && digests+=("$label:$digest")
    digest="$(sed -n -E 's/^ *norm +digests: //p' "$log")"
    [[ -n "$digest" ]] && normDigests+=("$label:$digest")
    digest="$(sed -n -E 's/^ *phased +digests: //p' "$log")"
    [[ -n "$digest" ]] && phasedDigests+=("$label:$digest")
  done
  return 0
}
ARGS=("$@")

case "$host" in
  x86_64 | amd64)
    cxx="${CXX:-g++}"
    echo "== x86-64 ($("$cxx" --version | head -n 1))"
    build "$OUT/x86_64" -DCMAKE_CXX_COMPILER="$cxx"
    run x86_64 "$OUT/x86_64"
    ;;
  aarch64 | arm64)
    cxx="${CXX:-g++}"
    echo "== aarch64 ($("$cxx" --version | head -n 1))"
    build "$OUT/aarch64" -DCMAKE_CXX_COMPILER="$cxx"
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
    # Static (see the toolchain file), so qemu needs no AArch64 sysroot to find the C++ runtime.
    build "$OUT/aarch64" -DCMAKE_TOOLCHAIN_FILE="$ROOT/native/tests/aarch64-linux-gnu.cmake" \
      -DCMAKE_CXX_COMPILER="$cross"
    run aarch64 "$qemu" "$OUT/aarch64"
  fi
fi

# Both architectures ran the same cases: the scalar kernel must give the same bits on both, NaNs
# included (every operation is one correctly rounded IEEE operation and every NaN result is stored
# as 0x7fc00000), so their digests must be equal; and so must the gradient norms (the same double
# additions in the same order, NaN canonicalized) and the phased ops (the same, plus the scalar
# steps between passes).
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
compare "phased ops" "${phasedDigests[@]}"

exit "$status"
