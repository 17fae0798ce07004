// Loader and checker for the Lion / Adafactor / CAME golden reference data in
// test/fixtures/golden-lean (format, tolerance rule and exact reference semantics: its README.md).
// runLeanGoldenCase() drives any implementation of the three optimizers through one case and
// reports the worst |actual - golden| / allowed ratio over both checkpoints and every quantity the
// manifest lists (<= 1 passes), with state(p).step checked after every step. Names, shapes and
// files are taken from the manifest, never built here.
import * as fs from 'node:fs';
import * as path from 'node:path';

// Math/Number are read once here: a global lookup inside a hot loop is ~8x slower in jest's vm
// sandbox.
const { abs, sqrt } = Math;
const { isFinite: isFiniteNumber } = Number;

/** Folder holding cases.json; every `files` path in the manifest is relative to it. */
export const LEAN_GOLDEN_DIR = path.join(__dirname, '..', 'fixtures', 'golden-lean');

export type LeanOptimizerKind = 'lion' | 'adafactor' | 'came';
/** The manifest's quantity keys: 'params' and the reference's state keys. */
export type LeanQuantity =
  | 'params'
  | 'exp_avg'
  | 'exp_avg_sq'
  | 'exp_avg_sq_row'
  | 'exp_avg_sq_col'
  | 'exp_avg_res_row'
  | 'exp_avg_res_col';
/** The library's state names (manifest `state_names`). */
export type LeanStateName =
  'expAvg' | 'expAvgSq' | 'expAvgSqRow' | 'expAvgSqCol' | 'expAvgResRow' | 'expAvgResCol';
export type LeanCheckpoint = 'step1' | 'final';

/** The case's hyperparameters under the library's option names (manifest `api_options`). */
export interface LionApiOptions {
  lr: number;
  betas: [number, number];
  weightDecay: number;
  maximize: boolean;
}
export interface AdafactorApiOptions {
  lr: number | null;
  eps: [number, number];
  clipThreshold: number;
  decayRate: number;
  beta1: number | null;
  weightDecay: number;
  scaleParameter: boolean;
  relativeStep: boolean;
  warmupInit: boolean;
}
export interface CameApiOptions {
  lr: number;
  eps: [number, number];
  clipThreshold: number;
  betas: [number, number, number];
  weightDecay: number;
}

interface LeanCaseBase {
  name: string;
  description: string;
  reference_call: string;
  hyperparameters: Record<string, unknown>;
  /** Only present when the group lr changes between steps: lr_per_step[t-1] is the lr of step t. */
  lr_per_step?: number[];
  steps: number;
  shape: number[];
  n: number;
  shapes: Partial<Record<LeanQuantity, number[]>>;
  files: {
    params0: string;
    /** steps * n floats, step-major. */
    grads: string;
    step1: Partial<Record<LeanQuantity, string>>;
    /** For steps == 1 these are the step1 files. */
    final: Partial<Record<LeanQuantity, string>>;
  };
  sha256: Record<string, string>;
  torch_vs_float64: Record<string, unknown>;
  generator_spec: Record<string, unknown>;
}
export interface LionCase extends LeanCaseBase {
  optimizer: 'lion';
  api_options: LionApiOptions;
  lion_conditioning_changes: number;
}
export interface AdafactorCase extends LeanCaseBase {
  optimizer: 'adafactor';
  api_options: AdafactorApiOptions;
  /** The lr that multiplied each step's update (for the tolerance only). */
  effective_lr_per_step: number[];
}
export interface CameCase extends LeanCaseBase {
  optimizer: 'came';
  api_options: CameApiOptions;
}
export type LeanGoldenCase = LionCase | AdafactorCase | CameCase;

export interface LeanQuantityTolerance {
  rtol: number;
  rtol_per_step: number;
  /** params only: allowed += atol_lr * (sum of the lr of steps 1..t). */
  atol_lr?: number;
  scale: 'abs' | 'abs_plus_rms';
}
export type LeanTolerance = Record<
  LeanOptimizerKind,
  Partial<Record<LeanQuantity, LeanQuantityTolerance>>
>;

export interface LeanGoldenManifest {
  format: 'lean-golden-v1';
  set: 'public' | 'holdout';
  base_seed: number;
  dtype: 'float32';
  byte_order: 'little';
  references: Record<LeanOptimizerKind, Record<string, string>>;
  torch_version: string;
  state_names: Record<Exclude<LeanQuantity, 'params'>, LeanStateName>;
  tolerance: LeanTolerance;
  total_bytes: number;
  cases: LeanGoldenCase[];
}

let cachedManifest: LeanGoldenManifest | undefined;

