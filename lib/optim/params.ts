// Params as the caller hands them in, and their validation: when an optimizer is created, and
// again at any step after one of data, grad, gradDtype or dataBf16 was replaced.
import { types } from 'node:util';

import { checkBoolean } from '../core/checks';
import { rangeError, typeError } from '../core/errors';
import { checkFloat32Array, checkTypedArray } from '../core/arrays';
import { lengthOf } from '../core/intrinsics';

/** The element type of a gradient: float32 (a Float32Array), or the bits of a bfloat16 or IEEE
 * float16 value per element (a Uint16Array), widened to float32 by the kernel as it reads them. */
export type GradDtype = 'float32' | 'bfloat16' | 'float16';
const GRAD_DTYPES: readonly GradDtype[] = ['float32', 'bfloat16', 'float16'];
/** Each grad dtype's code in the addon's gradDtypes array. */
export const GRAD_DTYPE_CODES: Readonly<Record<GradDtype, number>> = {
  float32: 0,
  bfloat16: 1,
  float16: 2,
};

/** A gradient array: float32 values, or bfloat16/float16 bits. */
export type GradArray = Float32Array | Uint16Array;

/** A trainable tensor: its values and its gradient, both updated/read in place. data, grad,
 * gradDtype and dataBf16 are read at every step (each may be replaced between steps). `G` is the
 * type of its grad: Float32Array by default, Uint16Array for bf16/fp16 gradients. */
export interface Param<G extends GradArray = Float32Array> {
  /** The float32 master copy of the values. */
  data: Float32Array;
  /** The gradient: a Float32Array, or a Uint16Array of bfloat16/float16 bits with gradDtype. */
  grad: G;
  /** What `grad` holds: required ('bfloat16' or 'float16') for a Uint16Array grad; 'float32' or
   * absent for a Float32Array. */
  gradDtype?: GradDtype;
  /** A bf16 copy of `data` that every step rewrites (round to nearest even) in the same pass, for a
   * bf16 forward pass: a Uint16Array of the param's length. */
  dataBf16?: Uint16Array;
  /** Optional unique name, used in error messages and checkpoints. */
  name?: string;
  /** false: no weight decay for this param, whatever its group's weightDecay. Read once, when the
   * optimizer is created. Default true. */
  decay?: boolean;
  /** The tensor's dimensions, row-major (the last varies fastest); their product is the length.
   * Adafactor and CAME keep a factored second moment for params of 2 or more dimensions (rows over
   * the last dimension, columns over the one before, leading dimensions as a batch); AdamW and Lion
   * ignore it. Read once, when the optimizer is created; checkpoints store it. Default
   * `[data.length]`. */
  shape?: readonly number[];
}

/** A param with either kind of gradient, as the optimizers take them. */
export type AnyParam = Param<GradArray>;

/** A param as validated at construction: each field read once. */
export interface ValidatedParam {
  param: AnyParam;
  /** The param's name if it has one, else where it was passed: "params[3]". */
  label: string;
  data: Float32Array;
  grad: Float32Array | Uint16Array;
  gradDtype: GradDtype;
  /** gradDtype as the param had it (undefined or a string), to notice a replacement. */
  gradDtypeInput: unknown;
  dataBf16: Uint16Array | null;
  length: number;
  decay: boolean;
  /** Its shape (frozen): as given, or [length]. */
  shape: readonly number[];
}

/** A param's arrays, checked against each other. */
export interface ParamArrays {
  data: Float32Array;
  grad: Float32Array | Uint16Array;
  gradDtype: GradDtype;
  dataBf16: Uint16Array | null;
}

/** A grad dtype as given: undefined is float32. */
export function checkGradDtype(name: string, value: unknown): GradDtype {
  if (value === undefined) return 'float32';
  const expected = "'float32', 'bfloat16' or 'float16'";
  if (typeof value !== 'string') throw typeError(name, expected, value);
  if (!(GRAD_DTYPES as readonly string[]).includes(value)) throw rangeError(name, expected, value);
  return value as GradDtype;
}

/** A param's gradient of `length` elements and its gradDtype (undefined: float32), both as given;
 * `where` names the param. */
