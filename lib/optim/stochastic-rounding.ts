// The random bits of stochastic rounding: a counter-based hash of (seed, param index, step, element
// index), never a stream, so a step gives the same bits on every kernel and thread count and a
// resumed run continues exactly. lib/ computes each tensor's key per step (here); the kernel
// derives element i's bits as mix32(key ^ imul(i, 0x9E3779B9)).

/** lowbias32 (Chris Wellons' hash prospector): a uint32 to a well-mixed uint32. */
export function mix32(value: number): number {
  let x = value >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The key of the tensor of param `paramIndex` (0-based, in the optimizer's order) for the step
 * that takes it to 1-based step count `step`, under the optimizer's `seed`. */
export function stochasticRoundingKey(seed: number, paramIndex: number, step: number): number {
  return mix32(mix32(mix32((seed ^ 0x9e3779b9) >>> 0) ^ paramIndex) ^ step);
}
