// What state dicts and checkpoint files share: which saved param and group is which of the
// optimizer's (by name when every param on both sides has one, else by position), the checks that
// a saved state fits an optimizer (its kind, group count and sizes, fixed hyperparameters, param
// count, names, step counts), and the copy into it once everything passed.
import { checkCount, countOf, rangeError, typeError } from '../core/errors';
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
      `'${slot.dtype}' (how this optimizer keeps the state of ${slot.label}, ` +
        `${countOf(slot.length, 'element')}, min8bitSize ${internals.lean.min8bitSize})`,
      dtype,
    );
  }
}

/**
 * Which of the optimizer's params and groups each saved one is. Params are matched by name when
 * every param of the optimizer has a name and so does every saved one (in any order: a model's
 * params regrouped by noDecay() still find their state), else by position. Groups are matched by
 * their params: a saved group is the optimizer's group that holds its params (all of them, and no
 * others); groups without params are matched by position among themselves. By position, saved
 * group s is the optimizer's group s.
 */
export interface Matching {
  /** True when matched by name. */
  readonly byName: boolean;
  /** The optimizer's slot index of saved param j. */
  readonly slotOf: readonly number[];
  /** The optimizer's group index of saved group s. */
  readonly groupOf: readonly number[];
}

/** Where the saved names and groups are, for messages: `state` names the saved param list
 * ('stateDict.state'), `group(s)` saved group s's params ('stateDict.paramGroups[1].params'). */
export interface SavedLabels {
  readonly state: string;
  readonly group: (s: number) => string;
}

// At most this many names in a message; the rest are counted.
const LISTED_NAMES = 10;

/** Names for a message: sorted, quoted, at most LISTED_NAMES of them and the count of the rest. */
export function nameList(names: readonly string[]): string {
  const sorted = [...names].sort();
  const shown = sorted
    .slice(0, LISTED_NAMES)
    .map((name) => `'${name}'`)
    .join(', ');
  const rest = sorted.length - LISTED_NAMES;
  return rest > 0 ? `${shown}, ... (${rest} more)` : shown;
}

/** RangeError unless `received` (distinct names, under `label`) are exactly the names of `source`
 * (distinct too): every name that is not among them, and every one missing, listed. */
export function checkSameNames(
  label: string,
  received: readonly string[],
  expected: readonly string[],
  source: string,
): void {
  const want = new Set(expected);
  const have = new Set(received);
  const extra = received.filter((name) => !want.has(name));
  const missing = expected.filter((name) => !have.has(name));
  if (extra.length === 0 && missing.length === 0) return;
  const parts: string[] = [];
  if (extra.length > 0) {
    parts.push(
      `${extra.length} ${extra.length === 1 ? 'name' : 'names'} not among them (${nameList(extra)})`,
    );
  }
  if (missing.length > 0) {
    parts.push(`${missing.length === 1 ? 'not' : 'none of'} ${nameList(missing)}`);
  }
  throw new RangeError(
    `Expected the param names of ${source} (params are matched by name when every param has ` +
      `one) for ${label} but received ${parts.join(', and ')}`,
  );
}

/** RangeError unless the names are distinct; `nameOf(k)` says where name k is. */
export function checkDistinctNames(
  label: string,
  names: readonly string[],
  nameOf: (k: number) => string,
): void {
  const seen = new Map<string, number>();
  for (const [k, name] of names.entries()) {
    const first = seen.get(name);
    if (first !== undefined) {
      throw new RangeError(
        `Expected unique param names for ${label} but received '${name}' twice ` +
          `(${nameOf(first)} and ${nameOf(k)})`,
      );
    }
    seen.set(name, k);
  }
}

/**
 * Matches saved params (their names, undefined where unnamed) and groups (their param counts, the
 * params listed group after group) to the optimizer's (see {@link Matching}); throws a RangeError
 * listing what does not fit: by name, the names missing or not the optimizer's and the groups
 * whose params are not one of its groups; by position, a different param count. Reads each
 * param's current name once.
 */
