// The schedules after the first four (issue 15): lambdaSchedule, exponential, multiStep, oneCycle
// and reduceOnPlateau. Their factors are torch's (LambdaLR, ExponentialLR, MultiStepLR, OneCycleLR,
// ReduceLROnPlateau) worked out by hand or by a line-by-line transcription of torch's code; bad
// options and bad lambda values are errors that change nothing; attached, they drive the lrs step
// by step (reduceOnPlateau metric by metric), skipped steps do not advance them, and state dicts
// and checkpoint files resume them bit for bit: a lambda schedule's position (its function comes
// from the optimizer loading it) and reduceOnPlateau's best metric, counters and factor.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  AdamW,
  cosineWithWarmup,
  exponential,
  lambdaSchedule,
  type LrSchedule,
  lrFactor,
  multiStep,
  oneCycle,
  type OneCycleSchedule,
  type Param,
  reduceOnPlateau,
  type StateDtype,
} from '../lib';
import { bitsOf, firstBitDifference } from './helpers/bits';
import { f32 } from './helpers/float32-state';

let folder: string;
beforeAll(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-schedules-more-'));
});
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});

function factors(schedule: LrSchedule, count: number): number[] {
  return Array.from({ length: count }, (_, t) => lrFactor(schedule, t));
}

describe('closed forms, as torch computes them', () => {
  test('exponential: gamma^t (ExponentialLR)', () => {
    expect(factors(exponential({ gamma: 0.5 }), 5)).toEqual([1, 0.5, 0.25, 0.125, 0.0625]);
    expect(lrFactor(exponential({ gamma: 0.9 }), 3)).toBeCloseTo(0.729, 15);
    expect(factors(exponential({ gamma: 0 }), 3)).toEqual([1, 0, 0]);
  });

  test('multiStep: gamma^(milestones reached) (MultiStepLR, bisect_right)', () => {
    const g = 0.1;
    expect(factors(multiStep({ milestones: [2, 5, 6], gamma: g }), 9)).toEqual([
      1,
      1,
      g,
      g,
      g,
      g ** 2,
      g ** 3,
      g ** 3,
      g ** 3,
    ]);
    expect(factors(multiStep({ milestones: [], gamma: g }), 3)).toEqual([1, 1, 1]);
    expect(lrFactor(multiStep({ milestones: [1], gamma: 0.5 }), 1e9)).toBe(0.5);
  });

  test('lambdaSchedule: the function of the position (LambdaLR)', () => {
    const schedule = lambdaSchedule((t) => 0.95 ** t);
    expect(factors(schedule, 4)).toEqual([1, 0.95, 0.95 ** 2, 0.95 ** 3]);
    expect(schedule.type).toBe('lambda');
    expect(Object.isFrozen(schedule)).toBe(true);
  });

  // totalSteps 20, pctStart 0.3: phase 1 ends at step 0.3 * 20 - 1 = 5, phase 2 at 19; initial
  // 1/25 = 0.04, final 0.04 / 1e4 = 4e-6. cos(pi/5) = (1 + sqrt 5) / 4.
  test('oneCycle, cos: hand-computed values of torch’s formula', () => {
    const schedule = oneCycle({ totalSteps: 20 });
    const final = 0.04 / 1e4;
    const cosPiOver5 = (1 + Math.sqrt(5)) / 4;
    const expected: [number, number][] = [
      [0, 0.04], // pct 0: the initial lr
      [1, 1 + ((0.04 - 1) / 2) * (cosPiOver5 + 1)], // pct 1/5
      [5, 1], // the peak: max_lr, the base lr
      [12, final + ((1 - final) / 2) * 1], // phase 2, pct 7/14: cos(pi/2) = 0
      [19, final], // the end of the cycle
      [20, final], // held (torch raises one step further)
      [1000, final],
    ];
    for (const [t, factor] of expected) expect(lrFactor(schedule, t)).toBeCloseTo(factor, 15);
  });

  test('oneCycle, linear: hand-computed values', () => {
    const schedule = oneCycle({ totalSteps: 20, anneal: 'linear', divFactor: 10 });
    const final = 0.1 / 1e4;
    const expected: [number, number][] = [
      [0, 0.1],
      [1, 0.1 + 0.9 * 0.2],
      [4, 0.1 + 0.9 * 0.8],
      [5, 1],
      [12, 1 + (final - 1) * 0.5],
      [19, final],
      [25, final],
    ];
    for (const [t, factor] of expected) expect(lrFactor(schedule, t)).toBeCloseTo(factor, 15);
    // Phase boundaries that are not integers: totalSteps 10, pctStart 0.25 ends phase 1 at 1.5.
    const odd = oneCycle({ totalSteps: 10, pctStart: 0.25, anneal: 'linear' });
    expect(lrFactor(odd, 1)).toBeCloseTo(0.04 + 0.96 * (1 / 1.5), 15);
    expect(lrFactor(odd, 2)).toBeCloseTo(1 + (4e-6 - 1) * (0.5 / 7.5), 15);
  });

  // torch's OneCycleLR.get_lr (two phases) transcribed line by line, with max_lr = 1.
  function torchOneCycle(s: OneCycleSchedule, stepNum: number): number {
    const initialLr = 1 / s.divFactor;
    const maxLr = 1;
    const minLr = initialLr / s.finalDivFactor;
    const phases = [
      { endStep: s.pctStart * s.totalSteps - 1, startLr: initialLr, endLr: maxLr },
      { endStep: s.totalSteps - 1, startLr: maxLr, endLr: minLr },
    ];
    let startStep = 0;
    for (const [i, phase] of phases.entries()) {
      const endStep = phase.endStep;
      if (stepNum <= endStep || i === phases.length - 1) {
        const pct = (stepNum - startStep) / (endStep - startStep);
        if (s.anneal === 'cos') {
          const cosOut = Math.cos(Math.PI * pct) + 1;
          return phase.endLr + ((phase.startLr - phase.endLr) / 2.0) * cosOut;
        }
        return (phase.endLr - phase.startLr) * pct + phase.startLr;
      }
      startStep = phase.endStep;
    }
    throw new Error('unreachable');
  }

  test.each([
    [{ totalSteps: 100 }],
    [{ totalSteps: 37, pctStart: 0.5, anneal: 'linear' as const }],
    [{ totalSteps: 1000, pctStart: 0.1, divFactor: 10, finalDivFactor: 100 }],
    [{ totalSteps: 7, pctStart: 0.2, divFactor: 1, finalDivFactor: 1 }],
    [{ totalSteps: 3, pctStart: 0.9, anneal: 'linear' as const }],
  ])('oneCycle equals torch’s get_lr at every step of the cycle: %j', (options) => {
    const schedule = oneCycle(options);
    for (let t = 0; t < schedule.totalSteps; t++) {
      const factor = lrFactor(schedule, t);
      expect(factor).toBe(Math.min(1, Math.max(0, torchOneCycle(schedule, t))));
      expect(factor).toBeGreaterThanOrEqual(0);
      expect(factor).toBeLessThanOrEqual(1);
    }
  });

  test('oneCycle takes torch’s defaults; schedules are frozen plain data', () => {
    const schedule = oneCycle({ totalSteps: 100 });
    expect(schedule).toEqual({
      type: 'oneCycle',
      totalSteps: 100,
      pctStart: 0.3,
      anneal: 'cos',
      divFactor: 25,
      finalDivFactor: 1e4,
    });
    expect(lrFactor(schedule, 29)).toBe(1);
    expect(Object.isFrozen(schedule)).toBe(true);
    const plateau = reduceOnPlateau();
    expect(plateau).toEqual({
      type: 'reduceOnPlateau',
      mode: 'min',
      factor: 0.1,
      patience: 10,
      threshold: 1e-4,
      thresholdMode: 'rel',
      cooldown: 0,
      minLrRatio: 0,
    });
    const steps = multiStep({ milestones: [3, 8], gamma: 0.5 });
    expect(Object.isFrozen(steps.milestones)).toBe(true);
    expect(() => lrFactor(plateau, 0)).toThrow(/reported/);
  });
});

