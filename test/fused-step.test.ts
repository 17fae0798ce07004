// The fused training step (docs/training.md): step({ clipGradNorm, gradScale,
// skipNonFinite }) equals clipping and unscaling the gradients separately and then stepping, bit for
// bit when the scale is a power of two (within float32 rounding otherwise), on every kernel and
// thread count; it never writes the gradients; a NaN or Inf anywhere with skipNonFinite changes
// nothing at all; the report says what happened; bad options are errors that change nothing.
import {
  Adam,
  AdamW,
  type AdamBase,
  adamwStep,
  adamwStepAsync,
  backend,
  gradNorm,
  type Param,
  type ParamGroup,
  type StepOptions,
} from '../lib';
import { native } from '../lib/core/native';
import { bitsOf, firstBitDifference } from './helpers/bits';
import { gaussian, mulberry32 } from './helpers/random';
import { f32 } from './helpers/float32-state';

const { fround } = Math;

const initialIsa = backend.isa;
afterAll(() => backend.setIsa(initialIsa));

// Lengths around the vector widths and the norm's 4096-element blocks, and enough elements in
// total (> 2 * 16K) for several threads.
const LENGTHS = [70001, 3, 1, 17, 4097, 65, 128, 33, 1000, 16, 15, 20000];

function makeParams(seed: number, gradScale = 1): Param[] {
  const random = mulberry32(seed);
  const normal = gaussian(random);
  return LENGTHS.map((length, k) => {
    const data = new Float32Array(length);
    const grad = new Float32Array(length);
    for (let i = 0; i < length; i++) {
      data[i] = normal() * 0.1;
      grad[i] = normal() * 10 ** (2 * random() - 3) * gradScale;
    }
    return { name: `p${k}`, data, grad };
  });
}

function copyParams(params: readonly Param[]): Param[] {
  return params.map((p) => ({ name: p.name!, data: p.data.slice(), grad: p.grad.slice() }));
}

type Kind = 'adamw' | 'adam';

// Two groups that between them use every variant flag: amsgrad and maximize, decoupled decay or
// Adam's L2.
function makeOptimizer(kind: Kind, params: Param[], threads?: number): AdamBase {
  const groups: ParamGroup[] = [
    { params: params.slice(0, 5), weightDecay: 0.1 },
    { params: params.slice(5), amsgrad: true, maximize: true, lr: 3e-3 },
  ];
  const options = threads === undefined ? { lr: 1e-2 } : { lr: 1e-2, threads };
  return kind === 'adamw' ? new AdamW(groups, options) : new Adam(groups, options);
}

/** Every array an optimizer touches or reads: params, grads (unless left out) and state. */
function snapshot(optimizer: AdamBase, params: readonly Param[], grads = true): Uint32Array[] {
  return bitsOf(
    params.flatMap((p) => {
      const s = f32(optimizer.state(p));
      return [
        p.data,
        ...(grads ? [p.grad] : []),
        s.expAvg,
        s.expAvgSq,
        ...(s.maxExpAvgSq ? [s.maxExpAvgSq] : []),
      ];
    }),
  );
}

/**
 * The unfused reference, as torch does it: unscale the gradients in float32 (g *= float(1/scale)),
 * measure their norm, multiply them by float(clipCoef) when it is below 1, then a plain step.
 */
function clipThenStep(optimizer: AdamBase, params: Param[], maxNorm: number, scale: number): void {
  const inverseScale = fround(1 / scale);
  for (const p of params) for (let i = 0; i < p.grad.length; i++) p.grad[i]! *= inverseScale;
  const clipCoef = maxNorm / (gradNorm(params) + 1e-6);
  if (clipCoef < 1) {
    const coef = fround(clipCoef);
    for (const p of params) for (let i = 0; i < p.grad.length; i++) p.grad[i]! *= coef;
  }
  optimizer.step();
}

