// Loader and checker for the PyTorch golden reference data in test/fixtures/golden
// (format, tolerance rule and reference JS checker: shared/golden/README.md of this project).
// runGoldenCase() drives any Adam/AdamW step implementation through one golden case and reports
// the worst |actual - golden| / allowed ratio over both checkpoints; a ratio <= 1 passes.
import * as fs from 'node:fs';
import * as path from 'node:path';

// Math/Number are read once here: a global lookup inside a hot loop is ~8x slower in jest's vm
// sandbox (measured on the 65537-element case).
const { abs, sqrt } = Math;
const { isFinite: isFiniteNumber, isNaN: isNaNNumber } = Number;

/** Folder holding cases.json; every `files` path in the manifest is relative to it. */
export const GOLDEN_DIR = path.join(__dirname, '..', 'fixtures', 'golden');

export type GoldenOptimizer = 'adam' | 'adamw';
export type GoldenQuantity = 'params' | 'exp_avg' | 'exp_avg_sq' | 'max_exp_avg_sq';
export type GoldenCheckpoint = 'step1' | 'final';

/** The exact float64 values given to the torch constructor (defaults filled in). */
export interface GoldenHyperparameters {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
  amsgrad: boolean;
  maximize: boolean;
}

/** State files of one checkpoint; max_exp_avg_sq only for amsgrad cases. */
export interface GoldenCheckpointFiles {
  params: string;
  exp_avg: string;
  exp_avg_sq: string;
  max_exp_avg_sq?: string;
}

export interface GoldenFiles {
  params0: string;
  /** steps * n floats, step-major: the gradient of step t is floats [(t-1)*n, t*n). */
  grads: string;
  step1: GoldenCheckpointFiles;
  /** For steps == 1 these are the step1 files. */
  final: GoldenCheckpointFiles;
}

/** torch float32 result vs a float64 evaluation of the same formula (informational). */
export interface GoldenAccuracy {
  max_abs: number;
  max_rel: number;
  max_ulp: number;
  max_abs_over_lr?: number | null;
  f64_tol_ratio: number;
}

export interface GoldenCase {
  name: string;
  description: string;
  optimizer: GoldenOptimizer;
  torch_call: string;
  hyperparameters: GoldenHyperparameters;
  /** Only present when the lr changes between steps; lr_per_step[t-1] is the lr of step t. */
  lr_per_step?: number[];
  steps: number;
  n: number;
  files: GoldenFiles;
  sha256: Record<string, string>;
  torch_vs_float64: Record<GoldenCheckpoint, Partial<Record<GoldenQuantity, GoldenAccuracy>>>;
  /** Adam + L2 cases only. */
  l2_conditioning_sign_flips?: number;
  generator_spec: Record<string, unknown>;
}

/** allowed = (rtol + rtol_per_step * t) * scale (+ atol_lr * sum of lr, params only). */
export interface GoldenQuantityTolerance {
  rtol: number;
  rtol_per_step: number;
  atol_lr?: number;
}

export type GoldenTolerance = Record<GoldenQuantity, GoldenQuantityTolerance>;

export interface GoldenManifest {
  format: 'adam-golden-v1';
  set: 'public' | 'holdout';
  base_seed: number;
  dtype: 'float32';
  byte_order: 'little';
  generator: string;
  spec_source: string;
  torch_version: string;
  numpy_version: string;
  python_version: string;
  machine: string;
  torch_cpu_capability: string;
  torch_num_threads: number;
  defaults: Record<GoldenOptimizer, GoldenHyperparameters>;
  tolerance: GoldenTolerance;
  total_bytes: number;
  cases: GoldenCase[];
}

/** Optimizer state at a checkpoint, as torch stored it. */
export interface GoldenState {
  params: Float32Array;
  exp_avg: Float32Array;
  exp_avg_sq: Float32Array;
  max_exp_avg_sq?: Float32Array;
}

