// Learning-rate schedules (README "Training-loop utilities"): each schedule's factors match its
// closed form; attached to an optimizer it sets every group's lr to baseLr * factor for each step,
// advancing only on steps that are not skipped; its position and base lrs are part of the state,
// so stateDict/loadStateDict and checkpoint files resume it exactly; bad schedules are errors.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

import {
  AdamW,
  constant,
  cosineWithWarmup,
  linearWarmup,
  type LrSchedule,
  lrFactor,
  type Param,
  stepDecay,
} from '../lib';
import { bitsOf, firstBitDifference } from './helpers/bits';
import { f32 } from './helpers/float32-state';

let folder: string;
beforeAll(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-schedules-'));
});
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});

function factors(schedule: LrSchedule, count: number): number[] {
  return Array.from({ length: count }, (_, t) => lrFactor(schedule, t));
}

describe('closed forms', () => {
  test('constant', () => {
    expect(factors(constant(), 4)).toEqual([1, 1, 1, 1]);
  });

  test('linearWarmup: t / warmupSteps, then 1', () => {
    expect(factors(linearWarmup({ warmupSteps: 4 }), 7)).toEqual([0, 0.25, 0.5, 0.75, 1, 1, 1]);
    expect(factors(linearWarmup({ warmupSteps: 0 }), 2)).toEqual([1, 1]);
  });

  test('cosineWithWarmup: warmup, half cosine to the floor, then the floor', () => {
    const schedule = cosineWithWarmup({ warmupSteps: 2, totalSteps: 10, minLrRatio: 0.1 });
    // t = 2 + 8p: 0.1 + 0.9 * (1 + cos(pi p)) / 2, with cos(pi/4) = sqrt(1/2), cos(pi/2) = 0 and
    // cos(3pi/4) = -sqrt(1/2).
    const expected = [
      0,
      0.5,
      1,
      0.1 + 0.9 * ((1 + Math.SQRT1_2) / 2),
      0.1 + 0.9 * 0.5,
      0.1 + 0.9 * ((1 - Math.SQRT1_2) / 2),
      0.1,
      0.1,
    ];
    const actual = [0, 1, 2, 4, 6, 8, 10, 1000].map((t) => lrFactor(schedule, t));
    for (const [i, value] of actual.entries()) expect(value).toBeCloseTo(expected[i]!, 14);
    // minLrRatio defaults to 0; no warmup starts at the peak.
    const plain = cosineWithWarmup({ warmupSteps: 0, totalSteps: 4 });
    expect(factors(plain, 6).map((f) => Number(f.toFixed(12)))).toEqual([
      1,
      Number(((1 + Math.SQRT1_2) / 2).toFixed(12)),
      0.5,
      Number(((1 - Math.SQRT1_2) / 2).toFixed(12)),
      0,
      0,
    ]);
  });

  test('stepDecay: gamma^floor(t / stepSize)', () => {
    expect(factors(stepDecay({ stepSize: 3, gamma: 0.5 }), 8)).toEqual([
      1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25,
    ]);
  });

  test('schedules are frozen plain data', () => {
    const schedule = cosineWithWarmup({ warmupSteps: 1, totalSteps: 5 });
    expect(schedule).toEqual({
      type: 'cosineWithWarmup',
      warmupSteps: 1,
      totalSteps: 5,
      minLrRatio: 0,
    });
    expect(Object.isFrozen(schedule)).toBe(true);
  });

  test.each([
    [() => linearWarmup({ warmupSteps: -1 }), RangeError, /options\.warmupSteps/],
    [() => linearWarmup({ warmupSteps: 1.5 }), RangeError, /options\.warmupSteps/],
    [() => linearWarmup({ warmupSteps: '3' as never }), TypeError, /options\.warmupSteps/],
    [() => cosineWithWarmup({ warmupSteps: 5, totalSteps: 4 }), RangeError, /totalSteps/],
    [() => cosineWithWarmup({ warmupSteps: 0, totalSteps: 0 }), RangeError, /totalSteps/],
    [
      () => cosineWithWarmup({ warmupSteps: 0, totalSteps: 9, minLrRatio: 1.5 }),
      RangeError,
      /minLrRatio/,
    ],
    [() => stepDecay({ stepSize: 0, gamma: 0.5 }), RangeError, /stepSize/],
    [() => stepDecay({ stepSize: 2, gamma: 1.5 }), RangeError, /gamma/],
    [() => stepDecay({ stepSize: 2, gamma: NaN }), RangeError, /gamma/],
    [() => stepDecay({ stepSize: 2, gamma: 0.5, extra: 1 } as never), TypeError, /extra/],
    [() => linearWarmup(3 as never), TypeError, /for options/],
  ] as [() => unknown, ErrorConstructor, RegExp][])('bad schedule %#', (make, type, message) => {
    expect(make).toThrow(type);
    expect(make).toThrow(message);
  });
});

