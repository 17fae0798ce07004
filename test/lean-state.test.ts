// Lean state through the library (issue 12): stateDtype 'bfloat16' and 'blockwise8' per group,
// bf16/fp16 gradients, a bf16 copy of the params, stochastic rounding. What the optimizer class
// owes on top of the kernels (whose numerics test/lean-reference tests independently): state(),
// stateFloat32(), memory() and estimateMemory() exact, validation in the usual format with nothing
// written, checkpoints and state dicts that resume bit for bit, replacement of arrays between
// steps.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

import {
  AdamW,
  type AnyParam,
  type Blockwise8Tensor,
  estimateMemory,
  gradNorm,
  GradScaler,
  type ParamGroup,
  type ParamState,
  type StateDtype,
} from '../lib';
import { native } from '../lib/core/native';
import { gaussian, mulberry32 } from './helpers/random';

const DTYPES: readonly StateDtype[] = ['float32', 'bfloat16', 'blockwise8'];

// ---------------------------------------------------------------------------------------------
// Conversions, written from their definitions (issue 12's contract) rather than taken from lib/.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bitsOfFloat(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

function floatOfBits(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}

/** bf16 round to nearest even of a float32 value (NaN: 0x7FC0). */
function bf16Rne(x: number): number {
  if (Number.isNaN(x)) return 0x7fc0;
  const bits = bitsOfFloat(x);
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

function rneAll(values: Float32Array): Uint16Array {
  return Uint16Array.from(values, bf16Rne);
}

/** bf16 bits to the float32 value they stand for. */
function widenBf16(bits: number): number {
  return floatOfBits(bits << 16);
}

function bitsArray(values: Float32Array): number[] {
  return Array.from(new Uint32Array(values.slice().buffer));
}

function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const next = gaussian(mulberry32(seed));
  return Float32Array.from({ length: n }, () => next() * scale);
}

function param(n: number, seed: number, name?: string): AnyParam {
  return {
    data: randomArray(n, seed),
    grad: randomArray(n, seed + 1000, 0.1),
    ...(name === undefined ? {} : { name }),
  };
}

function copyParam(p: AnyParam): AnyParam {
  return { ...p, data: p.data.slice(), grad: p.grad.slice() };
}

/** New gradients for every param, the same for a given seed and step. */
function setGrads(params: readonly AnyParam[], seed: number): void {
  for (const [k, p] of params.entries()) {
    const g = randomArray(p.data.length, seed * 101 + k, 0.1);
    if (p.grad instanceof Uint16Array) p.grad.set(rneAll(g));
    else p.grad.set(g);
  }
}

function train(
  optimizer: AdamW<StateDtype>,
  params: readonly AnyParam[],
  from: number,
  steps: number,
): void {
  for (let t = from; t < from + steps; t++) {
    setGrads(params, t);
    optimizer.step();
  }
}

/** Everything of a param's state as plain numbers: bits of every typed array. */
function stateBits(state: ParamState): unknown {
  const plain = (value: unknown): unknown => {
    if (value instanceof Float32Array) return bitsArray(value);
    if (value instanceof Uint16Array || value instanceof Uint8Array) return Array.from(value);
    if (typeof value === 'object' && value !== null) {
      const { codes, absmax } = value as Blockwise8Tensor;
      return { codes: Array.from(codes), absmax: bitsArray(absmax) };
    }
    return value;
  };
  return Object.fromEntries(Object.entries(state).map(([key, value]) => [key, plain(value)]));
}

function everything(optimizer: AdamW<StateDtype>, params: readonly AnyParam[]): unknown {
  return params.map((p) => ({
    data: bitsArray(p.data),
    state: stateBits(optimizer.state(p)),
  }));
}

const tempDirs: string[] = [];
function tempFile(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-lean-'));
  tempDirs.push(dir);
  return path.join(dir, 'optimizer.safetensors');
}
afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

// Lengths that exercise a partial last block (blockwise8), the min8bitSize fallback and SIMD tails.
const LENGTHS = [4096 + 300, 17, 5000];

function makeParams(seed = 1): AnyParam[] {
  return LENGTHS.map((n, k) => param(n, seed + k, `p${k}`));
}

// ---------------------------------------------------------------------------------------------

