// The one interface between ZeRO-1 (distributed/zero.ts) and whatever carries its bytes between
// ranks: worker threads over shared memory (distributed/threads.ts) or MPI processes
// (distributed/mpi.ts). Four collectives, each called by every rank with the same arguments but
// its own arrays, in the same order on every rank; a rank that does not arrive is a failure the
// other ranks report as an Error, never a hang forever.
//
// Data are described by a layout: for every rank, the runs of tensor elements (segments) it owns,
// in the global order (tensor, then element). The reduction of reduceScatter is in a fixed rank
// order, 0 first, so the reduced gradient is the same bits for every communicator and every run.
import type { GradArray, GradDtype } from '../optim/params';

/** A run of one tensor's elements: `tensor` its index among the optimizer's params (all groups'
 * params end to end, in order), elements [begin, end) of it. */
export interface Segment {
  readonly tensor: number;
  readonly begin: number;
  readonly end: number;
}

/** What each rank owns: `shards[q]` is rank q's segments, in increasing (tensor, begin) order,
 * disjoint from every other rank's. */
export interface ShardLayout {
  readonly shards: readonly (readonly Segment[])[];
}

/** The reductions allReduce offers on a double. */
export type ScalarReduceOp = 'sum' | 'max' | 'min';

/** The collectives of one group of ranks. Every method is collective: all ranks call it, in the
 * same order, with the same layout, counts and op. Each throws an Error (on every rank that can
 * tell) when the group failed: a rank gone, a timeout, the transport's error. */
export interface Communicator {
  /** This rank: 0 .. worldSize - 1. */
  readonly rank: number;
  readonly worldSize: number;
  /** A short name for messages and reports: 'threads', 'mpi'. */
  readonly kind: string;
  /**
   * The gradient reduction. `grads[k]` is this rank's gradient of tensor k (every tensor, all of
   * its elements; `gradDtypes[k]` says what it holds, the same on every rank). On return `out`
   * (a Float32Array of exactly the total length of this rank's segments, in their order) holds,
   * for each element, the ranks' values widened exactly to float32 and added left to right in
   * rank order, float32 additions: ((g0 + g1) + g2) + ..., rank 0's value taken as it is (not
   * 0 + g0), then divided by worldSize (one float32 division) when `average`. No rank's `grads`
   * are written.
   */
  reduceScatter(
    grads: readonly GradArray[],
    gradDtypes: readonly GradDtype[],
    layout: ShardLayout,
    out: Float32Array,
    average: boolean,
  ): void;
  /**
   * In place: on return every rank's `arrays[k]` (tensor k, every element; Float32Array for
   * params, Uint16Array for their bf16 copies: one element type per call) holds, over each rank
   * q's segments, rank q's values. Elements no rank owns are not touched.
   */
  allGather(arrays: readonly (Float32Array | Uint16Array)[], layout: ShardLayout): void;
  /** Every rank's `values` end to end in rank order; rank q passes exactly counts[q] values. */
  allGatherValues(values: Float64Array, counts: readonly number[]): Float64Array;
  /** The reduction of every rank's `value` (sum in rank order, max or min). */
  allReduce(value: number, op: ScalarReduceOp): number;
  /** Returns when every rank has called it. */
  barrier(): void;
}
