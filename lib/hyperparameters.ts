// The user-facing hyperparameter options, PyTorch's defaults, and their validation.

import { checkBetas, checkBoolean, checkNonNegative, checkObject } from './validate';

/** Options of Adam and AdamW; every field has PyTorch's default. */
export interface Hyper {
  /** Learning rate. Default 1e-3. */
  lr?: number;
  /** Coefficients of the running averages of the gradient and its square. Default [0.9, 0.999]. */
  betas?: [number, number];
  /** Added to the denominator for numerical stability. Default 1e-8. */
  eps?: number;
  /** Weight decay: decoupled for AdamW (default 1e-2), L2 added to the gradient for Adam (default 0). */
  weightDecay?: number;
  /** Use the running maximum of the second moment (AMSGrad). Default false. Fixed per group. */
  amsgrad?: boolean;
  /** Maximize the objective: step along +gradient. Default false. */
  maximize?: boolean;
}

/** Hyperparameters with every field present and validated. */
export type ResolvedHyper = Required<Hyper>;

export const ADAMW_DEFAULTS: Readonly<ResolvedHyper> = Object.freeze({
  lr: 1e-3,
  betas: [0.9, 0.999] as [number, number],
  eps: 1e-8,
  weightDecay: 1e-2,
  amsgrad: false,
  maximize: false,
});

export const ADAM_DEFAULTS: Readonly<ResolvedHyper> = Object.freeze({
  ...ADAMW_DEFAULTS,
  weightDecay: 0,
});

const KNOWN_KEYS = new Set(['lr', 'betas', 'eps', 'weightDecay', 'amsgrad', 'maximize']);

/**
 * Validates `options` (named `name` in messages) over `base` and returns a complete set.
 * `extraKeys` are other keys allowed in the same object (a group's `params`).
 */
export function resolveHyperparameters(
  name: string,
  options: unknown,
  base: Readonly<ResolvedHyper>,
  extraKeys: readonly string[] = [],
): ResolvedHyper {
  const o = options === undefined ? {} : checkObject(name, options);
  for (const key of Object.keys(o)) {
    if (!KNOWN_KEYS.has(key) && !extraKeys.includes(key)) {
      throw new TypeError(
        `Unknown option ${name}.${key}; expected one of ${[...KNOWN_KEYS, ...extraKeys].join(', ')}`,
      );
    }
  }
  return {
    lr: o.lr === undefined ? base.lr : checkNonNegative(`${name}.lr`, o.lr),
    betas:
      o.betas === undefined ? [base.betas[0], base.betas[1]] : checkBetas(`${name}.betas`, o.betas),
    eps: o.eps === undefined ? base.eps : checkNonNegative(`${name}.eps`, o.eps),
    weightDecay:
      o.weightDecay === undefined
        ? base.weightDecay
        : checkNonNegative(`${name}.weightDecay`, o.weightDecay),
    amsgrad: o.amsgrad === undefined ? base.amsgrad : checkBoolean(`${name}.amsgrad`, o.amsgrad),
    maximize:
      o.maximize === undefined ? base.maximize : checkBoolean(`${name}.maximize`, o.maximize),
  };
}
