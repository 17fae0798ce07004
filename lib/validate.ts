// Predicates and the one error format of the public API.
//
// Every message reads "Expected <what> for <name> but received <value>": the argument's name as the
// caller wrote it (`lr`, `paramGroups[1].betas[0]`, `params[3].grad`), what would have been
// accepted, and what came instead. TypeError for a wrong type or shape, RangeError for a value out
// of range (a length that does not match is a value out of range). Validation always finishes
// before any array is written.
//
// Nothing here runs the caller's code: a typed array is an ordinary object that can carry its own
// `length` or `buffer` property (or be a Proxy that claims to be a Float32Array), so arrays are
// recognised by their internal type and measured through the intrinsic %TypedArray% getters, and
// error messages describe a value without reading its properties.
import { types } from 'node:util';
import { markAsUntransferable } from 'node:worker_threads';

import { native } from './native';

// The %TypedArray%.prototype getters as this module found them, called on the internal slots.
const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;
const apply = Reflect.apply;
function intrinsicGetter(prototype: object, key: string | symbol): (target: object) => unknown {
  const descriptor: { get?: (this: unknown) => unknown } | undefined =
    Object.getOwnPropertyDescriptor(prototype, key);
  const getter = descriptor?.get;
  if (getter === undefined) throw new Error(`no intrinsic getter ${String(key)}`);
  return (target) => apply(getter, target, []);
}
const lengthGetter = intrinsicGetter(typedArrayPrototype, 'length');
const bufferGetter = intrinsicGetter(typedArrayPrototype, 'buffer');
const byteLengthGetter = intrinsicGetter(typedArrayPrototype, 'byteLength');
const typedArrayNameGetter = intrinsicGetter(typedArrayPrototype, Symbol.toStringTag);
const dataViewByteLengthGetter = intrinsicGetter(DataView.prototype, 'byteLength');
// Node 18 has no resizable ArrayBuffers, and no getter: nothing there is resizable.
const resizableGetter =
  Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'resizable') === undefined
    ? undefined
    : intrinsicGetter(ArrayBuffer.prototype, 'resizable');

/** Elements of a typed array (0 once its buffer is detached or it is out of bounds). */
export function lengthOf(array: ArrayBufferView): number {
  return lengthGetter(array) as number;
}

/** A short description of any value for an error message; never throws and runs none of the
 * value's code (no Proxy trap, no getter). */
export function describe(value: unknown): string {
  try {
    return describeUnsafe(value);
  } catch {
    return 'an object';
  }
}

// The name of an object's constructor, from data properties only (a getter could throw).
function constructorName(value: object): string | undefined {
  const prototype: unknown = Object.getPrototypeOf(value);
  if (typeof prototype !== 'object' || prototype === null || types.isProxy(prototype))
    return undefined;
  const constructor: unknown = Object.getOwnPropertyDescriptor(prototype, 'constructor')?.value;
  if (typeof constructor !== 'function') return undefined;
  const name: unknown = Object.getOwnPropertyDescriptor(constructor, 'name')?.value;
  return typeof name === 'string' && name !== '' ? name : undefined;
}

function describeUnsafe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return `${String(value)} of type number`;
  if (typeof value === 'string')
    return `'${value.length > 40 ? value.slice(0, 40) + '...' : value}' of type string`;
  if (typeof value === 'bigint') return `${String(value)}n of type bigint`;
  if (typeof value === 'boolean' || typeof value === 'symbol')
    return `${String(value)} of type ${typeof value}`;
  if (typeof value === 'function') return 'a function';
  if (types.isProxy(value)) return 'a Proxy';
  if (types.isTypedArray(value))
    return `a ${typedArrayNameGetter(value) as string} of ${lengthOf(value)} elements`;
  if (types.isDataView(value))
    return `a DataView of ${dataViewByteLengthGetter(value) as number} bytes`;
  if (Array.isArray(value)) return `an Array of ${value.length} elements`;
  const name = constructorName(value);
  return name !== undefined && name !== 'Object' ? `a ${name}` : 'an object';
}

