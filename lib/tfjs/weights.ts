// The optimizer's state as tfjs weights: what getWeights() returns and setWeights() takes, so that
// `model.save(handler, { includeOptimizer: true })` and `tf.loadLayersModel` carry it.
//
// The list starts as tf.train.adam's does, `[iter, ...'<var>/m', ...'<var>/v']` (one weight per
// state tensor and variable, tensor-major, in the order the variables were first stepped), so tools
// that read Adam's weights find the moments where they expect them. Every state tensor of the
// optimizer follows in its spec order, under the name the spec gives it (amsgrad's maxExpAvgSq,
// Adafactor's expAvgSqRow, ...). State that is not float32 is stored exactly: bfloat16 bits and
// blockwise8 codes as int32 tensors, each blockwise8 tensor's absmax as a float32 weight after its
// codes. The last weight, `simd-adamw/state`, is a string scalar holding the rest as JSON: each
// param's step count, dtype and shape, the groups' hyperparameters, the schedule's position and
// what every weight before it is. The names of the variables are kept for people reading the file;
// loading matches by position (a model loaded in the same process has renamed variables).
import * as tf from '@tensorflow/tfjs-core';

import type { GenericStateDict } from '../checkpoint/state-dict';
import { countOf, describe, rangeError, typeError } from '../core/errors';
import { isTensor } from './tensors';

/** A weight as tfjs passes them (tfjs-core's NamedTensor, which its index does not export). */
export interface NamedTensor {
  name: string;
  tensor: tf.Tensor;
}

/** The name of the weight that holds everything but the tensors. */
export const STATE_WEIGHT = 'simd-adamw/state';
const FORMAT = 'simd-adamw/tfjs';
const VERSION = 1;

type Part = 'values' | 'codes' | 'absmax';

// The JSON of the state weight.
interface StateMetadata {
  format: typeof FORMAT;
  version: number;
  className: string;
  optimizer: string;
  params: { step: number; dtype?: string; shape?: number[] }[];
  paramGroups: GenericStateDict['paramGroups'];
  lrSchedule?: GenericStateDict['lrSchedule'];
  stochasticRounding?: boolean;
  seed?: number;
  /** What the i-th weight after `iter` is: [param index, state tensor name, part]. */
  tensors: [number, string, Part][];
}

/** A state read by setWeights, applied when the variables are known. */
export interface PendingState {
  readonly iterations: number;
  /** The number of variables it holds state for (null: only an iteration count). */
  readonly paramCount: number | null;
  /** Its state dict, given the dict of a new optimizer over the variables (for its layout). */
  stateDict(fresh: GenericStateDict): GenericStateDict | null;
  /** The weights it came from, for a getWeights() before the first step. */
  readonly weights: readonly {
    name: string;
    dtype: tf.DataType;
    shape: number[];
    values: Values;
  }[];
}

type Values = Float32Array | Int32Array | string;

function weightName(variableName: string, part: Part, short: string): string {
  return `${variableName}/${short}${part === 'absmax' ? 'Absmax' : ''}`;
}

/**
 * The weights of a state dict (see the top of this file). `names[k]` is param k's variable name,
 * `shapes[k]` its shape; `shortNames` maps state tensor names to tfjs' ('expAvg' -> 'm').
 */
export function encodeWeights(
  dict: GenericStateDict,
  className: string,
  iterations: number,
  names: readonly string[],
  shapes: readonly (readonly number[])[],
  stateNames: readonly string[],
  shortNames: Readonly<Record<string, string>>,
): NamedTensor[] {
  const weights: NamedTensor[] = [{ name: 'iter', tensor: tf.scalar(iterations, 'int32') }];
  const tensors: StateMetadata['tensors'] = [];
  for (const stateName of stateNames) {
    const short = shortNames[stateName] ?? stateName;
    const absmaxes: NamedTensor[] = [];
    const absmaxEntries: StateMetadata['tensors'] = [];
    for (const [k, entry] of dict.state.entries()) {
      const array = entry[stateName];
      if (array === undefined) continue;
      const name = names[k] ?? `param${k}`;
      const shape = shapes[k] ?? [];
      if (array instanceof Float32Array) {
        const sameShape = array.length === shape.reduce((a, b) => a * b, 1);
        weights.push({
          name: weightName(name, 'values', short),
          tensor: tf.tensor(array, sameShape ? [...shape] : [array.length], 'float32'),
        });
        tensors.push([k, stateName, 'values']);
      } else if (array instanceof Uint16Array) {
        weights.push({
          name: weightName(name, 'values', short),
          tensor: tf.tensor(Int32Array.from(array), [array.length], 'int32'),
        });
        tensors.push([k, stateName, 'values']);
      } else {
        const { codes, absmax } = array as { codes: Uint8Array; absmax: Float32Array };
        weights.push({
          name: weightName(name, 'codes', short),
          tensor: tf.tensor(Int32Array.from(codes), [codes.length], 'int32'),
        });
        tensors.push([k, stateName, 'codes']);
        absmaxes.push({
          name: weightName(name, 'absmax', short),
          tensor: tf.tensor(absmax, [absmax.length], 'float32'),
        });
        absmaxEntries.push([k, stateName, 'absmax']);
      }
    }
    weights.push(...absmaxes);
    tensors.push(...absmaxEntries);
  }
  const metadata: StateMetadata = {
    format: FORMAT,
    version: VERSION,
    className,
    optimizer: dict.optimizer,
    params: dict.state.map((entry) => {
      const param: StateMetadata['params'][number] = { step: entry.step };
      if (entry.dtype !== undefined) param.dtype = entry.dtype;
      if (entry.shape !== undefined) param.shape = entry.shape;
      return param;
    }),
    paramGroups: dict.paramGroups,
    tensors,
  };
  if (dict.lrSchedule !== undefined) metadata.lrSchedule = dict.lrSchedule;
  if (dict.stochasticRounding !== undefined) metadata.stochasticRounding = dict.stochasticRounding;
  if (dict.seed !== undefined) metadata.seed = dict.seed;
  weights.push({ name: STATE_WEIGHT, tensor: tf.scalar(JSON.stringify(metadata), 'string') });
  return weights;
}

