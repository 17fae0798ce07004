// The phased ops (adafactor, came) through the binding (native/tests/phased-agreement.cc checks
// every ISA and thread count at the C++ level): their layouts as the contract states them,
// createPlan's shapes and the factored arrays checked before anything is held, one step against a
// float64 reading of the reference, the same bits on every kernel, thread count and async run,
// and the fused gradient factor applied on every pass.
import { native, type NativeArray } from '../lib/core/native';
import { mulberry32 } from './helpers/random';

const initialIsa = native.activeIsa();
afterAll(() => native.setIsa(initialIsa));

const adafactor = native.ops.adafactor!;
const came = native.ops.came!;

function randomFloats(length: number, seed: number, scale = 1): Float32Array {
  const random = mulberry32(seed);
  return Float32Array.from({ length }, () => (random() * 2 - 1) * scale);
}

/** [batches, R, C] as lib/ derives it from a shape: [0, 0, 0] below two dimensions. */
function factorsOf(shape: readonly number[]): [number, number, number] {
  if (shape.length < 2) return [0, 0, 0];
  const batches = shape.slice(0, -2).reduce((a, b) => a * b, 1);
  return [batches, shape[shape.length - 2]!, shape[shape.length - 1]!];
}

/** One tensor's arrays for a phased op: state zero, param and grad random. */
function phasedArrays(
  op: 'adafactor' | 'came',
  shape: readonly number[],
  seed: number,
  firstMoment = true,
): (NativeArray | null)[] {
  const layout = native.ops[op]!;
  const [batches, rows, cols] = factorsOf(shape);
  const factored = batches * rows * cols > 0 || shape.length >= 2;
  const length = shape.reduce((a, b) => a * b, 1);
  return layout.arrays.map((name, a) => {
    const presence = layout.optionalArrays[name];
    if (presence === 'factored' && !factored) return null;
    if (presence === 'unfactored' && factored) return null;
    if (presence === 'tensor') return null;
    if (presence === 'firstMoment' && !firstMoment) return null;
    if (a === 0) return randomFloats(length, seed, 0.05);
    if (a === 1) return randomFloats(length, seed + 1, 0.01);
    const lengthKind = layout.arrayLengths[a];
    return new Float32Array(
      lengthKind === 'rows' ? batches * rows : lengthKind === 'cols' ? batches * cols : length,
    );
  });
}

/** The error a native call throws, by name and message (the addon's errors are of Node's realm,
 * not jest's, so toThrow(new TypeError(...)) cannot compare their classes). */
function thrown(call: () => unknown): { name: string; message: string } {
  try {
    call();
  } catch (error) {
    return { name: (error as Error).name, message: (error as Error).message };
  }
  return { name: 'nothing thrown', message: '' };
}

function bytesOf(arrays: readonly (NativeArray | null)[]): Buffer {
  return Buffer.concat(
    arrays
      .filter((a): a is NativeArray => a !== null)
      .map((array) => Buffer.from(array.buffer, array.byteOffset, array.byteLength)),
  );
}

const ADAFACTOR_SCALARS = (t: number, weightDecay = 0) => {
  const beta2t = 1 - t ** -0.8;
  return [
    beta2t,
    1 - beta2t,
    1e-30,
    1e-3,
    1,
    Math.min(1e-2, 1 / Math.sqrt(t)),
    0.9,
    0.1,
    weightDecay,
  ];
};
const CAME_SCALARS = [
  0.9,
  0.1,
  0.999,
  0.001,
  0.9999,
  0.0001,
  1e-30,
  1e-16,
  1,
  1 - 2e-4 * 0.01,
  -2e-4,
];

