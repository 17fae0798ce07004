// State dicts: an optimizer's complete state in memory, for any optimizer, from its spec.
//
// The state dict is a copy (PyTorch's state_dict() returns references to the live tensors, so a
// dict kept as "the last good state" silently follows every later step unless deep-copied; a copy
// is what resuming needs). Loading is all or nothing: everything is validated against the
// optimizer (count, lengths, names, fixed hyperparameters, optimizer kind, hyperparameters, step
// counts) before any of its state changes. Saved params are matched to the optimizer's by name
// when all have one, else by position (checkpoint/fit.ts, matchSaved).
import { checkBoolean, checkObject } from '../core/checks';
import { checkKnownKeys, typeError } from '../core/errors';
import type { HyperparameterValues } from '../optim/hyperparameters';
import type { OptimizerInternals } from '../optim/internals';
import { checkSeed, leanOptionKeys } from '../optim/lean-options';
import { groupValues } from '../optim/param-groups';
import { checkShape, currentName } from '../optim/params';
import { checkAbsmaxValues, checkStateArray, copyStateArray } from '../optim/state-storage';
import {
  checkScheduleState,
  type PlateauStateDict,
  plateauStateDict,
  type SavedLrSchedule,
  savedSchedule,
  type ScheduleState,
  scheduleToLoad,
} from '../train/schedules';
import {
  applyState,
  checkDtypeFits,
  checkGroupCount,
  checkGroupFits,
  checkKind,
  checkNameFits,
  checkPartition,
  checkRoundingFits,
  checkShapeFits,
  checkStepCount,
  inOptimizerOrder,
  matchSaved,
  type ParamValues,
} from './fit';

/** An attached learning-rate schedule in a state dict. */
export interface LrScheduleStateDict {
  /** The schedule; a lambda schedule as { type: 'lambda' }, without its function. */
  schedule: SavedLrSchedule;
  /** Steps taken since it was attached, skipped steps not counted. */
  position: number;
  /** Each group's base lr. */
  baseLrs: number[];
  /** A reduceOnPlateau schedule's state (absent for the others). */
  plateau?: PlateauStateDict;
}

/** Any optimizer's state dict: each param's step, name, state dtype and state tensors by name
 * (copies, of the dtype's types); each group's params and hyperparameters by name; with lean
 * state, the optimizer's stochastic rounding and seed. */
export interface GenericStateDict {
  optimizer: string;
  state: ({ step: number; name?: string; dtype?: string; shape?: number[] } & Record<
    string,
    unknown
  >)[];
  paramGroups: ({ params: number[] } & Record<string, unknown>)[];
  lrSchedule?: LrScheduleStateDict;
  stochasticRounding?: boolean;
  seed?: number;
}

const STATE_DICT_KEYS = ['optimizer', 'state', 'paramGroups', 'lrSchedule'];
const ROUNDING_KEYS = ['stochasticRounding', 'seed'];

/** A hyperparameter value as a state dict or file holds it: arrays copied (and so not frozen). */
export function copyValue(value: unknown): unknown {
  return Array.isArray(value) ? [...(value as unknown[])] : value;
}

export function scheduleStateDict(state: ScheduleState): LrScheduleStateDict {
  const dict: LrScheduleStateDict = {
    schedule: savedSchedule(state.schedule),
    position: state.position,
    baseLrs: [...state.baseLrs],
  };
  if (state.plateau !== null) dict.plateau = plateauStateDict(state.plateau);
  return dict;
}

/** A copy of the optimizer's state and hyperparameters. */
export function stateDictOf(internals: OptimizerInternals): GenericStateDict {
  const { spec } = internals;
  const paramGroups = internals.groups.map((group) => {
    const entry: GenericStateDict['paramGroups'][number] = { params: [] };
    for (const [key, value] of Object.entries(groupValues(group))) {
      entry[key] = copyValue(value);
    }
    return entry;
  });
  const state = internals.slots.map((slot, k) => {
    paramGroups[slot.groupIndex]?.params.push(k);
    const entry: GenericStateDict['state'][number] = { step: slot.step, dtype: slot.dtype };
    for (const [i, tensor] of spec.state.entries()) {
      const array = slot.state[i];
      if (array !== null) entry[tensor.name] = copyStateArray(array);
    }
    const name = currentName(slot.param, slot.label);
    if (name !== undefined) entry.name = name;
    // The factored moments' lengths and meaning depend on it (a load checks it).
    if (spec.factored === true) entry.shape = [...slot.shape];
    return entry;
  });
  const result: GenericStateDict = { optimizer: spec.kind, state, paramGroups };
  const schedule = internals.scheduleState;
  if (schedule !== null) result.lrSchedule = scheduleStateDict(schedule);
  if (leanOptionKeys(spec).includes('stochasticRounding')) {
    result.stochasticRounding = internals.lean.stochasticRounding;
    result.seed = internals.lean.seed;
  }
  return result;
}