// A weight's values, copied (tfjs disposes the tensors given to setWeights once it returns, and
// on the cpu backend dataSync returns the tensor's own storage).
function readValues(name: string, weight: unknown): { tensor: tf.Tensor; values: Values } {
  if (typeof weight !== 'object' || weight === null || !('tensor' in weight)) {
    throw typeError(name, 'a NamedTensor { name: string, tensor: Tensor }', weight);
  }
  const tensor = weight.tensor;
  if (!isTensor(tensor) || tensor.isDisposed) {
    throw typeError(`${name}.tensor`, 'a tf.Tensor that is not disposed', tensor);
  }
  if (tensor.dtype === 'string') {
    const values = tensor.dataSync() as unknown as Uint8Array[] | string[];
    const first = values[0];
    const text = typeof first === 'string' ? first : new TextDecoder().decode(first);
    return { tensor, values: text };
  }
  if (tensor.dtype === 'float32') return { tensor, values: Float32Array.from(tensor.dataSync()) };
  if (tensor.dtype === 'int32') return { tensor, values: Int32Array.from(tensor.dataSync()) };
  throw typeError(`${name}.tensor`, 'a float32, int32 or string tensor', tensor.dtype);
}

function parseMetadata(text: string, className: string): StateMetadata {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new TypeError(
      `Expected JSON for the weight '${STATE_WEIGHT}' but received text that does not parse`,
    );
  }
  const m = parsed as Partial<StateMetadata> | null;
  if (m === null || typeof m !== 'object' || m.format !== FORMAT) {
    const received =
      m === null || typeof m !== 'object' ? describe(m) : `format ${describe(m.format)}`;
    throw new TypeError(
      `Expected simd-adamw's tfjs state (format '${FORMAT}') for the weight '${STATE_WEIGHT}' but ` +
        `received ${received}`,
    );
  }
  if (m.version !== VERSION) {
    throw new RangeError(
      `Expected version ${VERSION} for the weight '${STATE_WEIGHT}' but received ` +
        `${describe(m.version)} (written by a newer simd-adamw?)`,
    );
  }
  if (m.className !== className) {
    throw new RangeError(
      `Expected the weights of a ${className} for the weight '${STATE_WEIGHT}' but received ` +
        `those of a ${String(m.className)}`,
    );
  }
  if (!Array.isArray(m.params) || !Array.isArray(m.tensors) || !Array.isArray(m.paramGroups)) {
    throw new TypeError(
      `Expected arrays params, paramGroups and tensors for the weight '${STATE_WEIGHT}' but ` +
        'received an object without them',
    );
  }
  return m as StateMetadata;
}

function uint16Of(name: string, values: Int32Array): Uint16Array {
  for (const value of values) {
    if (value < 0 || value > 0xffff) {
      throw rangeError(name, 'bfloat16 bits (integers in [0, 65535])', value);
    }
  }
  return Uint16Array.from(values);
}

function uint8Of(name: string, values: Int32Array): Uint8Array {
  for (const value of values) {
    if (value < 0 || value > 0xff) {
      throw rangeError(name, '8-bit codes (integers in [0, 255])', value);
    }
  }
  return Uint8Array.from(values);
}

/**
 * Reads what setWeights was given: this package's weights (with `simd-adamw/state`), or, for the
 * Adam family (`adamFormat`), tf.train.adam's `[iter, ...m, ...v]`. Throws TypeError/RangeError on
 * anything else; the state's fit to the variables is checked when it is applied.
 */
