// The one-call checkpoint of a training run: the model's weights, the optimizer's state (with its
// schedule), the grad scaler's state and the user's own small JSON, in one safetensors file,
// written atomically, so a run resumes from one file that is always complete.
//
// File layout (format "simd-adamw.training", format_version "1"):
//   tensors   weights/<name>     each weight as saveTensors writes it (checkpoint/tensors.ts)
//             optimizer/<name>   each tensor of the optimizer's own checkpoint (checkpoint/file.ts)
//   metadata  format, format_version, crc32 (the whole file's, format/safetensors.ts),
//             optimizer/<key>    each metadata key of the optimizer's own checkpoint,
//             grad_scaler        JSON: the GradScaler's stateDict(), when one was saved,
//             extra              JSON: the user's `extra`, when given.
// Tensors are ordered by element size, largest first (the optimizer's I64 steps, then the 4-, 2-
// and 1-byte tensors, each group in the order its own writer gives it), so each is aligned.
// Python's safe_open reads the file (the weights are the tensors named weights/...).
//
// Loading validates everything (the header, the optimizer's fit, the scaler's state, the JSON)
// before reading the data, reads the optimizer's part into new arrays and the checksum over the
// whole file, and only then changes the optimizer and the scaler: all or nothing.
import { checkObject, isPlainObject } from '../core/checks';
import { checkKnownKeys, describe, rangeError, typeError } from '../core/errors';
import {
  CRC32_KEY,
  DTYPE_SIZES,
  readTensors,
  type SafetensorsHeader,
  type TensorInfo,
  type TensorToWrite,
  writeSafetensors,
} from '../format/safetensors';
import {
  type JsonValue as ParsedJson,
  JsonSyntaxError,
  parseStrictJson,
} from '../format/strict-json';
import { type AnyOptimizer, Optimizer, optimizerInternals } from '../optim/optimizer';
import { GradScaler, type GradScalerStateDict } from '../train/grad-scaler';
import { checkpointContents, loadCheckpointHeaderInto } from './file';
import {
  type LoadedTensor,
  planTensorReads,
  tensorsToWrite,
  type TensorsToSave,
  withSafetensorsFile,
} from './tensors';

/** A JSON value: what `extra` may hold (finite numbers; no undefined, functions or cycles). */
export type JsonValue =
  null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** What {@link saveTraining} saves. */
export interface TrainingRun {
  weights: TensorsToSave;
  optimizer: AnyOptimizer;
  gradScaler?: GradScaler;
  extra?: JsonValue;
}

/** What {@link loadTraining} restores in place. */
export interface TrainingTarget {
  optimizer: AnyOptimizer;
  gradScaler?: GradScaler;
}

/** What {@link loadTraining} returns: the weights in new arrays, and `extra` as saved. */
export interface LoadedTraining {
  weights: Record<string, LoadedTensor>;
  extra: JsonValue | undefined;
}

const FORMAT = 'simd-adamw.training';
const FORMAT_VERSION = '1';
const WEIGHTS_PREFIX = 'weights/';
const OPTIMIZER_PREFIX = 'optimizer/';
const GRAD_SCALER_KEY = 'grad_scaler';
const EXTRA_KEY = 'extra';
// parseStrictJson's nesting limit, which the saved JSON must stay within to load.
const MAX_JSON_DEPTH = 64;

function checkPath(file: unknown): string {
  if (typeof file !== 'string' || file === '') throw typeError('path', 'a non-empty string', file);
  return file;
}

function checkOptimizer(name: string, value: unknown): AnyOptimizer {
  if (!(value instanceof Optimizer)) {
    throw typeError(name, 'an optimizer of this package (AdamW, Adam, ...)', value);
  }
  return value as AnyOptimizer;
}

function checkGradScaler(name: string, value: unknown): GradScaler | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof GradScaler)) throw typeError(name, 'a GradScaler or undefined', value);
  return value;
}