/** Reads test/fixtures/golden-lean/cases.json (cached after the first call). */
export function loadLeanGoldenManifest(): LeanGoldenManifest {
  if (cachedManifest !== undefined) return cachedManifest;
  const text = fs.readFileSync(path.join(LEAN_GOLDEN_DIR, 'cases.json'), 'utf8');
  const manifest = JSON.parse(text) as LeanGoldenManifest;
  if (manifest.format !== 'lean-golden-v1' || manifest.byte_order !== 'little') {
    throw new Error(`unexpected lean golden manifest format ${manifest.format}`);
  }
  if (!Array.isArray(manifest.cases) || manifest.cases.length === 0) {
    throw new Error('lean golden manifest has no cases');
  }
  cachedManifest = manifest;
  return manifest;
}

/** Reads a raw little-endian float32 file; `rel` is relative to the folder holding cases.json. */
export function readLeanF32(rel: string): Float32Array {
  const bytes = fs.readFileSync(path.join(LEAN_GOLDEN_DIR, rel));
  if (bytes.byteLength % 4 !== 0) {
    throw new Error(`${rel}: size ${bytes.byteLength} is not a multiple of 4`);
  }
  // DataView works on any host endianness and any Buffer alignment.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = new Float32Array(bytes.byteLength / 4);
  for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(4 * i, true);
  return values;
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** The lr the caller sets for step t (1-based): lr_per_step, else the constant lr (Adafactor:
 * null with relativeStep). */
export function lrOfStep(c: LeanGoldenCase, t: number): number | null {
  if (c.lr_per_step !== undefined) return c.lr_per_step[t - 1]!;
  return c.api_options.lr;
}

/** The lr that multiplies step t's update, for the tolerance's atol_lr term. */
export function toleranceLrOfStep(c: LeanGoldenCase, t: number): number {
  if (c.optimizer === 'adafactor') return c.effective_lr_per_step[t - 1]!;
  return c.lr_per_step !== undefined ? c.lr_per_step[t - 1]! : c.api_options.lr;
}

/** Library state name of a manifest quantity (undefined for 'params'). */
export function stateNameOf(quantity: LeanQuantity): LeanStateName | undefined {
  if (quantity === 'params') return undefined;
  return loadLeanGoldenManifest().state_names[quantity];
}

export interface LeanLoadedCase {
  params0: Float32Array;
  grads: Float32Array;
  checkpoints: Record<LeanCheckpoint, Partial<Record<LeanQuantity, Float32Array>>>;
}

/** Reads a case's inputs and both checkpoints, each file checked against its manifest shape. */
export function loadLeanCase(c: LeanGoldenCase): LeanLoadedCase {
  const read = (rel: string, floats: number): Float32Array => {
    const values = readLeanF32(rel);
    if (values.length !== floats) {
      throw new Error(`${rel}: ${values.length} floats, expected ${floats}`);
    }
    return values;
  };
  if (product(c.shape) !== c.n)
    throw new Error(`${c.name}: shape [${c.shape.join(', ')}] is not n=${c.n}`);
  const checkpoint = (files: Partial<Record<LeanQuantity, string>>) => {
    const out: Partial<Record<LeanQuantity, Float32Array>> = {};
    for (const [q, rel] of Object.entries(files) as [LeanQuantity, string][]) {
      const shape = c.shapes[q];
      if (shape === undefined) throw new Error(`${c.name}: no shape for ${q}`);
      out[q] = read(rel, product(shape));
    }
    return out;
  };
  return {
    params0: read(c.files.params0, c.n),
    grads: read(c.files.grads, c.steps * c.n),
    checkpoints: { step1: checkpoint(c.files.step1), final: checkpoint(c.files.final) },
  };
}

interface Worst {
  ratio: number;
  index: number;
}

/**
 * The README's rule for one quantity at a checkpoint of step `t` (`lrSum` = sum of the tolerance
 * lr over steps 1..t): the largest |a - e| / allowed, computed in double. Infinity for a missing
 * or wrongly sized tensor, a NaN/Inf in `actual`, or any difference where allowed is 0; -0 == +0.
 */
export function leanToleranceRatio(
  tq: LeanQuantityTolerance,
  actual: ArrayLike<number> | undefined,
  expected: Float32Array,
  t: number,
  lrSum: number,
): Worst {
  if (actual === undefined || actual.length !== expected.length)
    return { ratio: Infinity, index: -1 };
  const rtol = tq.rtol + tq.rtol_per_step * t;
  let rms = 0;
  if (tq.scale === 'abs_plus_rms') {
    let sum = 0;
    for (let i = 0; i < expected.length; i++) sum += expected[i]! * expected[i]!;
    rms = sqrt(sum / expected.length);
  }
  const atol = tq.atol_lr !== undefined ? tq.atol_lr * lrSum : 0;
  let worst: Worst = { ratio: 0, index: -1 };
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    if (!isFiniteNumber(a)) return { ratio: Infinity, index: i };
    const d = abs(a - expected[i]!);
    if (d === 0) continue;
    const ratio = d / (rtol * (abs(expected[i]!) + rms) + atol); // Infinity where allowed is 0
    if (ratio > worst.ratio) worst = { ratio, index: i };
  }
  return worst;
}

/** What the implementation under test shows after a step: the step count and its state tensors
 * under the library's names (anything else in the object, e.g. `dtype`, is ignored unless it is a
 * typed array). */
