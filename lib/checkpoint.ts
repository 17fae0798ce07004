// Checkpoints: an optimizer's complete state as a state dict in memory or a safetensors file, and
// back, bit for bit.
//
// The state dict is a copy (PyTorch's state_dict() returns references to the live tensors, so a
// dict kept as "the last good state" silently follows every later step unless deep-copied; a copy
// is what resuming needs). Files do not go through a state dict: save writes from the optimizer's
// own arrays, and the static load reads straight into a new optimizer's arrays, so neither needs a
// second copy of the state; loadFrom stages the file in new arrays first (see loadCheckpointInto).
//
// Loading is all or nothing: everything is validated against the optimizer (count, lengths, names,
// amsgrad, optimizer kind, hyperparameters, step counts, and for files the CRC-32) before any of its
// state changes.
//
// File layout (documented in the README, "Checkpoints"):
//   tensors   state.<key>.step            I64 []     the param's step count
//             state.<key>.exp_avg         F32 [n]
//             state.<key>.exp_avg_sq      F32 [n]
//             state.<key>.max_exp_avg_sq  F32 [n]    amsgrad groups only
//             with <key> the param's name, or its index in the optimizer when it has none.
//   metadata  format "simd-adamw.optimizer", format_version "1", optimizer "adamw" | "adam",
//             param_names (JSON: a name or null per param), param_groups (JSON, PyTorch's keys:
//             [{ "params": [0, 1], "lr", "betas", "eps", "weight_decay", "amsgrad", "maximize" }]),
//             crc32 (added by lib/safetensors.ts: the whole file's CRC-32; required here),
//             lr_schedule (JSON, only when a schedule is attached: the state dict's lrSchedule,
//             { "schedule": { "type", ... }, "position", "baseLrs" }).

import * as fs from 'node:fs';

import type { ResolvedHyper } from './hyperparameters';
import type { OptimizerInternals, Param, ParamState } from './optimizer';
import { checkScheduleState, type LrSchedule, type ScheduleState } from './schedules';
import {
  assertLittleEndianHost,
  CRC32_KEY,
  type FileOps,
  nodeFileOps,
  readHeader,
  readTensors,
  type SafetensorsHeader,
  type TensorInfo,
  type TensorToWrite,
  writeSafetensors,
} from './safetensors';
import { type JsonValue, JsonSyntaxError, parseStrictJson } from './strict-json';
import {
  checkBetas,
  checkBoolean,
  checkFloat32Array,
  checkNonNegative,
  checkObject,
  rangeError,
  typeError,
} from './validate';

/** Which update rule a state belongs to: AdamW's decoupled weight decay or Adam's L2. */
export type OptimizerKind = 'adamw' | 'adam';

/** One parameter's state in a {@link OptimizerStateDict}: copies, not views. */
export interface ParamStateDict extends ParamState {
  /** The param's name, when it has one. */
  name?: string;
}

/** One group's hyperparameters in a {@link OptimizerStateDict}. */
export interface ParamGroupStateDict {
  /** Indices into `state` of the group's params: the groups list 0, 1, 2, ... in order. */
  params: number[];
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
}

/** An attached learning-rate schedule in a {@link OptimizerStateDict}. */
export interface LrScheduleStateDict {
  schedule: LrSchedule;
  /** Steps taken since it was attached, skipped steps not counted. */
  position: number;
  /** Each group's base lr. */
  baseLrs: number[];
}

/** Everything needed to resume an optimizer, as returned by `stateDict()`. */
export interface OptimizerStateDict {
  optimizer: OptimizerKind;
  /** One entry per param, in the optimizer's order (its groups' params, group after group). */
  state: ParamStateDict[];
  paramGroups: ParamGroupStateDict[];
  /** Present when a schedule is attached. Loading a dict without it detaches the optimizer's. */
  lrSchedule?: LrScheduleStateDict;
}