describe('state(p) and stateFloat32(p)', () => {
  // Compile-time as much as run time: tsc (npm run typecheck) fails if these types drift.
  test('state(p) is typed by the state dtypes an optimizer can hold (float32 unless declared, as in 0.1.0)', () => {
    const p = param(8, 1);
    const plain = new AdamW([p]);
    const expAvg: Float32Array = plain.state(p).expAvg;
    expect(expAvg).toBeInstanceOf(Float32Array);

    const q = param(8, 2);
    const bf16 = new AdamW([q], { stateDtype: 'bfloat16' });
    const bf16State = bf16.state(q);
    const bits: Uint16Array = bf16State.expAvg;
    expect([bf16State.dtype, bits]).toEqual(['bfloat16', expect.any(Uint16Array)]);

    // A blockwise8 param under min8bitSize keeps float32 state, so the type says either.
    const r = param(8, 3);
    const b8 = new AdamW([r], { stateDtype: 'blockwise8' });
    const b8Dtype: 'blockwise8' | 'float32' = b8.state(r).dtype;
    // @ts-expect-error not necessarily blockwise8
    const onlyBlockwise8: 'blockwise8' = b8.state(r).dtype;
    expect([b8Dtype, onlyBlockwise8]).toEqual(['float32', 'float32']);

    // Groups of other dtypes than the default need the type spelled out.
    const s1 = param(8, 4);
    const s2 = param(8, 5);
    // @ts-expect-error 'bfloat16' is not one of the declared dtypes ('float32')
    expect(() => new AdamW([{ params: [s1], stateDtype: 'bfloat16' }])).not.toThrow();
    const mixed = new AdamW<'float32' | 'bfloat16'>([
      { params: [s1], stateDtype: 'bfloat16' },
      { params: [s2] },
    ]);
    expect([mixed.state(s1).dtype, mixed.state(s2).dtype]).toEqual(['bfloat16', 'float32']);
  });

  test.each(DTYPES)(
    '%s: the dtype, array types and lengths; amsgrad follows the dtype',
    (dtype) => {
      const params = makeParams();
      const optimizer = new AdamW<StateDtype>(params, { stateDtype: dtype, amsgrad: true });
      optimizer.step();
      for (const p of params) {
        const n = p.data.length;
        const state = optimizer.state(p);
        // Blockwise8 keeps float32 state below min8bitSize (4096): the 17-element param.
        const kept = dtype === 'blockwise8' && n < 4096 ? 'float32' : dtype;
        expect([state.step, state.dtype]).toEqual([1, kept]);
        for (const tensor of [state.expAvg, state.expAvgSq, state.maxExpAvgSq]) {
          if (state.dtype === 'blockwise8') {
            const { codes, absmax } = tensor as Blockwise8Tensor;
            expect([codes.constructor.name, codes.length]).toEqual(['Uint8Array', n]);
            expect([absmax.constructor.name, absmax.length]).toEqual([
              'Float32Array',
              Math.ceil(n / 256),
            ]);
          } else {
            const array = tensor as Float32Array | Uint16Array;
            const type = state.dtype === 'float32' ? 'Float32Array' : 'Uint16Array';
            expect([array.constructor.name, array.length]).toEqual([type, n]);
          }
        }
      }
    },
  );

  test('views, not copies: a second state(p) returns the same arrays', () => {
    const [p] = makeParams();
    const optimizer = new AdamW<StateDtype>([p!], { stateDtype: 'blockwise8' });
    const first = optimizer.state(p!);
    const second = optimizer.state(p!);
    expect(second.expAvg).toBe(first.expAvg);
    if (first.dtype !== 'blockwise8') throw new Error('expected blockwise8');
    optimizer.step();
    // The step wrote into the arrays handed out.
    expect(first.expAvg.absmax.some((value) => value !== 0)).toBe(true);
  });

  test('bfloat16: one step from zero state stores RNE of the float32 moments', () => {
    const a = makeParams(3);
    const b = a.map(copyParam);
    const lean = new AdamW<StateDtype>(a, { stateDtype: 'bfloat16', amsgrad: true });
    const full = new AdamW<StateDtype>(b, { amsgrad: true });
    lean.step();
    full.step();
    for (const [k, p] of a.entries()) {
      const s = lean.state(p);
      const f = full.state(b[k]!);
      if (s.dtype !== 'bfloat16' || f.dtype !== 'float32') throw new Error('dtypes');
      expect(Array.from(s.expAvg)).toEqual(Array.from(rneAll(f.expAvg)));
      expect(Array.from(s.expAvgSq)).toEqual(Array.from(rneAll(f.expAvgSq)));
      expect(Array.from(s.maxExpAvgSq!)).toEqual(Array.from(rneAll(f.maxExpAvgSq!)));
      // The param update used the float32 moments before rounding: the same params.
      expect(bitsArray(p.data)).toEqual(bitsArray(b[k]!.data));
      // stateFloat32 widens exactly.
      const widened = lean.stateFloat32(p);
      expect(bitsArray(widened.expAvg)).toEqual(
        Array.from(s.expAvg, (h) => bitsOfFloat(widenBf16(h))),
      );
      expect(widened.dtype).toBe('bfloat16');
    }
  });

  test('blockwise8: stateFloat32 is map[code] * absmax, and within half a code gap of float32', () => {
    const a = makeParams(5);
    const b = a.map(copyParam);
    const lean = new AdamW<StateDtype>(a, { stateDtype: 'blockwise8' });
    const full = new AdamW<StateDtype>(b);
    lean.step();
    full.step();
    const maps = { expAvg: native.dynamicMaps.signed, expAvgSq: native.dynamicMaps.unsigned };
    for (const [k, p] of a.entries()) {
      const s = lean.state(p);
      const f = full.state(b[k]!);
      if (f.dtype !== 'float32') throw new Error('dtypes');
      const dequantized = lean.stateFloat32(p);
      expect(dequantized.dtype).toBe(s.dtype);
      if (s.dtype === 'float32') {
        // Under min8bitSize: float32 state, the same as the float32 optimizer's.
        expect(bitsArray(dequantized.expAvg)).toEqual(bitsArray(f.expAvg));
        continue;
      }
      if (s.dtype !== 'blockwise8') throw new Error('dtypes');
      for (const key of ['expAvg', 'expAvgSq'] as const) {
        const { codes, absmax } = s[key];
        const map = maps[key];
        const exact = f[key];
        const values = dequantized[key];
        for (let j = 0; j < codes.length; j++) {
          const scale = absmax[Math.floor(j / 256)]!;
          const value = Math.fround(map[codes[j]!]! * scale);
          expect(bitsOfFloat(values[j]!)).toBe(bitsOfFloat(value));
          // The nearest code: no other code's value is closer to the float32 moment.
          const c = codes[j]!;
          const error = Math.abs(map[c]! * scale - exact[j]!);
          const neighbours = [map[c - 1], map[c + 1]].filter((v) => v !== undefined);
          for (const other of neighbours) {
            expect(error).toBeLessThanOrEqual(Math.abs(other * scale - exact[j]!) * (1 + 1e-6));
          }
        }
        // absmax is the block's largest |value| (the code 1.0 or -1.0 of the map hits it).
        const first = Math.max(...Array.from(exact.subarray(0, 256), Math.abs));
        expect(bitsOfFloat(absmax[0]!)).toBe(bitsOfFloat(first));
      }
      expect(bitsArray(p.data)).toEqual(bitsArray(b[k]!.data));
    }
  });

  test('stateFloat32 returns copies: later steps do not change them', () => {
    const [p] = makeParams();
    const optimizer = new AdamW<StateDtype>([p!], { stateDtype: 'bfloat16' });
    optimizer.step();
    const copy = optimizer.stateFloat32(p!);
    const before = bitsArray(copy.expAvg);
    train(optimizer, [p!], 1, 1);
    expect(bitsArray(copy.expAvg)).toEqual(before);
    expect(copy.step).toBe(1);
  });

  test('a blockwise8 param keeps float32 state below min8bitSize, blockwise8 from it on', () => {
    const small = param(100, 1);
    const exact = param(100, 2);
    const optimizer = new AdamW<StateDtype>(
      [
        { params: [small], stateDtype: 'blockwise8' },
        { params: [exact], stateDtype: 'blockwise8' },
      ],
      { min8bitSize: 100 },
    );
    expect(optimizer.state(small).dtype).toBe('blockwise8');
    expect(optimizer.min8bitSize).toBe(100);
    const other = new AdamW<StateDtype>([param(100, 3)], {
      stateDtype: 'blockwise8',
      min8bitSize: 101,
    });
    expect(other.state(other.paramGroups[0]!.params[0]!).dtype).toBe('float32');
  });
});

