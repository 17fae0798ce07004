// Question: how fast can any AdamW step be on this machine, at this size and thread count?
//
// The native stream probe (native/bench/stream-probe.cc) moves exactly the step's bytes (read param,
// grad, expAvg, expAvgSq; write param, expAvg, expAvgSq) with trivial arithmetic. It comes in two
// loops, plain and with software prefetch; which is faster depends on the size and on what else the
// machine's memory is serving, so both are measured and the faster median is the roofline
// (results.ts). The probe runs the repetitions of a sample inside one native call, so its numbers
// carry no per-call JavaScript cost: it is the physical limit.
import { native as addon } from '../lib/core/native';

// TEMPORARY while the bench addon is split out.
const native = addon as unknown as { benchStreamProbe(...args: unknown[]): void };
import type { ThroughputArrays } from './data';
import type { Contender } from './measure';

export function probeContenders(
  arrays: ThroughputArrays,
  threadCounts: readonly number[],
): Contender[] {
  return threadCounts.flatMap((threads) =>
    [false, true].map((prefetch): Contender => ({
      id: `probe/${prefetch ? 'prefetch' : 'plain'}/t${threads}`,
      label: prefetch ? 'stream probe + prefetch' : 'stream probe',
      family: 'probe',
      threads,
      setup(size: number) {
        const { param, grad, expAvg, expAvgSq } = arrays.at(size);
        return {
          run(reps: number) {
            native.benchStreamProbe(param, grad, expAvg, expAvgSq, reps, threads, prefetch);
          },
        };
      },
    })),
  );
}
