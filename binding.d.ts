// Types of what the native module (native/binding.cc) exports. Only lib/native.ts loads it; the rest
// of lib/ goes through that file. These are internal: the public API is lib/index.ts.

/** Arrays per tensor in `step`'s `arrays`: param, grad, expAvg, expAvgSq, maxExpAvgSq (or null). */
export type ArraysPerTensor = 5;
/** Float64 scalars per tensor in `step`'s `scalars`, in the order of the native AdamwScalars:
 * beta1, oneMinusBeta1, beta2, oneMinusBeta2, decay, l2, negStepSize, epsHat. */
export type ScalarsPerTensor = 8;

/**
 * Elements of the fused step's `control` (native/binding.cc, native/train-step.h); lib/ writes the
 * inputs, the step writes the outputs:
 *  0 maxNorm (in): clip the unscaled gradients to this L2 norm (>= 0), or +Infinity for no clipping
 *  1 gradScale (in): the factor the gradients carry, finite and > 0; 1 for none
 *  2 options (in): bit 0 measure the norm, bit 1 skip the step if any gradient is NaN or Inf
 *  3 gradNorm (out): L2 norm of the unscaled gradients, NaN if not measured
 *  4 gradFactor (out): the float32 factor each gradient was multiplied by (1: none)
 *  5 skipped (out): 1 if nothing was changed
 *  6 clipped (out): 1 if clipped
 *  7 nonFiniteTensor (out): the first tensor whose gradient holds a NaN or Inf, or -1
 */
export type ControlLength = 8;

export interface NativeAddon {
  /**
   * One Adam/AdamW step over every tensor described by the three arrays, in one call. The caller
   * (lib/) has validated everything; the addon re-checks types, lengths and overlap within a
   * tensor, and applies nothing unless every tensor passes.
   * @param arrays ARRAYS_PER_TENSOR entries per tensor
   * @param scalars SCALARS_PER_TENSOR entries per tensor, rounded to float32 by the addon
   * @param flags one per tensor: bit 0 amsgrad, bit 1 maximize, bit 2 coupled (Adam L2)
   * @param threads at most this many threads (1..MAX_THREADS); small steps use fewer
   * @param control the fused step (gradient norm, non-finite skip, clipping, unscaling; see
   *   ControlLength); without it, the plain step
   */
  step(
    arrays: (Float32Array | null)[],
    scalars: Float64Array,
    flags: Uint32Array,
    threads: number,
    control?: Float64Array,
  ): void;
  /**
   * The same step on a libuv worker thread. Argument errors throw synchronously; the promise
   * resolves when every array has been updated. The addon holds references to the arrays until
   * then; the caller must not write, transfer or resize them meanwhile. With `control`, its
   * outputs are written before the promise resolves.
   */
  stepAsync(
    arrays: (Float32Array | null)[],
    scalars: Float64Array,
    flags: Uint32Array,
    threads: number,
    control?: Float64Array,
  ): Promise<void>;
  /** The L2 norm of all the arrays' elements, from the canonical double-precision sum of squares
   * (native/grad-norm.h): bitwise the same on every ISA and thread count. */
  gradNorm(grads: Float32Array[], threads: number): number;
  /** Indices [i, j], i < j, of two arrays that share a byte of memory, or null. */
  findOverlap(arrays: Float32Array[]): [number, number] | null;
  /** How many threads a step of `elements` elements uses when `threads` are allowed. */
  threadsFor(elements: number, threads: number): number;
  /** The largest `threads` a step accepts. */
  readonly MAX_THREADS: number;
  /** Names of every kernel compiled into this binary, best first. */
  compiledIsas(): string[];
  /** Names of the compiled kernels this CPU and OS can run, best first. */
  availableIsas(): string[];
  /** Name of the kernel in use. */
  activeIsa(): string;
  /** Switches kernel; false if unknown or not runnable here (nothing changes then). */
  setIsa(name: string): boolean;
  /**
   * Bench only (bench/roofline.ts; native/bench/stream-probe.cc), not part of the API: `passes`
   * streaming passes with exactly the step's memory traffic (read all four arrays, write param,
   * expAvg, expAvgSq) and trivial arithmetic; its time is the memory roofline of the step. `threads`
   * is the thread setting of the step it stands for: each pass is split across threads exactly as
   * a step of the same length (native/step.cc). `prefetch` selects the loop with software
   * prefetch (the bench takes the faster of the two). The arrays must have equal lengths and must
   * not overlap.
   */
  benchStreamProbe(
    param: Float32Array,
    grad: Float32Array,
    expAvg: Float32Array,
    expAvgSq: Float32Array,
    passes: number,
    threads: number,
    prefetch: boolean,
  ): void;
  readonly ARRAYS_PER_TENSOR: ArraysPerTensor;
  readonly SCALARS_PER_TENSOR: ScalarsPerTensor;
  readonly CONTROL_LENGTH: ControlLength;
}
