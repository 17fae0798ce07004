// The one error format of the public API, and the checks of an object's keys and of counts.
//
// Every message reads "Expected <what> for <name> but received <value>": the argument's name as the
// caller wrote it (`lr`, `paramGroups[1].betas[0]`, `params[3].grad`), what would have been
// accepted, and what came instead (a parenthesis may follow with why, or what to do). TypeError for
// a wrong type or shape, RangeError for a value out of range (a length or count that does not
// match is a value out of range). An unknown key reads "Expected one of <keys> for the key
// <name>.<key> but received an unknown key". Counts agree with their nouns ("1 element", "2 elements"). Describing a
// value runs none of its code. Errors that are not about an argument keep their own wording: a
// file that cannot be read, an optimizer busy with stepAsync(), an internal invariant
// ("simd-adamw: ...").
import { types } from 'node:util';

import { dataViewByteLength, lengthOf, typedArrayName } from './intrinsics';

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

/** `count` and the noun, singular for 1: "1 element", "3 elements". */
export function countOf(count: number, singular: string, plural = `${singular}s`): string {
  return `${count} ${count === 1 ? singular : plural}`;
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
    return `a ${typedArrayName(value)} of ${countOf(lengthOf(value), 'element')}`;
  if (types.isDataView(value)) return `a DataView of ${countOf(dataViewByteLength(value), 'byte')}`;
  if (Array.isArray(value)) return `an Array of ${countOf(value.length, 'element')}`;
  const name = constructorName(value);
  return name !== undefined && name !== 'Object' ? `a ${name}` : 'an object';
}

// The message of typeError and rangeError; `why`, when given, follows in parentheses.
function message(name: string, expected: string, actual: unknown, why?: string): string {
  const tail = why === undefined ? '' : ` (${why})`;
  return `Expected ${expected} for ${name} but received ${describe(actual)}${tail}`;
}

export function typeError(
  name: string,
  expected: string,
  actual: unknown,
  why?: string,
): TypeError {
  return new TypeError(message(name, expected, actual, why));
}

export function rangeError(
  name: string,
  expected: string,
  actual: unknown,
  why?: string,
): RangeError {
  return new RangeError(message(name, expected, actual, why));
}

/** TypeError unless every key is one of `known`: the own keys of an object, or the keys of a Map
 * (a parsed file's object). `where` follows the key's name: " of checkpoint 'x'". */
export function checkKnownKeys(
  name: string,
  object: object,
  known: readonly string[],
  where = '',
): void {
  const keys =
    object instanceof Map ? [...(object as Map<string, unknown>).keys()] : Object.keys(object);
  for (const key of keys) {
    if (!known.includes(key)) {
      throw new TypeError(
        `Expected one of ${known.join(', ')} for the key ${name}.${key}${where} but received an unknown key`,
      );
    }
  }
}

/** RangeError unless `count` (how many `what` `name` holds) is `expected`; `what` is a plural
 * ending in s ("param groups", read "param group" when one is expected), `why` says whose count
 * it must match, e.g. "as this optimizer". */
export function checkCount(
  name: string,
  what: string,
  count: number,
  expected: number,
  why: string,
): void {
  if (count !== expected) {
    const noun = countOf(expected, what.replace(/s$/, ''), what);
    throw new RangeError(`Expected ${noun} (${why}) for ${name} but received ${count}`);
  }
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
