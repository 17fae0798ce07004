// Question: how fast is one AdamW step on one tensor, per kernel (ISA) and thread count?
//
// Timed through AdamW.step(), the call a training loop makes, one call per step, with the
// optimizer and arrays of data.ts (the roofline probe runs on the same pages). The kernel is chosen
// with backend.setIsa() and the thread setting with the optimizer's `threads` before each sample.
// The per-call cost from JavaScript is included; bench/call-overhead.ts shows it on its own, for
// this call and for the stateless adamwStep(), which validates more per call.
import { backend, type IsaName } from '../lib/index';
import type { ThroughputArrays } from './data';
import type { Contender } from './measure';

export function singleTensorContenders(
  arrays: ThroughputArrays,
  isas: readonly IsaName[],
  threadCounts: readonly number[],
): Contender[] {
  return threadCounts.flatMap((threads) =>
    isas.map((isa): Contender => ({
      id: `simd-adamw/${isa}/t${threads}`,
      label: `simd-adamw ${isa}`,
      family: 'simd-adamw',
      threads,
      isa,
      setup(size: number) {
        const { optimizer } = arrays.at(size);
        return {
          run(reps: number) {
            // Both settings are shared by every contender at this size; each sample sets its own.
            backend.setIsa(isa);
            optimizer.threads = threads;
            for (let r = 0; r < reps; r++) optimizer.step();
          },
        };
      },
    })),
  );
}