describe('layouts', () => {
  test('adafactor', () => {
    expect(adafactor.family).toBe('adafactor');
    expect(adafactor.arrays).toEqual([
      'param',
      'grad',
      'expAvg',
      'expAvgSq',
      'expAvgSqRow',
      'expAvgSqCol',
      'paramBf16',
    ]);
    expect(adafactor.arrayLengths).toEqual([
      'param',
      'param',
      'param',
      'param',
      'rows',
      'cols',
      'param',
    ]);
    expect(adafactor.arrayTypes).toEqual([
      'float32',
      'grad',
      'float32',
      'float32',
      'float32',
      'float32',
      'bfloat16',
    ]);
    expect(adafactor.scalars).toEqual([
      'beta2t',
      'oneMinusBeta2t',
      'eps1',
      'eps2',
      'clipThreshold',
      'stepSize',
      'beta1',
      'oneMinusBeta1',
      'weightDecay',
    ]);
    expect(adafactor.flags).toEqual({ scaleParameter: 1, firstMoment: 2 });
    expect(adafactor.optionalArrays).toEqual({
      expAvg: 'firstMoment',
      expAvgSq: 'unfactored',
      expAvgSqRow: 'factored',
      expAvgSqCol: 'factored',
      paramBf16: 'tensor',
    });
  });

  test('came', () => {
    expect(came.family).toBe('came');
    expect(came.arrays).toEqual([
      'param',
      'grad',
      'expAvg',
      'expAvgSq',
      'expAvgSqRow',
      'expAvgSqCol',
      'expAvgResRow',
      'expAvgResCol',
      'paramBf16',
    ]);
    expect(came.arrayLengths).toEqual([
      'param',
      'param',
      'param',
      'param',
      'rows',
      'cols',
      'rows',
      'cols',
      'param',
    ]);
    expect(came.scalars).toEqual([
      'beta1',
      'oneMinusBeta1',
      'beta2',
      'oneMinusBeta2',
      'beta3',
      'oneMinusBeta3',
      'eps1',
      'eps2',
      'clipThreshold',
      'decay',
      'negLr',
    ]);
    expect(came.flags).toEqual({});
  });
});

