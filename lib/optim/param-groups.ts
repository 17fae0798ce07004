// A param group as the optimizer holds it: its params, and one validated accessor per
// hyperparameter of the optimizer's spec. Hyperparameters can be changed between steps; each
// assignment is checked with the spec's check, and refused while an asynchronous step runs (it read
// the values when it started). Fixed hyperparameters (amsgrad) are read-only.
import type { AnyParam } from './params';
import type { HyperparameterValues } from './hyperparameters';
import type { AnyOptimizerSpec } from './spec';

/** The generic face of a live group; each optimizer's own group interface (AdamW's
 * OptimizerParamGroup) describes the same object with its hyperparameters' types. */
export interface LiveGroup {
  readonly params: readonly AnyParam[];
  readonly lr: number | null;
}

// Each group's current values as one frozen object, replaced on every assignment: a step reads a
// group's values once per step, and this makes that one lookup.
const snapshots = new WeakMap<LiveGroup, { values: HyperparameterValues }>();

/** Creates a live group over `initial` (already validated). `assertIdle(action)` throws while an
 * asynchronous step runs. */
export function createParamGroup(
  spec: AnyOptimizerSpec,
  label: string,
  params: readonly AnyParam[],
  initial: HyperparameterValues,
  assertIdle: (action: string) => void,
): LiveGroup {
  const current = { values: Object.freeze({ ...initial }) };
  const group = { params: Object.freeze([...params]) };
  for (const [key, entry] of Object.entries(spec.hyperparameters)) {
    Object.defineProperty(group, key, {
      enumerable: true,
      get: () => current.values[key],
      set: entry.fixed
        ? undefined
        : (value: unknown) => {
            assertIdle(`set ${label}.${key}`);
            const checked = entry.check(`${label}.${key}`, value);
            current.values = Object.freeze({ ...current.values, [key]: checked });
          },
    });
  }
  // Only the validated setters can change a group: params and the fixed hyperparameters are
  // read-only, and no other property can be added.
  const live = Object.freeze(group) as unknown as LiveGroup;
  snapshots.set(live, current);
  return live;
}

/** A group's current values, by name (a frozen object; a later assignment makes a new one). */
export function groupValues(group: LiveGroup): HyperparameterValues {
  const current = snapshots.get(group);
  if (current === undefined) throw new Error('simd-adamw: not a param group of this package');
  return current.values;
}

/** Sets every mutable hyperparameter of `group` (values already validated). */
export function setGroupValues(
  spec: AnyOptimizerSpec,
  group: LiveGroup,
  values: HyperparameterValues,
): void {
  const record = group as unknown as Record<string, unknown>;
  for (const [key, entry] of Object.entries(spec.hyperparameters)) {
    if (!entry.fixed) record[key] = values[key];
  }
}
