// Lion (issue 13) through the public API: its defaults and validation; sign(0) = 0 and maximize;
// state(), stateFloat32() and memory() per state dtype; every state dtype x gradient dtype x bf16
// param copy bit for bit against an independent reference (helpers/lion-reference.ts), on every
// kernel this CPU can run and 1, 2 and 3 threads; the fused clip/unscale/skip; stepAsync;
// checkpoints and state dicts that resume bit for bit; schedules.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  type AnyParam,
  backend,
  type IsaName,
  type Blockwise8Tensor,
  cosineWithWarmup,
  gradNorm,
  Lion,
  LION_SPEC,
  type LionOptions,
  type LionParamGroup,
  type LionParamState,
  lrFactor,
  type Param,
  type StateDtype,
} from '../lib';
import { createDynamicMap } from './helpers/bnb-maps';
import {
  bf16Rne,
  bitsOfFloat,
  floatOfBits,
  type GradDtype,
  type Maps,
  srKey,
} from './helpers/lean-reference';
import {
  type LionRefHyper,
  type LionRefMoment,
  lionReferenceStep,
  type LionRefTensor,
  newLionRefTensor,
  torchSign,
} from './helpers/lion-reference';
import { gaussian, hex, mulberry32 } from './helpers/random';

const { fround } = Math;

const MAPS: Maps = { signed: createDynamicMap(true), unsigned: createDynamicMap(false) };
const STATE_DTYPES: readonly StateDtype[] = ['float32', 'bfloat16', 'blockwise8'];
const GRAD_DTYPES: readonly GradDtype[] = ['float32', 'bfloat16', 'float16'];

const initialIsa = backend.isa;
afterAll(() => backend.setIsa(initialIsa));

const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-lion-'));
afterAll(() => fs.rmSync(tempDir, { recursive: true, force: true }));
let fileCount = 0;
const tempFile = () => path.join(tempDir, `lion-${fileCount++}.safetensors`);

function thrown(run: () => unknown): { name: string; message: string } {
  try {
    run();
  } catch (error) {
    return { name: (error as Error).name, message: (error as Error).message };
  }
  return { name: 'nothing thrown', message: '' };
}

function bytes(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(bytes(a), bytes(b)) === 0;
}

function momentBytes(m: Float32Array | Uint16Array | Blockwise8Tensor | LionRefMoment): Buffer {
  if (m instanceof Float32Array || m instanceof Uint16Array) return Buffer.from(bytes(m));
  return Buffer.concat([bytes(m.codes), bytes(m.absmax)]);
}

// ---------------------------------------------------------------------------------------------
// Inputs

function makeParamData(n: number, random: () => number): Float32Array {
  const normal = gaussian(random);
  return Float32Array.from({ length: n }, () => (random() < 0.05 ? 0 : normal() * 0.5));
}

/** A gradient in dtype `dtype` with exact zeros (sign(0) = 0 at step 1) and, with `dirty`, the
 * occasional Inf or NaN. */
function makeGrad(
  n: number,
  dtype: GradDtype,
  random: () => number,
  dirty: boolean,
): Float32Array | Uint16Array {
  const normal = gaussian(random);
  const values = Float32Array.from({ length: n }, () => {
    const u = random();
    if (u < 0.1) return 0;
    if (dirty && u < 0.12) return [Infinity, -Infinity, NaN][Math.floor(random() * 3)]!;
    return normal() * 10 ** (3 * random() - 2);
  });
  if (dtype === 'float32') return values;
  if (dtype === 'bfloat16') return Uint16Array.from(values, bf16Rne);
  // fp16 bits of moderate values (and the specials above as fp16's own).
  return Uint16Array.from(values, (x) => {
    if (Number.isNaN(x)) return 0x7e00;
    if (x === Infinity) return 0x7c00;
    if (x === -Infinity) return 0xfc00;
    if (x === 0) return 0;
    return (x < 0 ? 0x8000 : 0) | ((1 + Math.floor(random() * 20)) << 10) | (random() * 1024);
  });
}

function gradOptions(dtype: GradDtype): { gradDtype?: 'bfloat16' | 'float16' } {
  return dtype === 'float32' ? {} : { gradDtype: dtype };
}

// ---------------------------------------------------------------------------------------------
// Defaults and validation

