// Loads the bench-only addon, simd_adamw_bench.node (native/bench/), once. It holds what the bench
// measures the step against: the roofline probes (AdamW's, the lean states', Lion's) and the plain
// C AdamW loop. It is built beside the released addon by `npx cmake-js compile` in a checkout,
// never shipped, and nothing in lib/ loads it. SIMD_ADAMW_BENCH_NATIVE=/path/to/simd_adamw_bench.node
// loads a specific build.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The probe loops of native/bench/roofline-probes.cc, all with the step's memory traffic. */
export type RooflineProbe =
  | 'adamw-pattern'
  | 'adamw-pattern-prefetch'
  | 'adamw-pattern-256'
  | 'adamw-pattern-256-prefetch'
  | 'add'
  | 'add-prefetch'
  | 'add-256'
  | 'add-256-prefetch'
  | 'adamw-pattern-256-prefetch-far'
  | 'add-prefetch-far'
  | 'add-256-prefetch-far';

/** The loop shapes of the lean-state probes (native/bench/lean-probes.cc). */
export type LeanProbe =
  | 'lean'
  | 'lean-prefetch'
  | 'lean-prefetch-far'
  | 'lean-256'
  | 'lean-256-prefetch'
  | 'lean-256-prefetch-far';

/** What simd_adamw_bench.node exports (native/bench/bench-addon.cc). */
export interface BenchAddon {
  /** The probe names, in the order the addon defines them. */
  readonly rooflineProbes: readonly RooflineProbe[];
  /**
   * `passes` back-to-back passes of `probe` over the four arrays (read all four, write param,
   * expAvg, expAvgSq), each split across up to `threads` threads exactly as a step of the same
   * length.
   */
  benchRooflineProbe(
    param: Float32Array,
    grad: Float32Array,
    expAvg: Float32Array,
    expAvgSq: Float32Array,
    passes: number,
    threads: number,
    probe: RooflineProbe,
  ): void;
  /**
   * `passes` AdamW updates by the plain C loop (native/bench/c-loop.cc), with the float32
   * roundings of `scalars` = [beta1, 1 - beta1, beta2, 1 - beta2, decay, negStepSize, epsHat],
   * split as a step of the same length.
   */
  benchCLoop(
    param: Float32Array,
    grad: Float32Array,
    expAvg: Float32Array,
    expAvgSq: Float32Array,
    scalars: Float64Array,
    passes: number,
    threads: number,
  ): void;
  /** The lean-state probe names, in the order the addon defines them. */
  readonly leanProbes: readonly LeanProbe[];
  /**
   * `passes` passes of `probe` with the memory traffic of a lean-state step: read param, grad
   * (Float32Array or bf16 bits), expAvg and expAvgSq (bf16 bits, or 8-bit codes with one absmax per
   * 256 elements in the two absmax arrays, null for bf16); write param and both moments (and the
   * absmax). Element work: p += widen(g) * delta, m += delta, v += delta, absmax += delta; the
   * bench passes delta 0 (nothing changes), the test 1. Split as a step of the same length.
   */
  benchLeanProbe(
    param: Float32Array,
    grad: Float32Array | Uint16Array,
    expAvg: Uint16Array | Uint8Array,
    expAvgSq: Uint16Array | Uint8Array,
    expAvgAbsmax: Float32Array | null,
    expAvgSqAbsmax: Float32Array | null,
    passes: number,
    threads: number,
    probe: LeanProbe,
    delta: number,
  ): void;
  /**
   * `passes` passes of `probe` (one of leanProbes) with the memory traffic of a Lion step: read
   * param, grad (Float32Array or bf16 bits) and expAvg (float32, bf16 bits, or 8-bit codes with one
   * absmax per 256 elements in expAvgAbsmax, null otherwise); write param and expAvg (and the
   * absmax). Element work: p += widen(g) * delta, m += delta, absmax += delta; the bench passes
   * delta 0 (nothing changes), the test 1. Split as a step of the same length.
   */
  benchLionProbe(
    param: Float32Array,
    grad: Float32Array | Uint16Array,
    expAvg: Float32Array | Uint16Array | Uint8Array,
    expAvgAbsmax: Float32Array | null,
    passes: number,
    threads: number,
    probe: LeanProbe,
    delta: number,
  ): void;
  /** The threads a step of `length` elements uses when `threads` are allowed (native/runner.h). */
  threadsFor(length: number, threads: number): number;
}

function repoRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return start;
  }
}

function load(): BenchAddon {
  const explicitPath = process.env.SIMD_ADAMW_BENCH_NATIVE;
  const root = repoRoot(__dirname);
  let addon: unknown;
  try {
    addon =
      explicitPath !== undefined && explicitPath !== ''
        ? // eslint-disable-next-line @typescript-eslint/no-require-imports
          require(path.resolve(explicitPath))
        : // eslint-disable-next-line @typescript-eslint/no-require-imports
          require(path.join(root, 'build', 'Release', 'simd_adamw_bench.node'));
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new Error(
      `the bench addon simd_adamw_bench.node could not be loaded (${reason}); ` +
        `run \`npx cmake-js compile\` in ${root} (it builds native/bench/bench.cmake)`,
      { cause: error },
    );
  }
  const exports = addon as Partial<BenchAddon> | null;
  if (
    typeof exports?.benchRooflineProbe !== 'function' ||
    typeof exports.benchCLoop !== 'function' ||
    typeof exports.benchLeanProbe !== 'function' ||
    typeof exports.benchLionProbe !== 'function'
  ) {
    throw new Error('the module loaded as simd_adamw_bench.node is not the bench addon');
  }
  return exports as BenchAddon;
}

export const benchNative: BenchAddon = load();
