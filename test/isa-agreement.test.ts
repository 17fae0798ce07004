// Every kernel this CPU can run gives bitwise the same results as the portable scalar kernel
// ("every ISA path gives bitwise-identical results for the same inputs"), for adamwStep and
// for the classes, on random lengths, byte offsets, buffers (ArrayBuffer and SharedArrayBuffer),
// hyperparameters, step counts and gradients full of special values. Results are compared as raw
// bits, NaNs included: a NaN's sign and payload are part of the result.
import fc from 'fast-check';
import {
  Adam,
  AdamW,
  adamwStep,
  type AdamwStepOptions,
  backend,
  type IsaName,
  type Param,
  type ParamGroup,
} from '../lib';
import { float32Bits, gaussian, hex, mulberry32 } from './helpers/random';
import { f32 } from './helpers/float32-state';

// Math is read once: a global lookup inside a hot loop is ~8x slower in jest's vm sandbox.
const { floor } = Math;

const REFERENCE_ISA = 'scalar';
const initialIsa = backend.isa;
afterAll(() => backend.setIsa(initialIsa));

// Values that stress the arithmetic: zeros of both signs, subnormals, the smallest normal, the
// largest finite floats (g*g overflows), +-2^64 and 2^-64, infinities.
const SPECIAL_BITS = [
  0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x00400000, 0x00800000, 0x7f7fffff, 0xff7fffff,
  0x5f800000, 0xdf800000, 0x1f800000, 0x7f800000, 0xff800000,
];
// NaNs as JavaScript writes them (0x7fc00000), as x86 arithmetic makes them (0xffc00000), with
// payloads, and signalling ones.
const NAN_BITS = [0x7fc00000, 0xffc00000, 0x7fc00123, 0xffe00001, 0x7f800001, 0xff812345];

/** How special values are mixed into the inputs of one case. */
interface ValueMix {
  seed: number;
  /** Fraction of elements replaced by a special value. */
  specialRate: number;
  /** Whether NaNs are among the special values. */
  nans: boolean;
}

