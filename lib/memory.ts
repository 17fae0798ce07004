// Memory accounting: what an optimizer holds (MemoryReport) and what N parameters would need
// (estimateMemory). Adam keeps two float32 moments per parameter, 8 bytes, plus 4 more with AMSGrad.

import { checkBoolean, checkNonNegative, checkObject, rangeError } from './validate';

/** Bytes, by what they hold. */
export interface MemoryBreakdown {
  /** Number of parameter elements (not bytes). */
  paramCount: number;
  /** Bytes of the parameter arrays (owned by the caller, counted here for the total). */
  params: number;
  /** Bytes of the gradient arrays (owned by the caller). */
  grads: number;
  /** Bytes of optimizer state this optimizer allocated: expAvg, expAvgSq and maxExpAvgSq. */
  state: number;
  /** params + grads + state. */
  total: number;
}

/** Per-group and overall memory of an optimizer, exact to the byte for the arrays it holds. */
export interface MemoryReport extends MemoryBreakdown {
  groups: MemoryBreakdown[];
}

export function emptyBreakdown(): MemoryBreakdown {
  return { paramCount: 0, params: 0, grads: 0, state: 0, total: 0 };
}

export function addBreakdown(into: MemoryBreakdown, from: MemoryBreakdown): void {
  into.paramCount += from.paramCount;
  into.params += from.params;
  into.grads += from.grads;
  into.state += from.state;
  into.total += from.total;
}

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

const STATE_BYTES_PER_ARRAY = 4; // every state array is float32
const ESTIMATE_KEYS = ['params', 'paramBytes', 'gradBytes', 'amsgrad'];

/**
 * How much memory N parameters need with this optimizer, as the MemoryReport of an optimizer with
 * one group holding them. For example 70e9 parameters with fp16
 * weights: params 140 GB, state 560 GB (two float32 moments).
 */
export function estimateMemory(options: MemoryEstimateOptions): MemoryReport {
  const o = checkObject('options', options);
  for (const key of Object.keys(o)) {
    if (!ESTIMATE_KEYS.includes(key)) {
      throw new TypeError(
        `Unknown option options.${key}; expected one of ${ESTIMATE_KEYS.join(', ')}`,
      );
    }
  }
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
  const state = paramCount * STATE_BYTES_PER_ARRAY * (amsgrad ? 3 : 2);
  const breakdown = { paramCount, params, grads, state, total: params + grads + state };
  return { ...breakdown, groups: [{ ...breakdown }] };
}
