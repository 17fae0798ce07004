#!/usr/bin/env node
// The package.json that ships has no scripts. This repo's `prepare` (which builds the addon from
// source when you run `npm install` in a clone) is, to npm 12, an install script of the package,
// and it would block it, with a warning, in every project that installs simd-adamw; the prebuilt
// binaries need no script at all. So `npm pack`/`npm publish` ship a package.json without
// `scripts`: prepack runs `--strip` (after building the prebuilds), postpack `--restore`.
//   node scripts/pack-manifest.js --strip | --restore
// (pinst does the same for postinstall scripts.) A pack that fails between the two leaves the
// backup beside package.json; `--restore` (or the next --strip) puts it back first.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const manifest = path.join(ROOT, 'package.json');
const backup = path.join(ROOT, 'package.json.pack-backup');

function restore() {
  if (fs.existsSync(backup)) fs.renameSync(backup, manifest);
}

const mode = process.argv[2];
if (mode === '--restore') {
  restore();
} else if (mode === '--strip') {
  restore();
  const text = fs.readFileSync(manifest, 'utf8');
  fs.writeFileSync(backup, text);
  const pkg = JSON.parse(text);
  delete pkg.scripts;
  fs.writeFileSync(manifest, JSON.stringify(pkg, null, 2) + '\n');
} else {
  console.error('usage: node scripts/pack-manifest.js --strip | --restore');
  process.exit(2);
}
