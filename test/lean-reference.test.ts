// Lean optimizer state (issue 12) against an independent reference written in the test suite
// (test/helpers/lean-reference.ts: the contract's definitions element by element, float32 rounding
// emulated with Math.fround, the bitsandbytes maps rebuilt from create_dynamic_map): one-step and
// multi-step results of AdamW and Adam for every state dtype x gradient dtype x bf16 param copy,
// bit for bit, on every kernel this CPU can run and on 1, 2 and 3 threads, in one optimizer over
// tensors of every length 1..70 and 255-257, 4095-4097 (the other flag variants: lengths 1..17
// and around 32, 64, the block and 4096). Then the properties the issue names: RNE
// ties, subnormals, zeros, non-finite gradients, the blockwise8 round-trip bound, the float32
// fallback of small tensors, and what stochastic rounding is for.
import { backend, gradNorm, type IsaName } from '../lib';
import { createDynamicMap } from './helpers/bnb-maps';
import {
  createLeanOptimizer,
  type LeanMomentCopy,
  type LeanOptimizer,
  type LeanParam,
  leanState,
  leanStateFloat32,
} from './helpers/lean-api';
import {
  BF16_CANONICAL_NAN,
  BLOCK,
  bf16Rne,
  bf16Stochastic,
  bf16Widen,
  bitsOfFloat,
  floatOfBits,
  type GradDtype,
  type Maps,
  nearestCode,
  newRefTensor,
  type RefHyper,
  type RefMoment,
  referenceStep,
  type RefTensor,
  srBits,
  srKey,
  type StateDtype,
} from './helpers/lean-reference';
import { gaussian, hex, mulberry32 } from './helpers/random';

const { floor, fround } = Math;

const MAPS: Maps = { signed: createDynamicMap(true), unsigned: createDynamicMap(false) };
const STATE_DTYPES: readonly StateDtype[] = ['float32', 'bfloat16', 'blockwise8'];
const GRAD_DTYPES: readonly GradDtype[] = ['float32', 'bfloat16', 'float16'];
const THREADS = [1, 2, 3];
const TAIL_LENGTHS = [
  ...Array.from({ length: 70 }, (_, i) => i + 1),
  255,
  256,
  257,
  4095,
  4096,
  4097,
];

/** The flag variants after the first run on fewer tensors: every vector-width tail (1..17), both
 * sides of 32 and 64, the block edges and a long tensor; the first variant runs all of
 * TAIL_LENGTHS for every dtype combination. */
const SHORT_LENGTHS = [
  ...Array.from({ length: 17 }, (_, i) => i + 1),
  31,
  33,
  63,
  65,
  255,
  257,
  4097,
];

const initialIsa = backend.isa;
afterAll(() => backend.setIsa(initialIsa));

// ---------------------------------------------------------------------------------------------
// Inputs, generated in the bits of each dtype so that every dtype gets its own specials.

const F32_SPECIALS = [
  0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x00800000, 0x7f7fffff, 0x3f808000, 0x3f818000,
];
const F32_NONFINITE = [0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001];
const BF16_SPECIALS = [0x0000, 0x8000, 0x0001, 0x807f, 0x0080, 0x7f7f, 0xff7f];
const BF16_NONFINITE = [0x7f80, 0xff80, 0x7fc0, 0xffc1];
const FP16_SPECIALS = [0x0000, 0x8000, 0x0001, 0x83ff, 0x0400, 0x7bff, 0xfbff];
const FP16_NONFINITE = [0x7c00, 0xfc00, 0x7e00, 0xfe01];

interface ValueMix {
  /** Fraction of gradient elements replaced by a finite special value. */
  specialRate: number;
  /** Fraction replaced by +-Inf or NaN. */
  nonFiniteRate: number;
}

function pick<T>(random: () => number, list: readonly T[]): T {
  return list[floor(random() * list.length)]!;
}

function makeGrad(
  n: number,
  dtype: GradDtype,
  random: () => number,
  mix: ValueMix,
): Float32Array | Uint16Array {
  const normal = gaussian(random);
  const roll = (): 'special' | 'nonfinite' | 'normal' => {
    const u = random();
    return u < mix.nonFiniteRate
      ? 'nonfinite'
      : u < mix.nonFiniteRate + mix.specialRate
        ? 'special'
        : 'normal';
  };
  if (dtype === 'float32') {
    const grad = new Float32Array(n);
    const bits = new Uint32Array(grad.buffer);
    for (let i = 0; i < n; i++) {
      const kind = roll();
      if (kind === 'normal') grad[i] = normal() * 10 ** (4 * random() - 3);
      else bits[i] = pick(random, kind === 'special' ? F32_SPECIALS : F32_NONFINITE);
    }
    return grad;
  }
  const grad = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const kind = roll();
    if (kind !== 'normal') {
      const specials =
        dtype === 'bfloat16'
          ? kind === 'special'
            ? BF16_SPECIALS
            : BF16_NONFINITE
          : kind === 'special'
            ? FP16_SPECIALS
            : FP16_NONFINITE;
      grad[i] = pick(random, specials);
    } else if (dtype === 'bfloat16') {
      grad[i] = bf16Rne(normal() * 10 ** (4 * random() - 3));
    } else {
      // fp16 bits: exponents 2^-14..2^5 (sub-normal ones come from the specials), any fraction.
      const exponent = 1 + floor(random() * 20);
      grad[i] = (random() < 0.5 ? 0x8000 : 0) | (exponent << 10) | floor(random() * 1024);
    }
  }
  return grad;
}