describe('defaults and validation', () => {
  test("the reference's defaults, kind 'lion', one state tensor expAvg", () => {
    const p: Param = { data: new Float32Array(3), grad: new Float32Array(3) };
    const optimizer = new Lion([p]);
    const g = optimizer.paramGroups[0]!;
    const { lr, betas, weightDecay, maximize, stateDtype } = g;
    expect({ params: g.params.length, lr, betas, weightDecay, maximize, stateDtype }).toEqual({
      params: 1,
      lr: 1e-4,
      betas: [0.9, 0.99],
      weightDecay: 0,
      maximize: false,
      stateDtype: 'float32',
    });
    expect(Lion.spec).toBe(LION_SPEC);
    expect(LION_SPEC.kind).toBe('lion');
    expect(LION_SPEC.state.map((s) => [s.name, s.fileName, s.map])).toEqual([
      ['expAvg', 'exp_avg', 'signed'],
    ]);
    expect(optimizer.stateDict().optimizer).toBe('lion');
    const s = optimizer.state(p);
    expect(Object.keys(s).sort()).toEqual(['dtype', 'expAvg', 'step']);
  });

  const P = () => [{ data: new Float32Array(2), grad: new Float32Array(2) }];
  test.each<[string, () => unknown, string, string]>([
    [
      'a negative lr',
      () => new Lion(P(), { lr: -1 }),
      'RangeError',
      'Expected a finite number >= 0 for defaults.lr but received -1 of type number',
    ],
    [
      'an lr that is not a number',
      () => new Lion(P(), { lr: '1e-4' as unknown as number }),
      'TypeError',
      "Expected a number for defaults.lr but received '1e-4' of type string",
    ],
    [
      'beta1 = 1',
      () => new Lion(P(), { betas: [1, 0.99] }),
      'RangeError',
      'Expected a number in [0, 1) for defaults.betas[0] but received 1 of type number',
    ],
    [
      'a negative beta2',
      () => new Lion(P(), { betas: [0.9, -0.5] }),
      'RangeError',
      'Expected a number in [0, 1) for defaults.betas[1] but received -0.5 of type number',
    ],
    [
      'betas of three numbers',
      () => new Lion(P(), { betas: [0.9, 0.99, 0.999] as unknown as [number, number] }),
      'TypeError',
      'Expected an array of two numbers for defaults.betas but received an Array of 3 elements',
    ],
    [
      'a NaN weightDecay',
      () => new Lion(P(), { weightDecay: NaN }),
      'RangeError',
      'Expected a finite number >= 0 for defaults.weightDecay but received NaN of type number',
    ],
    [
      'a maximize that is not a boolean',
      () => new Lion(P(), { maximize: 1 as unknown as boolean }),
      'TypeError',
      'Expected a boolean for defaults.maximize but received 1 of type number',
    ],
    [
      'an unknown stateDtype',
      () => new Lion(P(), { stateDtype: 'int8' as StateDtype }),
      'RangeError',
      "Expected 'float32', 'bfloat16' or 'blockwise8' for defaults.stateDtype but received 'int8' of type string",
    ],
    [
      "Adam's eps, which Lion does not have",
      () => new Lion(P(), { eps: 1e-8 } as LionOptions),
      'TypeError',
      'Expected one of lr, betas, weightDecay, maximize, stateDtype, threads, schedule, stochasticRounding, seed, min8bitSize for the key defaults.eps but received an unknown key',
    ],
    [
      'a bad lr in a group',
      () => new Lion([{ params: P(), lr: Infinity }]),
      'RangeError',
      'Expected a finite number >= 0 for paramGroups[0].lr but received Infinity of type number',
    ],
    [
      'stochasticRounding without a bfloat16 group',
      () => new Lion(P(), { stochasticRounding: true }),
      'RangeError',
      "Expected false (it rounds bfloat16 state, and no param group has stateDtype 'bfloat16') for defaults.stochasticRounding but received true of type boolean",
    ],
  ])('%s', (_what, run, name, message) => {
    const error = thrown(run);
    expect(error).toEqual({ name, message });
  });

  test('an assignment to a group is validated and changes nothing when it throws', () => {
    const optimizer = new Lion(P(), { lr: 3e-4, betas: [0.95, 0.98] });
    const g = optimizer.paramGroups[0]!;
    expect(thrown(() => (g.lr = -3))).toEqual({
      name: 'RangeError',
      message: 'Expected a finite number >= 0 for paramGroups[0].lr but received -3 of type number',
    });
    expect(thrown(() => (g.betas = [0.9, 1]))).toEqual({
      name: 'RangeError',
      message:
        'Expected a number in [0, 1) for paramGroups[0].betas[1] but received 1 of type number',
    });
    expect(thrown(() => ((g as { stateDtype: StateDtype }).stateDtype = 'bfloat16')).name).toBe(
      'TypeError',
    );
    expect([g.lr, g.betas, g.stateDtype]).toEqual([3e-4, [0.95, 0.98], 'float32']);
    g.weightDecay = 0.5;
    expect(g.weightDecay).toBe(0.5);
  });
});

