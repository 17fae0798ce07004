// step({ skip }) / stepAsync({ skip }) (issue 14): params with no gradient in a step, as PyTorch's
// grad None. A skipped param's data, grad and dataBf16 are never read, and its data, state and step
// count do not change; the stepped params get the bits they would get from an optimizer holding
// only them (two references: an optimizer over just those params, and one stepping every param and
// then putting the skipped ones back), on every kernel, 1/2/3 threads, step and stepAsync, with
// the fused clip / unscale / non-finite skip measuring the stepped gradients only. Then: every
// param skipped, per-param step counts against one optimizer per param, the kept plan, bad input,
// and checkpoints that keep the differing step counts and resume bit for bit.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  Adafactor,
  Adam,
  AdamW,
  adamwStep,
  backend,
  CAME,
  gradNorm,
  Lion,
  linearWarmup,
  type Optimizer,
  type OptimizerStepOptions,
  type Param,
  type StepOptions,
  type StepReport,
} from '../lib';
import { native } from '../lib/core/native';
import { optimizerInternals } from '../lib/optim/optimizer';
import { gaussian, mulberry32 } from './helpers/random';

const initialIsa = backend.isa;
afterAll(() => backend.setIsa(initialIsa));

let folder: string;
beforeAll(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-skip-'));
});
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// The optimizers: every class, with each state dtype it has (bfloat16 also with stochastic
// rounding), over two groups of different hyperparameters and one param with decay: false.

type Hyper = Record<string, unknown>;

interface Subject {
  readonly label: string;
  readonly stochasticRounding: boolean;
  /** Optimizer-wide options (the first group's hyperparameters among them). */
  readonly options: Hyper;
  /** The second group's own hyperparameters. */
  readonly group1: Hyper;
  create(groups: Hyper[], options: Hyper): Optimizer;
  load(file: string, params: Param[]): Optimizer;
}

type Groups<C extends abstract new (...args: never[]) => unknown> = ConstructorParameters<C>[0];
type Options<C extends abstract new (...args: never[]) => unknown> = ConstructorParameters<C>[1];

function adamSubject(decoupled: boolean, stateOptions: Hyper, label: string): Subject {
  const options = { lr: 1e-2, weightDecay: decoupled ? 0.1 : 0.01, ...stateOptions };
  return {
    label,
    stochasticRounding: stateOptions.stochasticRounding === true,
    options,
    group1: { lr: 3e-3, betas: [0.8, 0.95] },
    create: (groups, o) =>
      decoupled
        ? new AdamW(groups as unknown as Groups<typeof AdamW>, o as Options<typeof AdamW>)
        : new Adam(groups as unknown as Groups<typeof Adam>, o as Options<typeof Adam>),
    load: (file, params) => (decoupled ? AdamW.load(file, params) : Adam.load(file, params)),
  };
}

function lionSubject(stateOptions: Hyper, label: string): Subject {
  return {
    label,
    stochasticRounding: stateOptions.stochasticRounding === true,
    options: { lr: 1e-3, weightDecay: 0.1, ...stateOptions },
    group1: { lr: 3e-4, betas: [0.95, 0.98] },
    create: (groups, o) =>
      new Lion(groups as unknown as Groups<typeof Lion>, o as Options<typeof Lion>),
    load: (file, params) => Lion.load(file, params),
  };
}

const SR = { stateDtype: 'bfloat16', stochasticRounding: true, seed: 11 };
const BLOCKWISE8 = { stateDtype: 'blockwise8', min8bitSize: 64 };

