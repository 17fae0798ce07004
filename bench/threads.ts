// Which thread settings the bench measures: 1 and every CPU this process may use (the default of
// the `threads` option). Each throughput contender, the roofline probe included, runs at each.
import * as os from 'node:os';

export function threadCounts(): number[] {
  return [...new Set([1, os.availableParallelism()])];
}