const FORMAT = 'simd-adamw.optimizer';
const FORMAT_VERSION = '1';
const STATE_DICT_KEYS = ['optimizer', 'state', 'paramGroups', 'lrSchedule'];
const SCHEDULE_METADATA_KEY = 'lr_schedule';
const PARAM_STATE_KEYS = ['name', 'step', 'expAvg', 'expAvgSq', 'maxExpAvgSq'];
const GROUP_KEYS = ['params', 'lr', 'betas', 'eps', 'weightDecay', 'amsgrad', 'maximize'];
const FILE_GROUP_KEYS = ['params', 'lr', 'betas', 'eps', 'weight_decay', 'amsgrad', 'maximize'];

type Slot = OptimizerInternals['slots'][number];

// A group's validated hyperparameters: the same shape the optimizer's constructor resolves.
type GroupValues = ResolvedHyper;

interface ParamValues {
  step: number;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
  maxExpAvgSq: Float32Array | null;
}

const KIND_NAMES: Record<OptimizerKind, string> = { adamw: 'AdamW', adam: 'Adam' };

// ---------------------------------------------------------------------------------------------
// Checks shared by state dicts and files

/** A step count as stored: an integer >= 0 that a double represents exactly. */
function checkStepCount(name: string, value: unknown): number {
  if (typeof value !== 'number') throw typeError(name, 'a number', value);
  if (!Number.isSafeInteger(value) || value < 0) throw rangeError(name, 'an integer >= 0', value);
  return value;
}

function checkKind(internals: OptimizerInternals, name: string, kind: unknown): OptimizerKind {
  if (kind !== 'adamw' && kind !== 'adam') throw typeError(name, "'adamw' or 'adam'", kind);
  if (kind !== internals.kind) {
    throw rangeError(
      name,
      `'${internals.kind}' (this optimizer is ${KIND_NAMES[internals.kind]})`,
      kind,
    );
  }
  return kind;
}

function checkGroupCount(internals: OptimizerInternals, name: string, count: number): void {
  if (count !== internals.groups.length) {
    throw new RangeError(
      `Expected ${internals.groups.length} param groups (as this optimizer) for ${name} but received ${count}`,
    );
  }
}

/** Group `g` must have as many params as the optimizer's and the same amsgrad. */
function checkGroupFits(
  internals: OptimizerInternals,
  g: number,
  field: (key: string) => string,
  paramCount: number,
  amsgrad: boolean,
): void {
  const group = internals.groups[g];
  if (paramCount !== group.params.length) {
    throw new RangeError(
      `Expected ${group.params.length} params (as this optimizer's paramGroups[${g}]) for ` +
        `${field('params')} but received ${paramCount}`,
    );
  }
  if (amsgrad !== group.amsgrad) {
    throw rangeError(
      field('amsgrad'),
      `${group.amsgrad} (as this optimizer's paramGroups[${g}]; amsgrad decides which state exists)`,
      amsgrad,
    );
  }
}