// ---------------------------------------------------------------------------------------------

describe('memory() and estimateMemory()', () => {
  test.each(DTYPES)('%s: memory() is exact, absmax and the float32 fallback included', (dtype) => {
    const params = makeParams();
    const optimizer = new AdamW<StateDtype>([
      { params: params.slice(0, 2), stateDtype: dtype },
      { params: params.slice(2), stateDtype: dtype, amsgrad: true },
    ]);
    const tensorBytes = (n: number) => {
      if (dtype === 'float32' || (dtype === 'blockwise8' && n < 4096)) return 4 * n;
      if (dtype === 'bfloat16') return 2 * n;
      return n + 4 * Math.ceil(n / 256);
    };
    const [a, b, c] = LENGTHS as [number, number, number];
    const group0 = 2 * tensorBytes(a) + 2 * tensorBytes(b);
    const group1 = 3 * tensorBytes(c);
    const report = optimizer.memory();
    expect([report.groups[0]!.state, report.groups[1]!.state, report.state]).toEqual([
      group0,
      group1,
      group0 + group1,
    ]);
    // The same as the bytes of the arrays state() hands out.
    let held = 0;
    for (const p of params) {
      for (const value of Object.values(optimizer.state(p))) {
        if (ArrayBuffer.isView(value)) held += value.byteLength;
        else if (typeof value === 'object') {
          held += (value as Blockwise8Tensor).codes.byteLength;
          held += (value as Blockwise8Tensor).absmax.byteLength;
        }
      }
    }
    expect(held).toBe(report.state);
    // estimateMemory agrees, tensor by tensor.
    expect(estimateMemory({ params: [a, b], stateDtype: dtype }).state).toBe(group0);
    expect(estimateMemory({ params: [c], stateDtype: dtype, amsgrad: true }).state).toBe(group1);
  });

  test('memory() counts bf16 grads as 2 bytes and a dataBf16 copy with the params', () => {
    const n = 1000;
    const p: AnyParam = {
      data: new Float32Array(n),
      grad: new Uint16Array(n),
      gradDtype: 'bfloat16',
      dataBf16: new Uint16Array(n),
    };
    const report = new AdamW<StateDtype>([p], { stateDtype: 'bfloat16' }).memory();
    expect(report).toMatchObject({
      paramCount: n,
      params: 6 * n,
      grads: 2 * n,
      state: 4 * n,
      total: 12 * n,
    });
  });

  test('70e9 params in one tensor: 560e9, 280e9 and 142,187,500,000 bytes of state', () => {
    expect(estimateMemory({ params: 70e9 }).state).toBe(560e9);
    expect(estimateMemory({ params: 70e9, stateDtype: 'float32' }).state).toBe(560e9);
    expect(estimateMemory({ params: 70e9, stateDtype: 'bfloat16' }).state).toBe(280e9);
    expect(estimateMemory({ params: 70e9, stateDtype: 'blockwise8' }).state).toBe(142_187_500_000);
    // 2 bytes of codes + 8 bytes of absmax per 256 elements: 2.03125 bytes per param.
    expect(142_187_500_000 / 70e9).toBeCloseTo(2.03125, 12);
    expect(estimateMemory({ params: 70e9, stateDtype: 'blockwise8', amsgrad: true }).state).toBe(
      (3 / 2) * 142_187_500_000,
    );
  });

  test('estimateMemory: small tensors keep float32 under blockwise8, as min8bitSize says', () => {
    expect(estimateMemory({ params: [4095, 4096], stateDtype: 'blockwise8' }).state).toBe(
      8 * 4095 + 2 * (4096 + 4 * 16),
    );
    expect(estimateMemory({ params: [10], stateDtype: 'blockwise8', min8bitSize: 0 }).state).toBe(
      2 * (10 + 4),
    );
    expect(estimateMemory({ params: [1, 2, 3] }).paramCount).toBe(6);
  });

  test.each<[string, unknown, string]>([
    ['an unknown stateDtype', { params: 1, stateDtype: 'int8' }, 'RangeError'],
    ['a stateDtype that is not a string', { params: 1, stateDtype: 8 }, 'TypeError'],
    ['a negative min8bitSize', { params: 1, min8bitSize: -1 }, 'RangeError'],
    ['a tensor length that is not an integer', { params: [1, 2.5] }, 'RangeError'],
    ['a tensor length that is not a number', { params: [1, '2'] }, 'TypeError'],
  ])('estimateMemory rejects %s', (_what, options, errorName) => {
    expect(() => estimateMemory(options as never)).toThrow(
      expect.objectContaining({ name: errorName }) as Error,
    );
  });
});

