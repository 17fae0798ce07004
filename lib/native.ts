// Loads the compiled addon, once, and explains what to do when it is missing.
//
// The binary is built by `cmake-js compile` when this package is installed. npm 11 does not run the
// install scripts of dependencies unless they are approved, so a consumer can end up with no binary;
// the error below says how to build it. SIMD_ADAMW_NATIVE=/path/to/simd_adamw.node loads a specific
// build instead (a sanitizer or debug build, for example).
import * as fs from 'node:fs';
import * as path from 'node:path';
import bindings from 'bindings';

import type { NativeAddon } from '../binding';

// The folder holding our package.json: lib/ in a checkout, dist/lib/ when installed.
function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return start;
  }
}

const packageRoot = findPackageRoot(__dirname);

// What every build of the addon exports; anything else at the path is not our binary.
const REQUIRED_EXPORTS = [
  'step',
  'stepAsync',
  'findOverlap',
  'threadsFor',
  'setIsa',
  'activeIsa',
  'gradNorm',
];

function loadAddon(): NativeAddon {
  const explicitPath = process.env.SIMD_ADAMW_NATIVE;
  try {
    const addon: unknown =
      explicitPath !== undefined && explicitPath !== ''
        ? // eslint-disable-next-line @typescript-eslint/no-require-imports
          require(path.resolve(explicitPath))
        : bindings({ bindings: 'simd_adamw.node', module_root: packageRoot });
    const missing = REQUIRED_EXPORTS.filter(
      (name) => typeof (addon as Record<string, unknown> | null)?.[name] !== 'function',
    );
    if (missing.length > 0) {
      throw new Error(
        `the module loaded is not this version's addon (missing ${missing.join(', ')})`,
      );
    }
    return addon as NativeAddon;
  } catch (cause) {
    const tried =
      explicitPath !== undefined && explicitPath !== ''
        ? `SIMD_ADAMW_NATIVE=${explicitPath}`
        : `build/Release/simd_adamw.node under ${packageRoot}`;
    throw new Error(
      `simd-adamw: could not load the native addon (${tried}).\n` +
        'It is compiled when the package is installed; if npm skipped the install script ' +
        '(npm 11 runs dependency install scripts only when approved), either:\n' +
        `  - build it: cd ${packageRoot} && npx cmake-js compile   (needs cmake >= 3.15 and a C++17 compiler)\n` +
        '  - or approve the script and reinstall: npm install-scripts approve simd-adamw && npm rebuild simd-adamw',
      { cause },
    );
  }
}

export const native: NativeAddon = loadAddon();
