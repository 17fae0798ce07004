// Bad input: every argument of adamwStep, the class constructors, step() and
// the paramGroups setters is validated before any array is touched. Each rejection is checked for
// its error class (TypeError for a wrong type, RangeError for a wrong value or length), for a
// message that names the argument as the caller wrote it, and for leaving every array unchanged.
import * as vm from 'node:vm';
import {
  Adam,
  AdamW,
  adamwStep,
  type AdamwStepOptions,
  type OptimizerParamGroup,
  type Param,
  type ParamGroup,
} from '../lib';
import { f32 } from './helpers/float32-state';

const N = 8;

// ---------------------------------------------------------------------------------------------
// Helpers

/** A Float32Array of N distinct non-zero values, in its own buffer. */
function filled(seed: number, length = N): Float32Array {
  return Float32Array.from({ length }, (_, i) => 0.25 + seed + i / 8);
}

function bytesOf(array: Float32Array): Uint8Array {
  if (array.byteLength === 0) return new Uint8Array(0); // also what a detached array holds
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength).slice();
}

interface Rejection {
  error: string;
  message: string;
  /** Indices (in the list given) of the arrays whose bytes changed. */
  changedArrays: number[];
}

/** Runs `run`, which must throw, and reports what was thrown and which of `arrays` changed. */
function rejection(run: () => unknown, arrays: readonly Float32Array[]): Rejection {
  const before = arrays.map(bytesOf);
  let thrown: unknown = undefined;
  let threw = false;
  try {
    run();
  } catch (error) {
    thrown = error;
    threw = true;
  }
  const changedArrays = arrays
    .map((array, k) => (Buffer.from(bytesOf(array)).equals(Buffer.from(before[k]!)) ? -1 : k))
    .filter((k) => k >= 0);
  if (!threw) return { error: 'nothing thrown', message: '', changedArrays };
  const error = thrown as Error;
  return { error: error.name, message: error.message, changedArrays };
}

/** Asserts the error class, that the message matches every pattern, and that no array changed. */
function expectRejected(
  run: () => unknown,
  errorName: 'TypeError' | 'RangeError',
  mentions: RegExp | RegExp[],
  arrays: readonly Float32Array[],
): Rejection {
  const r = rejection(run, arrays);
  const patterns = Array.isArray(mentions) ? mentions : [mentions];
  const matches = patterns.every((pattern) => pattern.test(r.message));
  // One comparison, so that a failure shows the class, the message and the changed arrays.
  expect(r).toEqual({
    error: errorName,
    message: matches ? r.message : `a message matching ${patterns.join(' and ')}`,
    changedArrays: [],
  });
  return r;
}

/** Detaches the buffer under `array` (its length reads 0 afterwards) and returns the array. */
function detach(array: Float32Array): Float32Array {
  const buffer = array.buffer as ArrayBuffer;
  structuredClone(buffer, { transfer: [buffer] });
  if (array.length !== 0 || buffer.byteLength !== 0) throw new Error('buffer was not detached');
  return array;
}

/** Values that are not Float32Arrays, by what they are. */
const NOT_FLOAT32_ARRAYS: [string, () => unknown][] = [
  ['a Float64Array', () => new Float64Array(N)],
  ['a plain array', () => new Array<number>(N).fill(1)],
  ['a number', () => 1],
  ['null', () => null],
  ['undefined', () => undefined],
  ['a DataView', () => new DataView(new ArrayBuffer(4 * N))],
  ['a Uint8Array', () => new Uint8Array(4 * N)],
  ['a Uint32Array', () => new Uint32Array(N)],
  [
    'an object that only inherits from Float32Array.prototype',
    () => Object.create(Float32Array.prototype) as unknown,
  ],
];