/** The groups must list the params 0, 1, 2, ... in order, each once; returns how many. */
function checkPartition(groupParams: readonly unknown[], nameOf: (g: number) => string): number {
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

/** The name a param has now: undefined or a non-empty string (any other value is an error). */
function paramName(slot: Slot): string | undefined {
  const name: unknown = slot.param.name;
  if (name === undefined) return undefined;
  if (typeof name !== 'string' || name === '') {
    throw typeError(`${slot.label}.name`, 'a non-empty string or undefined', name);
  }
  return name;
}

function checkNameFits(slot: Slot, k: number, name: string | undefined, label: string): void {
  const current = paramName(slot);
  if (name !== undefined && current !== undefined && name !== current) {
    throw rangeError(label, `'${current}' (the name of this optimizer's param ${k})`, name);
  }
}

function checkParamCount(internals: OptimizerInternals, name: string, count: number): void {
  if (count !== internals.slots.length) {
    throw new RangeError(
      `Expected the state of ${internals.slots.length} params (as this optimizer) for ${name} ` +
        `but received ${count}`,
    );
  }
}

/** Copies validated state into the optimizer. Cannot fail: every value was checked. */
function applyState(
  internals: OptimizerInternals,
  groups: readonly GroupValues[],
  params: readonly ParamValues[],
  schedule: ScheduleState | null,
): void {
  for (const [g, values] of groups.entries()) {
    const group = internals.groups[g];
    group.lr = values.lr;
    group.betas = values.betas;
    group.eps = values.eps;
    group.weightDecay = values.weightDecay;
    group.maximize = values.maximize;
  }
  for (const [k, slot] of internals.slots.entries()) {
    const values = params[k];
    // Same-type TypedArray#set copies bytes: NaN payloads survive.
    slot.expAvg.set(values.expAvg);
    slot.expAvgSq.set(values.expAvgSq);
    if (slot.maxExpAvgSq !== null && values.maxExpAvgSq !== null) {
      slot.maxExpAvgSq.set(values.maxExpAvgSq);
    }
    slot.step = values.step;
  }
  // The groups' lrs were restored above, as the schedule had set them.
  internals.setScheduleState(schedule);
}

function scheduleStateDict(state: ScheduleState): LrScheduleStateDict {
  return { schedule: state.schedule, position: state.position, baseLrs: [...state.baseLrs] };
}

// ---------------------------------------------------------------------------------------------
// State dicts

/** A copy of the optimizer's state and hyperparameters. */
export function stateDictOf(internals: OptimizerInternals): OptimizerStateDict {
  const groupIndex = new Map(internals.groups.map((group, g) => [group, g]));
  const paramGroups: ParamGroupStateDict[] = internals.groups.map((group) => ({
    params: [],
    lr: group.lr,
    betas: [group.betas[0], group.betas[1]],
    eps: group.eps,
    weightDecay: group.weightDecay,
    amsgrad: group.amsgrad,
    maximize: group.maximize,
  }));
  const state = internals.slots.map((slot, k) => {
    paramGroups[groupIndex.get(slot.group) ?? 0]?.params.push(k);
    const entry: ParamStateDict = {
      step: slot.step,
      expAvg: slot.expAvg.slice(),
      expAvgSq: slot.expAvgSq.slice(),
    };
    if (slot.maxExpAvgSq !== null) entry.maxExpAvgSq = slot.maxExpAvgSq.slice();
    const name = paramName(slot);
    if (name !== undefined) entry.name = name;
    return entry;
  });
  const result: OptimizerStateDict = { optimizer: internals.kind, state, paramGroups };
  const schedule = internals.scheduleState;
  if (schedule !== null) result.lrSchedule = scheduleStateDict(schedule);
  return result;
}

function checkKnownKeys(name: string, object: Record<string, unknown>, known: string[]): void {
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) {
      throw new TypeError(`Unknown key ${name}.${key}; expected one of ${known.join(', ')}`);
    }
  }
}

