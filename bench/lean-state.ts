// Question: what does lean optimizer state (issue 12) buy per step at DRAM sizes?
//
// One tensor, AdamW.step() as a training loop calls it, for each state dtype and for bf16
// gradients, against the float32-state step and against a same-run roofline per memory-traffic
// class: probes that move exactly that step's bytes with trivial arithmetic (the float32 step's
// eleven probes of roofline-probes.cc on its own arrays; six loop shapes of lean-probes.cc for
// every lean class, on the lean optimizer's own state arrays). As in the throughput question, the
// roofline of a class is its fastest probe by median, and every contender is interleaved with all
// others at the same size (bench/measure.ts).
//
//   class                    bytes per param (param r/w, grad r, two moments r/w, absmax)
//   float32 state            28
//   bfloat16 state           20
//   bfloat16, bf16 grads     18
//   blockwise8               16 + 16 per 256 (two float32 absmax read and written per block)
//   blockwise8, bf16 grads   14 + 16 per 256
//
// Sizes: 64M params in a full run (the DRAM size), 1M in --quick (CI smoke), or --sizes.
import {
  AdamW,
  type AnyParam,
  backend,
  type IsaName,
  type StateArray,
  type StateDtype,
} from '../lib/index';
import { benchNative, type RooflineProbe } from './bench-native';
import { seededRandom, STEP_HYPERPARAMETERS } from './data';
import type { Contender, Skipped, Workload } from './measure';
import type { Result } from './results';

export type LeanStateDtype = StateDtype;

export interface LeanConfig {
  /** In contender ids: 'float32', 'bfloat16', 'bfloat16-bf16-grads', ... */
  readonly id: string;
  readonly label: string;
  readonly stateDtype: LeanStateDtype;
  readonly bf16Grads: boolean;
  /** Memory traffic of one step per param, absmax included. */
  readonly bytesPerParam: number;
}

const ABSMAX_BYTES_PER_PARAM = (2 * 2 * 4) / 256;

export const LEAN_CONFIGS: readonly LeanConfig[] = [
  {
    id: 'float32',
    label: 'float32 state',
    stateDtype: 'float32',
    bf16Grads: false,
    bytesPerParam: 28,
  },
  {
    id: 'bfloat16',
    label: 'bfloat16 state',
    stateDtype: 'bfloat16',
    bf16Grads: false,
    bytesPerParam: 20,
  },
  {
    id: 'bfloat16-bf16-grads',
    label: 'bfloat16 state, bf16 grads',
    stateDtype: 'bfloat16',
    bf16Grads: true,
    bytesPerParam: 18,
  },
  {
    id: 'blockwise8',
    label: 'blockwise8 state',
    stateDtype: 'blockwise8',
    bf16Grads: false,
    bytesPerParam: 16 + ABSMAX_BYTES_PER_PARAM,
  },
  {
    id: 'blockwise8-bf16-grads',
    label: 'blockwise8 state, bf16 grads',
    stateDtype: 'blockwise8',
    bf16Grads: true,
    bytesPerParam: 14 + ABSMAX_BYTES_PER_PARAM,
  },
];

export function leanConfig(id: string): LeanConfig | undefined {
  return LEAN_CONFIGS.find((c) => c.id === id);
}

interface LeanTensor {
  readonly optimizer: AdamW<StateDtype>;
  /** The optimizer's own state arrays, for the probes (same pages as the step). */
  readonly expAvg: Float32Array | Uint16Array | Uint8Array;
  readonly expAvgSq: Float32Array | Uint16Array | Uint8Array;
  readonly expAvgAbsmax: Float32Array | null;
  readonly expAvgSqAbsmax: Float32Array | null;
  readonly grad: Float32Array | Uint16Array;
}

function bf16Bits(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i];
    out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

/**
 * One param and its float32 and bf16 gradients at the largest size, filled once; per size, one
 * AdamW per configuration over views of their first `size` elements (they share param and grads;
 * each has its own state). The previous size's optimizers are dropped when the next size starts.
 */
export class LeanArrays {
  readonly #param: Float32Array;
  readonly #grad: Float32Array;
  readonly #gradBf16: Uint16Array;
  #size = 0;
  #tensors = new Map<string, LeanTensor | Skipped>();

  constructor(maxSize: number) {
    const random = seededRandom(20261202);
    this.#param = new Float32Array(maxSize);
    this.#grad = new Float32Array(maxSize);
    for (let i = 0; i < maxSize; i++) {
      this.#param[i] = 0.2 * random() - 0.1;
      // |g| in [1e-4, 1e-2): no subnormals after many steps, no non-finite elements.
      this.#grad[i] = (random() < 0.5 ? -1 : 1) * (1e-4 + 0.99e-2 * random());
    }
    this.#gradBf16 = bf16Bits(this.#grad);
  }

  /** The shared param's first `size` elements. */
  paramView(size: number): Float32Array {
    return this.#param.subarray(0, size);
  }

