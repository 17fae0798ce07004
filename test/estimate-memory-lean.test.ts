// estimateMemory for Lion, Adafactor and CAME (issue 13): exact to the byte, from the per
// element formulas written out here (not taken from lib/), and equal to memory() of a real
// optimizer holding those params. Lion: expAvg only, 4 / 2 bytes per element (float32 / bfloat16)
// or 1 byte of codes plus a float32 absmax per 256 elements (blockwise8, float32 under
// min8bitSize). Adafactor and CAME: float32 state whose size depends on each tensor's shape.
import { Adafactor, CAME, estimateMemory, Lion, type Param } from '../lib';

const MIN_8BIT_SIZE = 4096; // bitsandbytes' default, the library's too
const BLOCK = 256;

function params(shapes: readonly (readonly number[])[]): Param[] {
  return shapes.map((shape, k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.sin(k * 13 + i) * 0.02;
    return { name: `p${k}`, data, grad: data.map((x) => x * 0.5 + 1e-3), shape };
  });
}

function lengthOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** rows (B*R) and cols (B*C) of a factored shape, null for fewer than 2 dims. */
function factors(shape: readonly number[]): { rows: number; cols: number } | null {
  if (shape.length < 2) return null;
  const batches = shape.slice(0, -2).reduce((a, b) => a * b, 1);
  return { rows: batches * shape[shape.length - 2]!, cols: batches * shape[shape.length - 1]! };
}

/** Bytes of one tensor's state, from the description of each optimizer. */
function stateBytes(
  optimizer: 'lion' | 'adafactor' | 'came',
  shape: readonly number[],
  stateDtype: 'float32' | 'bfloat16' | 'blockwise8' = 'float32',
): number {
  const n = lengthOf(shape);
  const f = factors(shape);
  switch (optimizer) {
    case 'lion':
      if (stateDtype === 'bfloat16') return 2 * n;
      if (stateDtype === 'blockwise8' && n >= MIN_8BIT_SIZE) return n + 4 * Math.ceil(n / BLOCK);
      return 4 * n;
    case 'adafactor': // no beta1: no expAvg
      return 4 * (f === null ? n : f.rows + f.cols);
    case 'came': // expAvg, and expAvgSq or the four row/col factors
      return 4 * (n + (f === null ? n : 2 * (f.rows + f.cols)));
  }
}

const SHAPES: readonly (readonly number[])[] = [
  [300, 257],
  [3, 64, 129],
  [2, 3, 4, 5],
  [100000],
  [1, 4099],
  [4099, 1],
  [17],
  [5000],
  [0, 7],
  [0],
];
const LENGTHS = SHAPES.map(lengthOf);
const PARAM_COUNT = LENGTHS.reduce((a, b) => a + b, 0);

function expected(state: number, paramBytes = 4, gradBytes = paramBytes) {
  const breakdown = {
    paramCount: PARAM_COUNT,
    params: PARAM_COUNT * paramBytes,
    grads: PARAM_COUNT * gradBytes,
    state,
    total: PARAM_COUNT * (paramBytes + gradBytes) + state,
  };
  return { ...breakdown, groups: [{ ...breakdown }] };
}