/** Validates `value` as a state dict of this optimizer, then copies it in; on error nothing changes. */
export function loadStateDictInto(internals: OptimizerInternals, value: unknown): void {
  const sd = checkObject('stateDict', value);
  checkKnownKeys('stateDict', sd, STATE_DICT_KEYS);
  // Each field is read once: a getter cannot show validation one value and the copy another.
  const { optimizer: kind, state, paramGroups, lrSchedule } = sd;
  checkKind(internals, 'stateDict.optimizer', kind);

  if (!Array.isArray(paramGroups)) {
    throw typeError('stateDict.paramGroups', 'an array of param groups', paramGroups);
  }
  checkGroupCount(internals, 'stateDict.paramGroups', paramGroups.length);
  const groupParams: unknown[] = [];
  const groups = (paramGroups as unknown[]).map((groupValue, g) => {
    const name = `stateDict.paramGroups[${g}]`;
    const group = checkObject(name, groupValue);
    checkKnownKeys(name, group, GROUP_KEYS);
    const { params, lr, betas, eps, weightDecay, amsgrad, maximize } = group;
    if (!Array.isArray(params))
      throw typeError(`${name}.params`, 'an array of param indices', params);
    groupParams.push(params);
    const values: GroupValues = {
      lr: checkNonNegative(`${name}.lr`, lr),
      betas: checkBetas(`${name}.betas`, betas),
      eps: checkNonNegative(`${name}.eps`, eps),
      weightDecay: checkNonNegative(`${name}.weightDecay`, weightDecay),
      amsgrad: checkBoolean(`${name}.amsgrad`, amsgrad),
      maximize: checkBoolean(`${name}.maximize`, maximize),
    };
    checkGroupFits(internals, g, (key) => `${name}.${key}`, params.length, values.amsgrad);
    return values;
  });
  checkPartition(groupParams, (g) => `stateDict.paramGroups[${g}].params`);

  if (!Array.isArray(state)) throw typeError('stateDict.state', 'an array of param states', state);
  checkParamCount(internals, 'stateDict.state', state.length);
  const params = (state as unknown[]).map((entryValue, k): ParamValues => {
    const name = `stateDict.state[${k}]`;
    const slot = internals.slots[k];
    const entry = checkObject(name, entryValue);
    checkKnownKeys(name, entry, PARAM_STATE_KEYS);
    const { name: entryName, step, expAvg, expAvgSq, maxExpAvgSq } = entry;
    if (entryName !== undefined && typeof entryName !== 'string') {
      throw typeError(`${name}.name`, 'a string or undefined', entryName);
    }
    checkNameFits(slot, k, entryName, `${name}.name`);
    const amsgrad = slot.maxExpAvgSq !== null;
    if (!amsgrad && maxExpAvgSq !== undefined) {
      throw typeError(
        `${name}.maxExpAvgSq`,
        'undefined (amsgrad is off for this param)',
        maxExpAvgSq,
      );
    }
    return {
      step: checkStepCount(`${name}.step`, step),
      expAvg: checkFloat32Array(`${name}.expAvg`, expAvg, slot.length),
      expAvgSq: checkFloat32Array(`${name}.expAvgSq`, expAvgSq, slot.length),
      maxExpAvgSq: amsgrad
        ? checkFloat32Array(`${name}.maxExpAvgSq`, maxExpAvgSq, slot.length)
        : null,
    };
  });
  const schedule =
    lrSchedule === undefined
      ? null
      : checkScheduleState('stateDict.lrSchedule', lrSchedule, internals.groups.length);
  applyState(internals, groups, params, schedule);
}

// ---------------------------------------------------------------------------------------------
// Files

function checkPath(file: unknown): string {
  if (typeof file !== 'string' || file === '') throw typeError('path', 'a non-empty string', file);
  return file;
}

/** The tensor-name key of each param: its name, or its index when it has none. Unique. */
function paramKeys(names: readonly (string | undefined)[], source: string): string[] {
  const seen = new Map<string, number>();
  return names.map((name, k) => {
    const key = name ?? String(k);
    const other = seen.get(key);
    if (other !== undefined) {
      throw new RangeError(
        `Expected distinct tensor keys for the params of ${source} but params ${other} and ${k} ` +
          `both use '${key}' (an unnamed param is keyed by its index; rename the named one)`,
      );
    }
    seen.set(key, k);
    return key;
  });
}

// JSON.stringify writes -0 as 0. An lr of -0 (valid: it is >= 0) gives the update's zero term the
// other sign, which can flip a zero param's sign; -0.0 parses back to -0 here and in Python.
function jsonKeepingNegativeZero(value: unknown): string {
  const marker = '"\\u0000-0"'; // how JSON.stringify writes the string '\u0000-0'
  return JSON.stringify(value, (_, entry: unknown) =>
    Object.is(entry, -0) ? '\u0000-0' : entry,
  ).replaceAll(marker, '-0.0');
}

/**
 * Writes the optimizer's state to `file` as safetensors, atomically, streaming from its arrays.
 * `ops` replaces the file operations (tests simulate failing writes with it).
 */