export interface LeanSubjectState {
  step: number;
  [name: string]: unknown;
}

/** One implementation of one case, created from the case's initial params (a fresh copy). */
export interface LeanGoldenSubject {
  /** One step with `grad` (a view into the step-major buffer, a non-zero byteOffset for t > 1),
   * at the lr the caller sets for step t (lrOfStep: null for Adafactor's relative step). */
  step(grad: Float32Array, t: number, lr: number | null): void;
  /** The params now (float32 values). */
  params(): ArrayLike<number>;
  /** The state now, as state(p) returns it. */
  state(): LeanSubjectState;
}

export interface LeanGoldenRunResult {
  /** Worst |actual - golden| / allowed over both checkpoints and all quantities; <= 1 passes.
   * Infinity also when the step count is wrong or a state tensor is missing or extra. */
  worst: number;
  /** Where the worst ratio occurred, e.g. "final (t=10) exp_avg_sq_row[12]". */
  where: string;
  /** The worst ratio per quantity over both checkpoints. */
  perQuantity: Partial<Record<LeanQuantity, number>>;
  /** Raw bits of params and every state tensor after the last step, in the manifest's order: for
   * comparing runs bit for bit. */
  finalBits: Uint32Array[];
}

function bitsOfValues(values: ArrayLike<number>): Uint32Array {
  return new Uint32Array(Float32Array.from(values).buffer);
}

function isTypedArray(value: unknown): value is ArrayLike<number> {
  return ArrayBuffer.isView(value) && !(value instanceof DataView);
}

// Each case's files, read once per test file (runs only read them; params0 is copied per run).
const loadedCases = new Map<string, LeanLoadedCase>();

/**
 * Runs a case through `create(params0)`: one step per gradient, the lr of each step as the
 * README's loop sets it; after every step state().step must be t, and after step 1 and the last
 * step every quantity of files.step1 / files.final is compared, and no other state tensor may
 * exist. The caller asserts `worst <= 1`.
 */
export function runLeanGoldenCase(
  c: LeanGoldenCase,
  create: (params0: Float32Array) => LeanGoldenSubject,
  tolerance: LeanTolerance = loadLeanGoldenManifest().tolerance,
): LeanGoldenRunResult {
  let golden = loadedCases.get(c.name);
  if (golden === undefined) {
    golden = loadLeanCase(c);
    loadedCases.set(c.name, golden);
  }
  const subject = create(golden.params0.slice());
  // A copy per run: an implementation that wrote to its gradients would change no later run.
  const grads = golden.grads.slice();
  const result: LeanGoldenRunResult = { worst: 0, where: '', perQuantity: {}, finalBits: [] };
  const note = (ratio: number, where: string): void => {
    if (result.where === '' || ratio > result.worst) {
      result.worst = ratio;
      result.where = where;
    }
  };
  let lrSum = 0;
  for (let t = 1; t <= c.steps; t++) {
    subject.step(grads.subarray((t - 1) * c.n, t * c.n), t, lrOfStep(c, t));
    lrSum += toleranceLrOfStep(c, t);
    const state = subject.state();
    if (state.step !== t) note(Infinity, `state().step is ${String(state.step)} after step ${t}`);
    const checkpoints: LeanCheckpoint[] = [];
    if (t === 1) checkpoints.push('step1');
    if (t === c.steps) checkpoints.push('final');
    for (const checkpoint of checkpoints) {
      const files = c.files[checkpoint];
      const quantities = Object.keys(files) as LeanQuantity[];
      const expectedNames = new Set(quantities.map(stateNameOf).filter((n) => n !== undefined));
      for (const [name, value] of Object.entries(state)) {
        if (isTypedArray(value) && !expectedNames.has(name as LeanStateName)) {
          note(Infinity, `${checkpoint} (t=${t}): state has ${name}, the reference has none`);
        }
      }
      for (const quantity of quantities) {
        const name = stateNameOf(quantity);
        const value = name === undefined ? subject.params() : state[name];
        const actual = isTypedArray(value) ? value : undefined;
        const tq = tolerance[c.optimizer][quantity];
        if (tq === undefined) throw new Error(`no tolerance for ${c.optimizer} ${quantity}`);
        const found = leanToleranceRatio(
          tq,
          actual,
          golden.checkpoints[checkpoint][quantity]!,
          t,
          lrSum,
        );
        result.perQuantity[quantity] = Math.max(result.perQuantity[quantity] ?? 0, found.ratio);
        const element =
          actual === undefined
            ? ' (missing)'
            : found.index >= 0
              ? `[${found.index}]`
              : found.ratio === Infinity
                ? ` (length ${actual.length})`
                : '';
        note(found.ratio, `${checkpoint} (t=${t}) ${quantity}${element}`);
        if (checkpoint === 'final' && actual !== undefined) {
          result.finalBits.push(bitsOfValues(actual));
        }
      }
    }
  }
  return result;
}
