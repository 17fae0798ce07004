// The arrays every throughput contender works on, allocated once per run and filled from a fixed
// seed, so that all runs (and all contenders within a run) see the same values, and the settings
// every contender shares.
import { AdamW } from '../lib/index';

/** The hyperparameters of every step in the bench: PyTorch's defaults, weight decay 0.01. */
export const STEP_HYPERPARAMETERS = {
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
} as const;

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
 * Allocates the four arrays for `length` parameters: param and grad filled from `seed`, moments
 * zero. Gradients are bounded away from zero (|g| >= 1e-4), so no contender reaches subnormal
 * floats (a slow path) after many steps.
 */
export function makeTensorArrays(length: number, seed = SEED): TensorArrays {
  const { param, grad } = makeParamAndGrad(length, seed);
  return { param, grad, expAvg: new Float32Array(length), expAvgSq: new Float32Array(length) };
}

/** A param in [-0.1, 0.1) and a grad with 1e-4 <= |g| < 1e-2 and random signs, from `seed`. */
export function makeParamAndGrad(
  length: number,
  seed: number,
): { param: Float32Array; grad: Float32Array } {
  const param = new Float32Array(length);
  const grad = new Float32Array(length);
  fillUniform(param, seed, -0.1, 0.1);
  fillUniform(grad, seed + 1, 1e-4, 1e-2);
  const random = seededRandom(seed + 2);
  for (let i = 0; i < length; i++) if (random() < 0.5) grad[i] = -grad[i];
  return { param, grad };
}

/** The arrays of the throughput questions at one size, and the optimizer that owns the moments. */
export interface SizedArrays extends TensorArrays {
  readonly optimizer: AdamW;
}

/**
 * A param and a grad of the largest size, allocated and filled once; for each size, an AdamW over
 * views of their first `size` elements. Its moments (zero-copy views from state()) are the expAvg
 * and expAvgSq of every contender at that size, so the roofline probe, the simd-adamw step and the
 * plain JS loop all run on the same pages, with the same alignment. At 64M parameters that is
 * 1 GiB; the optimizer of the previous size is dropped when the next size starts.
 */
export class ThroughputArrays {
  readonly #param: Float32Array;
  readonly #grad: Float32Array;
  #current: SizedArrays | undefined;

  constructor(maxSize: number) {
    const { param, grad } = makeParamAndGrad(maxSize, SEED);
    this.#param = param;
    this.#grad = grad;
  }

  at(size: number): SizedArrays {
    if (this.#current?.param.length === size) return this.#current;
    this.#current = undefined;
    const param = this.#param.subarray(0, size);
    const grad = this.#grad.subarray(0, size);
    const handle = { data: param, grad };
    const { lr, beta1, beta2, eps, weightDecay } = STEP_HYPERPARAMETERS;
    const optimizer = new AdamW([handle], { lr, betas: [beta1, beta2], eps, weightDecay });
    const { expAvg, expAvgSq } = optimizer.state(handle);
    this.#current = { param, grad, expAvg, expAvgSq, optimizer };
    return this.#current;
  }
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