describe('bad options are errors naming the option', () => {
  test.each([
    [
      () => exponential({ gamma: 1.5 }),
      RangeError,
      /^Expected a number in \[0, 1\] for options\.gamma but received/,
    ],
    [
      () => exponential({} as never),
      TypeError,
      /^Expected a number for options\.gamma but received/,
    ],
    [
      () => exponential({ gamma: 0.5, step: 1 } as never),
      TypeError,
      /for the key options\.step but received an unknown key/,
    ],
    [
      () => multiStep({ milestones: [3, 3], gamma: 0.1 }),
      RangeError,
      /^Expected an integer >= 4 \(milestones increase strictly\) for options\.milestones\[1\]/,
    ],
    [
      () => multiStep({ milestones: [0], gamma: 0.1 }),
      RangeError,
      /an integer >= 1 for options\.milestones\[0\]/,
    ],
    [() => multiStep({ milestones: [2.5], gamma: 0.1 }), RangeError, /options\.milestones\[0\]/],
    [
      () => multiStep({ milestones: '3' as never, gamma: 0.1 }),
      TypeError,
      /an array of integers \(steps\) for options\.milestones/,
    ],
    [
      () => multiStep({ milestones: [1, '2'] as never, gamma: 0.1 }),
      TypeError,
      /options\.milestones\[1\]/,
    ],
    [() => multiStep({ milestones: [1], gamma: -0.1 }), RangeError, /options\.gamma/],
    [() => oneCycle({ totalSteps: 1 }), RangeError, /an integer >= 2 for options\.totalSteps/],
    [() => oneCycle({ totalSteps: 10.5 }), RangeError, /options\.totalSteps/],
    [() => oneCycle({} as never), TypeError, /options\.totalSteps/],
    [
      () => oneCycle({ totalSteps: 10, pctStart: 0 }),
      RangeError,
      /a number in \(0, 1\) for options\.pctStart/,
    ],
    [() => oneCycle({ totalSteps: 10, pctStart: 1 }), RangeError, /options\.pctStart/],
    [
      () => oneCycle({ totalSteps: 10, pctStart: 0.1 }),
      RangeError,
      /> 1 \/ totalSteps = 0\.1 \(the warm-up must end after step 0\) for options\.pctStart/,
    ],
    [
      () => oneCycle({ totalSteps: 10, anneal: 'exp' as never }),
      TypeError,
      /one of 'cos', 'linear' for options\.anneal/,
    ],
    [
      () => oneCycle({ totalSteps: 10, divFactor: 0.5 }),
      RangeError,
      /a finite number >= 1 for options\.divFactor/,
    ],
    [
      () => oneCycle({ totalSteps: 10, finalDivFactor: Infinity }),
      RangeError,
      /options\.finalDivFactor/,
    ],
    [
      () => oneCycle({ totalSteps: 10, maxLr: 1 } as never),
      TypeError,
      /for the key options\.maxLr but received an unknown key/,
    ],
    [
      () => reduceOnPlateau({ mode: 'mid' as never }),
      TypeError,
      /one of 'min', 'max' for options\.mode/,
    ],
    [() => reduceOnPlateau({ factor: 1 }), RangeError, /a number in \[0, 1\) for options\.factor/],
    [() => reduceOnPlateau({ patience: -1 }), RangeError, /options\.patience/],
    [() => reduceOnPlateau({ patience: 1.5 }), RangeError, /options\.patience/],
    [() => reduceOnPlateau({ threshold: -1 }), RangeError, /options\.threshold/],
    [
      () => reduceOnPlateau({ threshold: 1 }),
      RangeError,
      /under thresholdMode 'rel' for options\.threshold/,
    ],
    [() => reduceOnPlateau({ thresholdMode: 'x' as never }), TypeError, /options\.thresholdMode/],
    [() => reduceOnPlateau({ cooldown: '1' as never }), TypeError, /options\.cooldown/],
    [() => reduceOnPlateau({ minLrRatio: 2 }), RangeError, /options\.minLrRatio/],
    [() => reduceOnPlateau(3 as never), TypeError, /for options/],
    [
      () => lambdaSchedule(0.5 as never),
      TypeError,
      /^Expected a function \(step\) => factor for lrLambda/,
    ],
  ] as [() => unknown, ErrorConstructor, RegExp][])('%#', (make, type, message) => {
    expect(make).toThrow(type);
    expect(make).toThrow(message);
  });

  test('threshold may exceed 1 in abs mode; an absent option takes its default', () => {
    expect(reduceOnPlateau({ threshold: 5, thresholdMode: 'abs' }).threshold).toBe(5);
    expect(oneCycle({ totalSteps: 10, pctStart: undefined }).pctStart).toBe(0.3);
  });

  test('a lambda must return a number in [0, 1]', () => {
    const make = (value: unknown) => lambdaSchedule(() => value as number);
    expect(() => lrFactor(make(1.5), 3)).toThrow(
      /^Expected a number in \[0, 1\] \(a factor of the base lr; make the base lr the peak\) for schedule\.lrLambda\(3\) but received/,
    );
    expect(() => lrFactor(make(NaN), 0)).toThrow(RangeError);
    expect(() => lrFactor(make(-0.1), 0)).toThrow(RangeError);
    expect(() => lrFactor(make('0.5'), 0)).toThrow(TypeError);
    expect(() => lrFactor(make(undefined), 0)).toThrow(/schedule\.lrLambda\(0\)/);
    expect(lrFactor(make(0), 0)).toBe(0);
    expect(lrFactor(make(1), 0)).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// Attached to an optimizer.

function makeParams(): Param[] {
  return [33, 1, 517].map((length, k) => {
    const data = new Float32Array(length);
    for (let i = 0; i < length; i++) data[i] = Math.sin(k * 100 + i) * 0.5;
    return { name: `p${k}`, data, grad: new Float32Array(length) };
  });
}

function setGrads(params: readonly Param[], step: number): void {
  for (const [k, p] of params.entries()) {
    for (let i = 0; i < p.grad.length; i++) p.grad[i] = Math.cos(step * 7 + k * 3 + i) + p.data[i]!;
  }
}

function makeOptimizer(params: Param[], schedule: LrSchedule | null): AdamW {
  return new AdamW(
    [
      { params: params.slice(0, 2), lr: 0.02 },
      { params: params.slice(2), lr: 0.005, amsgrad: true },
    ],
    schedule === null ? {} : { schedule },
  );
}

function fingerprint(optimizer: AdamW<StateDtype>, params: readonly Param[]): Uint32Array[] {
  return bitsOf(
    params.flatMap((p) => {
      const s = f32(optimizer.state(p));
      return [p.data, s.expAvg, s.expAvgSq, ...(s.maxExpAvgSq ? [s.maxExpAvgSq] : [])];
    }),
  );
}

const lrsOf = (optimizer: AdamW<StateDtype>) => optimizer.paramGroups.map((g) => g.lr);

// The function of the optimizer's lambda schedule (the schedule itself is a checked copy).
const lambdaOf = (optimizer: AdamW<StateDtype>) => {
  const schedule = optimizer.schedule;
  return schedule?.type === 'lambda' ? schedule.lrLambda : undefined;
};

// Position-driven schedules, each checked over 14 steps.
const POSITION_SCHEDULES: [string, () => LrSchedule][] = [
  ['lambda', () => lambdaSchedule((t) => 1 / (1 + t))],
  ['exponential', () => exponential({ gamma: 0.8 })],
  ['multiStep', () => multiStep({ milestones: [3, 4, 9], gamma: 0.5 })],
  ['oneCycle', () => oneCycle({ totalSteps: 12, pctStart: 0.25 })],
];

describe('attached to an optimizer', () => {
  test.each(POSITION_SCHEDULES)(
    '%s sets lr = baseLr * factor step by step, as set by hand',
    (_, make) => {
      const schedule = make();
      const scheduledParams = makeParams();
      const manualParams = makeParams();
      const scheduled = makeOptimizer(scheduledParams, schedule);
      const manual = makeOptimizer(manualParams, null);
      for (let t = 0; t < 14; t++) {
        const factor = lrFactor(schedule, t);
        expect(scheduled.schedulePosition).toBe(t);
        expect(lrsOf(scheduled)).toEqual([0.02 * factor, 0.005 * factor]);
        manual.paramGroups[0]!.lr = 0.02 * factor;
        manual.paramGroups[1]!.lr = 0.005 * factor;
        setGrads(scheduledParams, t);
        setGrads(manualParams, t);
        expect(scheduled.step().lr).toBe(0.02 * factor);
        manual.step();
      }
      expect(
        firstBitDifference(
          fingerprint(scheduled, scheduledParams),
          fingerprint(manual, manualParams),
        ),
      ).toBeNull();
    },
  );

  test.each(POSITION_SCHEDULES)(
    '%s: skipped (non-finite) steps do not advance it',
    async (_, make) => {
      const params = makeParams();
      const optimizer = makeOptimizer(params, make());
      setGrads(params, 0);
      optimizer.step({ skipNonFinite: true });
      await optimizer.stepAsync({ skipNonFinite: true });
      expect(optimizer.schedulePosition).toBe(2);
      const lrs = lrsOf(optimizer);
      params[1]!.grad[0] = NaN;
      expect(optimizer.step({ skipNonFinite: true }).skipped).toBe(true);
      expect((await optimizer.stepAsync({ skipNonFinite: true })).skipped).toBe(true);
      expect(optimizer.schedulePosition).toBe(2);
      expect(lrsOf(optimizer)).toEqual(lrs);
      setGrads(params, 3);
      optimizer.step({ skipNonFinite: true });
      expect(optimizer.schedulePosition).toBe(3);
    },
  );

  test('a lambda is called with the position of the step after; a bad value changes nothing', () => {
    const calls: number[] = [];
    let bad = -1;
    const schedule = lambdaSchedule((t) => {
      calls.push(t);
      return t === bad ? 2 : 0.5;
    });
    const params = makeParams();
    const optimizer = makeOptimizer(params, schedule);
    expect(calls).toEqual([0]);
    setGrads(params, 0);
    optimizer.step();
    expect(calls).toEqual([0, 1]);
    bad = 2;
    const before = fingerprint(optimizer, params);
    const lrs = lrsOf(optimizer);
    expect(() => optimizer.step()).toThrow(/for schedule\.lrLambda\(2\)/);
    expect(optimizer.schedulePosition).toBe(1);
    expect(lrsOf(optimizer)).toEqual(lrs);
    expect(optimizer.state(params[0]!).step).toBe(1);
    expect(firstBitDifference(fingerprint(optimizer, params), before)).toBeNull();
    // Attaching one whose first factor is bad changes nothing either.
    expect(() => (optimizer.schedule = lambdaSchedule(() => -1))).toThrow(
      /schedule\.lrLambda\(0\)/,
    );
    expect(lambdaOf(optimizer)).toBe(schedule.lrLambda);
    expect(optimizer.schedulePosition).toBe(1);
    // A throwing lambda's own error comes through, before the step too.
    expect(
      () =>
        (optimizer.schedule = lambdaSchedule(() => {
          throw new Error('mine');
        })),
    ).toThrow('mine');
    expect(lambdaOf(optimizer)).toBe(schedule.lrLambda);
  });
});

describe('reduceOnPlateau and reportMetric', () => {
  // A hand-run of torch's ReduceLROnPlateau.step: factor 0.5, patience 2, threshold 0.1 (rel, so
  // better means < best * 0.9), cooldown 1, min_lr 0.2 * base lr.
  const SCHEDULE = reduceOnPlateau({
    factor: 0.5,
    patience: 2,
    threshold: 0.1,
    cooldown: 1,
    minLrRatio: 0.2,
  });
  const METRICS = [10, 9.5, 9.2, 9.1, 8.0, 8.5, 8.4, 8.3, 8.2, 8.1, 8.1, 8.1, 1.0];
  // best 10; bad 1, 2, 3 > 2: halve, cooldown 1; 8 < 9 is better (cooldown 0); bad 1, 2, 3: halve;
  // 8.2 bad but in cooldown; 8.1 bad 1, 2, 3: halve to 0.125, floored at 0.2; 1 is better.
  const FACTORS = [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.2, 0.2];
  const BEST = [10, 10, 10, 10, 8, 8, 8, 8, 8, 8, 8, 8, 1];

  test('min mode, rel threshold, cooldown and floor: torch’s sequence', () => {
    const params = makeParams();
    const optimizer = makeOptimizer(params, SCHEDULE);
    expect(lrsOf(optimizer)).toEqual([0.02, 0.005]);
    expect(optimizer.stateDict().lrSchedule?.plateau).toEqual({
      factor: 1,
      best: null,
      numBadEpochs: 0,
      cooldownCounter: 0,
    });
    for (const [i, metric] of METRICS.entries()) {
      optimizer.reportMetric(metric);
      expect(lrsOf(optimizer)).toEqual([0.02 * FACTORS[i]!, 0.005 * FACTORS[i]!]);
      expect(optimizer.stateDict().lrSchedule?.plateau?.best).toBe(BEST[i]);
    }
    expect(optimizer.stateDict().lrSchedule?.plateau).toEqual({
      factor: 0.2,
      best: 1,
      numBadEpochs: 0,
      cooldownCounter: 0,
    });
  });

  test('max mode, abs threshold, no patience; steps leave the factor alone', () => {
    const params = makeParams();
    const optimizer = makeOptimizer(
      params,
      reduceOnPlateau({ mode: 'max', thresholdMode: 'abs', threshold: 0.5, patience: 0 }),
    );
    const factorsSeen: number[] = [];
    // 1 > -inf: best; 1.4 is not > 1.5: reduce; 1.6 > 1.5: best; 2.2 > 2.1: best; 2.3 is not > 2.7.
    for (const metric of [1, 1.4, 1.6, 2.2, 2.3]) {
      optimizer.reportMetric(metric);
      factorsSeen.push(optimizer.paramGroups[0]!.lr / 0.02);
      setGrads(params, metric);
      optimizer.step();
    }
    expect(factorsSeen.map((f) => Number(f.toPrecision(12)))).toEqual([1, 0.1, 0.1, 0.1, 0.01]);
    expect(optimizer.paramGroups[1]!.lr).toBe(0.005 * (0.1 * 0.1));
    expect(optimizer.schedulePosition).toBe(5);
  });

  test('reportMetric refuses other schedules and non-finite metrics, changing nothing', () => {
    const plain = makeOptimizer(makeParams(), null);
    expect(() => plain.reportMetric(1)).toThrow(
      /^Expected a reduceOnPlateau schedule \(reportMetric drives only that schedule\) for schedule but received null/,
    );
    const cosine = makeOptimizer(makeParams(), cosineWithWarmup({ warmupSteps: 0, totalSteps: 5 }));
    expect(() => cosine.reportMetric(1)).toThrow(RangeError);
    const optimizer = makeOptimizer(makeParams(), SCHEDULE);
    optimizer.reportMetric(3);
    const before = optimizer.stateDict().lrSchedule;
    expect(() => optimizer.reportMetric(NaN)).toThrow(/a finite number for metric/);
    expect(() => optimizer.reportMetric(-Infinity)).toThrow(RangeError);
    expect(() => optimizer.reportMetric('2' as never)).toThrow(TypeError);
    expect(() => optimizer.reportMetric(2n as never)).toThrow(/a number for metric/);
    expect(optimizer.stateDict().lrSchedule).toEqual(before);
  });

  test('replacing the schedule starts a plateau afresh', () => {
    const optimizer = makeOptimizer(makeParams(), reduceOnPlateau({ patience: 0 }));
    optimizer.reportMetric(1);
    optimizer.reportMetric(2);
    expect(optimizer.paramGroups[0]!.lr).toBeCloseTo(0.002, 15);
    optimizer.schedule = reduceOnPlateau({ patience: 0 });
    expect(lrsOf(optimizer)).toEqual([0.02, 0.005]);
    expect(optimizer.stateDict().lrSchedule?.plateau?.best).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------
// Resuming.

interface Run {
  schedule: () => LrSchedule;
  /** Called after step t (0-based): reduceOnPlateau reports a metric after every step. */
  after?: (optimizer: AdamW<StateDtype>, t: number) => void;
}

// Metrics with a -0 (best) and, under patience 1 and cooldown 1, reductions after steps 2 and 5
// (before the checkpoint at 8) and 9 (after it).
const PLATEAU_METRICS = [-0, 0.5, 0.4, 0.3, 0.2, 0.2, 0.1, -1, 0, 0, 0, 0];
const RUNS: [string, Run][] = [
  ['lambda', { schedule: () => lambdaSchedule((t) => 1 / (1 + t)) }],
  ['exponential', { schedule: () => exponential({ gamma: 0.8 }) }],
  ['multiStep', { schedule: () => multiStep({ milestones: [3, 7, 9], gamma: 0.5 }) }],
  ['oneCycle', { schedule: () => oneCycle({ totalSteps: 12, pctStart: 0.25 }) }],
  [
    'reduceOnPlateau',
    {
      schedule: () =>
        reduceOnPlateau({
          patience: 1,
          cooldown: 1,
          factor: 0.3,
          threshold: 0.05,
          thresholdMode: 'abs',
        }),
      after: (optimizer, t) => {
        optimizer.reportMetric(PLATEAU_METRICS[t]!);
      },
    },
  ],
];

function train(
  optimizer: AdamW<StateDtype>,
  params: Param[],
  run: Run,
  from: number,
  to: number,
): void {
  for (let t = from; t < to; t++) {
    setGrads(params, t);
    optimizer.step();
    run.after?.(optimizer, t);
  }
}

/** 8 steps, a checkpoint (`save`), restored by `restore` into new params, 4 more == 12 straight,
 * bit for bit: params, state, lrs and the schedule's state. */
function expectExactResume(
  run: Run,
  save: (optimizer: AdamW<StateDtype>) => unknown,
  restore: (saved: unknown, params: Param[]) => AdamW<StateDtype>,
): void {
  const straightParams = makeParams();
  const straight = makeOptimizer(straightParams, run.schedule());
  train(straight, straightParams, run, 0, 12);
  const firstParams = makeParams();
  const first = makeOptimizer(firstParams, run.schedule());
  train(first, firstParams, run, 0, 8);
  const atSave = first.stateDict().lrSchedule;
  const saved = save(first);
  const resumedParams = makeParams();
  for (const [k, p] of resumedParams.entries()) p.data.set(firstParams[k]!.data);
  const resumed = restore(saved, resumedParams);
  expect(resumed.schedulePosition).toBe(8);
  expect(resumed.stateDict().lrSchedule).toEqual(atSave);
  expect(lrsOf(resumed)).toEqual(lrsOf(first));
  train(resumed, resumedParams, run, 8, 12);
  expect(lrsOf(resumed)).toEqual(lrsOf(straight));
  expect(resumed.stateDict().lrSchedule).toEqual(straight.stateDict().lrSchedule);
  expect(
    firstBitDifference(fingerprint(resumed, resumedParams), fingerprint(straight, straightParams)),
  ).toBeNull();
}

describe('the schedule’s state resumes bit for bit', () => {
  test.each(RUNS)('%s through stateDict/loadStateDict', (_, run) => {
    expectExactResume(
      run,
      (optimizer) => optimizer.stateDict(),
      (saved, params) => {
        // Created with the run's schedule: a lambda's function comes from it.
        const optimizer = makeOptimizer(params, run.schedule());
        optimizer.loadStateDict(saved as ReturnType<AdamW['stateDict']>);
        return optimizer;
      },
    );
  });

  test.each(RUNS)('%s through save/loadFrom', (name, run) => {
    const file = path.join(folder, `${name}.safetensors`);
    expectExactResume(
      run,
      (optimizer) => {
        optimizer.save(file);
        return file;
      },
      (saved, params) => {
        const optimizer = makeOptimizer(params, run.schedule());
        optimizer.loadFrom(saved as string);
        return optimizer;
      },
    );
  });

  test.each(RUNS.filter(([name]) => name !== 'lambda'))(
    '%s through save/AdamW.load, and into an optimizer without a schedule',
    (name, run) => {
      const file = path.join(folder, `${name}-static.safetensors`);
      const save = (optimizer: AdamW<StateDtype>) => {
        optimizer.save(file);
        return file;
      };
      expectExactResume(run, save, (saved, params) => AdamW.load(saved as string, params));
      expectExactResume(
        run,
        (optimizer) => optimizer.stateDict(),
        (saved, params) => {
          const optimizer = makeOptimizer(params, null);
          optimizer.loadStateDict(saved as ReturnType<AdamW['stateDict']>);
          return optimizer;
        },
      );
    },
  );

  test('reduceOnPlateau: best -0 and the counters come back exactly, from a file too', () => {
    const params = makeParams();
    const optimizer = makeOptimizer(params, reduceOnPlateau({ patience: 3, cooldown: 2 }));
    optimizer.reportMetric(-0);
    optimizer.reportMetric(1);
    const file = path.join(folder, 'plateau-zero.safetensors');
    optimizer.save(file);
    const loaded = AdamW.load(file, makeParams());
    const plateau = loaded.stateDict().lrSchedule?.plateau;
    expect(Object.is(plateau?.best, -0)).toBe(true);
    expect(plateau).toEqual({ factor: 1, best: -0, numBadEpochs: 1, cooldownCounter: 0 });
    // Saved before any metric: best is null in the file and Infinity again once loaded.
    const fresh = makeOptimizer(makeParams(), reduceOnPlateau({ mode: 'max' }));
    fresh.save(file);
    expect(metadataOf(file).lr_schedule).toContain('"best":null');
    const again = AdamW.load(file, makeParams());
    again.reportMetric(-1e300); // better than -Infinity
    expect(again.stateDict().lrSchedule?.plateau?.best).toBe(-1e300);
  });
});

/** A checkpoint's __metadata__. */
function metadataOf(file: string): Record<string, string> {
  const bytes = fs.readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')) as {
    __metadata__: Record<string, string>;
  };
  return header.__metadata__;
}

describe('a lambda schedule in a checkpoint', () => {
  function savedLambda(): { optimizer: AdamW<StateDtype>; file: string } {
    const params = makeParams();
    const optimizer = makeOptimizer(
      params,
      lambdaSchedule((t) => 0.9 ** t),
    );
    setGrads(params, 0);
    optimizer.step();
    optimizer.step();
    const file = path.join(folder, 'lambda.safetensors');
    optimizer.save(file);
    return { optimizer, file };
  }

  test('is its kind and position, without the function', () => {
    const { optimizer, file } = savedLambda();
    expect(optimizer.stateDict().lrSchedule).toEqual({
      schedule: { type: 'lambda' },
      position: 2,
      baseLrs: [0.02, 0.005],
    });
    expect(JSON.parse(metadataOf(file).lr_schedule!)).toEqual({
      schedule: { type: 'lambda' },
      position: 2,
      baseLrs: [0.02, 0.005],
    });
  });

  test('loads only into an optimizer with a lambda schedule attached, which keeps its function', () => {
    const { optimizer, file } = savedLambda();
    const dict = optimizer.stateDict();
    for (const schedule of [null, cosineWithWarmup({ warmupSteps: 1, totalSteps: 4 })]) {
      const target = makeOptimizer(makeParams(), schedule);
      const before = target.stateDict();
      expect(() => target.loadStateDict(dict)).toThrow(
        /^Expected a lambdaSchedule attached to this optimizer for stateDict\.lrSchedule \(.*create the optimizer with the same \{ schedule: lambdaSchedule\(fn\) \}.*\) but received an optimizer whose schedule is (none|'cosineWithWarmup')$/,
      );
      expect(() => target.loadFrom(file)).toThrow(
        /for __metadata__\.lr_schedule of checkpoint '.*lambda\.safetensors'/,
      );
      expect(target.stateDict()).toEqual(before);
    }
    expect(() => AdamW.load(file, makeParams())).toThrow(/lambdaSchedule/);
    // The optimizer's own function drives the lrs after the load (a different one here).
    const half = lambdaSchedule(() => 0.5);
    const target = makeOptimizer(makeParams(), half);
    target.loadFrom(file);
    expect(lambdaOf(target)).toBe(half.lrLambda);
    expect(target.schedulePosition).toBe(2);
    expect(lrsOf(target)).toEqual([0.02 * 0.9 ** 2, 0.005 * 0.9 ** 2]);
    target.step();
    expect(lrsOf(target)).toEqual([0.01, 0.0025]);
  });

  test('a saved lambda with a function field, or a plateau where none belongs, is refused', () => {
    const { optimizer } = savedLambda();
    const dict = optimizer.stateDict();
    const target = makeOptimizer(
      makeParams(),
      lambdaSchedule(() => 1),
    );
    const withFn = {
      ...dict,
      lrSchedule: { ...dict.lrSchedule!, schedule: { type: 'lambda', lrLambda: () => 1 } },
    };
    expect(() => target.loadStateDict(withFn as never)).toThrow(
      /for the key stateDict\.lrSchedule\.schedule\.lrLambda but received an unknown key/,
    );
    const plateau = { factor: 1, best: null, numBadEpochs: 0, cooldownCounter: 0 };
    const stray = { ...dict, lrSchedule: { ...dict.lrSchedule!, plateau } };
    expect(() => target.loadStateDict(stray)).toThrow(/only a reduceOnPlateau schedule has one/);
  });
});

describe('a bad plateau state is an error that changes nothing', () => {
  test.each([
    [undefined, TypeError, /for stateDict\.lrSchedule\.plateau but received undefined/],
    [
      { factor: 1.5, best: 1, numBadEpochs: 0, cooldownCounter: 0 },
      RangeError,
      /stateDict\.lrSchedule\.plateau\.factor/,
    ],
    [
      { factor: 1, best: Infinity, numBadEpochs: 0, cooldownCounter: 0 },
      RangeError,
      /or null before the first metric for stateDict\.lrSchedule\.plateau\.best/,
    ],
    [{ factor: 1, best: '1', numBadEpochs: 0, cooldownCounter: 0 }, TypeError, /plateau\.best/],
    [
      { factor: 1, best: 1, numBadEpochs: -1, cooldownCounter: 0 },
      RangeError,
      /plateau\.numBadEpochs/,
    ],
    [
      { factor: 1, best: 1, numBadEpochs: 0, cooldownCounter: 0.5 },
      RangeError,
      /plateau\.cooldownCounter/,
    ],
    [
      { factor: 1, best: 1, numBadEpochs: 0, cooldownCounter: 0, extra: 1 },
      TypeError,
      /for the key stateDict\.lrSchedule\.plateau\.extra but received an unknown key/,
    ],
  ] as [unknown, ErrorConstructor, RegExp][])('%#', (plateau, type, message) => {
    const optimizer = makeOptimizer(makeParams(), reduceOnPlateau({ patience: 0 }));
    optimizer.reportMetric(2);
    optimizer.reportMetric(3);
    const good = optimizer.stateDict();
    const dict = { ...good, lrSchedule: { ...good.lrSchedule!, plateau } } as typeof good;
    expect(() => optimizer.loadStateDict(dict)).toThrow(type);
    expect(() => optimizer.loadStateDict(dict)).toThrow(message);
    expect(optimizer.stateDict()).toEqual(good);
  });
});
