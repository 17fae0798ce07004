// Checkpoint files: an optimizer's complete state as a safetensors file, and back, bit for bit,
// for any optimizer, from its spec.
//
// Files do not go through a state dict: save writes from the optimizer's own arrays, and the
// static load reads straight into a new optimizer's arrays, so neither needs a second copy of the
// state; loadFrom stages the file in new arrays first (see loadCheckpointInto). Everything is
// validated (metadata, tensor list, the optimizer's fit, the CRC-32) before any state changes.
//
// File layout (documented in docs/file-format.md):
//   tensors   state.<key>.step          I64 []     the param's step count
//             state.<key>.<fileName>    each state tensor of the spec the param keeps (AdamW:
//                                       exp_avg, exp_avg_sq, and with amsgrad max_exp_avg_sq;
//                                       Adafactor's exp_avg_sq_row [rows] and exp_avg_sq_col
//                                       [cols] for a param of 2 or more dimensions), flat, as the
//                                       param's state dtype keeps it:
//                                         float32     F32 [n]
//                                         bfloat16    BF16 [n]
//                                         blockwise8  U8 [n] (the codes), with
//             state.<key>.<fileName>.absmax   F32 [ceil(n / 256)]  its absmax per block
//             with <key> the param's name, or its index in the optimizer when it has none. Steps
//             come first, then F32, BF16 and U8 tensors, so each is aligned to its element size.
//   metadata  format "simd-adamw.optimizer", format_version "2" ("1" files, from 0.1.0, load as
//             float32 state), optimizer (the spec's kind: "adamw" | "adam" | "lion" | "adafactor" |
//             "came"), param_names (JSON: a name or null per param), param_shapes (JSON: each
//             param's shape, [n] when it has none; required for adafactor and came, whose state
//             lengths follow from it, and absent in files before 0.2.0), param_groups (JSON, PyTorch's keys, each hyperparameter by
//             its fileKey: [{ "params": [0, 1], "lr", "betas", "eps", "weight_decay", "amsgrad",
//             "maximize", "state_dtype" }]), lean_state (JSON, for specs with lean state:
//             { "stochastic_rounding", "seed", "min_8bit_size" }, each only if the spec takes it),
//             crc32 (added by format/safetensors.ts: the whole file's CRC-32; required here),
//             lr_schedule (JSON, only when a schedule is attached: { "schedule": { "type", ... },
//             "position", "baseLrs" }, a lambda schedule as { "type": "lambda" } without its
//             function, and a reduceOnPlateau schedule with "plateau": { "factor", "best" (null
//             before the first metric), "numBadEpochs", "cooldownCounter" }).
//   A param's state dtype is its group's state_dtype, or float32 under blockwise8 when it has
//   fewer than min_8bit_size elements.
import * as fs from 'node:fs';

import { checkBoolean } from '../core/checks';
import { checkKnownKeys, countOf, describe, rangeError, typeError } from '../core/errors';
import { lengthOf } from '../core/intrinsics';
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
} from '../format/safetensors';
import { type JsonValue, JsonSyntaxError, parseStrictJson } from '../format/strict-json';
import type { HyperparameterValues } from '../optim/hyperparameters';
import type { OptimizerInternals } from '../optim/internals';
import { checkMin8bitSize, checkSeed, leanOptionKeys } from '../optim/lean-options';
import { groupValues } from '../optim/param-groups';
import { type AnyParam, currentName } from '../optim/params';
import type { AnyOptimizerSpec, StateDtype } from '../optim/spec';
import {
  blockwise8BlockSize,
  checkAbsmaxValues,
  DEFAULT_MIN_8BIT_SIZE,
  effectiveStateDtype,
  newStateArray,
  type StateArray,
  stateTensorLengths,
  storageOf,
} from '../optim/state-storage';
import { checkScheduleState, type SavedScheduleState, scheduleToLoad } from '../train/schedules';
import {
  applyState,
  checkDtypeFits,
  checkGroupCount,
  checkGroupFits,
  checkDistinctNames,
  checkKind,
  checkNameFits,
  checkPartition,
  checkRoundingFits,
  checkSameNames,
  checkShapeFits,
  inOptimizerOrder,
  type Matching,
  matchSaved,
  type SavedRounding,
  scheduleInOptimizerOrder,
} from './fit';
import { copyValue, scheduleStateDict } from './state-dict';

