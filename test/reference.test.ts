// The kernels against the float64 reference (test/helpers/reference.ts, PyTorch 1.13's formula) over
// hundreds of steps, and NaN/Inf gradients propagating exactly as torch 1.13 propagates them
// (shared/golden/README.md, "NaN / Inf behaviour of torch 1.13").
import { Adam, AdamW, adamwStep, backend, type Param } from '../lib';
import { ReferenceAdam, type RefHyper } from './helpers/reference';
import { float32Bits, gaussian, hex, mulberry32 } from './helpers/random';
import { f32 } from './helpers/float32-state';

// Math is read once: a global lookup inside a hot loop is ~8x slower in jest's vm sandbox.
const { abs, cos, fround, min, PI, sqrt } = Math;
const { isNaN: isNaNNumber } = Number;

const initialIsa = backend.isa;
afterAll(() => backend.setIsa(initialIsa));

// ---------------------------------------------------------------------------------------------
// Tolerance. The kernel rounds params and moments to float32 after every step; the reference keeps
// them in float64. The rule is the golden README's (shared/golden/README.md, "Recommended
// tolerance", under which torch's own float32 results pass against float64 with >= 2.6x headroom),
// with one term added for runs 10x longer than the golden ones:
//
//  - params: d <= (1e-6 + 2e-7*t)*|e| + sum over steps s <= t of lr_s*(1e-5 + 1.5*delta2*min(s, 1/(1-beta2))).
//    Rounding p*(1 - lr*wd) and p + update to float32 costs up to ~0.7 ULP (<= 8.3e-8*|p|) per
//    step, and as p moves by only ~lr per step that error keeps its sign and grows linearly:
//    2e-7*t leaves 2.4x headroom. Near p = 0 the update itself (|update| <~ 3*lr) is good to a few
//    ULPs, < 1e-6*lr per step: 1e-5*lr leaves 10x. The added term: like torch, the kernel rounds
//    beta2 and 1 - beta2 to float32 separately, and their sum misses 1 by delta2 (1.3e-8 for
//    0.999, 1.7e-8 for 0.9999). Each step of memory scales v by that much, so after s steps v is
//    off by up to delta2*min(s, 1/(1-beta2)) relative (1.7e-5 after 1000 steps at 0.9999), which
//    moves an update of <= 3*lr by half that: 1.5*lr*delta2*min(...). It is systematic, so it adds
//    up over the steps (the 0.9999 case below reaches ratio 0.85 without it).
//  - expAvg: d <= 5e-5*(|e| + sqrt(E)), E the reference expAvgSq. m crosses zero whenever the
//    gradient changes sign, so its error is measured in units of the Adam denominator.
//  - expAvgSq, maxExpAvgSq: d <= 5e-5*|e|. The delta2 drift above is <= 1.7e-5 here, 3x inside.
// Elements whose gradient has always been exactly 0 have allowance 0 on the moments: they must be
// exactly 0 (-0 counts as 0). Every bound is checked after every step, so an error in the first
// steps meets the tight early bound, not the loose one of step 1000.
const PARAMS_RTOL = 1e-6;
const PARAMS_RTOL_PER_STEP = 2e-7;
const PARAMS_ATOL_PER_LR = 1e-5;
const UPDATE_OVER_LR = 3; // |update| / lr, as in the golden README
const MOMENT_RTOL = 5e-5;

/** How far float32(beta) + float32(1 - beta) misses 1 (both rounded from the double beta). */
function coefficientSumError(beta: number): number {
  return abs(1 - (fround(beta) + fround(1 - beta)));
}

interface KernelState {
  param: Float32Array;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
  maxExpAvgSq: Float32Array;
}

interface Worst {
  ratio: number;
  where: string;
}

