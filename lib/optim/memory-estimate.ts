// estimateMemory: what N parameters would need with AdamW/Adam, from the state tensors its spec
// declares and how the chosen state dtype keeps them (optim/state-storage.ts): per element 8 bytes
// of float32 moments (12 with AMSGrad), 4 of bfloat16, or 2 bytes of blockwise8 codes plus one
// float32 absmax per 256 elements and moment, tensors under min8bitSize keeping float32.
import { checkBoolean, checkInteger, checkNonNegative, checkObject } from '../core/checks';
import { checkKnownKeys, typeError } from '../core/errors';
import { ADAMW_SPEC, checkStateDtype } from './adam';
import { defaultHyperparameters, type HyperparameterValues } from './hyperparameters';
import type { MemoryReport } from './memory';
import type { AnyOptimizerSpec, StateDtype } from './spec';
import {
  blockwise8BlockSize,
  DEFAULT_MIN_8BIT_SIZE,
  effectiveStateDtype,
  stateTensorBytes,
} from './state-storage';

/** Options of {@link estimateMemory}. */
export interface MemoryEstimateOptions {
  /** Number of parameter elements, all in one tensor; or each tensor's number of elements (which
   * matters for blockwise8: one absmax per block of each tensor, float32 state under
   * min8bitSize). */
  params: number | readonly number[];
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

const ESTIMATE_KEYS = ['params', 'paramBytes', 'gradBytes', 'amsgrad', 'stateDtype', 'min8bitSize'];

/** How many state tensors a param of a group of `spec` with hyperparameters `values` keeps. */
export function stateTensorCount(spec: AnyOptimizerSpec, values: HyperparameterValues): number {
  let count = 0;
  for (const tensor of spec.state) {
    if (tensor.presentWhen === undefined || tensor.presentWhen(values)) count++;
  }
  return count;
}

function checkTensorLengths(value: unknown): number[] {
  if (typeof value === 'number') return [checkInteger('options.params', value, 0)];
  if (!Array.isArray(value)) {
    throw typeError('options.params', 'a number of elements, or an array of them', value);
  }
  return (value as unknown[]).map((n, i) => checkInteger(`options.params[${i}]`, n, 0));
}

/**
 * How much memory these parameters need with AdamW/Adam, exact to the byte, as the MemoryReport of
 * an optimizer with one group holding them. For example 70e9 parameters in one tensor with fp16
 * weights: params 140 GB; state 560 GB (float32), 280 GB (bfloat16) or 142,187,500,000 bytes
 * (blockwise8: 2 bytes of codes and 2 * 4 / 256 of absmax per element).
 */
export function estimateMemory(options: MemoryEstimateOptions): MemoryReport {
  const o = checkObject('options', options);
  checkKnownKeys('options', o, ESTIMATE_KEYS);
  const lengths = checkTensorLengths(o.params);
  const paramCount = lengths.reduce((sum, n) => sum + n, 0);
  const paramBytes =
    o.paramBytes === undefined ? 4 : checkNonNegative('options.paramBytes', o.paramBytes);
  const gradBytes =
    o.gradBytes === undefined ? paramBytes : checkNonNegative('options.gradBytes', o.gradBytes);
  const amsgrad = o.amsgrad === undefined ? false : checkBoolean('options.amsgrad', o.amsgrad);
  const stateDtype =
    o.stateDtype === undefined ? 'float32' : checkStateDtype('options.stateDtype', o.stateDtype);
  const min8bitSize =
    o.min8bitSize === undefined
      ? DEFAULT_MIN_8BIT_SIZE
      : checkInteger('options.min8bitSize', o.min8bitSize, 0);
  const params = paramCount * paramBytes;
  const grads = paramCount * gradBytes;
  const values = { ...defaultHyperparameters(ADAMW_SPEC), amsgrad, stateDtype };
  const tensors = stateTensorCount(ADAMW_SPEC, values);
  const blockSize = stateDtype === 'blockwise8' ? blockwise8BlockSize(ADAMW_SPEC) : 1;
  let state = 0;
  for (const n of lengths) {
    const dtype = effectiveStateDtype(stateDtype, n, min8bitSize);
    state += tensors * stateTensorBytes(dtype, n, blockSize);
  }
  const breakdown = { paramCount, params, grads, state, total: params + grads + state };
  return { ...breakdown, groups: [{ ...breakdown }] };
}
