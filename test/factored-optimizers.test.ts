// Adafactor and CAME through the public API (issue 13), everything AdamW has: defaults and
// validation (Hugging Face's cross-checks of lr / relativeStep / warmupInit included), param shapes,
// state() names and lengths per shape, memory() exact and equal to estimateMemory, step counts,
// bitwise the same result on every kernel, thread count and stepAsync for model-sized shapes (and
// close to a float64 reference there, which the small golden cases cannot show for the chunked
// reductions), the fused clip / unscale / skip, bf16 gradients and a bf16 param copy, checkpoints
// that resume bit for bit and refuse a changed shape, schedules with a manual lr, and hostile input
// that throws before anything changes. Lion's API has its own test file; its golden agreement and
// these optimizers' are in test/golden-lean.test.ts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  Adafactor,
  backend,
  CAME,
  cosineWithWarmup,
  estimateMemory,
  gradNorm,
  lrFactor,
  type Param,
} from '../lib';
import { bitsOf, firstBitDifference } from './helpers/bits';
import {
  type AdafactorApiOptions,
  type CameApiOptions,
  type LeanQuantity,
  leanToleranceRatio,
  loadLeanGoldenManifest,
} from './helpers/golden-lean';
import {
  factoredDims,
  referenceOptimizer,
  type ReferenceOptions,
  type ReferenceSubject,
} from './helpers/lean-optimizers-reference';
import { gaussian, mulberry32 } from './helpers/random';

const { fround } = Math;

const initialIsa = backend.isa;
afterAll(() => backend.setIsa(initialIsa));

let folder: string;
beforeAll(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-factored-'));
});
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});
let fileCount = 0;
function tempPath(): string {
  return path.join(folder, `checkpoint-${fileCount++}.safetensors`);
}

type Kind = 'adafactor' | 'came';
const KINDS: readonly Kind[] = ['adafactor', 'came'];
type FactoredOptimizer = Adafactor | CAME;
type AdafactorGroups = ConstructorParameters<typeof Adafactor>[0];
type AdafactorOptions = NonNullable<ConstructorParameters<typeof Adafactor>[1]>;
type CameGroups = ConstructorParameters<typeof CAME>[0];
type CameOptions = NonNullable<ConstructorParameters<typeof CAME>[1]>;

/** `Adafactor.load` or `CAME.load`. */
function loadFile(kind: Kind, file: string, params: Param[]): FactoredOptimizer {
  return kind === 'adafactor' ? Adafactor.load(file, params) : CAME.load(file, params);
}

/** Either optimizer from groups and options given as plain data (validation tests pass values of
 * the wrong type on purpose). */
function create(kind: Kind, groups: unknown, options?: unknown): FactoredOptimizer {
  return kind === 'adafactor'
    ? new Adafactor(groups as AdafactorGroups, options as AdafactorOptions | undefined)
    : new CAME(groups as CameGroups, options as CameOptions | undefined);
}

// ---------------------------------------------------------------------------------------------
// Data: params ~ N(0, 0.02); gradients ~ N(0, 1e-2) with per-row and per-column scales
// 10^U(-1, 1), so the factored estimate is not trivial (as in the golden set).

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

// Generated once per (shape, seed): the model tests draw the same gradients for many runs.
const gradCache = new Map<string, Float32Array>();

/** The gradient of a param of `shape` for `seed` (a fresh copy). */
function gradFor(shape: readonly number[], seed: number): Float32Array {
  const key = `${shape.join('x')}:${seed}`;
  let grad = gradCache.get(key);
  if (grad === undefined) {
    grad = drawGrad(shape, seed);
    gradCache.set(key, grad);
  }
  return grad.slice();
}

function drawGrad(shape: readonly number[], seed: number): Float32Array {
  const random = mulberry32(seed);
  const normal = gaussian(random);
  const n = product(shape);
  const grad = new Float32Array(n);
  const dims = factoredDims(shape);
  if (dims === null) {
    for (let i = 0; i < n; i++) grad[i] = normal() * 1e-2;
    return grad;
  }
  const [batches, rows, cols] = dims;
  const rowScale = Float64Array.from({ length: batches * rows }, () => 10 ** (2 * random() - 1));
  const colScale = Float64Array.from({ length: cols }, () => 10 ** (2 * random() - 1));
  for (let i = 0; i < n; i++) {
    grad[i] = normal() * 1e-2 * rowScale[Math.floor(i / cols)]! * colScale[i % cols]!;
  }
  return grad;
}

function makeParam(
  shape: readonly number[] | undefined,
  n: number,
  seed: number,
  name?: string,
): Param {
  const normal = gaussian(mulberry32(seed));
  const data = Float32Array.from({ length: n }, () => normal() * 0.02);
  const param: Param = { data, grad: gradFor(shape ?? [n], seed + 7777) };
  if (shape !== undefined) param.shape = shape;
  if (name !== undefined) param.name = name;
  return param;
}

function copyParams(params: readonly Param[]): Param[] {
  return params.map((p) => ({ ...p, data: p.data.slice(), grad: p.grad.slice() }));
}

/** New gradients for every param, the same for a given step. */
function setGrads(params: readonly Param[], step: number): void {
  for (const [k, p] of params.entries())
    p.grad.set(gradFor(p.shape ?? [p.data.length], step * 131 + k));
}

/** The typed-array entries of state(p), by name (step and dtype left out). */
function stateArrays(optimizer: FactoredOptimizer, param: Param): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [key, value] of Object.entries(optimizer.state(param) as object)) {
    if (ArrayBuffer.isView(value)) {
      if (!(value instanceof Float32Array)) throw new Error(`${key} is not a Float32Array`);
      out[key] = value;
    }
  }
  return out;
}

/** Bits of every param's data and of every state tensor (in name order), and the step counts. */
function fingerprint(optimizer: FactoredOptimizer, params: readonly Param[], grads = false) {
  const arrays = params.flatMap((p) => {
    const state = stateArrays(optimizer, p);
    const names = Object.keys(state).sort();
    return [p.data, ...(grads ? [p.grad] : []), ...names.map((name) => state[name]!)];
  });
  return {
    bits: bitsOf(arrays),
    steps: params.map((p) => optimizer.state(p).step),
  };
}

