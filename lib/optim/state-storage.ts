// How each state dtype keeps a param's state tensor, for every optimizer: the arrays (one arena per
// state tensor and storage kind, each param's tensor a view of it), their sizes, their checks and
// their float32 values. optim/optimizer.ts allocates and steps them, optim/memory-estimate.ts
// predicts their bytes, checkpoint/ saves and loads them.
//
//   float32     Float32Array [n]
//   bfloat16    Uint16Array [n]: the high half of each float32's bits (widen: bits << 16)
//   blockwise8  { codes: Uint8Array [n], absmax: Float32Array [ceil(n / 256)] }: element j is
//               map[codes[j]] * absmax[floor(j / 256)], with bitsandbytes' signed or unsigned
//               dynamic map (the spec's StateTensorSpec.map)
//
// A blockwise8 param with fewer than min8bitSize elements keeps float32 state (bitsandbytes' rule:
// for a small tensor the absmax and the quantization error cost more than the bytes saved).
import { markAsUntransferable } from 'node:worker_threads';

import { checkTypedArray, type NamedArray, type TypedArrayKind } from '../core/arrays';
import { rangeError } from '../core/errors';
import { native, opLayout } from '../core/native';
import type { HyperparameterValues } from './hyperparameters';
import type { AnyOptimizerSpec, QuantizationMap, StateDtype } from './spec';

/** A blockwise8 state tensor: one code per element, one absmax per block of 256 elements. */
export interface Blockwise8Tensor {
  readonly codes: Uint8Array;
  readonly absmax: Float32Array;
}

/** One state tensor of one param, as its dtype keeps it. */
export type StateArray = Float32Array | Uint16Array | Blockwise8Tensor;

/** bitsandbytes' default: tensors with fewer elements keep float32 state under 'blockwise8'. */
export const DEFAULT_MIN_8BIT_SIZE = 4096;

/** Elements per absmax of blockwise8 state, as the native op declares it (256). */
export function blockwise8BlockSize(spec: AnyOptimizerSpec): number {
  const op = spec.ops.blockwise8;
  if (op === undefined) throw new Error(`simd-adamw: ${spec.className} has no blockwise8 state`);
  return opLayout(op).blockSize;
}

/** Whether a param of this shape keeps a factored moment under a `factored` spec: 2 or more
 * dimensions, as Hugging Face's Adafactor and CAME decide (`p.dim() >= 2`, [1, n] included). */
export function isFactoredShape(shape: readonly number[]): boolean {
  return shape.length >= 2;
}

/** The [batches, rows, columns] of a param as the native plan takes it: the last dimension is the
 * columns, the one before the rows, the product of the others the batches; [0, 0, 0] for a param
 * the spec does not factor. */
export function matrixShape(
  spec: AnyOptimizerSpec,
  shape: readonly number[],
): [number, number, number] {
  if (spec.factored !== true || !isFactoredShape(shape)) return [0, 0, 0];
  const cols = shape[shape.length - 1] ?? 0;
  const rows = shape[shape.length - 2] ?? 0;
  const batches = shape.slice(0, -2).reduce((product, dim) => product * dim, 1);
  return [batches, rows, cols];
}

/**
 * The length of each of a param's state tensors in spec.state order, null where it keeps none:
 * for a group with hyperparameters `values` (presentWhen) and a param of this shape and length
 * (a factored spec's 'rows'/'cols' tensors for params of 2 or more dimensions, 'unfactored' ones
 * for the others).
 */
export function stateTensorLengths(
  spec: AnyOptimizerSpec,
  values: HyperparameterValues,
  shape: readonly number[],
  length: number,
): (number | null)[] {
  const [batches, rows, cols] = matrixShape(spec, shape);
  const factored = spec.factored === true && isFactoredShape(shape);
  return spec.state.map((tensor) => {
    if (tensor.presentWhen !== undefined && !tensor.presentWhen(values)) return null;
    if (tensor.factoring !== undefined && (tensor.factoring === 'factored') !== factored) {
      return null;
    }
    switch (tensor.shape) {
      case 'param':
        return length;
      case 'rows':
        return batches * rows;
      case 'cols':
        return batches * cols;
    }
  });
}

/** The state dtype a param of `length` elements keeps in a group whose stateDtype is `dtype`. */
export function effectiveStateDtype(
  dtype: StateDtype,
  length: number,
  min8bitSize: number,
): StateDtype {
  return dtype === 'blockwise8' && length < min8bitSize ? 'float32' : dtype;
}