describe('clipping and unscaling equal doing them separately', () => {
  test.each([
    ['adamw', 1],
    ['adamw', 1024],
    ['adam', 1],
    ['adam', 65536],
  ] as [Kind, number][])(
    '%s, gradScale %d: bit for bit over 3 steps, clipped and not',
    (kind, scale) => {
      const fusedParams = makeParams(1, scale);
      const referenceParams = copyParams(fusedParams);
      const fused = makeOptimizer(kind, fusedParams);
      const reference = makeOptimizer(kind, referenceParams);
      const norm = gradNorm(fusedParams) / scale;
      // Clipped, not clipped, clipped hard.
      for (const maxNorm of [norm / 3, norm * 2, norm / 1000]) {
        const grads = bitsOf(fusedParams.map((p) => p.grad));
        const report = fused.step({ clipGradNorm: maxNorm, gradScale: scale });
        clipThenStep(reference, referenceParams, maxNorm, scale);
        expect(report.clipped).toBe(maxNorm < norm);
        expect(report.gradNorm).toBe(norm);
        expect(report.skipped).toBe(false);
        // The gradients were only read.
        expect(firstBitDifference(bitsOf(fusedParams.map((p) => p.grad)), grads)).toBeNull();
        expect(
          firstBitDifference(
            snapshot(fused, fusedParams, false),
            snapshot(reference, referenceParams, false),
          ),
        ).toBeNull();
        // The next step starts from the same gradients.
        for (const [k, p] of referenceParams.entries()) p.grad.set(fusedParams[k]!.grad);
      }
    },
  );

  test('a scale that is not a power of two: equal within float32 rounding of the gradient', () => {
    const scale = 1000;
    const fusedParams = makeParams(2, scale);
    const referenceParams = copyParams(fusedParams);
    const fused = makeOptimizer('adamw', fusedParams);
    const reference = makeOptimizer('adamw', referenceParams);
    const maxNorm = gradNorm(fusedParams) / scale / 4;
    fused.step({ clipGradNorm: maxNorm, gradScale: scale });
    clipThenStep(reference, referenceParams, maxNorm, scale);
    let exact = 0;
    let worst = 0;
    let count = 0;
    for (const [k, p] of fusedParams.entries()) {
      const expected = f32(reference.state(referenceParams[k]!)).expAvg;
      const actual = f32(fused.state(p)).expAvg;
      for (let i = 0; i < actual.length; i++) {
        // m = 0.1 * g after one step: g*float(c/s) vs (g*float(1/s))*float(c), a rounding or
        // two apart, each at most 2^-24 relative.
        worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / Math.abs(expected[i]!));
        if (actual[i] === expected[i]) exact++;
        count++;
      }
    }
    expect(worst).toBeLessThanOrEqual(2 ** -22);
    // Mostly the same bits.
    expect(exact).toBeGreaterThan(count / 2);
  });

  test('no clipping (factor 1) is exactly the plain step; Infinity only measures', () => {
    for (const options of [{ clipGradNorm: 1e30 }, { clipGradNorm: Infinity }] as StepOptions[]) {
      const fusedParams = makeParams(3);
      const plainParams = copyParams(fusedParams);
      const fused = makeOptimizer('adamw', fusedParams);
      const plain = makeOptimizer('adamw', plainParams);
      const report = fused.step(options);
      plain.step();
      expect(report).toEqual({
        gradNorm: gradNorm(fusedParams),
        clipped: false,
        skipped: false,
        lr: 1e-2,
      });
      expect(
        firstBitDifference(snapshot(fused, fusedParams), snapshot(plain, plainParams)),
      ).toBeNull();
    }
  });

  test('gradScale alone unscales without measuring: gradNorm is null', () => {
    const fusedParams = makeParams(4, 256);
    const referenceParams = copyParams(fusedParams);
    const fused = makeOptimizer('adamw', fusedParams);
    const reference = makeOptimizer('adamw', referenceParams);
    expect(fused.step({ gradScale: 256 })).toEqual({
      gradNorm: null,
      clipped: false,
      skipped: false,
      lr: 1e-2,
    });
    clipThenStep(reference, referenceParams, Infinity, 256);
    expect(
      firstBitDifference(
        snapshot(fused, fusedParams, false),
        snapshot(reference, referenceParams, false),
      ),
    ).toBeNull();
  });
});