export function saveCheckpoint(
  internals: OptimizerInternals,
  file: unknown,
  ops: FileOps = nodeFileOps,
): void {
  const target = checkPath(file);
  const names = internals.slots.map(paramName);
  const keys = paramKeys(names, 'this optimizer');
  const groupIndex = new Map(internals.groups.map((group, g) => [group, g]));
  const groupParams: number[][] = internals.groups.map(() => []);
  const tensors: TensorToWrite[] = [];
  // Step counts first: 8-byte values at 8-aligned offsets, then the float32 moments.
  for (const [k, slot] of internals.slots.entries()) {
    groupParams[groupIndex.get(slot.group) ?? 0]?.push(k);
    const step = new BigInt64Array([BigInt(slot.step)]);
    tensors.push({ name: `state.${keys[k]}.step`, dtype: 'I64', shape: [], data: step });
  }
  for (const [k, slot] of internals.slots.entries()) {
    const shape = [slot.length];
    const prefix = `state.${keys[k]}`;
    tensors.push({ name: `${prefix}.exp_avg`, dtype: 'F32', shape, data: slot.expAvg });
    tensors.push({ name: `${prefix}.exp_avg_sq`, dtype: 'F32', shape, data: slot.expAvgSq });
    if (slot.maxExpAvgSq !== null) {
      tensors.push({
        name: `${prefix}.max_exp_avg_sq`,
        dtype: 'F32',
        shape,
        data: slot.maxExpAvgSq,
      });
    }
  }
  const paramGroups = internals.groups.map((group, g) => ({
    params: groupParams[g],
    lr: group.lr,
    betas: [group.betas[0], group.betas[1]],
    eps: group.eps,
    weight_decay: group.weightDecay,
    amsgrad: group.amsgrad,
    maximize: group.maximize,
  }));
  const metadata: Record<string, string> = {
    format: FORMAT,
    format_version: FORMAT_VERSION,
    optimizer: internals.kind,
    param_names: JSON.stringify(names.map((name) => name ?? null)),
    param_groups: jsonKeepingNegativeZero(paramGroups),
  };
  const schedule = internals.scheduleState;
  if (schedule !== null) {
    metadata[SCHEDULE_METADATA_KEY] = jsonKeepingNegativeZero(scheduleStateDict(schedule));
  }
  writeSafetensors(target, tensors, metadata, ops);
}

interface FileParam {
  name: string | undefined;
  length: number;
  step: TensorInfo;
  expAvg: TensorInfo;
  expAvgSq: TensorInfo;
  maxExpAvgSq: TensorInfo | null;
}

/** A checkpoint file's contents, validated, before any tensor data is read. */
interface FilePlan {
  kind: OptimizerKind;
  groups: (GroupValues & { paramCount: number })[];
  params: FileParam[];
  schedule: ScheduleState | null;
}

// A strict-JSON value with its objects as plain (prototype-free) objects, for the validators
// shared with state dicts. Only for small values: it copies.
function plainJson(value: JsonValue): unknown {
  if (value instanceof Map) {
    const object = Object.create(null) as Record<string, unknown>;
    for (const [key, entry] of value) object[key] = plainJson(entry);
    return object;
  }
  if (Array.isArray(value)) return value.map(plainJson);
  return value;
}

function metadataField(header: SafetensorsHeader, file: string, key: string): string {
  const value = header.metadata.get(key);
  if (value === undefined) {
    throw new RangeError(
      `Expected __metadata__.${key} for checkpoint '${file}' but received nothing ` +
        `(a simd-adamw optimizer checkpoint has crc32, format, format_version, optimizer, param_names, param_groups)`,
    );
  }
  return value;
}

function metadataJson(header: SafetensorsHeader, file: string, key: string): JsonValue {
  const text = metadataField(header, file, key);
  try {
    return parseStrictJson(text);
  } catch (error) {
    if (error instanceof JsonSyntaxError) {
      throw new RangeError(
        `Expected JSON for __metadata__.${key} of checkpoint '${file}' but received an error: ${error.message}`,
        { cause: error },
      );
    }
    throw error;
  }
}

