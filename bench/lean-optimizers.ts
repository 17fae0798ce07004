// Question: what does a step of the leaner optimizers (issue 13: Lion, Adafactor, CAME) cost,
// beside AdamW's, and is Lion's step at its memory roofline?
//
// One tensor per configuration, stepped through its class as a training loop calls it, at the
// throughput sizes and thread settings, every configuration interleaved with all others at the
// same size (bench/measure.ts), with Lion's same-run roofline: the six lean loop shapes of
// native/bench/lean-probes.cc with Lion's traffic (benchLionProbe), on each Lion optimizer's own
// arrays (same pages), the fastest median per state dtype, size and thread setting. Then a
// model-shaped step per optimizer: the GPT-style tensors of model-step.ts, each with its shape,
// so Adafactor and CAME factor the 2-D ones and keep full state for the biases and norms.
//
// Bytes/param is what one step reads and writes per param, summed over its passes over the data
// (adafactor.h and came.h say why they need that many), state of the factored rows and columns
// left out (R + C floats per pass, under 0.01 B/param from 1M up):
//
//   configuration           passes   per pass (p param, g grad, m/v moments, 4 B each)     B/param
//   AdamW                   1        read p g m v, write p m v                             28
//   Lion, float32 state     1        read p g m, write p m                                 20
//   Lion, bfloat16 state    1        read p g m(2 B), write p m(2 B)                       16
//   Lion, blockwise8 state  1        read p g m(1 B), write p m(1 B); absmax 8 B per 256   14.03
//   Adafactor, factored     3        (0) read g, p  (1) read g  (2) read g p, write p      24
//   Adafactor, 1-D          2        (0) read g p v, write v  (1) read g v p, write p      32
//   CAME, factored          4        (0) g  (1) g  (2) read g m, write m  (3) read m p,    32
//                                    write p
//   CAME, 1-D               2        (0) read g v, write v  (1) read g v m p, write m p    36
//
// At DRAM sizes every pass streams from memory, so bytes/param times Mparams/s is the memory
// traffic; in cache the second and later reads of the gradient hit the cache and GB/s is only the
// data touched.
//
// Each configuration has its own copy of the param (the grad is shared and only read), so that
// each param's values evolve under its own optimizer alone: Adafactor's relative step scales with
// RMS(p) and CAME's confident updates are large, and on a shared param one could push another's
// values out of range. With the bench's constant gradient, weight decay is what keeps Adafactor's
// param bounded (without it the relative step grows RMS(p) by up to 1% a step, to overflow), so
// every optimizer has some: AdamW 0.01 at lr 1e-3 (the other questions'), Lion 0.1 at lr 1e-4 (its
// paper's advice: a 3-10x smaller lr and larger weight decay), Adafactor and CAME 0.01 with their
// reference defaults otherwise (Adafactor: relative step, scaleParameter, no first moment).
import {
  Adafactor,
  AdamW,
  CAME,
  Lion,
  type MemoryReport,
  type Param,
  type StateDtype,
  backend,
  type IsaName,
} from '../lib/index';
import { benchNative } from './bench-native';
import { fillUniform, makeParamAndGrad, SEED, STEP_HYPERPARAMETERS } from './data';
import type { Contender, Skipped, Workload } from './measure';
import type { TensorShape } from './model-step';
import type { Result } from './results';

export type LeanOptimizerName = 'AdamW' | 'Lion' | 'Adafactor' | 'CAME';

export interface LeanOptimizerConfig {
  /** In contender ids: 'adamw', 'lion-float32', 'adafactor-factored', ... */
  readonly id: string;
  readonly label: string;
  readonly optimizer: LeanOptimizerName;
  /** Lion's state dtype (AdamW, Adafactor and CAME: float32). */
  readonly stateDtype: StateDtype;
  /** Adafactor and CAME: the tensor is a square-ish matrix (factored) or 1-D (full state). */
  readonly factored: boolean;
  /** Passes over the param's elements per step. */
  readonly passes: number;
  /** Memory read and written per param per step, over all passes (the table above). */
  readonly bytesPerParam: number;
  /** How bytesPerParam is made up, for the report. */
  readonly traffic: string;
}