const FORMAT = 'simd-adamw.optimizer';
const FORMAT_VERSION = '2';
// Versions this reads: 0.1.0 wrote "1" (float32 state, no state_dtype, no lean_state).
const READABLE_VERSIONS = ['1', '2'];
const SCHEDULE_METADATA_KEY = 'lr_schedule';
// The file's lr_schedule, as messages name it.
const scheduleName = (file: string) =>
  `__metadata__.${SCHEDULE_METADATA_KEY} of checkpoint '${file}'`;
const LEAN_METADATA_KEY = 'lean_state';
const SHAPES_METADATA_KEY = 'param_shapes';
// The lean_state keys of the lean-state options (optim/lean-options.ts).
const LEAN_FILE_KEYS: Readonly<Record<string, string>> = {
  stochasticRounding: 'stochastic_rounding',
  seed: 'seed',
  min8bitSize: 'min_8bit_size',
};

/** A state dtype's safetensors dtypes: its values (or codes), and its absmax if any. */
const FILE_DTYPES: Readonly<Record<StateDtype, readonly ('F32' | 'BF16' | 'U8')[]>> = {
  float32: ['F32'],
  bfloat16: ['BF16'],
  blockwise8: ['U8', 'F32'],
};

/** The name of the absmax tensor paired with a blockwise8 state tensor `name`. */
function absmaxName(name: string): string {
  return `${name}.absmax`;
}

// The typed arrays of a state array, in FILE_DTYPES order.
function partsOf(array: StateArray): ArrayBufferView[] {
  return ArrayBuffer.isView(array) ? [array] : [array.codes, array.absmax];
}

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
        `Expected distinct tensor keys for the params of ${source} but received '${key}' for ` +
          `params ${other} and ${k} (an unnamed param is keyed by its index; rename the named one)`,
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
  const { tensors, metadata } = checkpointContents(internals);
  writeSafetensors(target, tensors, metadata, ops);
}

/** The tensors (views of the optimizer's arrays, in file order) and metadata of the optimizer's
 * checkpoint, as saveCheckpoint writes them; also the optimizer's part of a training file. */
export function checkpointContents(internals: OptimizerInternals): {
  tensors: TensorToWrite[];
  metadata: Record<string, string>;
} {
  const { spec } = internals;
  const names = internals.slots.map((slot) => currentName(slot.param, slot.label));
  const keys = paramKeys(names, 'this optimizer');
  const groupParams: number[][] = internals.groups.map(() => []);
  const tensors: TensorToWrite[] = [];
  // Step counts first: 8-byte values at 8-aligned offsets, then the state by element size.
  for (const [k, slot] of internals.slots.entries()) {
    groupParams[slot.groupIndex]?.push(k);
    const step = new BigInt64Array([BigInt(slot.step)]);
    tensors.push({ name: `state.${keys[k]}.step`, dtype: 'I64', shape: [], data: step });
  }
  const byDtype = {
    F32: [] as TensorToWrite[],
    BF16: [] as TensorToWrite[],
    U8: [] as TensorToWrite[],
  };
  for (const [k, slot] of internals.slots.entries()) {
    for (const [i, tensor] of spec.state.entries()) {
      const array = slot.state[i];
      if (array === null) continue;
      const name = `state.${keys[k]}.${tensor.fileName}`;
      const dtypes = FILE_DTYPES[slot.dtype];
      for (const [part, data] of partsOf(array).entries()) {
        const dtype = dtypes[part];
        const entry = { name: part === 0 ? name : absmaxName(name), dtype, data };
        byDtype[dtype].push({ ...entry, shape: [lengthOf(data)] });
      }
    }
  }
  tensors.push(...byDtype.F32, ...byDtype.BF16, ...byDtype.U8);
  const paramGroups = internals.groups.map((group, g) => {
    const entry: Record<string, unknown> = { params: groupParams[g] };
    const values = groupValues(group);
    for (const [key, hyper] of Object.entries(spec.hyperparameters)) {
      const value = values[key];
      entry[hyper.fileKey] = copyValue(value);
    }
    return entry;
  });
  const metadata: Record<string, string> = {
    format: FORMAT,
    format_version: FORMAT_VERSION,
    optimizer: spec.kind,
    param_names: JSON.stringify(names.map((name) => name ?? null)),
    param_groups: jsonKeepingNegativeZero(paramGroups),
    param_shapes: JSON.stringify(internals.slots.map((slot) => slot.shape)),
  };
  const leanKeys = leanOptionKeys(spec);
  if (leanKeys.length > 0) {
    const lean: Record<string, unknown> = {};
    const settings = internals.lean as unknown as Record<string, unknown>;
    for (const key of leanKeys) lean[LEAN_FILE_KEYS[key]] = settings[key];
    metadata[LEAN_METADATA_KEY] = JSON.stringify(lean);
  }
  const schedule = internals.scheduleState;
  if (schedule !== null) {
    metadata[SCHEDULE_METADATA_KEY] = jsonKeepingNegativeZero(scheduleStateDict(schedule));
  }
  return { tensors, metadata };
}

