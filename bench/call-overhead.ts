// Question: what does one step cost from JavaScript when there is almost nothing to update?
//
// Tiny tensors expose the fixed cost of a call: argument checks, the scalars, the N-API crossing.
// Both public entry points are timed: AdamW.step() (reuses its native argument arrays between steps)
// and the stateless adamwStep() (validates and builds them on every call).
import { AdamW, adamwStep, type AdamwStepOptions, backend, type IsaName } from '../lib/index';
import { makeTensorArrays, STEP_HYPERPARAMETERS } from './data';
import type { Contender } from './measure';

export const CALL_OVERHEAD_SIZES = [1, 64, 4096] as const;

export function callOverheadContenders(isa: IsaName): Contender[] {
  return [
    {
      id: 'call/class/t1',
      label: 'AdamW.step()',
      family: 'simd-adamw',
      threads: 1,
      isa,
      setup(size: number) {
        const { param, grad } = makeTensorArrays(size);
        const optimizer = new AdamW([{ data: param, grad }], {
          lr: 1e-3,
          weightDecay: 0.01,
          threads: 1,
        });
        return {
          run(reps: number) {
            backend.setIsa(isa);
            for (let r = 0; r < reps; r++) optimizer.step();
          },
        };
      },
    },
    {
      id: 'call/functional/t1',
      label: 'adamwStep()',
      family: 'simd-adamw',
      threads: 1,
      isa,
      setup(size: number) {
        const { param, grad, expAvg, expAvgSq } = makeTensorArrays(size);
        const options: AdamwStepOptions = { step: 0, ...STEP_HYPERPARAMETERS, threads: 1 };
        return {
          run(reps: number) {
            backend.setIsa(isa);
            for (let r = 0; r < reps; r++) {
              options.step += 1;
              adamwStep(param, grad, expAvg, expAvgSq, options);
            }
          },
        };
      },
    },
  ];
}
