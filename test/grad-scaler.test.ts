// GradScaler (docs/training.md): with gradients of a loss scaled by a power of two,
// scaler.step gives bitwise the optimizer step on the unscaled gradients; a NaN or Inf gradient
// skips the step (nothing changes) and halves the scale; growthInterval clean steps double it;
// its state round-trips; bad options are errors.
import { AdamW, GradScaler, type Param, type StepReport } from '../lib';
import { bitsOf, firstBitDifference } from './helpers/bits';
import { f32 } from './helpers/float32-state';

function makeParams(): Param[] {
  return [40, 3, 5000].map((length, k) => {
    const data = new Float32Array(length);
    for (let i = 0; i < length; i++) data[i] = Math.sin(k * 31 + i);
    return { name: `p${k}`, data, grad: new Float32Array(length) };
  });
}

/** This step's gradients, multiplied by `scale` as a scaled loss would make them. */
function setGrads(params: readonly Param[], step: number, scale: number): void {
  for (const [k, p] of params.entries()) {
    for (let i = 0; i < p.grad.length; i++) {
      p.grad[i] = Math.fround(Math.cos(step + k * 7 + i) * 1e-3) * scale;
    }
  }
}

function fingerprint(optimizer: AdamW, params: readonly Param[]): Uint32Array[] {
  return bitsOf(params.flatMap((p) => [p.data, f32(optimizer.state(p)).expAvg]));
}

describe('GradScaler', () => {
  test("defaults are torch's", () => {
    const scaler = new GradScaler();
    expect(scaler.scale).toBe(65536);
    expect(scaler.stateDict()).toEqual({
      scale: 65536,
      growthFactor: 2,
      backoffFactor: 0.5,
      growthInterval: 2000,
      growthTracker: 0,
    });
  });

  test('scaled steps equal plain steps on the unscaled gradients, bit for bit', async () => {
    const scaledParams = makeParams();
    const plainParams = makeParams();
    const scaled = new AdamW(scaledParams);
    const plain = new AdamW(plainParams);
    const scaler = new GradScaler({ initScale: 1024, growthInterval: 2 });
    for (let step = 0; step < 5; step++) {
      setGrads(scaledParams, step, scaler.scale);
      setGrads(plainParams, step, 1);
      const report =
        step === 3
          ? await scaler.stepAsync(scaled, { clipGradNorm: 0.05 })
          : scaler.step(scaled, { clipGradNorm: 0.05 });
      const expected = plain.step({ clipGradNorm: 0.05 });
      expect(report).toEqual(expected);
    }
    expect(scaler.scale).toBe(1024 * 4);
    expect(
      firstBitDifference(fingerprint(scaled, scaledParams), fingerprint(plain, plainParams)),
    ).toBeNull();
  });

  test('an overflow skips the step and backs off; growthInterval clean steps grow', () => {
    const params = makeParams();
    const optimizer = new AdamW(params);
    const scaler = new GradScaler({ initScale: 2 ** 20, growthInterval: 3 });
    const reports: StepReport[] = [];
    const scales: number[] = [];
    for (let step = 0; step < 8; step++) {
      setGrads(params, step, scaler.scale);
      if (step === 1 || step === 2) params[2]!.grad[17] = step === 1 ? Infinity : NaN;
      const before = fingerprint(optimizer, params);
      reports.push(scaler.step(optimizer));
      if (reports[step]!.skipped) {
        expect(firstBitDifference(fingerprint(optimizer, params), before)).toBeNull();
      }
      scales.push(scaler.scale);
    }
    expect(reports.map((r) => r.skipped)).toEqual([
      false,
      true,
      true,
      false,
      false,
      false,
      false,
      false,
    ]);
    expect(scales).toEqual([
      2 ** 20,
      2 ** 19,
      2 ** 18,
      2 ** 18,
      2 ** 18,
      2 ** 19,
      2 ** 19,
      2 ** 19,
    ]);
    expect(optimizer.state(params[0]!).step).toBe(6);
    expect(scaler.stateDict().growthTracker).toBe(2);
  });

  test('the scale never grows to Infinity nor backs off to 0', () => {
    const params = makeParams();
    const optimizer = new AdamW(params);
    const big = new GradScaler({ initScale: 1.5e308, growthInterval: 1 });
    setGrads(params, 0, 1);
    big.step(optimizer);
    expect(big.scale).toBe(1.5e308);
    const small = new GradScaler({ initScale: 5e-324 });
    params[0]!.grad[0] = NaN;
    small.step(optimizer);
    expect(small.scale).toBe(5e-324);
  });

  test('disabled: scale 1 and a plain step', () => {
    const params = makeParams();
    const optimizer = new AdamW(params);
    const scaler = new GradScaler({ enabled: false });
    expect(scaler.scale).toBe(1);
    setGrads(params, 0, 1);
    params[0]!.grad[0] = NaN;
    expect(scaler.step(optimizer)).toEqual({
      gradNorm: null,
      clipped: false,
      skipped: false,
      lr: 1e-3,
    });
    expect(params[0]!.data[0]).toBeNaN();
  });

  test('stateDict round-trips; bad state is an error that changes nothing', () => {
    const scaler = new GradScaler({
      initScale: 8,
      growthFactor: 4,
      backoffFactor: 0.25,
      growthInterval: 5,
    });
    const params = makeParams();
    setGrads(params, 0, 8);
    scaler.step(new AdamW(params));
    const saved = scaler.stateDict();
    expect(saved).toEqual({
      scale: 8,
      growthFactor: 4,
      backoffFactor: 0.25,
      growthInterval: 5,
      growthTracker: 1,
    });
    const restored = new GradScaler();
    restored.loadStateDict(saved);
    expect(restored.stateDict()).toEqual(saved);
    for (const [bad, message] of [
      [{ ...saved, scale: 0 }, /stateDict\.scale/],
      [{ ...saved, growthTracker: 5 }, /stateDict\.growthTracker/],
      [{ ...saved, growthFactor: 1 }, /stateDict\.growthFactor/],
      [{ ...saved, extra: 1 }, /extra/],
    ] as [unknown, RegExp][]) {
      expect(() => restored.loadStateDict(bad as never)).toThrow(message);
      expect(restored.stateDict()).toEqual(saved);
    }
  });

  test('bad options are errors', () => {
    expect(() => new GradScaler({ initScale: -1 })).toThrow(RangeError);
    expect(() => new GradScaler({ backoffFactor: 1 })).toThrow(/options\.backoffFactor/);
    expect(() => new GradScaler({ growthInterval: 0.5 })).toThrow(/options\.growthInterval/);
    expect(() => new GradScaler({ enabled: 'yes' as never })).toThrow(TypeError);
    expect(() => new GradScaler({ scale: 1 } as never)).toThrow(/options\.scale/);
    const scaler = new GradScaler();
    expect(() => scaler.step({} as never)).toThrow(/for optimizer/);
    const optimizer = new AdamW(makeParams());
    expect(() => scaler.step(optimizer, { clipGradNorm: -1 })).toThrow(/clipGradNorm/);
    expect(() => scaler.step(optimizer, { gradScale: 2 } as never)).toThrow(/options\.gradScale/);
    expect(scaler.scale).toBe(65536);
  });
});
