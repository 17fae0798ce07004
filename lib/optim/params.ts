// Params as the caller hands them in, and their validation when an optimizer is created.
import { checkBoolean } from '../core/checks';
import { typeError } from '../core/errors';
import { checkFloat32Array } from '../core/arrays';
import { lengthOf } from '../core/intrinsics';

/** A trainable tensor: its values and its gradient, both updated/read in place. */
export interface Param {
  data: Float32Array;
  grad: Float32Array;
  /** Optional unique name, used in error messages and checkpoints. */
  name?: string;
  /** false: no weight decay for this param, whatever its group's weightDecay. Read once, when the
   * optimizer is created. Default true. */
  decay?: boolean;
}

/** A param as validated at construction: each field read once. */
export interface ValidatedParam {
  param: Param;
  /** The param's name if it has one, else where it was passed: "params[3]". */
  label: string;
  data: Float32Array;
  grad: Float32Array;
  length: number;
  decay: boolean;
}

/** Reads each field of a user's param once (a getter cannot change it between check and use).
 * `names` and `seen` collect the names and params so far, to refuse repeats. */
export function validateParam(
  where: string,
  value: unknown,
  names: Set<string>,
  seen: Set<unknown>,
): ValidatedParam {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw typeError(
      where,
      'a param { data: Float32Array, grad: Float32Array, name?: string }',
      value,
    );
  }
  if (seen.has(value)) throw new RangeError(`Expected each param once but ${where} appears twice`);
  seen.add(value);
  const { name, data, grad, decay } = value as Record<string, unknown>;
  if (name !== undefined) {
    if (typeof name !== 'string' || name === '') {
      throw typeError(`${where}.name`, 'a non-empty string', name);
    }
    if (names.has(name)) {
      throw new RangeError(`Expected unique param names but ${where}.name '${name}' is used twice`);
    }
    names.add(name);
  }
  const checkedData = checkFloat32Array(`${where}.data`, data);
  const length = lengthOf(checkedData);
  const checkedGrad = checkFloat32Array(`${where}.grad`, grad, length);
  return {
    param: value as Param,
    label: typeof name === 'string' ? name : where,
    data: checkedData,
    grad: checkedGrad,
    length,
    decay: decay === undefined ? true : checkBoolean(`${where}.decay`, decay),
  };
}

/** The name a param has now: undefined or a non-empty string (any other value is an error). */
export function currentName(param: Param, label: string): string | undefined {
  const name: unknown = param.name;
  if (name === undefined) return undefined;
  if (typeof name !== 'string' || name === '') {
    throw typeError(`${label}.name`, 'a non-empty string or undefined', name);
  }
  return name;
}