/** Bytes of one state tensor of `length` elements kept as `dtype` (absmax included). */
export function stateTensorBytes(dtype: StateDtype, length: number, blockSize: number): number {
  switch (dtype) {
    case 'float32':
      return 4 * length;
    case 'bfloat16':
      return 2 * length;
    case 'blockwise8':
      return length + 4 * Math.ceil(length / blockSize);
  }
}

/** Bytes of a StateArray as it is held. */
export function stateArrayBytes(array: StateArray): number {
  return ArrayBuffer.isView(array)
    ? array.byteLength
    : array.codes.byteLength + array.absmax.byteLength;
}

/** The plain typed arrays behind a state tensor, each with its name in messages. */
export function namedStateArrays(label: string, array: StateArray): NamedArray[] {
  if (ArrayBuffer.isView(array)) return [{ name: label, array }];
  return [
    { name: `${label}.codes`, array: array.codes },
    { name: `${label}.absmax`, array: array.absmax },
  ];
}

/** The kind and length of each typed array of a `dtype` state tensor of `length` elements. */
export function storageOf(
  dtype: StateDtype,
  length: number,
  blockSize: number,
): readonly { kind: TypedArrayKind; length: number }[] {
  switch (dtype) {
    case 'float32':
      return [{ kind: 'Float32Array', length }];
    case 'bfloat16':
      return [{ kind: 'Uint16Array', length }];
    case 'blockwise8':
      return [
        { kind: 'Uint8Array', length },
        { kind: 'Float32Array', length: Math.ceil(length / blockSize) },
      ];
  }
}

/** Throws unless `array` is a `dtype` state tensor of `length` elements over attached buffers. */
/**
 * Throws unless every absmax of a blockwise8 tensor read from outside (a state dict, a file) is
 * what a step can have written: a finite number >= 0, the largest magnitude of its block. A negative one
 * would dequantize a second moment below 0 (and its square root to NaN, in the param), a NaN or an
 * infinite one would wipe its block; the kernel never writes either. `name(b)` names element b.
 */
export function checkAbsmaxValues(absmax: Float32Array, name: (block: number) => string): void {
  for (let b = 0; b < absmax.length; b++) {
    const value = absmax[b];
    if (!(value >= 0 && value !== Infinity)) {
      throw rangeError(name(b), "a finite number >= 0 (its block's largest magnitude)", value);
    }
  }
}

export function checkStateArray(
  label: string,
  array: unknown,
  dtype: StateDtype,
  length: number,
  blockSize: number,
): StateArray {
  const storage = storageOf(dtype, length, blockSize);
  if (dtype !== 'blockwise8') {
    return checkTypedArray(label, array, storage[0].kind, length) as StateArray;
  }
  if (typeof array !== 'object' || array === null || ArrayBuffer.isView(array)) {
    checkTypedArray(label, array, 'Uint8Array'); // a TypeError naming what it is
  }
  const { codes, absmax } = array as { codes?: unknown; absmax?: unknown };
  return {
    codes: checkTypedArray(`${label}.codes`, codes, 'Uint8Array', length) as Uint8Array,
    absmax: checkTypedArray(
      `${label}.absmax`,
      absmax,
      'Float32Array',
      storage[1].length,
    ) as Float32Array,
  };
}

/** The buffers behind every param's state, one per (state tensor, typed array kind), marked
 * untransferable: state(p) hands out views of them, and a structuredClone or postMessage that lists
 * one must copy it (Node 20) or throw (Node 21+) rather than detach the optimizer's memory, perhaps
 * while a stepAsync is writing it. */
export interface StateArenas {
  /** Each arena with its length, to tell at a glance whether any was detached. */
  readonly arenas: readonly { array: ArrayBufferView; length: number }[];
  /** Each param's state tensors in spec.state order; null where it keeps none. */
  readonly state: readonly (readonly (StateArray | null)[])[];
}

const CONSTRUCTORS = {
  Float32Array,
  Uint16Array,
  Uint8Array,
} as const;

/**
 * Allocates the state of params with these (effective) dtypes; `lengths[i]` is the length of the
 * param's state tensor i, or null where it keeps none (stateTensorLengths). Each state tensor's views are laid end to end in param
 * order, per typed array kind, so a step walks each as one contiguous stream (which the hardware
 * prefetcher follows from one small tensor into the next).
 */
