// adamwStep: one stateless Adam/AdamW step on caller-owned arrays, in place. The classes in
// optimizer.ts are built on the same native call; this is for callers that keep their own state.

import { SCALARS_PER_TENSOR, writeScalars } from './coefficients';
import { native } from './native';
import {
  checkBeta,
  checkBoolean,
  checkFloat32Array,
  checkNoOverlap,
  checkNonNegative,
  checkObject,
  checkStep,
  lengthOf,
  type NamedArray,
} from './validate';

/** Options of {@link adamwStep}. Unlike the classes, every hyperparameter is explicit. */
export interface AdamwStepOptions {
  /** This parameter's 1-based step count, including this step (PyTorch's state["step"] after += 1). */
  step: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Step along +grad. Default false. */
  maximize?: boolean;
  /** AMSGrad's running maximum of expAvgSq; passing it turns AMSGrad on. */
  maxExpAvgSq?: Float32Array;
  /** true (default): AdamW's decoupled decay. false: Adam, weightDecay added to the gradient. */
  decoupled?: boolean;
}

const KNOWN_OPTIONS = new Set([
  'step',
  'lr',
  'beta1',
  'beta2',
  'eps',
  'weightDecay',
  'maximize',
  'maxExpAvgSq',
  'decoupled',
]);

/**
 * Applies one Adam/AdamW step in place: updates `param`, `expAvg`, `expAvgSq` (and
 * `options.maxExpAvgSq`) from `grad`. All arrays must have the same length and must not overlap.
 * Throws TypeError/RangeError before touching any array if an argument is invalid.
 */
export function adamwStep(
  param: Float32Array,
  grad: Float32Array,
  expAvg: Float32Array,
  expAvgSq: Float32Array,
  options: AdamwStepOptions,
): void {
  const o = checkObject('options', options);
  for (const key of Object.keys(o)) {
    if (!KNOWN_OPTIONS.has(key)) {
      throw new TypeError(
        `Unknown option options.${key}; expected one of ${[...KNOWN_OPTIONS].join(', ')}`,
      );
    }
  }
  // Every option is read once, and all of them before any array is checked: a getter cannot hand
  // validation one value and the kernel another, nor detach or resize an array after its check.
  // From the first array check to the native call no code of the caller runs.
  const { step, lr, beta1, beta2, eps, weightDecay, maximize, maxExpAvgSq, decoupled } = o;
  const hyperparameters = {
    lr: checkNonNegative('options.lr', lr),
    beta1: checkBeta('options.beta1', beta1),
    beta2: checkBeta('options.beta2', beta2),
    eps: checkNonNegative('options.eps', eps),
    weightDecay: checkNonNegative('options.weightDecay', weightDecay),
    amsgrad: maxExpAvgSq !== undefined,
    maximize: maximize === undefined ? false : checkBoolean('options.maximize', maximize),
    decoupled: decoupled === undefined ? true : checkBoolean('options.decoupled', decoupled),
  };
  const stepCount = checkStep('options.step', step);

  const length = lengthOf(checkFloat32Array('param', param));
  const arrays: NamedArray[] = [
    { name: 'param', array: param },
    { name: 'grad', array: checkFloat32Array('grad', grad, length) },
    { name: 'expAvg', array: checkFloat32Array('expAvg', expAvg, length) },
    { name: 'expAvgSq', array: checkFloat32Array('expAvgSq', expAvgSq, length) },
  ];
  const checkedMaxExpAvgSq =
    maxExpAvgSq === undefined
      ? null
      : checkFloat32Array('options.maxExpAvgSq', maxExpAvgSq, length);
  if (checkedMaxExpAvgSq !== null)
    arrays.push({ name: 'options.maxExpAvgSq', array: checkedMaxExpAvgSq });
  checkNoOverlap(arrays);

  const scalars = new Float64Array(SCALARS_PER_TENSOR);
  const flags = new Uint32Array([writeScalars(scalars, 0, hyperparameters, stepCount)]);
  const nativeArrays: (Float32Array | null)[] = [param, grad, expAvg, expAvgSq, checkedMaxExpAvgSq];
  native.step(nativeArrays, scalars, flags);
}
