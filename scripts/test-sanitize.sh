#!/usr/bin/env bash
# Runs the whole jest suite, and a leak check of the addon, against the AddressSanitizer +
# UndefinedBehaviorSanitizer build of the addon (build-asan/, `npm run build:asan`).
#
#   npm run test:sanitize            (= scripts/test-sanitize.sh; builds build-asan/ first)
#   scripts/test-sanitize.sh test/hostile-input.test.ts   extra arguments go to jest
#
# Node is not instrumented, so the ASan runtime must be the first library in the process:
# LD_PRELOAD puts it there (without it, loading the addon fails with "ASan runtime does not come
# first"). Every malloc of the process then goes through ASan, including the backing stores of
# ArrayBuffers, so a kernel write past the end of a Float32Array is reported, not just our own
# C++ allocations.
#
# Leaks: jest leaves ~100 KB of V8/node internals (vm contexts, module registry) unfreed at exit.
# Suppressing them would need suppressions on v8::internal frames, and every call into the addon
# has such frames on its stack, so they would hide the addon's leaks too. So the jest run has
# detect_leaks=0, and scripts/leak-check.js, a plain node script that drives every native entry
# point (kernels on every ISA, every flag combination, every error path) many times, runs with
# detect_leaks=1 and no suppressions: plain node frees everything it allocated, so anything
# LeakSanitizer reports there is ours.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building the sanitizer addon (build-asan/)"
npm run --silent build:asan
npx tsc -p tsconfig.build.json

addon="$PWD/build-asan/Release/simd_adamw.node"
asan_runtime="$("${CXX:-g++}" -print-file-name=libasan.so)"
if [[ ! -f "$asan_runtime" ]]; then
  echo "test-sanitize: the ASan runtime was not found (${CXX:-g++} -print-file-name=libasan.so)" >&2
  exit 1
fi

# abort_on_error=0 / exitcode=1: a report ends the process with a non-zero status jest cannot
# swallow. allocator_may_return_null=1: V8 handles failed allocations itself, as with plain malloc.
# check_initialization_order, strict_init_order: static constructors of the addon.
common_asan_options="halt_on_error=1:exitcode=86:allocator_may_return_null=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87"
export SIMD_ADAMW_NATIVE="$addon"

echo
echo "== leak check: scripts/leak-check.js under LeakSanitizer (detect_leaks=1, no suppressions)"
LD_PRELOAD="$asan_runtime" ASAN_OPTIONS="$common_asan_options:detect_leaks=1" \
  node scripts/leak-check.js

# Two jest worker processes, not --runInBand: jest's default on a 2-core machine is one worker, and
# the suite under ASan is CPU-bound (about half the time with two). The environment, LD_PRELOAD and
# ASAN_OPTIONS included, reaches every worker, so each has the ASan runtime first. A report ends the
# worker with exit code 86/87; jest then fails that file ("Jest worker encountered 4 child process
# exceptions") and exits non-zero, with the report (written to the worker's stderr) in its output.
# Given --runInBand (-i) or --maxWorkers (-w) as an argument, jest runs as that says instead (it
# refuses both at once, and of two --maxWorkers it takes the first).
jest_workers=(--maxWorkers=2)
for argument in "$@"; do
  if [[ "$argument" =~ ^(-i|--runInBand|-w|--maxWorkers)(=.*)?$ ]]; then jest_workers=(); fi
done
echo
echo "== jest ${jest_workers[*]} $* against $addon (ASan + UBSan)"
LD_PRELOAD="$asan_runtime" ASAN_OPTIONS="$common_asan_options:detect_leaks=0" \
  node node_modules/jest/bin/jest.js "${jest_workers[@]}" "$@"

echo
echo "sanitizer run clean"