const LION_ABSMAX_BYTES_PER_PARAM = (2 * 4) / 256;

export const LEAN_OPTIMIZER_CONFIGS: readonly LeanOptimizerConfig[] = [
  {
    id: 'adamw',
    label: 'AdamW',
    optimizer: 'AdamW',
    stateDtype: 'float32',
    factored: false,
    passes: 1,
    bytesPerParam: 28,
    traffic: 'read p, g, m, v; write p, m, v',
  },
  {
    id: 'lion-float32',
    label: 'Lion, float32 state',
    optimizer: 'Lion',
    stateDtype: 'float32',
    factored: false,
    passes: 1,
    bytesPerParam: 20,
    traffic: 'read p, g, m; write p, m',
  },
  {
    id: 'lion-bfloat16',
    label: 'Lion, bfloat16 state',
    optimizer: 'Lion',
    stateDtype: 'bfloat16',
    factored: false,
    passes: 1,
    bytesPerParam: 16,
    traffic: 'read p, g, m (2 B); write p, m (2 B)',
  },
  {
    id: 'lion-blockwise8',
    label: 'Lion, blockwise8 state',
    optimizer: 'Lion',
    stateDtype: 'blockwise8',
    factored: false,
    passes: 1,
    bytesPerParam: 14 + LION_ABSMAX_BYTES_PER_PARAM,
    traffic: 'read p, g, m (1 B); write p, m (1 B); one float32 absmax read and written per 256',
  },
  {
    id: 'adafactor-factored',
    label: 'Adafactor, factored (R x C)',
    optimizer: 'Adafactor',
    stateDtype: 'float32',
    factored: true,
    passes: 3,
    bytesPerParam: 24,
    traffic: '(0) read g, p; (1) read g; (2) read g, p, write p',
  },
  {
    id: 'adafactor-1d',
    label: 'Adafactor, 1-D',
    optimizer: 'Adafactor',
    stateDtype: 'float32',
    factored: false,
    passes: 2,
    bytesPerParam: 32,
    traffic: '(0) read g, p, v, write v; (1) read g, v, p, write p',
  },
  {
    id: 'came-factored',
    label: 'CAME, factored (R x C)',
    optimizer: 'CAME',
    stateDtype: 'float32',
    factored: true,
    passes: 4,
    bytesPerParam: 32,
    traffic: '(0) read g; (1) read g; (2) read g, m, write m; (3) read m, p, write p',
  },
  {
    id: 'came-1d',
    label: 'CAME, 1-D',
    optimizer: 'CAME',
    stateDtype: 'float32',
    factored: false,
    passes: 2,
    bytesPerParam: 36,
    traffic: '(0) read g, v, write v; (1) read g, v, m, p, write m, p',
  },
];

export function leanOptimizerConfig(id: string): LeanOptimizerConfig | undefined {
  return LEAN_OPTIMIZER_CONFIGS.find((c) => c.id === id);
}

/** The hyperparameters of every optimizer in this question (see the header for why). */
export const LEAN_OPTIMIZER_HYPERPARAMETERS = {
  lion: { lr: 1e-4, betas: [0.9, 0.99] as [number, number], weightDecay: 0.1 },
  adafactor: { weightDecay: 0.01 },
  came: { weightDecay: 0.01 },
} as const;

/** [R, C] with R the largest divisor of `length` at most its square root: 4K -> 64 x 64, 64M ->
 * 8192 x 8192; what a square weight matrix of that many elements is. */
export function squareishShape(length: number): [number, number] {
  let rows = Math.floor(Math.sqrt(length));
  while (rows > 1 && length % rows !== 0) rows--;
  rows = Math.max(rows, 1);
  return [rows, length / rows];
}