export function matchSaved(
  internals: OptimizerInternals,
  savedNames: readonly (string | undefined)[],
  groupSizes: readonly number[],
  labels: SavedLabels,
): Matching {
  const { slots, groups } = internals;
  const currentNames = slots.map((slot) => currentName(slot.param, slot.label));
  const named = (names: readonly (string | undefined)[]): names is readonly string[] =>
    names.every((name) => name !== undefined);
  if (!named(currentNames) || !named(savedNames) || savedNames.length === 0) {
    checkParamCount(internals, labels.state, savedNames.length);
    return {
      byName: false,
      slotOf: slots.map((_, k) => k),
      groupOf: groups.map((_, g) => g),
    };
  }
  const listed = groupSizes.reduce((sum, size) => sum + size, 0);
  if (listed !== savedNames.length) {
    throw new RangeError(
      `Expected param groups listing all ${countOf(savedNames.length, 'param')} of ` +
        `${labels.state} but received param groups listing ${countOf(listed, 'param')}`,
    );
  }
  checkDistinctNames("this optimizer's params", currentNames, (k) => slots[k].label);
  checkDistinctNames(labels.state, savedNames, (j) => `${labels.state}[${j}]`);
  checkSameNames(labels.state, savedNames, currentNames, 'this optimizer');
  const slotIndex = new Map(currentNames.map((name, k) => [name, k]));
  const slotOf = savedNames.map((name) => slotIndex.get(name) ?? 0);
  const groupOf: number[] = [];
  const taken = new Set<number>();
  let first = 0;
  for (const [s, size] of groupSizes.entries()) {
    const members = slotOf.slice(first, first + size);
    first += size;
    if (size === 0) {
      groupOf.push(-1); // matched below
      continue;
    }
    const g = slots[members[0]].groupIndex;
    const stray = members.find((k) => slots[k].groupIndex !== g);
    if (stray !== undefined) {
      throw new RangeError(
        `Expected the params of one param group of this optimizer (groups are matched by their ` +
          `params' names) for ${labels.group(s)} but received '${currentNames[members[0]]}' ` +
          `(in its paramGroups[${g}]) and '${currentNames[stray]}' (in its ` +
          `paramGroups[${slots[stray].groupIndex}])`,
      );
    }
    const groupSize = groups[g].params.length;
    if (groupSize !== size) {
      const inSaved = new Set(members);
      const missing = slots.flatMap((slot, k) =>
        slot.groupIndex === g && !inSaved.has(k) ? [currentNames[k]] : [],
      );
      throw new RangeError(
        `Expected all ${countOf(groupSize, 'param')} of this optimizer's paramGroups[${g}] (groups are ` +
          `matched by their params' names) for ${labels.group(s)} but received ${size} of them ` +
          `(not ${nameList(missing)})`,
      );
    }
    groupOf.push(g);
    taken.add(g);
  }
  // The groups without params, in order (the counts were checked: as many on both sides).
  const empty = groups.flatMap((_, g) => (taken.has(g) ? [] : [g]));
  return {
    byName: true,
    slotOf,
    groupOf: groupOf.map((g) => (g >= 0 ? g : (empty.shift() ?? 0))),
  };
}

/** The saved groups' values, params' values and schedule in the optimizer's order. */
export function inOptimizerOrder(
  matching: Matching,
  groups: readonly HyperparameterValues[],
  params: readonly ParamValues[],
  schedule: ScheduleState | null,
): {
  groups: HyperparameterValues[];
  params: ParamValues[];
  schedule: ScheduleState | null;
} {
  const orderedGroups = new Array<HyperparameterValues>(groups.length);
  for (const [s, values] of groups.entries()) orderedGroups[matching.groupOf[s]] = values;
  const orderedParams = new Array<ParamValues>(params.length);
  for (const [j, values] of params.entries()) orderedParams[matching.slotOf[j]] = values;
  return {
    groups: orderedGroups,
    params: orderedParams,
    schedule: scheduleInOptimizerOrder(matching, schedule),
  };
}

/** A saved schedule state with its base lrs in the optimizer's group order. */
export function scheduleInOptimizerOrder(
  matching: Matching,
  schedule: ScheduleState | null,
): ScheduleState | null {
  if (schedule === null || !matching.byName) return schedule;
  const baseLrs = new Array<number>(schedule.baseLrs.length);
  for (const [s, lr] of schedule.baseLrs.entries()) baseLrs[matching.groupOf[s]] = lr;
  return Object.freeze({ ...schedule, baseLrs: Object.freeze(baseLrs) });
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