export interface LoadedGoldenCase {
  params0: Float32Array;
  /** All steps, step-major: steps * n floats. */
  grads: Float32Array;
  /** lr of every step: lrs[t-1] is the lr of step t. */
  lrs: number[];
  checkpoints: Record<GoldenCheckpoint, GoldenState>;
}

/** State updated in place by the implementation under test; all arrays have n elements. */
export interface GoldenStepState {
  params: Float32Array;
  exp_avg: Float32Array;
  exp_avg_sq: Float32Array;
  max_exp_avg_sq: Float32Array;
}

/**
 * One optimizer step, in place on `state`. `t` is the 1-based step number and `lr` this step's lr.
 * `grad` is a view (subarray, non-zero byteOffset for t > 1) into the step-major gradient buffer.
 */
export type GoldenStepFn = (
  state: GoldenStepState,
  grad: Float32Array,
  t: number,
  lr: number,
) => void;

export interface GoldenRunResult {
  /** Worst |actual - golden| / allowed over both checkpoints and all quantities; <= 1 passes. */
  worst: number;
  /** Where the worst ratio occurred, e.g. "final (t=10) params[123]". */
  where: string;
}

let cachedManifest: GoldenManifest | undefined;

/** Reads test/fixtures/golden/cases.json (cached after the first call). */
export function loadGoldenManifest(): GoldenManifest {
  if (cachedManifest !== undefined) return cachedManifest;
  const parsed: unknown = JSON.parse(fs.readFileSync(path.join(GOLDEN_DIR, 'cases.json'), 'utf8'));
  const manifest = parsed as GoldenManifest;
  if (manifest.format !== 'adam-golden-v1' || manifest.byte_order !== 'little') {
    throw new Error(`unexpected golden manifest format ${manifest.format}`);
  }
  if (!Array.isArray(manifest.cases) || manifest.cases.length === 0) {
    throw new Error('golden manifest has no cases');
  }
  cachedManifest = manifest;
  return manifest;
}

/** Reads a raw little-endian float32 file; `rel` is relative to the folder holding cases.json. */
export function readF32(rel: string): Float32Array {
  const bytes = fs.readFileSync(path.join(GOLDEN_DIR, rel));
  if (bytes.byteLength % 4 !== 0) {
    throw new Error(`${rel}: size ${bytes.byteLength} is not a multiple of 4`);
  }
  // DataView works on any host endianness and any Buffer alignment.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = new Float32Array(bytes.byteLength / 4);
  for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(4 * i, true);
  return values;
}

function readF32WithLength(rel: string, expectedLength: number): Float32Array {
  const values = readF32(rel);
  if (values.length !== expectedLength) {
    throw new Error(`${rel}: ${values.length} floats, expected ${expectedLength}`);
  }
  return values;
}

function readCheckpoint(files: GoldenCheckpointFiles, n: number): GoldenState {
  const state: GoldenState = {
    params: readF32WithLength(files.params, n),
    exp_avg: readF32WithLength(files.exp_avg, n),
    exp_avg_sq: readF32WithLength(files.exp_avg_sq, n),
  };
  if (files.max_exp_avg_sq !== undefined) {
    state.max_exp_avg_sq = readF32WithLength(files.max_exp_avg_sq, n);
  }
  return state;
}

/** lr of every step of a case: lr_per_step when present, else hyperparameters.lr. */
export function caseLrs(c: GoldenCase): number[] {
  const lrs = c.lr_per_step ?? new Array<number>(c.steps).fill(c.hyperparameters.lr);
  if (lrs.length !== c.steps) {
    throw new Error(`${c.name}: lr_per_step has ${lrs.length} entries, expected ${c.steps}`);
  }
  return lrs;
}

/** Reads all inputs and both checkpoints of a case (fresh arrays on every call). */
export function loadCase(c: GoldenCase): LoadedGoldenCase {
  return {
    params0: readF32WithLength(c.files.params0, c.n),
    grads: readF32WithLength(c.files.grads, c.steps * c.n),
    lrs: caseLrs(c),
    checkpoints: {
      step1: readCheckpoint(c.files.step1, c.n),
      final: readCheckpoint(c.files.final, c.n),
    },
  };
}

