// Plain-JavaScript Lion, Adafactor and CAME, written from the pseudo-code of
// test/fixtures/golden-lean/README.md (the reference implementations' semantics), independent of
// lib/: params and state kept in Float64Arrays from the float32 inputs, every operation in double,
// rounded to float32 only when read. It exists to validate the golden harness
// (test/golden-lean-helpers.test.ts): this must pass every case, and each deliberately wrong
// variant below must fail one, so a passing golden test of the library means something.
import type {
  AdafactorApiOptions,
  CameApiOptions,
  LeanGoldenCase,
  LeanGoldenSubject,
  LeanSubjectState,
  LionApiOptions,
} from './golden-lean';

// Read once: a global lookup inside a hot loop is ~8x slower in jest's vm sandbox.
const { max, min, pow, sqrt } = Math;

/** The correct semantics, or one named mistake (README "wrong implementations"). */
export type LeanReferenceVariant =
  | 'correct'
  /** Lion L1: sign(0) = +1 (c >= 0 ? 1 : -1). */
  | 'sign0IsPlus1'
  /** Adafactor A1: the update is not divided by max(1, RMS(update) / clipThreshold). */
  | 'noUpdateClipping'
  /** Adafactor A3: the row state holds the means over dim -2 and the col state those over dim -1;
   * square params also get the two factors applied transposed. */
  | 'rowColSwapped'
  /** CAME C3: the instability uses the exp_avg of before this step's update. */
  | 'resWithOldExpAvg';

/** [batches, R, C] of a shape; null for a shape of fewer than 2 dims (unfactored). */
export function factoredDims(shape: readonly number[]): [number, number, number] | null {
  if (shape.length < 2) return null;
  const rows = shape[shape.length - 2]!;
  const cols = shape[shape.length - 1]!;
  let batches = 1;
  for (let k = 0; k < shape.length - 2; k++) batches *= shape[k]!;
  return [batches, rows, cols];
}

function rms(values: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]! * values[i]!;
  return sqrt(sum / values.length);
}

/** The factored second-moment (or instability) statistics of one [B, R, C] tensor `u`:
 * row[b*R + r] = mean over c, col[b*C + c] = mean over r. */
function rowColMeans(
  u: Float64Array,
  [batches, rows, cols]: [number, number, number],
): { rowMeans: Float64Array; colMeans: Float64Array } {
  const rowMeans = new Float64Array(batches * rows);
  const colMeans = new Float64Array(batches * cols);
  for (let b = 0; b < batches; b++) {
    for (let r = 0; r < rows; r++) {
      let sum = 0;
      for (let c = 0; c < cols; c++) {
        const x = u[(b * rows + r) * cols + c]!;
        sum += x;
        colMeans[b * cols + c] = colMeans[b * cols + c]! + x;
      }
      rowMeans[b * rows + r] = sum / cols;
    }
    for (let c = 0; c < cols; c++) colMeans[b * cols + c] = colMeans[b * cols + c]! / rows;
  }
  return { rowMeans, colMeans };
}

function ema(into: Float64Array, beta: number, values: Float64Array): void {
  for (let i = 0; i < into.length; i++) into[i] = into[i]! * beta + (1 - beta) * values[i]!;
}

/** out[b, r, c] = rsqrt(row[b*R + r] / mean(row[b*R .. b*R + R))) * rsqrt(col[b*C + c]) * x:
 * the references' _approx_sq_grad times x. */
function applyFactors(
  row: Float64Array,
  col: Float64Array,
  x: Float64Array,
  [batches, rows, cols]: [number, number, number],
): Float64Array {
  const out = new Float64Array(x.length);
  for (let b = 0; b < batches; b++) {
    let rowSum = 0;
    for (let r = 0; r < rows; r++) rowSum += row[b * rows + r]!;
    const rowMean = rowSum / rows;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const i = (b * rows + r) * cols + c;
        out[i] = (1 / sqrt(row[b * rows + r]! / rowMean)) * (1 / sqrt(col[b * cols + c]!)) * x[i]!;
      }
    }
  }
  return out;
}

function rounded(values: Float64Array): Float32Array {
  return Float32Array.from(values);
}

/** A reference optimizer for one tensor: the harness's interface plus the lr that multiplied the
 * last step's update (Adafactor: lr_t; the others: the lr given), for the tolerance's atol term. */
export interface ReferenceSubject extends LeanGoldenSubject {
  updateLr(): number;
}