describe('every kernel and thread count', () => {
  async function run(threads: number, mode: 'sync' | 'async'): Promise<Uint32Array[]> {
    const params = makeParams(5, 8);
    const optimizer = makeOptimizer('adamw', params, threads);
    const norm = gradNorm(params) / 8;
    const norms: number[] = [];
    for (let step = 0; step < 3; step++) {
      const options = { clipGradNorm: norm / 2, gradScale: 8, skipNonFinite: true };
      const report = mode === 'sync' ? optimizer.step(options) : await optimizer.stepAsync(options);
      norms.push(report.gradNorm!);
    }
    return [...snapshot(optimizer, params), new Uint32Array(new Float64Array(norms).buffer)];
  }

  test.each(backend.available.map((isa) => [isa]))(
    '%s: 1, 2, 3 and 8 threads, sync and async, give the same bits as scalar on 1 thread',
    async (isa) => {
      backend.setIsa('scalar');
      const expected = await run(1, 'sync');
      backend.setIsa(isa);
      for (const threads of [1, 2, 3, 8]) {
        expect(firstBitDifference(await run(threads, 'sync'), expected)).toBeNull();
      }
      expect(firstBitDifference(await run(2, 'async'), expected)).toBeNull();
    },
  );
});

describe('skipNonFinite', () => {
  const bad: [string, number, number][] = [
    ['NaN', 0, 0],
    ['NaN', 0, 70000],
    ['Infinity', 4, 4096],
    ['-Infinity', 11, 19999],
    ['NaN', 2, 0],
  ];

  test.each(bad)(
    'a gradient of %s at params[%d][%d]: every array bit for bit unchanged, step counts too',
    (value, k, i) => {
      const params = makeParams(6);
      const optimizer = makeOptimizer('adamw', params);
      optimizer.step();
      optimizer.step({ clipGradNorm: 1, skipNonFinite: true });
      params[k]!.grad[i] = Number(value);
      const before = snapshot(optimizer, params);
      const report = optimizer.step({ clipGradNorm: 1, gradScale: 4, skipNonFinite: true });
      expect(report.skipped).toBe(true);
      expect(report.clipped).toBe(false);
      expect(report.gradNorm).toBe(value === 'NaN' ? NaN : Infinity);
      expect(report.reason).toMatch(new RegExp(`p${k}\\.grad holds a NaN or an infinity`));
      expect(firstBitDifference(snapshot(optimizer, params), before)).toBeNull();
      for (const p of params) expect(optimizer.state(p).step).toBe(2);
      // Once the gradient is finite again, steps resume.
      params[k]!.grad[i] = 0;
      expect(optimizer.step({ skipNonFinite: true }).skipped).toBe(false);
      for (const p of params) expect(optimizer.state(p).step).toBe(3);
    },
  );

  test('the reason names the first param with a non-finite gradient', () => {
    const params = makeParams(7);
    const optimizer = makeOptimizer('adam', params);
    params[9]!.grad[3] = Infinity;
    params[6]!.grad[0] = NaN;
    expect(optimizer.step({ skipNonFinite: true }).reason).toMatch(
      /^non-finite gradient: p6\.grad/,
    );
  });

  test('stepAsync skips the same way', async () => {
    const params = makeParams(8);
    const optimizer = makeOptimizer('adamw', params, 2);
    await optimizer.stepAsync();
    params[0]!.grad[12345] = NaN;
    const before = snapshot(optimizer, params);
    const report = await optimizer.stepAsync({ skipNonFinite: true });
    expect(report.skipped).toBe(true);
    expect(report.gradNorm).toBeNaN();
    expect(firstBitDifference(snapshot(optimizer, params), before)).toBeNull();
    expect(optimizer.state(params[0]!).step).toBe(1);
  });

  test('without it, NaN propagates as in PyTorch: elementwise, or everywhere through a NaN clip', () => {
    const params = makeParams(9);
    const optimizer = makeOptimizer('adamw', params);
    params[0]!.grad[5] = NaN;
    const report = optimizer.step();
    expect(report.skipped).toBe(false);
    expect(params[0]!.data[5]).toBeNaN();
    expect(params[0]!.data.filter(Number.isNaN).length).toBe(1);
    // clip_grad_norm_ multiplies by clamp(maxNorm / (NaN + 1e-6), max=1) = NaN.
    const clipped = optimizer.step({ clipGradNorm: 1 });
    expect(clipped).toMatchObject({ gradNorm: NaN, clipped: true, skipped: false });
    for (const p of params) expect(p.data.every(Number.isNaN)).toBe(true);
  });
});