interface FileParam {
  name: string | undefined;
  /** Its number of elements. */
  length: number;
  /** Its shape: from param_shapes, or [length] in a file without them. */
  shape: readonly number[];
  /** The length of each of its state tensors in spec.state order; null where it keeps none. */
  stateLengths: readonly (number | null)[];
  /** How its state is kept. */
  dtype: StateDtype;
  step: TensorInfo;
  /** Its state tensors in spec.state order, each its tensors in FILE_DTYPES order (values or
   * codes, then absmax); null where its group keeps none. */
  state: (readonly TensorInfo[] | null)[];
}

/** A checkpoint file's contents, validated, before any tensor data is read. */
interface FilePlan {
  kind: string;
  groups: { values: HyperparameterValues; paramCount: number }[];
  params: FileParam[];
  /** A lambda schedule's function is the optimizer's (scheduleToLoad). */
  schedule: SavedScheduleState | null;
  rounding: SavedRounding;
  min8bitSize: number;
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
      `Expected a string for __metadata__.${key} of checkpoint '${file}' but received nothing ` +
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
        `Expected JSON for __metadata__.${key} of checkpoint '${file}' but received ` +
          `${describe(text)} (${error.message})`,
        { cause: error },
      );
    }
    throw error;
  }
}

/** Validates a checkpoint's metadata and tensor list against each other and against `spec`'s
 * declaration (not yet against an optimizer's params). */