  at(size: number, config: LeanConfig): LeanTensor | Skipped {
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

  #create(size: number, config: LeanConfig): LeanTensor | Skipped {
    const data = this.#param.subarray(0, size);
    const grad = config.bf16Grads ? this.#gradBf16.subarray(0, size) : this.#grad.subarray(0, size);
    const { lr, beta1, beta2, eps, weightDecay } = STEP_HYPERPARAMETERS;
    const param: AnyParam = {
      data,
      grad,
      ...(config.bf16Grads ? { gradDtype: 'bfloat16' as const } : {}),
    };
    let optimizer: AdamW<StateDtype>;
    try {
      // A build whose kernels lack a dtype throws here, and the row says why.
      optimizer = new AdamW([param], {
        lr,
        betas: [beta1, beta2],
        eps,
        weightDecay,
        // float32 is the default; leaving it out keeps the baseline measurable on any build.
        ...(config.stateDtype === 'float32' ? {} : { stateDtype: config.stateDtype }),
      });
    } catch (error) {
      return { skipped: `this build has no ${config.label} (${(error as Error).message})` };
    }
    const state = optimizer.state(param);
    const moment = (
      value: StateArray,
    ): [Float32Array | Uint16Array | Uint8Array, Float32Array | null] =>
      value instanceof Float32Array || value instanceof Uint16Array
        ? [value, null]
        : [value.codes, value.absmax];
    const [expAvg, expAvgAbsmax] = moment(state.expAvg);
    const [expAvgSq, expAvgSqAbsmax] = moment(state.expAvgSq);
    return { optimizer, expAvg, expAvgSq, expAvgAbsmax, expAvgSqAbsmax, grad };
  }
}

function isSkipped(value: LeanTensor | Skipped): value is Skipped {
  return 'skipped' in value;
}

const FLOAT32_PROBE_LABEL = (probe: RooflineProbe): string => `probe: ${probe}, float32 state`;

export function leanContenders(
  arrays: LeanArrays,
  threadCounts: readonly number[],
  isa: IsaName,
): Contender[] {
  const out: Contender[] = [];
  for (const threads of threadCounts) {
    for (const config of LEAN_CONFIGS) {
      out.push({
        id: `lean/${config.id}/step/t${threads}`,
        label: `AdamW.step(), ${config.label}`,
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
      const probes: readonly string[] =
        config.stateDtype === 'float32' ? benchNative.rooflineProbes : benchNative.leanProbes;
      for (const probe of probes) {
        out.push({
          id: `lean/${config.id}/probe/${probe}/t${threads}`,
          label:
            config.stateDtype === 'float32'
              ? FLOAT32_PROBE_LABEL(probe as RooflineProbe)
              : `probe: ${probe}, ${config.label}`,
          family: 'probe',
          threads,
          setup(size: number): Workload | Skipped {
            const tensor = arrays.at(size, config);
            if (isSkipped(tensor)) return tensor;
            const { grad, expAvg, expAvgSq, expAvgAbsmax, expAvgSqAbsmax } = tensor;
            const param = arrays.paramView(size);
            if (config.stateDtype === 'float32') {
              return {
                run(reps: number) {
                  benchNative.benchRooflineProbe(
                    param,
                    grad as Float32Array,
                    expAvg as Float32Array,
                    expAvgSq as Float32Array,
                    reps,
                    threads,
                    probe as RooflineProbe,
                  );
                },
              };
            }
            return {
              run(reps: number) {
                benchNative.benchLeanProbe(
                  param,
                  grad,
                  expAvg as Uint16Array | Uint8Array,
                  expAvgSq as Uint16Array | Uint8Array,
                  expAvgAbsmax,
                  expAvgSqAbsmax,
                  reps,
                  threads,
                  probe as never,
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

/** One row of the lean-state table: a configuration's step at one size and thread count. */
export interface LeanRow {
  readonly config: string;
  readonly label: string;
  readonly size: number;
  readonly threads: number;
  readonly bytesPerParam: number;
  /** undefined when the step did not run (skipped says why). */
  readonly mparamsPerSecond?: number;
  readonly gbPerSecond?: number;
  /** This step's Mparams/s over the float32-state step's, same size and threads. */
  readonly versusFloat32?: number;
  readonly rooflineMparamsPerSecond?: number;
  readonly rooflineProbe?: string;
  readonly fractionOfRoofline?: number;
  readonly skipped?: string;
}

function configOf(id: string): { config: string; kind: string; probe?: string } {
  const parts = id.split('/');
  return parts[2] === 'probe'
    ? { config: parts[1], kind: 'probe', probe: parts[3] }
    : { config: parts[1], kind: parts[2] };
}

/** The table rows from the measured results: per config, size and threads, the step against the
 * float32 step and against its own class's fastest probe. */
export function leanRows(results: readonly Result[]): LeanRow[] {
  const rows: LeanRow[] = [];
  const step = (config: string, size: number, threads: number): Result | undefined =>
    results.find(
      (r) =>
        r.size === size &&
        r.contender.threads === threads &&
        r.contender.id === `lean/${config}/step/t${threads}`,
    );
  const keys = new Set(results.map((r) => `${r.size}/${r.contender.threads}`));
  for (const key of keys) {
    const [size, threads] = key.split('/').map(Number) as [number, number];
    const float32 = step('float32', size, threads)?.throughput?.mparamsPerSecond;
    for (const config of LEAN_CONFIGS) {
      const ours = step(config.id, size, threads);
      let best: { label: string; mparams: number } | undefined;
      for (const r of results) {
        if (r.size !== size || r.contender.threads !== threads || r.throughput === undefined)
          continue;
        const parsed = configOf(r.contender.id);
        if (parsed.kind !== 'probe' || parsed.config !== config.id) continue;
        if (best === undefined || r.throughput.mparamsPerSecond > best.mparams) {
          best = { label: r.contender.label, mparams: r.throughput.mparamsPerSecond };
        }
      }
      const mparams = ours?.throughput?.mparamsPerSecond;
      rows.push({
        config: config.id,
        label: config.label,
        size,
        threads,
        bytesPerParam: config.bytesPerParam,
        ...(mparams === undefined
          ? { skipped: ours?.skipped ?? 'not measured' }
          : {
              mparamsPerSecond: mparams,
              gbPerSecond: (mparams * config.bytesPerParam) / 1e3,
              ...(float32 === undefined ? {} : { versusFloat32: mparams / float32 }),
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