/** Validates a checkpoint's metadata and tensor list against each other (not yet the optimizer). */
function planFromHeader(header: SafetensorsHeader, file: string): FilePlan {
  const where = `checkpoint '${file}'`;
  const format = header.metadata.get('format');
  if (format !== FORMAT) {
    throw rangeError(
      `__metadata__.format of ${where}`,
      `'${FORMAT}' (a simd-adamw optimizer checkpoint)`,
      format,
    );
  }
  // Files written by save() always carry the checksum; one without it was not.
  metadataField(header, file, CRC32_KEY);
  const version = metadataField(header, file, 'format_version');
  if (version !== FORMAT_VERSION) {
    throw rangeError(
      `__metadata__.format_version of ${where}`,
      `'${FORMAT_VERSION}' (the version this simd-adamw reads)`,
      version,
    );
  }
  const kind = metadataField(header, file, 'optimizer');
  if (kind !== 'adamw' && kind !== 'adam') {
    throw rangeError(`__metadata__.optimizer of ${where}`, "'adamw' or 'adam'", kind);
  }

  const namesValue = metadataJson(header, file, 'param_names');
  if (!Array.isArray(namesValue)) {
    throw typeError(`__metadata__.param_names of ${where}`, 'an array', namesValue);
  }
  const names = namesValue.map((name, k) => {
    if (name === null) return undefined;
    if (typeof name !== 'string' || name === '') {
      throw typeError(
        `__metadata__.param_names[${k}] of ${where}`,
        'a non-empty string or null',
        name,
      );
    }
    return name;
  });
  const keys = paramKeys(names, where);

  const groupsValue = metadataJson(header, file, 'param_groups');
  if (!Array.isArray(groupsValue)) {
    throw typeError(`__metadata__.param_groups of ${where}`, 'an array', groupsValue);
  }
  const groupParams: JsonValue[] = [];
  const groups = groupsValue.map((groupValue, g) => {
    const name = `__metadata__.param_groups[${g}] of ${where}`;
    if (!(groupValue instanceof Map)) throw typeError(name, 'an object', groupValue);
    for (const key of groupValue.keys()) {
      if (!FILE_GROUP_KEYS.includes(key)) {
        throw new TypeError(
          `Unknown key '${key}' in ${name}; expected ${FILE_GROUP_KEYS.join(', ')}`,
        );
      }
    }
    const field = (key: string) => `__metadata__.param_groups[${g}].${key} of ${where}`;
    const params = groupValue.get('params');
    groupParams.push(params ?? null);
    return {
      paramCount: Array.isArray(params) ? params.length : 0,
      lr: checkNonNegative(field('lr'), groupValue.get('lr')),
      betas: checkBetas(field('betas'), groupValue.get('betas')),
      eps: checkNonNegative(field('eps'), groupValue.get('eps')),
      weightDecay: checkNonNegative(field('weight_decay'), groupValue.get('weight_decay')),
      amsgrad: checkBoolean(field('amsgrad'), groupValue.get('amsgrad')),
      maximize: checkBoolean(field('maximize'), groupValue.get('maximize')),
    };
  });
  const paramCount = checkPartition(
    groupParams,
    (g) => `__metadata__.param_groups[${g}].params of ${where}`,
  );
  if (paramCount !== names.length) {
    throw new RangeError(
      `Expected param_groups listing all ${names.length} params of __metadata__.param_names for ` +
        `${where} but received ${paramCount}`,
    );
  }

  // The tensors must be exactly those the metadata implies, each with its dtype and shape.
  let expectedTensors = 0;
  const tensor = (name: string, dtype: 'I64' | 'F32', shape: 'scalar' | 'vector'): TensorInfo => {
    const info = header.tensors.get(name);
    if (info === undefined) {
      throw new RangeError(`Expected a tensor '${name}' in ${where} but received none`);
    }
    const rank = shape === 'scalar' ? 0 : 1;
    if (info.dtype !== dtype || info.shape.length !== rank) {
      throw new RangeError(
        `Expected a ${dtype} ${shape} (shape ${shape === 'scalar' ? '[]' : '[n]'}) for tensor ` +
          `'${name}' of ${where} but received ${info.dtype} [${info.shape.join(', ')}]`,
      );
    }
    expectedTensors++;
    return info;
  };
  const sameLength = (name: string, length: number): TensorInfo => {
    const info = tensor(name, 'F32', 'vector');
    if (info.shape[0] !== length) {
      throw new RangeError(
        `Expected shape [${length}] (as exp_avg) for tensor '${name}' of ${where} but received ` +
          `[${info.shape.join(', ')}]`,
      );
    }
    return info;
  };
  const amsgradOfParam = groups.flatMap((group) =>
    new Array<boolean>(group.paramCount).fill(group.amsgrad),
  );
  const params = names.map((name, k): FileParam => {
    const prefix = `state.${keys[k]}`;
    const step = tensor(`${prefix}.step`, 'I64', 'scalar');
    const expAvg = tensor(`${prefix}.exp_avg`, 'F32', 'vector');
    const length = expAvg.shape[0];
    return {
      name,
      length,
      step,
      expAvg,
      expAvgSq: sameLength(`${prefix}.exp_avg_sq`, length),
      maxExpAvgSq: amsgradOfParam[k] ? sameLength(`${prefix}.max_exp_avg_sq`, length) : null,
    };
  });
  if (expectedTensors !== header.tensors.size) {
    const expected = new Set<string>();
    for (const p of params) {
      for (const info of [p.step, p.expAvg, p.expAvgSq, p.maxExpAvgSq]) {
        if (info !== null) expected.add(info.name);
      }
    }
    const extra = [...header.tensors.keys()].find((name) => !expected.has(name));
    throw new RangeError(
      `Expected only the tensors of the ${params.length} params in __metadata__ for ${where} but ` +
        `received an unexpected tensor '${extra ?? ''}'`,
    );
  }
  const schedule = header.metadata.has(SCHEDULE_METADATA_KEY)
    ? checkScheduleState(
        `__metadata__.${SCHEDULE_METADATA_KEY}`,
        plainJson(metadataJson(header, file, SCHEDULE_METADATA_KEY)),
        groups.length,
        ` of ${where}`,
      )
    : null;
  return { kind, groups, params, schedule };
}

