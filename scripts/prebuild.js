#!/usr/bin/env node
// Builds the prebuilt binaries the package ships (prebuilds/<platform>-<arch>/simd_adamw.node,
// prebuildify's layout; lib/core/native.ts loads them), every one this machine can make:
//   linux-x64     natively (on an x86-64 host)
//   linux-arm64   with Debian's cross compiler g++-aarch64-linux-gnu (the NEON kernel), when it is
//                 installed: apt-get install -y g++-aarch64-linux-gnu
// Each is an N-API (version 8) addon, so one binary serves every Node version >= 20, and it
// dispatches to the best kernel at load, so one binary serves every CPU of its architecture.
// libstdc++ and libgcc are linked in (-DSIMD_ADAMW_PREBUILD=ON); the only system library left is
// glibc, and this script prints the newest glibc symbol version each binary needs.
//
//   npm run prebuild                    (also run by prepack, so npm pack/publish ship fresh ones)
//   node scripts/prebuild.js --require-all   fail unless every platform above was built (CI)
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const requireAll = process.argv.includes('--require-all');

function has(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

const targets = [];
if (process.platform === 'linux' && process.arch === 'x64') {
  targets.push({ platform: 'linux-x64', defines: [] });
  if (has('aarch64-linux-gnu-g++')) {
    const toolchain = path.join(ROOT, 'native', 'tests', 'aarch64-linux-gnu.cmake');
    targets.push({ platform: 'linux-arm64', defines: [`--CDCMAKE_TOOLCHAIN_FILE=${toolchain}`] });
  } else if (requireAll) {
    console.error('prebuild: no aarch64-linux-gnu-g++ (apt-get install -y g++-aarch64-linux-gnu)');
    process.exit(1);
  } else {
    console.log('prebuild: linux-arm64 skipped: no aarch64-linux-gnu-g++');
  }
} else if (process.platform === 'linux' && process.arch === 'arm64') {
  targets.push({ platform: 'linux-arm64', defines: [] });
} else {
  console.log(`prebuild: no prebuilt binaries are made on ${process.platform}-${process.arch}`);
}

// The newest version of each versioned library the binary's imports need (objdump -T).
function newestVersions(file, objdump) {
  const out = execFileSync(objdump, ['-T', file], { encoding: 'utf8' });
  const newest = new Map();
  for (const [, lib, version] of out.matchAll(/\((GLIBC|GLIBCXX|CXXABI|GCC)_([0-9.]+)\)/g)) {
    const parts = version.split('.').map(Number);
    const best = newest.get(lib);
    const newer =
      best === undefined ||
      parts.some(
        (p, i) =>
          p !== (best[i] ?? 0) &&
          p > (best[i] ?? 0) &&
          parts.slice(0, i).every((q, j) => q === (best[j] ?? 0)),
      );
    if (newer) newest.set(lib, parts);
  }
  return [...newest].map(([lib, parts]) => `${lib}_${parts.join('.')}`);
}

for (const target of targets) {
  const out = path.join(ROOT, 'build-prebuild', target.platform);
  console.log(`== prebuild ${target.platform}`);
  execFileSync(
    process.execPath,
    [
      require.resolve('cmake-js/bin/cmake-js', { paths: [ROOT] }),
      'compile',
      '--out',
      out,
      '--CDSIMD_ADAMW_PREBUILD=ON',
      ...target.defines,
    ],
    { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const built = path.join(out, 'Release', 'simd_adamw.node');
  const destination = path.join(ROOT, 'prebuilds', target.platform, 'simd_adamw.node');
  fs.mkdirSync(path.dirname(destination), { recursive: true });
  // A new file renamed over the old one: a process that has the old one loaded keeps its mapping
  // (writing over it in place would change code under that process).
  fs.copyFileSync(built, `${destination}.tmp`);
  fs.renameSync(`${destination}.tmp`, destination);
  const objdump =
    target.platform === 'linux-arm64' && process.arch === 'x64'
      ? 'aarch64-linux-gnu-objdump'
      : 'objdump';
  const versions = has(objdump) ? newestVersions(destination, objdump) : ['(no objdump)'];
  if (versions.some((v) => v.startsWith('GLIBCXX') || v.startsWith('CXXABI'))) {
    console.error(`prebuild: ${destination} still needs libstdc++ (${versions.join(', ')})`);
    process.exit(1);
  }
  const size = fs.statSync(destination).size;
  console.log(
    `   ${path.relative(ROOT, destination)}: ${(size / 1024).toFixed(0)} KiB, needs ${versions.join(', ')}`,
  );
}
