// Weight-decay masks: which parameters are exempt from weight decay. The common rule (GPT-2,
// BERT, LLaMA training code) exempts biases and normalisation weights; the optimizer also honours
// `decay: false` on a single Param, and a group's `weightDecay: 0`.

import { typeError } from '../core/errors';
import type { AnyParam } from '../optim/params';

/**
 * The default rule of {@link noDecay}: true (no decay) for a param whose name ends in `bias`, or
 * has a part containing `norm` (LayerNorm, rmsnorm, input_layernorm, norm1), or a part that is
 * `ln` or `bn` with an optional number (ln_f, ln_1, ln2, bn1). Parts are the pieces of the
 * lowercased name between characters other than letters and digits (`h.0.ln_1.weight` has h, 0,
 * ln, 1, weight). Unnamed params decay. Embeddings decay: exclude them with your own predicate if
 * your recipe does.
 */
export function isBiasOrNorm(param: AnyParam): boolean {
  const name = param.name;
  if (typeof name !== 'string') return false;
  const lower = name.toLowerCase();
  if (lower.endsWith('bias')) return true;
  return lower
    .split(/[^a-z0-9]+/)
    .some((part) => part.includes('norm') || /^(ln|bn)\d*$/.test(part));
}

/** A group made by {@link noDecay}. It names only params and weightDecay, which every
 * optimizer's groups have, so `noDecay(params)` fits any optimizer class (AdamW, Adam, Lion,
 * Adafactor, CAME) as it is; add other options by spreading (`{ ...group, lr: 1e-4 }`). */
export interface NoDecayGroup<P extends AnyParam = AnyParam> {
  params: P[];
  weightDecay?: number;
}

/**
 * Splits `params` into two groups: `{ params: decayed }` and `{ params: exempt, weightDecay: 0 }`
 * (in that order, and an empty one is left out), where `exempt` are those for which
 * `isExempt(param)` is true (default {@link isBiasOrNorm}). Pass the result to the optimizer,
 * optionally after adding options to the groups.
 */
export function noDecay<P extends AnyParam>(
  params: readonly P[],
  isExempt: (param: P) => boolean = isBiasOrNorm,
): NoDecayGroup<P>[] {
  if (!Array.isArray(params)) throw typeError('params', 'an array of params', params);
  if (typeof isExempt !== 'function') throw typeError('isExempt', 'a function', isExempt);
  const decayed: P[] = [];
  const exempt: P[] = [];
  for (const param of params as readonly P[]) (isExempt(param) ? exempt : decayed).push(param);
  const groups: NoDecayGroup<P>[] = [];
  if (decayed.length > 0) groups.push({ params: decayed });
  if (exempt.length > 0) groups.push({ params: exempt, weightDecay: 0 });
  return groups;
}
