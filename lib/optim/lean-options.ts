// The optimizer-wide options of lean state, shared by the optimizer (optim/optimizer.ts), state
// dicts and checkpoint files: which of them a spec takes, and their checks.
import { checkInteger } from '../core/checks';
import { rangeError } from '../core/errors';
import type { AnyOptimizerSpec } from './spec';

/** The lean-state options an optimizer of `spec` takes: stochasticRounding and seed with bfloat16
 * state, min8bitSize with blockwise8. */
export function leanOptionKeys(spec: AnyOptimizerSpec): string[] {
  const keys: string[] = [];
  if (spec.ops.bfloat16 !== undefined) keys.push('stochasticRounding', 'seed');
  if (spec.ops.blockwise8 !== undefined) keys.push('min8bitSize');
  return keys;
}

const MAX_SEED = 2 ** 32 - 1;

/** A stochastic-rounding seed: an integer in [0, 2^32). */
export function checkSeed(name: string, value: unknown): number {
  const n = checkInteger(name, value, 0);
  if (n > MAX_SEED) throw rangeError(name, `an integer in [0, ${MAX_SEED}]`, value);
  return n;
}

/** min8bitSize: an integer >= 0. */
export function checkMin8bitSize(name: string, value: unknown): number {
  return checkInteger(name, value, 0);
}
