#!/usr/bin/env node
'use strict';

/**
 * Check or fix the formatting of the C++ sources with the clang-format binary that ships in the
 * `clang-format` npm package (no system install needed).
 *
 *   node scripts/clang-format.js --check [dir ...]   exit 1 and list files that need formatting
 *   node scripts/clang-format.js --fix   [dir ...]   reformat files in place
 *
 * Directories default to `native/` (relative to the repo root); every subfolder is walked.
 * The style always comes from the repo's `.clang-format`, even for directories outside the repo.
 * Set CLANG_FORMAT=/path/to/clang-format to use a different binary.
 */

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const ROOT = path.resolve(__dirname, '..');
const STYLE_FILE = path.join(ROOT, '.clang-format');
const EXTENSIONS = new Set(['.h', '.hh', '.hpp', '.cc', '.cpp', '.cxx']);
const BATCH = 50;

function usage(message) {
  if (message) console.error(`clang-format.js: ${message}`);
  console.error('usage: node scripts/clang-format.js (--check | --fix) [dir ...]');
  process.exit(2);
}

function findBinary() {
  if (process.env.CLANG_FORMAT) return process.env.CLANG_FORMAT;
  let pkgDir;
  try {
    pkgDir = path.dirname(require.resolve('clang-format/package.json', { paths: [ROOT] }));
  } catch {
    throw new Error('the clang-format npm package is not installed (run npm ci)');
  }
  const platform = os.platform();
  const arch = os.arch();
  const candidates =
    platform === 'win32'
      ? [path.join(pkgDir, 'bin', 'win32', 'clang-format.exe')]
      : [path.join(pkgDir, 'bin', `${platform}_${arch}`, 'clang-format')];
  if (platform === 'darwin' && arch === 'arm64') {
    candidates.push(path.join(pkgDir, 'bin', 'darwin_x64', 'clang-format'));
  }
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) {
    throw new Error(
      `the clang-format package has no binary for ${platform}_${arch}; set CLANG_FORMAT`,
    );
  }
  return found;
}

/** Recursively list C/C++ sources below `dir` (sorted, symlinked directories not followed). */
function listSources(dir) {
  const out = [];
  if (!fs.existsSync(dir)) return out;
  if (!fs.statSync(dir).isDirectory()) {
    return EXTENSIONS.has(path.extname(dir)) ? [dir] : [];
  }
  const entries = fs.readdirSync(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      out.push(...listSources(full));
    } else if (
      (entry.isFile() || (entry.isSymbolicLink() && fs.statSync(full).isFile())) &&
      EXTENSIONS.has(path.extname(entry.name))
    ) {
      out.push(full);
    }
  }
  return out;
}

function run(binary, args) {
  const res = spawnSync(binary, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (res.error) throw new Error(`failed to run ${binary}: ${res.error.message}`);
  return res;
}

function main() {
  const argv = process.argv.slice(2);
  const modes = argv.filter((a) => a === '--check' || a === '--fix');
  const unknown = argv.filter((a) => a.startsWith('-') && !modes.includes(a));
  if (unknown.length > 0) usage(`unknown option ${unknown[0]}`);
  if (modes.length !== 1) usage('pass exactly one of --check or --fix');
  const mode = modes[0];
  const dirs = argv.filter((a) => !a.startsWith('-'));
  const roots = (dirs.length > 0 ? dirs : ['native']).map((d) => path.resolve(ROOT, d));
  for (const r of roots) {
    if (dirs.length > 0 && !fs.existsSync(r)) usage(`no such file or directory: ${r}`);
  }

  if (!fs.existsSync(STYLE_FILE)) {
    console.error(`clang-format.js: missing ${STYLE_FILE}`);
    process.exit(2);
  }

  const files = [...new Set(roots.flatMap(listSources))];
  const shown = (f) => {
    const rel = path.relative(process.cwd(), f);
    return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : f;
  };
  const label = `${files.length} file${files.length === 1 ? '' : 's'}`;
  if (files.length === 0) {
    console.log(`clang-format: 0 files under ${roots.map(shown).join(', ')}; nothing to do`);
    return;
  }

  let binary;
  try {
    binary = findBinary();
  } catch (err) {
    console.error(`clang-format.js: ${err.message}`);
    process.exit(2);
  }
  const style = `--style=file:${STYLE_FILE}`;

  if (mode === '--fix') {
    for (let i = 0; i < files.length; i += BATCH) {
      const res = run(binary, [style, '-i', ...files.slice(i, i + BATCH)]);
      if (res.status !== 0) {
        process.stderr.write(res.stderr);
        console.error(`clang-format.js: clang-format -i exited with ${res.status}`);
        process.exit(2);
      }
    }
    console.log(`clang-format: formatted ${label}`);
    return;
  }

  // --check: one process per file so the offending files can be named.
  const bad = [];
  for (const file of files) {
    const res = run(binary, [style, '--dry-run', '--Werror', file]);
    if (res.status !== 0) {
      bad.push(file);
      // Show the first two diagnostics (3 lines each) per file; the full list is just noise.
      const lines = (res.stderr || '').split('\n').filter(Boolean);
      const total = lines.filter((l) => / (error|warning): /.test(l)).length;
      const head = lines.slice(0, 6);
      if (total > 2) head.push(`  ... and ${total - 2} more in this file`);
      process.stderr.write(head.join('\n') + '\n');
    }
  }
  if (bad.length > 0) {
    console.error(
      `\nclang-format: ${bad.length} of ${label} ${bad.length === 1 ? 'needs' : 'need'} formatting:`,
    );
    for (const f of bad) console.error(`  ${shown(f)}`);
    console.error('run `npm run format` (or node scripts/clang-format.js --fix) to fix them');
    process.exit(1);
  }
  console.log(`clang-format: checked ${label}, all formatted`);
}

main();
