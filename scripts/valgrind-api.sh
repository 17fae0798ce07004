#!/usr/bin/env bash
# valgrind memcheck over a small script of the API (scripts/valgrind-api.js).
#
#   scripts/valgrind-api.sh            (= npm run valgrind; about a minute: node is ~50x slower)
#
# Needs valgrind (apt-get install -y valgrind). Not part of .ci/run: the sanitizer run covers the
# same ground faster. It is an independent second opinion: memcheck checks each lane of AVX2's
# masked loads and stores, which AddressSanitizer does not instrument, and needs no special build.
# Valgrind does not emulate AVX-512, so under it the CPU offers avx2, sse2 and scalar only.
#
# The addon is built with debug info into build-valgrind/ (same -O3 flags, plus -g) so reports
# name files and lines.
#
# Reading the result: the run passes when memcheck ends with
#   ERROR SUMMARY: 0 errors from 0 contexts
# and the script exits 0. Any "Invalid read/write", "Conditional jump or move depends on
# uninitialised value(s)" or "definitely lost" record makes it exit 99; look for frames in
# simd_adamw.node (native/...) in its stack: those are ours. "still reachable" and "possibly lost"
# blocks at exit belong to node and V8 (they do not free everything before exiting) and are not
# counted; --show-leak-kinds=all lists them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind > /dev/null; then
  echo "valgrind-api: valgrind is not installed (apt-get install -y valgrind)" >&2
  exit 2
fi

echo "== building the addon with debug info (build-valgrind/)"
npx cmake-js compile --config RelWithDebInfo --out build-valgrind
npx tsc -p tsconfig.build.json

echo "== valgrind memcheck: node scripts/valgrind-api.js"
SIMD_ADAMW_NATIVE="$PWD/build-valgrind/RelWithDebInfo/simd_adamw.node" \
  valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
  --show-leak-kinds=definite --errors-for-leak-kinds=definite \
  node scripts/valgrind-api.js
echo "valgrind-api: clean"