/** The plan must fit the optimizer: kind, groups, amsgrad, param count, names, lengths. */
function checkPlanFits(internals: OptimizerInternals, plan: FilePlan, file: string): void {
  const where = `checkpoint '${file}'`;
  checkKind(internals, `__metadata__.optimizer of ${where}`, plan.kind);
  checkGroupCount(internals, `__metadata__.param_groups of ${where}`, plan.groups.length);
  for (const [g, group] of plan.groups.entries()) {
    checkGroupFits(
      internals,
      g,
      (key) => `__metadata__.param_groups[${g}].${key} of ${where}`,
      group.paramCount,
      group.amsgrad,
    );
  }
  checkParamCount(internals, where, plan.params.length);
  for (const [k, param] of plan.params.entries()) {
    const slot = internals.slots[k];
    checkNameFits(slot, k, param.name, `__metadata__.param_names[${k}] of ${where}`);
    if (param.length !== slot.length) {
      throw new RangeError(
        `Expected ${slot.length} elements (the length of ${slot.label}) for tensor ` +
          `'${param.expAvg.name}' of ${where} but received ${param.length}`,
      );
    }
  }
}

type StateArrays = Omit<ParamValues, 'step'>;

/**
 * Reads the whole file, each tensor into its place (`arraysOf(k)` for param k's moments), checks
 * the checksum, and returns the step counts. Throws, with only `arraysOf`'s arrays written, on a
 * read error, a checksum mismatch or a step count outside [0, 2^53).
 */