/** Ways for two N-element arrays to share memory. */
const OVERLAPS: [string, () => [Float32Array, Float32Array]][] = [
  [
    'the same Float32Array',
    () => {
      const a = filled(5);
      return [a, a];
    },
  ],
  [
    'views of one ArrayBuffer, sharing one element',
    () => {
      const buffer = new ArrayBuffer(4 * (2 * N - 1));
      return [new Float32Array(buffer, 0, N), new Float32Array(buffer, 4 * (N - 1), N)];
    },
  ],
  [
    'views of one ArrayBuffer, the second inside the first',
    () => {
      const buffer = new ArrayBuffer(4 * (N + 2));
      return [new Float32Array(buffer, 8, N), new Float32Array(buffer, 4, N)];
    },
  ],
  [
    'views of one SharedArrayBuffer, sharing half',
    () => {
      const buffer = new SharedArrayBuffer(4 * (N + N / 2));
      return [new Float32Array(buffer, 0, N), new Float32Array(buffer, 2 * N, N)];
    },
  ],
  [
    'two SharedArrayBuffer objects over the same memory (as after postMessage)',
    () => {
      const buffer = new SharedArrayBuffer(4 * N);
      const alias = structuredClone(buffer);
      if (alias === buffer) throw new Error('structuredClone returned the same object');
      return [new Float32Array(buffer), new Float32Array(alias)];
    },
  ],
];

// ---------------------------------------------------------------------------------------------
// adamwStep

const STEP_ARRAYS = ['param', 'grad', 'expAvg', 'expAvgSq', 'options.maxExpAvgSq'] as const;
type StepArray = (typeof STEP_ARRAYS)[number];

const GOOD_OPTIONS = {
  step: 3,
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
} as const;

/** Fresh, valid, non-zero arrays for adamwStep (each in its own buffer). */
function stepArrays(): Record<StepArray, Float32Array> {
  return {
    param: filled(1),
    grad: filled(2),
    expAvg: filled(3),
    expAvgSq: filled(4),
    'options.maxExpAvgSq': filled(0.5).map((x) => x / 4), // below the new expAvgSq: it changes
  };
}

/** adamwStep with `arrays` (any value allowed, to pass bad ones) and extra options. */
function callAdamwStep(arrays: Record<StepArray, unknown>, options: object = {}): void {
  adamwStep(
    arrays.param as Float32Array,
    arrays.grad as Float32Array,
    arrays.expAvg as Float32Array,
    arrays.expAvgSq as Float32Array,
    {
      ...GOOD_OPTIONS,
      maxExpAvgSq: arrays['options.maxExpAvgSq'] as Float32Array,
      ...options,
    } as AdamwStepOptions,
  );
}

/** A regex that finds `name` as a whole argument name (grad, not gradient; expAvg, not expAvgSq). */
function named(name: string): RegExp {
  const escaped = name.replace(/[.[\]]/g, (c) => `\\${c}`);
  return new RegExp(`(^|\\W)${escaped}(?!\\w)`);
}