describe('adamwStep and adamwStepAsync take the same options', () => {
  const hyper = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

  test('equal to the optimizer with one param, bit for bit, and report lr', async () => {
    const [param] = makeParams(10, 512);
    const viaClass = copyParams([param!]);
    const optimizer = new AdamW(viaClass, {
      lr: hyper.lr,
      betas: [hyper.beta1, hyper.beta2],
      eps: hyper.eps,
      weightDecay: hyper.weightDecay,
    });
    const expAvg = new Float32Array(param!.data.length);
    const expAvgSq = new Float32Array(param!.data.length);
    const options = { clipGradNorm: 0.01, gradScale: 512 };
    for (let step = 1; step <= 3; step++) {
      const report =
        step === 2
          ? await adamwStepAsync(param!.data, param!.grad, expAvg, expAvgSq, {
              ...hyper,
              ...options,
              step,
            })
          : adamwStep(param!.data, param!.grad, expAvg, expAvgSq, { ...hyper, ...options, step });
      expect(report).toEqual(optimizer.step(options));
      expect(report.lr).toBe(1e-3);
    }
    const state = f32(optimizer.state(viaClass[0]!));
    expect(
      firstBitDifference(
        bitsOf([param!.data, expAvg, expAvgSq]),
        bitsOf([viaClass[0]!.data, state.expAvg, state.expAvgSq]),
      ),
    ).toBeNull();
  });

  test('skipNonFinite leaves the arrays unchanged', () => {
    const [param] = makeParams(11);
    const expAvg = new Float32Array(param!.data.length).fill(0.5);
    const expAvgSq = new Float32Array(param!.data.length).fill(0.25);
    param!.grad[7] = -Infinity;
    const before = bitsOf([param!.data, param!.grad, expAvg, expAvgSq]);
    const report = adamwStep(param!.data, param!.grad, expAvg, expAvgSq, {
      ...hyper,
      step: 1,
      skipNonFinite: true,
    });
    expect(report).toMatchObject({ skipped: true, gradNorm: Infinity });
    expect(report.reason).toMatch(/grad holds a NaN or an infinity/);
    expect(firstBitDifference(bitsOf([param!.data, param!.grad, expAvg, expAvgSq]), before)).toBe(
      null,
    );
  });

  test('a bare step reports no norm', () => {
    const a = new Float32Array(3);
    expect(
      adamwStep(a, new Float32Array(3), new Float32Array(3), new Float32Array(3), {
        ...hyper,
        step: 1,
      }),
    ).toEqual({ gradNorm: null, clipped: false, skipped: false, lr: 1e-3 });
  });
});

