// estimateMemory: what N parameters would need with AdamW/Adam, from the state tensors its spec
// declares (two float32 moments per parameter, 8 bytes, plus 4 more with AMSGrad).
import { checkBoolean, checkNonNegative, checkObject } from '../core/checks';
import { checkKnownKeys, rangeError } from '../core/errors';
import { ADAMW_SPEC } from './adam';
import { defaultHyperparameters, type HyperparameterValues } from './hyperparameters';
import type { MemoryReport } from './memory';
import { type AnyOptimizerSpec, STATE_DTYPE_BYTES } from './spec';

/** Options of {@link estimateMemory}. */
export interface MemoryEstimateOptions {
  /** Number of parameter elements. */
  params: number;
  /** Bytes per parameter element: 4 for float32 (default), 2 for fp16/bf16 weights. */
  paramBytes?: number;
  /** Bytes per gradient element; defaults to paramBytes. 0 if gradients are not kept. */
  gradBytes?: number;
  /** AMSGrad keeps a third float32 array. Default false. */
  amsgrad?: boolean;
}

const ESTIMATE_KEYS = ['params', 'paramBytes', 'gradBytes', 'amsgrad'];

/** Bytes of state per parameter element for a group of `spec` with hyperparameters `values`. */
export function stateBytesPerElement(spec: AnyOptimizerSpec, values: HyperparameterValues): number {
  let bytes = 0;
  for (const tensor of spec.state) {
    if (tensor.presentWhen === undefined || tensor.presentWhen(values)) {
      bytes += STATE_DTYPE_BYTES[tensor.dtype];
    }
  }
  return bytes;
}

/**
 * How much memory N parameters need with this optimizer, as the MemoryReport of an optimizer with
 * one group holding them. For example 70e9 parameters with fp16
 * weights: params 140 GB, state 560 GB (two float32 moments).
 */
export function estimateMemory(options: MemoryEstimateOptions): MemoryReport {
  const o = checkObject('options', options);
  checkKnownKeys('options', o, ESTIMATE_KEYS);
  const paramCount = checkNonNegative('options.params', o.params);
  if (!Number.isInteger(paramCount))
    throw rangeError('options.params', 'an integer >= 0', o.params);
  const paramBytes =
    o.paramBytes === undefined ? 4 : checkNonNegative('options.paramBytes', o.paramBytes);
  const gradBytes =
    o.gradBytes === undefined ? paramBytes : checkNonNegative('options.gradBytes', o.gradBytes);
  const amsgrad = o.amsgrad === undefined ? false : checkBoolean('options.amsgrad', o.amsgrad);
  const params = paramCount * paramBytes;
  const grads = paramCount * gradBytes;
  const values = { ...defaultHyperparameters(ADAMW_SPEC), amsgrad };
  const state = paramCount * stateBytesPerElement(ADAMW_SPEC, values);
  const breakdown = { paramCount, params, grads, state, total: params + grads + state };
  return { ...breakdown, groups: [{ ...breakdown }] };
}
