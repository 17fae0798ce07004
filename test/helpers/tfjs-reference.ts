// What the adapter's results are compared with: the core optimizer (lib/optim/) stepping plain
// Float32Arrays, and ways to read tfjs variables and optimizer state as exact bits.
import * as tf from '@tensorflow/tfjs-core';

import { Adafactor, Adam, AdamW, CAME, Lion } from '../../lib';
import type { AnyOptimizer } from '../../lib/optim/optimizer';
import type { Param } from '../../lib/optim/params';
import type { SimdOptimizer } from '../../lib/tfjs';
import { gaussian, mulberry32 } from './random';

/** The core class for each adapter's className. */
export const CORE_CLASSES = {
  SimdAdamW: AdamW,
  SimdAdam: Adam,
  SimdLion: Lion,
  SimdAdafactor: Adafactor,
  SimdCAME: CAME,
} as const;
export type AdapterName = keyof typeof CORE_CLASSES;

/** Seeded normal values: the same for every run. */
export function normalArray(length: number, seed: number, scale = 1): Float32Array {
  const normal = gaussian(mulberry32(seed));
  return Float32Array.from({ length }, () => normal() * scale);
}

/** The gradient of variable `k` at step `step`: seeded, different for every (step, k). */
export function gradientValues(size: number, step: number, k: number): Float32Array {
  return normalArray(size, 7919 * (step + 1) + 104729 * (k + 1), 0.1);
}

/** One variable of a test: its shape and name (tfjs variable names must be unique per engine). */
export interface VariableSpec {
  readonly name: string;
  readonly shape: readonly number[];
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Fresh tfjs variables from seeded values (seed k for the k-th). */
export function makeVariables(specs: readonly VariableSpec[]): tf.Variable[] {
  // tidy disposes the initial tensors: nothing shares the variables' storage.
  return tf.tidy(() =>
    specs.map(({ name, shape }, k) =>
      tf.variable(tf.tensor(initialValues(shape, k), [...shape]), true, name),
    ),
  );
}

export function initialValues(shape: readonly number[], k: number): Float32Array {
  return normalArray(sizeOf(shape), 1000 + k);
}

/**
 * The core optimizer `name` over copies of the variables' initial values (param k for specs[k],
 * named and shaped as the adapter names and shapes them).
 */
export function coreReference(
  name: AdapterName,
  specs: readonly VariableSpec[],
  options: Record<string, unknown>,
): { optimizer: AnyOptimizer; params: Param[] } {
  const params: Param[] = specs.map(({ name: variableName, shape }, k) => ({
    data: initialValues(shape, k),
    grad: new Float32Array(sizeOf(shape)),
    name: variableName,
    shape: [...shape],
  }));
  const Core = CORE_CLASSES[name] as unknown as new (
    params: Param[],
    options: Record<string, unknown>,
  ) => AnyOptimizer;
  return { optimizer: new Core(params, options), params };
}

/** Raw bits of each variable's current values (copies). */
export function variableBits(variables: readonly tf.Tensor[]): Uint32Array[] {
  return variables.map(
    (v) => new Uint32Array(Float32Array.from(v.dataSync() as Float32Array).buffer),
  );
}

/** Raw bits of each array (copies). */
export function arrayBits(arrays: readonly Float32Array[]): Uint32Array[] {
  return arrays.map((a) => new Uint32Array(a.slice().buffer));
}

function base64(array: ArrayBufferView): string {
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength).toString('base64');
}

/**
 * A core optimizer's state as plain data that jest compares fast and exactly: every typed array
 * as the base64 of its bytes. Parameter names are left out (a reloaded model renames its
 * variables; state is matched by position).
 */
export function stateFingerprint(optimizer: AnyOptimizer): unknown {
  const dict = optimizer.stateDict() as {
    state: Record<string, unknown>[];
    paramGroups: unknown;
  };
  const plain = (value: unknown): unknown => {
    if (ArrayBuffer.isView(value)) return base64(value);
    if (Array.isArray(value)) return value.map(plain);
    if (typeof value === 'object' && value !== null) {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
    }
    return value;
  };
  return {
    state: dict.state.map((entry) =>
      plain(Object.fromEntries(Object.entries(entry).filter(([key]) => key !== 'name'))),
    ),
    paramGroups: plain(dict.paramGroups),
  };
}

/** The adapter's core optimizer (made at its first step). */
export function coreOf(optimizer: SimdOptimizer): AnyOptimizer {
  const core = optimizer.core;
  if (core === null) throw new Error('the adapter has not stepped yet');
  return core;
}

/** Each parameter's step count in the adapter's core optimizer. */
export function stepCounts(optimizer: SimdOptimizer): number[] {
  return (coreOf(optimizer).stateDict() as { state: { step: number }[] }).state.map((s) => s.step);
}