interface WorstElement {
  ratio: number;
  index: number;
}

function worstElement(
  tol: GoldenTolerance,
  quantity: GoldenQuantity,
  actual: ArrayLike<number>,
  golden: GoldenState,
  t: number,
  lrSum: number,
): WorstElement {
  const expected = golden[quantity];
  if (expected === undefined) throw new Error(`golden state has no ${quantity}`);
  if (actual.length !== expected.length) {
    throw new Error(`${quantity}: ${actual.length} values, expected ${expected.length}`);
  }
  const quantityTol = tol[quantity];
  const rtol = quantityTol.rtol + quantityTol.rtol_per_step * t;
  const atol = quantity === 'params' ? (quantityTol.atol_lr ?? 0) * lrSum : 0;
  let worst: WorstElement = { ratio: 0, index: -1 };
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (!isFiniteNumber(a)) return { ratio: Infinity, index: i };
    const diff = abs(a - e); // in double; -0 vs +0 gives 0
    if (diff === 0) continue;
    const scale = quantity === 'exp_avg' ? abs(e) + sqrt(golden.exp_avg_sq[i]) : abs(e);
    const allowed = rtol * scale + atol;
    const ratio = diff / allowed; // Infinity where allowed is 0
    if (isNaNNumber(ratio)) return { ratio: Infinity, index: i };
    if (ratio > worst.ratio) worst = { ratio, index: i };
  }
  return worst;
}

/**
 * The README's tolerance rule: the largest |actual - golden| / allowed over the elements of one
 * quantity at a checkpoint of step `t`, with `lrSum` = sum of the lr of steps 1..t. <= 1 passes.
 * Infinity on a NaN/Inf in `actual` or on any nonzero difference where allowed is 0; -0 equals +0.
 */
export function toleranceRatio(
  tol: GoldenTolerance,
  quantity: GoldenQuantity,
  actual: ArrayLike<number>,
  golden: GoldenState,
  t: number,
  lrSum: number,
): number {
  return worstElement(tol, quantity, actual, golden, t, lrSum).ratio;
}

/**
 * Runs `stepFn` once per step of the case, starting from params0 and zero moments, and checks
 * every quantity listed in the manifest's files after step 1 and after the last step (both
 * against the same files when steps == 1). The caller asserts `worst <= 1`.
 */
export function runGoldenCase(
  c: GoldenCase,
  stepFn: GoldenStepFn,
  tol: GoldenTolerance = loadGoldenManifest().tolerance,
): GoldenRunResult {
  const golden = loadCase(c);
  const state: GoldenStepState = {
    params: golden.params0.slice(),
    exp_avg: new Float32Array(c.n),
    exp_avg_sq: new Float32Array(c.n),
    max_exp_avg_sq: new Float32Array(c.n),
  };
  const result: GoldenRunResult = { worst: 0, where: '' };
  let lrSum = 0;
  for (let t = 1; t <= c.steps; t++) {
    const lr = golden.lrs[t - 1];
    lrSum += lr;
    stepFn(state, golden.grads.subarray((t - 1) * c.n, t * c.n), t, lr);
    const checkpoints: GoldenCheckpoint[] = [];
    if (t === 1) checkpoints.push('step1');
    if (t === c.steps) checkpoints.push('final');
    for (const checkpoint of checkpoints) {
      const quantities = Object.keys(c.files[checkpoint]) as GoldenQuantity[];
      for (const quantity of quantities) {
        const found = worstElement(
          tol,
          quantity,
          state[quantity],
          golden.checkpoints[checkpoint],
          t,
          lrSum,
        );
        if (result.where === '' || found.ratio > result.worst) {
          const element = found.index >= 0 ? `[${found.index}]` : '';
          result.worst = found.ratio;
          result.where = `${checkpoint} (t=${t}) ${quantity}${element}`;
        }
      }
    }
  }
  return result;
}