function readPlannedFile(
  fd: number,
  file: string,
  header: SafetensorsHeader,
  plan: FilePlan,
  arraysOf: (k: number) => StateArrays,
): number[] {
  const stepBytes = plan.params.map(() => new BigInt64Array(1));
  const destinations = new Map<string, ArrayBufferView>();
  for (const [k, param] of plan.params.entries()) {
    const arrays = arraysOf(k);
    destinations.set(param.step.name, stepBytes[k]);
    destinations.set(param.expAvg.name, arrays.expAvg);
    destinations.set(param.expAvgSq.name, arrays.expAvgSq);
    if (param.maxExpAvgSq !== null && arrays.maxExpAvgSq !== null) {
      destinations.set(param.maxExpAvgSq.name, arrays.maxExpAvgSq);
    }
  }
  // planFromHeader matched the file's tensors to the plan's one for one.
  readTensors(fd, file, header, (tensor) => {
    const destination = destinations.get(tensor.name);
    if (destination === undefined) throw new Error(`simd-adamw: internal error: ${tensor.name}`);
    return destination;
  });
  return plan.params.map((param, k) => {
    const step = stepBytes[k][0];
    if (step < 0n || step > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new RangeError(
        `Expected a step count in [0, 2^53) for tensor '${param.step.name}' of checkpoint ` +
          `'${file}' but received ${step}`,
      );
    }
    return Number(step);
  });
}

function withCheckpointFile<T>(file: unknown, use: (fd: number, path: string) => T): T {
  const target = checkPath(file);
  assertLittleEndianHost();
  const fd = fs.openSync(target, 'r');
  try {
    return use(fd, target);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Loads a checkpoint file into an existing optimizer. The whole file is validated, then read into
 * new arrays, and only then copied into the optimizer: an error at any point (a corrupt file, one
 * for other params, a failing disk) leaves it unchanged. The price is holding the loaded state next
 * to the optimizer's own until the copy; {@link loadOptimizer} reads straight into a new optimizer.
 */
export function loadCheckpointInto(internals: OptimizerInternals, file: unknown): void {
  withCheckpointFile(file, (fd, target) => {
    const header = readHeader(fd, target);
    const plan = planFromHeader(header, target);
    checkPlanFits(internals, plan, target);
    const arrays = plan.params.map((param): StateArrays => ({
      expAvg: new Float32Array(param.length),
      expAvgSq: new Float32Array(param.length),
      maxExpAvgSq: param.maxExpAvgSq === null ? null : new Float32Array(param.length),
    }));
    const steps = readPlannedFile(fd, target, header, plan, (k) => arrays[k]);
    applyState(
      internals,
      plan.groups,
      arrays.map((values, k) => ({ ...values, step: steps[k] })),
      plan.schedule,
    );
  });
}

/** What a class's static load needs: a new optimizer of its kind for these groups. */
export type OptimizerFactory<T> = (groups: (GroupValues & { params: Param[] })[]) => {
  optimizer: T;
  internals: OptimizerInternals;
};

/**
 * Creates an optimizer for `params` (in the saved order) with the file's groups and
 * hyperparameters, and reads the file's state directly into its arrays. On any error the new
 * optimizer is dropped, so nothing the caller holds has changed.
 */
export function loadOptimizer<T>(file: unknown, params: unknown, create: OptimizerFactory<T>): T {
  return withCheckpointFile(file, (fd, target) => {
    const header = readHeader(fd, target);
    const plan = planFromHeader(header, target);
    if (!Array.isArray(params)) {
      throw typeError(
        'params',
        `an array of the checkpoint's ${plan.params.length} params`,
        params,
      );
    }
    if (params.length !== plan.params.length) {
      throw rangeError(
        'params',
        `an array of ${plan.params.length} params (as checkpoint '${target}', in its order)`,
        params,
      );
    }
    let first = 0;
    const groups = plan.groups.map((group) => {
      const groupParams = (params as Param[]).slice(first, first + group.paramCount);
      first += group.paramCount;
      return {
        params: groupParams,
        lr: group.lr,
        betas: group.betas,
        eps: group.eps,
        weightDecay: group.weightDecay,
        amsgrad: group.amsgrad,
        maximize: group.maximize,
      };
    });
    const { optimizer, internals } = create(groups);
    checkPlanFits(internals, plan, target);
    // A new optimizer nobody else holds yet: reading straight into its arrays is safe.
    const steps = readPlannedFile(fd, target, header, plan, (k) => internals.slots[k]);
    for (const [k, slot] of internals.slots.entries()) slot.step = steps[k];
    internals.setScheduleState(plan.schedule);
    return optimizer;
  });
}