/** Updates `worst` with the largest |actual - reference| / allowed of this step; <= 1 passes. */
function compareWithReference(
  actual: KernelState,
  reference: ReferenceAdam,
  t: number,
  paramsAtol: number,
  worst: Worst,
): void {
  const n = actual.param.length;
  const paramsRtol = PARAMS_RTOL + PARAMS_RTOL_PER_STEP * t;
  const quantities: [string, Float32Array, Float64Array][] = [
    ['param', actual.param, reference.params],
    ['expAvg', actual.expAvg, reference.expAvg],
    ['expAvgSq', actual.expAvgSq, reference.expAvgSq],
  ];
  if (reference.hyper.amsgrad) {
    quantities.push(['maxExpAvgSq', actual.maxExpAvgSq, reference.maxExpAvgSq]);
  }
  for (const [name, a, e] of quantities) {
    for (let i = 0; i < n; i++) {
      const d = abs(a[i]! - e[i]!);
      if (d === 0) continue;
      let allowed: number;
      if (name === 'param') allowed = paramsRtol * abs(e[i]!) + paramsAtol;
      else if (name === 'expAvg')
        allowed = MOMENT_RTOL * (abs(e[i]!) + sqrt(reference.expAvgSq[i]!));
      else allowed = MOMENT_RTOL * abs(e[i]!);
      const ratio = isNaNNumber(d) ? Infinity : d / allowed;
      if (!(ratio <= worst.ratio)) {
        worst.ratio = ratio;
        worst.where = `step ${t} ${name}[${i}]: kernel ${a[i]!}, reference ${e[i]!}`;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios: long runs with realistic gradients (a per-element signal plus noise, per-element
// scales over four decades, some elements that never get a gradient).

interface Scenario {
  name: string;
  hyper: RefHyper;
  steps: number;
  n: number;
  /** lr of step t (1-based); default the constant hyper.lr. */
  lrAt?: (t: number) => number;
  seed: number;
}

const ADAMW_DEFAULTS: RefHyper = {
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 1e-2,
  amsgrad: false,
  maximize: false,
  decoupled: true,
};

const SCENARIOS: Scenario[] = [
  { name: 'AdamW defaults, 1000 steps', hyper: ADAMW_DEFAULTS, steps: 1000, n: 67, seed: 1 },
  {
    name: 'AdamW with amsgrad and weightDecay 0.1, 500 steps',
    hyper: { ...ADAMW_DEFAULTS, weightDecay: 0.1, amsgrad: true },
    steps: 500,
    n: 67,
    seed: 2,
  },
  {
    name: 'AdamW with maximize, 300 steps',
    hyper: { ...ADAMW_DEFAULTS, maximize: true },
    steps: 300,
    n: 33,
    seed: 3,
  },
  {
    name: 'Adam with L2 weightDecay 0.1, 500 steps',
    hyper: { ...ADAMW_DEFAULTS, weightDecay: 0.1, decoupled: false },
    steps: 500,
    n: 67,
    seed: 4,
  },
  {
    name: 'Adam with amsgrad, maximize and L2 0.01, 300 steps',
    hyper: { ...ADAMW_DEFAULTS, amsgrad: true, maximize: true, decoupled: false },
    steps: 300,
    n: 33,
    seed: 5,
  },
  {
    name: 'AdamW, warmup then cosine lr schedule, 600 steps',
    hyper: { ...ADAMW_DEFAULTS, lr: 3e-3, weightDecay: 0.05 },
    steps: 600,
    n: 67,
    lrAt: (t) => (t <= 50 ? (3e-3 * t) / 50 : 1.5e-3 * (1 + cos((PI * (t - 50)) / 550))),
    seed: 6,
  },
  {
    name: 'AdamW with beta2 0.9999 and eps 1e-6, 1000 steps',
    hyper: { ...ADAMW_DEFAULTS, beta2: 0.9999, eps: 1e-6 },
    steps: 1000,
    n: 67,
    seed: 7,
  },
];

/** Gradient source of a scenario: the same numbers for every run with the same seed. */
function gradientSource(s: Scenario): (reference: ReferenceAdam) => Float32Array {
  const random = mulberry32(s.seed);
  const normal = gaussian(random);
  const scale = Float64Array.from({ length: s.n }, (_, i) =>
    i % 11 === 10 ? 0 : 10 ** (4 * random() - 3),
  );
  const signal = Float64Array.from({ length: s.n }, () => normal());
  const { weightDecay, decoupled } = s.hyper;
  return (reference) => {
    const grad = new Float32Array(s.n);
    for (let i = 0; i < s.n; i++) {
      let g = scale[i]! * (signal[i]! + normal());
      // As in the golden set: where g + wd*p nearly cancels, float32 rounding of that sum, not
      // the optimizer, would dominate m and v; flip g there (Adam with L2 only).
      const p = reference.params[i]!;
      if (!decoupled && abs(g + weightDecay * p) < (abs(g) + weightDecay * abs(p)) / 32) g = -g;
      grad[i] = g;
    }
    return grad;
  };
}

function newKernelState(params0: Float32Array): KernelState {
  const n = params0.length;
  return {
    param: params0.slice(),
    expAvg: new Float32Array(n),
    expAvgSq: new Float32Array(n),
    maxExpAvgSq: new Float32Array(n),
  };
}

/** What a run may get wrong on purpose, to show that the tolerance catches it. */
type Mistake = 'none' | 'step count one ahead' | 'lr one step late' | 'decay coupling swapped';

function kernelStep(
  state: KernelState,
  grad: Float32Array,
  h: RefHyper,
  t: number,
  lr: number,
): void {
  adamwStep(state.param, grad, state.expAvg, state.expAvgSq, {
    step: t,
    lr,
    beta1: h.beta1,
    beta2: h.beta2,
    eps: h.eps,
    weightDecay: h.weightDecay,
    maximize: h.maximize,
    decoupled: h.decoupled,
    ...(h.amsgrad ? { maxExpAvgSq: state.maxExpAvgSq } : {}),
  });
}

/**
 * Runs a scenario on every available kernel (through adamwStep) in lockstep with the reference and
 * returns each kernel's worst ratio. With `classCheck`, also runs the class API on the first
 * kernel and requires it to match adamwStep bit for bit after every step.
 */
function runScenario(
  s: Scenario,
  mistake: Mistake = 'none',
  steps = s.steps,
  classCheck = false,
): Record<string, Worst> {
  const random = mulberry32(s.seed + 1000);
  const normal = gaussian(random);
  const params0 = Float32Array.from({ length: s.n }, () => normal());
  const reference = new ReferenceAdam(params0, s.hyper);
  const nextGrad = gradientSource(s);
  const lrAt = s.lrAt ?? (() => s.hyper.lr);
  const isas = backend.available;
  const states = isas.map(() => newKernelState(params0));
  const worst = Object.fromEntries(isas.map((isa) => [isa, { ratio: 0, where: '' }]));

  const classParam: Param = { data: params0.slice(), grad: new Float32Array(s.n) };
  const Optimizer = s.hyper.decoupled ? AdamW : Adam;
  const optimizer = new Optimizer([classParam], {
    lr: lrAt(1),
    betas: [s.hyper.beta1, s.hyper.beta2],
    eps: s.hyper.eps,
    weightDecay: s.hyper.weightDecay,
    amsgrad: s.hyper.amsgrad,
    maximize: s.hyper.maximize,
  });

  const delta2 = coefficientSumError(s.hyper.beta2);
  const memory = 1 / (1 - s.hyper.beta2);
  let paramsAtol = 0;
  for (let t = 1; t <= steps; t++) {
    const lr = lrAt(t);
    paramsAtol += lr * (PARAMS_ATOL_PER_LR + (UPDATE_OVER_LR / 2) * delta2 * min(t, memory));
    const grad = nextGrad(reference);
    reference.step(grad, lr);
    const h =
      mistake === 'decay coupling swapped'
        ? { ...s.hyper, decoupled: !s.hyper.decoupled }
        : s.hyper;
    const kernelT = mistake === 'step count one ahead' ? t + 1 : t;
    const kernelLr = mistake === 'lr one step late' ? lrAt(t > 1 ? t - 1 : 1) : lr;
    isas.forEach((isa, k) => {
      backend.setIsa(isa);
      kernelStep(states[k]!, grad, h, kernelT, kernelLr);
      compareWithReference(states[k]!, reference, t, paramsAtol, worst[isa]!);
    });
    if (classCheck) {
      backend.setIsa(isas[0]!);
      classParam.grad.set(grad);
      optimizer.paramGroups[0]!.lr = lr;
      optimizer.step();
      const classState = f32(optimizer.state(classParam));
      const functional = states[0]!;
      const pairs: [string, Float32Array, Float32Array][] = [
        ['param', classParam.data, functional.param],
        ['expAvg', classState.expAvg, functional.expAvg],
        ['expAvgSq', classState.expAvgSq, functional.expAvgSq],
      ];
      if (classState.maxExpAvgSq !== undefined) {
        pairs.push(['maxExpAvgSq', classState.maxExpAvgSq, functional.maxExpAvgSq]);
      }
      for (const [name, a, b] of pairs) {
        const bitsA = float32Bits(a);
        const bitsB = float32Bits(b);
        const i = bitsA.findIndex((bits, j) => bits !== bitsB[j]);
        if (i >= 0) {
          throw new Error(
            `class API differs from adamwStep at step ${t} in ${name}[${i}]: ` +
              `${hex(bitsA[i]!)} vs ${hex(bitsB[i]!)}`,
          );
        }
      }
      if (classState.step !== t) throw new Error(`state.step ${classState.step}, expected ${t}`);
    }
  }
  return worst;
}

describe('every kernel stays within float32 rounding of the float64 reference', () => {
  test.each(SCENARIOS.map((s) => [s.name, s]))('%s', (_name, s) => {
    const worst = runScenario(s, 'none', s.steps, true);
    const verdicts = Object.fromEntries(
      Object.entries(worst).map(([isa, w]) => [isa, w.ratio <= 1 ? 'within tolerance' : w]),
    );
    expect(verdicts).toEqual(
      Object.fromEntries(backend.available.map((isa) => [isa, 'within tolerance'])),
    );
    // Not vacuous: the kernels differ from the float64 reference, by float32 rounding.
    for (const w of Object.values(worst)) expect(w.ratio).toBeGreaterThan(0);
  });

  // The same check must reject a kernel that is subtly wrong, within the first 50 steps.
  test.each<[Mistake, string]>([
    ['step count one ahead', 'AdamW defaults, 1000 steps'],
    ['lr one step late', 'AdamW, warmup then cosine lr schedule, 600 steps'],
    ['decay coupling swapped', 'AdamW with amsgrad and weightDecay 0.1, 500 steps'],
    ['decay coupling swapped', 'Adam with L2 weightDecay 0.1, 500 steps'],
  ])('the tolerance rejects "%s" (%s)', (mistake, name) => {
    const s = SCENARIOS.find((scenario) => scenario.name === name)!;
    const worst = runScenario(s, mistake, 50);
    for (const w of Object.values(worst)) expect(w.ratio).toBeGreaterThan(1);
  });
});

// ---------------------------------------------------------------------------------------------
// NaN and Inf gradients (shared/golden/README.md, "NaN / Inf behaviour of torch 1.13"): not an
// error, no skipped step; the bad element's m, v and param become NaN (Inf: m = +-Inf, v = +Inf,
// param = NaN) and stay so; every other element is bit-identical to a run without the bad value.

interface PropagationConfig {
  name: string;
  optimizer: 'AdamW' | 'Adam';
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
}

const PROPAGATION_CONFIGS: PropagationConfig[] = [
  { name: 'AdamW', optimizer: 'AdamW', weightDecay: 0.01, amsgrad: false, maximize: false },
  {
    name: 'AdamW + amsgrad',
    optimizer: 'AdamW',
    weightDecay: 0.01,
    amsgrad: true,
    maximize: false,
  },
  { name: 'Adam + L2 0.1', optimizer: 'Adam', weightDecay: 0.1, amsgrad: false, maximize: false },
  {
    name: 'Adam + L2 + amsgrad',
    optimizer: 'Adam',
    weightDecay: 0.1,
    amsgrad: true,
    maximize: false,
  },
  {
    name: 'AdamW + maximize',
    optimizer: 'AdamW',
    weightDecay: 0.01,
    amsgrad: false,
    maximize: true,
  },
];

const N = 37; // a 32-element vector body on every SIMD width, then a tail
const STEPS = 4;
const BAD_STEP = 2;
// Element -> the bad gradient it gets at BAD_STEP: some in the vector body, some in the tails.
const BAD_GRADS = new Map<number, number>([
  [3, NaN],
  [17, Infinity],
  [30, -Infinity],
  [34, NaN],
  [36, Infinity],
]);

interface Snapshot {
  param: Float32Array;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
  maxExpAvgSq: Float32Array | undefined;
}

/** Runs STEPS class-API steps; returns a snapshot after each. `bad` puts BAD_GRADS in at BAD_STEP. */
function runWithGrads(
  c: PropagationConfig,
  bad: boolean,
  params0: Float32Array,
  grads: Float32Array[],
): Snapshot[] {
  const param: Param = { data: params0.slice(), grad: new Float32Array(N) };
  const Optimizer = c.optimizer === 'AdamW' ? AdamW : Adam;
  const optimizer = new Optimizer([param], {
    weightDecay: c.weightDecay,
    amsgrad: c.amsgrad,
    maximize: c.maximize,
  });
  return grads.map((grad, k) => {
    param.grad.set(grad);
    if (bad && k + 1 === BAD_STEP) for (const [i, g] of BAD_GRADS) param.grad[i] = g;
    optimizer.step(); // returns normally: no exception, no skipped step
    const s = f32(optimizer.state(param));
    if (s.step !== k + 1) throw new Error(`state.step is ${s.step} after step ${k + 1}`);
    return {
      param: param.data.slice(),
      expAvg: s.expAvg.slice(),
      expAvgSq: s.expAvgSq.slice(),
      maxExpAvgSq: s.maxExpAvgSq?.slice(),
    };
  });
}

/** 'NaN', '+Inf', '-Inf' or 'finite'. */
function kind(x: number): string {
  if (isNaNNumber(x)) return 'NaN';
  if (x === Infinity) return '+Inf';
  if (x === -Infinity) return '-Inf';
  return 'finite';
}

describe.each(PROPAGATION_CONFIGS.map((c) => [c.name, c]))(
  'NaN/Inf gradients under %s propagate as in torch 1.13',
  (_name, c) => {
    const random = mulberry32(99);
    const normal = gaussian(random);
    const params0 = Float32Array.from({ length: N }, () => normal());
    const grads = Array.from({ length: STEPS }, () =>
      Float32Array.from({ length: N }, () => normal()),
    );

    test.each(backend.available.map((isa) => [isa]))('on %s', (isa) => {
      backend.setIsa(isa);
      const clean = runWithGrads(c, false, params0, grads);
      const bad = runWithGrads(c, true, params0, grads);

      // Every element without a bad gradient: bit-identical to the clean run, at every step.
      for (let k = 0; k < STEPS; k++) {
        for (const q of ['param', 'expAvg', 'expAvgSq', 'maxExpAvgSq'] as const) {
          const a = bad[k]![q];
          const b = clean[k]![q];
          if (a === undefined || b === undefined) continue;
          const bitsA = float32Bits(a);
          const bitsB = float32Bits(b);
          for (const i of BAD_GRADS.keys()) bitsA[i] = bitsB[i] = 0;
          expect({ step: k + 1, q, bits: [...bitsA].map(hex) }).toEqual({
            step: k + 1,
            q,
            bits: [...bitsB].map(hex),
          });
        }
      }

      // The bad elements: before BAD_STEP equal to the clean run; from it on, torch's values.
      for (const [i, g] of BAD_GRADS) {
        const direction = c.maximize ? -1 : 1;
        const observed: string[] = [];
        const expected: string[] = [];
        for (let k = 0; k < STEPS; k++) {
          const t = k + 1;
          const s = bad[k]!;
          observed.push(
            `step ${t}: param ${kind(s.param[i]!)}, expAvg ${kind(s.expAvg[i]!)}, ` +
              `expAvgSq ${kind(s.expAvgSq[i]!)}` +
              (c.amsgrad ? `, maxExpAvgSq ${kind(s.maxExpAvgSq![i]!)}` : ''),
          );
          let param = 'finite';
          let m = 'finite';
          let v = 'finite';
          if (t >= BAD_STEP) {
            if (isNaNNumber(g)) {
              param = m = v = 'NaN';
            } else {
              param = 'NaN'; // Inf / Inf
              // The Inf stays in the moments; with Adam's L2 the next step adds wd * NaN to g.
              const l2Poisoned = c.optimizer === 'Adam' && t > BAD_STEP;
              m = l2Poisoned ? 'NaN' : g * direction > 0 ? '+Inf' : '-Inf';
              v = l2Poisoned ? 'NaN' : '+Inf';
            }
          }
          // torch.maximum propagates NaN; the running max of +Inf is +Inf.
          const vmax = v === 'finite' ? 'finite' : isNaNNumber(g) || v === 'NaN' ? 'NaN' : '+Inf';
          expected.push(
            `step ${t}: param ${param}, expAvg ${m}, expAvgSq ${v}` +
              (c.amsgrad ? `, maxExpAvgSq ${vmax}` : ''),
          );
        }
        expect({ element: i, grad: g, steps: observed }).toEqual({
          element: i,
          grad: g,
          steps: expected,
        });
        // Before the bad step, the element is the clean run's.
        for (let k = 0; k + 1 < BAD_STEP; k++) {
          expect(hex(float32Bits(bad[k]!.param)[i]!)).toBe(hex(float32Bits(clean[k]!.param)[i]!));
        }
      }
    });
  },
);

describe('a NaN param (for completeness)', () => {
  test.each(backend.available.map((isa) => [isa]))(
    'on %s: AdamW keeps the moments finite, Adam with L2 makes them NaN; the param stays NaN',
    (isa) => {
      backend.setIsa(isa);
      const result: Record<string, string> = {};
      for (const Optimizer of [AdamW, Adam]) {
        const param: Param = { data: Float32Array.of(NaN, 1), grad: Float32Array.of(0.5, 0.5) };
        const optimizer = new Optimizer([param], { weightDecay: 0.1 });
        for (let t = 1; t <= 3; t++) optimizer.step();
        const s = f32(optimizer.state(param));
        result[Optimizer.name] =
          `param ${kind(param.data[0]!)}, expAvg ${kind(s.expAvg[0]!)}, ` +
          `expAvgSq ${kind(s.expAvgSq[0]!)}; other element ${kind(param.data[1]!)}`;
      }
      expect(result).toEqual({
        AdamW: 'param NaN, expAvg finite, expAvgSq finite; other element finite',
        Adam: 'param NaN, expAvg NaN, expAvgSq NaN; other element finite',
      });
    },
  );
});
