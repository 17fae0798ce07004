// estimateMemory: what N parameters would need with one of this package's optimizers, from the
// state tensors its spec declares and how the chosen state dtype keeps them (optim/state-storage.ts):
// per element 8 bytes of float32 moments for AdamW (12 with AMSGrad), 4 of bfloat16, or 2 bytes of
// blockwise8 codes plus one float32 absmax per 256 elements and moment, tensors under min8bitSize
// keeping float32; Lion half of that (one moment); Adafactor and CAME one float32 per row and per
// column for a tensor of 2 or more dimensions (plus their full-size tensors: Adafactor's expAvg with
// beta1, CAME's expAvg), which is why their `shapes` matter.
import {
  checkBeta,
  checkBoolean,
  checkInteger,
  checkNonNegative,
  checkObject,
} from '../core/checks';
import { checkKnownKeys, countOf, rangeError, typeError } from '../core/errors';
import { ADAFACTOR_SPEC } from './adafactor';
import { ADAM_SPEC, ADAMW_SPEC, checkStateDtype } from './adam';
import { CAME_SPEC } from './came';
import { LION_SPEC } from './lion';
import { defaultHyperparameters, type HyperparameterValues } from './hyperparameters';
import type { MemoryReport } from './memory';
import type { AnyOptimizerSpec, StateDtype } from './spec';
import {
  blockwise8BlockSize,
  DEFAULT_MIN_8BIT_SIZE,
  effectiveStateDtype,
  stateTensorBytes,
  stateTensorLengths,
} from './state-storage';
import { checkShape } from './params';

/** The optimizers estimateMemory knows, by the name its `optimizer` option takes. */
const SPECS: Readonly<Record<string, AnyOptimizerSpec>> = {
  adamw: ADAMW_SPEC,
  adam: ADAM_SPEC,
  lion: LION_SPEC,
  adafactor: ADAFACTOR_SPEC,
  came: CAME_SPEC,
};

/** The names estimateMemory's `optimizer` option takes. */
export type EstimatedOptimizer = 'adamw' | 'adam' | 'lion' | 'adafactor' | 'came';

/** Options of {@link estimateMemory}. */
export interface MemoryEstimateOptions {
  /** Number of parameter elements, all in one tensor; or each tensor's number of elements (which
   * matters for blockwise8: one absmax per block of each tensor, float32 state under
   * min8bitSize). With `shapes`, each tensor's length (their products) or their total. */
  params: number | readonly number[];
  /** Which optimizer's state: 'adamw' (default), 'adam', 'lion', 'adafactor' or 'came'. */
  optimizer?: EstimatedOptimizer;
  /** Each tensor's shape (Param.shape): Adafactor and CAME factor tensors of 2 or more
   * dimensions. Default: every tensor 1-D. */
  shapes?: readonly (readonly number[])[];
  /** Adafactor's beta1: a number keeps a first moment (expAvg). Default null. */
  beta1?: number | null;
  /** Bytes per parameter element: 4 for float32 (default), 2 for fp16/bf16 weights (6 for float32
   * params with a dataBf16 copy). */
  paramBytes?: number;
  /** Bytes per gradient element; defaults to paramBytes. 0 if gradients are not kept. */
  gradBytes?: number;
  /** AMSGrad keeps a third state tensor. Default false. */
  amsgrad?: boolean;
  /** How the state is kept (see the stateDtype hyperparameter). Default 'float32'. */
  stateDtype?: StateDtype;
  /** Under 'blockwise8', tensors with fewer elements keep float32 state. Default 4096. */
  min8bitSize?: number;
}

const ESTIMATE_KEYS = [
  'params',
  'optimizer',
  'shapes',
  'beta1',
  'paramBytes',
  'gradBytes',
  'amsgrad',
  'stateDtype',
  'min8bitSize',
];

function checkTensorLengths(value: unknown): number[] {
  if (typeof value === 'number') return [checkInteger('options.params', value, 0)];
  if (!Array.isArray(value)) {
    throw typeError('options.params', 'a number of elements, or an array of them', value);
  }
  return (value as unknown[]).map((n, i) => checkInteger(`options.params[${i}]`, n, 0));
}

function checkShapes(value: unknown, lengths: readonly number[] | null): (readonly number[])[] {
  if (!Array.isArray(value)) {
    throw typeError('options.shapes', 'an array of shapes (arrays of dimensions)', value);
  }
  const shapes = value as unknown[];
  if (lengths !== null && lengths.length !== shapes.length) {
    throw new RangeError(
      `Expected ${countOf(lengths.length, 'shape')} (one per tensor of options.params) for ` +
        `options.shapes but received ${shapes.length}`,
    );
  }
  return shapes.map((shape, k) => {
    const name = `options.shapes[${k}]`;
    if (!Array.isArray(shape)) throw typeError(name, 'an array of dimensions', shape);
    const product = (shape as unknown[]).reduce<number>(
      (p, dim) => p * (typeof dim === 'number' ? dim : NaN),
      1,
    );
    return checkShape(name, shape, lengths === null ? product : (lengths[k] ?? 0));
  });
}