/** Fills `bits` with float32 values: normal numbers of scale 10^[-exponentRange, +exponentRange] and specials. */
function fillFloat32Bits(
  bits: Uint32Array,
  random: () => number,
  mix: ValueMix,
  exponentRange: number,
): void {
  const normal = gaussian(random);
  const values = new Float32Array(bits.buffer, bits.byteOffset, bits.length);
  const specials = mix.nans ? [...SPECIAL_BITS, ...NAN_BITS] : SPECIAL_BITS;
  for (let i = 0; i < bits.length; i++) {
    if (random() < mix.specialRate) {
      bits[i] = specials[floor(random() * specials.length)]!;
    } else {
      values[i] = normal() * 10 ** ((2 * random() - 1) * exponentRange);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Memory layout: every array of a case is a view into one larger buffer, at its own element
// offset, with guard words between them that must never be written.

const GUARD = 0xdeadbeef;

interface Layout {
  shared: boolean;
  /** gaps[k] free 4-byte words before array k; the last entry is the space after the last array. */
  gaps: number[];
}

interface Placed {
  views: Float32Array[];
  /** The whole buffer as words, to check the guards. */
  words: Uint32Array;
  /** Word ranges [start, end) owned by the views. */
  owned: [number, number][];
}

function place(lengths: readonly number[], layout: Layout): Placed {
  const gaps = lengths.map((_, k) => layout.gaps[k % (layout.gaps.length - 1)]!);
  const trailing = layout.gaps[layout.gaps.length - 1]!;
  const totalWords = lengths.reduce((sum, n, k) => sum + n + gaps[k]!, 0) + trailing;
  const bytes = totalWords * 4;
  const buffer = layout.shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
  const words = new Uint32Array(buffer);
  words.fill(GUARD);
  const views: Float32Array[] = [];
  const owned: [number, number][] = [];
  let offset = 0;
  lengths.forEach((n, k) => {
    offset += gaps[k]!;
    views.push(new Float32Array(buffer, offset * 4, n));
    owned.push([offset, offset + n]);
    offset += n;
  });
  return { views, words, owned };
}

/** Index of the first guard word that changed, or -1. */
function firstDamagedGuard(placed: Placed): number {
  const { words, owned } = placed;
  let start = 0;
  for (const [from, to] of [...owned, [words.length, words.length] as [number, number]]) {
    for (let i = start; i < from; i++) if (words[i] !== GUARD) return i;
    start = to;
  }
  return -1;
}

function setBits(view: Float32Array, bits: Uint32Array): void {
  new Uint32Array(view.buffer, view.byteOffset, view.length).set(bits);
}

/** Index of the first differing word, or -1 (the fast path compares bytes natively). */
function firstDifference(a: Uint32Array, b: Uint32Array): number {
  const bytesA = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const bytesB = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (a.length === b.length && bytesA.equals(bytesB)) return -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

// ---------------------------------------------------------------------------------------------
// adamwStep

interface StepHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
  decoupled: boolean;
  /** The step count of the first step; later steps count on from it. */
  firstStep: number;
}

interface FunctionalCase {
  n: number;
  steps: number;
  hyper: StepHyper;
  layout: Layout;
  mix: ValueMix;
  /** Start from a non-zero optimizer state (as if resuming) instead of zeros. */
  warmState: boolean;
}

interface FunctionalInputs {
  param: Uint32Array;
  expAvg: Uint32Array;
  expAvgSq: Uint32Array;
  maxExpAvgSq: Uint32Array;
  grads: Uint32Array[];
}

const ARRAY_NAMES = ['param', 'expAvg', 'expAvgSq', 'maxExpAvgSq'] as const;

function functionalInputs(c: FunctionalCase): FunctionalInputs {
  const random = mulberry32(c.mix.seed);
  const param = new Uint32Array(c.n);
  fillFloat32Bits(param, random, c.mix, 3);
  const expAvg = new Uint32Array(c.n);
  const expAvgSq = new Uint32Array(c.n);
  const maxExpAvgSq = new Uint32Array(c.n);
  if (c.warmState) {
    // A state a previous run could have left: |m| <= sqrt(v) <= sqrt(vmax).
    const m = new Float32Array(expAvg.buffer);
    const v = new Float32Array(expAvgSq.buffer);
    const vmax = new Float32Array(maxExpAvgSq.buffer);
    fillFloat32Bits(expAvg, random, { ...c.mix, specialRate: 0 }, 3);
    for (let i = 0; i < c.n; i++) {
      v[i] = m[i]! * m[i]! * (1 + random());
      vmax[i] = v[i]! * (1 + random());
    }
  }
  const grads = Array.from({ length: c.steps }, () => {
    const grad = new Uint32Array(c.n);
    fillFloat32Bits(grad, random, c.mix, 4);
    return grad;
  });
  return { param, expAvg, expAvgSq, maxExpAvgSq, grads };
}

/** Runs a case on one kernel; returns the bits of param, expAvg, expAvgSq, maxExpAvgSq after each step. */
function runFunctional(c: FunctionalCase, inputs: FunctionalInputs, isa: IsaName): Uint32Array[] {
  backend.setIsa(isa);
  const placed = place([c.n, c.n, c.n, c.n, c.n], c.layout);
  const [param, grad, expAvg, expAvgSq, maxExpAvgSq] = placed.views as [
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
  ];
  setBits(param, inputs.param);
  setBits(expAvg, inputs.expAvg);
  setBits(expAvgSq, inputs.expAvgSq);
  setBits(maxExpAvgSq, inputs.maxExpAvgSq);
  const { firstStep, amsgrad, ...hyper } = c.hyper;
  const states: Uint32Array[] = [];
  inputs.grads.forEach((gradBits, k) => {
    setBits(grad, gradBits);
    adamwStep(param, grad, expAvg, expAvgSq, {
      ...hyper,
      step: firstStep + k,
      ...(amsgrad ? { maxExpAvgSq } : {}),
    });
    const state = new Uint32Array(4 * c.n);
    [param, expAvg, expAvgSq, maxExpAvgSq].forEach((view, a) => {
      state.set(float32Bits(view), a * c.n);
    });
    states.push(state);
  });
  const damaged = firstDamagedGuard(placed);
  if (damaged >= 0) throw new Error(`${isa} wrote outside the arrays, at buffer word ${damaged}`);
  return states;
}

function describeFunctionalMismatch(
  c: FunctionalCase,
  inputs: FunctionalInputs,
  isa: IsaName,
  step: number,
  index: number,
  expected: Uint32Array,
  actual: Uint32Array,
): string {
  const array = ARRAY_NAMES[floor(index / c.n)]!;
  const i = index % c.n;
  const grads = inputs.grads.slice(0, step + 1).map((g) => hex(g[i]!));
  return (
    `${isa} differs from ${REFERENCE_ISA} after step ${step + 1} of ${c.steps} in ${array}[${i}] ` +
    `(n = ${c.n}): ${REFERENCE_ISA} ${hex(expected[index]!)}, ${isa} ${hex(actual[index]!)}.\n` +
    `Inputs of element ${i}: param ${hex(inputs.param[i]!)}, expAvg ${hex(inputs.expAvg[i]!)}, ` +
    `expAvgSq ${hex(inputs.expAvgSq[i]!)}, maxExpAvgSq ${hex(inputs.maxExpAvgSq[i]!)}, ` +
    `grads [${grads.join(', ')}]; hyperparameters ${JSON.stringify(c.hyper)}`
  );
}

/** Throws a descriptive error unless every available kernel matches the scalar kernel bit for bit. */
function checkFunctionalAgreement(c: FunctionalCase): void {
  const inputs = functionalInputs(c);
  const expected = runFunctional(c, inputs, REFERENCE_ISA);
  for (const isa of backend.available) {
    if (isa === REFERENCE_ISA) continue;
    const actual = runFunctional(c, inputs, isa);
    expected.forEach((state, step) => {
      const index = firstDifference(state, actual[step]!);
      if (index >= 0) {
        throw new Error(
          describeFunctionalMismatch(c, inputs, isa, step, index, state, actual[step]!),
        );
      }
    });
  }
}

// Arbitraries ----------------------------------------------------------------------------------

const beta = (usual: number[]): fc.Arbitrary<number> =>
  fc.oneof(
    fc.constantFrom(...usual),
    fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
  );

const stepHyperArb: fc.Arbitrary<StepHyper> = fc.record({
  lr: fc.oneof(
    fc.constantFrom(0, 1e-3, 3e-4, 0.1),
    fc.double({ min: 0, max: 10, noNaN: true, noDefaultInfinity: true }),
  ),
  beta1: beta([0, 0.5, 0.9]),
  beta2: beta([0, 0.999, 0.9999]),
  eps: fc.oneof(fc.constantFrom(0, 1e-8, 1e-6), fc.double({ min: 0, max: 1e-2, noNaN: true })),
  weightDecay: fc.oneof(fc.constantFrom(0, 1e-2, 0.1), fc.double({ min: 0, max: 2, noNaN: true })),
  amsgrad: fc.boolean(),
  maximize: fc.boolean(),
  decoupled: fc.boolean(),
  firstStep: fc.oneof(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 1_000_000 })),
});

const layoutArb = (arrays: number): fc.Arbitrary<Layout> =>
  fc.record({
    shared: fc.boolean(),
    gaps: fc.array(fc.integer({ min: 0, max: 7 }), {
      minLength: arrays + 1,
      maxLength: arrays + 1,
    }),
  });

const mixArb = (nans: boolean): fc.Arbitrary<ValueMix> =>
  fc.record({
    seed: fc.integer(),
    specialRate: fc.constantFrom(0, 0.05, 0.3, 1),
    nans: fc.constant(nans),
  });

const functionalCaseArb = (nans: boolean): fc.Arbitrary<FunctionalCase> =>
  fc.record({
    n: fc.integer({ min: 0, max: 300 }),
    steps: fc.integer({ min: 1, max: 4 }),
    hyper: stepHyperArb,
    layout: layoutArb(5),
    mix: mixArb(nans),
    warmState: fc.boolean(),
  });

// Fixed examples: every element gets the same gradient, from param 0.5 and zero state.

type ExampleOptions = Partial<Pick<AdamwStepOptions, 'weightDecay' | 'decoupled' | 'maximize'>>;

/** param, expAvg and expAvgSq as hex, after one step per entry of `grads` (the gradient of every element). */
function exampleBits(isa: IsaName, n: number, grads: number[], options: ExampleOptions): string {
  backend.setIsa(isa);
  const param = new Float32Array(n).fill(0.5);
  const expAvg = new Float32Array(n);
  const expAvgSq = new Float32Array(n);
  grads.forEach((g, k) => {
    adamwStep(param, new Float32Array(n).fill(g), expAvg, expAvgSq, {
      step: k + 1,
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      ...options,
    });
  });
  return [param, expAvg, expAvgSq]
    .map((a, i) => `${ARRAY_NAMES[i]!} ${runsOfBits(float32Bits(a))}`)
    .join('; ');
}

/** "0xffc00000 x32, 0x7fc00000": bit patterns with repeats counted, element order kept. */
function runsOfBits(bits: Uint32Array): string {
  const runs: string[] = [];
  for (let i = 0; i < bits.length;) {
    let j = i + 1;
    while (j < bits.length && bits[j] === bits[i]) j++;
    runs.push(j - i > 1 ? `${hex(bits[i]!)} x${j - i}` : hex(bits[i]!));
    i = j;
  }
  return runs.join(', ');
}

function bitsOnEveryKernel(
  n: number,
  grads: number[],
  options: ExampleOptions,
): Record<string, string> {
  return Object.fromEntries(
    backend.available.map((isa) => [isa, exampleBits(isa, n, grads, options)]),
  );
}

function scalarBitsOnEveryKernel(
  n: number,
  grads: number[],
  options: ExampleOptions,
): Record<string, string> {
  const scalar = exampleBits(REFERENCE_ISA, n, grads, options);
  return Object.fromEntries(backend.available.map((isa) => [isa, scalar]));
}

describe('adamwStep: every available kernel matches the scalar kernel bit for bit', () => {
  test('the scalar kernel and at least one other are available to compare', () => {
    expect(backend.available).toContain(REFERENCE_ISA);
    if (process.arch === 'x64' || process.arch === 'arm64') {
      expect(backend.available.length).toBeGreaterThan(1);
    }
  });

  test('random lengths, offsets, buffers and hyperparameters; special values but no NaN inputs', () => {
    fc.assert(
      fc.property(functionalCaseArb(false), (c) => {
        checkFunctionalAgreement(c);
      }),
      { numRuns: 150 },
    );
  });

  test('random cases whose inputs include NaNs of either sign and with payloads', () => {
    fc.assert(
      fc.property(functionalCaseArb(true), (c) => {
        checkFunctionalAgreement(c);
      }),
      { numRuns: 100 },
    );
  });

  test.each([4099, 65537])('length %i in unaligned views, special values, 3 steps', (n) => {
    for (const [shared, amsgrad, decoupled, maximize] of [
      [false, false, true, false],
      [true, true, false, true],
    ] as const) {
      checkFunctionalAgreement({
        n,
        steps: 3,
        hyper: {
          lr: 1e-3,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: 0.01,
          amsgrad,
          maximize,
          decoupled,
          firstStep: 7,
        },
        layout: { shared, gaps: [1, 3, 0, 5, 2, 7] },
        mix: { seed: n, specialRate: 0.02, nans: false },
        warmState: false,
      });
    }
  });

  // Two cases found by the property above, kept as plain examples. Only JavaScript's own NaN
  // (0x7fc00000) and the NaN that Inf/Inf makes go in; the kernels disagree on the NaN that comes out.
  test('Adam with L2 and maximize, one NaN gradient: the same NaN on every kernel', () => {
    const options = { weightDecay: 0.1, decoupled: false, maximize: true };
    expect(bitsOnEveryKernel(1, [NaN], options)).toEqual(
      scalarBitsOnEveryKernel(1, [NaN], options),
    );
  });

  test('AdamW defaults, gradients Inf, NaN, NaN on 33 elements: the same NaNs on every kernel', () => {
    const grads = [Infinity, NaN, NaN];
    expect(bitsOnEveryKernel(33, grads, {})).toEqual(scalarBitsOnEveryKernel(33, grads, {}));
  });
});

// ---------------------------------------------------------------------------------------------
// The classes: several params in one or two groups, one native call per step.

interface GroupHyper {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
}

interface ClassCase {
  optimizer: 'AdamW' | 'Adam';
  lengths: number[];
  /** Group of each param (0 or 1); a group without params is dropped. */
  groupOf: number[];
  groups: [GroupHyper, GroupHyper];
  /** Each step's lr is the group's lr times this factor (a schedule set through paramGroups). */
  lrFactors: number[];
  layout: Layout;
  mix: ValueMix;
}

const groupHyperArb: fc.Arbitrary<GroupHyper> = fc.record({
  lr: fc.oneof(fc.constantFrom(0, 1e-3, 0.1), fc.double({ min: 0, max: 1, noNaN: true })),
  betas: fc.tuple(beta([0, 0.9]), beta([0.999, 0.9999])),
  eps: fc.oneof(fc.constantFrom(0, 1e-8), fc.double({ min: 0, max: 1e-2, noNaN: true })),
  weightDecay: fc.oneof(fc.constantFrom(0, 1e-2), fc.double({ min: 0, max: 1, noNaN: true })),
  amsgrad: fc.boolean(),
  maximize: fc.boolean(),
});

const classCaseArb = (nans: boolean): fc.Arbitrary<ClassCase> =>
  fc.integer({ min: 1, max: 6 }).chain((count) =>
    fc.record({
      optimizer: fc.constantFrom('AdamW' as const, 'Adam' as const),
      lengths: fc.array(fc.integer({ min: 0, max: 70 }), { minLength: count, maxLength: count }),
      groupOf: fc.array(fc.integer({ min: 0, max: 1 }), { minLength: count, maxLength: count }),
      groups: fc.tuple(groupHyperArb, groupHyperArb),
      lrFactors: fc.array(fc.double({ min: 0, max: 2, noNaN: true }), {
        minLength: 1,
        maxLength: 4,
      }),
      layout: layoutArb(2 * count),
      mix: mixArb(nans),
    }),
  );

interface ClassRun {
  /** After each step: the bits of every param's data, expAvg, expAvgSq (and maxExpAvgSq), in order. */
  states: Uint32Array[];
  /** What each word of a state is, e.g. "params[2].data[5]". */
  words: string[];
  /** Each word's element inputs: initial data and the gradient of every step. */
  wordInputs: string[];
}

/** Runs a class case on one kernel. */
function runClass(c: ClassCase, isa: IsaName): ClassRun {
  backend.setIsa(isa);
  const random = mulberry32(c.mix.seed);
  const placed = place(
    c.lengths.flatMap((n) => [n, n]),
    c.layout,
  );
  const params: Param[] = c.lengths.map((n, k) => {
    const data = placed.views[2 * k]!;
    fillFloat32Bits(new Uint32Array(data.buffer, data.byteOffset, n), random, c.mix, 3);
    return { data, grad: placed.views[2 * k + 1]! };
  });
  const data0 = params.map((p) => float32Bits(p.data));
  const grads: Uint32Array[][] = params.map(() => []);
  const groupInputs: ParamGroup[] = c.groups
    .map((h, g) => ({ ...h, params: params.filter((_, k) => c.groupOf[k] === g) }))
    .filter((group) => group.params.length > 0);
  const optimizer = c.optimizer === 'AdamW' ? new AdamW(groupInputs) : new Adam(groupInputs);
  const run: ClassRun = { states: [], words: [], wordInputs: [] };
  const wordElements: [number, number][] = [];
  for (const factor of c.lrFactors) {
    optimizer.paramGroups.forEach((group, g) => {
      group.lr = groupInputs[g]!.lr! * factor;
    });
    params.forEach((p, k) => {
      const bits = new Uint32Array(p.grad.buffer, p.grad.byteOffset, p.grad.length);
      fillFloat32Bits(bits, random, c.mix, 4);
      grads[k]!.push(bits.slice());
    });
    optimizer.step();
    const arrays = params.flatMap((p, k) => {
      const s = f32(optimizer.state(p));
      const named: [string, Float32Array][] = [
        [`params[${k}].data`, p.data],
        [`state(params[${k}]).expAvg`, s.expAvg],
        [`state(params[${k}]).expAvgSq`, s.expAvgSq],
      ];
      if (s.maxExpAvgSq !== undefined) {
        named.push([`state(params[${k}]).maxExpAvgSq`, s.maxExpAvgSq]);
      }
      return named.map(([name, array]) => ({ k, name, array }));
    });
    const state = new Uint32Array(arrays.reduce((sum, a) => sum + a.array.length, 0));
    let offset = 0;
    for (const { k, name, array } of arrays) {
      state.set(float32Bits(array), offset);
      offset += array.length;
      if (run.states.length > 0) continue;
      for (let i = 0; i < array.length; i++) {
        run.words.push(`${name}[${i}]`);
        wordElements.push([k, i]);
      }
    }
    run.states.push(state);
  }
  run.wordInputs = wordElements.map(
    ([k, i]) =>
      `initial data ${hex(data0[k]![i]!)}, grads [${grads[k]!.map((g) => hex(g[i]!)).join(', ')}]`,
  );
  const damaged = firstDamagedGuard(placed);
  if (damaged >= 0) throw new Error(`${isa} wrote outside the arrays, at buffer word ${damaged}`);
  return run;
}

function checkClassAgreement(c: ClassCase): void {
  const expected = runClass(c, REFERENCE_ISA);
  for (const isa of backend.available) {
    if (isa === REFERENCE_ISA) continue;
    const actual = runClass(c, isa);
    expected.states.forEach((state, step) => {
      const index = firstDifference(state, actual.states[step]!);
      if (index >= 0) {
        throw new Error(
          `${isa} differs from ${REFERENCE_ISA} after step ${step + 1} in ${expected.words[index]!}: ` +
            `${REFERENCE_ISA} ${hex(state[index]!)}, ${isa} ${hex(actual.states[step]![index]!)}.\n` +
            `Inputs of that element: ${expected.wordInputs[index]!}`,
        );
      }
    });
  }
}

describe('AdamW and Adam classes: every available kernel matches the scalar kernel bit for bit', () => {
  test('random params, groups, schedules and buffers; special values but no NaN inputs', () => {
    fc.assert(
      fc.property(classCaseArb(false), (c) => {
        checkClassAgreement(c);
      }),
      { numRuns: 60 },
    );
  });

  test('random cases whose inputs include NaNs of either sign and with payloads', () => {
    fc.assert(
      fc.property(classCaseArb(true), (c) => {
        checkClassAgreement(c);
      }),
      { numRuns: 60 },
    );
  });
});