function lionSubject(
  options: LionApiOptions,
  params0: Float32Array,
  variant: LeanReferenceVariant,
): ReferenceSubject {
  const p = Float64Array.from(params0);
  const expAvg = new Float64Array(p.length);
  const [beta1, beta2] = options.betas;
  let stepCount = 0;
  let updateLr = 0;
  const sign =
    variant === 'sign0IsPlus1'
      ? (x: number) => (x >= 0 ? 1 : -1)
      : (x: number) => (x > 0 ? 1 : x < 0 ? -1 : x); // torch.sign: 0 for 0, NaN for NaN
  return {
    step(grad, _t, lr) {
      if (lr === null) throw new Error('Lion needs an lr');
      updateLr = lr;
      const decay = 1 - lr * options.weightDecay;
      for (let i = 0; i < p.length; i++) {
        // maximize: the reference run on the negated gradient (README "Lion maximize").
        const g = options.maximize ? -grad[i]! : grad[i]!;
        p[i] = p[i]! * decay;
        const c = expAvg[i]! * beta1 + g * (1 - beta1);
        p[i] = p[i]! - lr * sign(c);
        expAvg[i] = expAvg[i]! * beta2 + (1 - beta2) * g;
      }
      stepCount++;
    },
    params: () => rounded(p),
    state: (): LeanSubjectState => ({ step: stepCount, expAvg: rounded(expAvg) }),
    updateLr: () => updateLr,
  };
}

function adafactorSubject(
  options: AdafactorApiOptions,
  shape: readonly number[],
  params0: Float32Array,
  variant: LeanReferenceVariant,
): ReferenceSubject {
  const n = params0.length;
  const p = Float64Array.from(params0);
  const dims = factoredDims(shape);
  const [eps1, eps2] = options.eps;
  let updateLr = 0;
  const expAvg = options.beta1 === null ? null : new Float64Array(n);
  const swapped = variant === 'rowColSwapped';
  // Swapped: "row" is one per column, "col" one per row (the wrong lengths unless square).
  const row = dims === null ? null : new Float64Array(dims[0] * (swapped ? dims[2] : dims[1]));
  const col = dims === null ? null : new Float64Array(dims[0] * (swapped ? dims[1] : dims[2]));
  const expAvgSq = dims === null ? new Float64Array(n) : null;
  let stepCount = 0;
  return {
    step(grad, _t, lr) {
      const t = ++stepCount;
      const rmsP = rms(p); // of p before this step
      let rel: number;
      if (options.relativeStep) {
        rel = min(options.warmupInit ? 1e-6 * t : 1e-2, 1 / sqrt(t));
      } else {
        if (lr === null) throw new Error('relativeStep false needs an lr');
        rel = lr;
      }
      const lrT = options.scaleParameter ? max(eps2, rmsP) * rel : rel;
      updateLr = lrT;
      const beta2t = 1 - pow(t, options.decayRate);
      const u = new Float64Array(n);
      for (let i = 0; i < n; i++) u[i] = grad[i]! * grad[i]! + eps1;
      const g = Float64Array.from(grad);
      let upd: Float64Array;
      if (dims !== null && row !== null && col !== null) {
        const { rowMeans, colMeans } = rowColMeans(u, dims);
        if (swapped) {
          ema(row, beta2t, colMeans);
          ema(col, beta2t, rowMeans);
          // Square: the swapped factors used as if they were right, i.e. transposed. Otherwise the
          // only use that fits the lengths, which gives the right update.
          upd =
            dims[1] === dims[2] ? applyFactors(row, col, g, dims) : applyFactors(col, row, g, dims);
        } else {
          ema(row, beta2t, rowMeans);
          ema(col, beta2t, colMeans);
          upd = applyFactors(row, col, g, dims);
        }
      } else if (expAvgSq !== null) {
        ema(expAvgSq, beta2t, u);
        upd = new Float64Array(n);
        for (let i = 0; i < n; i++) upd[i] = (1 / sqrt(expAvgSq[i]!)) * g[i]!;
      } else {
        throw new Error('unreachable');
      }
      const clip = variant === 'noUpdateClipping' ? 1 : max(1, rms(upd) / options.clipThreshold);
      for (let i = 0; i < n; i++) upd[i] = (upd[i]! / clip) * lrT;
      if (expAvg !== null && options.beta1 !== null) {
        ema(expAvg, options.beta1, upd);
        upd = expAvg;
      }
      const decay = -options.weightDecay * lrT;
      for (let i = 0; i < n; i++) {
        if (options.weightDecay !== 0) p[i] = p[i]! + decay * p[i]!;
        p[i] = p[i]! - upd[i]!;
      }
    },
    params: () => rounded(p),
    state: (): LeanSubjectState => ({
      step: stepCount,
      ...(expAvg === null ? {} : { expAvg: rounded(expAvg) }),
      ...(expAvgSq === null ? {} : { expAvgSq: rounded(expAvgSq) }),
      ...(row === null || col === null
        ? {}
        : { expAvgSqRow: rounded(row), expAvgSqCol: rounded(col) }),
    }),
    updateLr: () => updateLr,
  };
}