describe('adamwStep rejects bad input before touching any array', () => {
  test('control: a valid call changes param and the moments (so the checks below can fail)', () => {
    const arrays = stepArrays();
    const r = rejection(() => callAdamwStep(arrays), Object.values(arrays));
    expect(r).toEqual({ error: 'nothing thrown', message: '', changedArrays: [0, 2, 3, 4] });
  });

  describe.each(STEP_ARRAYS.map((name) => [name]))('%s', (name) => {
    const notFloat32 =
      name === 'options.maxExpAvgSq'
        ? NOT_FLOAT32_ARRAYS.filter(([what]) => what !== 'undefined') // undefined = no amsgrad
        : NOT_FLOAT32_ARRAYS;
    test.each(notFloat32)('%s: TypeError', (_what, make) => {
      const arrays = stepArrays();
      expectRejected(
        () => callAdamwStep({ ...arrays, [name]: make() }),
        'TypeError',
        named(name),
        Object.values(arrays),
      );
    });

    test.each([N - 1, N + 1, 0])('a Float32Array of %i elements: RangeError', (length) => {
      const arrays = stepArrays();
      const mismatch = name === 'param' ? 'grad' : name; // param sets the length
      expectRejected(
        () => callAdamwStep({ ...arrays, [name]: filled(7, length) }),
        'RangeError',
        named(mismatch),
        Object.values(arrays),
      );
    });

    test('a detached buffer: TypeError that says so', () => {
      const arrays = stepArrays();
      const others = Object.entries(arrays)
        .filter(([key]) => key !== name)
        .map(([, array]) => array);
      detach(arrays[name]);
      expectRejected(() => callAdamwStep(arrays), 'TypeError', [named(name), /detached/], others);
    });
  });

  test('every array detached and of length 0: TypeError naming param', () => {
    const arrays = stepArrays();
    for (const array of Object.values(arrays)) detach(array);
    expectRejected(() => callAdamwStep(arrays), 'TypeError', [named('param'), /detached/], []);
  });

  const pairs = STEP_ARRAYS.flatMap((a, i) => STEP_ARRAYS.slice(i + 1).map((b) => [a, b] as const));
  describe.each(OVERLAPS)('overlap: %s', (_how, makePair) => {
    test.each(pairs.map(([a, b]) => [a, b]))('%s and %s: RangeError naming both', (a, b) => {
      const arrays = stepArrays();
      const [first, second] = makePair();
      first.set(filled(8));
      const call = { ...arrays, [a]: first, [b]: second };
      expectRejected(
        () => callAdamwStep(call),
        'RangeError',
        // The kernel's own check (the last line of defence) says maxExpAvgSq, not options.maxExpAvgSq.
        [named(a.replace('options.', '')), named(b.replace('options.', ''))],
        Object.values(call),
      );
    });
  });

  test('adjacent views of one ArrayBuffer or SharedArrayBuffer are accepted', () => {
    for (const shared of [false, true]) {
      const buffer = shared ? new SharedArrayBuffer(4 * 5 * N) : new ArrayBuffer(4 * 5 * N);
      const views = STEP_ARRAYS.map((_, k) => new Float32Array(buffer, 4 * k * N, N));
      const values = stepArrays();
      views.forEach((view, k) => view.set(values[STEP_ARRAYS[k]!]));
      const r = rejection(
        () =>
          callAdamwStep(
            Object.fromEntries(STEP_ARRAYS.map((key, k) => [key, views[k]])) as Record<
              StepArray,
              Float32Array
            >,
          ),
        views,
      );
      expect(r).toEqual({ error: 'nothing thrown', message: '', changedArrays: [0, 2, 3, 4] });
    }
  });

  test('a Float32Array from another realm (vm context) is accepted like any Float32Array', () => {
    const arrays = stepArrays();
    const foreign = vm.runInNewContext(
      `Float32Array.from({ length: ${N} }, () => 0.5)`,
    ) as Float32Array;
    const r = rejection(() => callAdamwStep({ ...arrays, grad: foreign }), [arrays.param]);
    expect(r).toEqual({ error: 'nothing thrown', message: '', changedArrays: [0] });
  });

  test.each<[string, unknown]>([
    ['null', null],
    ['undefined', undefined],
    ['a number', 5],
    ['a string', 'lr=0.001'],
    ['an array', [1e-3]],
  ])('options that are %s: TypeError naming options', (_what, options) => {
    const arrays = stepArrays();
    expectRejected(
      () =>
        adamwStep(
          arrays.param,
          arrays.grad,
          arrays.expAvg,
          arrays.expAvgSq,
          options as AdamwStepOptions,
        ),
      'TypeError',
      named('options'),
      Object.values(arrays),
    );
  });

  test.each<[string, number | string | null | undefined | boolean, 'TypeError' | 'RangeError']>([
    ['lr', NaN, 'RangeError'],
    ['lr', -1e-3, 'RangeError'],
    ['lr', Infinity, 'RangeError'],
    ['lr', -Infinity, 'RangeError'],
    ['lr', '0.001', 'TypeError'],
    ['lr', null, 'TypeError'],
    ['lr', undefined, 'TypeError'],
    ['beta1', -0.1, 'RangeError'],
    ['beta1', 1, 'RangeError'],
    ['beta1', 1.5, 'RangeError'],
    ['beta1', NaN, 'RangeError'],
    ['beta1', Infinity, 'RangeError'],
    ['beta1', undefined, 'TypeError'],
    ['beta2', -0.1, 'RangeError'],
    ['beta2', 1, 'RangeError'],
    ['beta2', NaN, 'RangeError'],
    ['beta2', '0.999', 'TypeError'],
    ['eps', -1e-8, 'RangeError'],
    ['eps', NaN, 'RangeError'],
    ['eps', Infinity, 'RangeError'],
    ['weightDecay', -0.01, 'RangeError'],
    ['weightDecay', NaN, 'RangeError'],
    ['weightDecay', Infinity, 'RangeError'],
    ['step', 0, 'RangeError'],
    ['step', -1, 'RangeError'],
    ['step', 1.5, 'RangeError'],
    ['step', NaN, 'RangeError'],
    ['step', Infinity, 'RangeError'],
    ['step', 2 ** 53, 'RangeError'],
    ['step', '1', 'TypeError'],
    ['step', undefined, 'TypeError'],
    ['maximize', 'true', 'TypeError'],
    ['maximize', 1, 'TypeError'],
    ['decoupled', 0, 'TypeError'],
    ['decoupled', null, 'TypeError'],
  ])('options.%s = %p: %s', (key, value, errorName) => {
    const arrays = stepArrays();
    expectRejected(
      () => callAdamwStep(arrays, { [key]: value }),
      errorName,
      named(`options.${key}`),
      Object.values(arrays),
    );
  });

  test.each(['lR', 'amsgrad', 'betas', 'weight_decay', 'foreach'])(
    'unknown option options.%s: TypeError naming it',
    (key) => {
      const arrays = stepArrays();
      expectRejected(
        () => callAdamwStep(arrays, { [key]: 1 }),
        'TypeError',
        named(`options.${key}`),
        Object.values(arrays),
      );
    },
  );

  test('boundary values are accepted: lr, betas, eps and weightDecay 0, step 2^53 - 1', () => {
    const arrays = stepArrays();
    const r = rejection(
      () =>
        callAdamwStep(arrays, {
          lr: 0,
          beta1: 0,
          beta2: 0,
          eps: 0,
          weightDecay: 0,
          step: Number.MAX_SAFE_INTEGER,
        }),
      [],
    );
    expect(r.error).toBe('nothing thrown');
  });
});

