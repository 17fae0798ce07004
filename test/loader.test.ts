// Loading the native addon (lib/core/native.ts), in child processes on the built package: when the binary
// is missing (npm 11 skips the install scripts of dependencies that are not approved) or
// SIMD_ADAMW_NATIVE names one that cannot be loaded, the error says how to build it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  BUILT_ADDON,
  DIST_ENTRY,
  ensureDist,
  PACKAGE_ROOT,
  printBackendScript,
  runNode,
} from './helpers/child';

beforeAll(() => ensureDist(), 200_000);

const temporaryDirs: string[] = [];
afterAll(() => {
  for (const dir of temporaryDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function temporaryDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-loader-'));
  temporaryDirs.push(dir);
  return dir;
}

/** Asserts a failed load whose message explains both ways to get the binary built in `root`. */
function expectBuildInstructions(stderr: string, root: string): void {
  expect(stderr).toContain('simd-adamw: could not load the native addon');
  expect(stderr).toContain(`cd ${root} && npx cmake-js compile`);
  expect(stderr).toContain('npm install-scripts approve simd-adamw && npm rebuild simd-adamw');
}

describe('a native binary that cannot be loaded', () => {
  test('SIMD_ADAMW_NATIVE=/nonexistent/simd_adamw.node: loading fails and says how to build', () => {
    const result = runNode(printBackendScript(), {
      SIMD_ADAMW_NATIVE: '/nonexistent/simd_adamw.node',
    });
    expect(result.status).not.toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('SIMD_ADAMW_NATIVE=/nonexistent/simd_adamw.node');
    expectBuildInstructions(result.stderr, PACKAGE_ROOT);
  });

  test('an installed copy whose install script did not run (no build/): same guidance, for that copy', () => {
    // What npm leaves when it skips the install script: package.json and dist/, no build/.
    const root = temporaryDir();
    fs.copyFileSync(path.join(PACKAGE_ROOT, 'package.json'), path.join(root, 'package.json'));
    fs.cpSync(path.dirname(DIST_ENTRY), path.join(root, 'dist', 'lib'), { recursive: true });
    const result = runNode(printBackendScript(path.join(root, 'dist', 'lib', 'index.js')), {
      NODE_PATH: path.join(PACKAGE_ROOT, 'node_modules'), // for `bindings`
    });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain(`build/Release/simd_adamw.node under ${root}`);
    expectBuildInstructions(result.stderr, root);
  });

  test('a file that is not a shared library: same guidance', () => {
    const fake = path.join(temporaryDir(), 'simd_adamw.node');
    fs.writeFileSync(fake, 'not an ELF file\n');
    const result = runNode(printBackendScript(), { SIMD_ADAMW_NATIVE: fake });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain(`SIMD_ADAMW_NATIVE=${fake}`);
    expectBuildInstructions(result.stderr, PACKAGE_ROOT);
  });

  test('a module that is not this addon (a plain JS file): same guidance, not a TypeError later', () => {
    const fake = path.join(temporaryDir(), 'not-the-addon.js');
    fs.writeFileSync(fake, 'module.exports = {};\n');
    const result = runNode(printBackendScript(), { SIMD_ADAMW_NATIVE: fake });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain(`SIMD_ADAMW_NATIVE=${fake}`);
    expectBuildInstructions(result.stderr, PACKAGE_ROOT);
  });
});

describe('SIMD_ADAMW_NATIVE naming a good build', () => {
  test('loads it', () => {
    const result = runNode(printBackendScript(), { SIMD_ADAMW_NATIVE: BUILT_ADDON });
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: '' });
    const { isa, available } = JSON.parse(result.stdout) as { isa: string; available: string[] };
    expect(available).toContain(isa);
  });
});