function cameSubject(
  options: CameApiOptions,
  shape: readonly number[],
  params0: Float32Array,
  variant: LeanReferenceVariant,
): ReferenceSubject {
  const n = params0.length;
  const p = Float64Array.from(params0);
  const dims = factoredDims(shape);
  const [eps1, eps2] = options.eps;
  let updateLr = 0;
  const [beta1, beta2, beta3] = options.betas;
  const expAvg = new Float64Array(n);
  const row = dims === null ? null : new Float64Array(dims[0] * dims[1]);
  const col = dims === null ? null : new Float64Array(dims[0] * dims[2]);
  const resRow = dims === null ? null : new Float64Array(dims[0] * dims[1]);
  const resCol = dims === null ? null : new Float64Array(dims[0] * dims[2]);
  const expAvgSq = dims === null ? new Float64Array(n) : null;
  let stepCount = 0;
  return {
    step(grad, _t, lr) {
      if (lr === null) throw new Error('CAME needs an lr');
      updateLr = lr;
      stepCount++;
      const g = Float64Array.from(grad);
      const u = new Float64Array(n);
      for (let i = 0; i < n; i++) u[i] = g[i]! * g[i]! + eps1;
      let upd: Float64Array;
      if (dims !== null && row !== null && col !== null) {
        const { rowMeans, colMeans } = rowColMeans(u, dims);
        ema(row, beta2, rowMeans);
        ema(col, beta2, colMeans);
        upd = applyFactors(row, col, g, dims);
      } else if (expAvgSq !== null) {
        ema(expAvgSq, beta2, u);
        upd = new Float64Array(n);
        for (let i = 0; i < n; i++) upd[i] = (1 / sqrt(expAvgSq[i]!)) * g[i]!;
      } else {
        throw new Error('unreachable');
      }
      const clip = max(1, rms(upd) / options.clipThreshold);
      for (let i = 0; i < n; i++) upd[i] = upd[i]! / clip;
      const oldExpAvg = expAvg.slice();
      ema(expAvg, beta1, upd);
      let final: Float64Array = expAvg.slice(); // 1-D: the update is exp_avg itself
      if (dims !== null && resRow !== null && resCol !== null) {
        const moment = variant === 'resWithOldExpAvg' ? oldExpAvg : expAvg;
        const res = new Float64Array(n);
        for (let i = 0; i < n; i++) res[i] = (upd[i]! - moment[i]!) ** 2 + eps2;
        const { rowMeans, colMeans } = rowColMeans(res, dims);
        ema(resRow, beta3, rowMeans);
        ema(resCol, beta3, colMeans);
        final = applyFactors(resRow, resCol, expAvg, dims);
      }
      const decay = -options.weightDecay * lr;
      for (let i = 0; i < n; i++) {
        if (options.weightDecay !== 0) p[i] = p[i]! + decay * p[i]!;
        p[i] = p[i]! - lr * final[i]!;
      }
    },
    params: () => rounded(p),
    state: (): LeanSubjectState => ({
      step: stepCount,
      expAvg: rounded(expAvg),
      ...(expAvgSq === null ? {} : { expAvgSq: rounded(expAvgSq) }),
      ...(row === null || col === null || resRow === null || resCol === null
        ? {}
        : {
            expAvgSqRow: rounded(row),
            expAvgSqCol: rounded(col),
            expAvgResRow: rounded(resRow),
            expAvgResCol: rounded(resCol),
          }),
    }),
    updateLr: () => updateLr,
  };
}

/** Options of one optimizer, in the library's names, with every value given. */
export type ReferenceOptions =
  | { optimizer: 'lion'; options: LionApiOptions }
  | { optimizer: 'adafactor'; options: AdafactorApiOptions }
  | { optimizer: 'came'; options: CameApiOptions };

/** The reference (or a wrong variant) of one optimizer for one tensor of `shape`. */
export function referenceOptimizer(
  which: ReferenceOptions,
  shape: readonly number[],
  params0: Float32Array,
  variant: LeanReferenceVariant = 'correct',
): ReferenceSubject {
  switch (which.optimizer) {
    case 'lion':
      return lionSubject(which.options, params0, variant);
    case 'adafactor':
      return adafactorSubject(which.options, shape, params0, variant);
    case 'came':
      return cameSubject(which.options, shape, params0, variant);
  }
}

/** The reference (or a wrong variant) of a golden case's optimizer, api_options and shape. */
export function referenceSubject(
  c: LeanGoldenCase,
  params0: Float32Array,
  variant: LeanReferenceVariant = 'correct',
): ReferenceSubject {
  const which =
    c.optimizer === 'lion'
      ? { optimizer: c.optimizer, options: c.api_options }
      : c.optimizer === 'adafactor'
        ? { optimizer: c.optimizer, options: c.api_options }
        : { optimizer: c.optimizer, options: c.api_options };
  return referenceOptimizer(which, c.shape, params0, variant);
}