// An object JSON.stringify writes as its own keys: a Date, Map or class instance would not
// round-trip, so only objects of Object.prototype or none are JSON objects here.
function isJsonObject(value: unknown): value is Record<string, unknown> {
  if (!isPlainObject(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** Throws unless `value` is JSON that round-trips: plain objects, arrays, strings, finite numbers,
 * booleans and null, nested at most MAX_JSON_DEPTH deep. */
function checkJson(name: string, value: unknown, depth: number): void {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value))
      throw rangeError(name, 'a finite number (JSON has no other)', value);
    return;
  }
  if (Array.isArray(value) || isJsonObject(value)) {
    if (depth >= MAX_JSON_DEPTH) {
      throw rangeError(name, `JSON nested at most ${MAX_JSON_DEPTH} levels deep`, value);
    }
    if (Array.isArray(value)) {
      for (const [i, entry] of (value as unknown[]).entries())
        checkJson(`${name}[${i}]`, entry, depth + 1);
    } else {
      for (const key of Object.keys(value)) {
        checkJson(`${name}[${JSON.stringify(key)}]`, value[key], depth + 1);
      }
    }
    return;
  }
  throw typeError(
    name,
    'a JSON value (null, boolean, number, string, array or plain object)',
    value,
  );
}

function prefixed(prefix: string, tensors: readonly TensorToWrite[]): TensorToWrite[] {
  return tensors.map((tensor) => ({ ...tensor, name: prefix + tensor.name }));
}

/**
 * Writes a training run to `path` in one safetensors file, atomically (a crash or an error
 * leaves any previous file as it was): the weights, the optimizer's state and schedule, the grad
 * scaler's state and `extra`. Throws TypeError/RangeError for bad input before writing anything.
 */
export function saveTraining(path: string, run: TrainingRun): void {
  const target = checkPath(path);
  const o = checkObject('run', run);
  checkKnownKeys('run', o, ['weights', 'optimizer', 'gradScaler', 'extra']);
  const optimizer = checkOptimizer('run.optimizer', o.optimizer);
  const gradScaler = checkGradScaler('run.gradScaler', o.gradScaler);
  const weights = tensorsToWrite('run.weights', o.weights, WEIGHTS_PREFIX);
  if (o.extra !== undefined) checkJson('run.extra', o.extra, 0);
  const internals = optimizerInternals(optimizer);
  internals.assertIdle('saveTraining()');
  const contents = checkpointContents(internals);
  const metadata: Record<string, string> = { format: FORMAT, format_version: FORMAT_VERSION };
  for (const [key, value] of Object.entries(contents.metadata)) {
    metadata[OPTIMIZER_PREFIX + key] = value;
  }
  if (gradScaler !== undefined) metadata[GRAD_SCALER_KEY] = JSON.stringify(gradScaler.stateDict());
  if (o.extra !== undefined) metadata[EXTRA_KEY] = JSON.stringify(o.extra);
  const size = (tensor: TensorToWrite) => DTYPE_SIZES.get(tensor.dtype) ?? 1;
  // A stable sort: each writer's own order is kept within an element size.
  const tensors = [...prefixed(OPTIMIZER_PREFIX, contents.tensors), ...weights].sort(
    (a, b) => size(b) - size(a),
  );
  writeSafetensors(target, tensors, metadata);
}

