// Validates the Lion / Adafactor / CAME golden harness (test/helpers/golden-lean.ts) without the
// native addon: the fixture is the shared set unchanged, the plain-JS float64 implementation of
// the README's pseudo-code (test/helpers/lean-optimizers-reference.ts) passes every case, and
// deliberately wrong variants of it fail by a wide margin, so test/golden-lean.test.ts cannot pass
// vacuously.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import {
  LEAN_GOLDEN_DIR,
  type LeanGoldenCase,
  type LeanGoldenSubject,
  type LeanSubjectState,
  type LeanOptimizerKind,
  leanToleranceRatio,
  loadLeanGoldenManifest,
  runLeanGoldenCase,
} from './helpers/golden-lean';
import { type LeanReferenceVariant, referenceSubject } from './helpers/lean-optimizers-reference';

const manifest = loadLeanGoldenManifest();
const SHARED_DIR = path.join(__dirname, '..', '..', 'shared', 'golden-lean');

function casesOf(kind: LeanOptimizerKind): LeanGoldenCase[] {
  return manifest.cases.filter((c) => c.optimizer === kind);
}

function findCase(name: string): LeanGoldenCase {
  const found = manifest.cases.find((c) => c.name === name);
  if (found === undefined) throw new Error(`no lean golden case ${name}`);
  return found;
}

describe('the fixture', () => {
  test('25 cases: 9 Lion, 12 Adafactor, 4 CAME, names unique and equal to their folders', () => {
    expect(manifest.set).toBe('public');
    expect(manifest.cases.length).toBe(25);
    expect(casesOf('lion').length).toBe(9);
    expect(casesOf('adafactor').length).toBe(12);
    expect(casesOf('came').length).toBe(4);
    expect(new Set(manifest.cases.map((c) => c.name)).size).toBe(25);
    for (const c of manifest.cases) {
      for (const rel of Object.keys(c.sha256)) expect(rel.split('/')[0]).toBe(c.name);
    }
  });

  test('every file has the sha256 the manifest gives it, and the sizes add up to total_bytes', () => {
    let total = 0;
    const mismatches: string[] = [];
    for (const c of manifest.cases) {
      for (const [rel, sha] of Object.entries(c.sha256)) {
        const bytes = fs.readFileSync(path.join(LEAN_GOLDEN_DIR, rel));
        total += bytes.byteLength;
        if (createHash('sha256').update(bytes).digest('hex') !== sha) mismatches.push(rel);
      }
    }
    expect(mismatches).toEqual([]);
    expect(total).toBe(manifest.total_bytes);
  });

  test('cases.json and README.md are the shared set unchanged (when the shared folder is there)', () => {
    if (!fs.existsSync(SHARED_DIR)) return;
    for (const file of ['cases.json', 'README.md']) {
      expect(fs.readFileSync(path.join(LEAN_GOLDEN_DIR, file), 'utf8')).toBe(
        fs.readFileSync(path.join(SHARED_DIR, file), 'utf8'),
      );
    }
  });
});

describe('leanToleranceRatio: the README rule', () => {
  const params = { rtol: 1e-6, rtol_per_step: 2e-7, atol_lr: 1e-5, scale: 'abs' as const };
  const moment = { rtol: 5e-5, rtol_per_step: 0, scale: 'abs_plus_rms' as const };

  test('d / ((rtol + rtol_per_step * t) * |e| + atol_lr * lrSum), computed in double', () => {
    const e = Float32Array.of(2, -4);
    const allowed = (1e-6 + 2e-7 * 10) * 4 + 1e-5 * 3e-3;
    const r = leanToleranceRatio(params, [2, -4 + allowed / 2], e, 10, 3e-3);
    expect(r.index).toBe(1);
    expect(r.ratio).toBeCloseTo(0.5, 6);
  });

  test('abs_plus_rms scales by |e| + rms(E) over the whole golden tensor', () => {
    const e = Float32Array.of(0, 3, 4); // rms = sqrt(25 / 3)
    const allowed = 5e-5 * (0 + Math.sqrt(25 / 3));
    expect(leanToleranceRatio(moment, [allowed, 3, 4], e, 1, 0).ratio).toBeCloseTo(1, 9);
  });

  test('equal values, and -0 against +0, are a ratio of 0', () => {
    expect(leanToleranceRatio(params, [1, -0], Float32Array.of(1, 0), 1, 1).ratio).toBe(0);
  });

  test('NaN, Infinity, a wrong length, a missing tensor and any difference where nothing is allowed fail', () => {
    const e = Float32Array.of(1, 2);
    expect(leanToleranceRatio(params, [1, NaN], e, 1, 1).ratio).toBe(Infinity);
    expect(leanToleranceRatio(params, [Infinity, 2], e, 1, 1).ratio).toBe(Infinity);
    expect(leanToleranceRatio(params, [1, 2, 3], e, 1, 1).ratio).toBe(Infinity);
    expect(leanToleranceRatio(params, undefined, e, 1, 1).ratio).toBe(Infinity);
    // An all-zero exp_avg allows nothing: the value must be exactly 0.
    expect(leanToleranceRatio(moment, [0, 1e-30], Float32Array.of(0, 0), 1, 0).ratio).toBe(
      Infinity,
    );
  });
});

