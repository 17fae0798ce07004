// Memory accounting: memory() is exact to the byte for what an optimizer holds (params, grads and
// its own state, per group and in total), and estimateMemory() answers "how much for N params".
import {
  Adam,
  AdamW,
  estimateMemory,
  type MemoryBreakdown,
  type MemoryEstimateOptions,
  type MemoryReport,
  type Param,
} from '../lib';
import { f32 } from './helpers/float32-state';

const FLOAT32_BYTES = 4;

function param(length: number): Param {
  return { data: new Float32Array(length), grad: new Float32Array(length) };
}

/** The breakdown a group of params with these lengths must report, computed from the lengths. */
function expectedBreakdown(lengths: number[], stateArrays: 2 | 3) {
  const paramCount = lengths.reduce((sum, n) => sum + n, 0);
  const params = FLOAT32_BYTES * paramCount;
  const grads = FLOAT32_BYTES * paramCount;
  const state = stateArrays * FLOAT32_BYTES * paramCount;
  return { paramCount, params, grads, state, total: params + grads + state };
}

describe('memory()', () => {
  // Lengths with tails of every SIMD width, an empty param and a large one.
  const plainLengths = [1, 7, 0, 4099];
  const amsgradLengths = [33, 65537];

  test.each([
    ['AdamW', AdamW],
    ['Adam', Adam],
  ] as const)(
    '%s: per group and in total, amsgrad adding a third state array',
    (_name, Optimizer) => {
      const optimizer = new Optimizer([
        { params: plainLengths.map(param) },
        { params: amsgradLengths.map(param), amsgrad: true },
      ]);
      const plain = expectedBreakdown(plainLengths, 2);
      const amsgrad = expectedBreakdown(amsgradLengths, 3);
      expect(optimizer.memory()).toEqual({
        paramCount: plain.paramCount + amsgrad.paramCount,
        params: plain.params + amsgrad.params,
        grads: plain.grads + amsgrad.grads,
        state: plain.state + amsgrad.state,
        total: plain.total + amsgrad.total,
        groups: [plain, amsgrad],
      });
      // The same by hand: 4107 plain elements (16 bytes each), 65570 with amsgrad (20 bytes each).
      expect(optimizer.memory().total).toBe(4107 * (4 + 4 + 8) + 65570 * (4 + 4 + 12));
    },
  );

  test('a flat list of params is one group', () => {
    const optimizer = new AdamW([param(3), param(5)]);
    const only = expectedBreakdown([3, 5], 2);
    expect(optimizer.memory()).toEqual({ ...only, groups: [only] });
  });

  test('the state bytes are the bytes of the arrays state() hands out', () => {
    const params = [...plainLengths, ...amsgradLengths].map(param);
    const optimizer = new AdamW([
      { params: params.slice(0, plainLengths.length) },
      { params: params.slice(plainLengths.length), amsgrad: true },
    ]);
    const stateBytes = params.reduce((sum, p) => {
      const s = f32(optimizer.state(p));
      return sum + s.expAvg.byteLength + s.expAvgSq.byteLength + (s.maxExpAvgSq?.byteLength ?? 0);
    }, 0);
    const dataBytes = params.reduce((sum, p) => sum + p.data.byteLength + p.grad.byteLength, 0);
    const report = optimizer.memory();
    expect([report.state, report.params + report.grads]).toEqual([stateBytes, dataBytes]);
  });

  test('steps, changed hyperparameters and replaced gradient arrays change nothing', () => {
    const params = [param(17), param(64)];
    const optimizer = new AdamW([
      { params: [params[0]!] },
      { params: [params[1]!], amsgrad: true },
    ]);
    const before = optimizer.memory();
    for (let t = 0; t < 3; t++) {
      for (const p of params) p.grad = new Float32Array(p.data.length).fill(0.5);
      optimizer.paramGroups[0]!.lr = 0.01 * (t + 1);
      optimizer.step();
    }
    expect(optimizer.memory()).toEqual(before);
  });

  test('each call returns a fresh report: changing one does not change the next', () => {
    const optimizer = new AdamW([param(10)]);
    const first = optimizer.memory();
    first.total = 0;
    first.groups[0]!.state = 0;
    expect(optimizer.memory()).toEqual({
      ...expectedBreakdown([10], 2),
      groups: [expectedBreakdown([10], 2)],
    });
  });
});