const SUBJECTS: readonly Subject[] = [
  adamSubject(true, {}, 'AdamW float32'),
  adamSubject(true, { stateDtype: 'bfloat16' }, 'AdamW bfloat16'),
  adamSubject(true, SR, 'AdamW bfloat16 stochastic rounding'),
  adamSubject(true, BLOCKWISE8, 'AdamW blockwise8'),
  adamSubject(false, {}, 'Adam float32'),
  adamSubject(false, SR, 'Adam bfloat16 stochastic rounding'),
  lionSubject({}, 'Lion float32'),
  lionSubject(SR, 'Lion bfloat16 stochastic rounding'),
  lionSubject(BLOCKWISE8, 'Lion blockwise8'),
  {
    label: 'Adafactor',
    stochasticRounding: false,
    options: {},
    group1: { weightDecay: 0.01, beta1: 0.9 },
    create: (groups, o) =>
      new Adafactor(groups as unknown as Groups<typeof Adafactor>, o as Options<typeof Adafactor>),
    load: (file, params) => Adafactor.load(file, params),
  },
  {
    label: 'CAME',
    stochasticRounding: false,
    options: { lr: 2e-3 },
    group1: { lr: 1e-3, weightDecay: 0.01 },
    create: (groups, o) =>
      new CAME(groups as unknown as Groups<typeof CAME>, o as Options<typeof CAME>),
    load: (file, params) => CAME.load(file, params),
  },
];

// Five params: matrices (factored by Adafactor and CAME; blockwise8 over min8bitSize), a vector
// and a small vector (float32 state under blockwise8, so a plan mixes two ops). Groups: [0, 1, 2]
// and [3, 4]; w2 has decay: false.
const SHAPES: readonly (readonly number[])[] = [[12, 17], [300], [5, 40], [33], [3, 4, 10]];
const GROUP_OF = [0, 0, 0, 1, 1];
const ALL = [0, 1, 2, 3, 4];

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function makeParams(seed = 1): Param[] {
  const normal = gaussian(mulberry32(seed));
  return SHAPES.map((shape, k) => {
    const n = product(shape);
    return {
      name: `w${k}`,
      shape,
      data: Float32Array.from({ length: n }, () => normal() * 0.5),
      grad: new Float32Array(n),
      decay: k !== 2,
    };
  });
}

/** The optimizer over `params[k]` for k in `keep` (default: all), in the same two groups. */
function createOver(
  subject: Subject,
  params: Param[],
  threads: number,
  keep: readonly number[] = ALL,
): Optimizer {
  const groups = [0, 1]
    .map((g) => ({
      params: keep.filter((k) => GROUP_OF[k] === g).map((k) => params[k]!),
      ...(g === 1 ? subject.group1 : {}),
    }))
    .filter((group) => group.params.length > 0);
  return subject.create(groups, { ...subject.options, threads });
}

/** Writes the gradient of param k for step `step` (the same values for every optimizer). */
function writeGrad(grad: Float32Array, step: number, k: number): void {
  const normal = gaussian(mulberry32(1000 * step + k + 17));
  for (let i = 0; i < grad.length; i++) grad[i] = normal() * 1e-2 * (1 + (i % 7));
}

// ---------------------------------------------------------------------------------------------
// Raw bytes of a param and its state, to compare bit for bit.

interface ParamBytes {
  step: number;
  arrays: [string, Buffer][];
}

