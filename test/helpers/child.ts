// The package as it is published (dist/lib/index.js, the "main" of package.json), in child
// processes: for what only a fresh process shows, such as the SIMD_ADAMW_ISA and SIMD_ADAMW_NATIVE
// environment variables that are read once, when the module loads.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');
export const DIST_ENTRY = path.join(PACKAGE_ROOT, 'dist', 'lib', 'index.js');
export const BUILT_ADDON = path.join(PACKAGE_ROOT, 'build', 'Release', 'simd_adamw.node');

const LOCK = path.join(PACKAGE_ROOT, 'dist', '.test-build-lock');
const BUILD_TIMEOUT_MS = 180_000;

/** The newest modification time of what dist/ is compiled from. */
function newestSourceTime(): number {
  const lib = path.join(PACKAGE_ROOT, 'lib');
  const files = [
    ...fs
      .readdirSync(lib, { recursive: true, encoding: 'utf8' })
      .map((name) => path.join(lib, name)),
    path.join(PACKAGE_ROOT, 'tsconfig.json'),
    path.join(PACKAGE_ROOT, 'tsconfig.build.json'),
    path.join(PACKAGE_ROOT, 'scripts', 'dts-private-fields.js'),
  ];
  return Math.max(...files.map((file) => fs.statSync(file).mtimeMs));
}

function distIsFresh(): boolean {
  if (fs.existsSync(LOCK) || !fs.existsSync(DIST_ENTRY)) return false;
  return fs.statSync(DIST_ENTRY).mtimeMs >= newestSourceTime();
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Makes sure dist/ is compiled from the current lib/ (`npm install` builds it through the prepare
 * script; after an edit it is stale). Builds with the project's own `tsc -p tsconfig.build.json` and
 * scripts/dts-private-fields.js, as package.json's build does.
 * Test files run in parallel workers: a lock directory lets one build while the others wait.
 */
export function ensureDist(): void {
  const deadline = Date.now() + BUILD_TIMEOUT_MS;
  while (!distIsFresh()) {
    fs.mkdirSync(path.dirname(LOCK), { recursive: true });
    try {
      fs.mkdirSync(LOCK);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      if (Date.now() - fs.statSync(LOCK).mtimeMs > BUILD_TIMEOUT_MS) {
        fs.rmSync(LOCK, { recursive: true, force: true }); // left by a killed run
      } else if (Date.now() > deadline) {
        throw new Error(`timed out waiting for another test file to build dist/ (${LOCK})`, {
          cause: error,
        });
      } else {
        sleep(200);
      }
      continue;
    }
    try {
      const tsc = path.join(PACKAGE_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
      const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
        cwd: PACKAGE_ROOT,
        encoding: 'utf8',
        timeout: BUILD_TIMEOUT_MS,
      });
      if (result.status !== 0) {
        throw new Error(`tsc -p tsconfig.build.json failed:\n${result.stdout}${result.stderr}`);
      }
      // As package.json's build does: the .d.ts without '#private;' (scripts/dts-private-fields.js).
      const fixed = spawnSync(
        process.execPath,
        [path.join(PACKAGE_ROOT, 'scripts', 'dts-private-fields.js')],
        { cwd: PACKAGE_ROOT, encoding: 'utf8' },
      );
      if (fixed.status !== 0) {
        throw new Error(`scripts/dts-private-fields.js failed:\n${fixed.stdout}${fixed.stderr}`);
      }
    } finally {
      fs.rmSync(LOCK, { recursive: true, force: true });
    }
  }
}

export interface ChildResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `script` with `node -e` in PACKAGE_ROOT. The child gets this process's environment without
 * the SIMD_ADAMW_* variables, plus `env` (an undefined value removes a variable).
 */
export function runNode(script: string, env: Record<string, string | undefined> = {}): ChildResult {
  const merged: Record<string, string | undefined> = {
    ...process.env,
    SIMD_ADAMW_ISA: undefined,
    SIMD_ADAMW_NATIVE: undefined,
    ...env,
  };
  const childEnv = Object.fromEntries(
    Object.entries(merged).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
  const result = spawnSync(process.execPath, ['-e', script], {
    cwd: PACKAGE_ROOT,
    env: childEnv,
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (result.error !== undefined) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** A script that loads the package from `entry` and prints its backend as one JSON line. */
export function printBackendScript(entry = DIST_ENTRY): string {
  return (
    `const { backend } = require(${JSON.stringify(entry)});\n` +
    'console.log(JSON.stringify({ isa: backend.isa, available: backend.available, compiled: backend.compiled }));'
  );
}