function planFromHeader(spec: AnyOptimizerSpec, header: SafetensorsHeader, file: string): FilePlan {
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
  if (!READABLE_VERSIONS.includes(version)) {
    throw rangeError(
      `__metadata__.format_version of ${where}`,
      `${READABLE_VERSIONS.map((v) => `'${v}'`).join(' or ')} (the versions this simd-adamw reads)`,
      version,
    );
  }
  const kind = metadataField(header, file, 'optimizer');
  if (kind !== spec.kind) {
    throw rangeError(
      `__metadata__.optimizer of ${where}`,
      `'${spec.kind}' (this optimizer is ${spec.className})`,
      kind,
    );
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
  const hyperparameters = Object.entries(spec.hyperparameters);
  const fileKeys = ['params', ...hyperparameters.map(([, entry]) => entry.fileKey)];
  const groupParams: JsonValue[] = [];
  const groups = groupsValue.map((groupValue, g) => {
    const name = `__metadata__.param_groups[${g}]`;
    if (!(groupValue instanceof Map))
      throw typeError(`${name} of ${where}`, 'an object', groupValue);
    checkKnownKeys(name, groupValue, fileKeys, ` of ${where}`);
    const params = groupValue.get('params');
    groupParams.push(params ?? null);
    const values: Record<string, unknown> = {};
    for (const [key, entry] of hyperparameters) {
      const value = groupValue.get(entry.fileKey);
      values[key] =
        value === undefined && entry.absentMeans !== undefined
          ? entry.absentMeans
          : entry.check(
              `${name}.${entry.fileKey} of ${where}`,
              value === undefined ? undefined : plainJson(value),
            );
    }
    return {
      values: values as HyperparameterValues,
      paramCount: Array.isArray(params) ? params.length : 0,
    };
  });
  const paramCount = checkPartition(
    groupParams,
    (g) => `__metadata__.param_groups[${g}].params of ${where}`,
  );
  if (paramCount !== names.length) {
    throw new RangeError(
      `Expected param groups listing all ${countOf(names.length, 'param')} of ` +
        `__metadata__.param_names for __metadata__.param_groups of ${where} but received param ` +
        `groups listing ${countOf(paramCount, 'param')}`,
    );
  }

  const lean = leanSettings(spec, header, file, where);

  // The tensors must be exactly those the metadata implies, each with its dtype and shape.
  const expected = new Set<string>();
  const tensor = (
    name: string,
    dtype: 'I64' | 'F32' | 'BF16' | 'U8',
    shape: 'scalar' | 'vector',
  ): TensorInfo => {
    const info = header.tensors.get(name);
    if (info === undefined) {
      throw new RangeError(`Expected a tensor '${name}' for ${where} but received none`);
    }
    const rank = shape === 'scalar' ? 0 : 1;
    if (info.dtype !== dtype || info.shape.length !== rank) {
      throw new RangeError(
        `Expected a ${dtype} ${shape} (shape ${shape === 'scalar' ? '[]' : '[n]'}) for tensor ` +
          `'${name}' of ${where} but received ${info.dtype} [${info.shape.join(', ')}]`,
      );
    }
    expected.add(name);
    return info;
  };
  const groupOfParam = groups.flatMap((group) =>
    new Array<HyperparameterValues>(group.paramCount).fill(group.values),
  );
  const dtypeKey = spec.stateDtypeKey;
  let blockSize = 0; // asked of the addon only for blockwise8 state

  const shapes = paramShapes(spec, header, file, where, names.length);
  const params = names.map((name, k): FileParam => {
    const prefix = `state.${keys[k]}`;
    const step = tensor(`${prefix}.step`, 'I64', 'scalar');
    const values = groupOfParam[k];
    // The param's length is its shape's product; in a file without shapes (before 0.2.0, which
    // had only 'param'-long state) its first state tensor's. That and its group decide its dtype.
    let shape = shapes?.[k];
    let firstName = '';
    if (shape === undefined) {
      const first = stateTensorLengths(spec, values, [0], 0).findIndex((n) => n !== null);
      firstName = first < 0 ? '' : `${prefix}.${spec.state[first].fileName}`;
      const firstInfo = header.tensors.get(firstName);
      shape = [firstInfo?.shape.length === 1 ? (firstInfo.shape[0] ?? 0) : 0];
    }
    const length = shape.reduce((product, dim) => product * dim, 1);
    const stateLengths = stateTensorLengths(spec, values, shape, length);
    const groupDtype = dtypeKey === undefined ? 'float32' : (values[dtypeKey] as StateDtype);
    const dtype = effectiveStateDtype(groupDtype, length, lean.min8bitSize);
    if (dtype === 'blockwise8' && blockSize === 0) blockSize = blockwise8BlockSize(spec);
    const state = spec.state.map((declared, i) => {
      const tensorLength = stateLengths[i];
      if (tensorLength === null) return null;
      const storage = storageOf(dtype, tensorLength, blockSize);
      const base = `${prefix}.${declared.fileName}`;
      return FILE_DTYPES[dtype].map((fileDtype, part) => {
        const info = tensor(part === 0 ? base : absmaxName(base), fileDtype, 'vector');
        const want = storage[part].length;
        if (info.shape[0] !== want) {
          const why =
            part === 1
              ? `one per ${blockSize} elements of ${base}`
              : firstName !== ''
                ? `as ${firstName}`
                : `for a param of shape [${shape.join(', ')}] in __metadata__.param_shapes`;
          throw new RangeError(
            `Expected shape [${want}] (${why}) for tensor '${info.name}' of ${where} but ` +
              `received [${info.shape.join(', ')}]`,
          );
        }
        return info;
      });
    });
    return { name, length, shape, stateLengths, dtype, step, state };
  });
  if (expected.size !== header.tensors.size) {
    const extra = [...header.tensors.keys()].find((name) => !expected.has(name));
    throw new RangeError(
      `Expected only the tensors of the ${countOf(params.length, 'param')} in __metadata__ for ${where} but ` +
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
  return {
    kind,
    groups,
    params,
    schedule,
    rounding: { stochasticRounding: lean.stochasticRounding, seed: lean.seed },
    min8bitSize: lean.min8bitSize,
  };
}

/** The file's param_shapes (one shape per param), or undefined in a file written before there
 * were any; required for a factored spec, whose state tensors' lengths depend on them. */
function paramShapes(
  spec: AnyOptimizerSpec,
  header: SafetensorsHeader,
  file: string,
  where: string,
  count: number,
): number[][] | undefined {
  const name = `__metadata__.${SHAPES_METADATA_KEY} of ${where}`;
  if (!header.metadata.has(SHAPES_METADATA_KEY)) {
    if (spec.factored === true) {
      throw new RangeError(
        `Expected the shapes of a factored optimizer's params for ${name} but received nothing`,
      );
    }
    return undefined;
  }
  const value = metadataJson(header, file, SHAPES_METADATA_KEY);
  if (!Array.isArray(value)) throw typeError(name, 'an array of shapes', value);
  if (value.length !== count) {
    throw rangeError(
      name,
      `an array of ${countOf(count, 'shape')} (one per param of param_names)`,
      value,
    );
  }
  return value.map((shape, k) => {
    const entry = `__metadata__.${SHAPES_METADATA_KEY}[${k}] of ${where}`;
    if (!Array.isArray(shape)) throw typeError(entry, 'an array of dimensions', shape);
    return shape.map((dim, i) => {
      if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0 || dim > 0xffffffff) {
        throw rangeError(`${entry}[${i}]`, 'an integer in [0, 2^32)', dim);
      }
      return dim;
    });
  });
}

/** The file's lean_state, each option its default when absent (files of 0.1.0 have none). */
function leanSettings(
  spec: AnyOptimizerSpec,
  header: SafetensorsHeader,
  file: string,
  where: string,
): { stochasticRounding: boolean; seed: number; min8bitSize: number } {
  const settings = { stochasticRounding: false, seed: 0, min8bitSize: DEFAULT_MIN_8BIT_SIZE };
  if (!header.metadata.has(LEAN_METADATA_KEY)) return settings;
  const name = `__metadata__.${LEAN_METADATA_KEY}`;
  const value = metadataJson(header, file, LEAN_METADATA_KEY);
  if (!(value instanceof Map)) throw typeError(`${name} of ${where}`, 'an object', value);
  const keys = leanOptionKeys(spec);
  checkKnownKeys(
    name,
    value,
    keys.map((key) => LEAN_FILE_KEYS[key]),
    ` of ${where}`,
  );
  const read = (key: string) => value.get(LEAN_FILE_KEYS[key]);
  const field = (key: string) => `${name}.${LEAN_FILE_KEYS[key]} of ${where}`;
  const rounding = read('stochasticRounding');
  if (rounding !== undefined) {
    settings.stochasticRounding = checkBoolean(field('stochasticRounding'), rounding);
  }
  const seed = read('seed');
  if (seed !== undefined) settings.seed = checkSeed(field('seed'), seed);
  const min8bitSize = read('min8bitSize');
  if (min8bitSize !== undefined) {
    settings.min8bitSize = checkMin8bitSize(field('min8bitSize'), min8bitSize);
  }
  return settings;
}

/** The plan must fit the optimizer: kind, groups, fixed hyperparameters, param count, names,
 * lengths. Returns which of the optimizer's params and groups each of the file's is (by name when
 * every param has one, else by position: checkpoint/fit.ts, matchSaved). */
function checkPlanFits(internals: OptimizerInternals, plan: FilePlan, file: string): Matching {
  const where = `checkpoint '${file}'`;
  // The kind was checked against the spec the plan was made for (planFromHeader).
  if (internals.spec.kind !== plan.kind) {
    checkKind(internals, `__metadata__.optimizer of ${where}`, plan.kind);
  }
  checkGroupCount(internals, `__metadata__.param_groups of ${where}`, plan.groups.length);
  const matching = matchSaved(
    internals,
    plan.params.map((param) => param.name),
    plan.groups.map((group) => group.paramCount),
    {
      state: `__metadata__.param_names of ${where}`,
      group: (g) => `__metadata__.param_groups[${g}].params of ${where}`,
    },
  );
  for (const [g, group] of plan.groups.entries()) {
    checkGroupFits(
      internals,
      matching.groupOf[g],
      (key) => `__metadata__.param_groups[${g}].${key} of ${where}`,
      group.paramCount,
      group.values,
    );
  }
  for (const [j, param] of plan.params.entries()) {
    const k = matching.slotOf[j];
    const slot = internals.slots[k];
    checkNameFits(slot, k, param.name, `__metadata__.param_names[${j}] of ${where}`);
    const first = param.state.find((infos) => infos !== null)?.[0];
    checkShapeFits(
      internals,
      slot,
      `__metadata__.${SHAPES_METADATA_KEY}[${j}] of ${where}`,
      param.shape,
    );
    if (first !== undefined && param.length !== slot.length) {
      throw new RangeError(
        `Expected ${countOf(slot.length, 'element')} (the length of ${slot.label}) for tensor ` +
          `'${first.name}' of ${where} but received ${countOf(param.length, 'element')}`,
      );
    }
    if (first !== undefined) {
      checkDtypeFits(
        internals,
        slot,
        `the state dtype of tensor '${first.name}' of ${where}`,
        param.dtype,
      );
    }
  }
  checkRoundingFits(
    internals,
    `__metadata__.${LEAN_METADATA_KEY}.stochastic_rounding of ${where}`,
    plan.rounding,
  );
  return matching;
}

/** Reads every tensor of a checkpoint's header, each into `destination(tensor)`, and checks the
 * checksum (readTensors; a training file's reader also reads its other tensors). */
export type ReadCheckpointTensors = (destination: (tensor: TensorInfo) => ArrayBufferView) => void;

/**
 * Reads the whole file, each tensor into its place (`arraysOf(k)` for param k's state tensors, in
 * spec.state order), checks the checksum, and returns the step counts. Throws, with only
 * `arraysOf`'s arrays written, on a read error, a checksum mismatch or a step count outside
 * [0, 2^53).
 */
function readPlannedFile(
  read: ReadCheckpointTensors,
  file: string,
  plan: FilePlan,
  arraysOf: (k: number) => readonly (StateArray | null)[],
): number[] {
  const stepBytes = plan.params.map(() => new BigInt64Array(1));
  const destinations = new Map<string, ArrayBufferView>();
  for (const [k, param] of plan.params.entries()) {
    const arrays = arraysOf(k);
    destinations.set(param.step.name, stepBytes[k]);
    for (const [i, infos] of param.state.entries()) {
      const array = arrays[i];
      if (infos === null || array === null) continue;
      const parts = partsOf(array);
      for (const [part, info] of infos.entries()) destinations.set(info.name, parts[part]);
    }
  }
  // planFromHeader matched the file's tensors to the plan's one for one.
  read((tensor) => {
    const destination = destinations.get(tensor.name);
    if (destination === undefined) throw new Error(`simd-adamw: internal error: ${tensor.name}`);
    return destination;
  });
  // The values a step could not have written, which would corrupt the params (see
  // checkAbsmaxValues): the only values of a state tensor that are checked.
  for (const [k, param] of plan.params.entries()) {
    const arrays = arraysOf(k);
    for (const [i, infos] of param.state.entries()) {
      const array = arrays[i];
      if (infos === null || array === null || ArrayBuffer.isView(array)) continue;
      const info = infos[1];
      checkAbsmaxValues(
        array.absmax,
        (b) => `element ${b} of tensor '${info.name}' of checkpoint '${file}'`,
      );
    }
  }
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
    loadCheckpointHeaderInto(internals, header, target, (destination) => {
      readTensors(fd, target, header, destination);
    });
  });
}