/** What the contenders need of an optimizer: its step, its thread setting and its memory. */
interface Stepper {
  step(): unknown;
  threads: number;
  memory(): MemoryReport;
}

function createOptimizer(
  optimizer: LeanOptimizerName,
  params: Param[],
  stateDtype: StateDtype,
): Stepper {
  switch (optimizer) {
    case 'AdamW': {
      const { lr, beta1, beta2, eps, weightDecay } = STEP_HYPERPARAMETERS;
      return new AdamW(params, { lr, betas: [beta1, beta2], eps, weightDecay });
    }
    case 'Lion':
      return new Lion<StateDtype>(params, {
        ...LEAN_OPTIMIZER_HYPERPARAMETERS.lion,
        // float32 is the default; leaving it out keeps the baseline measurable on any build.
        ...(stateDtype === 'float32' ? {} : { stateDtype }),
      });
    case 'Adafactor':
      return new Adafactor(params, LEAN_OPTIMIZER_HYPERPARAMETERS.adafactor);
    case 'CAME':
      return new CAME(params, LEAN_OPTIMIZER_HYPERPARAMETERS.came);
  }
}

/** A configuration's optimizer over one tensor, and the arrays Lion's probes run on. */
interface LeanOptimizerTensor {
  readonly optimizer: Stepper;
  readonly param: Float32Array;
  readonly grad: Float32Array;
  /** Lion only: its moment (float32, bf16 bits or codes) and, with codes, the absmax. */
  readonly lionState?: {
    readonly expAvg: Float32Array | Uint16Array | Uint8Array;
    readonly absmax: Float32Array | null;
  };
}

/**
 * The initial param values and the grad at the largest size, filled once; per size, one
 * optimizer per configuration, each over its own copy of the first `size` param values and a view
 * of the shared grad. The previous size's optimizers are dropped when the next size starts.
 */
export class LeanOptimizerArrays {
  readonly #initial: Float32Array;
  readonly #grad: Float32Array;
  #size = 0;
  #tensors = new Map<string, LeanOptimizerTensor | Skipped>();
  /** config id / size -> optimizer.memory().state, for the report. */
  readonly stateBytes = new Map<string, number>();

  constructor(maxSize: number) {
    const { param, grad } = makeParamAndGrad(maxSize, SEED + 13);
    this.#initial = param;
    this.#grad = grad;
  }

  at(size: number, config: LeanOptimizerConfig): LeanOptimizerTensor | Skipped {
    if (size !== this.#size) {
      this.#tensors = new Map();
      this.#size = size;
    }
    const existing = this.#tensors.get(config.id);
    if (existing !== undefined) return existing;
    const tensor = this.#create(size, config);
    this.#tensors.set(config.id, tensor);
    return tensor;
  }

  #create(size: number, config: LeanOptimizerConfig): LeanOptimizerTensor | Skipped {
    const data = this.#initial.slice(0, size);
    const grad = this.#grad.subarray(0, size);
    const shape =
      config.optimizer === 'Adafactor' || config.optimizer === 'CAME'
        ? { shape: config.factored ? squareishShape(size) : [size] }
        : {};
    const param: Param = { data, grad, ...shape };
    let optimizer: Stepper;
    try {
      // A build whose kernels lack an op throws here, and the row says why.
      optimizer = createOptimizer(config.optimizer, [param], config.stateDtype);
    } catch (error) {
      return { skipped: `this build has no ${config.label} (${(error as Error).message})` };
    }
    this.stateBytes.set(`${config.id}/${size}`, optimizer.memory().state);
    let lionState: LeanOptimizerTensor['lionState'];
    if (optimizer instanceof Lion) {
      const { expAvg } = (optimizer as Lion<StateDtype>).state(param);
      lionState =
        expAvg instanceof Float32Array || expAvg instanceof Uint16Array
          ? { expAvg, absmax: null }
          : { expAvg: expAvg.codes, absmax: expAvg.absmax };
    }
    return { optimizer, param: data, grad, ...(lionState === undefined ? {} : { lionState }) };
  }
}

