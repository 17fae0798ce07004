// gradNorm: the global L2 norm of gradients, as the fused step measures it for clipping.

import { checkFloat32Array } from '../core/arrays';
import { checkObject, isPlainObject } from '../core/checks';
import { typeError } from '../core/errors';
import { native } from '../core/native';
import { checkThreads, defaultThreads } from '../core/threads';
import { type AnyParam, checkGrad, GRAD_DTYPE_CODES } from '../optim/params';

/**
 * The L2 norm of all the gradients together: sqrt of the sum of every element's square, summed in
 * double precision in one fixed order (blocks of 4096 elements, 16 interleaved partial sums, a
 * fixed tree), so it is bitwise the same on every CPU, kernel and thread count. NaN if any
 * element is NaN, Infinity if any is infinite (and none NaN). Each entry is a Param (its `grad`
 * is used: a Float32Array, or a Uint16Array of bfloat16/float16 bits with its gradDtype, widened
 * exactly) or a Float32Array. The same number `step({ clipGradNorm })` reports for unscaled
 * gradients.
 */
export function gradNorm(
  params: readonly (AnyParam | Float32Array)[],
  options?: { threads?: number },
): number {
  if (!Array.isArray(params)) {
    throw typeError('params', 'an array of params or Float32Arrays', params);
  }
  const threadsOption = options === undefined ? undefined : checkObject('options', options).threads;
  const threads =
    threadsOption === undefined ? defaultThreads() : checkThreads('options.threads', threadsOption);
  // Every param's grad is read before any array is checked: a getter cannot detach a checked one.
  const entries = (params as readonly unknown[]).map((entry) =>
    isPlainObject(entry)
      ? { param: true, grad: entry.grad, gradDtype: entry.gradDtype }
      : { param: false, grad: entry, gradDtype: undefined },
  );
  const checked = entries.map(({ param, grad, gradDtype }, i) =>
    param
      ? checkGrad(`params[${i}]`, grad, gradDtype)
      : { grad: checkFloat32Array(`params[${i}]`, grad), gradDtype: 'float32' as const },
  );
  const grads = checked.map(({ grad }) => grad);
  if (checked.every(({ gradDtype }) => gradDtype === 'float32')) {
    return native.gradNorm(grads, threads);
  }
  const gradDtypes = Uint8Array.from(checked, ({ gradDtype }) => GRAD_DTYPE_CODES[gradDtype]);
  return native.gradNorm(grads, threads, gradDtypes);
}
