// Question: how fast can any AdamW step be on this machine, at this size and thread count?
//
// The native stream probe (native/bench/stream-probe.cc) moves exactly the step's bytes (read param,
// grad, expAvg, expAvgSq; write param, expAvg, expAvgSq) with trivial arithmetic. Its time is the
// memory roofline; every other contender is reported as a fraction of it. It runs the passes inside
// one native call, so its numbers carry no per-call JavaScript cost: it is the physical limit.
import { native } from '../lib/native';
import { type TensorArrays, viewOf } from './data';
import type { Contender } from './measure';

export function rooflineContenders(
  arrays: TensorArrays,
  threadCounts: readonly number[],
): Contender[] {
  return threadCounts.map((threads) => ({
    id: `roofline/t${threads}`,
    label: 'roofline (stream probe)',
    family: 'roofline',
    threads,
    setup(size: number) {
      const { param, grad, expAvg, expAvgSq } = viewOf(arrays, size);
      return {
        run(reps: number) {
          native.benchStreamProbe(param, grad, expAvg, expAvgSq, reps, threads);
        },
      };
    },
  }));
}