function isSkipped(value: object): value is Skipped {
  return 'skipped' in value;
}

export function leanOptimizerContenders(
  arrays: LeanOptimizerArrays,
  threadCounts: readonly number[],
  isa: IsaName,
): Contender[] {
  const out: Contender[] = [];
  for (const threads of threadCounts) {
    for (const config of LEAN_OPTIMIZER_CONFIGS) {
      out.push({
        id: `lean-optimizers/${config.id}/step/t${threads}`,
        label: `${config.label}: step()`,
        family: 'simd-adamw',
        threads,
        isa,
        setup(size: number): Workload | Skipped {
          const tensor = arrays.at(size, config);
          if (isSkipped(tensor)) return tensor;
          return {
            run(reps: number) {
              backend.setIsa(isa);
              tensor.optimizer.threads = threads;
              for (let r = 0; r < reps; r++) tensor.optimizer.step();
            },
          };
        },
      });
      if (config.optimizer !== 'Lion') continue;
      for (const probe of benchNative.leanProbes) {
        out.push({
          id: `lean-optimizers/${config.id}/probe/${probe}/t${threads}`,
          label: `probe: ${probe}, ${config.label}`,
          family: 'probe',
          threads,
          setup(size: number): Workload | Skipped {
            const tensor = arrays.at(size, config);
            if (isSkipped(tensor)) return tensor;
            const { param, grad, lionState } = tensor;
            if (lionState === undefined) return { skipped: 'no Lion state' };
            return {
              run(reps: number) {
                benchNative.benchLionProbe(
                  param,
                  grad,
                  lionState.expAvg,
                  lionState.absmax,
                  reps,
                  threads,
                  probe,
                  0,
                );
              },
            };
          },
        });
      }
    }
  }
  return out;
}

/** One row of the question's table: a configuration's step at one size and thread setting. */
export interface LeanOptimizerRow {
  readonly config: string;
  readonly label: string;
  readonly size: number;
  readonly threads: number;
  readonly passes: number;
  readonly bytesPerParam: number;
  /** How bytesPerParam is made up. */
  readonly traffic: string;
  /** optimizer.memory().state / size. */
  readonly stateBytesPerParam?: number;
  /** undefined when the step did not run (skipped says why). */
  readonly mparamsPerSecond?: number;
  readonly gbPerSecond?: number;
  /** This step's Mparams/s over AdamW's, same size and threads. */
  readonly versusAdamw?: number;
  /** Lion: the fastest of its probes (same state dtype, size, threads). */
  readonly rooflineMparamsPerSecond?: number;
  readonly rooflineProbe?: string;
  readonly fractionOfRoofline?: number;
  readonly skipped?: string;
}

function parseId(id: string): { config: string; kind: string } {
  const parts = id.split('/');
  return { config: parts[1] ?? '', kind: parts[2] ?? '' };
}

/** The results with GB/s from each configuration's own bytes per param (toResult assumes 28). */
export function withOwnTraffic(results: readonly Result[]): Result[] {
  return results.map((r) => {
    const config = leanOptimizerConfig(parseId(r.contender.id).config);
    if (r.throughput === undefined || config === undefined) return r;
    const gbPerSecond = (r.throughput.mparamsPerSecond * config.bytesPerParam) / 1e3;
    return { ...r, throughput: { ...r.throughput, gbPerSecond } };
  });
}

/** The table rows from the measured results: per configuration, size and threads, the step
 * against AdamW's and (Lion) against its own state dtype's fastest probe. */