export function typeError(name: string, expected: string, actual: unknown): TypeError {
  return new TypeError(`Expected ${expected} for ${name} but received ${describe(actual)}`);
}

export function rangeError(name: string, expected: string, actual: unknown): RangeError {
  return new RangeError(`Expected ${expected} for ${name} but received ${describe(actual)}`);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    !ArrayBuffer.isView(value)
  );
}

export function checkObject(name: string, value: unknown): Record<string, unknown> {
  if (!isPlainObject(value)) throw typeError(name, 'an object', value);
  return value;
}

export function checkNumber(name: string, value: unknown): number {
  if (typeof value !== 'number') throw typeError(name, 'a number', value);
  return value;
}

/** A finite number >= 0 (lr, eps, weightDecay). */
export function checkNonNegative(name: string, value: unknown): number {
  const n = checkNumber(name, value);
  if (!(n >= 0 && n < Infinity)) throw rangeError(name, 'a finite number >= 0', value);
  return n;
}

/** A beta: 0 <= beta < 1. */
export function checkBeta(name: string, value: unknown): number {
  const n = checkNumber(name, value);
  if (!(n >= 0 && n < 1)) throw rangeError(name, 'a number in [0, 1)', value);
  return n;
}

export function checkBetas(name: string, value: unknown): [number, number] {
  if (!Array.isArray(value) || value.length !== 2)
    throw typeError(name, 'an array of two numbers', value);
  return [checkBeta(`${name}[0]`, value[0]), checkBeta(`${name}[1]`, value[1])];
}

export function checkBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw typeError(name, 'a boolean', value);
  return value;
}

/** A 1-based step count: an integer >= 1 that a double represents exactly. */
export function checkStep(name: string, value: unknown): number {
  const n = checkNumber(name, value);
  if (!Number.isSafeInteger(n) || n < 1) throw rangeError(name, 'an integer >= 1', value);
  return n;
}

/** True if `array`'s ArrayBuffer was detached (transferred); such a view reads as length 0. */
function isDetached(array: Float32Array): boolean {
  if (byteLengthGetter(array) !== 0) return false;
  const buffer = bufferGetter(array) as ArrayBufferLike;
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
  if (!types.isFloat32Array(value)) throw typeError(name, 'a Float32Array', value);
  if (isDetached(value)) {
    throw new TypeError(
      `Expected a Float32Array for ${name} but received a Float32Array whose ArrayBuffer is detached`,
    );
  }
  if (length !== undefined && lengthOf(value) !== length) {
    throw rangeError(name, `a Float32Array of ${length} elements`, value);
  }
  return value;
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
    const buffer = bufferGetter(array) as ArrayBufferLike;
    const shared = types.isSharedArrayBuffer(buffer);
    if (!shared && resizableGetter !== undefined && resizableGetter(buffer) === true) {
      throw new TypeError(
        `Expected a Float32Array over a fixed-length buffer for ${name} in an asynchronous step ` +
          'but received one over a resizable ArrayBuffer (a resize during the step would unmap ' +
          'memory it is writing); use step() for it',
      );
    }
    return shared ? null : buffer;
  });
  for (const buffer of buffers) if (buffer !== null) markAsUntransferable(buffer);
}

/** A named Float32Array, for overlap checks. */
export interface NamedArray {
  name: string;
  array: Float32Array;
}

// Distinct ArrayBuffer objects never share memory; only views of one buffer, or SharedArrayBuffers
// (two objects can map the same memory), need the address check. Most steps pass separate
// buffers, and skipping the native call saves about a microsecond per call.
function mayShareMemory(arrays: readonly NamedArray[]): boolean {
  const buffers = new Set<unknown>();
  for (const { array } of arrays) {
    const buffer = bufferGetter(array);
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

/** The error for touching an optimizer while its asynchronous step runs. */
export function stepInFlightError(action: string): Error {
  return Object.assign(
    new Error(
      `Cannot ${action} while a stepAsync() of this optimizer is in flight; await it first`,
    ),
    { code: 'ERR_SIMD_ADAMW_STEP_IN_FLIGHT' },
  );
}