// estimateMemory answers as the MemoryReport of an optimizer with one group holding the params.
function oneGroupReport(breakdown: MemoryBreakdown): MemoryReport {
  return { ...breakdown, groups: [breakdown] };
}

describe('estimateMemory()', () => {
  test('70e9 params with fp16 weights: params 140e9 bytes, state 560e9 (two float32 moments)', () => {
    expect(estimateMemory({ params: 70e9, paramBytes: 2 })).toEqual(
      oneGroupReport({
        paramCount: 70e9,
        params: 140e9,
        grads: 140e9,
        state: 560e9,
        total: 840e9,
      }),
    );
  });

  test.each<[string, MemoryEstimateOptions, [number, number, number]]>([
    ['float32 weights by default', { params: 1000 }, [4000, 4000, 8000]],
    ['amsgrad keeps a third float32 array', { params: 1000, amsgrad: true }, [4000, 4000, 12000]],
    [
      'fp16 weights, float32 grads',
      { params: 1000, paramBytes: 2, gradBytes: 4 },
      [2000, 4000, 8000],
    ],
    ['no gradients kept', { params: 1000, gradBytes: 0 }, [4000, 0, 8000]],
    ['bf16 weights and grads, amsgrad', { params: 7, paramBytes: 2, amsgrad: true }, [14, 14, 84]],
    ['no params', { params: 0 }, [0, 0, 0]],
  ])('%s', (_what, options, [params, grads, state]) => {
    expect(estimateMemory(options)).toEqual(
      oneGroupReport({
        paramCount: options.params as number,
        params,
        grads,
        state,
        total: params + grads + state,
      }),
    );
  });

  test('agrees with memory() of an optimizer holding that many float32 params', () => {
    const lengths = [3, 250, 4099];
    const count = lengths.reduce((sum, n) => sum + n, 0);
    for (const amsgrad of [false, true]) {
      const report = new AdamW(lengths.map(param), { amsgrad }).memory();
      expect(estimateMemory({ params: count, amsgrad })).toEqual(report);
    }
  });

  test.each<[string, unknown, 'TypeError' | 'RangeError', RegExp]>([
    ['no options', undefined, 'TypeError', /options/],
    ['null', null, 'TypeError', /options/],
    ['a number', 70e9, 'TypeError', /options/],
    ['params missing', {}, 'TypeError', /options\.params/],
    ['params a string', { params: '70e9' }, 'TypeError', /options\.params/],
    ['params negative', { params: -1 }, 'RangeError', /options\.params/],
    ['params not an integer', { params: 1.5 }, 'RangeError', /options\.params/],
    ['params NaN', { params: NaN }, 'RangeError', /options\.params/],
    ['params Infinity', { params: Infinity }, 'RangeError', /options\.params/],
    ['paramBytes negative', { params: 10, paramBytes: -2 }, 'RangeError', /options\.paramBytes/],
    ['paramBytes NaN', { params: 10, paramBytes: NaN }, 'RangeError', /options\.paramBytes/],
    ['paramBytes a string', { params: 10, paramBytes: '2' }, 'TypeError', /options\.paramBytes/],
    ['gradBytes negative', { params: 10, gradBytes: -4 }, 'RangeError', /options\.gradBytes/],
    ['amsgrad not a boolean', { params: 10, amsgrad: 1 }, 'TypeError', /options\.amsgrad/],
    ['an unknown option (typo)', { params: 10, paramByte: 2 }, 'TypeError', /options\.paramByte\b/],
  ])('rejects %s', (_what, options, errorName, mentions) => {
    let thrown: unknown = undefined;
    try {
      estimateMemory(options as MemoryEstimateOptions);
    } catch (error) {
      thrown = error;
    }
    const error = thrown as Error | undefined;
    expect({ error: error?.name, message: error?.message }).toEqual({
      error: errorName,
      message: expect.stringMatching(mentions) as unknown,
    });
  });
});