describe('estimateMemory for the lean optimizers, exact to the byte', () => {
  test.each(['adafactor', 'came'] as const)(
    '%s with shapes: the factored tensors keep rows + cols, the rest a full tensor',
    (optimizer) => {
      const state = SHAPES.reduce((sum, shape) => sum + stateBytes(optimizer, shape), 0);
      const estimate = estimateMemory({
        params: LENGTHS,
        optimizer,
        shapes: SHAPES.map((s) => [...s]),
      });
      expect(estimate).toEqual(expected(state));
      const real =
        optimizer === 'adafactor' ? new Adafactor(params(SHAPES)) : new CAME(params(SHAPES));
      expect(real.memory()).toEqual(estimate);
    },
  );

  test.each(['adafactor', 'came'] as const)(
    '%s without shapes: every tensor unfactored',
    (optimizer) => {
      const state = LENGTHS.reduce((sum, n) => sum + stateBytes(optimizer, [n]), 0);
      expect(estimateMemory({ params: LENGTHS, optimizer })).toEqual(expected(state));
    },
  );

  test('the savings the issue promises: a 4096 x 4096 matrix', () => {
    const shapes = [[4096, 4096]];
    const n = 4096 * 4096;
    const state = (optimizer: 'adamw' | 'lion' | 'adafactor' | 'came') =>
      estimateMemory({ params: [n], optimizer, shapes }).state;
    expect(state('adamw')).toBe(8 * n);
    expect(state('lion')).toBe(4 * n);
    expect(state('adafactor')).toBe(4 * 8192);
    expect(state('came')).toBe(4 * n + 4 * 2 * 8192);
  });

  test.each(['float32', 'bfloat16', 'blockwise8'] as const)(
    'lion with stateDtype %s (shapes ignored), equal to memory() of a Lion',
    (stateDtype) => {
      const state = SHAPES.reduce((sum, shape) => sum + stateBytes('lion', shape, stateDtype), 0);
      const estimate = estimateMemory({ params: LENGTHS, optimizer: 'lion', stateDtype });
      expect(estimate).toEqual(expected(state));
      expect(
        estimateMemory({
          params: LENGTHS,
          optimizer: 'lion',
          stateDtype,
          shapes: SHAPES.map((s) => [...s]),
        }),
      ).toEqual(estimate);
      expect(new Lion(params(SHAPES), { stateDtype }).memory()).toEqual(estimate);
    },
  );

  test('lion blockwise8 with min8bitSize: the threshold is per tensor', () => {
    const estimate = estimateMemory({
      params: [4099, 5000, 100000],
      optimizer: 'lion',
      stateDtype: 'blockwise8',
      min8bitSize: 4100,
    });
    expect(estimate.state).toBe(4 * 4099 + (5000 + 4 * 20) + (100000 + 4 * 391));
  });

  test('paramBytes and gradBytes apply to every optimizer', () => {
    for (const optimizer of ['lion', 'adafactor', 'came'] as const) {
      const estimate = estimateMemory({
        params: LENGTHS,
        optimizer,
        shapes: SHAPES.map((s) => [...s]),
        paramBytes: 2,
        gradBytes: 0,
      });
      const state = SHAPES.reduce((sum, shape) => sum + stateBytes(optimizer, shape), 0);
      expect(estimate).toEqual(expected(state, 2, 0));
    }
  });
});

describe('estimateMemory: bad options are errors naming them', () => {
  const expectError = (options: unknown, name: RegExp) => {
    let error: unknown;
    try {
      estimateMemory(options as Parameters<typeof estimateMemory>[0]);
    } catch (caught) {
      error = caught;
    }
    expect(error instanceof TypeError || error instanceof RangeError).toBe(true);
    expect((error as Error).message).toMatch(name);
  };

  test('an unknown optimizer', () => {
    expectError({ params: 10, optimizer: 'sgd' }, /optimizer/);
  });

  test('shapes that are not one per tensor, or whose product is not its length', () => {
    expectError({ params: [6, 4], optimizer: 'adafactor', shapes: [[2, 3]] }, /shapes/);
    expectError({ params: [6], optimizer: 'adafactor', shapes: [[2, 4]] }, /shapes\[0\]/);
    expectError({ params: [6], optimizer: 'came', shapes: [[2.5, 2]] }, /shapes\[0\]/);
    expectError({ params: [6], optimizer: 'came', shapes: ['2x3'] }, /shapes\[0\]/);
    expectError({ params: [6], optimizer: 'came', shapes: 6 }, /shapes/);
  });

  test('a state dtype Adafactor and CAME do not have', () => {
    expectError({ params: 10, optimizer: 'adafactor', stateDtype: 'bfloat16' }, /stateDtype/);
    expectError({ params: 10, optimizer: 'came', stateDtype: 'blockwise8' }, /stateDtype/);
  });
});