// ---------------------------------------------------------------------------------------------
// The constructors

const OPTIMIZERS = [
  ['AdamW', AdamW],
  ['Adam', Adam],
] as const;

/** Three valid params with non-zero arrays of lengths N, 5, N. */
function threeParams(): Param[] {
  return [
    { data: filled(1), grad: filled(2) },
    { data: filled(3, 5), grad: filled(4, 5) },
    { data: filled(5), grad: filled(6) },
  ];
}

function allArrays(params: readonly Param[]): Float32Array[] {
  return params.flatMap((p) => [p.data, p.grad]);
}

type OptimizerClass = typeof AdamW | typeof Adam;

function construct(Optimizer: OptimizerClass, params: unknown, defaults?: unknown): void {
  new Optimizer(params as Param[], defaults as ParamGroup);
}

describe.each(OPTIMIZERS)('new %s(...) rejects bad input', (_name, Optimizer) => {
  test.each<[string, unknown]>([
    ['null', null],
    ['undefined', undefined],
    ['a number', 5],
    ['an object', { data: filled(1), grad: filled(2) }],
    ['a Float32Array', filled(1)],
  ])('params that is %s: TypeError naming params', (_what, params) => {
    expectRejected(() => construct(Optimizer, params), 'TypeError', named('params'), []);
  });

  test('an empty params array: RangeError naming params', () => {
    expectRejected(() => construct(Optimizer, []), 'RangeError', named('params'), []);
  });

  test.each<[string, unknown]>([
    ['null', null],
    ['a number', 5],
    ['a string', 'weight'],
    ['an array', [filled(1), filled(2)]],
  ])('params[1] that is %s: TypeError naming params[1]', (_what, entry) => {
    const params = threeParams();
    const list: unknown[] = [...params];
    list[1] = entry;
    expectRejected(
      () => construct(Optimizer, list),
      'TypeError',
      named('params[1]'),
      allArrays(params),
    );
  });

  describe.each(['data', 'grad'] as const)('params[1].%s', (field) => {
    test.each(NOT_FLOAT32_ARRAYS)('%s: TypeError', (_what, make) => {
      const params = threeParams();
      const arrays = allArrays(params);
      (params[1] as unknown as Record<string, unknown>)[field] = make();
      expectRejected(
        () => construct(Optimizer, params),
        'TypeError',
        named(`params[1].${field}`),
        arrays,
      );
    });

    test('in the second group: the message names paramGroups[1].params[0]', () => {
      const params = threeParams();
      const arrays = allArrays(params);
      (params[1] as unknown as Record<string, unknown>)[field] = new Float64Array(5);
      expectRejected(
        () => construct(Optimizer, [{ params: [params[0]] }, { params: [params[1], params[2]] }]),
        'TypeError',
        named(`paramGroups[1].params[0].${field}`),
        arrays,
      );
    });

    test('a detached buffer: TypeError that says so', () => {
      const params = threeParams();
      detach(params[1]![field]);
      expectRejected(
        () => construct(Optimizer, params),
        'TypeError',
        [named(`params[1].${field}`), /detached/],
        allArrays(params),
      );
    });
  });

  test.each([4, 6, 0])('params[1].grad of %i elements (data has 5): RangeError', (length) => {
    const params = threeParams();
    params[1]!.grad = filled(9, length);
    expectRejected(
      () => construct(Optimizer, params),
      'RangeError',
      named('params[1].grad'),
      allArrays(params),
    );
  });

  // Pairs of arrays that may not share memory: within one param and across params.
  const PAIRS: [string, string][] = [
    ['params[0].data', 'params[0].grad'],
    ['params[0].data', 'params[2].data'],
    ['params[0].grad', 'params[2].grad'],
    ['params[0].data', 'params[2].grad'],
  ];
  describe.each(OVERLAPS)('overlap: %s', (_how, makePair) => {
    test.each(PAIRS)('%s and %s: RangeError naming both', (a, b) => {
      const params = threeParams();
      const [first, second] = makePair();
      first.set(filled(8));
      const setArray = (name: string, array: Float32Array): void => {
        const [, k, field] = /^params\[(\d)\]\.(data|grad)$/.exec(name)!;
        params[Number(k)]![field as 'data' | 'grad'] = array;
      };
      setArray(a, first);
      setArray(b, second);
      expectRejected(
        () => construct(Optimizer, params),
        'RangeError',
        [named(a), named(b)],
        allArrays(params),
      );
    });
  });

  test('the same param twice: RangeError naming the second place', () => {
    const params = threeParams();
    expectRejected(
      () => construct(Optimizer, [...params, params[0]]),
      'RangeError',
      named('params[3]'),
      allArrays(params),
    );
  });

  test('the same param in two groups: RangeError naming the second place', () => {
    const params = threeParams();
    expectRejected(
      () =>
        construct(Optimizer, [
          { params: [params[0], params[1]] },
          { params: [params[2], params[1]] },
        ]),
      'RangeError',
      named('paramGroups[1].params[1]'),
      allArrays(params),
    );
  });

  test('two param names alike: RangeError naming the second', () => {
    const params = threeParams().map((p, k) => ({ ...p, name: k === 0 ? 'w' : `b${k}` }));
    params[2]!.name = 'w';
    expectRejected(
      () => construct(Optimizer, params),
      'RangeError',
      named('params[2].name'),
      allArrays(params),
    );
  });

  test.each<[string, unknown]>([
    ['an empty string', ''],
    ['a number', 5],
  ])('a param name that is %s: TypeError naming params[0].name', (_what, name) => {
    const params = threeParams();
    (params[0] as unknown as Record<string, unknown>).name = name;
    expectRejected(
      () => construct(Optimizer, params),
      'TypeError',
      named('params[0].name'),
      allArrays(params),
    );
  });

  const BAD_HYPERPARAMETERS: [string, unknown, 'TypeError' | 'RangeError', string][] = [
    ['lr', NaN, 'RangeError', 'lr'],
    ['lr', -1e-3, 'RangeError', 'lr'],
    ['lr', Infinity, 'RangeError', 'lr'],
    ['lr', '1e-3', 'TypeError', 'lr'],
    ['betas', [0.9, 1], 'RangeError', 'betas[1]'],
    ['betas', [1, 0.999], 'RangeError', 'betas[0]'],
    ['betas', [-0.1, 0.999], 'RangeError', 'betas[0]'],
    ['betas', [0.9, NaN], 'RangeError', 'betas[1]'],
    ['betas', [0.9, 1.5], 'RangeError', 'betas[1]'],
    ['betas', [0.9, '0.999'], 'TypeError', 'betas[1]'],
    ['betas', 0.9, 'TypeError', 'betas'],
    ['betas', [0.9], 'TypeError', 'betas'],
    ['betas', [0.9, 0.999, 0.9], 'TypeError', 'betas'],
    ['eps', -1e-8, 'RangeError', 'eps'],
    ['eps', NaN, 'RangeError', 'eps'],
    ['weightDecay', -0.01, 'RangeError', 'weightDecay'],
    ['weightDecay', Infinity, 'RangeError', 'weightDecay'],
    ['amsgrad', 'yes', 'TypeError', 'amsgrad'],
    ['maximize', 1, 'TypeError', 'maximize'],
    ['learningRate', 1e-3, 'TypeError', 'learningRate'],
    ['weight_decay', 0.1, 'TypeError', 'weight_decay'],
  ];

  test.each(BAD_HYPERPARAMETERS)(
    'defaults.%s = %p: %s naming defaults.<name>',
    (key, value, errorName, name) => {
      const params = threeParams();
      expectRejected(
        () => construct(Optimizer, params, { [key]: value }),
        errorName,
        named(`defaults.${name}`),
        allArrays(params),
      );
    },
  );

  test.each(BAD_HYPERPARAMETERS)(
    'a group with %s = %p: %s naming paramGroups[1].<name>',
    (key, value, errorName, name) => {
      const params = threeParams();
      expectRejected(
        () =>
          construct(Optimizer, [{ params: [params[0]] }, { params: [params[1]], [key]: value }]),
        errorName,
        named(`paramGroups[1].${name}`),
        allArrays(params),
      );
    },
  );

  test.each<[string, unknown]>([
    ['null', null],
    ['a number', 5],
    ['an array', [1e-3]],
  ])('defaults that are %s: TypeError naming defaults', (_what, defaults) => {
    const params = threeParams();
    expectRejected(
      () => construct(Optimizer, params, defaults),
      'TypeError',
      named('defaults'),
      allArrays(params),
    );
  });

  test('a group that is not an object with params: TypeError naming paramGroups[1]', () => {
    const params = threeParams();
    expectRejected(
      () => construct(Optimizer, [{ params: [params[0]] }, params[1]]),
      'TypeError',
      named('paramGroups[1]'),
      allArrays(params),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// step(): the params' arrays can be replaced or broken between steps; step() re-validates all
// of them before the one native call, so nothing is half-updated.

interface Trained {
  optimizer: AdamW;
  params: Param[];
  /** Every array step() could write or read: data, grads and state, in a fixed order. */
  arrays: () => Float32Array[];
  stepCounts: () => number[];
}

// Where trained() puts the three params, as messages name them.
const P0 = 'paramGroups[0].params[0]';
const P2 = 'paramGroups[1].params[0]';

function trained(params = threeParams()): Trained {
  const optimizer = new AdamW([
    { params: [params[0]!, params[1]!] },
    { params: [params[2]!], amsgrad: true },
  ]);
  optimizer.step(); // non-zero state
  const stateArrays = params.flatMap((p) => {
    const s = f32(optimizer.state(p));
    return [s.expAvg, s.expAvgSq, ...(s.maxExpAvgSq === undefined ? [] : [s.maxExpAvgSq])];
  });
  return {
    optimizer,
    params,
    arrays: () => [...allArrays(params), ...stateArrays],
    stepCounts: () => params.map((p) => optimizer.state(p).step),
  };
}

describe('step() rejects a param broken since the last step, before touching any array', () => {
  test('control: a valid step() changes every param and state array', () => {
    const t = trained();
    const arrays = t.arrays();
    const r = rejection(() => t.optimizer.step(), arrays);
    const grads = [1, 3, 5]; // indices of the grads in arrays()
    expect(r.error).toBe('nothing thrown');
    expect(r.changedArrays).toEqual(arrays.map((_, k) => k).filter((k) => !grads.includes(k)));
  });

  function expectStepRejected(
    t: Trained,
    errorName: 'TypeError' | 'RangeError',
    mentions: RegExp | RegExp[],
  ): void {
    const counts = t.stepCounts();
    expectRejected(() => t.optimizer.step(), errorName, mentions, t.arrays());
    expect(t.stepCounts()).toEqual(counts);
  }

  describe.each(['data', 'grad'] as const)(
    'params[2].%s (paramGroups[1].params[0]) replaced by',
    (field) => {
      test.each(NOT_FLOAT32_ARRAYS)('%s: TypeError', (_what, make) => {
        const t = trained();
        const arrays = t.arrays();
        (t.params[2] as unknown as Record<string, unknown>)[field] = make();
        expectRejected(() => t.optimizer.step(), 'TypeError', named(`${P2}.${field}`), arrays);
      });

      test.each([N - 1, N + 1, 0])('a Float32Array of %i elements: RangeError', (length) => {
        const t = trained();
        const arrays = t.arrays();
        t.params[2]![field] = filled(9, length);
        expectRejected(() => t.optimizer.step(), 'RangeError', named(`${P2}.${field}`), arrays);
      });

      test('an array whose buffer was detached: TypeError that says so', () => {
        const t = trained();
        const arrays = t.arrays().filter((a) => a !== t.params[2]![field]);
        detach(t.params[2]![field]);
        expectRejected(
          () => t.optimizer.step(),
          'TypeError',
          [named(`${P2}.${field}`), /detached/],
          arrays,
        );
      });
    },
  );

  test('params[2].grad replaced by params[0].data: RangeError naming both', () => {
    const t = trained();
    t.params[2]!.grad = t.params[0]!.data;
    expectStepRejected(t, 'RangeError', [named(`${P2}.grad`), named(`${P0}.data`)]);
  });

  test('params[2].grad replaced by a view overlapping params[0].grad: RangeError naming both', () => {
    const buffer = new ArrayBuffer(4 * (N + 3));
    const params = threeParams();
    params[0]!.grad = new Float32Array(buffer, 0, N);
    params[0]!.grad.set(filled(2));
    const t = trained(params);
    t.params[2]!.grad = new Float32Array(buffer, 12, N);
    expectStepRejected(t, 'RangeError', [named(`${P2}.grad`), named(`${P0}.grad`)]);
  });

  test("params[2].grad replaced by params[0]'s own expAvg: RangeError naming both", () => {
    const t = trained();
    t.params[2]!.grad = f32(t.optimizer.state(t.params[0]!)).expAvg;
    expectStepRejected(t, 'RangeError', [named(`${P2}.grad`), named(P0), /expAvg/]);
  });

  test('params[2].data replaced by another SharedArrayBuffer object over params[0].grad: RangeError', () => {
    const shared = new SharedArrayBuffer(4 * N);
    const params = threeParams();
    params[0]!.grad = new Float32Array(shared);
    params[0]!.grad.set(filled(2));
    const t = trained(params);
    t.params[2]!.data = new Float32Array(structuredClone(shared));
    expectStepRejected(t, 'RangeError', [named(`${P2}.data`), named(`${P0}.grad`)]);
  });

  test('a named param is named in the message', () => {
    const params = threeParams();
    const t = trained([params[0]!, params[1]!, { ...params[2]!, name: 'encoder.layer0.bias' }]);
    t.params[2]!.grad = new Float64Array(N) as unknown as Float32Array;
    expectStepRejected(t, 'TypeError', /encoder\.layer0\.bias\.grad/);
  });
});

// ---------------------------------------------------------------------------------------------
// paramGroups: lr, betas, eps, weightDecay and maximize can be changed between steps, each
// assignment validated; a rejected one leaves the group as it was.

describe('paramGroups setters reject bad values and keep the old one', () => {
  function twoGroups(): { optimizer: AdamW; params: Param[] } {
    const params = threeParams();
    const optimizer = new AdamW([{ params: [params[0]!] }, { params: [params[1]!, params[2]!] }]);
    return { optimizer, params };
  }

  test.each<[keyof OptimizerParamGroup, unknown, 'TypeError' | 'RangeError', string]>([
    ['lr', NaN, 'RangeError', 'lr'],
    ['lr', -1e-3, 'RangeError', 'lr'],
    ['lr', Infinity, 'RangeError', 'lr'],
    ['lr', '1e-3', 'TypeError', 'lr'],
    ['lr', undefined, 'TypeError', 'lr'],
    ['betas', [0.9, 1], 'RangeError', 'betas[1]'],
    ['betas', [1, 0.999], 'RangeError', 'betas[0]'],
    ['betas', [NaN, 0.999], 'RangeError', 'betas[0]'],
    ['betas', [0.9, -0.5], 'RangeError', 'betas[1]'],
    ['betas', 0.9, 'TypeError', 'betas'],
    ['betas', [0.9], 'TypeError', 'betas'],
    ['eps', -1e-8, 'RangeError', 'eps'],
    ['eps', NaN, 'RangeError', 'eps'],
    ['weightDecay', -0.01, 'RangeError', 'weightDecay'],
    ['weightDecay', Infinity, 'RangeError', 'weightDecay'],
    ['maximize', 'yes', 'TypeError', 'maximize'],
  ])('paramGroups[1].%s = %p: %s', (key, value, errorName, name) => {
    const { optimizer, params } = twoGroups();
    const twin = twoGroups();
    const group = optimizer.paramGroups[1]!;
    const before = group[key];
    expectRejected(
      () => {
        (group as unknown as Record<string, unknown>)[key] = value;
      },
      errorName,
      named(`paramGroups[1].${name}`),
      allArrays(params),
    );
    expect(group[key]).toEqual(before);
    // The next step is exactly the step of an optimizer that never saw the bad value.
    optimizer.step();
    twin.optimizer.step();
    expect(allArrays(params).map(bytesOf)).toEqual(allArrays(twin.params).map(bytesOf));
  });

  test('a good value is taken (control)', () => {
    const { optimizer } = twoGroups();
    const group = optimizer.paramGroups[1]!;
    group.lr = 0.5;
    group.betas = [0.5, 0.75];
    expect([group.lr, [...group.betas]]).toEqual([0.5, [0.5, 0.75]]);
  });

  test('amsgrad is read-only: assigning it throws a TypeError and step() still works', () => {
    const { optimizer, params } = twoGroups();
    const group = optimizer.paramGroups[0]!;
    const r = rejection(() => {
      (group as { amsgrad: boolean }).amsgrad = true;
    }, allArrays(params));
    expect(r.error).toBe('TypeError');
    expect(r.message).toMatch(/amsgrad/);
    expect(group.amsgrad).toBe(false);
    expect(() => optimizer.step()).not.toThrow();
  });

  test("a group's params are read-only: assigning them throws a TypeError", () => {
    const { optimizer, params } = twoGroups();
    const group = optimizer.paramGroups[1]!;
    const r = rejection(() => {
      (group as unknown as { params: Param[] }).params = [];
    }, allArrays(params));
    expect(r.error).toBe('TypeError');
    expect(group.params).toEqual([params[1], params[2]]);
  });

  test('the list of groups cannot be changed: push() throws a TypeError, memory() is intact', () => {
    const { optimizer, params } = twoGroups();
    const memory = optimizer.memory();
    const groups = optimizer.paramGroups as OptimizerParamGroup[];
    const r = rejection(() => groups.push(groups[0]!), allArrays(params));
    expect(r.error).toBe('TypeError');
    expect(optimizer.paramGroups).toHaveLength(2);
    expect(optimizer.memory()).toEqual(memory);
  });
});

// ---------------------------------------------------------------------------------------------
// The one message format, pinned for a few representative cases.

describe('messages read "Expected <what> for <name> but received <value>"', () => {
  test.each<[string, () => void, string]>([
    [
      'adamwStep options.lr NaN',
      () => callAdamwStep(stepArrays(), { lr: NaN }),
      'Expected a finite number >= 0 for options.lr but received NaN of type number',
    ],
    [
      'adamwStep options.step 1.5',
      () => callAdamwStep(stepArrays(), { step: 1.5 }),
      'Expected an integer >= 1 for options.step but received 1.5 of type number',
    ],
    [
      'adamwStep options.maximize string',
      () => callAdamwStep(stepArrays(), { maximize: 'yes' }),
      "Expected a boolean for options.maximize but received 'yes' of type string",
    ],
    [
      'adamwStep grad Float64Array',
      () => callAdamwStep({ ...stepArrays(), grad: new Float64Array(N) }),
      'Expected a Float32Array for grad but received a Float64Array of 8 elements',
    ],
    [
      'adamwStep param DataView',
      () => callAdamwStep({ ...stepArrays(), param: new DataView(new ArrayBuffer(4 * N)) }),
      'Expected a Float32Array for param but received a DataView of 32 bytes',
    ],
    [
      'adamwStep expAvg too short',
      () => callAdamwStep({ ...stepArrays(), expAvg: filled(1, N - 1) }),
      'Expected a Float32Array of 8 elements for expAvg but received a Float32Array of 7 elements',
    ],
    [
      'constructor defaults.betas[1] = 1',
      () => construct(AdamW, threeParams(), { betas: [0.9, 1] }),
      'Expected a number in [0, 1) for defaults.betas[1] but received 1 of type number',
    ],
    [
      'constructor params[1].data plain array',
      () => construct(AdamW, [threeParams()[0], { data: [1, 2], grad: filled(1, 2) }]),
      'Expected a Float32Array for params[1].data but received an Array of 2 elements',
    ],
    [
      'setter paramGroups[0].lr = -1',
      () => {
        new AdamW(threeParams()).paramGroups[0]!.lr = -1;
      },
      'Expected a finite number >= 0 for paramGroups[0].lr but received -1 of type number',
    ],
  ])('%s', (_case, run, message) => {
    expect(run).toThrow(message);
    expect(rejection(run, []).message).toBe(message);
  });
});