/**
 * loadCheckpointInto for a checkpoint's validated `header` (the file's, or a training file's
 * optimizer part) whose tensors `read` reads: validated, staged in new arrays, then applied.
 */
export function loadCheckpointHeaderInto(
  internals: OptimizerInternals,
  header: SafetensorsHeader,
  file: string,
  read: ReadCheckpointTensors,
): void {
  const plan = planFromHeader(internals.spec, header, file);
  const matching = checkPlanFits(internals, plan, file);
  const schedule = scheduleToLoad(scheduleName(file), plan.schedule, internals.scheduleState);
  const arrays = plan.params.map((param) =>
    param.state.map((infos, i) =>
      infos === null
        ? null
        : newStateArray(param.dtype, param.stateLengths[i] ?? 0, internals.blockSize),
    ),
  );
  const steps = readPlannedFile(read, file, plan, (j) => arrays[j]);
  const ordered = inOptimizerOrder(
    matching,
    plan.groups.map((group) => group.values),
    arrays.map((state, j) => ({ state, step: steps[j] })),
    schedule,
  );
  applyState(internals, ordered.groups, ordered.params, ordered.schedule, plan.rounding);
}

/** What a class's static load needs: a new optimizer of its kind for these groups, with these
 * lean-state options (those its spec takes). */
