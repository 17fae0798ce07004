// The per-step scalars of the update, computed in double precision as PyTorch computes them in
// Python, in the layout native/binding.cc reads (ScalarsPerTensor in binding.d.ts).
//
// The addon rounds each one to float32 once. None is derived from another float32 value: deriving
// 1 - beta2 from float32(0.9999) would be off by 1.7e-4 relative, which the golden tests catch.

/** Everything one step of one tensor depends on, already validated. */
export interface StepHyperparameters {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
  /** true: AdamW's decoupled decay (p *= 1 - lr*wd); false: Adam's L2 (g += wd*p). */
  decoupled: boolean;
}

export const SCALARS_PER_TENSOR = 8;
export const ARRAYS_PER_TENSOR = 5;

export const FLAG_AMSGRAD = 1;
export const FLAG_MAXIMIZE = 2;
export const FLAG_COUPLED = 4;

/**
 * Writes the scalars of step `step` (1-based) at `scalars[offset..offset+8)` and returns the flags.
 *
 * PyTorch's update is p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps). Multiplying numerator and
 * denominator by sqrt(bc2) gives the same quantity with one division per element:
 * p += negStepSize * m / (sqrt(v) + epsHat), negStepSize = -lr*sqrt(bc2)/bc1, epsHat = eps*sqrt(bc2).
 */
export function writeScalars(
  scalars: Float64Array,
  offset: number,
  h: StepHyperparameters,
  step: number,
): number {
  const biasCorrection1 = 1 - h.beta1 ** step;
  const sqrtBiasCorrection2 = Math.sqrt(1 - h.beta2 ** step);
  // Adam's L2 term only exists when weightDecay != 0 (as in PyTorch), so 0 * Inf never makes a NaN.
  const coupled = !h.decoupled && h.weightDecay !== 0;
  scalars[offset] = h.beta1;
  scalars[offset + 1] = 1 - h.beta1;
  scalars[offset + 2] = h.beta2;
  scalars[offset + 3] = 1 - h.beta2;
  scalars[offset + 4] = h.decoupled ? 1 - h.lr * h.weightDecay : 1;
  scalars[offset + 5] = coupled ? h.weightDecay : 0;
  scalars[offset + 6] = -(h.lr / biasCorrection1) * sqrtBiasCorrection2;
  scalars[offset + 7] = h.eps * sqrtBiasCorrection2;
  return (
    (h.amsgrad ? FLAG_AMSGRAD : 0) | (h.maximize ? FLAG_MAXIMIZE : 0) | (coupled ? FLAG_COUPLED : 0)
  );
}