function makeParam(n: number, random: () => number): Float32Array {
  const normal = gaussian(random);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = random() < 0.02 ? 0 : normal() * 0.5;
  return data;
}

// ---------------------------------------------------------------------------------------------
// One case: a set of tensors, their gradients for each step, the hyperparameters.

interface Case {
  stateDtype: StateDtype;
  gradDtype: GradDtype;
  dataBf16: boolean;
  hyper: RefHyper;
  stochasticRounding: boolean;
  seed: number;
  lengths: readonly number[];
  steps: number;
  mix: ValueMix;
  valueSeed: number;
}

interface Inputs {
  params: Float32Array[];
  /** grads[step][tensor] */
  grads: (Float32Array | Uint16Array)[][];
}

function inputsOf(c: Case): Inputs {
  const random = mulberry32(c.valueSeed);
  const params = c.lengths.map((n) => makeParam(n, random));
  const grads = Array.from({ length: c.steps }, () =>
    c.lengths.map((n) => makeGrad(n, c.gradDtype, random, c.mix)),
  );
  return { params, grads };
}

interface Outcome {
  params: Float32Array[];
  dataBf16: (Uint16Array | null)[];
  state: { dtype: StateDtype; expAvg: RefMoment; expAvgSq: RefMoment; maxExpAvgSq?: RefMoment }[];
}

