// Loading the native addon (lib/core/native.ts), in child processes on the built package: when the binary
// is missing (a platform without a prebuild, where nothing built it from source: npm 11 warns about
// and runs a dependency's install script, npm 12 blocks it by default) or
// SIMD_ADAMW_NATIVE names one that cannot be loaded, the error says how to build it; when
// SIMD_ADAMW_NATIVE names no file, it says so instead.
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

/** Asserts a failed load whose message says how to build from source in `root`. */
function expectBuildInstructions(stderr: string, root: string): void {
  expect(stderr).toContain(
    `cd ${root} && npm install --no-save cmake-js@8 node-addon-api@8 && npx cmake-js compile`,
  );
  expect(stderr).toContain(
    'or point SIMD_ADAMW_NATIVE at a simd_adamw.node built for this platform',
  );
}

const PLATFORM = `${process.platform}-${process.arch}`;

/** A copy of the package as npm installs it (package.json and dist/lib/, no build/), to which a
 * test adds the binaries it wants; returns its root. */
function installedCopy(binaries: { build?: string; prebuild?: string } = {}): string {
  const root = temporaryDir();
  fs.copyFileSync(path.join(PACKAGE_ROOT, 'package.json'), path.join(root, 'package.json'));
  fs.cpSync(path.dirname(DIST_ENTRY), path.join(root, 'dist', 'lib'), { recursive: true });
  const place = (from: string | undefined, ...to: string[]) => {
    if (from === undefined) return;
    fs.mkdirSync(path.join(root, ...to.slice(0, -1)), { recursive: true });
    fs.copyFileSync(from, path.join(root, ...to));
  };
  place(binaries.build, 'build', 'Release', 'simd_adamw.node');
  place(binaries.prebuild, 'prebuilds', PLATFORM, 'simd_adamw.node');
  return root;
}

function notAnAddon(): string {
  const fake = path.join(temporaryDir(), 'simd_adamw.node');
  fs.writeFileSync(fake, 'not an ELF file\n');
  return fake;
}

describe('no native binary, or one that cannot be loaded', () => {
  test.each([
    ['/nonexistent/simd_adamw.node', '/nonexistent/simd_adamw.node'],
    ['a relative path', path.join('nonexistent', 'simd_adamw.node')],
  ])(
    'SIMD_ADAMW_NATIVE=%s that does not exist: a RangeError saying so, without build advice',
    (_what, given) => {
      const result = runNode(printBackendScript(), { SIMD_ADAMW_NATIVE: given });
      expect(result.status).not.toBe(0);
      expect(result.stdout).toBe('');
      expect(result.stderr).toContain(
        `RangeError: Expected the path of a simd_adamw.node for SIMD_ADAMW_NATIVE but received ` +
          `'${given}', which does not exist (${path.resolve(PACKAGE_ROOT, given)}); fix the path, ` +
          "or unset the variable to load the package's own build or prebuild",
      );
      // The advice for a package without a binary would mislead here.
      expect(result.stderr).not.toContain('no native addon');
      expect(result.stderr).not.toContain('cmake-js');
    },
  );

  test('an installed copy with neither a build nor a prebuild: names both places, for that copy', () => {
    const root = installedCopy();
    const result = runNode(printBackendScript(path.join(root, 'dist', 'lib', 'index.js')));
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain(
      `${path.join(root, 'build', 'Release', 'simd_adamw.node')} (a build from source)`,
    );
    expect(result.stderr).toContain(
      `${path.join(root, 'prebuilds', PLATFORM, 'simd_adamw.node')} (the ${PLATFORM} prebuild)`,
    );
    expect(result.stderr).toContain('prebuilt binaries ship for linux-x64 and linux-arm64');
    expectBuildInstructions(result.stderr, root);
  });

  test('a file that is not a shared library: fails with the reason, says how to build', () => {
    const fake = notAnAddon();
    const result = runNode(printBackendScript(), { SIMD_ADAMW_NATIVE: fake });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain(
      `simd-adamw: could not load the native addon (SIMD_ADAMW_NATIVE=${fake})`,
    );
    expectBuildInstructions(result.stderr, PACKAGE_ROOT);
  });

  test('a module that is not this addon (a plain JS file): same guidance, not a TypeError later', () => {
    const fake = path.join(temporaryDir(), 'not-the-addon.js');
    fs.writeFileSync(fake, 'module.exports = {};\n');
    const result = runNode(printBackendScript(), { SIMD_ADAMW_NATIVE: fake });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain(`SIMD_ADAMW_NATIVE=${fake}`);
    expect(result.stderr).toContain("the module loaded is not this version's addon");
    expectBuildInstructions(result.stderr, PACKAGE_ROOT);
  });

  test('a broken build from source is an error, not a silent fall back to the prebuild', () => {
    const root = installedCopy({ build: notAnAddon(), prebuild: BUILT_ADDON });
    const result = runNode(printBackendScript(path.join(root, 'dist', 'lib', 'index.js')));
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain(', a build from source)');
    expectBuildInstructions(result.stderr, root);
  });
});

describe('a binary that loads', () => {
  const expectLoaded = (result: { status: number | null; stdout: string; stderr: string }) => {
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: '' });
    const { isa, available } = JSON.parse(result.stdout) as { isa: string; available: string[] };
    expect(available).toContain(isa);
  };

  test('SIMD_ADAMW_NATIVE naming a good build: loads it', () => {
    expectLoaded(runNode(printBackendScript(), { SIMD_ADAMW_NATIVE: BUILT_ADDON }));
  });

  test("an installed copy with only the platform's prebuild: loads it (no compiler involved)", () => {
    const root = installedCopy({ prebuild: BUILT_ADDON });
    expectLoaded(runNode(printBackendScript(path.join(root, 'dist', 'lib', 'index.js'))));
  });

  test('a build from source comes before the prebuild', () => {
    const root = installedCopy({ build: BUILT_ADDON, prebuild: notAnAddon() });
    expectLoaded(runNode(printBackendScript(path.join(root, 'dist', 'lib', 'index.js'))));
  });

  test('SIMD_ADAMW_NATIVE comes before both', () => {
    const root = installedCopy({ build: notAnAddon(), prebuild: notAnAddon() });
    expectLoaded(
      runNode(printBackendScript(path.join(root, 'dist', 'lib', 'index.js')), {
        SIMD_ADAMW_NATIVE: BUILT_ADDON,
      }),
    );
  });
});