/** Validates `value` as a state dict of this optimizer, then copies it in; on error nothing changes. */
export function loadStateDictInto(internals: OptimizerInternals, value: unknown): void {
  const { spec } = internals;
  const hyperKeys = Object.keys(spec.hyperparameters);
  const sd = checkObject('stateDict', value);
  const rounds = leanOptionKeys(spec).includes('stochasticRounding');
  checkKnownKeys(
    'stateDict',
    sd,
    rounds ? [...STATE_DICT_KEYS, ...ROUNDING_KEYS] : STATE_DICT_KEYS,
  );
  // Each field is read once: a getter cannot show validation one value and the copy another.
  const { optimizer: kind, state, paramGroups, lrSchedule, stochasticRounding, seed } = sd;
  checkKind(internals, 'stateDict.optimizer', kind);

  if (!Array.isArray(paramGroups)) {
    throw typeError('stateDict.paramGroups', 'an array of param groups', paramGroups);
  }
  checkGroupCount(internals, 'stateDict.paramGroups', paramGroups.length);
  const groupParams: unknown[] = [];
  const groups = (paramGroups as unknown[]).map((groupValue, g) => {
    const name = `stateDict.paramGroups[${g}]`;
    const group = checkObject(name, groupValue);
    checkKnownKeys(name, group, ['params', ...hyperKeys]);
    const fields: Record<string, unknown> = { ...group };
    const params = fields.params;
    if (!Array.isArray(params))
      throw typeError(`${name}.params`, 'an array of param indices', params);
    groupParams.push(params);
    const values: Record<string, unknown> = {};
    for (const [key, entry] of Object.entries(spec.hyperparameters)) {
      const given = fields[key];
      values[key] =
        given === undefined && entry.absentMeans !== undefined
          ? entry.absentMeans
          : entry.check(`${name}.${key}`, given);
    }
    return { values: values as HyperparameterValues, paramCount: params.length };
  });
  const rounding = {
    stochasticRounding:
      stochasticRounding === undefined
        ? false
        : checkBoolean('stateDict.stochasticRounding', stochasticRounding),
    seed: seed === undefined ? 0 : checkSeed('stateDict.seed', seed),
  };

  if (!Array.isArray(state)) throw typeError('stateDict.state', 'an array of param states', state);
  const stateKeys = ['name', 'step', 'dtype', ...spec.state.map((tensor) => tensor.name)];
  if (spec.factored === true) stateKeys.push('shape');
  // First every field of every entry is read (a getter, or a param's name getter, is the caller's
  // code and could detach or shrink an array already checked), then the arrays are checked back to
  // back and copied, with no caller code in between.
  const read = (state as unknown[]).map((entryValue, j) => {
    const name = `stateDict.state[${j}]`;
    const entry = checkObject(name, entryValue);
    checkKnownKeys(name, entry, stateKeys);
    const fields: Record<string, unknown> = { ...entry };
    // A blockwise8 tensor's two arrays are read here too, with every other field (whatever the
    // param's dtype: another one refuses an object where its typed array belongs).
    for (const tensor of spec.state) {
      const saved = fields[tensor.name];
      if (typeof saved === 'object' && saved !== null && !ArrayBuffer.isView(saved)) {
        const { codes, absmax } = saved as Record<string, unknown>;
        fields[tensor.name] = { codes, absmax };
      }
    }
    const entryName = fields.name;
    if (entryName !== undefined && typeof entryName !== 'string') {
      throw typeError(`${name}.name`, 'a string or undefined', entryName);
    }
    return { name, fields, entryName };
  });
  // Which of the optimizer's params and groups each saved one is (by name or by position).
  const matching = matchSaved(
    internals,
    read.map(({ entryName }) => entryName),
    groups.map((group) => group.paramCount),
    { state: 'stateDict.state', group: (g) => `stateDict.paramGroups[${g}].params` },
  );
  for (const [g, group] of groups.entries()) {
    const name = `stateDict.paramGroups[${g}]`;
    checkGroupFits(
      internals,
      matching.groupOf[g],
      (key) => `${name}.${key}`,
      group.paramCount,
      group.values,
    );
  }
  checkPartition(groupParams, (g) => `stateDict.paramGroups[${g}].params`);
  checkRoundingFits(internals, 'stateDict.stochasticRounding', rounding);
  const entries = read.map(({ name, fields, entryName }, j) => {
    const k = matching.slotOf[j];
    const slot = internals.slots[k];
    checkNameFits(slot, k, entryName, `${name}.name`);
    // Absent in state dicts of 0.1.0, which only had float32 state.
    const dtype = fields.dtype;
    if (dtype !== undefined) {
      if (typeof dtype !== 'string') throw typeError(`${name}.dtype`, `'${slot.dtype}'`, dtype);
      checkDtypeFits(internals, slot, `${name}.dtype`, dtype);
    }
    const shape = fields.shape;
    if (shape !== undefined) {
      checkShapeFits(
        internals,
        slot,
        `${name}.shape`,
        checkShape(`${name}.shape`, shape, slot.length),
      );
    }
    return { name, slot, fields, step: checkStepCount(`${name}.step`, fields.step) };
  });
  const schedule =
    lrSchedule === undefined
      ? null
      : scheduleToLoad(
          'stateDict.lrSchedule',
          checkScheduleState('stateDict.lrSchedule', lrSchedule, internals.groups.length),
          internals.scheduleState,
        );
  const params = entries.map(({ name, slot, fields, step }): ParamValues => {
    const arrays = spec.state.map((tensor, i) => {
      const saved = fields[tensor.name];
      if (slot.state[i] === null) {
        if (saved !== undefined) {
          throw typeError(
            `${name}.${tensor.name}`,
            `undefined (this param's group keeps no ${tensor.name})`,
            saved,
          );
        }
        return null;
      }
      const array = checkStateArray(
        `${name}.${tensor.name}`,
        saved,
        slot.dtype,
        slot.stateLengths[i] ?? 0,
        internals.blockSize,
      );
      if (!ArrayBuffer.isView(array)) {
        checkAbsmaxValues(array.absmax, (b) => `${name}.${tensor.name}.absmax[${b}]`);
      }
      return array;
    });
    return { step, state: arrays };
  });
  const ordered = inOptimizerOrder(
    matching,
    groups.map((group) => group.values),
    params,
    schedule,
  );
  applyState(internals, ordered.groups, ordered.params, ordered.schedule, rounding);
}