export function leanOptimizerRows(
  results: readonly Result[],
  stateBytes: ReadonlyMap<string, number>,
): LeanOptimizerRow[] {
  const rows: LeanOptimizerRow[] = [];
  const keys = [...new Set(results.map((r) => `${r.size}/${r.contender.threads}`))];
  for (const key of keys) {
    const [size, threads] = key.split('/').map(Number) as [number, number];
    const here = results.filter((r) => r.size === size && r.contender.threads === threads);
    const step = (config: string): Result | undefined =>
      here.find((r) => r.contender.id === `lean-optimizers/${config}/step/t${threads}`);
    const adamw = step('adamw')?.throughput?.mparamsPerSecond;
    for (const config of LEAN_OPTIMIZER_CONFIGS) {
      const ours = step(config.id);
      let best: { label: string; mparams: number } | undefined;
      for (const r of here) {
        const parsed = parseId(r.contender.id);
        if (parsed.kind !== 'probe' || parsed.config !== config.id || r.throughput === undefined)
          continue;
        if (best === undefined || r.throughput.mparamsPerSecond > best.mparams) {
          best = { label: r.contender.label, mparams: r.throughput.mparamsPerSecond };
        }
      }
      const mparams = ours?.throughput?.mparamsPerSecond;
      const state = stateBytes.get(`${config.id}/${size}`);
      rows.push({
        config: config.id,
        label: config.label,
        size,
        threads,
        passes: config.passes,
        bytesPerParam: config.bytesPerParam,
        traffic: config.traffic,
        ...(state === undefined ? {} : { stateBytesPerParam: state / size }),
        ...(mparams === undefined
          ? { skipped: ours?.skipped ?? 'not measured' }
          : {
              mparamsPerSecond: mparams,
              gbPerSecond: (mparams * config.bytesPerParam) / 1e3,
              ...(adamw === undefined ? {} : { versusAdamw: mparams / adamw }),
            }),
        ...(best === undefined
          ? {}
          : {
              rooflineMparamsPerSecond: best.mparams,
              rooflineProbe: best.label,
              ...(mparams === undefined ? {} : { fractionOfRoofline: mparams / best.mparams }),
            }),
      });
    }
  }
  return rows.sort((a, b) => a.size - b.size || a.threads - b.threads);
}

// --- The model-shaped step: one optimizer of each kind over the tensors of model-step.ts.

export const MODEL_OPTIMIZERS: readonly LeanOptimizerName[] = [
  'AdamW',
  'Lion',
  'Adafactor',
  'CAME',
];

/** Bytes/param of one model-shaped step: each tensor's configuration (factored for 2-D tensors),
 * weighted by its length. */
export function modelBytesPerParam(
  optimizer: LeanOptimizerName,
  shapes: readonly TensorShape[],
): number {
  const bytes = (shape: TensorShape): number => {
    const factored = (shape.dims?.length ?? 1) >= 2;
    const config = LEAN_OPTIMIZER_CONFIGS.find(
      (c) =>
        c.optimizer === optimizer &&
        c.stateDtype === 'float32' &&
        (c.factored === factored || (optimizer !== 'Adafactor' && optimizer !== 'CAME')),
    );
    return config?.bytesPerParam ?? Number.NaN;
  };
  let total = 0;
  let weighted = 0;
  for (const shape of shapes) {
    total += shape.length;
    weighted += shape.length * bytes(shape);
  }
  return weighted / total;
}

/**
 * The model's initial param values and grads, filled once (as model-step.ts fills them); one
 * optimizer per kind over its own copies of the values, shared by the thread settings.
 */
export class LeanModel {
  readonly shapes: readonly TensorShape[];
  #initial: Float32Array[] | undefined;
  #grads: Float32Array[] | undefined;
  readonly #optimizers = new Map<LeanOptimizerName, Stepper | Skipped>();
  /** optimizer -> memory().state, for the report. */
  readonly stateBytes = new Map<LeanOptimizerName, number>();

  constructor(shapes: readonly TensorShape[]) {
    this.shapes = shapes;
  }