function bytesOf(array: ArrayBufferView): Buffer {
  return Buffer.from(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
}

/** Copies of param p's data (or of `data`) and every state tensor (blockwise8: codes and absmax),
 * and its step. */
function snapshot(optimizer: Optimizer, param: Param, data = param.data): ParamBytes {
  const state = optimizer.state(param) as unknown as Record<string, unknown>;
  const arrays: [string, Buffer][] = [['data', Buffer.from(bytesOf(data))]];
  for (const [name, value] of Object.entries(state)) {
    if (ArrayBuffer.isView(value)) arrays.push([name, Buffer.from(bytesOf(value))]);
    else if (typeof value === 'object' && value !== null && 'codes' in value) {
      const { codes, absmax } = value as { codes: Uint8Array; absmax: Float32Array };
      arrays.push([`${name}.codes`, Buffer.from(bytesOf(codes))]);
      arrays.push([`${name}.absmax`, Buffer.from(bytesOf(absmax))]);
    }
  }
  return { step: state.step as number, arrays };
}

/** null if equal, else what differs first. */
function difference(actual: ParamBytes, expected: ParamBytes): string | null {
  if (actual.step !== expected.step) return `step ${actual.step} instead of ${expected.step}`;
  if (actual.arrays.length !== expected.arrays.length) return 'different state tensors';
  for (const [i, [name, bytes]] of actual.arrays.entries()) {
    const [expectedName, expectedBytes] = expected.arrays[i]!;
    if (name !== expectedName) return `${name} instead of ${expectedName}`;
    if (!bytes.equals(expectedBytes)) return `${name} differs`;
  }
  return null;
}

/** Puts a snapshot back into param p and its state (and its step count), as if not stepped. */
function restore(optimizer: Optimizer, param: Param, k: number, saved: ParamBytes): void {
  const state = optimizer.state(param) as unknown as Record<string, unknown>;
  const targets: ArrayBufferView[] = [param.data];
  for (const value of Object.values(state)) {
    if (ArrayBuffer.isView(value)) targets.push(value);
    else if (typeof value === 'object' && value !== null && 'codes' in value) {
      const { codes, absmax } = value as { codes: Uint8Array; absmax: Float32Array };
      targets.push(codes, absmax);
    }
  }
  for (const [i, target] of targets.entries()) {
    new Uint8Array(target.buffer, target.byteOffset, target.byteLength).set(saved.arrays[i]![1]);
  }
  optimizerInternals(optimizer).slots[k]!.step = saved.step;
}

function reportFacts(report: StepReport): unknown {
  const { gradNorm: norm, clipped, skipped, reason } = report;
  return { gradNorm: norm, clipped, skipped, reason };
}

type Mode = 'step' | 'stepAsync';

async function run(
  optimizer: Optimizer,
  mode: Mode,
  options?: OptimizerStepOptions,
): Promise<StepReport> {
  return mode === 'step' ? optimizer.step(options) : optimizer.stepAsync(options);
}

// ---------------------------------------------------------------------------------------------
// Bit for bit against "step every param, then put the skipped ones back", on every kernel

// A changing skip set (duplicates, all, none, an empty list) with the fused options; w2's grad
// array is replaced in a step that skips w0 and w3 (so the plan over every param, kept from the
// first step, holds an old array and must not be used again).
const SEQUENCE: readonly {
  skip?: readonly number[];
  options: StepOptions;
  nanIn?: number;
  replaceGrad?: number;
}[] = [
  { options: {} },
  { skip: [1], options: { clipGradNorm: 0.05 } },
  { skip: [1], options: { skipNonFinite: true } },
  { skip: [0, 3], options: { clipGradNorm: 0.02, gradScale: 4 }, replaceGrad: 2 },
  { skip: ALL, options: { clipGradNorm: 1 } },
  { skip: [4, 4, 2], options: {} },
  { skip: [1], options: { skipNonFinite: true }, nanIn: 3 },
  { skip: [], options: { clipGradNorm: 0.05 } },
  { options: {} },
];

// Runs SEQUENCE on `optimizer` (skipped grads full of NaN: read, they would show) and on the
// reference (skipped grads zero, so the norm is the same; the skipped params put back after each
// step). Returns the first difference, or null.
async function sequenceDifference(subject: Subject, mode: Mode, threads: number) {
  const params = makeParams();
  const refParams = makeParams();
  const optimizer = createOver(subject, params, threads);
  const reference = createOver(subject, refParams, threads);
  for (const [s, entry] of SEQUENCE.entries()) {
    const skipped = new Set(entry.skip ?? []);
    if (entry.replaceGrad !== undefined) {
      const k = entry.replaceGrad;
      const old = params[k]!.grad;
      params[k]!.grad = new Float32Array(old.length);
      refParams[k]!.grad = new Float32Array(old.length);
      old.fill(1e6); // what a stale plan would read
    }
    for (const k of ALL) {
      if (skipped.has(k)) {
        params[k]!.grad.fill(NaN);
        refParams[k]!.grad.fill(0);
      } else {
        writeGrad(params[k]!.grad, s, k);
        writeGrad(refParams[k]!.grad, s, k);
        if (entry.nanIn === k) {
          params[k]!.grad[3] = NaN;
          refParams[k]!.grad[3] = NaN;
        }
      }
    }
    const before = params.map((p) => snapshot(optimizer, p));
    const saved = [...skipped].map((k) => [k, snapshot(reference, refParams[k]!)] as const);
    const options: OptimizerStepOptions =
      entry.skip === undefined
        ? entry.options
        : { ...entry.options, skip: entry.skip.map((k) => params[k]!) };
    const report = await run(optimizer, mode, options);
    const expected = await run(reference, mode, entry.options);
    for (const [k, bytes] of saved) restore(reference, refParams[k]!, k, bytes);

    const facts = JSON.stringify(reportFacts(report));
    // With every param skipped the reference's gradients are all zero: a norm of 0, no clipping.
    const expectedFacts = JSON.stringify(reportFacts(expected));
    if (facts !== expectedFacts) return `step ${s}: report ${facts} instead of ${expectedFacts}`;
    for (const k of ALL) {
      const found = difference(snapshot(optimizer, params[k]!), snapshot(reference, refParams[k]!));
      if (found !== null) return `step ${s}, w${k}: ${found}`;
      if (skipped.has(k)) {
        const changed = difference(snapshot(optimizer, params[k]!), before[k]!);
        if (changed !== null) return `step ${s}, skipped w${k} changed: ${changed}`;
      }
    }
  }
  return null;
}

describe.each(SUBJECTS.map((subject) => [subject.label, subject] as const))(
  '%s',
  (_label, subject) => {
    test('every kernel, 1/2/3 threads, step and stepAsync: skipped params unchanged, the others as a full step', async () => {
      const problems: string[] = [];
      for (const isa of backend.available) {
        backend.setIsa(isa);
        for (const threads of [1, 2, 3]) {
          for (const mode of ['step', 'stepAsync'] as const) {
            const found = await sequenceDifference(subject, mode, threads);
            if (found !== null) problems.push(`${isa}, ${threads} threads, ${mode}: ${found}`);
          }
        }
      }
      backend.setIsa(initialIsa);
      expect(problems).toEqual([]);
    });

    test('the stepped params are bitwise those of an optimizer over only them', async () => {
      // Under stochastic rounding a tensor's random bits follow its place among all params: the
      // optimizer over fewer params gives the same places only when the skipped ones are last.
      const skip = subject.stochasticRounding ? [4] : [1, 3];
      const kept = ALL.filter((k) => !skip.includes(k));
      const params = makeParams();
      const refParams = makeParams();
      const optimizer = createOver(subject, params, 2);
      const reference = createOver(subject, refParams, 2, kept);
      const initial = skip.map((k) => snapshot(optimizer, params[k]!));
      for (let s = 0; s < 5; s++) {
        for (const k of ALL) {
          writeGrad(params[k]!.grad, s, k);
          writeGrad(refParams[k]!.grad, s, k);
        }
        for (const k of skip) params[k]!.grad.fill(NaN);
        const options: StepOptions = s % 2 === 0 ? { clipGradNorm: 0.05 } : { skipNonFinite: true };
        const mode = s % 3 === 2 ? 'stepAsync' : 'step';
        const report = await run(optimizer, mode, {
          ...options,
          skip: skip.map((k) => params[k]!),
        });
        const expected = await run(reference, mode, options);
        expect(report).toEqual(expected);
        expect(report.skipped).toBe(false);
        for (const k of kept) {
          expect(
            difference(snapshot(optimizer, params[k]!), snapshot(reference, refParams[k]!)),
          ).toBeNull();
        }
      }
      expect(
        skip.map((k) => difference(snapshot(optimizer, params[k]!), initial[skip.indexOf(k)]!)),
      ).toEqual(skip.map(() => null));
    });

    test("a skipped param's data, grad, gradDtype and dataBf16 are not read", async () => {
      const params = makeParams();
      const optimizer = createOver(subject, params, 2);
      for (const k of ALL) writeGrad(params[k]!.grad, 0, k);
      optimizer.step();
      // w1: every field a getter that throws.
      const w1 = params[1]!;
      const w1Arrays = { data: w1.data, grad: w1.grad };
      const fields = ['data', 'grad', 'gradDtype', 'dataBf16'];
      for (const key of fields) {
        Object.defineProperty(w1, key, {
          configurable: true,
          get: () => {
            throw new Error(`w1.${key} was read`);
          },
        });
      }
      // w3: a zero-length grad and a detached data array, as a framework may leave them.
      const w3 = params[3]!;
      const w3Data = w3.data;
      w3.grad = new Float32Array(0);
      const detached = new Float32Array(w3Data.length);
      structuredClone(detached.buffer, { transfer: [detached.buffer] });
      w3.data = detached;
      const skippedState = (): ParamBytes[] => [
        snapshot(optimizer, w1, w1Arrays.data),
        snapshot(optimizer, w3, w3Data),
      ];
      const before = skippedState();
      for (const k of [0, 2, 4]) writeGrad(params[k]!.grad, 1, k);
      optimizer.step({ skip: [w1, w3], clipGradNorm: 0.05 });
      for (const k of [0, 2, 4]) writeGrad(params[k]!.grad, 2, k);
      await optimizer.stepAsync({ skip: [w3, w1], skipNonFinite: true });
      expect(skippedState()).toEqual(before);
      // w1 back; stepping w3 with its detached data is refused, changing nothing.
      for (const key of fields) Reflect.deleteProperty(w1, key);
      Object.assign(w1, w1Arrays);
      const all = params.map((p) => snapshot(optimizer, p, p === w3 ? w3Data : p.data));
      expect(() => optimizer.step()).toThrow(
        'Expected a Float32Array for w3.data but received a Float32Array whose ArrayBuffer is detached',
      );
      expect(params.map((p) => snapshot(optimizer, p, p === w3 ? w3Data : p.data))).toEqual(all);
      w3.data = w3Data;
      w3.grad = new Float32Array(w3Data.length).fill(1e-3);
      optimizer.step();
      expect(params.map((p) => optimizer.state(p).step)).toEqual([4, 2, 4, 2, 4]);
    });
  },
);

// ---------------------------------------------------------------------------------------------
// Per-param step counts: each param's later steps use its own count, as separate optimizers do

test.each(SUBJECTS.filter((s) => !s.stochasticRounding).map((s) => [s.label, s] as const))(
  '%s: per-param step counts against one optimizer per param',
  async (_label, subject) => {
    const params = makeParams();
    const refParams = makeParams();
    const optimizer = createOver(subject, params, 2);
    const references = ALL.map((k) => createOver(subject, refParams, 1, [k]));
    const skips = [[], [0], [0, 1], [0, 1, 2], [3], [], [0, 4], [1]];
    for (const [s, skip] of skips.entries()) {
      for (const k of ALL) {
        writeGrad(params[k]!.grad, s, k);
        writeGrad(refParams[k]!.grad, s, k);
      }
      const mode = s % 2 === 0 ? 'step' : 'stepAsync';
      await run(optimizer, mode, { skip: skip.map((k) => params[k]!) });
      for (const k of ALL) if (!skip.includes(k)) await run(references[k]!, mode);
    }
    expect(params.map((p) => optimizer.state(p).step)).toEqual([4, 5, 7, 7, 7]);
    for (const k of ALL) {
      expect(
        difference(snapshot(optimizer, params[k]!), snapshot(references[k]!, refParams[k]!)),
      ).toBeNull();
    }
  },
);

// ---------------------------------------------------------------------------------------------
// Every param skipped

describe('every param skipped', () => {
  test.each(['step', 'stepAsync'] as const)(
    '%s: changes nothing, the schedule advances, the report says so',
    async (mode) => {
      const params = makeParams();
      const optimizer = new AdamW(params, { lr: 1e-2, schedule: linearWarmup({ warmupSteps: 4 }) });
      for (const k of ALL) writeGrad(params[k]!.grad, 0, k);
      const before = params.map((p) => snapshot(optimizer, p));
      const lr0 = optimizer.paramGroups[0]!.lr;
      const first = await run(optimizer, mode, { skip: params });
      expect(first).toEqual({ gradNorm: null, clipped: false, skipped: false, lr: lr0 });
      const lr1 = optimizer.paramGroups[0]!.lr;
      expect(lr1).toBeGreaterThan(lr0);
      const second = await run(optimizer, mode, {
        skip: new Set(params),
        clipGradNorm: 1e-9,
        skipNonFinite: true,
        gradScale: 2,
      });
      expect(second).toEqual({ gradNorm: 0, clipped: false, skipped: false, lr: lr1 });
      expect(optimizer.schedulePosition).toBe(2);
      expect(params.map((p) => snapshot(optimizer, p))).toEqual(before);
      // The next real step is every param's first.
      await run(optimizer, mode);
      expect(params.map((p) => optimizer.state(p).step)).toEqual([1, 1, 1, 1, 1]);
    },
  );
});

// ---------------------------------------------------------------------------------------------
// The fused options see only the stepped params

describe('clipping, gradScale and skipNonFinite with skip', () => {
  test('the norm is over the stepped gradients; a NaN in a skipped grad does not skip the step', () => {
    const params = makeParams();
    const optimizer = new AdamW(params, { lr: 1e-2 });
    for (const k of ALL) writeGrad(params[k]!.grad, 0, k);
    params[1]!.grad[5] = NaN;
    params[4]!.grad[0] = Infinity;
    const stepped = [params[0]!, params[2]!, params[3]!];
    const expectedNorm = gradNorm(stepped.map((p) => p.grad)) / 8;
    const report = optimizer.step({
      skip: [params[1]!, params[4]!],
      skipNonFinite: true,
      clipGradNorm: 1e-3,
      gradScale: 8,
    });
    expect(report.skipped).toBe(false);
    expect(report.clipped).toBe(true);
    expect(report.gradNorm).toBeCloseTo(expectedNorm, 12);
    expect(params.map((p) => optimizer.state(p).step)).toEqual([1, 0, 1, 1, 0]);
  });

  test('report.reason names the param with the non-finite gradient, not its place among the stepped', () => {
    const params = makeParams();
    const optimizer = new AdamW(params, { lr: 1e-2, schedule: linearWarmup({ warmupSteps: 4 }) });
    for (const k of ALL) writeGrad(params[k]!.grad, 0, k);
    params[3]!.grad[2] = NaN; // w3 is the third stepped param (tensor 2 of the plan)
    const before = params.map((p) => snapshot(optimizer, p));
    const report = optimizer.step({ skip: [params[1]!], skipNonFinite: true });
    expect(report.skipped).toBe(true);
    expect(report.reason).toMatch(/^non-finite gradient: w3\.grad holds a NaN or an infinity/);
    expect(params.map((p) => snapshot(optimizer, p))).toEqual(before);
    expect(optimizer.schedulePosition).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// The kept plan: the same skip set on consecutive steps makes no new plan

test('a plan is made for a new skip set only, and again after arrays were replaced', () => {
  const params = makeParams();
  const optimizer = new AdamW(params, { lr: 1e-2 });
  const createPlan = jest.spyOn(native, 'createPlan');
  try {
    const plansAfter = (options?: OptimizerStepOptions): number => {
      optimizer.step(options);
      return createPlan.mock.calls.length;
    };
    const [w0, w1, w2] = [params[0]!, params[1]!, params[2]!];
    expect(plansAfter({ skip: [w1] })).toBe(1);
    expect(plansAfter({ skip: [w1] })).toBe(1);
    expect(plansAfter({ skip: new Set([w1, w1]) })).toBe(1);
    expect(plansAfter()).toBe(1); // the plan over every param is kept too
    expect(plansAfter({ skip: [], clipGradNorm: 1 })).toBe(1);
    expect(plansAfter({ skip: [w1] })).toBe(1);
    expect(plansAfter({ skip: [w2] })).toBe(2);
    w0.grad = new Float32Array(w0.grad.length);
    expect(plansAfter({ skip: [w2] })).toBe(3);
    expect(plansAfter()).toBe(4); // the plan over every param held w0's old grad
    expect(plansAfter()).toBe(4);
  } finally {
    createPlan.mockRestore();
  }
});

test('arrays adopted in steps that skipped each other are checked together before a full step', () => {
  const params = makeParams();
  const optimizer = new AdamW(params, { lr: 1e-2 });
  const [w0, w1] = [params[0]!, params[1]!];
  const shared = new Float32Array(w0.data.length + w1.data.length);
  shared.set(w0.data);
  w0.data = shared.subarray(0, w0.data.length);
  optimizer.step({ skip: [w1] });
  w1.grad = shared.subarray(0, w1.grad.length); // w0.data's bytes, while w0 is skipped
  optimizer.step({ skip: [w0] });
  const before = params.map((p) => snapshot(optimizer, p));
  expect(() => optimizer.step()).toThrow(
    'Expected w0.data and w1.grad not to overlap in memory but they share bytes',
  );
  expect(params.map((p) => snapshot(optimizer, p))).toEqual(before);
});

test("a stepped param's array may not be a skipped param's state", () => {
  const params = makeParams();
  const optimizer = new AdamW(params, { lr: 1e-2 });
  const [w1, w2] = [params[1]!, params[2]!];
  const expAvg = optimizer.state(w1).expAvg as Float32Array;
  w2.data = expAvg.subarray(0, w2.data.length);
  expect(() => optimizer.step({ skip: [w1] })).toThrow(
    /^Expected (w2\.data and state of w1 \(expAvg\)|state of w1 \(expAvg\) and w2\.data) not to overlap/,
  );
  expect(expAvg.every((value) => value === 0)).toBe(true);
});

test("a skipped param's dataBf16 is not written", () => {
  const params = makeParams();
  const copies = params.map((p) => new Uint16Array(p.data.length).fill(0x1234));
  params.forEach((p, k) => (p.dataBf16 = copies[k]));
  const optimizer = new AdamW(params, { lr: 1e-2 });
  for (const k of ALL) writeGrad(params[k]!.grad, 0, k);
  optimizer.step({ skip: [params[2]!] });
  expect(copies.map((copy) => copy.every((bits) => bits === 0x1234))).toEqual([
    false,
    false,
    true,
    false,
    false,
  ]);
});

// ---------------------------------------------------------------------------------------------
// Bad input: refused before anything changes

describe('bad skip', () => {
  const params = makeParams();
  const optimizer = new AdamW(params, { lr: 1e-2, schedule: linearWarmup({ warmupSteps: 4 }) });
  const foreign = makeParams(2)[0]!;
  const iterableOf = 'an iterable of params of this optimizer for options.skip';
  const cases: [string, unknown, typeof TypeError | typeof RangeError, string][] = [
    ['a number', 42, TypeError, `Expected ${iterableOf} but received 42 of type number`],
    ['null', null, TypeError, `Expected ${iterableOf} but received null`],
    ['a string', 'w0', TypeError, `Expected ${iterableOf} but received 'w0' of type string`],
    [
      'a Float32Array',
      params[0]!.data,
      TypeError,
      `Expected ${iterableOf} but received a Float32Array of 204 elements`,
    ],
    ['a param itself', params[0], TypeError, `Expected ${iterableOf} but received an object`],
    [
      'a foreign param',
      [params[0], foreign],
      RangeError,
      'Expected a param of this optimizer for options.skip[1] but received an object',
    ],
    [
      'a name',
      ['w0'],
      RangeError,
      "Expected a param of this optimizer for options.skip[0] but received 'w0' of type string",
    ],
  ];

  test.each(cases)('%s', async (_label, skip, type, message) => {
    for (const k of ALL) writeGrad(params[k]!.grad, 0, k);
    const before = params.map((p) => snapshot(optimizer, p));
    const options = { skip } as OptimizerStepOptions;
    expect(() => optimizer.step(options)).toThrow(type);
    expect(() => optimizer.step(options)).toThrow(message);
    await expect(optimizer.stepAsync(options)).rejects.toThrow(message);
    expect(params.map((p) => snapshot(optimizer, p))).toEqual(before);
    expect(optimizer.schedulePosition).toBe(0);
  });

  test('the iterable is read once; an iterator that throws changes nothing', () => {
    for (const k of ALL) writeGrad(params[k]!.grad, 0, k);
    const before = params.map((p) => snapshot(optimizer, p));
    let reads = 0;
    const once = {
      get [Symbol.iterator]() {
        reads++;
        return () => [params[4]][Symbol.iterator]();
      },
    } as unknown as Iterable<Param>;
    const failing: Iterable<Param> = {
      *[Symbol.iterator]() {
        yield params[0]!;
        throw new Error('iterator failed');
      },
    };
    expect(() => optimizer.step({ skip: failing })).toThrow('iterator failed');
    expect(params.map((p) => snapshot(optimizer, p))).toEqual(before);
    optimizer.step({ skip: once });
    expect(reads).toBe(1);
    expect(params.map((p) => optimizer.state(p).step)).toEqual([1, 1, 1, 1, 0]);
  });

  test('skip during a stepAsync in flight is refused like any step', async () => {
    const done = optimizer.stepAsync({ skip: [params[0]!] });
    expect(() => optimizer.step({ skip: [params[1]!] })).toThrow(
      'Cannot step() while a stepAsync() of this optimizer is in flight; await it first',
    );
    await expect(optimizer.stepAsync({ skip: [params[1]!] })).rejects.toThrow(
      'Cannot stepAsync() while a stepAsync() of this optimizer is in flight; await it first',
    );
    await done;
  });

  test('adamwStep has no skip (no params list): an unknown key', () => {
    const n = 4;
    expect(() =>
      adamwStep(
        new Float32Array(n),
        new Float32Array(n),
        new Float32Array(n),
        new Float32Array(n),
        {
          lr: 1e-3,
          step: 1,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: 0,
          skip: [],
        } as unknown as Parameters<typeof adamwStep>[4],
      ),
    ).toThrow(/^Expected one of .* for the key options\.skip but received an unknown key$/);
  });
});

// ---------------------------------------------------------------------------------------------
// Checkpoints keep the differing step counts and resume bit for bit

test.each(SUBJECTS.map((s) => [s.label, s] as const))(
  '%s: save/load and stateDict/loadStateDict after steps with skip resume bit for bit',
  async (_label, subject) => {
    const params = makeParams();
    const optimizer = createOver(subject, params, 2);
    const skips = [[1], [1, 3], [], [0]];
    for (const [s, skip] of skips.entries()) {
      for (const k of ALL) writeGrad(params[k]!.grad, s, k);
      optimizer.step({ skip: skip.map((k) => params[k]!) });
    }
    const counts = params.map((p) => optimizer.state(p).step);
    expect(counts).toEqual([3, 2, 4, 3, 4]);
    const file = path.join(folder, `${subject.label.replaceAll(' ', '-')}.safetensors`);
    optimizer.save(file);
    const fromFileParams = params.map((p) => ({
      ...p,
      data: p.data.slice(),
      grad: p.grad.slice(),
    }));
    const fromFile = subject.load(file, fromFileParams);
    const fromDictParams = params.map((p) => ({
      ...p,
      data: p.data.slice(),
      grad: p.grad.slice(),
    }));
    const fromDict = createOver(subject, fromDictParams, 2);
    fromDict.loadStateDict(optimizer.stateDict());
    for (const [copy, copyParams] of [
      [fromFile, fromFileParams],
      [fromDict, fromDictParams],
    ] as const) {
      expect(copyParams.map((p) => copy.state(p).step)).toEqual(counts);
    }
    const more = [[2], [2], [], [4, 0]];
    for (const [s, skip] of more.entries()) {
      for (const set of [params, fromFileParams, fromDictParams]) {
        for (const k of ALL) writeGrad(set[k]!.grad, 10 + s, k);
      }
      const mode = s % 2 === 0 ? 'step' : 'stepAsync';
      await run(optimizer, mode, { skip: skip.map((k) => params[k]!) });
      await run(fromFile, mode, { skip: skip.map((k) => fromFileParams[k]!) });
      await run(fromDict, mode, { skip: skip.map((k) => fromDictParams[k]!) });
    }
    for (const k of ALL) {
      const expected = snapshot(optimizer, params[k]!);
      expect(difference(snapshot(fromFile, fromFileParams[k]!), expected)).toBeNull();
      expect(difference(snapshot(fromDict, fromDictParams[k]!), expected)).toBeNull();
    }
  },
);
