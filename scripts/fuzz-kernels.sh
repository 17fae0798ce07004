#!/usr/bin/env bash
# Fuzzes the kernel entry points (native/tests/fuzz-kernels.cc) under AddressSanitizer and UBSan:
# every input becomes a case (length 0..100,000, offsets, ranges split into pieces, any scalars
# including non-finite ones, all 8 flag combinations), every SIMD kernel this CPU runs is compared
# with the scalar kernel bit for bit, and margins around the range must survive.
#
#   scripts/fuzz-kernels.sh [SECONDS]       fuzz for SECONDS (default 60)
#   scripts/fuzz-kernels.sh --ci            the short deterministic run .ci/run does (seconds)
#   scripts/fuzz-kernels.sh --ci --asan-build build-asan
#       the same, with the driver built inside an existing sanitizer build of the addon (npm run
#       build:asan) instead of build-fuzz/: that build compiled the same kernels with the same
#       flags (-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
#       -g, -O3, -Werror), so only the harness is compiled. The kernels under ASan are the slowest
#       compile of CI (minutes per ISA), and .ci/run has just built them for test:sanitize.
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
CORPUS="$ROOT/native/tests/corpus/fuzz-kernels"
OUT="$ROOT/build-fuzz"
mkdir -p "$OUT/corpus"

mode=fuzz
seconds=60
asan_build=""
if [[ "${1:-}" == "--ci" ]]; then
  mode=ci
  shift
  if [[ "${1:-}" == "--asan-build" ]]; then
    asan_build="$(realpath -m "${2:?usage: scripts/fuzz-kernels.sh --ci --asan-build DIR}")"
    shift 2
  fi
elif [[ "${1:-}" == "--merge" ]]; then
  mode=merge
  shift
fi
if [[ $# -gt 0 ]]; then
  if ! [[ "$1" =~ ^[0-9]+$ ]] || (($1 < 1)); then
    echo "usage: scripts/fuzz-kernels.sh [--ci [--asan-build DIR] | --merge] [SECONDS]" >&2
    exit 2
  fi
  seconds="$1"
fi

# The kernels are built as they ship (CMakeLists.txt: every ISA of native/simd/isa-list.h for this
# architecture, the addon's flags), plus the sanitizers, through CMake's SIMD_ADAMW_NATIVE_TESTS.
SANITIZE_FLAGS="-g -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)

# build <compiler> <output> <sanitizers> [cmake arguments...]: configures build-fuzz/<name>.build
# and builds the fuzz-kernels target, then puts the program at <output>.
build() {
  local cxx="$1" output="$2" sanitize="$3"
  shift 3
  local dir="$output.build"
  cmake -S "$ROOT" -B "$dir" "${generator[@]}" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_CXX_FLAGS="$sanitize $SANITIZE_FLAGS" -DCMAKE_EXE_LINKER_FLAGS="$sanitize" \
    -DSIMD_ADAMW_NATIVE_TESTS=ON -DSIMD_ADAMW_WERROR=ON "$@" > "$dir.configure.log" || {
    cat "$dir.configure.log"
    return 1
  }
  cmake --build "$dir" --target fuzz-kernels -j "$(nproc 2> /dev/null || echo 2)" > "$dir.log" || {
    cat "$dir.log"
    return 1
  }
  cp "$dir/fuzz-kernels" "$output"
}

# reuse_build <sanitizer build dir> <output>: adds the test targets to that cmake-js build (only new
# targets: no object's command line changes, so nothing it built is compiled again), builds
# fuzz-kernels there and puts the program at <output>. The build must be the one build() would make:
# the sanitizers on (SIMD_ADAMW_SANITIZE adds exactly $SANITIZE_FLAGS and -fsanitize=address,undefined
# to every object and link) and warnings as errors.
reuse_build() {
  local dir="$1" output="$2" option
  for option in SIMD_ADAMW_SANITIZE SIMD_ADAMW_WERROR; do
    grep -qx "$option:BOOL=ON" "$dir/CMakeCache.txt" 2> /dev/null || {
      echo "fuzz-kernels: $dir is not a build with $option=ON (npm run build:asan makes one)" >&2
      return 1
    }
  done
  cmake "$dir" -DSIMD_ADAMW_NATIVE_TESTS=ON > "$dir/fuzz.configure.log" || {
    cat "$dir/fuzz.configure.log"
    return 1
  }
  cmake --build "$dir" --target fuzz-kernels -j "$(nproc 2> /dev/null || echo 2)" > "$dir/fuzz.log" || {
    cat "$dir/fuzz.log"
    return 1
  }
  cp "$dir/fuzz-kernels" "$output"
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
  if [[ -n "$asan_build" ]]; then
    echo "== building the fuzz driver in $asan_build (its kernels, already built there with $sanitize)"
    reuse_build "$asan_build" "$OUT/fuzz-kernels-driver"
  else
    echo "== building the fuzz driver with $("$cxx" --version | head -n 1) ($sanitize)"
    build "$cxx" "$OUT/fuzz-kernels-driver" "$sanitize"
  fi
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
  -DSIMD_ADAMW_LIBFUZZER=ON
export ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="print_stacktrace=1"
echo "== fuzzing for ${seconds}s with libFuzzer (new inputs go to build-fuzz/corpus/)"
"$OUT/fuzz-kernels" -max_total_time="$seconds" -max_len=256 -timeout=60 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix="$OUT/" "$OUT/corpus" "$CORPUS"
if [[ "$mode" == merge ]]; then
  echo "== merging inputs with new coverage into $CORPUS"
  "$OUT/fuzz-kernels" -merge=1 "$CORPUS" "$OUT/corpus"
fi