// ---------------------------------------------------------------------------------------------

function thrown(run: () => unknown): { name: string; message: string } {
  try {
    run();
  } catch (error) {
    return { name: (error as Error).name, message: (error as Error).message };
  }
  return { name: 'nothing thrown', message: '' };
}

describe('bad input: TypeError or RangeError in the usual format, before anything is written', () => {
  test.each<[string, () => unknown, string, string]>([
    [
      'a Uint16Array grad without gradDtype',
      () =>
        new AdamW<StateDtype>([
          { data: new Float32Array(4), grad: new Uint16Array(4) } as AnyParam,
        ]),
      'TypeError',
      "Expected 'bfloat16' or 'float16' (params[0].grad is a Uint16Array) for params[0].gradDtype but received undefined",
    ],
    [
      "gradDtype 'bfloat16' on a Float32Array grad",
      () =>
        new AdamW<StateDtype>([
          { data: new Float32Array(4), grad: new Float32Array(4), gradDtype: 'bfloat16' },
        ]),
      'TypeError',
      "Expected 'float32' or undefined (params[0].grad is a Float32Array) for params[0].gradDtype but received 'bfloat16' of type string",
    ],
    [
      'an unknown gradDtype',
      () =>
        new AdamW<StateDtype>([
          { data: new Float32Array(4), grad: new Uint16Array(4), gradDtype: 'fp16' as 'float16' },
        ]),
      'RangeError',
      "Expected 'float32', 'bfloat16' or 'float16' for params[0].gradDtype but received 'fp16' of type string",
    ],
    [
      'a bf16 grad of the wrong length',
      () =>
        new AdamW<StateDtype>([
          { data: new Float32Array(4), grad: new Uint16Array(3), gradDtype: 'bfloat16' },
        ]),
      'RangeError',
      'Expected a Uint16Array of bfloat16 bits of 4 elements for params[0].grad but received a Uint16Array of 3 elements',
    ],
    [
      'a dataBf16 of the wrong length',
      () =>
        new AdamW<StateDtype>([
          { data: new Float32Array(4), grad: new Float32Array(4), dataBf16: new Uint16Array(5) },
        ]),
      'RangeError',
      'Expected a Uint16Array of 4 elements for params[0].dataBf16 but received a Uint16Array of 5 elements',
    ],
    [
      'a dataBf16 that is a Float32Array',
      () =>
        new AdamW<StateDtype>([
          {
            data: new Float32Array(4),
            grad: new Float32Array(4),
            dataBf16: new Float32Array(4) as unknown as Uint16Array,
          },
        ]),
      'TypeError',
      'Expected a Uint16Array for params[0].dataBf16 but received a Float32Array of 4 elements',
    ],
    [
      'a dataBf16 overlapping the param',
      () => {
        const data = new Float32Array(4);
        return new AdamW<StateDtype>([
          { data, grad: new Float32Array(4), dataBf16: new Uint16Array(data.buffer, 8, 4) },
        ]);
      },
      'RangeError',
      'Expected params[0].data and params[0].dataBf16 not to overlap in memory but they share bytes',
    ],
    [
      'an unknown stateDtype',
      () => new AdamW<StateDtype>([param(4, 1)], { stateDtype: 'fp8' as StateDtype }),
      'RangeError',
      "Expected 'float32', 'bfloat16' or 'blockwise8' for defaults.stateDtype but received 'fp8' of type string",
    ],
    [
      'an unknown stateDtype on a group',
      () =>
        new AdamW<StateDtype>([
          { params: [param(4, 1)], stateDtype: 'int8' as StateDtype },
        ] as ParamGroup<StateDtype>[]),
      'RangeError',
      "Expected 'float32', 'bfloat16' or 'blockwise8' for paramGroups[0].stateDtype but received 'int8' of type string",
    ],
    [
      'stochasticRounding with no bfloat16 group',
      () =>
        new AdamW<StateDtype>([{ params: [param(4, 1)], stateDtype: 'blockwise8' }], {
          stochasticRounding: true,
        }),
      'RangeError',
      "Expected false (it rounds bfloat16 state, and no param group has stateDtype 'bfloat16') for defaults.stochasticRounding but received true of type boolean",
    ],
    [
      'a seed outside [0, 2^32)',
      () => new AdamW<StateDtype>([param(4, 1)], { stateDtype: 'bfloat16', seed: 2 ** 32 }),
      'RangeError',
      'Expected an integer in [0, 4294967295] for defaults.seed but received 4294967296 of type number',
    ],
    [
      'a negative min8bitSize',
      () => new AdamW<StateDtype>([param(4, 1)], { min8bitSize: -1 }),
      'RangeError',
      'Expected an integer >= 0 for defaults.min8bitSize but received -1 of type number',
    ],
  ])('%s', (_what, run, name, message) => {
    expect(thrown(run)).toEqual({ name, message });
  });

  test('stateDtype is fixed: assigning it throws and changes nothing', () => {
    const optimizer = new AdamW<StateDtype>([param(8, 1)], { stateDtype: 'bfloat16' });
    const group = optimizer.paramGroups[0]! as { stateDtype: StateDtype };
    expect(() => {
      group.stateDtype = 'float32';
    }).toThrow(TypeError);
    expect(group.stateDtype).toBe('bfloat16');
  });

  test("a grad or dataBf16 over the optimizer's own lean state is an overlap, nothing written", () => {
    // p1's absmax has ceil(4396 / 256) = 18 floats: the bytes of 36 bf16 values.
    const params = [param(36, 1, 'p0'), param(4396, 2, 'p1'), param(36, 3, 'p2')];
    const optimizer = new AdamW<StateDtype>([
      { params: [params[0]!, params[2]!], stateDtype: 'bfloat16' },
      { params: [params[1]!], stateDtype: 'blockwise8' },
    ]);
    optimizer.step();
    const before = everything(optimizer, params);
    const bf16 = optimizer.state(params[0]!);
    const b8 = optimizer.state(params[1]!);
    if (bf16.dtype !== 'bfloat16' || b8.dtype !== 'blockwise8') throw new Error('dtypes');
    params[2]!.grad = bf16.expAvgSq;
    params[2]!.gradDtype = 'bfloat16';
    expect(thrown(() => optimizer.step())).toEqual({
      name: 'RangeError',
      message:
        'Expected state of p0 (expAvgSq) and p2.grad not to overlap in memory but they share bytes',
    });
    params[2]!.grad = params[2]!.data.slice();
    delete params[2]!.gradDtype;
    const { absmax } = b8.expAvg;
    params[0]!.dataBf16 = new Uint16Array(absmax.buffer, absmax.byteOffset, 36);
    expect(thrown(() => optimizer.step())).toEqual({
      name: 'RangeError',
      message:
        'Expected p0.dataBf16 and state of p1 (expAvg).absmax not to overlap in memory but they share bytes',
    });
    expect(everything(optimizer, params)).toEqual(before);
  });

  // A replacement between steps is checked at step(), with every array unchanged.
  test.each<[string, (p: AnyParam, other: AnyParam) => void, string, RegExp]>([
    [
      'grad replaced by a Uint16Array, gradDtype not set',
      (p) => {
        p.grad = new Uint16Array(p.data.length);
      },
      'TypeError',
      /for p0\.gradDtype but received undefined/,
    ],
    [
      'gradDtype set, grad still a Float32Array',
      (p) => {
        p.gradDtype = 'float16';
      },
      'TypeError',
      /Expected 'float32' or undefined \(p0\.grad is a Float32Array\) for p0\.gradDtype/,
    ],
    [
      'dataBf16 of the wrong length',
      (p) => {
        p.dataBf16 = new Uint16Array(p.data.length + 1);
      },
      'RangeError',
      /Expected a Uint16Array of 4396 elements for p0\.dataBf16/,
    ],
    [
      "dataBf16 over another param's grad",
      (p, other) => {
        const grad = new Uint16Array(p.data.length);
        other.grad = grad;
        other.gradDtype = 'bfloat16';
        p.dataBf16 = grad;
      },
      'RangeError',
      /Expected p0\.dataBf16 and p1\.grad not to overlap|Expected p1\.grad and p0\.dataBf16 not to overlap/,
    ],
  ])('%s', (_what, replace, name, message) => {
    const params = [param(4396, 1, 'p0'), param(4396, 2, 'p1')];
    const optimizer = new AdamW<StateDtype>(params, { stateDtype: 'blockwise8' });
    optimizer.step();
    const before = everything(optimizer, params);
    replace(params[0]!, params[1]!);
    const result = thrown(() => optimizer.step());
    expect(result.name).toBe(name);
    expect(result.message).toMatch(message);
    expect(everything(optimizer, params)).toEqual(before);
  });
});

