// Types of what the native module (native/binding.cc) exports. Only lib/native.ts loads it; the rest
// of lib/ goes through that file. These are internal: the public API is lib/index.ts.

/** Arrays per tensor in `step`'s `arrays`: param, grad, expAvg, expAvgSq, maxExpAvgSq (or null). */
export type ArraysPerTensor = 5;
/** Float64 scalars per tensor in `step`'s `scalars`, in the order of the native AdamwScalars:
 * beta1, oneMinusBeta1, beta2, oneMinusBeta2, decay, l2, negStepSize, epsHat. */
export type ScalarsPerTensor = 8;

export interface NativeAddon {
  /**
   * One Adam/AdamW step over every tensor described by the three arrays, in one call. The caller
   * (lib/) has validated everything; the addon re-checks types, lengths and overlap within a
   * tensor, and applies nothing unless every tensor passes.
   * @param arrays ARRAYS_PER_TENSOR entries per tensor
   * @param scalars SCALARS_PER_TENSOR entries per tensor, rounded to float32 by the addon
   * @param flags one per tensor: bit 0 amsgrad, bit 1 maximize, bit 2 coupled (Adam L2)
   * @param threads at most this many threads (1..MAX_THREADS); small steps use fewer
   */
  step(
    arrays: (Float32Array | null)[],
    scalars: Float64Array,
    flags: Uint32Array,
    threads: number,
  ): void;
  /**
   * The same step on a libuv worker thread. Argument errors throw synchronously; the promise
   * resolves when every array has been updated. The addon holds references to the arrays until
   * then; the caller must not write, transfer or resize them meanwhile.
   */
  stepAsync(
    arrays: (Float32Array | null)[],
    scalars: Float64Array,
    flags: Uint32Array,
    threads: number,
  ): Promise<void>;
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
  readonly ARRAYS_PER_TENSOR: ArraysPerTensor;
  readonly SCALARS_PER_TENSOR: ScalarsPerTensor;
}
