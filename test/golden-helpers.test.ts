// Validates the golden-data test helpers (test/helpers/golden.ts, test/helpers/reference.ts)
// without the native addon: the float64 reference passes every golden case, and deliberately
// wrong Adam variants are rejected, so a passing golden test of the addon means something.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  GOLDEN_DIR,
  GoldenCase,
  GoldenState,
  GoldenStepFn,
  loadCase,
  loadGoldenManifest,
  readF32,
  runGoldenCase,
  toleranceRatio,
} from './helpers/golden';
import { ReferenceAdam, refHyperFromGolden } from './helpers/reference';

// Read once: a global lookup inside a hot loop is ~8x slower in jest's vm sandbox.
const { max, sqrt } = Math;

const manifest = loadGoldenManifest();
const caseNames = manifest.cases.map((c) => c.name);

function findCase(name: string): GoldenCase {
  const found = manifest.cases.find((c) => c.name === name);
  if (found === undefined) throw new Error(`no golden case ${name}`);
  return found;
}

/** ReferenceAdam (float64 state) behind the GoldenStepFn interface, rounding to float32 each step. */
function referenceStepFn(c: GoldenCase): GoldenStepFn {
  let reference: ReferenceAdam | undefined;
  return (state, grad, t, lr) => {
    reference ??= new ReferenceAdam(state.params, refHyperFromGolden(c));
    reference.step(grad, lr);
    if (reference.stepCount !== t) throw new Error(`step ${reference.stepCount}, expected ${t}`);
    // Float32Array.prototype.set rounds every double to the nearest float32.
    state.params.set(reference.params);
    state.exp_avg.set(reference.expAvg);
    state.exp_avg_sq.set(reference.expAvgSq);
    state.max_exp_avg_sq.set(reference.maxExpAvgSq);
  };
}

type PlainVariant = 'correct' | 'no-bias-correction' | 'eps-inside-sqrt';

/**
 * Independent plain-JS step on the float32 state (double arithmetic, float32 storage), written
 * separately from ReferenceAdam; the two wrong variants are the README's W1 and W3.
 */
function plainJsStepFn(c: GoldenCase, variant: PlainVariant): GoldenStepFn {
  const h = c.hyperparameters;
  const decoupled = c.optimizer === 'adamw';
  return (state, grad, t, lr) => {
    const biasCorrection1 = variant === 'no-bias-correction' ? 1 : 1 - h.beta1 ** t;
    const biasCorrection2 = variant === 'no-bias-correction' ? 1 : 1 - h.beta2 ** t;
    for (let i = 0; i < grad.length; i++) {
      let g = h.maximize ? -grad[i] : grad[i];
      let p = state.params[i];
      if (decoupled) p *= 1 - lr * h.weight_decay;
      else if (h.weight_decay !== 0) g += h.weight_decay * p;
      const m = h.beta1 * state.exp_avg[i] + (1 - h.beta1) * g;
      const v = h.beta2 * state.exp_avg_sq[i] + (1 - h.beta2) * g * g;
      state.exp_avg[i] = m;
      state.exp_avg_sq[i] = v;
      let s = state.exp_avg_sq[i];
      if (h.amsgrad) {
        state.max_exp_avg_sq[i] = max(state.max_exp_avg_sq[i], s);
        s = state.max_exp_avg_sq[i];
      }
      const denom =
        variant === 'eps-inside-sqrt'
          ? sqrt(s / biasCorrection2 + h.eps)
          : sqrt(s) / sqrt(biasCorrection2) + h.eps;
      state.params[i] = p - (lr / biasCorrection1) * (state.exp_avg[i] / denom);
    }
  };
}

describe('golden fixtures', () => {
  test('every case loads with consistent sizes and checkpoints', () => {
    expect(manifest.cases.length).toBeGreaterThan(0);
    expect(new Set(caseNames).size).toBe(caseNames.length);
    for (const c of manifest.cases) {
      const loaded = loadCase(c); // throws on a wrong file length
      expect(loaded.lrs).toHaveLength(c.steps);
      for (const checkpoint of [loaded.checkpoints.step1, loaded.checkpoints.final]) {
        expect(checkpoint.max_exp_avg_sq !== undefined).toBe(c.hyperparameters.amsgrad);
      }
      if (c.steps === 1) expect(loaded.checkpoints.final).toEqual(loaded.checkpoints.step1);
    }
  });

  test('readF32 decodes little-endian float32', () => {
    const rel = manifest.cases[0].files.grads;
    const bytes = fs.readFileSync(path.join(GOLDEN_DIR, rel));
    const values = readF32(rel);
    expect(values.length * 4).toBe(bytes.byteLength);
    values.forEach((value, i) => expect(value).toBe(bytes.readFloatLE(4 * i)));
  });
});