describe('createPlan checks shapes and the factored arrays before holding anything', () => {
  const shape44 = Uint32Array.of(1, 4, 4);

  test('shapes must be a Uint32Array of 3 per tensor', () => {
    const arrays = phasedArrays('adafactor', [4, 4], 1);
    expect(
      thrown(() => native.createPlan('adafactor', arrays, undefined, [1, 4, 4] as never)),
    ).toEqual({ name: 'TypeError', message: 'createPlan(): shapes must be a Uint32Array' });
    expect(
      thrown(() => native.createPlan('adafactor', arrays, undefined, Uint32Array.of(4, 4))),
    ).toEqual({
      name: 'RangeError',
      message:
        'createPlan(): shapes has 2 elements but 1 tensors need 3 (3 per tensor: [batches, R, C])',
    });
  });

  test("the shape's product must be the param's length", () => {
    const arrays = phasedArrays('adafactor', [4, 4], 1);
    expect(
      thrown(() => native.createPlan('adafactor', arrays, undefined, Uint32Array.of(1, 4, 5))),
    ).toEqual({
      name: 'RangeError',
      message:
        "createPlan(): tensor 0 has the shape [1, 4, 5] (shapes[0..2]) whose product is not its param's length 16",
    });
    // 2^32 - 1 cubed overflows 64 bits: still a mismatch, not a wrapped-around match.
    const huge = 0xffffffff;
    expect(
      thrown(() =>
        native.createPlan('adafactor', arrays, undefined, Uint32Array.of(huge, huge, huge)),
      ).message,
    ).toMatch(/whose product is not its param's length 16/);
  });

  test('an op that is not factored takes only [0, 0, 0]', () => {
    const arrays: (NativeArray | null)[] = [0, 1, 2, 3].map((seed) => randomFloats(16, seed));
    arrays.push(null, null);
    expect(thrown(() => native.createPlan('adamw', arrays, undefined, shape44))).toEqual({
      name: 'RangeError',
      message:
        "createPlan(): tensor 0 has the shape [1, 4, 4] but 'adamw' is not a factored op (its shapes must be [0, 0, 0])",
    });
    expect(() => native.createPlan('adamw', arrays, undefined, new Uint32Array(3))).not.toThrow();
  });

  test('a factored tensor needs its row and column states, and no expAvgSq', () => {
    const arrays = phasedArrays('adafactor', [4, 4], 1);
    const noRow = arrays.map((a, i) => (i === 4 ? null : a));
    expect(thrown(() => native.createPlan('adafactor', noRow, undefined, shape44))).toEqual({
      name: 'TypeError',
      message:
        'Expected a Float32Array for tensor 0 expAvgSqRow (tensor 0 is factored: its shape is [1, 4, 4]) but received null',
    });
    const withSq = arrays.map((a, i) => (i === 3 ? new Float32Array(16) : a));
    expect(thrown(() => native.createPlan('adafactor', withSq, undefined, shape44))).toEqual({
      name: 'TypeError',
      message:
        'Expected null for tensor 0 expAvgSq (tensor 0 is factored: its shape is [1, 4, 4]) but received a typed array',
    });
    // Without shapes the same arrays are an unfactored tensor's, which needs expAvgSq (the arrays
    // are checked in order) and no row state.
    expect(thrown(() => native.createPlan('adafactor', arrays))).toEqual({
      name: 'TypeError',
      message:
        'Expected a Float32Array for tensor 0 expAvgSq (no shapes: tensor 0 is unfactored) but received null',
    });
    const unfactoredWithRow = arrays.map((a, i) => (i === 3 ? new Float32Array(16) : a));
    expect(thrown(() => native.createPlan('adafactor', unfactoredWithRow))).toEqual({
      name: 'TypeError',
      message:
        'Expected null for tensor 0 expAvgSqRow (no shapes: tensor 0 is unfactored) but received a typed array',
    });
  });

  test('rows and cols lengths', () => {
    const arrays = phasedArrays('came', [2, 3, 5], 1);
    const shape = Uint32Array.of(2, 3, 5);
    expect(() => native.createPlan('came', arrays, undefined, shape)).not.toThrow();
    const shortRow = arrays.map((a, i) => (i === 6 ? new Float32Array(5) : a));
    expect(thrown(() => native.createPlan('came', shortRow, undefined, shape))).toEqual({
      name: 'RangeError',
      message:
        'tensor 0 expAvgResRow has 5 elements but needs 6 (batches * R of its shape [2, 3, 5])',
    });
    const longCol = arrays.map((a, i) => (i === 5 ? new Float32Array(11) : a));
    expect(thrown(() => native.createPlan('came', longCol, undefined, shape))).toEqual({
      name: 'RangeError',
      message:
        'tensor 0 expAvgSqCol has 11 elements but needs 10 (batches * C of its shape [2, 3, 5])',
    });
  });

  test('an unfactored tensor needs expAvgSq; a wrong type names what it expected', () => {
    const arrays = phasedArrays('came', [7], 1);
    expect(() => native.createPlan('came', arrays)).not.toThrow();
    const noSq = arrays.map((a, i) => (i === 3 ? null : a));
    expect(thrown(() => native.createPlan('came', noSq, undefined, new Uint32Array(3)))).toEqual({
      name: 'TypeError',
      message:
        'Expected a Float32Array for tensor 0 expAvgSq (tensor 0 is unfactored: its shape is [0, 0, 0]) but received null',
    });
    const wrongType = arrays.map((a, i) => (i === 2 ? new Uint16Array(7) : a));
    expect(thrown(() => native.createPlan('came', wrongType))).toEqual({
      name: 'TypeError',
      message: 'Expected a Float32Array for tensor 0 expAvg',
    });
  });

  test('a factored tensor of length 0 does nothing', () => {
    const arrays = phasedArrays('adafactor', [3, 0], 1, false);
    const plan = native.createPlan('adafactor', arrays, undefined, Uint32Array.of(1, 3, 0));
    const before = bytesOf(arrays);
    native.runPlan(
      plan,
      new Float64Array(ADAFACTOR_SCALARS(1)),
      Uint32Array.of(1),
      Uint32Array.of(0),
      1,
    );
    expect(bytesOf(arrays)).toEqual(before);
  });
});

// The reference's step in float64 (the golden vectors' pseudo-code), for one factored tensor.
function adafactorReference(
  param: Float32Array,
  grad: Float32Array,
  rows: number,
  cols: number,
  t: number,
): Float64Array {
  const [beta2t, oneMinusBeta2t, eps1, eps2, clip, stepSize] = ADAFACTOR_SCALARS(t);
  const n = rows * cols;
  const u = Array.from(grad, (g) => g * g + eps1!);
  const row = Array.from({ length: rows }, (_, r) => {
    let s = 0;
    for (let c = 0; c < cols; c++) s += u[r * cols + c]!;
    return oneMinusBeta2t! * (s / cols);
  });
  const col = Array.from({ length: cols }, (_, c) => {
    let s = 0;
    for (let r = 0; r < rows; r++) s += u[r * cols + c]!;
    return oneMinusBeta2t! * (s / rows);
  });
  expect(beta2t).toBe(0);
  const rowMean = row.reduce((a, b) => a + b, 0) / rows;
  const upd = Array.from(grad, (g, i) => {
    const r = Math.floor(i / cols);
    return (1 / Math.sqrt(row[r]! / rowMean)) * (1 / Math.sqrt(col[i % cols]!)) * g;
  });
  const rmsU = Math.sqrt(upd.reduce((a, x) => a + x * x, 0) / n);
  const rmsP = Math.sqrt(param.reduce((a, x) => a + x * x, 0) / n);
  const lrT = Math.max(eps2!, rmsP) * stepSize!;
  const scale = lrT / Math.max(1, rmsU / clip!);
  return Float64Array.from(param, (p, i) => p - upd[i]! * scale);
}

describe('one step', () => {
  test('adafactor [40, 33] against the reference read in float64', () => {
    const arrays = phasedArrays('adafactor', [40, 33], 7, false);
    const param = arrays[0] as Float32Array;
    const grad = arrays[1] as Float32Array;
    const want = adafactorReference(param, grad, 40, 33, 1);
    const plan = native.createPlan('adafactor', arrays, undefined, Uint32Array.of(1, 40, 33));
    native.runPlan(
      plan,
      new Float64Array(ADAFACTOR_SCALARS(1)),
      Uint32Array.of(adafactor.flags.scaleParameter!),
      Uint32Array.of(0),
      1,
    );
    let worst = 0;
    for (let i = 0; i < param.length; i++) {
      worst = Math.max(worst, Math.abs(param[i]! - want[i]!) / (Math.abs(want[i]!) + 1e-6));
    }
    expect(worst).toBeLessThan(1e-5);
    expect(worst).toBeGreaterThanOrEqual(0);
  });
});

describe('the same bits everywhere', () => {
  const shapes: (readonly number[])[] = [[17], [3, 16, 24], [300, 70], [1, 33], [33, 1], [40000]];

  function runPhased(
    op: 'adafactor' | 'came',
    isa: string,
    threads: number,
    mode: 'sync' | 'async' | 'halvedGrad' | 'gradScale2',
  ): Promise<Buffer> | Buffer {
    native.setIsa(isa);
    const tensors = shapes.map((shape, k) => phasedArrays(op, shape, 11 * k + 1));
    if (mode === 'halvedGrad') {
      for (const t of tensors) (t[1] as Float32Array).forEach((g, i, a) => (a[i] = g * 0.5));
    }
    const arrays = tensors.flat();
    const plan = native.createPlan(
      op,
      arrays,
      undefined,
      Uint32Array.from(shapes.flatMap((s) => factorsOf(s))),
    );
    const scalars = new Float64Array(
      op === 'adafactor' ? ADAFACTOR_SCALARS(3, 0.01) : CAME_SCALARS,
    );
    const flags = Uint32Array.of(op === 'adafactor' ? 3 : 0);
    const sets = new Uint32Array(shapes.length);
    let control: Float64Array | undefined;
    if (mode === 'gradScale2') {
      control = new Float64Array(native.control.length);
      control[native.control.maxNorm] = Infinity;
      control[native.control.gradScale] = 2;
    }
    // Everything the step writes: every array but the grads (which it only reads).
    const written = () => bytesOf(tensors.flatMap((t) => t.filter((_, a) => a !== 1)));
    if (mode === 'async') {
      return native.runPlanAsync(plan, scalars, flags, sets, threads).then(written);
    }
    native.runPlan(plan, scalars, flags, sets, threads, control);
    return written();
  }

  test.each(['adafactor', 'came'] as const)('%s: every kernel, 1-3 threads, async', async (op) => {
    const reference = runPhased(op, 'scalar', 1, 'sync') as Buffer;
    for (const isa of native.availableIsas()) {
      for (const threads of [1, 2, 3]) {
        const got = runPhased(op, isa, threads, 'sync') as Buffer;
        expect({ isa, threads, same: got.equals(reference) }).toEqual({ isa, threads, same: true });
      }
      const got = await runPhased(op, isa, 2, 'async');
      expect({ isa, async: true, same: got.equals(reference) }).toEqual({
        isa,
        async: true,
        same: true,
      });
    }
  });

  test.each(['adafactor', 'came'] as const)(
    '%s: the fused gradScale 2 is the step on grad / 2, on every pass',
    (op) => {
      // Halving is exact, so the fused factor 0.5, applied to g wherever a pass reads it, gives
      // the bits of the plain step on halved gradients.
      for (const isa of native.availableIsas()) {
        const fused = runPhased(op, isa, 1, 'gradScale2') as Buffer;
        const halved = runPhased(op, isa, 1, 'halvedGrad') as Buffer;
        const plain = runPhased(op, isa, 1, 'sync') as Buffer;
        expect({ isa, same: fused.equals(halved) }).toEqual({ isa, same: true });
        expect(fused.equals(plain)).toBe(false);
      }
    },
  );
});