export type OptimizerFactory<T> = (
  groups: ({ params: AnyParam[] } & Record<string, unknown>)[],
  options: Record<string, unknown>,
) => {
  optimizer: T;
  internals: OptimizerInternals;
};

/**
 * Creates an optimizer of `spec` for `params` with the file's groups and hyperparameters, and reads
 * the file's state directly into its arrays. When every param in `params` and in the file has a
 * name, each param goes to the group and place of its name in the file (`params` in any order;
 * a name missing or not in the file is an error listing them); else `params` are in the file's
 * order. On any error the new optimizer is dropped, so nothing the caller holds has changed.
 */
export function loadOptimizer<T>(
  spec: AnyOptimizerSpec,
  file: unknown,
  params: readonly unknown[],
  create: OptimizerFactory<T>,
): T {
  return withCheckpointFile(file, (fd, target) => {
    const header = readHeader(fd, target);
    const plan = planFromHeader(spec, header, target);
    const ordered = paramsInFileOrder(plan, params, target);
    let first = 0;
    const groups = plan.groups.map((group) => {
      const groupParams = ordered.slice(first, first + group.paramCount);
      first += group.paramCount;
      return { ...group.values, params: groupParams };
    });
    const settings: Record<string, unknown> = {
      ...plan.rounding,
      min8bitSize: plan.min8bitSize,
    };
    const options: Record<string, unknown> = {};
    for (const key of leanOptionKeys(spec)) options[key] = settings[key];
    const { optimizer, internals } = create(groups, options);
    // The names are read again here: a name getter that changed its answer is caught.
    const matching = checkPlanFits(internals, plan, target);
    const schedule = scheduleToLoad(scheduleName(target), plan.schedule, internals.scheduleState);
    // A new optimizer nobody else holds yet: reading straight into its arrays is safe.
    const read: ReadCheckpointTensors = (destination) => {
      readTensors(fd, target, header, destination);
    };
    const slotOf = (j: number) => internals.slots[matching.slotOf[j]];
    const steps = readPlannedFile(read, target, plan, (j) => slotOf(j).state);
    for (const [j, step] of steps.entries()) slotOf(j).step = step;
    internals.setScheduleState(scheduleInOptimizerOrder(matching, schedule));
    return optimizer;
  });
}

