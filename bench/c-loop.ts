// Question: how close is the dispatched SIMD kernel to what the compiler makes of the obvious loop?
//
// The contender is the AdamW update as a plain C++ loop (native/bench/c-loop.cc) with the same
// IEEE operations in the same order as our kernel, compiled -O3 -march=native -ffp-contract=off,
// without the kernel's NaN canonicalisation or prefetch, split across threads as a step is. Like
// the probes it runs all repetitions of a sample in one native call, so it has no per-call cost:
// against it, AdamW.step() from JavaScript pays its call as well as its kernel.
import { benchNative } from './bench-native';
import { STEP_HYPERPARAMETERS, type ThroughputArrays } from './data';
import type { Contender } from './measure';

export interface LoopHyperparameters {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
}

/**
 * The C loop's scalars for AdamW step `step` (1-based), in double as lib/ computes them (PyTorch's
 * formulas, one division per element): [beta1, 1 - beta1, beta2, 1 - beta2, decay, negStepSize,
 * epsHat]. The addon rounds each to float32 once, as the released addon does.
 */
export function cLoopScalars(h: LoopHyperparameters, step: number): Float64Array {
  const biasCorrection1 = 1 - h.beta1 ** step;
  const sqrtBiasCorrection2 = Math.sqrt(1 - h.beta2 ** step);
  return Float64Array.of(
    h.beta1,
    1 - h.beta1,
    h.beta2,
    1 - h.beta2,
    1 - h.lr * h.weightDecay,
    -(h.lr / biasCorrection1) * sqrtBiasCorrection2,
    h.eps * sqrtBiasCorrection2,
  );
}

export function cLoopContenders(
  arrays: ThroughputArrays,
  threadCounts: readonly number[],
): Contender[] {
  // Step 10's scalars for every pass: the per-step scalars cost nothing per element.
  const scalars = cLoopScalars(STEP_HYPERPARAMETERS, 10);
  return threadCounts.map((threads): Contender => ({
    id: `c-loop/t${threads}`,
    label: 'plain C AdamW loop',
    family: 'c-loop',
    threads,
    setup(size: number) {
      const { param, grad, expAvg, expAvgSq } = arrays.at(size);
      return {
        run(reps: number) {
          benchNative.benchCLoop(param, grad, expAvg, expAvgSq, scalars, reps, threads);
        },
      };
    },
  }));
}
