// A small named model for the tests of name-matched checkpoints, addParamGroup and iterables:
// params with shapes (matrices, so Adafactor keeps factored state), gradients that depend only on
// a param's name and the step (so a param gets the same gradient whatever its place in an
// optimizer), and a snapshot of everything a resumed run must reproduce, as raw bytes.
import { Adafactor, AdamW, Lion, type AnyParam, type Optimizer, type Param } from '../../lib';

/** The model: [name, shape]; biases and norms are exempt from decay under noDecay(). */
export const LAYERS: readonly (readonly [string, readonly number[]])[] = [
  ['embed.weight', [6, 4]],
  ['fc1.weight', [5, 4]],
  ['fc1.bias', [5]],
  ['ln.weight', [5]],
  ['fc2.weight', [3, 5]],
  ['fc2.bias', [3]],
];

// A 32-bit hash of a string, then of numbers: a stable noise source.
function hashOf(text: string, ...numbers: number[]): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  for (const n of numbers) {
    h = Math.imul(h ^ n, 0x9e3779b1);
    h ^= h >>> 15;
  }
  return h >>> 0;
}

function noise(text: string, ...numbers: number[]): number {
  return hashOf(text, ...numbers) / 2 ** 31 - 1;
}

/** Fresh params of the model (or of `layers`), named unless `named` is false. */
export function makeModel(layers = LAYERS, named = true): Param[] {
  return layers.map(([name, shape]) => {
    const length = shape.reduce((a, b) => a * b, 1);
    const param: Param = {
      data: new Float32Array(length),
      grad: new Float32Array(length),
      shape: [...shape],
    };
    if (named) param.name = name;
    for (let i = 0; i < length; i++) param.data[i] = noise(name, -1, i);
    return param;
  });
}

/** Sets every param's gradient for step `step`, from its name (or `names[k]` when unnamed). */
export function setGrads(params: readonly Param[], step: number, names?: readonly string[]): void {
  for (const [k, param] of params.entries()) {
    const name = param.name ?? names?.[k] ?? String(k);
    for (let i = 0; i < param.grad.length; i++) param.grad[i] = noise(name, step, i) * 0.5;
  }
}

/** Copies of the params' values (a second model with the same values and names). */
export function cloneModel(params: readonly Param[]): Param[] {
  return params.map((param) => {
    const copy: Param = { data: param.data.slice(), grad: param.grad.slice() };
    if (param.name !== undefined) copy.name = param.name;
    if (param.shape !== undefined) copy.shape = [...param.shape];
    return copy;
  });
}

function bytesOf(array: ArrayBufferView): string {
  return Buffer.from(array.buffer, array.byteOffset, array.byteLength).toString('hex');
}

/** Everything about `param` a resumed run must reproduce: its values, step count, state dtype and
 * every state tensor, as hex bytes, keyed so that messages name what differs. */
export function snapshotOf(optimizer: Optimizer, param: AnyParam): Record<string, string> {
  const out: Record<string, string> = { data: bytesOf(param.data) };
  for (const [key, value] of Object.entries(optimizer.state(param))) {
    if (ArrayBuffer.isView(value)) out[key] = bytesOf(value);
    else if (typeof value === 'object' && value !== null) {
      const { codes, absmax } = value as { codes: Uint8Array; absmax: Float32Array };
      out[key] = `${bytesOf(codes)}/${bytesOf(absmax)}`;
    } else out[key] = String(value);
  }
  return out;
}

/** Snapshots of `params` in `optimizer`, by name (or place). */
export function snapshot(
  optimizer: Optimizer,
  params: readonly AnyParam[],
): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const [k, param] of params.entries()) {
    out[param.name ?? String(k)] = snapshotOf(optimizer, param);
  }
  return out;
}

/** Runs `steps` steps from step `from`, gradients by name. */
export function train(
  optimizer: Optimizer,
  params: readonly Param[],
  from: number,
  steps: number,
  names?: readonly string[],
): void {
  for (let t = from; t < from + steps; t++) {
    setGrads(params, t, names);
    optimizer.step();
  }
}

/** A group of any kind's hyperparameters (each kind's constructor checks them). */
export interface GroupInput {
  params: Iterable<AnyParam>;
  [hyperparameter: string]: unknown;
}

/** One optimizer kind as the tests create it: any groups, defaults that make every kind step
 * visibly (Adafactor with a fixed lr, so that schedules apply). */
export interface Kind {
  readonly name: string;
  create(params: Iterable<AnyParam> | Iterable<GroupInput>): Optimizer;
  load(path: string, params: Iterable<AnyParam>): Optimizer;
}

export const KINDS: readonly Kind[] = [
  {
    name: 'AdamW',
    create: (params) => new AdamW(params as Iterable<AnyParam>, { lr: 1e-2, weightDecay: 0.1 }),
    load: (path, params) => AdamW.load(path, params),
  },
  {
    name: 'Lion',
    create: (params) => new Lion(params as Iterable<AnyParam>, { lr: 1e-3, weightDecay: 0.1 }),
    load: (path, params) => Lion.load(path, params),
  },
  {
    name: 'Adafactor',
    create: (params) =>
      new Adafactor(params as Iterable<AnyParam>, {
        lr: 1e-2,
        relativeStep: false,
        weightDecay: 0.1,
      }),
    load: (path, params) => Adafactor.load(path, params),
  },
];
