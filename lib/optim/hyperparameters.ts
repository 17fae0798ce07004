// Resolving a caller's hyperparameter options against an optimizer's schema: unknown keys refused,
// each given value checked, each missing one taken from the level below (the group from the
// optimizer's options, those from the spec's defaults).
import { checkKnownKeys } from '../core/errors';
import { checkObject } from '../core/checks';
import type { AnyOptimizerSpec } from './spec';

/** A complete, validated set of one optimizer's hyperparameters, by name. */
export type HyperparameterValues = Readonly<Record<string, unknown>> & {
  readonly lr: number | null;
};

/** The spec's defaults as a value set. */
export function defaultHyperparameters(spec: AnyOptimizerSpec): HyperparameterValues {
  const values: Record<string, unknown> = {};
  for (const [key, entry] of Object.entries(spec.hyperparameters)) values[key] = entry.default;
  return values as HyperparameterValues;
}

/**
 * Validates `options` (named `name` in messages; undefined for none) over `base` and returns a
 * complete set. `extraKeys` are other keys allowed in the same object (a group's `params`). Each
 * option is read once.
 */
export function resolveHyperparameters(
  spec: AnyOptimizerSpec,
  name: string,
  options: unknown,
  base: HyperparameterValues,
  extraKeys: readonly string[] = [],
): HyperparameterValues {
  const o = options === undefined ? {} : checkObject(name, options);
  const schema = spec.hyperparameters as Readonly<
    Record<string, AnyOptimizerSpec['hyperparameters']['lr']>
  >;
  checkKnownKeys(name, o, [...Object.keys(schema), ...extraKeys]);
  const values: Record<string, unknown> = {};
  for (const [key, entry] of Object.entries(schema)) {
    const value: unknown = o[key];
    values[key] = value === undefined ? base[key] : entry.check(`${name}.${key}`, value);
  }
  return values as HyperparameterValues;
}