// The worst ratio of the correct reference per optimizer, printed for the record (the README's
// own float64 reference: 0.246 Lion, 0.126 Adafactor, 0.092 CAME).
describe('the float64 reference of the README pseudo-code passes every case', () => {
  const worstByKind: Partial<Record<LeanOptimizerKind, { ratio: number; where: string }>> = {};
  afterAll(() => {
    console.log(
      'lean golden harness, correct reference: ' +
        Object.entries(worstByKind)
          .map(([kind, w]) => `${kind} worst ${w.ratio.toFixed(3)} (${w.where})`)
          .join('; '),
    );
  });

  test.each(manifest.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const result = runLeanGoldenCase(c, (params0) => referenceSubject(c, params0));
    const previous = worstByKind[c.optimizer];
    if (previous === undefined || result.worst > previous.ratio) {
      worstByKind[c.optimizer] = { ratio: result.worst, where: `${c.name} ${result.where}` };
    }
    expect({
      worst: result.worst <= 1 ? 'within tolerance' : result.worst,
      where: result.where,
    }).toEqual({ worst: 'within tolerance', where: result.where });
  });
});

// Each variant is one of the README's wrong implementations; it must fail at least one case of its
// optimizer, and on its strongest case by far more than any correct implementation's headroom
// (> 10x the tolerance: the README measures 9.2e4 for L1, 2.8e4 for A1, inf for A3, 4.2e4 for C3).
const MUTANTS: readonly [LeanReferenceVariant, LeanOptimizerKind][] = [
  ['sign0IsPlus1', 'lion'],
  ['noUpdateClipping', 'adafactor'],
  ['rowColSwapped', 'adafactor'],
  ['resWithOldExpAvg', 'came'],
];

describe('wrong variants fail: the tolerance separates correct from wrong', () => {
  const report: string[] = [];
  afterAll(() => {
    console.log(`lean golden harness, wrong variants:\n  ${report.join('\n  ')}`);
  });

  test.each(MUTANTS)('%s fails %s cases', (variant, kind) => {
    const results = casesOf(kind).map((c) => ({
      name: c.name,
      ...runLeanGoldenCase(c, (params0) => referenceSubject(c, params0, variant)),
    }));
    const failing = results.filter((r) => r.worst > 1);
    const strongest = results.reduce((a, b) => (b.worst > a.worst ? b : a));
    report.push(
      `${variant}: fails ${failing.length}/${results.length} ${kind} cases; strongest ` +
        `${strongest.worst.toPrecision(3)} (${strongest.name}, ${strongest.where})`,
    );
    expect(failing.length).toBeGreaterThan(0);
    expect(strongest.worst).toBeGreaterThan(10);
  });

  test('the row/col swap shows on the params of the square case, not only on state lengths', () => {
    const c = findCase('adafactor_warmup_init_40x40_t10');
    const result = runLeanGoldenCase(c, (params0) => referenceSubject(c, params0, 'rowColSwapped'));
    expect(result.perQuantity.params).toBeGreaterThan(10);
  });

  test('sign(0) = +1 shows where c is exactly 0 (Lion sign-zero case)', () => {
    const c = findCase('lion_sign_zero_n65_t10');
    const result = runLeanGoldenCase(c, (params0) => referenceSubject(c, params0, 'sign0IsPlus1'));
    expect(result.perQuantity.params).toBeGreaterThan(10);
  });
});

describe('the runner itself', () => {
  // The correct reference of a case with one thing about what it reports broken.
  test.each(['step', 'missing', 'extra'] as const)('a subject with a wrong %s fails', (how) => {
    const c = findCase('adafactor_1x33_t10');
    const result = runLeanGoldenCase(c, (params0): LeanGoldenSubject => {
      const inner = referenceSubject(c, params0);
      return {
        step: (grad, t, lr) => inner.step(grad, t, lr),
        params: () => inner.params(),
        state: () => {
          const s = inner.state();
          if (how === 'step') return { ...s, step: s.step + 1 };
          if (how === 'extra') return { ...s, expAvgSq: new Float32Array(c.n) };
          const rest: LeanSubjectState = { ...s };
          delete rest.expAvgSqRow;
          return rest;
        },
      };
    });
    expect(result.worst).toBe(Infinity);
  });

  test('grads reach the subject as step-major views, one per step, with the lr of that step', () => {
    const c = findCase('lion_cosine_lr_n1000_t100');
    const seen: { offset: number; length: number; lr: number | null; t: number }[] = [];
    runLeanGoldenCase(c, (params0) => {
      const inner = referenceSubject(c, params0);
      return {
        step: (grad, t, lr) => {
          seen.push({ offset: grad.byteOffset, length: grad.length, lr, t });
          inner.step(grad, t, lr);
        },
        params: () => inner.params(),
        state: () => inner.state(),
      };
    });
    expect(seen.length).toBe(100);
    expect(seen.map((s) => s.t)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(seen.map((s) => s.offset)).toEqual(Array.from({ length: 100 }, (_, i) => i * 4000));
    expect(seen.every((s) => s.length === 1000)).toBe(true);
    expect(seen.map((s) => s.lr)).toEqual(c.lr_per_step);
  });
});
