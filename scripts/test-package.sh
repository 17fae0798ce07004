#!/usr/bin/env bash
# The package as it ships, installed as a consumer would: packs the tarball (prepack builds the
# prebuilt binaries; it needs g++-aarch64-linux-gnu for linux-arm64), then, in fresh projects
# whose PATH has node and npm and nothing else (no compiler, no cmake, no make):
#   1. npm 11 (this machine's):  npm install --offline --ignore-scripts <tarball>
#   2. npm 12 (blocks install scripts by default):  npm install --offline <tarball>, whose output
#      must not mention install scripts (there is none to run or block)
# and in each, scripts/package-check.js loads the package by name, checks it took the prebuild,
# steps it, and compares every result bit with the same steps run on this checkout's own build.
#
#   scripts/test-package.sh            (npm run test:package; CI runs it)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mktemp -d "${TMPDIR:-/tmp}/simd-adamw-package.XXXXXX")"
[[ -n "${KEEP:-}" ]] || trap 'rm -rf "$OUT"' EXIT

echo "== npm pack (prepack builds the prebuilds)"
(cd "$ROOT" && npm pack --silent --pack-destination "$OUT" > "$OUT/pack.txt")
TARBALL="$OUT/$(tail -n 1 "$OUT/pack.txt")"
tar -tzf "$TARBALL" | sed 's#^package/##' | sort > "$OUT/files.txt"
echo "   $(basename "$TARBALL"): $(wc -l < "$OUT/files.txt") files, $(du -k "$TARBALL" | cut -f1) KiB"
for wanted in prebuilds/linux-x64/simd_adamw.node prebuilds/linux-arm64/simd_adamw.node \
  dist/lib/index.js dist/lib/index.d.ts dist/lib/tfjs/index.js dist/lib/tfjs/index.d.ts LICENSE \
  CMakeLists.txt native/binding.cc; do
  grep -qx "$wanted" "$OUT/files.txt" || { echo "missing from the tarball: $wanted" >&2; exit 1; }
done
if grep -E '^(dist/bench|native/bench|native/tests|test|bench|build)/' "$OUT/files.txt"; then
  echo "the tarball carries files a consumer does not need (above)" >&2
  exit 1
fi
if tar -xzOf "$TARBALL" package/package.json | node -e '
  const p = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const s = p.scripts || {};
  process.exit(["preinstall", "install", "postinstall"].some((k) => k in s) ? 0 : 1);'; then
  echo "the published package.json has an install script" >&2
  exit 1
fi

# The reference: the same steps on this checkout's own build (build/Release).
node "$ROOT/scripts/package-check.js" "$ROOT/dist/lib/index.js" > "$OUT/reference.json"

# A PATH with node and npm only.
mkdir "$OUT/bin"
ln -s "$(command -v node)" "$OUT/bin/node"
NPM11_CLI="$(node -p 'require.resolve("npm/bin/npm-cli.js", { paths: [require("path").dirname(require("fs").realpathSync(process.argv[1]))] })' "$(command -v npm)" 2> /dev/null || true)"
if [[ -z "$NPM11_CLI" || ! -f "$NPM11_CLI" ]]; then
  NPM11_CLI="$(dirname "$(readlink -f "$(command -v npm)")")/npm-cli.js"
fi
for tool in cc gcc g++ c++ clang cmake make; do
  if PATH="$OUT/bin" command -v "$tool" > /dev/null; then
    echo "the restricted PATH still has $tool" >&2
    exit 1
  fi
done

echo "== npm 12 (npm install npm@12, outside the restricted PATH)"
npm install --silent --no-audit --no-fund --prefix "$OUT/npm12" npm@12 > /dev/null
NPM12_CLI="$OUT/npm12/node_modules/npm/bin/npm-cli.js"

# install <label> <npm cli> <npm args...>: a fresh project, the tarball installed by name.
install() {
  local label="$1" cli="$2"
  shift 2
  local app="$OUT/app-$label"
  mkdir "$app"
  echo '{ "name": "consumer", "version": "1.0.0", "private": true }' > "$app/package.json"
  echo "== $label: $(PATH="$OUT/bin" node "$cli" --version) install $* <tarball>, PATH without a compiler"
  (cd "$app" && PATH="$OUT/bin" HOME="$OUT/home-$label" node "$cli" install --no-audit --no-fund \
    "$@" "$TARBALL") > "$OUT/$label.log" 2>&1 || { cat "$OUT/$label.log"; exit 1; }
  if grep -iE 'install[- ]?script|allow-?scripts|gyp|cmake' "$OUT/$label.log"; then
    echo "$label: the install mentioned install scripts or a build (above)" >&2
    exit 1
  fi
  # A copy inside the project: run from this checkout, require('simd-adamw') would resolve to the
  # checkout itself (a package's own files can require it by name).
  cp "$ROOT/scripts/package-check.js" "$app/check.js"
  (cd "$app" && PATH="$OUT/bin" node check.js simd-adamw --expect-prebuild > "$OUT/$label.json")
  if ! cmp -s "$OUT/reference.json" "$OUT/$label.json"; then
    echo "$label: results differ from this checkout's build" >&2
    diff <(head -c 2000 "$OUT/reference.json") <(head -c 2000 "$OUT/$label.json") || true
    exit 1
  fi
  # simd-adamw/tfjs through the exports map, with the consumer's own tfjs (here this checkout's
  # @tensorflow packages, linked: the install above is offline and tfjs-core an optional peer).
  ln -s "$ROOT/node_modules/@tensorflow" "$app/node_modules/@tensorflow"
  (cd "$app" && PATH="$OUT/bin" node -e '
    const tf = require("@tensorflow/tfjs-core");
    require("@tensorflow/tfjs-backend-cpu");
    const { SimdAdamW } = require("simd-adamw/tfjs");
    const v = tf.variable(tf.ones([3]), true, "v");
    const opt = new SimdAdamW({ lr: 0.5, weightDecay: 0 });
    opt.applyGradients({ v: tf.ones([3]) });
    const moved = Array.from(v.dataSync());
    if (opt.updatePath !== "cpu-in-place" || moved.some((x) => x !== 0.5)) {
      console.error("simd-adamw/tfjs:", opt.updatePath, moved);
      process.exit(1);
    }') || { echo "$label: simd-adamw/tfjs did not step a variable" >&2; exit 1; }
  rm "$app/node_modules/@tensorflow"
  echo "   loaded the prebuild; $(node -p 'Object.keys(JSON.parse(require("fs").readFileSync(process.argv[1]))).length' "$OUT/$label.json") results bit for bit those of the local build"
}

install npm11 "$NPM11_CLI" --offline --ignore-scripts
install npm12 "$NPM12_CLI" --offline

echo "package test passed"