// ---------------------------------------------------------------------------------------------
// The update's semantics

describe('the update', () => {
  test('sign(0) = 0: an element whose interpolation is exactly 0 only decays', () => {
    // Step 1 from m = 0: c = (1 - beta1) * g, so g = 0 gives c = 0 and the element moves by the
    // decay alone; the others by exactly lr (after the decay's rounding).
    const data = Float32Array.from([0.5, -0.25, 0.125, 1, 0]);
    const grad = Float32Array.from([0, 3, -0, -2e-30, 0]);
    const p: Param = { data: data.slice(), grad };
    const lr = 1e-2;
    const weightDecay = 0.5;
    new Lion([p], { lr, weightDecay }).step();
    const decay = fround(1 - lr * weightDecay);
    const expected = Array.from(data, (x, i) =>
      fround(fround(x * decay) + fround(-lr) * torchSign(fround(0.1 * grad[i]!))),
    );
    expect(Array.from(p.data)).toEqual(expected);
    expect(p.data[0]).toBe(fround(0.5 * decay)); // g = 0: decay only
    expect(p.data[3]).toBe(fround(fround(1 * decay) + fround(lr))); // a tiny g still moves by lr
    // An element at +0 with g = 0 stays +0 (not -0: +0 + -lr * +0).
    expect(bitsOfFloat(p.data[4]!)).toBe(0);
  });

  test('beta1 = 0: the sign of the gradient itself; the moment is updated after, with beta2', () => {
    const p: Param = { data: new Float32Array(4), grad: Float32Array.from([1, -1, 0, 2]) };
    const optimizer = new Lion([p], { lr: 0.25, betas: [0, 0.5] });
    optimizer.step();
    expect(Array.from(p.data)).toEqual([-0.25, 0.25, 0, -0.25]);
    const s = optimizer.state(p);
    expect(Array.from(s.expAvg)).toEqual([0.5, -0.5, 0, 1]);
    // Step 2 with g = 0: c = 0 * m + 1 * 0 = 0 everywhere, nothing moves; m halves.
    p.grad.fill(0);
    optimizer.step();
    expect(Array.from(p.data)).toEqual([-0.25, 0.25, 0, -0.25]);
    expect(Array.from(s.expAvg)).toEqual([0.25, -0.25, 0, 0.5]);
    expect(optimizer.state(p).step).toBe(2);
  });

  test('maximize steps along +g and keeps the average of -g, as the reference run on -g', () => {
    const grad = Float32Array.from([0.5, -2, 0, 1e-3]);
    const up: Param = { data: new Float32Array(4), grad };
    const down: Param = { data: new Float32Array(4), grad: grad.map((x) => -x) };
    const maximizing = new Lion([up], { lr: 1e-3, maximize: true, weightDecay: 0.1 });
    const negated = new Lion([down], { lr: 1e-3, weightDecay: 0.1 });
    for (let t = 0; t < 3; t++) {
      maximizing.step();
      negated.step();
    }
    expect(sameBytes(up.data, down.data)).toBe(true);
    expect(sameBytes(maximizing.state(up).expAvg, negated.state(down).expAvg)).toBe(true);
    expect(up.data[0]).toBeGreaterThan(0);
    expect(maximizing.state(up).expAvg[0]).toBeLessThan(0);
  });

  test('weightDecay is decoupled: p *= 1 - lr * weightDecay, and decay: false params skip it', () => {
    const a: Param = { data: Float32Array.from([2]), grad: Float32Array.from([0]) };
    const b: AnyParam = {
      data: Float32Array.from([2]),
      grad: Float32Array.from([0]),
      decay: false,
    };
    new Lion([a, b], { lr: 0.1, weightDecay: 0.5 }).step();
    expect(a.data[0]).toBe(fround(2 * fround(1 - 0.1 * 0.5)));
    expect(b.data[0]).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------
// state(), stateFloat32(), memory()

describe('state(), stateFloat32() and memory()', () => {
  const n = 1000;
  test.each(STATE_DTYPES)('%s: the arrays and their bytes, exactly', (dtype) => {
    const p: Param = { data: new Float32Array(n).fill(1), grad: new Float32Array(n).fill(0.5) };
    const small: Param = { data: new Float32Array(10), grad: new Float32Array(10).fill(-1) };
    const optimizer = new Lion<StateDtype>([p, small], {
      stateDtype: dtype,
      ...(dtype === 'blockwise8' ? { min8bitSize: 100 } : {}),
    });
    optimizer.step();
    const s: LionParamState = optimizer.state(p);
    expect(s.dtype).toBe(dtype);
    expect(s.step).toBe(1);
    const blocks = Math.ceil(n / 256);
    const stateBytes = { float32: 4 * n, bfloat16: 2 * n, blockwise8: n + 4 * blocks }[dtype];
    if (s.dtype === 'float32') {
      expect(s.expAvg).toBeInstanceOf(Float32Array);
      expect(s.expAvg[0]).toBe(fround(fround(0.01) * 0.5));
    } else if (s.dtype === 'bfloat16') {
      expect(s.expAvg).toBeInstanceOf(Uint16Array);
      expect(s.expAvg[0]).toBe(bf16Rne(fround(fround(0.01) * 0.5)));
    } else {
      expect(s.expAvg.codes).toHaveLength(n);
      expect(s.expAvg.absmax).toHaveLength(blocks);
      expect(s.expAvg.absmax[0]).toBe(fround(fround(0.01) * 0.5));
    }
    // The small param stays float32 under min8bitSize; float32 everywhere else as asked.
    expect(optimizer.state(small).dtype).toBe(dtype === 'blockwise8' ? 'float32' : dtype);
    const f = optimizer.stateFloat32(p);
    expect(f.expAvg).toBeInstanceOf(Float32Array);
    // Every element had g = 0.5: expAvg = 0.005, rounded to bf16 in bfloat16 state (blockwise8:
    // exactly, as map[code of 1] = 1).
    const m = fround(fround(0.01) * 0.5);
    const kept = dtype === 'bfloat16' ? floatOfBits(bf16Rne(m) << 16) : m;
    expect(f.expAvg.every((x) => x === kept)).toBe(true);
    const smallBytes = dtype === 'bfloat16' ? 20 : 40;
    const report = optimizer.memory();
    expect(report).toEqual({
      paramCount: n + 10,
      params: 4 * (n + 10),
      grads: 4 * (n + 10),
      state: stateBytes + smallBytes,
      total: 8 * (n + 10) + stateBytes + smallBytes,
      groups: [
        {
          paramCount: n + 10,
          params: 4 * (n + 10),
          grads: 4 * (n + 10),
          state: stateBytes + smallBytes,
          total: 8 * (n + 10) + stateBytes + smallBytes,
        },
      ],
    });
  });

  test('stateFloat32 returns copies: later steps do not change them', () => {
    const p: Param = { data: new Float32Array(5), grad: new Float32Array(5).fill(1) };
    const optimizer = new Lion<'bfloat16'>([p], { stateDtype: 'bfloat16' });
    optimizer.step();
    const copy = optimizer.stateFloat32(p).expAvg.slice();
    const view = optimizer.stateFloat32(p).expAvg;
    optimizer.step();
    expect(Array.from(view)).toEqual(Array.from(copy));
    expect(optimizer.stateFloat32(p).expAvg[0]).not.toBe(copy[0]);
  });
});

// ---------------------------------------------------------------------------------------------
// Bit for bit against the reference, every kernel, 1/2/3 threads

interface Case {
  stateDtype: StateDtype;
  gradDtype: GradDtype;
  dataBf16: boolean;
  hyper: LionRefHyper;
  stochasticRounding: boolean;
  lengths: readonly number[];
  steps: number;
  dirty: boolean;
  valueSeed: number;
}

const SEED = 0x5eed;

interface Outcome {
  params: Float32Array[];
  dataBf16: (Uint16Array | null)[];
  expAvg: Buffer[];
  dtypes: StateDtype[];
}

function inputsOf(c: Case) {
  const random = mulberry32(c.valueSeed);
  const params = c.lengths.map((n) => makeParamData(n, random));
  const grads = Array.from({ length: c.steps }, () =>
    c.lengths.map((n) => makeGrad(n, c.gradDtype, random, c.dirty)),
  );
  return { params, grads };
}

function referenceOutcome(c: Case, inputs: ReturnType<typeof inputsOf>): Outcome {
  const tensors: LionRefTensor[] = inputs.params.map((p) =>
    newLionRefTensor(p, c.stateDtype, MAPS),
  );
  const dataBf16 = c.lengths.map((n) => (c.dataBf16 ? new Uint16Array(n) : null));
  for (let s = 0; s < c.steps; s++) {
    tensors.forEach((t, k) => {
      const key =
        c.stochasticRounding && c.stateDtype === 'bfloat16'
          ? srKey(SEED, k, t.step + 1)
          : undefined;
      lionReferenceStep(
        t,
        {
          grad: inputs.grads[s]![k]!,
          gradDtype: c.gradDtype,
          hyper: c.hyper,
          ...(key === undefined ? {} : { srKey: key }),
          ...(dataBf16[k] ? { dataBf16: dataBf16[k] } : {}),
        },
        MAPS,
      );
    });
  }
  return {
    params: tensors.map((t) => t.param),
    dataBf16,
    expAvg: tensors.map((t) => momentBytes(t.expAvg)),
    dtypes: tensors.map((t) => t.stateDtype),
  };
}

function optionsOf(c: Case, threads: number): LionOptions<StateDtype> {
  return {
    lr: c.hyper.lr,
    betas: [c.hyper.beta1, c.hyper.beta2],
    weightDecay: c.hyper.weightDecay,
    maximize: c.hyper.maximize,
    stateDtype: c.stateDtype,
    threads,
    min8bitSize: 0,
    ...(c.stochasticRounding ? { stochasticRounding: true, seed: SEED } : {}),
  };
}

function libOutcome(
  c: Case,
  inputs: ReturnType<typeof inputsOf>,
  isa: IsaName,
  threads: number,
): Outcome {
  backend.setIsa(isa);
  const params: AnyParam[] = inputs.params.map((p, k) => ({
    data: p.slice(),
    grad: inputs.grads[0]![k]!,
    ...gradOptions(c.gradDtype),
    ...(c.dataBf16 ? { dataBf16: new Uint16Array(p.length).fill(0xdead) } : {}),
  }));
  const optimizer = new Lion<StateDtype>(params, optionsOf(c, threads));
  for (let s = 0; s < c.steps; s++) {
    params.forEach((p, k) => (p.grad = inputs.grads[s]![k]!));
    optimizer.step();
  }
  return {
    params: params.map((p) => p.data),
    dataBf16: params.map((p) => p.dataBf16 ?? null),
    expAvg: params.map((p) => momentBytes(optimizer.state(p).expAvg)),
    dtypes: params.map((p) => optimizer.state(p).dtype),
  };
}

function outcomeDifference(actual: Outcome, expected: Outcome): string | null {
  for (let k = 0; k < expected.params.length; k++) {
    const where = `tensor ${k} (length ${expected.params[k]!.length})`;
    if (actual.dtypes[k] !== expected.dtypes[k]) return `${where}: dtype ${actual.dtypes[k]}`;
    const a = new Uint32Array(actual.params[k]!.slice().buffer);
    const e = new Uint32Array(expected.params[k]!.slice().buffer);
    const i = a.findIndex((x, j) => x !== e[j]);
    if (i >= 0) return `${where} param[${i}]: ${hex(a[i]!)} instead of ${hex(e[i]!)}`;
    if (expected.dataBf16[k] && !sameBytes(actual.dataBf16[k]!, expected.dataBf16[k]!)) {
      return `${where} dataBf16 differs`;
    }
    if (!actual.expAvg[k]!.equals(expected.expAvg[k]!)) return `${where} expAvg differs`;
  }
  return null;
}

function mismatches(c: Case): string[] {
  const inputs = inputsOf(c);
  const expected = referenceOutcome(c, inputs);
  const out: string[] = [];
  for (const isa of backend.available) {
    for (const threads of [1, 2, 3]) {
      const found = outcomeDifference(libOutcome(c, inputs, isa, threads), expected);
      if (found !== null) out.push(`${isa}, threads ${threads}: ${found}`);
    }
  }
  return out;
}

// Every tail of every vector width (1..33), both sides of 64, the block edges, one long tensor
// (several threads' parts fall inside it and, for blockwise8, inside its blocks).
const LENGTHS = [...Array.from({ length: 33 }, (_, i) => i + 1), 63, 65, 255, 256, 257, 4099];
const HYPER: LionRefHyper = {
  lr: 3e-3,
  beta1: 0.9,
  beta2: 0.99,
  weightDecay: 0.1,
  maximize: false,
};

describe('every state dtype x grad dtype x bf16 copy, bit for bit, every kernel and thread count', () => {
  const cases: (Case & { name: string })[] = [];
  for (const stateDtype of STATE_DTYPES) {
    for (const gradDtype of GRAD_DTYPES) {
      for (const dataBf16 of [false, true]) {
        const variant = cases.length;
        const stochasticRounding = stateDtype === 'bfloat16' && variant % 2 === 1;
        const maximize = variant % 3 === 1;
        cases.push({
          name: `${stateDtype} state, ${gradDtype} grads${dataBf16 ? ', dataBf16' : ''}${
            stochasticRounding ? ', stochastic rounding' : ''
          }${maximize ? ', maximize' : ''}`,
          stateDtype,
          gradDtype,
          dataBf16,
          hyper: {
            ...HYPER,
            maximize,
            ...(variant % 4 === 3 ? { beta1: 0.95, beta2: 0.98, weightDecay: 1 } : {}),
          },
          stochasticRounding,
          lengths: LENGTHS,
          steps: 3,
          dirty: variant % 5 === 2,
          valueSeed: 1000 + variant,
        });
      }
    }
  }
  test.each(cases)('$name', (c) => {
    expect(mismatches(c)).toEqual([]);
  });

  test('non-finite gradients: NaN/Inf propagate (float32, bfloat16), blockwise8 skips the element', () => {
    const p: Param = {
      data: Float32Array.from([1, 1, 1, 1]),
      grad: Float32Array.from([NaN, Infinity, -Infinity, 1]),
    };
    const q: Param = { data: p.data.slice(), grad: p.grad.slice() };
    const plain = new Lion([p], { weightDecay: 0.5, lr: 0.1 });
    const quantized = new Lion<'blockwise8'>([q], {
      stateDtype: 'blockwise8',
      min8bitSize: 0,
      weightDecay: 0.5,
      lr: 0.1,
    });
    plain.step();
    quantized.step();
    const decayed = fround(1 * fround(1 - 0.05));
    expect(Array.from(p.data).map((x) => hex(bitsOfFloat(x)))).toEqual(
      [NaN, fround(decayed - 0.1), fround(decayed + 0.1), fround(decayed - 0.1)].map((x) =>
        hex(Number.isNaN(x) ? 0x7fc00000 : bitsOfFloat(x)),
      ),
    );
    expect(Array.from(q.data)).toEqual([1, 1, 1, fround(decayed - fround(0.1))]);
    expect(Array.from(quantized.stateFloat32(q).expAvg)).toEqual([0, 0, 0, fround(0.01)]);
  });
});

// ---------------------------------------------------------------------------------------------
// Fused step options, stepAsync

function makeParams(count: number, scale = 1, seed = 7): Param[] {
  const random = mulberry32(seed);
  const normal = gaussian(random);
  return Array.from({ length: count }, (_, k) => {
    const n = 40 + 67 * k;
    return {
      data: Float32Array.from({ length: n }, () => normal() * 0.1),
      // Powers-of-two scale: unscaling is exact.
      grad: Float32Array.from({ length: n }, () => normal() * scale),
    };
  });
}

function copyParams(params: Param[]): Param[] {
  return params.map((p) => ({ data: p.data.slice(), grad: p.grad.slice() }));
}

function everything(optimizer: Lion<StateDtype>, params: readonly AnyParam[]): Buffer {
  return Buffer.concat(
    params.flatMap((p) => [
      Buffer.from(bytes(p.data)),
      momentBytes(optimizer.state(p).expAvg),
      Buffer.from(Float64Array.from([optimizer.state(p).step]).buffer),
    ]),
  );
}

describe('the fused step and stepAsync', () => {
  test.each(STATE_DTYPES)(
    '%s: clip + unscale equal scaling the gradients first; skip changes nothing',
    (dtype) => {
      const scale = 1024;
      const fusedParams = makeParams(3, scale);
      const referenceParams = copyParams(fusedParams);
      const options = { stateDtype: dtype, min8bitSize: 0, lr: 1e-3 } as const;
      const fused = new Lion<StateDtype>(fusedParams, options);
      const reference = new Lion<StateDtype>(referenceParams, options);
      const norm = gradNorm(fusedParams) / scale;
      for (const maxNorm of [norm / 3, norm * 2]) {
        const report = fused.step({ clipGradNorm: maxNorm, gradScale: scale });
        expect([report.gradNorm, report.clipped, report.skipped]).toEqual([
          norm,
          maxNorm < norm,
          false,
        ]);
        // torch's order: unscale in float32, then clip by float(clipCoef).
        for (const p of referenceParams)
          for (let i = 0; i < p.grad.length; i++) p.grad[i]! /= scale;
        const clipCoef = maxNorm / (gradNorm(referenceParams) + 1e-6);
        if (clipCoef < 1) {
          for (const p of referenceParams) {
            for (let i = 0; i < p.grad.length; i++) p.grad[i]! *= fround(clipCoef);
          }
        }
        reference.step();
        expect(everything(fused, fusedParams).equals(everything(reference, referenceParams))).toBe(
          true,
        );
        for (const [k, p] of referenceParams.entries()) p.grad.set(fusedParams[k]!.grad);
      }
      const before = everything(fused, fusedParams);
      fusedParams[2]!.grad[5] = NaN;
      const skipped = fused.step({ skipNonFinite: true });
      expect(skipped.skipped).toBe(true);
      expect(everything(fused, fusedParams).equals(before)).toBe(true);
    },
  );

  test.each(STATE_DTYPES)('%s: stepAsync gives the bits of step', async (dtype) => {
    const a = makeParams(3);
    const b = copyParams(a);
    const options = {
      stateDtype: dtype,
      min8bitSize: 0,
      ...(dtype === 'bfloat16' ? { stochasticRounding: true, seed: 99 } : {}),
    } as const;
    const sync = new Lion<StateDtype>(a, options);
    const async = new Lion<StateDtype>(b, options);
    for (let t = 0; t < 3; t++) {
      sync.step({ clipGradNorm: 0.5 });
      await async.stepAsync({ clipGradNorm: 0.5 });
    }
    expect(everything(async, b).equals(everything(sync, a))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Checkpoints, state dicts, schedules

function trainParams(): AnyParam[] {
  const random = mulberry32(31);
  return [5, 300, 4100].map((n) => ({
    data: makeParamData(n, random),
    grad: makeGrad(n, 'float32', random, false),
  }));
}

function regrad(params: readonly AnyParam[], step: number): void {
  const random = mulberry32(500 + step);
  for (const p of params)
    (p.grad as Float32Array).set(makeGrad(p.data.length, 'float32', random, false));
}

function cloneParams(params: readonly AnyParam[]): AnyParam[] {
  return params.map((p) => ({ data: p.data.slice(), grad: (p.grad as Float32Array).slice() }));
}

describe('checkpoints and state dicts resume bit for bit', () => {
  test.each(STATE_DTYPES)('%s: save/load, loadFrom and loadStateDict', (dtype) => {
    const groups = (params: AnyParam[]): LionParamGroup<StateDtype>[] => [
      { params: params.slice(0, 2), lr: 2e-3, weightDecay: 0.1 },
      { params: params.slice(2), betas: [0.95, 0.98] },
    ];
    const options: LionOptions<StateDtype> = {
      stateDtype: dtype,
      min8bitSize: 256,
      ...(dtype === 'bfloat16' ? { stochasticRounding: true, seed: 7 } : {}),
      schedule: cosineWithWarmup({ warmupSteps: 2, totalSteps: 10 }),
    };
    const params = trainParams();
    const optimizer = new Lion<StateDtype>(groups(params), options);
    for (let t = 0; t < 3; t++) {
      regrad(params, t);
      optimizer.step();
    }
    const file = tempFile();
    optimizer.save(file);
    const dict = optimizer.stateDict();
    const resumedParams = {
      load: cloneParams(params),
      loadFrom: cloneParams(params),
      loadStateDict: cloneParams(params),
    };
    const resumed = {
      load: Lion.load(file, resumedParams.load) as Lion<StateDtype>,
      loadFrom: new Lion<StateDtype>(groups(resumedParams.loadFrom), options),
      loadStateDict: new Lion<StateDtype>(groups(resumedParams.loadStateDict), options),
    };
    resumed.loadFrom.loadFrom(file);
    resumed.loadStateDict.loadStateDict(dict);
    expect(
      resumed.load.paramGroups.map((g) => [g.lr, g.betas, g.weightDecay, g.stateDtype]),
    ).toEqual(optimizer.paramGroups.map((g) => [g.lr, g.betas, g.weightDecay, g.stateDtype]));
    for (let t = 3; t < 6; t++) {
      regrad(params, t);
      optimizer.step();
      for (const key of ['load', 'loadFrom', 'loadStateDict'] as const) {
        regrad(resumedParams[key], t);
        resumed[key].step();
      }
    }
    const expected = everything(optimizer, params);
    for (const key of ['load', 'loadFrom', 'loadStateDict'] as const) {
      expect({ key, same: everything(resumed[key], resumedParams[key]).equals(expected) }).toEqual({
        key,
        same: true,
      });
    }
    // The small tensor kept float32 state under min8bitSize.
    expect(optimizer.state(params[0]!).dtype).toBe(dtype === 'blockwise8' ? 'float32' : dtype);
    const entry = dict.state[1]!;
    expect(entry.dtype).toBe(dtype);
    expect(Object.keys(entry).sort()).toEqual(['dtype', 'expAvg', 'step']);
    expect(dict.paramGroups[1]).toEqual({
      params: [2],
      lr: 1e-4 * lrFactor(options.schedule!, 3), // the scheduled lr of the coming step
      betas: [0.95, 0.98],
      weightDecay: 0,
      maximize: false,
      stateDtype: dtype,
    });
  });

  test("a state dict of another kind ('adamw') is refused and changes nothing", () => {
    const params = trainParams();
    const optimizer = new Lion(params);
    optimizer.step();
    const dict = optimizer.stateDict();
    const before = everything(optimizer as Lion<StateDtype>, params);
    const error = thrown(() => optimizer.loadStateDict({ ...dict, optimizer: 'adamw' as 'lion' }));
    expect(error.name).toBe('RangeError');
    expect(error.message).toMatch(/stateDict\.optimizer/);
    expect(everything(optimizer as Lion<StateDtype>, params).equals(before)).toBe(true);
  });

  test('a schedule drives lr: each element moves by exactly the scheduled lr', () => {
    const schedule = cosineWithWarmup({ warmupSteps: 3, totalSteps: 8, minLrRatio: 0.1 });
    const base = 0.5;
    const p: Param = { data: new Float32Array(4), grad: Float32Array.from([1, -1, 2, -2]) };
    const optimizer = new Lion([p], { lr: base, schedule, betas: [0, 0] });
    let previous = p.data.slice();
    for (let t = 0; t < 8; t++) {
      const lr = base * lrFactor(schedule, t);
      const report = optimizer.step();
      expect(report.lr).toBe(lr);
      // beta1 = 0: c = g, so p moves by -lr * sign(g) exactly (float32 sums of one lr each).
      expect(Array.from(p.data)).toEqual(
        Array.from(previous, (x, i) => fround(x + fround(-lr) * Math.sign(p.grad[i]!))),
      );
      previous = p.data.slice();
    }
  });
});