function expectSameFingerprint(
  actual: ReturnType<typeof fingerprint>,
  expected: ReturnType<typeof fingerprint>,
): void {
  expect(actual.steps).toEqual(expected.steps);
  expect(firstBitDifference(actual.bits, expected.bits)).toBeNull();
}

/** A TypeError or RangeError in the library's format whose message names `option`. */
function expectOptionError(run: () => unknown, option: string): void {
  let error: unknown;
  try {
    run();
  } catch (caught) {
    error = caught;
  }
  const escaped = option.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const { name, message } = (error ?? {}) as Partial<Error>;
  expect({ name, message }).toEqual({
    name: expect.stringMatching(/^(TypeError|RangeError)$/) as unknown,
    message: expect.stringMatching(
      new RegExp(`(^|[^A-Za-z0-9])${escaped}($|[^A-Za-z0-9])`),
    ) as unknown,
  });
}

// ---------------------------------------------------------------------------------------------
describe('defaults', () => {
  test("Adafactor: Hugging Face's defaults", () => {
    const optimizer = new Adafactor([makeParam([4, 6], 24, 1)]);
    expect(optimizer.paramGroups[0]).toMatchObject({
      lr: null,
      eps: [1e-30, 1e-3],
      clipThreshold: 1,
      decayRate: -0.8,
      beta1: null,
      weightDecay: 0,
      scaleParameter: true,
      relativeStep: true,
      warmupInit: false,
    });
  });

  test("CAME: the authors' defaults", () => {
    const optimizer = new CAME([makeParam([4, 6], 24, 1)]);
    expect(optimizer.paramGroups[0]).toMatchObject({
      lr: 2e-4,
      eps: [1e-30, 1e-16],
      clipThreshold: 1,
      betas: [0.9, 0.999, 0.9999],
      weightDecay: 0,
    });
  });

  test.each(KINDS)('%s: no options and the defaults spelled out take the same steps', (kind) => {
    const spelled =
      kind === 'adafactor'
        ? {
            lr: null,
            eps: [1e-30, 1e-3],
            clipThreshold: 1,
            decayRate: -0.8,
            beta1: null,
            weightDecay: 0,
            scaleParameter: true,
            relativeStep: true,
            warmupInit: false,
          }
        : {
            lr: 2e-4,
            eps: [1e-30, 1e-16],
            clipThreshold: 1,
            betas: [0.9, 0.999, 0.9999],
            weightDecay: 0,
          };
    const a = [makeParam([12, 10], 120, 3), makeParam(undefined, 33, 4)];
    const b = copyParams(a);
    const implicit = create(kind, a);
    const explicit = create(kind, b, spelled);
    for (let t = 0; t < 3; t++) {
      setGrads(a, t);
      setGrads(b, t);
      implicit.step();
      explicit.step();
    }
    expectSameFingerprint(fingerprint(implicit, a), fingerprint(explicit, b));
    // The steps did something.
    expect(a[0]!.data).not.toEqual(makeParam([12, 10], 120, 3).data);
  });
});

// ---------------------------------------------------------------------------------------------
// [options, the option the error must name]. Each is tried as a constructor option and as a
// group's own option; the error is a TypeError (wrong type) or RangeError (bad value).
const BAD_ADAFACTOR: readonly [string, Record<string, unknown>, string][] = [
  ['lr negative', { lr: -1, relativeStep: false }, 'lr'],
  ['lr NaN', { lr: NaN, relativeStep: false }, 'lr'],
  ['lr a string', { lr: '1e-3', relativeStep: false }, 'lr'],
  ['eps not an array', { eps: 1e-30 }, 'eps'],
  ['eps of one number', { eps: [1e-30] }, 'eps'],
  ['eps of three numbers', { eps: [1e-30, 1e-3, 1] }, 'eps'],
  ['eps[0] negative', { eps: [-1e-30, 1e-3] }, 'eps[0]'],
  ['eps[1] NaN', { eps: [1e-30, NaN] }, 'eps[1]'],
  ['eps[1] a string', { eps: [1e-30, 'x'] }, 'eps[1]'],
  ['clipThreshold negative', { clipThreshold: -1 }, 'clipThreshold'],
  ['clipThreshold NaN', { clipThreshold: NaN }, 'clipThreshold'],
  ['clipThreshold a string', { clipThreshold: '1' }, 'clipThreshold'],
  ['decayRate NaN', { decayRate: NaN }, 'decayRate'],
  ['decayRate positive (beta2t = 1 - t^0.5 < 0)', { decayRate: 0.5 }, 'decayRate'],
  ['decayRate a string', { decayRate: '-0.8' }, 'decayRate'],
  ['beta1 = 1', { beta1: 1 }, 'beta1'],
  ['beta1 negative', { beta1: -0.1 }, 'beta1'],
  ['beta1 a string', { beta1: '0.9' }, 'beta1'],
  ['weightDecay negative', { weightDecay: -0.01 }, 'weightDecay'],
  ['weightDecay Infinity', { weightDecay: Infinity }, 'weightDecay'],
  ['scaleParameter a number', { scaleParameter: 1 }, 'scaleParameter'],
  ['relativeStep a string', { relativeStep: 'true' }, 'relativeStep'],
  ['warmupInit null', { warmupInit: null }, 'warmupInit'],
  // Hugging Face's cross-checks (and the one it leaves to a crash at the first step).
  ['a manual lr with relativeStep (the default)', { lr: 1e-3 }, 'relativeStep'],
  ['a manual lr with relativeStep true', { lr: 1e-3, relativeStep: true }, 'lr'],
  [
    'warmupInit without relativeStep',
    { lr: 1e-3, relativeStep: false, warmupInit: true },
    'warmupInit',
  ],
  ['relativeStep false without an lr', { relativeStep: false }, 'lr'],
  ['relativeStep false with lr null', { relativeStep: false, lr: null }, 'lr'],
];

