#!/usr/bin/env bash
# Fuzzes the kernel entry points (native/tests/fuzz-kernels.cc) under AddressSanitizer and UBSan:
# every input becomes a case (length 0..100,000, offsets, ranges split into pieces, any scalars
# including non-finite ones, all 8 flag combinations), every SIMD kernel this CPU runs is compared
# with the scalar kernel bit for bit, and margins around the range must survive.
#
#   scripts/fuzz-kernels.sh [SECONDS]       fuzz for SECONDS (default 60)
#   scripts/fuzz-kernels.sh --ci            the short deterministic run .ci/run does (seconds)
#   scripts/fuzz-kernels.sh --merge [SECONDS]
#       fuzz with libFuzzer, then add the inputs that reach new coverage to the committed corpus
#       (native/tests/corpus/fuzz-kernels/); commit them if they are worth keeping
#
# Engine: libFuzzer (coverage-guided) when clang++ with its fuzzer runtime is installed
# (Debian/Ubuntu: apt-get install -y clang-14 libclang-rt-14-dev), otherwise the file's own
# deterministic driver (replays the corpus, then mutates it with a seeded generator) built with
# g++. FUZZ_ENGINE=libfuzzer|driver forces one; CXX / CLANGXX pick the compilers; FUZZ_SEED sets
# the driver's seed (default: the time, printed, so a failing run can be repeated).
#
# libFuzzer keeps what it learns in build-fuzz/corpus/ between runs and writes a failing input to
# build-fuzz/crash-*. Replay one with build-fuzz/fuzz-kernels build-fuzz/crash-<hash> (or with
# build-fuzz/fuzz-kernels-driver, which takes files too): a mismatch prints the decoded case and
# both kernels' outputs in hex before aborting.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATIVE="$ROOT/native"
CORPUS="$NATIVE/tests/corpus/fuzz-kernels"
OUT="$ROOT/build-fuzz"
mkdir -p "$OUT/corpus"

mode=fuzz
seconds=60
if [[ "${1:-}" == "--ci" ]]; then
  mode=ci
  shift
elif [[ "${1:-}" == "--merge" ]]; then
  mode=merge
  shift
fi
if [[ $# -gt 0 ]]; then
  if ! [[ "$1" =~ ^[0-9]+$ ]] || (($1 < 1)); then
    echo "usage: scripts/fuzz-kernels.sh [--ci | --merge] [SECONDS]" >&2
    exit 2
  fi
  seconds="$1"
fi

# The shipped kernel flags (CMakeLists.txt) plus the sanitizers. The harness itself needs no -O3.
FLAGS=(-std=c++17 -Wall -Wextra -Wpedantic -Werror -ffp-contract=off -fno-math-errno -g
  -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
case "$(uname -m)" in
  x86_64 | amd64)
    ARCH=SIMD_ADAMW_X86_64
    KERNELS=(adamw-scalar.cc adamw-sse2.cc adamw-avx2.cc:-mavx2 adamw-avx512f.cc:-mavx512f
      grad-norm-scalar.cc grad-norm-sse2.cc grad-norm-avx2.cc:-mavx2 grad-norm-avx512f.cc:-mavx512f)
    ;;
  aarch64 | arm64)
    ARCH=SIMD_ADAMW_AARCH64
    KERNELS=(adamw-scalar.cc adamw-neon.cc grad-norm-scalar.cc grad-norm-neon.cc)
    ;;
  *)
    ARCH=SIMD_ADAMW_OTHER
    KERNELS=(adamw-scalar.cc grad-norm-scalar.cc)
    ;;
esac

