// Loads the compiled addon, once, explains what to do when there is none, and types what it
// exports.
//
// The addon (native/binding.cc) declares its own layouts: each op's arrays, scalars and flags
// (native.ops) and the fused step's control array (native.control) come from it as data, so this
// package states none of those numbers a second time. Only this file loads the addon.
//
// Which binary, in order (the first that exists is loaded; a broken one is an error, not a reason
// to try the next):
//   1. SIMD_ADAMW_NATIVE=/path/to/simd_adamw.node, an explicit file (a sanitizer or debug build);
//   2. build/Release/simd_adamw.node under the package root: a build from source (the repo itself,
//      or a platform without a prebuilt binary);
//   3. prebuilds/<platform>-<arch>/simd_adamw.node: the binary shipped in the package (prebuildify's
//      layout; linux-x64 and linux-arm64), so installing needs no compiler and no install script.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** What a native op's array holds: a Float32Array ('float32'), a Uint16Array of bf16 bits
 * ('bfloat16'), a Uint8Array ('uint8'), or the gradient ('grad': a Float32Array, or a Uint16Array
 * of bf16 or fp16 bits, per the tensor's grad dtype). */
export type NativeArrayType = 'float32' | 'bfloat16' | 'uint8' | 'grad';

/** How long a native op's array is: the param's length, or one element per block of `blockSize`
 * elements (ceil(length / blockSize)), or, for a factored tensor of shape [batches, R, C]
 * (createPlan's `shapes`), one per row (batches * R: 'rows') or per column (batches * C: 'cols'). */
export type NativeArrayLength = 'param' | 'blocks' | 'rows' | 'cols';

/** A tensor's gradient dtype as createPlan and gradNorm take it (the index into this list). */
export const NATIVE_GRAD_DTYPES = ['float32', 'bfloat16', 'float16'] as const;
export type NativeGradDtype = (typeof NATIVE_GRAD_DTYPES)[number];

/** The typed arrays a native op's arrays can be. */
export type NativeArray = Float32Array | Uint16Array | Uint8Array;

/** How one native op lays out a tensor's arrays and a scalar set (declared in native/ops/). */
export interface NativeOpLayout {
  /** The arrays of one tensor, in order: 'param', 'grad', then the op's state arrays. */
  readonly arrays: readonly string[];
  /** Each array's element type, parallel to `arrays`. */
  readonly arrayTypes: readonly NativeArrayType[];
  /** Each array's length, parallel to `arrays`. */
  readonly arrayLengths: readonly NativeArrayLength[];
  /** 1, or the block of the op's per-block arrays (256 for adamwBlockwise8). */
  readonly blockSize: number;
  /** Ops of one family share scalars and flags; one plan may run a different one per tensor. */
  readonly family: string;
  /** Arrays that may be null, each with the public flag that needs it (adamw: maxExpAvgSq with
   * amsgrad), or 'tensor': present or not per tensor, fixed by the plan (paramBf16), or
   * 'factored' / 'unfactored': present exactly when the tensor's shape is (is not) factored
   * (adafactor, came: the row/column states, expAvgSq). */
  readonly optionalArrays: Readonly<Record<string, string>>;
  /** The per-step scalars of a scalar set, in order; doubles here, rounded to float32 natively. */
  readonly scalars: readonly string[];
  /** Flag name to bit. */
  readonly flags: Readonly<Record<string, number>>;
}

/** Indices into the fused step's Float64Array `control` (lib/ writes the inputs, the step the
 * outputs), and the bits of its `options` element. With `options` exactly optionGivenGradFactor
 * the step measures nothing and multiplies every gradient by float32(control[gradFactor]) (a
 * finite number; maxNorm and gradScale are not read), as if it had computed that factor itself:
 * gradNorm comes back NaN, skipped and clipped 0, nonFiniteTensor -1, gradFactor the float32 used. */
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
  readonly optionGivenGradFactor: number;
}

declare const planBrand: unique symbol;
/** A step's arrays, gathered and checked once by the addon (createPlan), which holds them. */
export interface NativePlan {
  readonly [planBrand]: true;
}

/** What runPlan and runPlanAsync take: the plan, this step's scalar sets (scalars and a flags
 * word each), each tensor's set, the thread limit, the fused step's control if any (undefined for
 * none), and each tensor's stochastic rounding key for this step (required when a set used by an
 * adamwBfloat16 tensor has stochasticRounding; one per tensor). */
export type RunPlanArguments = [
  plan: NativePlan,
  scalars: Float64Array,
  flags: Uint32Array,
  tensorSet: Uint32Array,
  threads: number,
  control?: Float64Array,
  tensorSeeds?: Uint32Array,
];

