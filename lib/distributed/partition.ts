// How ZeRO-1 splits the params among ranks (docs/distributed.md, "Partitioning").
//
// Elementwise optimizers (AdamW, Adam, Lion): every group's params laid end to end, n elements in
// all, cut into worldSize contiguous ranges by DeepSpeed's rule, floor(n / worldSize) elements
// each and one more for each of the first n % worldSize ranks; then every cut that falls inside a
// tensor moves down to the start of the 4096-element block it falls in (blocks counted from the
// tensor's first element). A tensor may span ranks. The move is what keeps the sharded step
// bitwise the unsharded one: the global gradient norm is summed in blocks of 4096 elements of each
// tensor (native/grad-norm.h), and blockwise8 state quantizes blocks of 256 of them, so no block
// may be cut between two ranks. A rank gets at most 4095 elements fewer or more than the rule's
// count; with n < 4096 * worldSize some ranks get none.
//
// Optimizers that reduce over a whole tensor (Adafactor and CAME: row and column means) get whole
// tensors instead, greedily as PyTorch's ZeroRedundancyOptimizer assigns them: largest first
// (ties: lower index first), each to the rank with the fewest elements so far (ties: the lower
// rank). A rank's tensors are then not contiguous, and the balance is only as good as the sizes
// allow (one tensor larger than n / worldSize makes its rank the largest).
import type { Segment, ShardLayout } from './communicator';

/** The gradient norm's block (native/ops/sum-squares.h, kSumSquaresBlock); blockwise8's 256
 * divides it. */
export const PARTITION_ALIGNMENT = 4096;

/** 'elements': contiguous ranges (elementwise optimizers); 'tensors': whole tensors, greedily. */
export type PartitionMode = 'elements' | 'tensors';

/** The partition of tensors of these lengths (in the optimizer's order) among worldSize ranks. */
export function partitionTensors(
  lengths: readonly number[],
  worldSize: number,
  mode: PartitionMode,
): ShardLayout {
  return mode === 'elements'
    ? partitionElements(lengths, worldSize)
    : partitionWhole(lengths, worldSize);
}

function partitionElements(lengths: readonly number[], worldSize: number): ShardLayout {
  const starts: number[] = [];
  let total = 0;
  for (const length of lengths) {
    starts.push(total);
    total += length;
  }
  // DeepSpeed's cuts, each moved down to a block start of the tensor it falls inside.
  const per = Math.floor(total / worldSize);
  const extra = total % worldSize;
  const cuts: number[] = [];
  let t = 0;
  for (let r = 0; r <= worldSize; r++) {
    let cut = r * per + Math.min(r, extra);
    if (r > 0 && r < worldSize) {
      // The tensor holding element `cut`: the last with start <= cut and a nonempty length.
      while (t + 1 < lengths.length && starts[t + 1] <= cut) t++;
      const offset = cut - starts[t];
      if (offset > 0 && offset < lengths[t]) {
        cut = starts[t] + offset - (offset % PARTITION_ALIGNMENT);
      }
    }
    cuts.push(cut);
  }
  const shards: Segment[][] = [];
  for (let r = 0; r < worldSize; r++) {
    const begin = cuts[r];
    const end = cuts[r + 1];
    const segments: Segment[] = [];
    for (let k = 0; k < lengths.length; k++) {
      const a = Math.max(begin, starts[k]);
      const b = Math.min(end, starts[k] + lengths[k]);
      if (a < b)
        segments.push(Object.freeze({ tensor: k, begin: a - starts[k], end: b - starts[k] }));
    }
    shards.push(segments);
  }
  return Object.freeze({ shards: Object.freeze(shards.map((s) => Object.freeze(s))) });
}

function partitionWhole(lengths: readonly number[], worldSize: number): ShardLayout {
  const order = lengths.map((_, k) => k).sort((a, b) => lengths[b] - lengths[a] || a - b);
  const loads = new Array<number>(worldSize).fill(0);
  const owned: number[][] = loads.map(() => []);
  for (const k of order) {
    let rank = 0;
    for (let q = 1; q < worldSize; q++) if (loads[q] < loads[rank]) rank = q;
    loads[rank] += lengths[k];
    owned[rank].push(k);
  }
  const shards = owned.map((tensors) =>
    Object.freeze(
      tensors
        .sort((a, b) => a - b)
        .map((k) => Object.freeze({ tensor: k, begin: 0, end: lengths[k] })),
    ),
  );
  return Object.freeze({ shards: Object.freeze(shards) });
}

/** The number of elements of a rank's segments. */
export function shardLength(segments: readonly Segment[]): number {
  let n = 0;
  for (const s of segments) n += s.end - s.begin;
  return n;
}
