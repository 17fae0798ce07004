// Predicates for plain values (numbers, booleans, objects), in the error format of errors.ts.
import { rangeError, typeError } from './errors';

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

const COUNT_WORDS = ['zero', 'one', 'two', 'three', 'four'];

/** An array of `count` values, each checked by `check` (named `name[i]`); a frozen copy. */
export function checkTuple<T>(
  name: string,
  value: unknown,
  count: number,
  check: (name: string, value: unknown) => T,
): readonly T[] {
  if (!Array.isArray(value) || value.length !== count) {
    throw typeError(name, `an array of ${COUNT_WORDS[count] ?? String(count)} numbers`, value);
  }
  return Object.freeze((value as unknown[]).map((entry, i) => check(`${name}[${i}]`, entry)));
}

/** A finite number > 0 (a threshold that divides). */
export function checkPositive(name: string, value: unknown): number {
  const n = checkNumber(name, value);
  if (!(n > 0 && n < Infinity)) throw rangeError(name, 'a finite number > 0', value);
  return n;
}

/** null, or what `check` accepts, a number (Adafactor's lr and beta1); `what` describes the
 * numbers `check` takes, for the message of a value of another type. */
export function checkNullable<T>(
  check: (name: string, value: unknown) => T,
  what: string,
): (name: string, value: unknown) => T | null {
  return (name, value) => {
    if (value === null) return null;
    if (typeof value !== 'number') throw typeError(name, `null or ${what}`, value);
    return check(name, value);
  };
}

export function checkBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw typeError(name, 'a boolean', value);
  return value;
}

/** An integer >= minimum that a double represents exactly (a count, a step number). */
export function checkInteger(name: string, value: unknown, minimum: number): number {
  const n = checkNumber(name, value);
  if (!Number.isSafeInteger(n) || n < minimum) {
    throw rangeError(name, `an integer >= ${minimum}`, value);
  }
  return n;
}

function isObjectLike(value: unknown): value is object {
  return (typeof value === 'object' && value !== null) || typeof value === 'function';
}

/** An iterable that a for-of reads through the iterator `value` hands out once (so a getter or a
 * replaced Symbol.iterator cannot give a second reading something else); TypeError unless `value`
 * is iterable. Strings and typed arrays are iterable too, of characters and numbers: never a list
 * of objects, so they are refused here. */
export function readOnce(name: string, expected: string, value: unknown): Iterable<unknown> {
  const iterate: unknown = isObjectLike(value)
    ? (value as { [Symbol.iterator]?: unknown })[Symbol.iterator]
    : undefined;
  if (typeof iterate !== 'function' || ArrayBuffer.isView(value)) {
    throw typeError(name, expected, value);
  }
  const iterator: unknown = Reflect.apply(iterate, value, []);
  if (!isObjectLike(iterator)) throw typeError(name, expected, value);
  return { [Symbol.iterator]: () => iterator as Iterator<unknown> };
}