// ---------------------------------------------------------------------------------------------

describe('low-precision gradients and the bf16 copy of the params', () => {
  test.each(DTYPES)(
    '%s: bf16 and fp16 grads step as their float32 widening; dataBf16 is RNE of data',
    (dtype) => {
      const reference = makeParams(7);
      const bf16 = reference.map((p) => ({ ...copyParam(p), dataBf16: new Uint16Array(0) }));
      const fp16 = reference.map(copyParam);
      for (const [k, p] of reference.entries()) {
        const g = p.grad as Float32Array;
        // bf16 grads: the reference gets their exact widening.
        const halves = rneAll(g);
        g.set(Float32Array.from(halves, widenBf16));
        bf16[k]!.grad = halves;
        bf16[k]!.gradDtype = 'bfloat16';
        bf16[k]!.dataBf16 = new Uint16Array(p.data.length);
        // fp16 grads: 1.0 is 0x3C00, -2.0 is 0xC000 (exact in float16).
        fp16[k]!.grad = Uint16Array.from({ length: p.data.length }, (_, i) =>
          i % 2 ? 0x3c00 : 0xc000,
        );
        fp16[k]!.gradDtype = 'float16';
      }
      const fp16Reference = reference.map((p, k) => ({
        ...copyParam(p),
        grad: Float32Array.from({ length: p.data.length }, (_, i) => (i % 2 ? 1 : -2)),
        data: fp16[k]!.data.slice(),
      }));
      const options = { stateDtype: dtype, amsgrad: true };
      const optimizers = [reference, bf16, fp16, fp16Reference].map(
        (params) => new AdamW<StateDtype>(params, options),
      );
      for (const optimizer of optimizers) optimizer.step({ clipGradNorm: 1 });
      const [byReference, byBf16, byFp16, byFp16Reference] = optimizers as [
        AdamW,
        AdamW,
        AdamW,
        AdamW,
      ];
      expect(everything(byBf16, bf16)).toEqual(everything(byReference, reference));
      expect(everything(byFp16, fp16)).toEqual(everything(byFp16Reference, fp16Reference));
      for (const p of bf16) {
        expect(Array.from(p.dataBf16!)).toEqual(Array.from(rneAll(p.data)));
      }
    },
  );

  test('grad, gradDtype and dataBf16 may be replaced between steps (a new plan)', () => {
    const a = makeParams(11);
    const b = a.map(copyParam);
    const lean = new AdamW<StateDtype>(a, { stateDtype: 'bfloat16' });
    const full = new AdamW<StateDtype>(b, { stateDtype: 'bfloat16' });
    lean.step();
    full.step();
    // Step 2: a's first param switches to bf16 grads (b gets their widening) and gains dataBf16.
    const g = randomArray(a[0]!.data.length, 99, 0.1);
    const halves = rneAll(g);
    a[0]!.grad = halves;
    a[0]!.gradDtype = 'bfloat16';
    a[0]!.dataBf16 = new Uint16Array(a[0]!.data.length);
    b[0]!.grad = Float32Array.from(halves, widenBf16);
    lean.step();
    full.step();
    expect(everything(lean, a)).toEqual(everything(full, b));
    expect(Array.from(a[0]!.dataBf16)).toEqual(Array.from(rneAll(a[0]!.data)));
    // Step 3: back to a float32 grad, without the copy.
    a[0]!.grad = g;
    delete a[0]!.gradDtype;
    delete a[0]!.dataBf16;
    b[0]!.grad = g.slice();
    lean.step();
    full.step();
    expect(everything(lean, a)).toEqual(everything(full, b));
  });

  test('zeroGrad zeroes Uint16Array grads; gradNorm and GradScaler take them', () => {
    const p: AnyParam = {
      data: new Float32Array(300).fill(1),
      grad: Uint16Array.from({ length: 300 }, (_, i) => bf16Rne(i % 3 === 0 ? 3 : -4)),
      gradDtype: 'bfloat16',
    };
    const widened = Float32Array.from(p.grad, widenBf16);
    expect(gradNorm([p])).toBe(gradNorm([widened]));
    const optimizer = new AdamW<StateDtype>([p], { stateDtype: 'bfloat16' });
    const scaler = new GradScaler({ initScale: 4 });
    const reference: AnyParam = { data: new Float32Array(300).fill(1), grad: widened };
    const referenceOptimizer = new AdamW<StateDtype>([reference], { stateDtype: 'bfloat16' });
    const report = scaler.step(optimizer);
    referenceOptimizer.step({ gradScale: 4, skipNonFinite: true });
    expect(report.skipped).toBe(false);
    expect(everything(optimizer, [p])).toEqual(everything(referenceOptimizer, [reference]));
    optimizer.zeroGrad();
    expect(p.grad.every((bits) => bits === 0)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------

describe('stochastic rounding', () => {
  test('the same seed gives the same bits; another seed, other bits; both within an ulp of RNE', () => {
    const runs = [7, 7, 8].map((seed) => {
      const params = makeParams(13);
      const optimizer = new AdamW<StateDtype>(params, {
        stateDtype: 'bfloat16',
        stochasticRounding: true,
        seed,
      });
      train(optimizer, params, 0, 3);
      return { optimizer, params };
    });
    const [first, same, other] = runs as [(typeof runs)[0], (typeof runs)[0], (typeof runs)[0]];
    expect(everything(same.optimizer, same.params)).toEqual(
      everything(first.optimizer, first.params),
    );
    expect(everything(other.optimizer, other.params)).not.toEqual(
      everything(first.optimizer, first.params),
    );
    expect([first.optimizer.stochasticRounding, first.optimizer.seed]).toEqual([true, 7]);
    // One step from zero state: each bf16 value is the float32 moment rounded down or up.
    const params = makeParams(17);
    const exact = params.map(copyParam);
    const rounding = new AdamW<StateDtype>(params, {
      stateDtype: 'bfloat16',
      stochasticRounding: true,
    });
    const full = new AdamW<StateDtype>(exact);
    rounding.step();
    full.step();
    let roundedUp = 0;
    let total = 0;
    for (const [k, p] of params.entries()) {
      const s = rounding.state(p);
      const f = full.state(exact[k]!);
      if (s.dtype !== 'bfloat16' || f.dtype !== 'float32') throw new Error('dtypes');
      for (let j = 0; j < s.expAvg.length; j++) {
        const truncated = bitsOfFloat(f.expAvg[j]!) >>> 16;
        expect([truncated, truncated + 1]).toContain(s.expAvg[j]);
        if (s.expAvg[j] !== truncated) roundedUp++;
        total++;
      }
    }
    // Rounded up with probability frac: neither never nor always.
    expect(roundedUp / total).toBeGreaterThan(0.2);
    expect(roundedUp / total).toBeLessThan(0.8);
  });

  test('stepAsync rounds as step does, with bf16 grads and dataBf16', async () => {
    const make = () =>
      makeParams(43).map((p) => ({
        ...p,
        grad: rneAll(p.grad as Float32Array),
        gradDtype: 'bfloat16' as const,
        dataBf16: new Uint16Array(p.data.length),
      }));
    const sync = make();
    const async = make();
    const options = { stateDtype: 'bfloat16' as const, stochasticRounding: true, seed: 9 };
    const a = new AdamW<StateDtype>(sync, options);
    const b = new AdamW<StateDtype>(async, options);
    for (let t = 0; t < 2; t++) {
      a.step({ clipGradNorm: 0.5 });
      await b.stepAsync({ clipGradNorm: 0.5 });
    }
    expect(everything(b, async)).toEqual(everything(a, sync));
    expect(async.map((p) => Array.from(p.dataBf16))).toEqual(
      sync.map((p) => Array.from(p.dataBf16)),
    );
  });

  test('bf16 groups round stochastically, others are unaffected', () => {
    const a = makeParams(19);
    const b = a.map(copyParam);
    const mixed = new AdamW<StateDtype>(
      [
        { params: a.slice(0, 2), stateDtype: 'bfloat16' },
        { params: a.slice(2), stateDtype: 'blockwise8' },
      ],
      { stochasticRounding: true, seed: 3 },
    );
    const plain = new AdamW<StateDtype>([
      { params: b.slice(0, 2), stateDtype: 'bfloat16' },
      { params: b.slice(2), stateDtype: 'blockwise8' },
    ]);
    train(mixed, a, 0, 2);
    train(plain, b, 0, 2);
    expect(everything(mixed, a.slice(2))).toEqual(everything(plain, b.slice(2)));
    expect(everything(mixed, a.slice(0, 1))).not.toEqual(everything(plain, b.slice(0, 1)));
  });
});

// ---------------------------------------------------------------------------------------------

/** Two groups of every lean dtype, amsgrad in one, stochastic rounding on: the hardest resume. */
function leanOptimizer(params: AnyParam[], dtype: StateDtype, seed = 5): AdamW<StateDtype> {
  return new AdamW<StateDtype>(
    [
      { params: params.slice(0, 2), stateDtype: dtype, lr: 0.01 },
      { params: params.slice(2), stateDtype: dtype, amsgrad: true },
    ],
    dtype === 'bfloat16' ? { stochasticRounding: true, seed } : { min8bitSize: 1000 },
  );
}

describe('checkpoints and state dicts', () => {
  // A step never writes a negative, NaN or infinite absmax; one from outside would turn params
  // into NaN (a negative second moment's square root) or wipe its block.
  test.each([-1, Number.NaN, Number.POSITIVE_INFINITY])(
    'a state dict with absmax %p is a RangeError that changes nothing',
    (bad) => {
      const params = makeParams(31);
      const optimizer = leanOptimizer(params, 'blockwise8');
      train(optimizer, params, 0, 2);
      const dict = optimizer.stateDict();
      const entry = dict.state[0];
      if (entry?.dtype !== 'blockwise8') throw new Error('expected blockwise8 state');
      entry.expAvgSq.absmax[3] = bad;
      const before = everything(optimizer, params);
      expect(thrown(() => optimizer.loadStateDict(dict))).toEqual({
        name: 'RangeError',
        message:
          "Expected a finite number >= 0 (its block's largest magnitude) for " +
          `stateDict.state[0].expAvgSq.absmax[3] but received ${String(bad)} of type number`,
      });
      expect(everything(optimizer, params)).toEqual(before);
    },
  );

  test('a checkpoint file with a negative absmax is refused by load and loadFrom', () => {
    const params = makeParams(32);
    const optimizer = leanOptimizer(params, 'blockwise8');
    train(optimizer, params, 0, 2);
    const file = tempFile();
    optimizer.save(file);
    // Rewrite one absmax float (and the file's CRC-32, so only the value is wrong).
    const bytes = fs.readFileSync(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const headerText = bytes.subarray(8, 8 + headerLength).toString('utf8');
    const header = JSON.parse(headerText) as Record<
      string,
      { data_offsets: [number, number] } | Record<string, string>
    >;
    const name = 'state.p0.exp_avg_sq.absmax';
    const info = header[name] as { data_offsets: [number, number] };
    bytes.writeFloatLE(-1, 8 + headerLength + info.data_offsets[0] + 4);
    const crc = (header.__metadata__ as Record<string, string>).crc32 ?? '';
    const zeroed = Buffer.from(
      bytes.toString('latin1').replace(`"crc32":"${crc}"`, '"crc32":"00000000"'),
      'latin1',
    );
    const fixed = zlib.crc32(zeroed).toString(16).padStart(8, '0');
    fs.writeFileSync(
      file,
      Buffer.from(
        zeroed.toString('latin1').replace('"crc32":"00000000"', `"crc32":"${fixed}"`),
        'latin1',
      ),
    );
    const message =
      "Expected a finite number >= 0 (its block's largest magnitude) for element 1 of tensor " +
      `'${name}' of checkpoint '${file}' but received -1 of type number`;
    expect(thrown(() => AdamW.load(file, makeParams(32)))).toEqual({ name: 'RangeError', message });
    const before = everything(optimizer, params);
    expect(thrown(() => optimizer.loadFrom(file))).toEqual({ name: 'RangeError', message });
    expect(everything(optimizer, params)).toEqual(before);
  });

  test.each(DTYPES)('%s: save, load, continue == uninterrupted, bit for bit', (dtype) => {
    const straight = makeParams(23);
    const resumed = straight.map(copyParam);
    const reference = leanOptimizer(straight, dtype);
    const first = leanOptimizer(resumed, dtype);
    train(reference, straight, 0, 5);
    train(first, resumed, 0, 3);
    const file = tempFile();
    first.save(file);
    const sd = first.stateDict();
    // Static load: a new optimizer with the file's groups and lean options.
    const loadedParams = resumed.map(copyParam);
    const loaded = AdamW.load(file, loadedParams);
    expect([loaded.stochasticRounding, loaded.seed, loaded.min8bitSize]).toEqual([
      dtype === 'bfloat16',
      dtype === 'bfloat16' ? 5 : 0,
      dtype === 'bfloat16' ? 4096 : 1000,
    ]);
    // loadFrom and loadStateDict into a fresh optimizer of the same layout (another seed, which
    // the file and dict restore).
    const fromParams = resumed.map(copyParam);
    const from = leanOptimizer(fromParams, dtype, 77);
    from.loadFrom(file);
    const dictParams = resumed.map(copyParam);
    const fromDict = leanOptimizer(dictParams, dtype, 77);
    fromDict.loadStateDict(sd);
    for (const [optimizer, params] of [
      [first, resumed],
      [loaded, loadedParams],
      [from, fromParams],
      [fromDict, dictParams],
    ] as const) {
      train(optimizer, params, 3, 2);
      expect(everything(optimizer, params)).toEqual(everything(reference, straight));
    }
  });

  test('the file stores lean state natively, with the dtype and rounding in the metadata', () => {
    const params = makeParams(29);
    const optimizer = new AdamW<StateDtype>(
      [
        { params: params.slice(0, 1), stateDtype: 'blockwise8' },
        { params: params.slice(1), stateDtype: 'bfloat16' },
      ],
      { stochasticRounding: true, seed: 42 },
    );
    optimizer.step();
    const file = tempFile();
    optimizer.save(file);
    const bytes = fs.readFileSync(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<
      string,
      { dtype: string; shape: number[] }
    > & { __metadata__: Record<string, string> };
    const n = LENGTHS[0]!;
    expect(header['state.p0.exp_avg']).toMatchObject({ dtype: 'U8', shape: [n] });
    expect(header['state.p0.exp_avg.absmax']).toMatchObject({
      dtype: 'F32',
      shape: [Math.ceil(n / 256)],
    });
    expect(header['state.p0.exp_avg_sq.absmax']).toMatchObject({ dtype: 'F32' });
    expect(header['state.p1.exp_avg']).toMatchObject({ dtype: 'BF16', shape: [LENGTHS[1]] });
    const metadata = header.__metadata__;
    expect(metadata.format_version).toBe('2');
    expect(JSON.parse(metadata.lean_state!)).toEqual({
      stochastic_rounding: true,
      seed: 42,
      min_8bit_size: 4096,
    });
    const groups = JSON.parse(metadata.param_groups!) as { state_dtype: string }[];
    expect(groups.map((group) => group.state_dtype)).toEqual(['blockwise8', 'bfloat16']);
    // The codes as stored are the optimizer's.
    const info = header['state.p0.exp_avg'] as unknown as { data_offsets: [number, number] };
    const state = optimizer.state(params[0]!);
    if (state.dtype !== 'blockwise8') throw new Error('dtype');
    const start = 8 + headerLength;
    expect(
      Buffer.from(bytes.subarray(start + info.data_offsets[0], start + info.data_offsets[1])),
    ).toEqual(Buffer.from(state.expAvg.codes));
  });

  test('loading into an optimizer of another stateDtype is a RangeError that changes nothing', () => {
    const params = makeParams(31);
    const source = new AdamW<StateDtype>(params, { stateDtype: 'bfloat16' });
    source.step();
    const file = tempFile();
    source.save(file);
    const targetParams = params.map(copyParam);
    const target = new AdamW<StateDtype>(targetParams, { stateDtype: 'blockwise8' });
    target.step();
    const before = everything(target, targetParams);
    expect(thrown(() => target.loadFrom(file))).toEqual({
      name: 'RangeError',
      message: expect.stringMatching(
        /^Expected 'blockwise8' \(as this optimizer's paramGroups\[0\]; stateDtype decides which state exists\) for __metadata__\.param_groups\[0\]\.stateDtype of checkpoint '.*' but received 'bfloat16' of type string$/,
      ) as unknown as string,
    });
    expect(thrown(() => target.loadStateDict(source.stateDict()))).toMatchObject({
      name: 'RangeError',
      message: expect.stringMatching(/for stateDict\.paramGroups\[0\]\.stateDtype/) as unknown,
    });
    expect(everything(target, targetParams)).toEqual(before);
  });

  test('another min8bitSize keeps some params in another dtype: a RangeError naming the tensor', () => {
    const params = makeParams(37);
    const source = new AdamW<StateDtype>(params, { stateDtype: 'blockwise8' });
    source.step();
    const file = tempFile();
    source.save(file);
    const target = new AdamW<StateDtype>(params.map(copyParam), {
      stateDtype: 'blockwise8',
      min8bitSize: 0,
    });
    expect(thrown(() => target.loadFrom(file))).toEqual({
      name: 'RangeError',
      message: expect.stringMatching(
        /^Expected 'blockwise8' \(how this optimizer keeps the state of p1, 17 elements, min8bitSize 0\) for the state dtype of tensor 'state\.p1\.exp_avg' of checkpoint .* but received 'float32' of type string$/,
      ) as unknown as string,
    });
    expect(thrown(() => target.loadStateDict(source.stateDict()))).toMatchObject({
      name: 'RangeError',
      message: expect.stringMatching(
        /for stateDict\.state\[1\]\.dtype but received 'float32'/,
      ) as unknown,
    });
  });

  test('a state dict holds copies of lean state, of its own types', () => {
    const [p] = makeParams(41);
    const optimizer = new AdamW<StateDtype>([p!], { stateDtype: 'blockwise8' });
    optimizer.step();
    const sd = optimizer.stateDict();
    const entry = sd.state[0]!;
    const state = optimizer.state(p!);
    if (entry.dtype !== 'blockwise8' || state.dtype !== 'blockwise8') throw new Error('dtype');
    expect(entry.expAvg.codes).not.toBe(state.expAvg.codes);
    expect(Array.from(entry.expAvg.codes)).toEqual(Array.from(state.expAvg.codes));
    expect(sd.paramGroups[0]!.stateDtype).toBe('blockwise8');
    // A getter of the pair runs before any array is checked: detaching an array it hands back is
    // caught, and nothing changes.
    const before = everything(optimizer, [p!]);
    const absmax = entry.expAvg.absmax.slice();
    const hostile = {
      ...sd,
      state: [
        {
          ...entry,
          expAvg: {
            get codes() {
              structuredClone(absmax.buffer, { transfer: [absmax.buffer as ArrayBuffer] });
              return entry.expAvg.codes;
            },
            absmax,
          },
        },
      ],
    };
    expect(thrown(() => optimizer.loadStateDict(hostile as typeof sd))).toEqual({
      name: 'TypeError',
      message:
        'Expected a Float32Array for stateDict.state[0].expAvg.absmax but received a Float32Array whose ArrayBuffer is detached',
    });
    expect(everything(optimizer, [p!])).toEqual(before);
    // A dict whose absmax is one block short is refused.
    const short = {
      ...sd,
      state: [{ ...entry, expAvg: { ...entry.expAvg, absmax: entry.expAvg.absmax.subarray(1) } }],
    };
    expect(thrown(() => optimizer.loadStateDict(short))).toEqual({
      name: 'RangeError',
      message: `Expected a Float32Array of ${Math.ceil(LENGTHS[0]! / 256)} elements for stateDict.state[0].expAvg.absmax but received a Float32Array of ${Math.ceil(LENGTHS[0]! / 256) - 1} elements`,
    });
  });
});