describe('toleranceRatio', () => {
  const tol = manifest.tolerance;
  const golden: GoldenState = {
    params: Float32Array.of(1, 0, -2),
    exp_avg: Float32Array.of(0, 0.5, 0),
    exp_avg_sq: Float32Array.of(0, 0.25, 4),
  };

  test('identical values and -0 vs +0 give 0', () => {
    expect(toleranceRatio(tol, 'params', Float32Array.of(1, -0, -2), golden, 1, 0)).toBe(0);
    expect(toleranceRatio(tol, 'exp_avg', Float32Array.of(-0, 0.5, -0), golden, 1, 0)).toBe(0);
  });

  test('NaN, Inf and any difference where the allowance is 0 give Infinity', () => {
    expect(toleranceRatio(tol, 'params', [1, NaN, -2], golden, 1, 0.001)).toBe(Infinity);
    expect(toleranceRatio(tol, 'params', [1, 0, -Infinity], golden, 1, 0.001)).toBe(Infinity);
    expect(toleranceRatio(tol, 'exp_avg_sq', [1e-30, 0.25, 4], golden, 1, 0)).toBe(Infinity);
    expect(toleranceRatio(tol, 'exp_avg', [1e-30, 0.5, 0], golden, 1, 0)).toBe(Infinity);
  });

  test('the allowance follows the README rule', () => {
    const { params, exp_avg: expAvg, exp_avg_sq: expAvgSq } = tol;
    const atolLr = params.atol_lr ?? NaN;
    // params: (rtol + rtol_per_step*t)*|e| + atol_lr*lrSum, at element 2 (|e| = 2), t = 10.
    const paramsAllowed = (params.rtol + params.rtol_per_step * 10) * 2 + atolLr * 0.01;
    const paramsActual = [1, 0, -2 + paramsAllowed / 2];
    expect(toleranceRatio(tol, 'params', paramsActual, golden, 10, 0.01)).toBeCloseTo(0.5, 6);
    // params at e = 0 only get the absolute lr term.
    const nearZero = [1, 3 * atolLr * 0.001, -2];
    expect(toleranceRatio(tol, 'params', nearZero, golden, 1, 0.001)).toBeCloseTo(3, 6);
    // exp_avg: scaled by |m| + sqrt(v), here 0 + sqrt(4) at element 2.
    const expAvgActual = [0, 0.5, 4 * expAvg.rtol * 2];
    expect(toleranceRatio(tol, 'exp_avg', expAvgActual, golden, 1, 0)).toBeCloseTo(4, 6);
    // exp_avg_sq: relative to |e| only, independent of t.
    const expAvgSqActual = [0, 0.25 * (1 + 0.8 * expAvgSq.rtol), 4];
    expect(toleranceRatio(tol, 'exp_avg_sq', expAvgSqActual, golden, 100, 1)).toBeCloseTo(0.8, 6);
  });
});

describe('runGoldenCase with the float64 reference', () => {
  test.each(caseNames)('%s passes', (name) => {
    const c = findCase(name);
    const result = runGoldenCase(c, referenceStepFn(c));
    expect(result.where).not.toBe('');
    // The manifest's f64_tol_ratio is the same computation done by generate.py in numpy.
    const f64Ratios = Object.values(c.torch_vs_float64).flatMap((checkpoint) =>
      Object.values(checkpoint).map((accuracy) => accuracy?.f64_tol_ratio ?? 0),
    );
    expect(result.worst).toBeCloseTo(max(...f64Ratios), 2);
    if (!(result.worst <= 1)) throw new Error(`${name}: ratio ${result.worst} at ${result.where}`);
  });

  test('a step that stops updating after step 1 is caught at the final checkpoint', () => {
    const multiStepCases = manifest.cases.filter((c) => c.steps > 1);
    expect(multiStepCases.length).toBeGreaterThan(0);
    for (const c of multiStepCases) {
      const referenceStep = referenceStepFn(c);
      const result = runGoldenCase(c, (state, grad, t, lr) => {
        if (t === 1) referenceStep(state, grad, t, lr);
      });
      const failedAt = result.worst > 1 ? result.where.split(' ')[0] : 'nowhere';
      expect(`${c.name} failed at ${failedAt}`).toBe(`${c.name} failed at final`);
    }
  });
});

describe('runGoldenCase with a plain-JS step on float32 state', () => {
  test('the correct formula passes every case', () => {
    const failures = manifest.cases
      .map((c) => ({ name: c.name, ...runGoldenCase(c, plainJsStepFn(c, 'correct')) }))
      .filter((r) => !(r.worst <= 1));
    expect(failures).toEqual([]);
  });

  test.each<PlainVariant>(['no-bias-correction', 'eps-inside-sqrt'])(
    'the wrong variant %s is detected',
    (variant) => {
      const detected = manifest.cases.filter(
        (c) => runGoldenCase(c, plainJsStepFn(c, variant)).worst > 1,
      );
      expect(detected.length).toBeGreaterThan(0);
    },
  );
});