const BAD_CAME: readonly [string, Record<string, unknown>, string][] = [
  ['lr negative', { lr: -1 }, 'lr'],
  ['lr NaN', { lr: NaN }, 'lr'],
  ['lr null', { lr: null }, 'lr'],
  ['lr a string', { lr: '2e-4' }, 'lr'],
  ['eps not an array', { eps: 1e-30 }, 'eps'],
  ['eps of one number', { eps: [1e-30] }, 'eps'],
  ['eps[0] negative', { eps: [-1, 1e-16] }, 'eps[0]'],
  ['eps[1] NaN', { eps: [1e-30, NaN] }, 'eps[1]'],
  ['clipThreshold negative', { clipThreshold: -1 }, 'clipThreshold'],
  ['clipThreshold NaN', { clipThreshold: NaN }, 'clipThreshold'],
  ['betas of two numbers', { betas: [0.9, 0.999] }, 'betas'],
  ['betas not an array', { betas: 0.9 }, 'betas'],
  ['betas[0] = 1', { betas: [1, 0.999, 0.9999] }, 'betas[0]'],
  ['betas[1] negative', { betas: [0.9, -0.5, 0.9999] }, 'betas[1]'],
  ['betas[2] = 1', { betas: [0.9, 0.999, 1] }, 'betas[2]'],
  ['betas[2] a string', { betas: [0.9, 0.999, '0.9999'] }, 'betas[2]'],
  ['weightDecay negative', { weightDecay: -0.01 }, 'weightDecay'],
  ['weightDecay NaN', { weightDecay: NaN }, 'weightDecay'],
];

describe('bad hyperparameters are errors naming the option', () => {
  describe.each([
    ['adafactor', BAD_ADAFACTOR],
    ['came', BAD_CAME],
  ] as const)('%s', (kind, table) => {
    test.each(table)('%s (constructor option)', (_what, options, option) => {
      expectOptionError(() => create(kind, [makeParam([4, 6], 24, 1)], options), option);
    });
    test.each(table)('%s (group option)', (_what, options, option) => {
      expectOptionError(
        () => create(kind, [{ params: [makeParam([4, 6], 24, 1)], ...options }]),
        option,
      );
    });
  });

  test('an option of the other optimizer is an unknown key', () => {
    expect(() => create('adafactor', [makeParam([4, 6], 24, 1)], { betas: [0.9, 0.99] })).toThrow(
      /for the key .*betas but received an unknown key/,
    );
    expect(() => create('came', [makeParam([4, 6], 24, 1)], { decayRate: -0.8 })).toThrow(
      /for the key .*decayRate but received an unknown key/,
    );
    expect(() => create('came', [makeParam([4, 6], 24, 1)], { stateDtype: 'bfloat16' })).toThrow(
      /stateDtype/,
    );
  });

  test('a manual lr and relativeStep false together are fine, and so is relativeStep with lr null', () => {
    expect(() =>
      create('adafactor', [makeParam([4, 6], 24, 1)], { lr: 1e-3, relativeStep: false }),
    ).not.toThrow();
    expect(() => create('adafactor', [makeParam([4, 6], 24, 1)], { lr: null })).not.toThrow();
    expect(() =>
      create('adafactor', [makeParam([4, 6], 24, 1)], { warmupInit: true, beta1: 0.9 }),
    ).not.toThrow();
  });

  test.each(KINDS)(
    '%s: a bad value set on a group later is an error that changes nothing',
    (kind) => {
      const options = kind === 'adafactor' ? { lr: 1e-2, relativeStep: false } : {};
      const optimizer = create(kind, [makeParam([4, 6], 24, 1)], options);
      const group = optimizer.paramGroups[0] as unknown as Record<string, unknown>;
      const before = { ...group };
      expectOptionError(() => {
        group.lr = -1;
      }, 'lr');
      expectOptionError(() => {
        group.weightDecay = NaN;
      }, 'weightDecay');
      expect({ ...group }).toEqual(before);
    },
  );
});