/** A strict-JSON value as plain JSON: objects as plain objects ("__proto__" an ordinary key). */
function plainJson(value: ParsedJson): JsonValue {
  if (value instanceof Map) {
    const object: { [key: string]: JsonValue } = {};
    for (const [key, entry] of value) {
      Object.defineProperty(object, key, {
        value: plainJson(entry),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return object;
  }
  if (Array.isArray(value)) return value.map(plainJson);
  return value;
}

function metadataJson(header: SafetensorsHeader, file: string, key: string): JsonValue | undefined {
  const text = header.metadata.get(key);
  if (text === undefined) return undefined;
  try {
    return plainJson(parseStrictJson(text));
  } catch (error) {
    if (error instanceof JsonSyntaxError) {
      throw new RangeError(
        `Expected JSON for __metadata__.${key} of training file '${file}' but received ` +
          `${describe(text)} (${error.message})`,
        { cause: error },
      );
    }
    throw error;
  }
}

/** The optimizer's part of a training file's header, as its own checkpoint's header would be
 * (names and keys without the prefix; offsets unchanged, the file's crc32). */
function optimizerHeader(header: SafetensorsHeader): SafetensorsHeader {
  const tensors = new Map<string, TensorInfo>();
  for (const [name, info] of header.tensors) {
    if (!name.startsWith(OPTIMIZER_PREFIX)) continue;
    const own = name.slice(OPTIMIZER_PREFIX.length);
    tensors.set(own, { ...info, name: own });
  }
  const metadata = new Map<string, string>();
  for (const [key, value] of header.metadata) {
    if (key.startsWith(OPTIMIZER_PREFIX)) metadata.set(key.slice(OPTIMIZER_PREFIX.length), value);
  }
  const crc = header.metadata.get(CRC32_KEY);
  if (crc !== undefined) metadata.set(CRC32_KEY, crc);
  return { ...header, tensors, metadata };
}

/** The saved scaler state, validated against a scratch GradScaler (so loading it cannot fail). */
function scalerState(
  header: SafetensorsHeader,
  file: string,
  gradScaler: GradScaler | undefined,
): GradScalerStateDict | undefined {
  const where = `training file '${file}'`;
  const saved = metadataJson(header, file, GRAD_SCALER_KEY);
  if (gradScaler === undefined) {
    if (saved !== undefined) {
      throw typeError(
        'into.gradScaler',
        'a GradScaler',
        undefined,
        `${where} holds a GradScaler's state`,
      );
    }
    return undefined;
  }
  if (saved === undefined) {
    throw new RangeError(
      `Expected a GradScaler's state for __metadata__.${GRAD_SCALER_KEY} of ${where} but ` +
        'received nothing (into.gradScaler was given)',
    );
  }
  try {
    new GradScaler().loadStateDict(saved as unknown as GradScalerStateDict);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new RangeError(
      `Expected a GradScaler's state for __metadata__.${GRAD_SCALER_KEY} of ${where} but ` +
        `received ${describe(saved)} (${message})`,
      { cause: error },
    );
  }
  return saved as unknown as GradScalerStateDict;
}

/**
 * Restores a run saved by {@link saveTraining}: the optimizer's state and schedule into
 * `into.optimizer`, the scaler's into `into.gradScaler` (required exactly when the file has one),
 * and returns the weights in new arrays and `extra`. Everything is validated and read before the
 * optimizer or the scaler changes: on any error neither has.
 */
export function loadTraining(path: string, into: TrainingTarget): LoadedTraining {
  const target = checkPath(path);
  const o = checkObject('into', into);
  checkKnownKeys('into', o, ['optimizer', 'gradScaler']);
  const optimizer = checkOptimizer('into.optimizer', o.optimizer);
  const gradScaler = checkGradScaler('into.gradScaler', o.gradScaler);
  const internals = optimizerInternals(optimizer);
  internals.assertIdle('loadTraining()');
  return withSafetensorsFile(target, (fd, header) => {
    const where = `training file '${target}'`;
    const format = header.metadata.get('format');
    if (format !== FORMAT) {
      throw rangeError(
        `__metadata__.format of ${where}`,
        `'${FORMAT}' (a file of saveTraining)`,
        format,
      );
    }
    const version = header.metadata.get('format_version');
    if (version !== FORMAT_VERSION) {
      throw rangeError(
        `__metadata__.format_version of ${where}`,
        `'${FORMAT_VERSION}' (the version this simd-adamw reads)`,
        version,
      );
    }
    if (!header.metadata.has(CRC32_KEY)) {
      throw new RangeError(
        `Expected a checksum for __metadata__.${CRC32_KEY} of ${where} but received nothing ` +
          '(saveTraining always writes one)',
      );
    }
    const weightInfos: TensorInfo[] = [];
    for (const [name, info] of header.tensors) {
      if (name.startsWith(WEIGHTS_PREFIX)) weightInfos.push(info);
      else if (!name.startsWith(OPTIMIZER_PREFIX)) {
        throw new RangeError(
          `Expected a name starting with ${WEIGHTS_PREFIX} or ${OPTIMIZER_PREFIX} for the tensors of ` +
            `${where} but received '${name}'`,
        );
      }
    }
    const scaler = scalerState(header, target, gradScaler);
    const extra = metadataJson(header, target, EXTRA_KEY);
    const weights = planTensorReads(target, weightInfos, false, WEIGHTS_PREFIX);
    const ownHeader = optimizerHeader(header);
    loadCheckpointHeaderInto(internals, ownHeader, target, (optimizerDestination) => {
      readTensors(fd, target, header, (tensor) => {
        const weight = weights.destinations.get(tensor.name);
        if (weight !== undefined) return weight;
        const own = ownHeader.tensors.get(tensor.name.slice(OPTIMIZER_PREFIX.length));
        if (own === undefined) throw new Error(`simd-adamw: internal error: ${tensor.name}`);
        return optimizerDestination(own);
      });
    });
    // Validated by scalerState: this cannot throw, so the optimizer and scaler change together.
    if (gradScaler !== undefined && scaler !== undefined) gradScaler.loadStateDict(scaler);
    return { weights: weights.finish(), extra };
  });
}