function referenceOutcome(c: Case, inputs: Inputs): Outcome {
  const tensors: RefTensor[] = inputs.params.map((p) =>
    newRefTensor(p, c.stateDtype, c.hyper.amsgrad, MAPS),
  );
  const dataBf16 = c.lengths.map((n) => (c.dataBf16 ? new Uint16Array(n) : null));
  for (let s = 0; s < c.steps; s++) {
    tensors.forEach((t, k) => {
      const key =
        c.stochasticRounding && c.stateDtype === 'bfloat16'
          ? srKey(c.seed, k, t.step + 1)
          : undefined;
      referenceStep(
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
    state: tensors.map((t) => ({
      dtype: t.stateDtype,
      expAvg: t.expAvg,
      expAvgSq: t.expAvgSq,
      ...(t.maxExpAvgSq ? { maxExpAvgSq: t.maxExpAvgSq } : {}),
    })),
  };
}

function optimizerFor(c: Case, params: LeanParam[], threads: number): LeanOptimizer {
  return createLeanOptimizer(c.hyper.decoupled, [{ params }], {
    lr: c.hyper.lr,
    betas: [c.hyper.beta1, c.hyper.beta2],
    eps: c.hyper.eps,
    weightDecay: c.hyper.weightDecay,
    amsgrad: c.hyper.amsgrad,
    maximize: c.hyper.maximize,
    stateDtype: c.stateDtype,
    threads,
    min8bitSize: 0,
    ...(c.stochasticRounding ? { stochasticRounding: true, seed: c.seed } : {}),
  });
}

function libOutcome(c: Case, inputs: Inputs, isa: IsaName, threads: number): Outcome {
  backend.setIsa(isa);
  const params: LeanParam[] = inputs.params.map((p, k) => ({
    data: p.slice(),
    grad: inputs.grads[0]![k]!,
    ...(c.gradDtype === 'float32' ? {} : { gradDtype: c.gradDtype }),
    ...(c.dataBf16 ? { dataBf16: new Uint16Array(p.length).fill(0xdead) } : {}),
  }));
  const optimizer = optimizerFor(c, params, threads);
  for (let s = 0; s < c.steps; s++) {
    // A new gradient array each step: the optimizer re-reads param.grad.
    params.forEach((p, k) => (p.grad = inputs.grads[s]![k]!));
    optimizer.step();
  }
  return {
    params: params.map((p) => p.data),
    dataBf16: params.map((p) => p.dataBf16 ?? null),
    state: params.map((p) => leanState(optimizer, p)),
  };
}

function bytes(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Where two arrays of the same kind first differ, or null. */
function arrayDifference(
  what: string,
  actual: ArrayBufferView,
  expected: ArrayBufferView,
): string | null {
  if (actual.constructor !== expected.constructor) {
    return `${what}: a ${actual.constructor.name} instead of a ${expected.constructor.name}`;
  }
  if (actual.byteLength !== expected.byteLength) {
    return `${what}: ${actual.byteLength} bytes instead of ${expected.byteLength}`;
  }
  if (Buffer.compare(bytes(actual), bytes(expected)) === 0) return null;
  const width = actual instanceof Float32Array ? 4 : actual instanceof Uint16Array ? 2 : 1;
  const words = (v: ArrayBufferView) =>
    width === 4
      ? new Uint32Array(v.buffer, v.byteOffset, v.byteLength / 4)
      : width === 2
        ? new Uint16Array(v.buffer, v.byteOffset, v.byteLength / 2)
        : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const a = words(actual);
  const e = words(expected);
  const i = a.findIndex((x, k) => x !== e[k]);
  return `${what}[${i}]: ${hex(a[i]!)} instead of ${hex(e[i]!)}`;
}

function momentDifference(what: string, actual: RefMoment | LeanMomentCopy, expected: RefMoment) {
  if (expected instanceof Float32Array || expected instanceof Uint16Array) {
    return arrayDifference(what, actual as ArrayBufferView, expected);
  }
  const q = actual as { codes?: Uint8Array; absmax?: Float32Array };
  if (!(q.codes instanceof Uint8Array) || !(q.absmax instanceof Float32Array)) {
    return `${what}: not { codes, absmax }`;
  }
  return (
    arrayDifference(`${what}.absmax`, q.absmax, expected.absmax) ??
    arrayDifference(`${what}.codes`, q.codes, expected.codes)
  );
}

function outcomeDifference(c: Case, actual: Outcome, expected: Outcome): string | null {
  for (let k = 0; k < c.lengths.length; k++) {
    const where = `tensor ${k} (length ${c.lengths[k]})`;
    const s = actual.state[k]!;
    const e = expected.state[k]!;
    const found =
      (s.dtype === e.dtype ? null : `${where} state dtype ${s.dtype} instead of ${e.dtype}`) ??
      arrayDifference(`${where} param`, actual.params[k]!, expected.params[k]!) ??
      (expected.dataBf16[k]
        ? arrayDifference(`${where} dataBf16`, actual.dataBf16[k]!, expected.dataBf16[k]!)
        : null) ??
      momentDifference(`${where} expAvg`, s.expAvg, e.expAvg) ??
      momentDifference(`${where} expAvgSq`, s.expAvgSq, e.expAvgSq) ??
      (e.maxExpAvgSq
        ? s.maxExpAvgSq
          ? momentDifference(`${where} maxExpAvgSq`, s.maxExpAvgSq, e.maxExpAvgSq)
          : `${where} maxExpAvgSq missing`
        : null);
    if (found !== null) return found;
  }
  return null;
}

/** Every kernel and thread count against the reference; the list of mismatches (empty = pass). */
function mismatches(c: Case): string[] {
  const inputs = inputsOf(c);
  const expected = referenceOutcome(c, inputs);
  const out: string[] = [];
  for (const isa of backend.available) {
    for (const threads of THREADS) {
      const found = outcomeDifference(c, libOutcome(c, inputs, isa, threads), expected);
      if (found !== null) out.push(`${isa}, threads ${threads}: ${found}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

const BASE: RefHyper = {
  lr: 1e-2,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
  amsgrad: false,
  maximize: false,
  decoupled: true,
};

/** The hyperparameter variants every dtype combination runs: plain AdamW, AdamW with AMSGrad and
 * maximize on dirty gradients, Adam with L2 and AMSGrad, and Adam without decay. */
const VARIANTS: { name: string; hyper: RefHyper; mix: ValueMix; steps: number }[] = [
  { name: 'AdamW', hyper: BASE, mix: { specialRate: 0.01, nonFiniteRate: 0 }, steps: 3 },
  {
    name: 'AdamW amsgrad maximize, non-finite grads',
    hyper: { ...BASE, amsgrad: true, maximize: true, weightDecay: 0.1, lr: 3e-3 },
    mix: { specialRate: 0.05, nonFiniteRate: 0.01 },
    steps: 3,
  },
  {
    name: 'Adam with L2 and amsgrad',
    hyper: { ...BASE, decoupled: false, weightDecay: 0.05, amsgrad: true, beta1: 0.8, beta2: 0.99 },
    mix: { specialRate: 0.02, nonFiniteRate: 0 },
    steps: 2,
  },
  {
    name: 'Adam, one step',
    hyper: { ...BASE, decoupled: false, weightDecay: 0, eps: 1e-6 },
    mix: { specialRate: 0.02, nonFiniteRate: 0.005 },
    steps: 1,
  },
];

test('the scalar kernel and at least one other are compared', () => {
  expect(backend.available).toContain('scalar');
  if (process.arch === 'x64') expect(backend.available.length).toBeGreaterThan(1);
});

describe.each(STATE_DTYPES)('stateDtype %s: bit for bit the reference', (stateDtype) => {
  const combos = GRAD_DTYPES.flatMap((gradDtype) =>
    [false, true].flatMap((dataBf16) =>
      VARIANTS.flatMap((variant, v) =>
        (stateDtype === 'bfloat16' ? [false, true] : [false]).map((stochasticRounding) => ({
          gradDtype,
          dataBf16,
          variant,
          v,
          stochasticRounding,
        })),
      ),
    ),
  );
  test.each(
    combos.map((x) => [
      `${x.gradDtype} grads${x.dataBf16 ? ', dataBf16' : ''}, ${x.variant.name}${x.stochasticRounding ? ', stochastic rounding' : ''}`,
      x,
    ]),
  )('%s', (_name, x) => {
    const c: Case = {
      stateDtype,
      gradDtype: x.gradDtype,
      dataBf16: x.dataBf16,
      hyper: x.variant.hyper,
      stochasticRounding: x.stochasticRounding,
      seed: 0x12345678 + x.v,
      lengths: x.v === 0 ? TAIL_LENGTHS : SHORT_LENGTHS,
      steps: x.variant.steps,
      mix: x.variant.mix,
      valueSeed: 1000 * x.v + GRAD_DTYPES.indexOf(x.gradDtype) * 10 + (x.dataBf16 ? 1 : 0),
    };
    expect(mismatches(c)).toEqual([]);
  });
});

describe('param groups of different state dtypes in one optimizer', () => {
  test('each group gets its dtype, and the stochastic-rounding key counts params over all groups', () => {
    const random = mulberry32(77);
    const lengths = [5, 300, 4097, 257, 33, 1024];
    const dtypes: StateDtype[] = [
      'float32',
      'bfloat16',
      'blockwise8',
      'bfloat16',
      'blockwise8',
      'float32',
    ];
    const params0 = lengths.map((n) => makeParam(n, random));
    const mix = { specialRate: 0.01, nonFiniteRate: 0 };
    const grads = [0, 1].map(() => lengths.map((n) => makeGrad(n, 'bfloat16', random, mix)));
    const seed = 4242;
    const hyper = { ...BASE, amsgrad: true };
    // 33 elements is below min8bitSize (256 here): that blockwise8 param keeps float32 state.
    const expected = params0.map((p, k) =>
      newRefTensor(
        p,
        dtypes[k] === 'blockwise8' && p.length < 256 ? 'float32' : dtypes[k]!,
        true,
        MAPS,
      ),
    );
    for (let s = 0; s < 2; s++) {
      expected.forEach((t, k) => {
        const key = t.stateDtype === 'bfloat16' ? srKey(seed, k, s + 1) : undefined;
        referenceStep(
          t,
          {
            grad: grads[s]![k]!,
            gradDtype: 'bfloat16',
            hyper,
            ...(key === undefined ? {} : { srKey: key }),
          },
          MAPS,
        );
      });
    }
    const failures: string[] = [];
    for (const isa of backend.available) {
      for (const threads of [1, 3]) {
        backend.setIsa(isa);
        const params: LeanParam[] = params0.map((p, k) => ({
          data: p.slice(),
          grad: grads[0]![k]!,
          gradDtype: 'bfloat16',
        }));
        // One group per param, each with its own dtype: the param index of the key runs over
        // all groups (0..5), not within a group.
        const groups = params.map((p, k) => ({ params: [p], stateDtype: dtypes[k]! }));
        const optimizer = createLeanOptimizer(true, groups, {
          lr: hyper.lr,
          betas: [hyper.beta1, hyper.beta2],
          eps: hyper.eps,
          weightDecay: hyper.weightDecay,
          amsgrad: true,
          maximize: false,
          threads,
          stochasticRounding: true,
          seed,
          min8bitSize: 256,
        });
        for (let s = 0; s < 2; s++) {
          params.forEach((p, k) => (p.grad = grads[s]![k]!));
          optimizer.step();
        }
        params.forEach((p, k) => {
          const st = leanState(optimizer, p);
          const e = expected[k]!;
          const found =
            (st.dtype === e.stateDtype ? null : `dtype ${st.dtype} instead of ${e.stateDtype}`) ??
            arrayDifference('param', p.data, e.param) ??
            momentDifference('expAvg', st.expAvg, e.expAvg) ??
            momentDifference('expAvgSq', st.expAvgSq, e.expAvgSq) ??
            momentDifference('maxExpAvgSq', st.maxExpAvgSq ?? new Float32Array(0), e.maxExpAvgSq!);
          if (found !== null) failures.push(`${isa}, threads ${threads}, param ${k}: ${found}`);
        });
      }
    }
    expect(failures).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties, each on every kernel (one thread: the tails and threads are covered above).

/** Runs `steps` steps on every kernel and returns each kernel's params and states (must agree). */
function onEveryKernel<T>(run: () => T, same: (a: T, b: T) => string | null): T {
  let first: T | undefined;
  let firstIsa = '';
  for (const isa of backend.available) {
    backend.setIsa(isa);
    const result = run();
    if (first === undefined) {
      first = result;
      firstIsa = isa;
    } else {
      const found = same(result, first);
      if (found !== null) throw new Error(`${isa} differs from ${firstIsa}: ${found}`);
    }
  }
  return first!;
}

const EXACT_MOMENTS: Partial<RefHyper> = { lr: 0, weightDecay: 0, beta1: 0, beta2: 0 };

function lib(hyper: RefHyper, stateDtype: StateDtype, params: LeanParam[], extra = {}) {
  return createLeanOptimizer(hyper.decoupled, [{ params }], {
    lr: hyper.lr,
    betas: [hyper.beta1, hyper.beta2],
    eps: hyper.eps,
    weightDecay: hyper.weightDecay,
    amsgrad: hyper.amsgrad,
    maximize: hyper.maximize,
    stateDtype,
    threads: 1,
    min8bitSize: 0,
    ...extra,
  });
}

describe('round to nearest even, subnormals and zeros', () => {
  // float32 bits -> the bf16 bits RNE must give, worked out by hand.
  const CASES: [number, number][] = [
    [0x3f808000, 0x3f80], // a tie, lower half even: stays
    [0x3f818000, 0x3f82], // a tie, lower half odd: up to even
    [0xbf808000, 0xbf80], // negative tie: the magnitude rounds the same way
    [0xbf818000, 0xbf82],
    [0x3f808001, 0x3f81], // just above the tie
    [0x3f807fff, 0x3f80], // just below
    [0x00008000, 0x0000], // subnormal tie to even (zero)
    [0x00018000, 0x0002], // subnormal tie up
    [0x00000001, 0x0000], // the smallest subnormal rounds to zero
    [0x807fffff, 0x8080], // the largest negative subnormal rounds up to the smallest normal
    [0x7f7f7fff, 0x7f7f], // the largest float32 below the last tie stays finite
    [0x7f7fffff, 0x7f80], // the largest float32 rounds to +Inf
    [0xff7fffff, 0xff80],
    [0x00000000, 0x0000],
    [0x80000000, 0x8000],
    [0x7f800000, 0x7f80],
    [0xff800000, 0xff80],
  ];

  test('the reference formula gives the hand-worked bits', () => {
    for (const [bits, bf16] of CASES) expect(hex(bf16Rne(floatOfBits(bits)))).toBe(hex(bf16));
    expect(bf16Rne(NaN)).toBe(BF16_CANONICAL_NAN);
  });

  test.each(STATE_DTYPES)(
    'dataBf16 of an unchanged param (lr 0) is its RNE bf16, %s state',
    (dtype) => {
      // 37 elements: a full vector on every ISA and a tail.
      const n = 37;
      const data = new Float32Array(n);
      const bits = new Uint32Array(data.buffer);
      for (let i = 0; i < n; i++) bits[i] = CASES[i % CASES.length]![0];
      const hyper = { ...BASE, ...EXACT_MOMENTS };
      const result = onEveryKernel(
        () => {
          const p: LeanParam = {
            data: data.slice(),
            grad: new Float32Array(n),
            dataBf16: new Uint16Array(n),
          };
          lib(hyper, dtype, [p]).step();
          return p;
        },
        (a, b) =>
          arrayDifference('dataBf16', a.dataBf16!, b.dataBf16!) ??
          arrayDifference('param', a.data, b.data),
      );
      expect(Array.from(new Uint32Array(result.data.buffer), hex)).toEqual(Array.from(bits, hex));
      expect(Array.from(result.dataBf16!, hex)).toEqual(
        Array.from({ length: n }, (_, i) => hex(CASES[i % CASES.length]![1])),
      );
    },
  );

  test('bf16 state stores RNE of the new moment: with beta1 = 0 the new expAvg is the gradient', () => {
    const n = 37;
    const grad = new Float32Array(n);
    const bits = new Uint32Array(grad.buffer);
    for (let i = 0; i < n; i++) bits[i] = CASES[i % CASES.length]![0];
    const hyper = { ...BASE, ...EXACT_MOMENTS };
    const state = onEveryKernel(
      () => {
        const p: LeanParam = { data: new Float32Array(n), grad };
        const optimizer = lib(hyper, 'bfloat16', [p]);
        optimizer.step();
        return leanState(optimizer, p);
      },
      (a, b) => momentDifference('expAvg', a.expAvg, b.expAvg as RefMoment),
    );
    // m = fround(0 * 0) + g: -0 + +0 is +0, so a -0 gradient gives a +0 moment.
    const expected = Array.from({ length: n }, (_, i) => {
      const [from, to] = CASES[i % CASES.length]!;
      return hex(from === 0x80000000 ? 0 : to);
    });
    expect(Array.from(state.expAvg as Uint16Array, hex)).toEqual(expected);
  });

  test.each(GRAD_DTYPES)(
    '%s gradients widen exactly, subnormals included (float32 state, beta1 = 0)',
    (gradDtype) => {
      // Every subnormal and a few normals of the gradient dtype, as bits; m = g exactly, stored RNE.
      const specials =
        gradDtype === 'float32'
          ? [0x00000001, 0x00000003, 0x007fffff, 0x80000005, 0x00800000, 0x3f800000]
          : gradDtype === 'bfloat16'
            ? [0x0001, 0x0003, 0x007f, 0x8005, 0x0080, 0x3f80]
            : [0x0001, 0x0003, 0x03ff, 0x8005, 0x0400, 0x3c00];
      const n = 29;
      const grad = gradDtype === 'float32' ? new Float32Array(n) : new Uint16Array(n);
      const gradBits =
        gradDtype === 'float32' ? new Uint32Array(grad.buffer) : (grad as Uint16Array);
      for (let i = 0; i < n; i++) gradBits[i] = specials[i % specials.length]!;
      const hyper = { ...BASE, ...EXACT_MOMENTS };
      const state = onEveryKernel(
        () => {
          const p: LeanParam = {
            data: new Float32Array(n),
            grad,
            ...(gradDtype === 'float32' ? {} : { gradDtype }),
          };
          const optimizer = lib(hyper, 'float32', [p]);
          optimizer.step();
          return leanState(optimizer, p);
        },
        (a, b) => momentDifference('expAvg', a.expAvg, b.expAvg as RefMoment),
      );
      // float32 state: expAvg is the widened gradient itself.
      const widened = Array.from({ length: n }, (_, i) => {
        const g = gradBits[i]!;
        const value =
          gradDtype === 'float32'
            ? floatOfBits(g)
            : gradDtype === 'bfloat16'
              ? bf16Widen(g)
              : fp16(g);
        return hex(bitsOfFloat(value));
      });
      expect(Array.from(new Uint32Array((state.expAvg as Float32Array).buffer), hex)).toEqual(
        widened,
      );
      // The fp16 subnormal 0x0001 is 2^-24, not flushed to zero.
      if (gradDtype === 'float16') expect((state.expAvg as Float32Array)[0]).toBe(2 ** -24);
    },
  );
});

function fp16(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const e = (bits >> 10) & 31;
  const f = bits & 1023;
  return e === 0 ? sign * f * 2 ** -24 : sign * (1024 + f) * 2 ** (e - 25);
}

describe('blockwise8', () => {
  test('a non-finite gradient or moment leaves the param unchanged and zeroes its state', () => {
    const n = 600;
    const random = mulberry32(5);
    const data0 = makeParam(n, random);
    const grad1 = makeGrad(n, 'float32', random, {
      specialRate: 0,
      nonFiniteRate: 0,
    }) as Float32Array;
    const grad2 = grad1.map((g) => -g);
    const skipped = [5, 260, 7, 599];
    grad2[5] = NaN;
    grad2[260] = Infinity;
    grad2[7] = 1e30; // finite, but g * g overflows: expAvgSq would be +Inf
    grad2[599] = -Infinity;
    const hyper = { ...BASE, amsgrad: true };
    const result = onEveryKernel(
      () => {
        const p: LeanParam = { data: data0.slice(), grad: grad1, dataBf16: new Uint16Array(n) };
        const optimizer = lib(hyper, 'blockwise8', [p]);
        optimizer.step();
        const before = p.data.slice();
        p.grad = grad2;
        optimizer.step();
        return { before, p, state: leanStateFloat32(optimizer, p), raw: leanState(optimizer, p) };
      },
      (a, b) =>
        arrayDifference('param', a.p.data, b.p.data) ??
        momentDifference('expAvg', a.raw.expAvg, b.raw.expAvg as RefMoment) ??
        momentDifference('expAvgSq', a.raw.expAvgSq, b.raw.expAvgSq as RefMoment),
    );
    for (const i of skipped) {
      expect(bitsOfFloat(result.p.data[i]!)).toBe(bitsOfFloat(result.before[i]!));
      expect(result.p.dataBf16![i]).toBe(bf16Rne(result.before[i]!));
      expect(result.state.expAvg[i]).toBe(0);
      expect(result.state.expAvgSq[i]).toBe(0);
      expect(result.state.maxExpAvgSq![i]).toBe(0);
    }
    // Every other element moved, and the blocks' scales stayed finite.
    for (let i = 0; i < n; i++) {
      if (!skipped.includes(i)) expect(result.p.data[i]).not.toBe(result.before[i]);
    }
    const q = result.raw.expAvg as { absmax: Float32Array };
    expect(q.absmax.length).toBe(Math.ceil(n / BLOCK));
    for (const a of q.absmax) expect(Number.isFinite(a) && a > 0).toBe(true);
  });

  test('the round trip of every element is within half the gap to the neighbouring code', () => {
    // beta1 = beta2 = 0 and lr = 0: the new moments are the gradient g and g * g exactly, so
    // state(p) holds their quantization. Each block has its own scale, 1e-15..1e15, and some blocks
    // hold a few large values among tiny ones (many codes of zero).
    const n = 256 * 24 + 77;
    const random = mulberry32(99);
    const normal = gaussian(random);
    const grad = new Float32Array(n);
    for (let b = 0; b < Math.ceil(n / BLOCK); b++) {
      const scale = 10 ** (30 * random() - 15);
      const spread = b % 3 === 0 ? 8 : 1;
      for (let i = b * BLOCK; i < Math.min(n, (b + 1) * BLOCK); i++) {
        grad[i] = normal() * scale * 10 ** (-spread * random());
      }
    }
    const hyper = { ...BASE, ...EXACT_MOMENTS };
    const { raw, dequantized } = onEveryKernel(
      () => {
        const p: LeanParam = { data: new Float32Array(n), grad };
        const optimizer = lib(hyper, 'blockwise8', [p]);
        optimizer.step();
        return { raw: leanState(optimizer, p), dequantized: leanStateFloat32(optimizer, p) };
      },
      (a, b) =>
        momentDifference('expAvg', a.raw.expAvg, b.raw.expAvg as RefMoment) ??
        momentDifference('expAvgSq', a.raw.expAvgSq, b.raw.expAvgSq as RefMoment),
    );
    const failures: string[] = [];
    const check = (
      what: string,
      map: Float32Array,
      q: LeanMomentCopy,
      deq: Float32Array,
      exact: (i: number) => number,
    ) => {
      const { codes, absmax } = q as { codes: Uint8Array; absmax: Float32Array };
      const low = map[0]! < 0 ? -1 : 0;
      for (let i = 0; i < n && failures.length < 10; i++) {
        const x = exact(i);
        const a = absmax[floor(i / BLOCK)]!;
        const c = codes[i]!;
        // stateFloat32 is the definition of dequantization.
        if (bitsOfFloat(deq[i]!) !== bitsOfFloat(fround(map[c]! * a))) {
          failures.push(`${what}[${i}]: stateFloat32 ${deq[i]} is not map[${c}] * absmax`);
        }
        // y-space, exactly: y lies between the midpoints to c's neighbours (the end of the range
        // [-1 or 0, 1] at the ends of the map).
        const y = a > 0 ? fround(x / a) : 0;
        const below = c === 0 ? low : (map[c - 1]! + map[c]!) / 2;
        const above = c === 255 ? 1 : (map[c]! + map[c + 1]!) / 2;
        if (!(below <= y && y <= above)) {
          failures.push(`${what}[${i}]: y ${y} outside [${below}, ${above}] of code ${c}`);
        }
        // x-space: the same bound times absmax, plus the two float32 roundings (x / absmax and
        // map * absmax), each at most 2^-24 absmax.
        const halfGap = y < map[c]! ? map[c]! - below : above - map[c]!;
        const error = Math.abs(deq[i]! - x);
        if (error > (halfGap + 2 ** -23) * a) {
          failures.push(`${what}[${i}]: error ${error} > ${(halfGap + 2 ** -23) * a}`);
        }
      }
    };
    check('expAvg', MAPS.signed, raw.expAvg, dequantized.expAvg, (i) => grad[i]!);
    check('expAvgSq', MAPS.unsigned, raw.expAvgSq, dequantized.expAvgSq, (i) =>
      fround(grad[i]! * grad[i]!),
    );
    expect(failures).toEqual([]);
    // And the codes are the exactly nearest ones (the brute-force search of the reference).
    const q = raw.expAvg as { codes: Uint8Array; absmax: Float32Array };
    for (let i = 0; i < n; i += 97) {
      const a = q.absmax[floor(i / BLOCK)]!;
      expect(q.codes[i]).toBe(nearestCode(MAPS.signed, fround(grad[i]! / a)));
    }
  });

  test('tensors below min8bitSize keep float32 state (default 4096)', () => {
    const params: LeanParam[] = [4095, 4096, 10].map((n) => ({
      data: new Float32Array(n).fill(0.5),
      grad: new Float32Array(n).fill(0.25),
    }));
    const optimizer = createLeanOptimizer(true, [{ params }], {
      ...libHyper(BASE),
      stateDtype: 'blockwise8',
    });
    optimizer.step();
    const [small, large, tiny] = params.map((p) => leanState(optimizer, p));
    expect(small!.dtype).toBe('float32');
    expect(small!.expAvg).toBeInstanceOf(Float32Array);
    expect(tiny!.dtype).toBe('float32');
    expect(large!.dtype).toBe('blockwise8');
    expect((large!.expAvg as { codes: Uint8Array }).codes).toBeInstanceOf(Uint8Array);
    // The fallback is the float32 step exactly.
    const reference = newRefTensor(new Float32Array(4095).fill(0.5), 'float32', false, MAPS);
    referenceStep(
      reference,
      { grad: new Float32Array(4095).fill(0.25), gradDtype: 'float32', hyper: BASE },
      MAPS,
    );
    expect(arrayDifference('param', params[0]!.data, reference.param)).toBeNull();
    expect(momentDifference('expAvgSq', small!.expAvgSq, reference.expAvgSq)).toBeNull();
  });
});

function libHyper(h: RefHyper) {
  return {
    lr: h.lr,
    betas: [h.beta1, h.beta2] as [number, number],
    eps: h.eps,
    weightDecay: h.weightDecay,
    amsgrad: h.amsgrad,
    maximize: h.maximize,
  };
}

describe('stochastic rounding', () => {
  test('rounds up with probability equal to the fraction, with new bits at every step', () => {
    // Every element of the gradient is 1 + 0.3 bf16 ulps; beta1 = 0 makes it the new expAvg.
    const n = 1 << 16;
    const x = floatOfBits(0x3f80_0000 + 0x4ccd);
    const hyper = { ...BASE, ...EXACT_MOMENTS };
    const p: LeanParam = { data: new Float32Array(n), grad: new Float32Array(n).fill(x) };
    const optimizer = lib(hyper, 'bfloat16', [p], {
      stochasticRounding: true,
      seed: 7,
      threads: 2,
    });
    optimizer.step();
    const first = (leanState(optimizer, p).expAvg as Uint16Array).slice();
    optimizer.step();
    const second = leanState(optimizer, p).expAvg as Uint16Array;
    let up = 0;
    let same = 0;
    let wrong = 0;
    const key = srKey(7, 0, 1);
    for (let i = 0; i < n; i++) {
      if (first[i] === 0x3f81) up++;
      else if (first[i] !== 0x3f80) wrong++;
      if (first[i] === second[i]) same++;
      if (first[i] !== bf16Stochastic(x, srBits(key, i) & 0xffff)) wrong++;
    }
    expect(wrong).toBe(0);
    // 0x4ccd / 65536 = 0.30001; 5 sigma of a binomial over 65536 elements is 0.009.
    expect(Math.abs(up / n - 0x4ccd / 65536)).toBeLessThan(0.009);
    // Independent bits at step 2: both round the same way with probability 0.3^2 + 0.7^2 = 0.58.
    expect(Math.abs(same / n - 0.58)).toBeLessThan(0.01);
  });

  test('lets v decay with beta2 = 0.999 where round to nearest never decreases it', () => {
    // One step with g = 1 puts v = 0.001 in every element; then g = 0: v *= 0.999 each step, a
    // change below half a bf16 ulp (2^-9 relative), so RNE stores the same bits forever.
    const n = 4096;
    const steps = 40;
    const run = (stochasticRounding: boolean): number[] => {
      const p: LeanParam = { data: new Float32Array(n), grad: new Float32Array(n).fill(1) };
      const optimizer = lib({ ...BASE, lr: 0, weightDecay: 0 }, 'bfloat16', [p], {
        stochasticRounding,
        seed: 1,
      });
      optimizer.step();
      p.grad = new Float32Array(n);
      const means: number[] = [];
      for (let s = 0; s < steps; s++) {
        optimizer.step();
        const v = leanState(optimizer, p).expAvgSq as Uint16Array;
        let sum = 0;
        for (let i = 0; i < n; i++) sum += bf16Widen(v[i]!);
        means.push(sum / n);
      }
      return means;
    };
    const nearest = run(false);
    const stochastic = run(true);
    const start = bf16Widen(bf16Rne(fround(1 - 0.999)));
    for (const mean of nearest) expect(mean).toBe(start);
    // E[v] follows 0.999^k; 40 steps: 3.9% lower. Within 0.5% of it, and clearly below RNE's.
    const expected = start * 0.999 ** steps;
    expect(Math.abs(stochastic[steps - 1]! / expected - 1)).toBeLessThan(0.005);
    expect(stochastic[steps - 1]!).toBeLessThan(start * 0.98);
  });
});

describe('fused clipping, unscaling and the non-finite skip on 16-bit gradients', () => {
  // A bf16 or fp16 gradient must behave exactly as the Float32Array of its widened values: the
  // same norm, the same clip coefficient, the same step, bit for bit (the float32-grad path is the
  // one test/fused-step.test.ts checks against torch).
  const lengths = [1, 33, 257, 4097];
  const widen = (bits: Uint16Array, dtype: GradDtype): Float32Array =>
    Float32Array.from(bits, (b) => (dtype === 'bfloat16' ? bf16Widen(b) : fp16(b)));

  test.each(
    STATE_DTYPES.flatMap((stateDtype) =>
      (['bfloat16', 'float16'] as const).map((gradDtype) => [stateDtype, gradDtype] as const),
    ),
  )(
    '%s state, %s grads: the same bits as the widened float32 gradients',
    (stateDtype, gradDtype) => {
      const random = mulberry32(31);
      const params0 = lengths.map((n) => makeParam(n, random));
      const mix = { specialRate: 0.01, nonFiniteRate: 0 };
      const grads = [0, 1].map(() =>
        lengths.map((n) => makeGrad(n, gradDtype, random, mix) as Uint16Array),
      );
      const failures: string[] = [];
      for (const isa of backend.available) {
        backend.setIsa(isa);
        for (const threads of [1, 3]) {
          const run = (sixteen: boolean) => {
            const params: LeanParam[] = params0.map((p, k) => ({
              data: p.slice(),
              grad: sixteen ? grads[0]![k]! : widen(grads[0]![k]!, gradDtype),
              ...(sixteen ? { gradDtype } : {}),
            }));
            const optimizer = lib({ ...BASE, amsgrad: true }, stateDtype, params, {
              threads,
              ...(stateDtype === 'bfloat16' ? { stochasticRounding: true, seed: 3 } : {}),
            });
            const reports = [];
            for (let s = 0; s < 2; s++) {
              params.forEach((p, k) => {
                p.grad = sixteen ? grads[s]![k]! : widen(grads[s]![k]!, gradDtype);
              });
              // Step 1 clips (the norm is far above 0.05); step 2 only unscales.
              reports.push(
                optimizer.step({ clipGradNorm: s === 0 ? 0.05 : Infinity, gradScale: 4 }),
              );
            }
            return { params, reports, state: params.map((p) => leanState(optimizer, p)) };
          };
          const a = run(true);
          const b = run(false);
          if (!a.reports[0]!.clipped)
            failures.push(`${isa}, threads ${threads}: step 1 did not clip`);
          a.reports.forEach((r, s) => {
            const e = b.reports[s]!;
            if (r.gradNorm !== e.gradNorm || r.clipped !== e.clipped) {
              failures.push(
                `${isa}, threads ${threads}, step ${s + 1}: report ${JSON.stringify(r)} vs ${JSON.stringify(e)}`,
              );
            }
          });
          a.params.forEach((p, k) => {
            const found =
              arrayDifference('param', p.data, b.params[k]!.data) ??
              momentDifference('expAvg', a.state[k]!.expAvg, b.state[k]!.expAvg as RefMoment) ??
              momentDifference('expAvgSq', a.state[k]!.expAvgSq, b.state[k]!.expAvgSq as RefMoment);
            if (found !== null) failures.push(`${isa}, threads ${threads}, tensor ${k}: ${found}`);
          });
        }
      }
      expect(failures).toEqual([]);
      // gradNorm() of the 16-bit params is the norm of their widenings, bit for bit.
      const sixteen = params0.map((p, k) => ({ data: p, grad: grads[0]![k]!, gradDtype }));
      const widened = grads[0]!.map((g) => widen(g, gradDtype));
      expect(gradNorm(sixteen)).toBe(gradNorm(widened));
      expect(Number.isFinite(gradNorm(widened)) && gradNorm(widened) > 0).toBe(true);
    },
  );

  test.each(GRAD_DTYPES.filter((d) => d !== 'float32'))(
    'a non-finite %s gradient skips the whole step when asked, changing nothing',
    (gradDtype) => {
      const n = 300;
      const data = makeParam(n, mulberry32(8));
      const grad = makeGrad(n, gradDtype, mulberry32(9), { specialRate: 0, nonFiniteRate: 0 });
      (grad as Uint16Array)[123] = gradDtype === 'bfloat16' ? 0x7fc0 : 0x7c00; // NaN, +Inf
      for (const stateDtype of STATE_DTYPES) {
        const p: LeanParam = { data: data.slice(), grad, gradDtype };
        const optimizer = lib(BASE, stateDtype, [p]);
        const report = optimizer.step({ skipNonFinite: true });
        expect(report.skipped).toBe(true);
        expect(arrayDifference('param', p.data, data)).toBeNull();
        expect(leanState(optimizer, p).step).toBe(0);
      }
    },
  );
});