export function decodeWeights(
  given: unknown,
  className: string,
  adamFormat: boolean,
): PendingState {
  if (!Array.isArray(given) || given.length === 0) {
    throw typeError('weightValues', "an array of NamedTensors starting with 'iter'", given);
  }
  const read = (given as unknown[]).map((weight, i) => {
    const { tensor, values } = readValues(`weightValues[${i}]`, weight);
    const name = (weight as { name?: unknown }).name;
    return {
      name: typeof name === 'string' ? name : `weightValues[${i}]`,
      dtype: tensor.dtype,
      shape: [...tensor.shape],
      values,
    };
  });
  const iterValues = read[0].values;
  if (typeof iterValues === 'string' || iterValues.length !== 1) {
    throw typeError('weightValues[0]', "the scalar 'iter'", read[0].name);
  }
  const iterations = iterValues[0];
  if (!(Number.isInteger(iterations) && iterations >= 0)) {
    throw new RangeError(
      `Expected an iteration count >= 0 in weightValues[0] but received ${iterations}`,
    );
  }
  const last = read[read.length - 1];
  if (read.length > 1 && last.name === STATE_WEIGHT && typeof last.values === 'string') {
    const metadata = parseMetadata(last.values, className);
    const arrays = read.slice(1, -1);
    if (arrays.length !== metadata.tensors.length) {
      throw new RangeError(
        `Expected ${countOf(metadata.tensors.length, 'state weight')} between 'iter' and ` +
          `'${STATE_WEIGHT}' but received ${arrays.length}`,
      );
    }
    const paramCount = metadata.params.length;
    return {
      iterations,
      paramCount,
      weights: read,
      stateDict() {
        const state: GenericStateDict['state'] = metadata.params.map((param) => ({ ...param }));
        for (const [i, [k, stateName, part]] of metadata.tensors.entries()) {
          const weight = arrays[i];
          const label = `weightValues[${i + 1}] ('${weight.name}')`;
          const entry = Number.isInteger(k) && k >= 0 && k < state.length ? state[k] : null;
          if (entry === null || typeof weight.values === 'string') {
            throw new RangeError(
              `Expected a state tensor of param ${k} for ${label} but received ` +
                (entry === null ? `a param index this state does not have` : 'a string'),
            );
          }
          const values = weight.values;
          if (part === 'absmax') {
            const codes = entry[stateName] as { codes?: unknown } | undefined;
            entry[stateName] = { codes: codes?.codes, absmax: values };
          } else if (part === 'codes') {
            entry[stateName] = { codes: uint8Of(label, values as Int32Array), absmax: undefined };
          } else if (values instanceof Int32Array) {
            entry[stateName] = uint16Of(label, values);
          } else {
            entry[stateName] = values;
          }
        }
        const dict: GenericStateDict = {
          optimizer: metadata.optimizer,
          state,
          paramGroups: metadata.paramGroups,
        };
        if (metadata.lrSchedule !== undefined) dict.lrSchedule = metadata.lrSchedule;
        if (metadata.stochasticRounding !== undefined) {
          dict.stochasticRounding = metadata.stochasticRounding;
        }
        if (metadata.seed !== undefined) dict.seed = metadata.seed;
        return dict;
      },
    };
  }
  if (read.length === 1)
    return { iterations, paramCount: null, weights: read, stateDict: () => null };
  // tf.train.adam's weights: every param at step `iter`, float32 moments.
  const moments = read.slice(1);
  if (!adamFormat || moments.length % 2 !== 0 || moments.some((w) => w.dtype !== 'float32')) {
    throw new TypeError(
      `Expected the weights of a ${className} (ending in '${STATE_WEIGHT}') but received ` +
        `${countOf(read.length, 'weight')} without it`,
    );
  }
  const paramCount = moments.length / 2;
  return {
    iterations,
    paramCount,
    weights: read,
    stateDict(fresh) {
      return {
        ...fresh,
        state: fresh.state.map((entry, k) => {
          const rest: GenericStateDict['state'][number] = { ...entry };
          delete rest.name; // matched by position
          return {
            ...rest,
            step: iterations,
            expAvg: moments[k].values,
            expAvgSq: moments[paramCount + k].values,
          };
        }),
      };
    },
  };
}

/** Tensors of the weights a PendingState was read from (a getWeights() before the first step). */
export function pendingWeights(pending: PendingState): NamedTensor[] {
  return pending.weights.map(({ name, dtype, shape, values }) => ({
    name,
    tensor:
      typeof values === 'string'
        ? tf.scalar(values, 'string')
        : tf.tensor(values.slice(), shape, dtype),
  }));
}