// ---------------------------------------------------------------------------------------------
describe('param shapes', () => {
  const BAD_SHAPES: readonly [string, unknown, number, 'TypeError' | 'RangeError'][] = [
    ['a product that is not the length', [4, 5], 24, 'RangeError'],
    ['a product larger than the length', [5, 6], 24, 'RangeError'],
    ['a non-integer dimension', [2.5, 2], 5, 'RangeError'],
    ['a negative dimension', [-4, -6], 24, 'RangeError'],
    ['a NaN dimension', [NaN, 24], 24, 'RangeError'],
    ['a string dimension', ['4', 6], 24, 'TypeError'],
    ['a number instead of an array', 24, 24, 'TypeError'],
    ['a string', '4x6', 24, 'TypeError'],
  ];

  describe.each(KINDS)('%s', (kind) => {
    test.each(BAD_SHAPES)('%s: an error naming params[0].shape', (_what, shape, n, type) => {
      const param = { data: new Float32Array(n), grad: new Float32Array(n), shape };
      let error: unknown;
      try {
        create(kind, [param]);
      } catch (caught) {
        error = caught;
      }
      expect((error as Error | undefined)?.name).toBe(type);
      expect((error as Error).message).toMatch(/params\[0\]\.shape/);
    });

    test('a param in a later group is named by its place', () => {
      const good = makeParam([2, 3], 6, 1);
      const bad = { name: 'w', data: new Float32Array(6), grad: new Float32Array(6), shape: [7] };
      let message = '';
      try {
        create(kind, [{ params: [good] }, { params: [bad] }]);
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toMatch(/(paramGroups\[1\]\.params\[0\]|w)\.shape/);
    });

    test('shape [] on a 1-element param is a 0-d tensor (unfactored); [0, 7] and [0] are empty tensors', () => {
      const scalar = { data: Float32Array.of(0.5), grad: Float32Array.of(0.1), shape: [] };
      const empty2d = { data: new Float32Array(0), grad: new Float32Array(0), shape: [0, 7] };
      const empty = { data: new Float32Array(0), grad: new Float32Array(0), shape: [0] };
      const real = makeParam([5, 9], 45, 2);
      const alone = copyParams([real]);
      const optimizer = create(kind, [scalar, empty2d, empty, real]);
      const reference = create(kind, alone);
      optimizer.step();
      reference.step();
      expect(Object.keys(stateArrays(optimizer, scalar))).toContain('expAvgSq');
      expect(stateArrays(optimizer, empty2d).expAvgSqRow?.length).toBe(0);
      expect(stateArrays(optimizer, empty2d).expAvgSqCol?.length).toBe(7);
      // An empty tensor's step does nothing, and nothing to the others.
      expect(Array.from(stateArrays(optimizer, empty2d).expAvgSqCol!)).toEqual(
        new Array(7).fill(0),
      );
      expect(firstBitDifference(bitsOf([real.data]), bitsOf([alone[0]!.data]))).toBeNull();
      expect(scalar.data[0]).not.toBe(0.5);
    });

    test('the shape is read once, at construction: changing the array later changes nothing', () => {
      const shape = [6, 4];
      const param = makeParam(shape, 24, 5);
      const copy = copyParams([param]);
      copy[0]!.shape = [6, 4];
      const optimizer = create(kind, [param]);
      const reference = create(kind, copy);
      shape[0] = 4;
      shape[1] = 6;
      optimizer.step();
      reference.step();
      expectSameFingerprint(fingerprint(optimizer, [param]), fingerprint(reference, copy));
      expect(stateArrays(optimizer, param).expAvgSqRow!.length).toBe(6);
    });
  });
});

// ---------------------------------------------------------------------------------------------
/** The state tensors and their lengths the issue specifies for a param of `shape` (undefined: no
 * shape given, so 1-D). */
function expectedState(
  kind: Kind,
  shape: readonly number[] | undefined,
  n: number,
  beta1: boolean,
): Record<string, number> {
  const dims = shape === undefined ? null : factoredDims(shape);
  const out: Record<string, number> = {};
  if (kind === 'came' || beta1) out.expAvg = n;
  if (dims === null) {
    out.expAvgSq = n;
  } else {
    const [batches, rows, cols] = dims;
    out.expAvgSqRow = batches * rows;
    out.expAvgSqCol = batches * cols;
    if (kind === 'came') {
      out.expAvgResRow = batches * rows;
      out.expAvgResCol = batches * cols;
    }
  }
  return out;
}

const STATE_SHAPES: readonly [readonly number[] | undefined, number][] = [
  [undefined, 37],
  [[37], 37],
  [[5, 9], 45],
  [[9, 5], 45],
  [[1, 33], 33],
  [[33, 1], 33],
  [[3, 16, 24], 1152],
  [[2, 3, 4, 5], 120],
];

describe('state(): names and lengths per shape', () => {
  test.each(
    KINDS.flatMap((kind) =>
      STATE_SHAPES.flatMap(([shape, n]) =>
        (kind === 'adafactor' ? [false, true] : [false]).map(
          (beta1) =>
            [
              kind,
              shape === undefined ? 'no shape' : `[${shape.join(', ')}]`,
              beta1,
              shape,
              n,
            ] as const,
        ),
      ),
    ),
  )('%s %s (beta1: %s)', (kind, _label, beta1, shape, n) => {
    const param = makeParam(shape, n, 11);
    const optimizer = create(kind, [param], beta1 ? { beta1: 0.9 } : {});
    const lengths = (): Record<string, number> =>
      Object.fromEntries(
        Object.entries(stateArrays(optimizer, param)).map(([k, v]) => [k, v.length]),
      );
    const want = expectedState(kind, shape, n, beta1);
    expect(optimizer.state(param).step).toBe(0);
    expect(lengths()).toEqual(want);
    for (const array of Object.values(stateArrays(optimizer, param))) {
      expect(array.every((x) => x === 0)).toBe(true);
    }
    optimizer.step();
    expect(optimizer.state(param).step).toBe(1);
    expect(lengths()).toEqual(want);
    // Second moments hold at least eps1 after a step; none is left at 0.
    for (const [name, array] of Object.entries(stateArrays(optimizer, param))) {
      if (name !== 'expAvg') expect(array.every((x) => x > 0)).toBe(true);
    }
  });

  test('the state names are the typed ones of the API', () => {
    const factored = makeParam([5, 9], 45, 1);
    const flat = makeParam(undefined, 45, 2);
    const came = new CAME([factored, flat]);
    const s = came.state(factored);
    expect(s.expAvg?.length).toBe(45);
    expect(s.expAvgSqRow?.length).toBe(5);
    expect(s.expAvgSqCol?.length).toBe(9);
    expect(s.expAvgResRow?.length).toBe(5);
    expect(s.expAvgResCol?.length).toBe(9);
    expect(came.state(flat).expAvgSq?.length).toBe(45);
    const adafactor = new Adafactor([factored, flat]);
    expect(adafactor.state(factored).expAvgSqRow?.length).toBe(5);
    expect(adafactor.state(flat).expAvgSq?.length).toBe(45);
    expect(adafactor.state(flat).expAvg).toBeUndefined();
  });

  test('state() gives views of the optimizer state: a later step changes what they show', () => {
    const param = makeParam([5, 9], 45, 1);
    const optimizer = new CAME([param]);
    const row = stateArrays(optimizer, param).expAvgSqRow!;
    optimizer.step();
    expect(row.every((x) => x > 0)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Shapes with tails everywhere, a large 1-D tensor split across threads, size-1 dimensions,
// unshaped params, in two groups with different hyperparameters.
const MODEL: readonly [readonly number[] | undefined, number][] = [
  [[300, 257], 77100],
  [[17], 17],
  [undefined, 5000],
  [[3, 64, 129], 24768],
  [[100000], 100000],
  [[1, 4099], 4099],
  [[4099, 1], 4099],
  [[2, 2, 7, 65], 1820],
];

function makeModel(seed: number): Param[] {
  return MODEL.map(([shape, n], k) => makeParam(shape, n, seed * 100 + k, `m${k}`));
}

const GROUP_OPTIONS: Record<Kind, [Record<string, unknown>, Record<string, unknown>]> = {
  adafactor: [{ beta1: 0.9, weightDecay: 0.01 }, { warmupInit: true }],
  came: [{ lr: 2e-4 }, { lr: 5e-4, betas: [0.9, 0.95, 0.995], weightDecay: 0.1 }],
};

function makeModelOptimizer(kind: Kind, params: Param[], threads?: number): FactoredOptimizer {
  const [first, second] = GROUP_OPTIONS[kind];
  return create(
    kind,
    [
      { params: params.slice(0, 3), ...first },
      { params: params.slice(3), ...second },
    ],
    threads === undefined ? {} : { threads },
  );
}

async function runModel(kind: Kind, threads: number, mode: 'sync' | 'async', steps: number) {
  const params = makeModel(1);
  const optimizer = makeModelOptimizer(kind, params, threads);
  for (let t = 0; t < steps; t++) {
    setGrads(params, t);
    if (mode === 'sync') optimizer.step();
    else await optimizer.stepAsync();
  }
  return { params, optimizer, print: fingerprint(optimizer, params) };
}

/** The hyperparameters of group `g` of the model, every value given, for the float64 reference. */
function referenceOptionsOf(kind: Kind, g: 0 | 1): ReferenceOptions {
  const overrides = GROUP_OPTIONS[kind][g];
  if (kind === 'adafactor') {
    const options: AdafactorApiOptions = {
      lr: null,
      eps: [1e-30, 1e-3],
      clipThreshold: 1,
      decayRate: -0.8,
      beta1: null,
      weightDecay: 0,
      scaleParameter: true,
      relativeStep: true,
      warmupInit: false,
    };
    return { optimizer: 'adafactor', options: { ...options, ...overrides } };
  }
  const options: CameApiOptions = {
    lr: 2e-4,
    eps: [1e-30, 1e-16],
    clipThreshold: 1,
    betas: [0.9, 0.999, 0.9999],
    weightDecay: 0,
  };
  return { optimizer: 'came', options: { ...options, ...overrides } };
}

describe('model-sized shapes: every kernel, thread count and stepAsync give the same bits', () => {
  test.each(KINDS)('%s: threads 1, 2, 3 on every kernel, and stepAsync', async (kind) => {
    backend.setIsa('scalar');
    const expected = (await runModel(kind, 1, 'sync', 3)).print;
    for (const isa of backend.available) {
      backend.setIsa(isa);
      for (const threads of [1, 2, 3]) {
        const { print } = await runModel(kind, threads, 'sync', 3);
        expect({ isa, threads, difference: firstBitDifference(print.bits, expected.bits) }).toEqual(
          {
            isa,
            threads,
            difference: null,
          },
        );
        expect(print.steps).toEqual(expected.steps);
      }
      const asyncRun = (await runModel(kind, 2, 'async', 3)).print;
      expect({ isa, async: firstBitDifference(asyncRun.bits, expected.bits) }).toEqual({
        isa,
        async: null,
      });
    }
    backend.setIsa(initialIsa);
  });

  // The golden cases are at most 4099 elements; here the reductions span many chunks and threads.
  test.each(KINDS)(
    '%s: within the golden tolerance of a float64 reference after 3 steps',
    async (kind) => {
      const manifest = loadLeanGoldenManifest();
      const tolerance = manifest.tolerance[kind];
      const quantityOf = Object.fromEntries(
        Object.entries(manifest.state_names).map(([q, name]) => [name, q as LeanQuantity]),
      );
      const { params, optimizer } = await runModel(kind, 3, 'sync', 3);
      const initial = makeModel(1);
      const worst: string[] = [];
      for (const [k, p] of initial.entries()) {
        const which = referenceOptionsOf(kind, k < 3 ? 0 : 1);
        const shape = p.shape ?? [p.data.length];
        const reference: ReferenceSubject = referenceOptimizer(which, shape, p.data);
        let lrSum = 0;
        for (let t = 0; t < 3; t++) {
          // The gradient setGrads gives this param at step t.
          reference.step(gradFor(shape, t * 131 + k), t + 1, which.options.lr);
          lrSum += reference.updateLr();
        }
        const actual = { params: params[k]!.data, ...stateArrays(optimizer, params[k]!) };
        const wanted = { params: reference.params(), ...reference.state() };
        expect(Object.keys(actual).sort()).toEqual(
          Object.keys(wanted)
            .filter((name) => name !== 'step')
            .sort(),
        );
        for (const [name, value] of Object.entries(actual)) {
          const quantity = name === 'params' ? 'params' : quantityOf[name]!;
          const { ratio, index } = leanToleranceRatio(
            tolerance[quantity]!,
            value,
            Float32Array.from(wanted[name as keyof typeof wanted] as ArrayLike<number>),
            3,
            lrSum,
          );
          if (!(ratio <= 1)) worst.push(`${p.name} ${name}[${index}]: ratio ${ratio}`);
        }
      }
      expect(worst).toEqual([]);
    },
  );
});

// ---------------------------------------------------------------------------------------------
describe('memory(): exact to the byte, and what estimateMemory predicts', () => {
  test.each(KINDS)('%s: a model with factored, batched, 1-D and unshaped params', (kind) => {
    const params = makeModel(2);
    const optimizer = create(kind, params);
    let state = 0;
    for (const [shape, n] of MODEL) {
      for (const length of Object.values(expectedState(kind, shape, n, false))) state += 4 * length;
    }
    const paramCount = MODEL.reduce((sum, [, n]) => sum + n, 0);
    const breakdown = {
      paramCount,
      params: 4 * paramCount,
      grads: 4 * paramCount,
      state,
      total: 8 * paramCount + state,
    };
    expect(optimizer.memory()).toEqual({ ...breakdown, groups: [{ ...breakdown }] });
    expect(
      estimateMemory({
        params: MODEL.map(([, n]) => n),
        optimizer: kind,
        shapes: MODEL.map(([shape, n]) => (shape === undefined ? [n] : [...shape])),
      }),
    ).toEqual(optimizer.memory());
  });

  test('Adafactor with beta1 keeps expAvg too: 4 bytes per element more, per group', () => {
    const params = makeModel(3);
    const optimizer = create('adafactor', [
      { params: params.slice(0, 3), beta1: 0.9 },
      { params: params.slice(3) },
    ]);
    const without = create('adafactor', [
      { params: copyParams(params.slice(0, 3)) },
      { params: copyParams(params.slice(3)) },
    ]);
    const firstGroup = MODEL.slice(0, 3).reduce((sum, [, n]) => sum + n, 0);
    const report = optimizer.memory();
    expect(report.groups[0]!.state - without.memory().groups[0]!.state).toBe(4 * firstGroup);
    expect(report.groups[1]).toEqual(without.memory().groups[1]);
  });

  test("estimateMemory with beta1 counts Adafactor's expAvg", () => {
    const params = makeModel(4);
    const optimizer = create('adafactor', params, { beta1: 0.9 });
    expect(
      estimateMemory({
        params: MODEL.map(([, n]) => n),
        optimizer: 'adafactor',
        beta1: 0.9,
        shapes: MODEL.map(([shape, n]) => (shape === undefined ? [n] : [...shape])),
      }),
    ).toEqual(optimizer.memory());
  });

  test.each(KINDS)(
    '%s: bf16 gradients count 2 bytes, a dataBf16 copy 2 more per param element',
    (kind) => {
      const n = 45;
      const param: Param<Uint16Array> = {
        data: new Float32Array(n),
        grad: new Uint16Array(n),
        gradDtype: 'bfloat16',
        dataBf16: new Uint16Array(n),
        shape: [5, 9],
      };
      const optimizer = create(kind, [param]);
      const state = Object.values(expectedState(kind, [5, 9], n, false)).reduce(
        (a, b) => a + 4 * b,
        0,
      );
      expect(optimizer.memory()).toMatchObject({
        paramCount: n,
        params: 6 * n,
        grads: 2 * n,
        state,
      });
    },
  );
});

// ---------------------------------------------------------------------------------------------
describe('bf16 gradients and a bf16 copy of the params', () => {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const bf16Rne = (x: number): number => {
    f32[0] = x;
    const bits = u32[0]!;
    return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
  };

  test.each(KINDS)(
    '%s: a bf16 gradient steps as its float32 widening; dataBf16 is the RNE of data',
    (kind) => {
      const shaped = makeParam([12, 33], 396, 4);
      const float32Param: Param = {
        ...shaped,
        data: shaped.data.slice(),
        grad: new Float32Array(396),
      };
      const bf16Param: Param<Uint16Array> = {
        data: shaped.data.slice(),
        grad: new Uint16Array(396),
        gradDtype: 'bfloat16',
        dataBf16: new Uint16Array(396),
        shape: [12, 33],
      };
      const a = create(kind, [float32Param]);
      const b = create(kind, [bf16Param]);
      for (let t = 0; t < 3; t++) {
        const g = gradFor([12, 33], 50 + t);
        bf16Param.grad.set(Uint16Array.from(g, bf16Rne));
        for (let i = 0; i < 396; i++) {
          u32[0] = bf16Param.grad[i]! << 16;
          float32Param.grad[i] = f32[0]!;
        }
        a.step();
        b.step();
      }
      expect(firstBitDifference(bitsOf([bf16Param.data]), bitsOf([float32Param.data]))).toBeNull();
      expect(Array.from(bf16Param.dataBf16!)).toEqual(Array.from(bf16Param.data, bf16Rne));
    },
  );
});

// ---------------------------------------------------------------------------------------------
describe('the fused training step', () => {
  /** torch's unfused order: unscale in float32, measure, multiply by float32(clipCoef) < 1. */
  function clipThenStep(
    optimizer: FactoredOptimizer,
    params: Param[],
    maxNorm: number,
    scale: number,
  ): void {
    const inverseScale = fround(1 / scale);
    for (const p of params) for (let i = 0; i < p.grad.length; i++) p.grad[i]! *= inverseScale;
    const clipCoef = maxNorm / (gradNorm(params) + 1e-6);
    if (clipCoef < 1) {
      const coef = fround(clipCoef);
      for (const p of params) for (let i = 0; i < p.grad.length; i++) p.grad[i]! *= coef;
    }
    optimizer.step();
  }

  function smallModel(seed: number, scale: number): Param[] {
    const params = [
      makeParam([40, 33], 1320, seed),
      makeParam([3, 5, 17], 255, seed + 1),
      makeParam(undefined, 77, seed + 2),
    ];
    for (const p of params) for (let i = 0; i < p.grad.length; i++) p.grad[i]! *= scale;
    return params;
  }

  test.each(KINDS.flatMap((kind) => [1, 1024].map((scale) => [kind, scale] as const)))(
    '%s, gradScale %d: clipGradNorm equals scaling the gradients first, bit for bit',
    (kind, scale) => {
      const fusedParams = smallModel(5, scale);
      const referenceParams = copyParams(fusedParams);
      const fused = create(kind, fusedParams);
      const reference = create(kind, referenceParams);
      const norm = gradNorm(fusedParams) / scale;
      for (const maxNorm of [norm / 3, norm * 2, norm / 1000]) {
        const grads = bitsOf(fusedParams.map((p) => p.grad));
        const report = fused.step({ clipGradNorm: maxNorm, gradScale: scale });
        clipThenStep(reference, referenceParams, maxNorm, scale);
        expect(report).toMatchObject({ clipped: maxNorm < norm, gradNorm: norm, skipped: false });
        expect(firstBitDifference(bitsOf(fusedParams.map((p) => p.grad)), grads)).toBeNull();
        expectSameFingerprint(
          fingerprint(fused, fusedParams),
          fingerprint(reference, referenceParams),
        );
        for (const [k, p] of referenceParams.entries()) p.grad.set(fusedParams[k]!.grad);
      }
    },
  );

  test.each(KINDS)('%s: skipNonFinite on finite gradients is a plain step', (kind) => {
    const a = smallModel(6, 1);
    const b = copyParams(a);
    const skipping = create(kind, a);
    const plain = create(kind, b);
    for (let t = 0; t < 3; t++) {
      setGrads(a, t);
      setGrads(b, t);
      expect(skipping.step({ skipNonFinite: true }).skipped).toBe(false);
      plain.step();
    }
    expectSameFingerprint(fingerprint(skipping, a), fingerprint(plain, b));
  });

  test.each(KINDS.flatMap((kind) => [NaN, Infinity].map((bad) => [kind, bad] as const)))(
    '%s: a %d gradient with skipNonFinite changes nothing, and the step count stays',
    (kind, bad) => {
      const a = smallModel(7, 1);
      const b = copyParams(a);
      const skipping = create(kind, a);
      const plain = create(kind, b);
      setGrads(a, 0);
      setGrads(b, 0);
      skipping.step();
      plain.step();
      setGrads(a, 1);
      a[1]!.grad[100] = bad;
      const before = fingerprint(skipping, a, true);
      const report = skipping.step({ skipNonFinite: true });
      expect(report.skipped).toBe(true);
      expect(report.reason).toMatch(/params\[1\]|1/);
      expectSameFingerprint(fingerprint(skipping, a, true), before);
      // The steps after it are those of an optimizer that never saw it (Adafactor's relative step
      // and beta2t depend on the step count).
      for (let t = 2; t < 4; t++) {
        setGrads(a, t);
        setGrads(b, t);
        skipping.step();
        plain.step();
      }
      expectSameFingerprint(fingerprint(skipping, a), fingerprint(plain, b));
    },
  );
});

// ---------------------------------------------------------------------------------------------
describe('checkpoints resume bit for bit', () => {
  function named(seed: number): Param[] {
    return [
      makeParam([24, 17], 408, seed, 'w'),
      makeParam([2, 3, 11], 66, seed + 1, 'attn'),
      makeParam(undefined, 31, seed + 2, 'b'),
    ];
  }
  const OPTIONS: Record<Kind, Record<string, unknown>> = {
    adafactor: { beta1: 0.9, weightDecay: 0.01 },
    came: { lr: 3e-4, weightDecay: 0.02 },
  };

  function train(optimizer: FactoredOptimizer, params: Param[], from: number, steps: number): void {
    for (let t = from; t < from + steps; t++) {
      setGrads(params, t);
      optimizer.step();
    }
  }

  function uninterrupted(kind: Kind, steps: number) {
    const params = named(1);
    const optimizer = create(kind, params, OPTIONS[kind]);
    train(optimizer, params, 0, steps);
    return fingerprint(optimizer, params);
  }

  test.each(KINDS)(
    '%s: save after 3 steps, load(file, params), 2 more == 5 uninterrupted',
    (kind) => {
      const params = named(1);
      const source = create(kind, params, OPTIONS[kind]);
      train(source, params, 0, 3);
      const file = tempPath();
      source.save(file);
      const resumedParams = copyParams(params);
      const Class = kind === 'adafactor' ? Adafactor : CAME;
      const resumed = loadFile(kind, file, resumedParams);
      expect(resumed).toBeInstanceOf(Class);
      expect(resumed.paramGroups[0]).toMatchObject(OPTIONS[kind]);
      expectSameFingerprint(fingerprint(resumed, resumedParams), fingerprint(source, params));
      train(resumed, resumedParams, 3, 2);
      expectSameFingerprint(fingerprint(resumed, resumedParams), uninterrupted(kind, 5));
    },
  );

  test.each(KINDS)(
    '%s: loadFrom into an optimizer that has stepped, and stateDict/loadStateDict',
    (kind) => {
      const params = named(1);
      const source = create(kind, params, OPTIONS[kind]);
      train(source, params, 0, 3);
      const file = tempPath();
      source.save(file);
      const dict = source.stateDict();

      const intoParams = copyParams(params);
      const into = create(kind, intoParams, OPTIONS[kind]);
      train(into, intoParams, 10, 4);
      for (const [k, p] of intoParams.entries()) p.data.set(params[k]!.data);
      into.loadFrom(file);
      train(into, intoParams, 3, 2);
      expectSameFingerprint(fingerprint(into, intoParams), uninterrupted(kind, 5));

      const dictParams = copyParams(params);
      const fromDict = create(kind, dictParams, OPTIONS[kind]);
      fromDict.loadStateDict(dict as never);
      train(fromDict, dictParams, 3, 2);
      expectSameFingerprint(fingerprint(fromDict, dictParams), uninterrupted(kind, 5));
      // The dict is a copy: stepping the source after taking it does not change what it resumes.
      train(source, params, 3, 1);
      const laterParams = copyParams(dictParams);
      for (const [k, p] of laterParams.entries()) p.data.set(named(1)[k]!.data);
      const later = create(kind, laterParams, OPTIONS[kind]);
      train(later, laterParams, 0, 3);
      const afterThree = fingerprint(later, laterParams);
      later.loadStateDict(dict as never);
      expectSameFingerprint(fingerprint(later, laterParams), afterThree);
    },
  );

  test.each(KINDS)(
    '%s: a changed shape between construction and load is an error that changes nothing',
    (kind) => {
      const params = named(1);
      const source = create(kind, params, OPTIONS[kind]);
      train(source, params, 0, 2);
      const file = tempPath();
      source.save(file);
      const dict = source.stateDict();

      for (const shape of [[17, 24], [408], [2, 12, 17]]) {
        const changed = copyParams(params);
        changed[0]!.shape = shape;
        expect(() => loadFile(kind, file, changed)).toThrow(/shape/);

        const target = create(kind, changed, OPTIONS[kind]);
        train(target, changed, 0, 1);
        const before = fingerprint(target, changed, true);
        expect(() => target.loadFrom(file)).toThrow(/shape/);
        expect(() => target.loadStateDict(dict as never)).toThrow(/shape/);
        expectSameFingerprint(fingerprint(target, changed, true), before);
      }
      // A shape given where none was (and none where one was) is a change too.
      const unshaped = copyParams(params).map((p) => ({ ...p, shape: undefined }));
      for (const p of unshaped) delete p.shape;
      expect(() => loadFile(kind, file, unshaped)).toThrow(/shape/);
    },
  );

  test('an Adafactor checkpoint is not a CAME one', () => {
    const params = named(1);
    const source = create('adafactor', params);
    train(source, params, 0, 1);
    const file = tempPath();
    source.save(file);
    expect(() => CAME.load(file, copyParams(params))).toThrow(/adafactor/);
    const cameParams = copyParams(params);
    const came = create('came', cameParams);
    const before = fingerprint(came, cameParams);
    expect(() => came.loadFrom(file)).toThrow(/adafactor/);
    expectSameFingerprint(fingerprint(came, cameParams), before);
  });
});

// ---------------------------------------------------------------------------------------------
describe('schedules with a manual lr', () => {
  const SCHEDULE = cosineWithWarmup({ warmupSteps: 2, totalSteps: 6, minLrRatio: 0.1 });

  test("Adafactor's relative step has no lr to schedule: attaching one is an error naming it", () => {
    expectOptionError(
      () => create('adafactor', [makeParam([4, 6], 24, 1)], { schedule: SCHEDULE }),
      'schedule',
    );
    const optimizer = create('adafactor', [makeParam([4, 6], 24, 1)]);
    expect(() => {
      optimizer.schedule = SCHEDULE;
    }).toThrow(/schedule|lr/);
    expect(optimizer.schedule).toBeNull();
  });

  test.each([
    ['came', { lr: 4e-4 }],
    ['adafactor', { lr: 1e-2, relativeStep: false }],
    ['adafactor', { lr: 1e-3, relativeStep: false, scaleParameter: false, beta1: 0.9 }],
  ] as const)(
    '%s %j: lr = baseLr * factor at every step, the same bits as setting it by hand',
    (kind, options) => {
      const a = [makeParam([20, 30], 600, 8), makeParam(undefined, 50, 9)];
      const b = copyParams(a);
      const scheduled = create(kind, a, { ...options, schedule: SCHEDULE });
      const manual = create(kind, b, options);
      for (let t = 0; t < 8; t++) {
        const lr = options.lr * lrFactor(SCHEDULE, t);
        expect(scheduled.paramGroups[0]!.lr).toBe(lr);
        manual.paramGroups[0]!.lr = lr;
        setGrads(a, t);
        setGrads(b, t);
        scheduled.step();
        manual.step();
      }
      expect(scheduled.schedulePosition).toBe(8);
      expectSameFingerprint(fingerprint(scheduled, a), fingerprint(manual, b));
    },
  );
});

// ---------------------------------------------------------------------------------------------
describe('hostile input throws before anything changes', () => {
  function detach(buffer: ArrayBufferLike): void {
    structuredClone(buffer, { transfer: [buffer as ArrayBuffer] });
  }

  function model(kind: Kind): { params: Param[]; optimizer: FactoredOptimizer } {
    const params = [
      makeParam([8, 12], 96, 1, 'a'),
      makeParam([3, 4, 5], 60, 2, 'b'),
      makeParam(undefined, 20, 3, 'c'),
    ];
    const optimizer = create(kind, params);
    optimizer.step();
    return { params, optimizer };
  }

  describe.each(KINDS)('%s', (kind) => {
    test('a detached data array: TypeError naming it', () => {
      const { params, optimizer } = model(kind);
      detach(params[1]!.data.buffer);
      const others = [params[0]!, params[2]!];
      const before = fingerprint(optimizer, others, true);
      expect(() => optimizer.step()).toThrow(TypeError);
      expect(() => optimizer.step()).toThrow(/b\.data/);
      expectSameFingerprint(fingerprint(optimizer, others, true), before);
      expect(optimizer.state(params[1]!).step).toBe(1);
    });

    test('a detached grad: TypeError naming it (step and stepAsync)', async () => {
      const { params, optimizer } = model(kind);
      detach(params[2]!.grad.buffer);
      const others = [params[0]!, params[1]!];
      const before = fingerprint(optimizer, others, true);
      expect(() => optimizer.step()).toThrow(/c\.grad/);
      await expect(optimizer.stepAsync()).rejects.toThrow(TypeError);
      expectSameFingerprint(fingerprint(optimizer, others, true), before);
    });

    test.each([95, 97, 0])(
      'a grad of length %d for a [8, 12] param: RangeError naming it',
      (length) => {
        const { params, optimizer } = model(kind);
        params[0]!.grad = new Float32Array(length).fill(0.5);
        const before = fingerprint(optimizer, params, true);
        expect(() => optimizer.step()).toThrow(RangeError);
        expect(() => optimizer.step()).toThrow(/a\.grad/);
        expectSameFingerprint(fingerprint(optimizer, params, true), before);
      },
    );

    test('data replaced by an array of another length: RangeError, nothing changed', () => {
      const { params, optimizer } = model(kind);
      params[1]!.data = new Float32Array(59);
      params[1]!.grad = new Float32Array(59);
      const others = [params[0]!, params[2]!];
      const before = fingerprint(optimizer, others, true);
      expect(() => optimizer.step()).toThrow(RangeError);
      expectSameFingerprint(fingerprint(optimizer, others, true), before);
    });

    test('a state dict with a state tensor of the wrong length: RangeError, nothing changed', () => {
      const { params, optimizer } = model(kind);
      const dict = optimizer.stateDict();
      const entry = dict.state[0] as unknown as Record<string, unknown>;
      expect(entry.expAvgSqRow).toBeInstanceOf(Float32Array);
      entry.expAvgSqRow = new Float32Array(9); // [8, 12]: 8 rows
      optimizer.step();
      const before = fingerprint(optimizer, params, true);
      expect(() => optimizer.loadStateDict(dict as never)).toThrow(RangeError);
      expectSameFingerprint(fingerprint(optimizer, params, true), before);
    });

    test('a param given twice, or in two groups: RangeError', () => {
      const p = makeParam([4, 6], 24, 1);
      expect(() => create(kind, [p, p])).toThrow(RangeError);
      expect(() => create(kind, [{ params: [p] }, { params: [p] }])).toThrow(RangeError);
    });
  });
});