// ---------------------------------------------------------------------------------------------
// Attached to an optimizer.

function makeParams(): Param[] {
  return [33, 1, 4099].map((length, k) => {
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

const SCHEDULE = cosineWithWarmup({ warmupSteps: 3, totalSteps: 12, minLrRatio: 0.05 });

function makeOptimizer(params: Param[], schedule: LrSchedule | null = SCHEDULE): AdamW {
  return new AdamW(
    [
      { params: params.slice(0, 2), lr: 0.02 },
      { params: params.slice(2), lr: 0.005, amsgrad: true },
    ],
    schedule === null ? {} : { schedule },
  );
}

function fingerprint(optimizer: AdamW, params: readonly Param[]): Uint32Array[] {
  return bitsOf(
    params.flatMap((p) => {
      const s = f32(optimizer.state(p));
      return [p.data, s.expAvg, s.expAvgSq, ...(s.maxExpAvgSq ? [s.maxExpAvgSq] : [])];
    }),
  );
}

describe('a schedule attached to an optimizer', () => {
  test('sets lr = baseLr * factor for every group, step by step; report.lr is the one used', () => {
    const scheduledParams = makeParams();
    const manualParams = makeParams();
    const scheduled = makeOptimizer(scheduledParams);
    const manual = makeOptimizer(manualParams, null);
    expect(scheduled.paramGroups.map((g) => g.lr)).toEqual([0, 0]);
    for (let t = 0; t < 15; t++) {
      const factor = lrFactor(SCHEDULE, t);
      expect(scheduled.schedulePosition).toBe(t);
      expect(scheduled.paramGroups.map((g) => g.lr)).toEqual([0.02 * factor, 0.005 * factor]);
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
  });

  test('skipped steps do not advance it; stepAsync advances it', async () => {
    const params = makeParams();
    const optimizer = makeOptimizer(params);
    setGrads(params, 0);
    optimizer.step({ skipNonFinite: true });
    await optimizer.stepAsync({ skipNonFinite: true });
    expect(optimizer.schedulePosition).toBe(2);
    params[1]!.grad[0] = NaN;
    const lrs = optimizer.paramGroups.map((g) => g.lr);
    expect(optimizer.step({ skipNonFinite: true }).skipped).toBe(true);
    expect((await optimizer.stepAsync({ skipNonFinite: true })).skipped).toBe(true);
    expect(optimizer.schedulePosition).toBe(2);
    expect(optimizer.paramGroups.map((g) => g.lr)).toEqual(lrs);
  });

  test('replacing keeps the base lrs and restarts; null detaches and leaves the lrs', () => {
    const params = makeParams();
    const optimizer = makeOptimizer(params, linearWarmup({ warmupSteps: 4 }));
    setGrads(params, 0);
    optimizer.step();
    optimizer.step();
    expect(optimizer.paramGroups[0]!.lr).toBe(0.01);
    optimizer.schedule = stepDecay({ stepSize: 1, gamma: 0.5 });
    expect(optimizer.schedulePosition).toBe(0);
    expect(optimizer.paramGroups.map((g) => g.lr)).toEqual([0.02, 0.005]);
    optimizer.step();
    expect(optimizer.paramGroups.map((g) => g.lr)).toEqual([0.01, 0.0025]);
    optimizer.schedule = null;
    expect(optimizer.schedule).toBeNull();
    optimizer.step();
    expect(optimizer.paramGroups.map((g) => g.lr)).toEqual([0.01, 0.0025]);
    // Attached anew, the current lrs become the base.
    optimizer.schedule = constant();
    expect(optimizer.paramGroups.map((g) => g.lr)).toEqual([0.01, 0.0025]);
  });

  test('bad schedules are rejected, changing nothing', () => {
    const params = makeParams();
    expect(() => new AdamW(params, { schedule: { type: 'linear' } as never })).toThrow(
      /defaults\.schedule\.type/,
    );
    const optimizer = makeOptimizer(params);
    expect(() => (optimizer.schedule = { type: 'stepDecay', stepSize: 0, gamma: 1 })).toThrow(
      RangeError,
    );
    expect(optimizer.schedule).toEqual(SCHEDULE);
  });
});

// ---------------------------------------------------------------------------------------------
// Resuming.

/** N steps, a checkpoint (taken by `save`, restored by `restore`), M more == N + M straight. */
function expectExactResume(
  save: (optimizer: AdamW) => unknown,
  restore: (saved: unknown, params: Param[]) => AdamW,
): void {
  const straightParams = makeParams();
  const straight = makeOptimizer(straightParams);
  for (let t = 0; t < 9; t++) {
    setGrads(straightParams, t);
    straight.step();
  }
  const firstParams = makeParams();
  const first = makeOptimizer(firstParams);
  for (let t = 0; t < 5; t++) {
    setGrads(firstParams, t);
    first.step();
  }
  const saved = save(first);
  const resumedParams = makeParams();
  for (const [k, p] of resumedParams.entries()) p.data.set(firstParams[k]!.data);
  const resumed = restore(saved, resumedParams);
  expect(resumed.schedule).toEqual(SCHEDULE);
  expect(resumed.schedulePosition).toBe(5);
  for (let t = 5; t < 9; t++) {
    setGrads(resumedParams, t);
    resumed.step();
  }
  expect(resumed.paramGroups.map((g) => g.lr)).toEqual(straight.paramGroups.map((g) => g.lr));
  expect(
    firstBitDifference(fingerprint(resumed, resumedParams), fingerprint(straight, straightParams)),
  ).toBeNull();
}

describe('the schedule is part of the state', () => {
  test('stateDict holds it; loadStateDict into an optimizer without one resumes exactly', () => {
    expectExactResume(
      (optimizer) => optimizer.stateDict(),
      (saved, params) => {
        const optimizer = makeOptimizer(params, null);
        optimizer.loadStateDict(saved as ReturnType<AdamW['stateDict']>);
        return optimizer;
      },
    );
  });

  test('loadFrom and AdamW.load resume it exactly from a file', () => {
    const file = path.join(folder, 'scheduled.safetensors');
    expectExactResume(
      (optimizer) => {
        optimizer.save(file);
        return file;
      },
      (saved, params) => {
        const optimizer = makeOptimizer(params, constant());
        optimizer.loadFrom(saved as string);
        return optimizer;
      },
    );
    expectExactResume(
      (optimizer) => {
        optimizer.save(file);
        return file;
      },
      (saved, params) => AdamW.load(saved as string, params),
    );
  });

  test('a state without a schedule detaches the optimizer’s', () => {
    const params = makeParams();
    const plain = makeOptimizer(makeParams(), null).stateDict();
    expect(plain.lrSchedule).toBeUndefined();
    const optimizer = makeOptimizer(params);
    optimizer.loadStateDict(plain);
    expect(optimizer.schedule).toBeNull();
    expect(optimizer.paramGroups.map((g) => g.lr)).toEqual([0.02, 0.005]);
  });

  test('a bad lrSchedule in a state dict is an error that changes nothing', () => {
    const params = makeParams();
    const optimizer = makeOptimizer(params);
    setGrads(params, 0);
    optimizer.step();
    const good = optimizer.stateDict();
    const before = optimizer.stateDict();
    for (const [lrSchedule, message] of [
      [{ ...good.lrSchedule, baseLrs: [0.1] }, /baseLrs/],
      [{ ...good.lrSchedule, position: -1 }, /position/],
      [{ ...good.lrSchedule, schedule: { type: 'constant', x: 1 } }, /schedule\.x/],
      [{ ...good.lrSchedule, extra: 1 }, /extra/],
    ] as [unknown, RegExp][]) {
      const dict = { ...good, lrSchedule } as ReturnType<AdamW['stateDict']>;
      dict.paramGroups = dict.paramGroups.map((g) => ({ ...g, lr: 0.5 }));
      expect(() => optimizer.loadStateDict(dict)).toThrow(message);
      expect(optimizer.stateDict()).toEqual(before);
      expect(optimizer.schedulePosition).toBe(1);
    }
  });

  test('a damaged lr_schedule in a file is an error that changes nothing', () => {
    const params = makeParams();
    const optimizer = makeOptimizer(params);
    const file = path.join(folder, 'damaged-source.safetensors');
    optimizer.save(file);
    const damaged = rewriteMetadata(file, 'lr_schedule', (value) =>
      value.replace('"position":0', '"position":0.5'),
    );
    const target = makeOptimizer(makeParams(), stepDecay({ stepSize: 2, gamma: 0.1 }));
    const before = target.stateDict();
    expect(() => target.loadFrom(damaged)).toThrow(/lr_schedule\.position/);
    expect(() => AdamW.load(damaged, makeParams())).toThrow(/lr_schedule\.position/);
    expect(target.stateDict()).toEqual(before);
  });
});

/** A copy of a checkpoint with one metadata value edited and the CRC-32 recomputed. */
function rewriteMetadata(file: string, key: string, edit: (value: string) => string): string {
  const bytes = fs.readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as {
    __metadata__: Record<string, string>;
  };
  const metadata = header.__metadata__;
  metadata[key] = edit(metadata[key]!);
  metadata.crc32 = '00000000';
  const json = Buffer.from(JSON.stringify(header));
  const padded = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, ' ')]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(padded.length));
  const unsigned = Buffer.concat([length, padded, bytes.subarray(8 + headerLength)]);
  const crc = zlib.crc32(unsigned).toString(16).padStart(8, '0');
  const output = `${file}.edited`;
  fs.writeFileSync(
    output,
    Buffer.from(
      unsigned.toString('latin1').replace('"crc32":"00000000"', `"crc32":"${crc}"`),
      'latin1',
    ),
  );
  return output;
}
