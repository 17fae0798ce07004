// Question: how fast is one AdamW step on one tensor, per kernel (ISA) and thread count?
//
// Timed through the public functional API, adamwStep(), one call per step, on the same arrays as
// the roofline probe (same pages, same alignment), with PyTorch's default hyperparameters and
// weight decay 0.01. The step count advances every call, as in training. The per-call cost from
// JavaScript is included; bench/call-overhead.ts isolates it.
import { adamwStep, type AdamwStepOptions, backend } from '../lib/index';
import { type TensorArrays, viewOf } from './data';
import type { Contender } from './measure';

export const STEP_HYPERPARAMETERS = {
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
} as const;

export function singleTensorContenders(
  arrays: TensorArrays,
  isas: readonly string[],
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
        const { param, grad, expAvg, expAvgSq } = viewOf(arrays, size);
        const options: AdamwStepOptions = { step: 0, ...STEP_HYPERPARAMETERS, threads };
        return {
          run(reps: number) {
            // The kernel choice is process-wide; every sample sets its own.
            backend.setIsa(isa);
            for (let r = 0; r < reps; r++) {
              options.step += 1;
              adamwStep(param, grad, expAvg, expAvgSq, options);
            }
          },
        };
      },
    })),
  );
}