function checkOptimizer(value: unknown): string {
  const expected = Object.keys(SPECS)
    .map((name) => `'${name}'`)
    .join(', ');
  if (typeof value !== 'string') throw typeError('options.optimizer', `one of ${expected}`, value);
  if (!Object.hasOwn(SPECS, value))
    throw rangeError('options.optimizer', `one of ${expected}`, value);
  return value;
}

/**
 * How much memory these parameters need with one of this package's optimizers, exact to the byte,
 * as the MemoryReport of an optimizer with one group holding them (its default hyperparameters,
 * with amsgrad, beta1 and stateDtype as given). For example 70e9 parameters in one tensor with
 * fp16 weights and AdamW: params 140 GB; state 560 GB (float32), 280 GB (bfloat16) or
 * 142,187,500,000 bytes (blockwise8: 2 bytes of codes and 2 * 4 / 256 of absmax per element).
 */
export function estimateMemory(options: MemoryEstimateOptions): MemoryReport {
  const o = checkObject('options', options);
  checkKnownKeys('options', o, ESTIMATE_KEYS);
  const name = o.optimizer === undefined ? 'adamw' : checkOptimizer(o.optimizer);
  const spec = SPECS[name];
  const given = checkTensorLengths(o.params);
  const shapes =
    o.shapes === undefined
      ? given.map((n) => [n])
      : checkShapes(o.shapes, typeof o.params === 'number' ? null : given);
  const lengths = shapes.map((shape) => shape.reduce((p, dim) => p * dim, 1));
  const paramCount = lengths.reduce((sum, n) => sum + n, 0);
  if (typeof o.params === 'number' && o.shapes !== undefined && paramCount !== given[0]) {
    throw new RangeError(
      `Expected shapes with ${countOf(given[0] ?? 0, 'element')} in all (options.params) for ` +
        `options.shapes but received ${paramCount}`,
    );
  }
  const paramBytes =
    o.paramBytes === undefined ? 4 : checkNonNegative('options.paramBytes', o.paramBytes);
  const gradBytes =
    o.gradBytes === undefined ? paramBytes : checkNonNegative('options.gradBytes', o.gradBytes);
  const values: Record<string, unknown> = { ...defaultHyperparameters(spec) };
  const only = (key: string, optimizers: string) => {
    if (o[key] === undefined) return false;
    if (!(key in values)) {
      throw rangeError(
        `options.${key}`,
        `undefined (${optimizers} only; optimizer is '${name}')`,
        o[key],
      );
    }
    return true;
  };
  if (only('amsgrad', "'adamw' and 'adam'"))
    values.amsgrad = checkBoolean('options.amsgrad', o.amsgrad);
  if (only('beta1', "'adafactor'")) {
    values.beta1 = o.beta1 === null ? null : checkBeta('options.beta1', o.beta1);
  }
  let stateDtype: StateDtype = 'float32';
  if (o.stateDtype !== undefined) {
    stateDtype = checkStateDtype('options.stateDtype', o.stateDtype);
    if (stateDtype !== 'float32' && spec.ops[stateDtype] === undefined) {
      throw rangeError(
        'options.stateDtype',
        `'float32' (${spec.className} keeps float32 state only)`,
        o.stateDtype,
      );
    }
    if (spec.stateDtypeKey !== undefined) values[spec.stateDtypeKey] = stateDtype;
  }
  const min8bitSize =
    o.min8bitSize === undefined
      ? DEFAULT_MIN_8BIT_SIZE
      : checkInteger('options.min8bitSize', o.min8bitSize, 0);
  const params = paramCount * paramBytes;
  const grads = paramCount * gradBytes;
  const blockSize = stateDtype === 'blockwise8' ? blockwise8BlockSize(spec) : 1;
  let state = 0;
  for (const [k, n] of lengths.entries()) {
    const dtype = effectiveStateDtype(stateDtype, n, min8bitSize);
    const tensorLengths = stateTensorLengths(
      spec,
      values as HyperparameterValues,
      shapes[k] ?? [n],
      n,
    );
    for (const length of tensorLengths) {
      if (length !== null) state += stateTensorBytes(dtype, length, blockSize);
    }
  }
  const breakdown = { paramCount, params, grads, state, total: params + grads + state };
  return { ...breakdown, groups: [{ ...breakdown }] };
}