  optimizer(name: LeanOptimizerName): Stepper | Skipped {
    const existing = this.#optimizers.get(name);
    if (existing !== undefined) return existing;
    if (this.#initial === undefined || this.#grads === undefined) {
      this.#initial = this.shapes.map((shape, index) => {
        const data = new Float32Array(shape.length);
        fillUniform(data, SEED + 2 * index, -0.1, 0.1);
        return data;
      });
      this.#grads = this.shapes.map((shape, index) => {
        const grad = new Float32Array(shape.length);
        fillUniform(grad, SEED + 2 * index + 1, -1e-2, 1e-2);
        return grad;
      });
    }
    const initial = this.#initial;
    const grads = this.#grads;
    const params: Param[] = this.shapes.map((shape, index) => ({
      name: shape.name,
      data: (initial[index] ?? new Float32Array(0)).slice(),
      grad: grads[index] ?? new Float32Array(0),
      ...(name === 'Adafactor' || name === 'CAME' ? { shape: shape.dims ?? [shape.length] } : {}),
    }));
    let made: Stepper | Skipped;
    try {
      made = createOptimizer(name, params, 'float32');
      this.stateBytes.set(name, made.memory().state);
    } catch (error) {
      made = { skipped: `this build has no ${name} (${(error as Error).message})` };
    }
    this.#optimizers.set(name, made);
    return made;
  }
}

export function leanModelContenders(
  model: LeanModel,
  threadCounts: readonly number[],
  isa: IsaName,
): Contender[] {
  return threadCounts.flatMap((threads) =>
    MODEL_OPTIMIZERS.map((name): Contender => ({
      id: `lean-optimizers/model/${name.toLowerCase()}/t${threads}`,
      label: `${name}.step(), ${model.shapes.length} tensors`,
      family: 'simd-adamw',
      threads,
      isa,
      setup(): Workload | Skipped {
        const optimizer = model.optimizer(name);
        if (isSkipped(optimizer)) return optimizer;
        return {
          run(reps: number) {
            backend.setIsa(isa);
            optimizer.threads = threads;
            for (let r = 0; r < reps; r++) optimizer.step();
          },
        };
      },
    })),
  );
}

/** One row of the model-shaped step's table. */
export interface LeanModelRow {
  readonly optimizer: LeanOptimizerName;
  readonly threads: number;
  readonly params: number;
  readonly bytesPerParam: number;
  readonly stateBytesPerParam?: number;
  readonly medianSeconds?: number;
  readonly minSeconds?: number;
  readonly maxSeconds?: number;
  readonly mparamsPerSecond?: number;
  readonly gbPerSecond?: number;
  readonly versusAdamw?: number;
  readonly skipped?: string;
}

export function leanModelRows(results: readonly Result[], model: LeanModel): LeanModelRow[] {
  const params = model.shapes.reduce((sum, s) => sum + s.length, 0);
  const rows: LeanModelRow[] = [];
  for (const threads of [...new Set(results.map((r) => r.contender.threads))]) {
    const of = (name: LeanOptimizerName): Result | undefined =>
      results.find(
        (r) => r.contender.id === `lean-optimizers/model/${name.toLowerCase()}/t${threads}`,
      );
    const adamw = of('AdamW')?.throughput?.mparamsPerSecond;
    for (const name of MODEL_OPTIMIZERS) {
      const r = of(name);
      const bytesPerParam = modelBytesPerParam(name, model.shapes);
      const state = model.stateBytes.get(name);
      const mparams = r?.throughput?.mparamsPerSecond;
      rows.push({
        optimizer: name,
        threads,
        params,
        bytesPerParam,
        ...(state === undefined ? {} : { stateBytesPerParam: state / params }),
        ...(mparams === undefined || r?.timing === undefined
          ? { skipped: r?.skipped ?? 'not measured' }
          : {
              medianSeconds: r.timing.medianSeconds,
              minSeconds: r.timing.minSeconds,
              maxSeconds: r.timing.maxSeconds,
              mparamsPerSecond: mparams,
              gbPerSecond: (mparams * bytesPerParam) / 1e3,
              ...(adamw === undefined ? {} : { versusAdamw: mparams / adamw }),
            }),
      });
    }
  }
  return rows.sort((a, b) => a.threads - b.threads);
}