describe('bad options are errors that change nothing', () => {
  const cases: [unknown, ErrorConstructor, RegExp][] = [
    [{ clipGradNorm: -1 }, RangeError, /options\.clipGradNorm/],
    [{ clipGradNorm: NaN }, RangeError, /options\.clipGradNorm/],
    [{ clipGradNorm: '1' }, TypeError, /options\.clipGradNorm/],
    [{ gradScale: 0 }, RangeError, /options\.gradScale/],
    [{ gradScale: -2 }, RangeError, /options\.gradScale/],
    [{ gradScale: Infinity }, RangeError, /options\.gradScale/],
    [{ gradScale: NaN }, RangeError, /options\.gradScale/],
    [{ skipNonFinite: 1 }, TypeError, /options\.skipNonFinite/],
    [{ clipNorm: 1 }, TypeError, /for the key options\.clipNorm but received an unknown key/],
    [5, TypeError, /for options/],
  ];

  test.each(cases)('%j', async (options, type, message) => {
    const params = makeParams(12);
    const optimizer = makeOptimizer('adamw', params);
    optimizer.step();
    const before = snapshot(optimizer, params);
    expect(() => optimizer.step(options as StepOptions)).toThrow(type);
    expect(() => optimizer.step(options as StepOptions)).toThrow(message);
    await expect(optimizer.stepAsync(options as StepOptions)).rejects.toThrow(type);
    expect(firstBitDifference(snapshot(optimizer, params), before)).toBeNull();
    expect(optimizer.state(params[0]!).step).toBe(1);
    if (typeof options !== 'object') return;
    const a = new Float32Array(2);
    expect(() =>
      adamwStep(a, new Float32Array(2), new Float32Array(2), new Float32Array(2), {
        step: 1,
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0,
        ...options,
      }),
    ).toThrow(message);
  });
});

describe('the native control argument is checked before anything changes', () => {
  test.each([
    ['a number', 0, 'TypeError'],
    ['a Float32Array', new Float32Array(8), 'TypeError'],
    ['7 elements', new Float64Array(7), 'TypeError'],
    ['maxNorm NaN', Float64Array.of(NaN, 1, 1, 0, 0, 0, 0, 0), 'RangeError'],
    ['maxNorm -1', Float64Array.of(-1, 1, 1, 0, 0, 0, 0, 0), 'RangeError'],
    ['gradScale 0', Float64Array.of(1, 0, 1, 0, 0, 0, 0, 0), 'RangeError'],
    ['gradScale Infinity', Float64Array.of(1, Infinity, 1, 0, 0, 0, 0, 0), 'RangeError'],
    ['options 8', Float64Array.of(1, 1, 8, 0, 0, 0, 0, 0), 'RangeError'],
    // optionGivenGradFactor (4) is only valid alone (test/native-zero.test.ts), with a finite factor
    ['options 5', Float64Array.of(1, 1, 5, 0, 0.5, 0, 0, 0), 'RangeError'],
    ['options 4, gradFactor NaN', Float64Array.of(1, 1, 4, 0, NaN, 0, 0, 0), 'RangeError'],
    ['options 1.5', Float64Array.of(1, 1, 1.5, 0, 0, 0, 0, 0), 'RangeError'],
  ] as [string, unknown, string][])('%s', (_, control, type) => {
    const arrays = [0, 1, 2, 3].map(() => new Float32Array(5).fill(0.5));
    const before = bitsOf(arrays);
    const scalars = new Float64Array(native.ops.adamw!.scalars.length).fill(0.5);
    const flags = new Uint32Array(1);
    const plan = native.createPlan('adamw', [...arrays, null, null]);
    const call = [plan, scalars, flags, new Uint32Array(1), 1, control] as Parameters<
      typeof native.runPlan
    >;
    // The addon's errors come from Node's own realm, not jest's: compare by name.
    const errorOf = (run: () => unknown): unknown => {
      try {
        run();
      } catch (error) {
        return error;
      }
      return undefined;
    };
    expect(errorOf(() => native.runPlan(...call))).toMatchObject({ name: type });
    expect(errorOf(() => native.runPlanAsync(...call))).toMatchObject({ name: type });
    const anyArguments = native.runPlan as (...args: unknown[]) => void;
    // tensorSeeds (the seventh) undefined is no seeds: the same error as without it.
    expect(errorOf(() => anyArguments(...call, undefined))).toMatchObject({ name: type });
    expect(errorOf(() => anyArguments(...call, undefined, undefined))).toMatchObject({
      name: 'TypeError',
    });
    expect(firstBitDifference(bitsOf(arrays), before)).toBeNull();
    expect(native.control.length).toBe(8);
  });
});