export interface NativeAddon {
  readonly ops: Readonly<Partial<Record<string, NativeOpLayout>>>;
  readonly control: ControlLayout;
  /** The blockwise8 codes' values (bitsandbytes' dynamic maps, ascending; code = index): signed
   * for expAvg, unsigned for expAvgSq and maxExpAvgSq. Copies: the kernels use their own. */
  readonly dynamicMaps: { readonly signed: Float32Array; readonly unsigned: Float32Array };
  /** The largest `threads` a step accepts. */
  readonly MAX_THREADS: number;
  /**
   * Checks and holds the arrays of a run of tensors: `op` is every tensor's op (then there are
   * `arrays.length / ops[op].arrays.length` tensors), or one op per tensor, all of one family.
   * Each tensor's arrays come in its op's order (null only for an optional array), of its op's
   * arrayTypes (the grad's per `gradDtypes[k]`: 0 float32, 1 bfloat16, 2 float16; absent: all 0)
   * and arrayLengths; no two arrays of the plan may share a byte. `shapes`: 3 per tensor,
   * [batches, R, C] with batches * R * C equal to its length for a factored tensor of a phased op
   * (adafactor, came), [0, 0, 0] for an unfactored one; absent: all unfactored. Other ops take
   * only zeros.
   */
  createPlan(
    op: string | readonly string[],
    arrays: readonly (NativeArray | null)[],
    gradDtypes?: Uint8Array,
    shapes?: Uint32Array,
    /** One per tensor: where its element 0 is in the tensor it is a range of (its
     * stochastic-rounding bits are those elements'); absent: all 0. */
    elementOffsets?: Uint32Array,
  ): NativePlan;
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
  /** The L2 norm of all the arrays' elements (grads[k] of dtype gradDtypes[k], as in createPlan;
   * bf16 and fp16 widened exactly), from the canonical double-precision sum of squares
   * (native/ops/sum-squares.h): bitwise the same on every ISA and thread count. */
  gradNorm(
    grads: readonly (Float32Array | Uint16Array)[],
    threads: number,
    gradDtypes?: Uint8Array,
  ): number;
  /** Indices [i, j], i < j, of two views that share a byte of memory, or null. */
  findOverlap(arrays: readonly ArrayBufferView[]): [number, number] | null;
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
const REQUIRED_DATA = ['ops', 'control', 'dynamicMaps', 'MAX_THREADS'];

/** The platform's prebuild folder name, as prebuildify names it: linux-x64, linux-arm64, ... */
const PREBUILD_PLATFORM = `${process.platform}-${process.arch}`;
// musl (Alpine) reports linux too, but the prebuilds need glibc: they do not match there. Node's
// report names the glibc it runs on (as detect-libc reads it); asked once, it costs a millisecond.
let musl: boolean | undefined;
function isMusl(): boolean {
  if (musl === undefined) {
    musl = false;
    if (process.platform === 'linux') {
      const report = process.report.getReport() as { header?: { glibcVersionRuntime?: string } };
      musl = report.header?.glibcVersionRuntime === undefined;
    }
  }
  return musl;
}

/** Where the addon can be, in the order the loader tries them. */
function addonCandidates(): { source: string; file: string }[] {
  const root = packageRoot;
  const explicit = process.env.SIMD_ADAMW_NATIVE;
  if (explicit !== undefined && explicit !== '') {
    return [{ source: 'SIMD_ADAMW_NATIVE', file: path.resolve(explicit) }];
  }
  const candidates = [
    { source: 'a build from source', file: path.join(root, 'build', 'Release', 'simd_adamw.node') },
  ];
  if (!isMusl()) {
    candidates.push({
      source: `the ${PREBUILD_PLATFORM} prebuild`,
      file: path.join(root, 'prebuilds', PREBUILD_PLATFORM, 'simd_adamw.node'),
    });
  }
  return candidates;
}

function buildInstructions(root: string): string {
  return (
    `  build it from source (needs cmake >= 3.15 and a C++17 compiler):\n` +
    `    cd ${root} && npm install --no-save cmake-js@8 node-addon-api@8 && npx cmake-js compile\n` +
    '  or point SIMD_ADAMW_NATIVE at a simd_adamw.node built for this platform.'
  );
}

function loadAddon(): NativeAddon {
  const candidates = addonCandidates();
  const found = candidates.find(({ file }) => fs.existsSync(file));
  const explicit = process.env.SIMD_ADAMW_NATIVE;
  if (found === undefined && explicit !== undefined && explicit !== '') {
    // A wrong path in the variable, not a package without a binary: building or approving install
    // scripts would not help (a RangeError, as for a bad SIMD_ADAMW_ISA).
    throw new RangeError(
      `Expected the path of a simd_adamw.node for SIMD_ADAMW_NATIVE but received '${explicit}', ` +
        `which does not exist (${path.resolve(explicit)}); fix the path, or unset the variable ` +
        "to load the package's own build or prebuild",
    );
  }
  if (found === undefined) {
    throw new Error(
      `simd-adamw: no native addon for ${PREBUILD_PLATFORM}${isMusl() ? ' (musl)' : ''} ` +
        '(prebuilt binaries ship for linux-x64 and linux-arm64 with glibc). Tried:\n' +
        candidates.map(({ source, file }) => `  ${file} (${source})`).join('\n') +
        '\nTo use it here:\n' +
        buildInstructions(packageRoot),
    );
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const addon: unknown = require(found.file);
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
    const where =
      found.source === 'SIMD_ADAMW_NATIVE'
        ? `SIMD_ADAMW_NATIVE=${process.env.SIMD_ADAMW_NATIVE ?? ''}`
        : `${found.file}, ${found.source}`;
    throw new Error(
      `simd-adamw: could not load the native addon (${where}): ` +
        `${cause instanceof Error ? cause.message : String(cause)}\nTo fix it:\n` +
        buildInstructions(packageRoot),
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
