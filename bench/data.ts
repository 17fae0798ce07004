// The arrays every throughput contender works on, allocated once per run and filled from a fixed
// seed, so that all runs (and all contenders within a run) see the same values.
//
// The roofline probe, the simd-adamw step and the plain JS loop all take views of the same four
// arrays: same pages, same alignment, same values. The largest size (64M parameters) is 1 GiB.

/** mulberry32: a small, fast, seeded PRNG; uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fills `array` with uniform values in [low, high) from `seed`. */
export function fillUniform(array: Float32Array, seed: number, low: number, high: number): void {
  const random = seededRandom(seed);
  const span = high - low;
  for (let i = 0; i < array.length; i++) array[i] = low + span * random();
}

/** param, grad, expAvg, expAvgSq of one tensor. */
export interface TensorArrays {
  readonly param: Float32Array;
  readonly grad: Float32Array;
  readonly expAvg: Float32Array;
  readonly expAvgSq: Float32Array;
}

export const SEED = 20261126;

/**
 * Allocates and fills the four arrays for `length` parameters. Gradients are bounded away from
 * denormals (|g| >= 1e-4), so no contender hits the slow path for subnormal floats after many steps.
 */
export function makeTensorArrays(length: number, seed = SEED): TensorArrays {
  const param = new Float32Array(length);
  const grad = new Float32Array(length);
  const expAvg = new Float32Array(length);
  const expAvgSq = new Float32Array(length);
  fillUniform(param, seed, -0.1, 0.1);
  fillUniform(grad, seed + 1, 1e-4, 1e-2);
  const random = seededRandom(seed + 2);
  for (let i = 0; i < length; i++) if (random() < 0.5) grad[i] = -grad[i];
  return { param, grad, expAvg, expAvgSq };
}

/** The first `length` elements of each array, as views (no copy). */
export function viewOf(arrays: TensorArrays, length: number): TensorArrays {
  return {
    param: arrays.param.subarray(0, length),
    grad: arrays.grad.subarray(0, length),
    expAvg: arrays.expAvg.subarray(0, length),
    expAvgSq: arrays.expAvgSq.subarray(0, length),
  };
}

/** 4K, 64K, 16M; 26.3M (in units of 2^20) for other sizes from 1M up. */
export function formatSize(length: number): string {
  const mebi = 1 << 20;
  const kibi = 1 << 10;
  if (length >= mebi) {
    return length % mebi === 0 ? `${length / mebi}M` : `${(length / mebi).toFixed(1)}M`;
  }
  if (length >= kibi && length % kibi === 0) return `${length / kibi}K`;
  return String(length);
}

/** Parses 4K, 64k, 16M or a plain integer. */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+)([kKmM]?)$/.exec(text.trim());
  if (match === null) return undefined;
  const unit = match[2].toUpperCase();
  const scale = unit === 'K' ? 1 << 10 : unit === 'M' ? 1 << 20 : 1;
  const value = Number(match[1]) * scale;
  return Number.isSafeInteger(value) && value > 0 ? value : undefined;
}