# build <compiler> <output> <sanitizers for the kernels> <sanitizers for the harness> [defines...]
# Compiles the kernels, dispatch and the harness in parallel, then links.
build() {
  local cxx="$1" output="$2" kernel_sanitize="$3" harness_sanitize="$4"
  shift 4
  local defines=("$@") objects=() pids=() spec kernel isa_flag
  for spec in "${KERNELS[@]}"; do
    kernel="${spec%%:*}"
    isa_flag=()
    [[ "$spec" == *:* ]] && isa_flag=("${spec#*:}")
    objects+=("$output.$kernel.o")
    "$cxx" "${FLAGS[@]}" -O3 "$kernel_sanitize" "${isa_flag[@]}" "-D$ARCH" \
      -c "$NATIVE/kernels/$kernel" -o "${objects[-1]}" &
    pids+=($!)
  done
  objects+=("$output.dispatch.o")
  "$cxx" "${FLAGS[@]}" -O3 "$kernel_sanitize" "-D$ARCH" -c "$NATIVE/dispatch.cc" \
    -o "${objects[-1]}" &
  pids+=($!)
  objects+=("$output.fuzz-kernels.o")
  "$cxx" "${FLAGS[@]}" -O1 "$harness_sanitize" "-D$ARCH" "${defines[@]}" \
    -c "$NATIVE/tests/fuzz-kernels.cc" -o "${objects[-1]}" &
  pids+=($!)
  local pid failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  ((failed == 0)) || return 1
  "$cxx" "$harness_sanitize" "${objects[@]}" -o "$output"
}

find_clang() {
  local candidate
  for candidate in "${CLANGXX:-}" clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 \
    clang++-14; do
    [[ -n "$candidate" ]] && command -v "$candidate" > /dev/null || continue
    # The fuzzer runtime is a separate package on Debian: check that it links.
    if echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' |
      "$candidate" -x c++ -fsanitize=fuzzer - -o "$OUT/probe" 2> /dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

engine="${FUZZ_ENGINE:-}"
clang=""
if [[ "$mode" == ci ]]; then
  engine=driver
elif [[ -z "$engine" || "$engine" == libfuzzer ]]; then
  if clang="$(find_clang)"; then
    engine=libfuzzer
  elif [[ "$engine" == libfuzzer ]]; then
    echo "fuzz-kernels: no clang++ with the libFuzzer runtime (apt-get install -y clang-14 libclang-rt-14-dev)" >&2
    exit 2
  else
    engine=driver
  fi
fi
if [[ "$mode" == merge && "$engine" != libfuzzer ]]; then
  echo "fuzz-kernels: --merge needs libFuzzer (coverage decides what is new)" >&2
  exit 2
fi

sanitize=-fsanitize=address,undefined
if [[ "$engine" == driver ]]; then
  cxx="${CXX:-g++}"
  echo "== building the fuzz driver with $("$cxx" --version | head -n 1) ($sanitize)"
  build "$cxx" "$OUT/fuzz-kernels-driver" "$sanitize" "$sanitize"
  export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1" UBSAN_OPTIONS="print_stacktrace=1"
  if [[ "$mode" == ci ]]; then
    # Fixed seed and run count: the same inputs on every CI run.
    echo "== replaying the corpus and 1,000 generated inputs (seed 1)"
    "$OUT/fuzz-kernels-driver" --runs 1000 --seed 1 "$CORPUS"
  else
    seed="${FUZZ_SEED:-$(date +%s)}"
    echo "== fuzzing for ${seconds}s with the deterministic driver (seed $seed)"
    learned=()  # what libFuzzer runs left in build-fuzz/corpus, if any
    [[ -n "$(ls -A "$OUT/corpus")" ]] && learned=("$OUT/corpus")
    "$OUT/fuzz-kernels-driver" --seconds "$seconds" --seed "$seed" "$CORPUS" "${learned[@]}"
  fi
  exit 0
fi

echo "== building the libFuzzer target with $("$clang" --version | head -n 1)"
build "$clang" "$OUT/fuzz-kernels" "-fsanitize=fuzzer-no-link,address,undefined" \
  "-fsanitize=fuzzer,address,undefined" -DSIMD_ADAMW_LIBFUZZER
export ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="print_stacktrace=1"
echo "== fuzzing for ${seconds}s with libFuzzer (new inputs go to build-fuzz/corpus/)"
"$OUT/fuzz-kernels" -max_total_time="$seconds" -max_len=256 -timeout=60 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix="$OUT/" "$OUT/corpus" "$CORPUS"
if [[ "$mode" == merge ]]; then
  echo "== merging inputs with new coverage into $CORPUS"
  "$OUT/fuzz-kernels" -merge=1 "$CORPUS" "$OUT/corpus"
fi