// The params of a static load in the file's order: by name when every one (and every param of the
// file) has a name, else as given, which must then be as many as the file's.
function paramsInFileOrder(plan: FilePlan, params: readonly unknown[], file: string): AnyParam[] {
  const fileNames = plan.params.map((param) => param.name);
  // Each given name read once, here; the optimizer validates the params (and reads them again).
  const givenNames = params.map((param) => {
    if (typeof param !== 'object' || param === null) return undefined;
    const name: unknown = (param as { name?: unknown }).name;
    return typeof name === 'string' && name !== '' ? name : undefined;
  });
  const named = (names: readonly (string | undefined)[]): names is readonly string[] =>
    names.every((name) => name !== undefined);
  if (!named(fileNames) || !named(givenNames) || params.length === 0) {
    if (params.length !== plan.params.length) {
      throw rangeError(
        'params',
        `an array of ${countOf(plan.params.length, 'param')} (as checkpoint '${file}', in its order)`,
        params,
      );
    }
    return params as AnyParam[];
  }
  checkDistinctNames('params', givenNames, (k) => `params[${k}]`);
  checkSameNames('params', givenNames, fileNames, `checkpoint '${file}'`);
  const byName = new Map(givenNames.map((name, k) => [name, params[k] as AnyParam]));
  return fileNames.map((name) => byName.get(name) as AnyParam);
}
