// Loads the compiled addon, once, explains what to do when it is missing, and types what it exports.
//
// The addon (native/binding.cc) declares its own layouts: each op's arrays, scalars and flags
// (native.ops) and the fused step's control array (native.control) come from it as data, so this
// package states none of those numbers a second time. Only this file loads the addon.
//
// SIMD_ADAMW_NATIVE=/path/to/simd_adamw.node loads a specific build instead (a sanitizer or debug
// build, for example); otherwise build/Release/simd_adamw.node under the package root.
import * as fs from 'node:fs';
import * as path from 'node:path';
import bindings from 'bindings';

/** How one native op lays out a tensor's arrays and a scalar set (declared in native/ops/). */
export interface NativeOpLayout {
  /** The arrays of one tensor, in order: 'param', 'grad', then the op's state arrays. */
  readonly arrays: readonly string[];
  /** Arrays that may be null, each with the flag that needs it (adamw: maxExpAvgSq with amsgrad). */
  readonly optionalArrays: Readonly<Record<string, string>>;
  /** The per-step scalars of a scalar set, in order; doubles here, rounded to float32 natively. */
  readonly scalars: readonly string[];
  /** Flag name to bit. */
  readonly flags: Readonly<Record<string, number>>;
}

/** Indices into the fused step's Float64Array `control` (lib/ writes the inputs, the step the
 * outputs), and the bits of its `options` element. */
export interface ControlLayout {
  readonly maxNorm: number;
  readonly gradScale: number;
  readonly options: number;
  readonly gradNorm: number;
  readonly gradFactor: number;
  readonly skipped: number;
  readonly clipped: number;
  readonly nonFiniteTensor: number;
  readonly length: number;
  readonly optionMeasureNorm: number;
  readonly optionSkipNonFinite: number;
}

declare const planBrand: unique symbol;
/** A step's arrays, gathered and checked once by the addon (createPlan), which holds them. */
export interface NativePlan {
  readonly [planBrand]: true;
}

/** What runPlan and runPlanAsync take: the plan, this step's scalar sets (scalars and a flags
 * word each), each tensor's set, the thread limit, and the fused step's control if any. */
export type RunPlanArguments = [
  plan: NativePlan,
  scalars: Float64Array,
  flags: Uint32Array,
  tensorSet: Uint32Array,
  threads: number,
  control?: Float64Array,
];

export interface NativeAddon {
  readonly ops: Readonly<Partial<Record<string, NativeOpLayout>>>;
  readonly control: ControlLayout;
  /** The largest `threads` a step accepts. */
  readonly MAX_THREADS: number;
  /**
   * Checks and holds `op`'s arrays for a run of tensors (`arrays.length / ops[op].arrays.length`
   * of them, each tensor's arrays in the op's order; null only for an optional array): every
   * non-null entry a Float32Array, equal lengths within a tensor, no two arrays sharing a byte.
   */
  createPlan(op: string, arrays: readonly (Float32Array | null)[]): NativePlan;
  /**
   * One step of every tensor of `plan`. Tensor k runs with scalar set `tensorSet[k]`: its scalars
   * `scalars[set * nScalars ..]` and its flags `flags[set]`. With `control`, the fused step
   * (gradient norm, non-finite skip, clipping, unscaling). Everything is checked before any array
   * is written. The plan does not re-read its arrays: the caller makes sure each is still the same
   * length (a detached or shrunk buffer reads as 0), and makes a new plan when not.
   */
  runPlan(...args: RunPlanArguments): void;
  /** {@link runPlan} on a libuv worker thread; argument errors throw synchronously. */
  runPlanAsync(...args: RunPlanArguments): Promise<void>;
  /** The L2 norm of all the arrays' elements, from the canonical double-precision sum of squares
   * (native/ops/sum-squares.h): bitwise the same on every ISA and thread count. */
  gradNorm(grads: readonly Float32Array[], threads: number): number;
  /** Indices [i, j], i < j, of two arrays that share a byte of memory, or null. */
  findOverlap(arrays: readonly Float32Array[]): [number, number] | null;
  /** Names of every kernel compiled into this binary, best first. */
  compiledIsas(): string[];
  /** Names of the compiled kernels this CPU and OS can run, best first. */
  availableIsas(): string[];
  /** Name of the kernel in use. */
  activeIsa(): string;
  /** Switches kernel; false if unknown or not runnable here (nothing changes then). */
  setIsa(name: string): boolean;
}

// The folder holding our package.json: the checkout, or the installed package.
function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return start;
  }
}

const packageRoot = findPackageRoot(__dirname);

// What every build of the addon exports; anything else at the path is not this version's binary.
const REQUIRED_FUNCTIONS = [
  'createPlan',
  'runPlan',
  'runPlanAsync',
  'gradNorm',
  'findOverlap',
  'compiledIsas',
  'availableIsas',
  'activeIsa',
  'setIsa',
];
const REQUIRED_DATA = ['ops', 'control', 'MAX_THREADS'];

function loadAddon(): NativeAddon {
  const explicitPath = process.env.SIMD_ADAMW_NATIVE;
  try {
    const addon: unknown =
      explicitPath !== undefined && explicitPath !== ''
        ? // eslint-disable-next-line @typescript-eslint/no-require-imports
          require(path.resolve(explicitPath))
        : bindings({ bindings: 'simd_adamw.node', module_root: packageRoot });
    const exports = (addon ?? {}) as Record<string, unknown>;
    const missing = [
      ...REQUIRED_FUNCTIONS.filter((name) => typeof exports[name] !== 'function'),
      ...REQUIRED_DATA.filter((name) => exports[name] === undefined),
    ];
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

/** The layout of `op`, which this version of lib/ needs the addon to have. */
export function opLayout(op: string): NativeOpLayout {
  const layout = native.ops[op];
  if (layout === undefined) {
    throw new Error(`simd-adamw: the native addon has no op '${op}' (a build of another version?)`);
  }
  return layout;
}