export function checkGrad(
  where: string,
  grad: unknown,
  gradDtype: unknown,
  length?: number,
): { grad: Float32Array | Uint16Array; gradDtype: GradDtype } {
  const dtype = checkGradDtype(`${where}.gradDtype`, gradDtype);
  // A grad of the other kind is most likely a missing or stale gradDtype: the message says so.
  if (dtype === 'float32') {
    if (types.isUint16Array(grad)) {
      throw typeError(
        `${where}.gradDtype`,
        `'bfloat16' or 'float16' (${where}.grad is a Uint16Array)`,
        gradDtype,
      );
    }
    return { grad: checkFloat32Array(`${where}.grad`, grad, length), gradDtype: dtype };
  }
  if (types.isFloat32Array(grad)) {
    throw typeError(
      `${where}.gradDtype`,
      `'float32' or undefined (${where}.grad is a Float32Array)`,
      gradDtype,
    );
  }
  const what = `a Uint16Array of ${dtype} bits`;
  return {
    grad: checkTypedArray(`${where}.grad`, grad, 'Uint16Array', length, what) as Uint16Array,
    gradDtype: dtype,
  };
}

/** Checks a param's data, grad, gradDtype and dataBf16 (values already read); `where` names it.
 * `length` is the param's, when known. */
export function checkParamArrays(
  where: string,
  data: unknown,
  grad: unknown,
  gradDtype: unknown,
  dataBf16: unknown,
  length?: number,
): ParamArrays {
  const checkedData = checkFloat32Array(`${where}.data`, data, length);
  const n = length ?? lengthOf(checkedData);
  const checkedGrad = checkGrad(where, grad, gradDtype, n);
  return {
    data: checkedData,
    ...checkedGrad,
    dataBf16:
      dataBf16 === undefined
        ? null
        : (checkTypedArray(`${where}.dataBf16`, dataBf16, 'Uint16Array', n) as Uint16Array),
  };
}

const PARAM_SHAPE =
  'a param { data: Float32Array, grad: Float32Array | Uint16Array, name?: string, ... }';

/** Reads each field of a user's param once (a getter cannot change it between check and use).
 * `names` and `seen` collect the names and params so far, to refuse repeats. */
export function validateParam(
  where: string,
  value: unknown,
  names: Set<string>,
  seen: Set<unknown>,
): ValidatedParam {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw typeError(where, PARAM_SHAPE, value);
  }
  if (ArrayBuffer.isView(value)) {
    // The values alone: the optimizer also needs their gradient, so a param holds both.
    throw typeError(
      where,
      PARAM_SHAPE,
      value,
      'a param is { data, grad }: its values and their gradient, not the values alone',
    );
  }
  if (seen.has(value)) {
    throw new RangeError(
      `Expected a param not listed before (each param once, in one group) for ${where} but ` +
        'received one listed before',
    );
  }
  seen.add(value);
  const { name, data, grad, gradDtype, dataBf16, decay, shape } = value as Record<string, unknown>;
  if (name !== undefined) {
    if (typeof name !== 'string' || name === '') {
      throw typeError(`${where}.name`, 'a non-empty string', name);
    }
    if (names.has(name)) throw rangeError(`${where}.name`, 'a name no other param has', name);
    names.add(name);
  }
  const arrays = checkParamArrays(where, data, grad, gradDtype, dataBf16);
  const length = lengthOf(arrays.data);
  return {
    param: value as AnyParam,
    label: typeof name === 'string' ? name : where,
    ...arrays,
    gradDtypeInput: gradDtype,
    length,
    decay: decay === undefined ? true : checkBoolean(`${where}.decay`, decay),
    shape:
      shape === undefined ? Object.freeze([length]) : checkShape(`${where}.shape`, shape, length),
  };
}

/** A param's shape: an array of integers >= 0 whose product is `length` (a frozen copy). */
export function checkShape(name: string, value: unknown, length: number): readonly number[] {
  if (!Array.isArray(value)) {
    throw typeError(name, 'an array of dimensions (integers >= 0)', value);
  }
  const dims = [...(value as unknown[])];
  let product = 1;
  for (const [i, dim] of dims.entries()) {
    if (typeof dim !== 'number') throw typeError(`${name}[${i}]`, 'an integer >= 0', dim);
    if (!Number.isSafeInteger(dim) || dim < 0 || dim > 0xffffffff) {
      throw rangeError(`${name}[${i}]`, 'an integer in [0, 2^32)', dim);
    }
    product *= dim;
  }
  if (product !== length) {
    throw new RangeError(
      `Expected a shape whose product is ${length} (the length of its data) for ${name} but ` +
        `received [${dims.join(', ')}] (product ${product})`,
    );
  }
  return Object.freeze(dims as number[]);
}

/** The name a param has now: undefined or a non-empty string (any other value is an error). */
export function currentName(param: AnyParam, label: string): string | undefined {
  const name: unknown = param.name;
  if (name === undefined) return undefined;
  if (typeof name !== 'string' || name === '') {
    throw typeError(`${label}.name`, 'a non-empty string or undefined', name);
  }
  return name;
}
