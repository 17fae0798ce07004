// What state dicts and checkpoint files share: the checks that a saved state fits an optimizer
// (its kind, group count and sizes, fixed hyperparameters, param count, names, step counts), and
// the copy into it once everything passed.
import { checkCount, rangeError, typeError } from '../core/errors';
import { checkInteger } from '../core/checks';
import type { HyperparameterValues } from '../optim/hyperparameters';
import type { OptimizerInternals, SlotView } from '../optim/internals';
import { setGroupValues } from '../optim/param-groups';
import { copyStateInto, type StateArray } from '../optim/state-storage';
import { currentName } from '../optim/params';
import type { ScheduleState } from '../train/schedules';

/** A step count as stored: an integer >= 0 that a double represents exactly. */
export function checkStepCount(name: string, value: unknown): number {
  return checkInteger(name, value, 0);
}

/** The saved optimizer kind must be this optimizer's. */
export function checkKind(internals: OptimizerInternals, name: string, kind: unknown): string {
  const { kind: expected, className } = internals.spec;
  if (typeof kind !== 'string') throw typeError(name, `'${expected}'`, kind);
  if (kind !== expected) {
    throw rangeError(name, `'${expected}' (this optimizer is ${className})`, kind);
  }
  return kind;
}

export function checkGroupCount(internals: OptimizerInternals, name: string, count: number): void {
  checkCount(name, 'param groups', count, internals.groups.length, 'as this optimizer');
}

/** Group `g` must have as many params as the optimizer's, and the same fixed hyperparameters. */
export function checkGroupFits(
  internals: OptimizerInternals,
  g: number,
  field: (key: string) => string,
  paramCount: number,
  values: HyperparameterValues,
): void {
  const group = internals.groups[g];
  checkCount(
    field('params'),
    'params',
    paramCount,
    group.params.length,
    `as this optimizer's paramGroups[${g}]`,
  );
  const current = group as unknown as Record<string, unknown>;
  for (const [key, entry] of Object.entries(internals.spec.hyperparameters)) {
    if (entry.fixed && values[key] !== current[key]) {
      throw rangeError(
        field(key),
        `${showValue(current[key])} (as this optimizer's paramGroups[${g}]; ${key} decides which state exists)`,
        values[key],
      );
    }
  }
}

// A fixed hyperparameter's value as messages show it: strings quoted.
function showValue(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : String(value);
}

/** The groups must list the params 0, 1, 2, ... in order, each once; returns how many. */
export function checkPartition(
  groupParams: readonly unknown[],
  nameOf: (g: number) => string,
): number {
  let next = 0;
  for (const [g, params] of groupParams.entries()) {
    if (!Array.isArray(params)) throw typeError(nameOf(g), 'an array of param indices', params);
    for (const [i, index] of params.entries()) {
      if (index !== next) {
        throw rangeError(
          `${nameOf(g)}[${i}]`,
          `param index ${next} (groups list the params 0, 1, 2, ... in order)`,
          index,
        );
      }
      next++;
    }
  }
  return next;
}

/** A saved name, if any, must be the param's current name, if it has one. */
export function checkNameFits(
  slot: SlotView,
  k: number,
  name: string | undefined,
  label: string,
): void {
  const current = currentName(slot.param, slot.label);
  if (name !== undefined && current !== undefined && name !== current) {
    throw rangeError(label, `'${current}' (the name of this optimizer's param ${k})`, name);
  }
}

/** Under a factored spec a saved param must have this optimizer's shape (its factored moments'
 * lengths and meaning depend on it); `shape` undefined is a dict that does not say. */
export function checkShapeFits(
  internals: OptimizerInternals,
  slot: SlotView,
  name: string,
  shape: readonly number[] | undefined,
): void {
  if (internals.spec.factored !== true || shape === undefined) return;
  if (shape.length !== slot.shape.length || shape.some((dim, i) => dim !== slot.shape[i])) {
    throw new RangeError(
      `Expected shape [${slot.shape.join(', ')}] (the shape of ${slot.label} in this optimizer) ` +
        `for ${name} but received [${shape.join(', ')}]`,
    );
  }
}

export function checkParamCount(internals: OptimizerInternals, name: string, count: number): void {
  checkCount(name, 'param states', count, internals.slots.length, 'as this optimizer');
}

/** One param's validated state: its step count and its state tensors in spec.state order. */
export interface ParamValues {
  step: number;
  state: readonly (StateArray | null)[];
}

/** The saved stochastic rounding, which the optimizer takes over with the state. */
export interface SavedRounding {
  stochasticRounding: boolean;
  seed: number;
}

/** The saved stochasticRounding must be possible here: only with a bfloat16 group (the groups'
 * state dtypes were checked to be the optimizer's). */
export function checkRoundingFits(
  internals: OptimizerInternals,
  name: string,
  rounding: SavedRounding,
): void {
  const key = internals.spec.stateDtypeKey;
  if (
    rounding.stochasticRounding &&
    !internals.groups.some(
      (group) =>
        key !== undefined && (group as unknown as Record<string, unknown>)[key] === 'bfloat16',
    )
  ) {
    throw rangeError(
      name,
      "false (it rounds bfloat16 state, and no param group has stateDtype 'bfloat16')",
      rounding.stochasticRounding,
    );
  }
}

/** The saved state of a param must be kept as the optimizer keeps it (its group's stateDtype, and
 * min8bitSize under blockwise8). */
export function checkDtypeFits(
  internals: OptimizerInternals,
  slot: SlotView,
  name: string,
  dtype: string,
): void {
  if (dtype !== slot.dtype) {
    throw rangeError(
      name,
      `'${slot.dtype}' (how this optimizer keeps the state of ${slot.label}, ${slot.length} ` +
        `elements, min8bitSize ${internals.lean.min8bitSize})`,
      dtype,
    );
  }
}

/** Copies validated state into the optimizer. Cannot fail: every value was checked. */
export function applyState(
  internals: OptimizerInternals,
  groups: readonly HyperparameterValues[],
  params: readonly ParamValues[],
  schedule: ScheduleState | null,
  rounding: SavedRounding,
): void {
  for (const [g, values] of groups.entries()) {
    setGroupValues(internals.spec, internals.groups[g], values);
  }
  for (const [k, slot] of internals.slots.entries()) {
    const values = params[k];
    for (const [i, array] of slot.state.entries()) {
      const saved = values.state[i];
      if (array !== null && saved !== null) copyStateInto(array, saved);
    }
    slot.step = values.step;
  }
  // The groups' lrs were restored above, as the schedule had set them.
  internals.setScheduleState(schedule);
  internals.setStochasticRounding(rounding.stochasticRounding, rounding.seed);
}
