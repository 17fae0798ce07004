// Checks of the typed arrays a step reads and writes: their type, that their buffer is attached,
// their length, that no two share memory, and what an asynchronous step needs of their buffers.
import { types } from 'node:util';
import { markAsUntransferable } from 'node:worker_threads';

import { countOf, rangeError, typeError } from './errors';
import { bufferOf, byteLengthOf, isResizable, lengthOf, typedArrayName } from './intrinsics';
import { native } from './native';

/** The typed arrays a step reads and writes. */
export type TypedArrayKind = 'Float32Array' | 'Uint16Array' | 'Uint8Array';
/** A typed array of one of those kinds. */
export type StepArray = Float32Array | Uint16Array | Uint8Array;

const IS_KIND: Readonly<Record<TypedArrayKind, (value: unknown) => boolean>> = {
  Float32Array: (value) => types.isFloat32Array(value),
  Uint16Array: (value) => types.isUint16Array(value),
  Uint8Array: (value) => types.isUint8Array(value),
};

/** True if `array`'s ArrayBuffer was detached (transferred); such a view reads as length 0. */
function isDetached(array: ArrayBufferView): boolean {
  if (byteLengthOf(array) !== 0) return false;
  const buffer = bufferOf(array);
  if (types.isSharedArrayBuffer(buffer)) return false;
  try {
    new Uint8Array(buffer, 0, 0);
    return false;
  } catch {
    return true;
  }
}

/**
 * A Float32Array (from any realm) over an attached buffer, optionally of an exact length.
 * A length mismatch is a RangeError; anything else a TypeError.
 */
export function checkFloat32Array(name: string, value: unknown, length?: number): Float32Array {
  return checkTypedArray(name, value, 'Float32Array', length) as Float32Array;
}

/**
 * A typed array of `kind` (from any realm) over an attached buffer, optionally of an exact length;
 * `what` describes it in messages (default: "a <kind>"). A length mismatch is a RangeError;
 * anything else a TypeError.
 */
export function checkTypedArray(
  name: string,
  value: unknown,
  kind: TypedArrayKind,
  length?: number,
  what = `a ${kind}`,
): StepArray {
  if (!IS_KIND[kind](value)) throw typeError(name, what, value);
  const array = value as StepArray;
  if (isDetached(array)) {
    throw new TypeError(
      `Expected ${what} for ${name} but received a ${kind} whose ArrayBuffer is detached`,
    );
  }
  if (length !== undefined && lengthOf(array) !== length) {
    throw rangeError(name, `${what} of ${countOf(length, 'element')}`, value);
  }
  return array;
}

/** A named typed array, for overlap checks and messages. */
export interface NamedArray {
  name: string;
  array: ArrayBufferView;
}

/**
 * Readies arrays for a step that keeps running after the call returns (stepAsync): native threads
 * write their memory until it settles, so no JavaScript may free or unmap it meanwhile.
 * - An array over a resizable ArrayBuffer is refused (TypeError): shrinking the buffer unmaps
 *   memory, and nothing can stop a resize.
 * - Every other ArrayBuffer is marked untransferable (node:worker_threads, permanent): from then on
 *   structuredClone and postMessage copy it instead of detaching it (Node 20) or throw (Node 21+),
 *   where transferring it away would otherwise free memory the step is still writing.
 * SharedArrayBuffers need nothing: they can neither shrink nor be detached.
 * Checks every array before marking any, so a refusal changes nothing.
 */
export function holdForAsyncStep(arrays: readonly NamedArray[]): void {
  const buffers = arrays.map(({ name, array }) => {
    const buffer = bufferOf(array);
    const shared = types.isSharedArrayBuffer(buffer);
    if (!shared && isResizable(buffer)) {
      throw new TypeError(
        `Expected a ${typedArrayName(array)} over a fixed-length buffer for ${name} in an asynchronous step ` +
          'but received one over a resizable ArrayBuffer (a resize during the step would unmap ' +
          'memory it is writing); use step() for it',
      );
    }
    return shared ? null : buffer;
  });
  for (const buffer of buffers) if (buffer !== null) markAsUntransferable(buffer);
}

// Distinct ArrayBuffer objects never share memory; only views of one buffer, or SharedArrayBuffers
// (two objects can map the same memory), need the address check.
function mayShareMemory(arrays: readonly NamedArray[]): boolean {
  const buffers = new Set<unknown>();
  for (const { array } of arrays) {
    const buffer = bufferOf(array);
    if (buffers.has(buffer) || types.isSharedArrayBuffer(buffer)) return true;
    buffers.add(buffer);
  }
  return false;
}

/**
 * Throws if any two arrays share a byte of memory: overlapping views of one buffer, the same array
 * twice, or two SharedArrayBuffer objects over the same memory. Compared by address in the addon
 * (sorted, so O(n log n) for models with hundreds of tensors).
 */
export function checkNoOverlap(arrays: readonly NamedArray[]): void {
  if (!mayShareMemory(arrays)) return;
  const overlap = native.findOverlap(arrays.map((entry) => entry.array));
  if (overlap === null) return;
  const [first, second] = overlap.map((index) => arrays[index]?.name ?? `array ${index}`);
  throw new RangeError(
    `Expected ${first} and ${second} not to overlap in memory but they share bytes`,
  );
}
