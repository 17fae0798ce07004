// The checks every communicator makes of a collective's layout and counts before it moves a byte,
// so that a bad argument is the same RangeError on every rank rather than a transport's failure.
import { rangeError, typeError } from '../core/errors';

/** Checks that `layout` gives each of worldSize ranks segments within tensors of these lengths,
 * in increasing order, disjoint. */
export function checkLayout(
  layout: unknown,
  lengths: readonly number[],
  worldSize: number,
  name: string,
): void {
  const shards = (layout as { shards?: unknown } | null)?.shards;
  if (typeof layout !== 'object' || layout === null || !Array.isArray(shards)) {
    throw typeError(name, 'a ShardLayout { shards: Segment[][] }', layout);
  }
  if (shards.length !== worldSize) {
    throw rangeError(`${name}.shards`, `${worldSize} shards (one per rank)`, shards);
  }
  const owner = lengths.map(() => [] as [number, number][]);
  for (const [q, shard] of (shards as unknown[]).entries()) {
    if (!Array.isArray(shard))
      throw typeError(`${name}.shards[${q}]`, 'an array of segments', shard);
    let last = -1;
    let lastEnd = 0;
    for (const [i, s] of (shard as unknown[]).entries()) {
      const where = `${name}.shards[${q}][${i}]`;
      const segment = (s ?? {}) as { tensor?: unknown; begin?: unknown; end?: unknown };
      const tensor = segment.tensor as number;
      const begin = segment.begin as number;
      const end = segment.end as number;
      if (!Number.isSafeInteger(tensor) || tensor < 0 || tensor >= lengths.length) {
        throw rangeError(`${where}.tensor`, `a tensor index in [0, ${lengths.length})`, tensor);
      }
      if (
        !Number.isSafeInteger(begin) ||
        !Number.isSafeInteger(end) ||
        begin < 0 ||
        begin > end ||
        end > lengths[tensor]
      ) {
        throw rangeError(
          where,
          `0 <= begin <= end <= ${lengths[tensor]} (tensor ${tensor}'s length)`,
          s,
        );
      }
      if (tensor < last || (tensor === last && begin < lastEnd)) {
        throw rangeError(
          where,
          'a segment after the previous one (increasing tensor, then begin)',
          s,
        );
      }
      last = tensor;
      lastEnd = end;
      owner[tensor].push([begin, end]);
    }
  }
  for (const [k, ranges] of owner.entries()) {
    ranges.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < ranges.length; i++) {
      if (ranges[i][0] < ranges[i - 1][1]) {
        throw rangeError(
          `${name}.shards`,
          `disjoint shards (two ranks own elements of tensor ${k})`,
          shards,
        );
      }
    }
  }
}

/** Checks allGatherValues' arguments: `values` has exactly counts[rank] elements. */
export function checkValueCounts(
  values: Float64Array,
  counts: readonly number[],
  rank: number,
  worldSize: number,
): void {
  if (!(values instanceof Float64Array)) throw typeError('values', 'a Float64Array', values);
  if (!Array.isArray(counts) || counts.length !== worldSize) {
    throw typeError('counts', `an array of ${worldSize} counts (one per rank)`, counts);
  }
  for (const [q, count] of counts.entries()) {
    if (!Number.isSafeInteger(count) || count < 0)
      throw rangeError(`counts[${q}]`, 'an integer >= 0', count);
  }
  if (values.length !== counts[rank]) {
    throw rangeError(
      'values',
      `${counts[rank]} values (counts[${rank}], this rank's)`,
      values.length,
    );
  }
}