export function allocateState(
  params: readonly { dtype: StateDtype; lengths: readonly (number | null)[] }[],
  tensorCount: number,
  blockSize: number,
): StateArenas {
  const arenas: { array: ArrayBufferView; length: number }[] = [];
  const views: (StateArray | null)[][] = params.map(
    () => new Array<StateArray | null>(tensorCount),
  );
  for (let i = 0; i < tensorCount; i++) {
    // One arena per kind and role: float32 values, bf16 values, codes, absmax.
    const roles = new Map<string, { kind: TypedArrayKind; total: number; next: number }>();
    const roleKey = (dtype: StateDtype, part: number) => `${dtype}.${part}`;
    for (const p of params) {
      const tensorLength = p.lengths[i] ?? null;
      if (tensorLength === null) continue;
      for (const [part, { kind, length }] of storageOf(
        p.dtype,
        tensorLength,
        blockSize,
      ).entries()) {
        const key = roleKey(p.dtype, part);
        const role = roles.get(key) ?? { kind, total: 0, next: 0 };
        role.total += length;
        roles.set(key, role);
      }
    }
    const buffers = new Map<string, ArrayBufferView>();
    for (const [key, role] of roles) {
      const array = new CONSTRUCTORS[role.kind](role.total);
      markAsUntransferable(array.buffer);
      buffers.set(key, array);
      arenas.push({ array, length: role.total });
    }
    const take = (dtype: StateDtype, part: number, length: number) => {
      const key = roleKey(dtype, part);
      const role = roles.get(key);
      const arena = buffers.get(key) as Float32Array | Uint16Array | Uint8Array | undefined;
      if (role === undefined || arena === undefined) throw new Error(`simd-adamw: no arena ${key}`);
      const view = arena.subarray(role.next, role.next + length);
      role.next += length;
      return view;
    };
    for (const [k, p] of params.entries()) {
      const tensorLength = p.lengths[i] ?? null;
      if (tensorLength === null) {
        views[k][i] = null;
        continue;
      }
      const storage = storageOf(p.dtype, tensorLength, blockSize);
      views[k][i] =
        p.dtype === 'blockwise8'
          ? Object.freeze({
              codes: take(p.dtype, 0, storage[0].length) as Uint8Array,
              absmax: take(p.dtype, 1, storage[1].length) as Float32Array,
            })
          : (take(p.dtype, 0, storage[0].length) as Float32Array | Uint16Array);
    }
  }
  return { arenas, state: views };
}

/** The float32 values of a state tensor kept as `dtype`: a new Float32Array. bfloat16 widens
 * (bits << 16); blockwise8 multiplies each code's map value by its block's absmax in float32,
 * the same one rounding the kernel's dequantization does. */
export function stateToFloat32(
  array: StateArray,
  dtype: StateDtype,
  map: QuantizationMap | undefined,
  blockSize: number,
): Float32Array {
  if (dtype === 'float32') return (array as Float32Array).slice();
  if (dtype === 'bfloat16') {
    const halves = array as Uint16Array;
    const bits = new Uint32Array(halves.length);
    for (let j = 0; j < halves.length; j++) bits[j] = halves[j] << 16;
    return new Float32Array(bits.buffer);
  }
  const { codes, absmax } = array as Blockwise8Tensor;
  const values = dynamicMap(map);
  const out = new Float32Array(codes.length);
  // Both factors are float32, so their double product is exact and Math.fround rounds it once.
  for (let j = 0; j < codes.length; j++) {
    out[j] = Math.fround(values[codes[j]] * absmax[Math.floor(j / blockSize)]);
  }
  return out;
}

/** bitsandbytes' dynamic map `map` (256 ascending float32 values), as the addon has it. */
function dynamicMap(map: QuantizationMap | undefined): Float32Array {
  if (map === undefined) throw new Error('simd-adamw: a blockwise8 state tensor needs a map');
  return native.dynamicMaps[map];
}

/** A new zeroed state array of `dtype` and `length` elements (not in an arena: staging). */
export function newStateArray(dtype: StateDtype, length: number, blockSize: number): StateArray {
  const storage = storageOf(dtype, length, blockSize);
  if (dtype === 'float32') return new Float32Array(length);
  if (dtype === 'bfloat16') return new Uint16Array(length);
  return { codes: new Uint8Array(length), absmax: new Float32Array(storage[1].length) };
}

/** A copy of a state array, of the same kind (state dicts hold copies). */
export function copyStateArray(array: StateArray): StateArray {
  return ArrayBuffer.isView(array)
    ? array.slice()
    : { codes: array.codes.slice(), absmax: array.absmax.slice() };
}

/** Copies `from` into `into` (same dtype and length): same-type set copies bytes, so NaN payloads
 * survive. */
export function copyStateInto(into: StateArray, from: StateArray): void {
  if (ArrayBuffer.isView(into)) {
    (into as Float32Array).set(from as Float32Array);
  } else {
    const source = from as Blockwise8Tensor;
    into.codes.set(source.codes);
    into.absmax.set(source.absmax);
  }
}
