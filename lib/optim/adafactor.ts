// Adafactor (Shazeer & Stern 2018): its spec and class, with the semantics and defaults of Hugging
// Face transformers' `Adafactor` (src/transformers/optimization.py). A param of 2 or more
// dimensions (Param.shape) keeps its second moment factored, one value per row (`expAvgSqRow`,
// over the last dimension) and one per column (`expAvgSqCol`, over the one before), leading
// dimensions a batch; the others keep a full `expAvgSq`. The native op is 'adafactor'
// (native/ops/adafactor.h): its passes over the gradient (the row and column means, the update's
// RMS for the clipping, then the update) all run in the one native call of a step.
import {
  checkBeta,
  checkBoolean,
  checkNonNegative,
  checkNullable,
  checkNumber,
  checkPositive,
  checkTuple,
} from '../core/checks';
import { rangeError } from '../core/errors';
import type { LrScheduleStateDict } from '../checkpoint/state-dict';
import type { LrSchedule } from '../train/schedules';
import { type BaseParamState, type IterableParamGroup, Optimizer } from './optimizer';
import type { AnyParam } from './params';
import type { OptimizerSpec } from './spec';

/** Adafactor's options; every field has Hugging Face's default. */
export interface AdafactorHyper {
  /** A fixed learning rate, or null (default) to use the relative step size, which requires
   * relativeStep (and a number requires relativeStep: false). */
  lr?: number | null;
  /** [eps1, eps2]: eps1 is added to grad^2 before the means, eps2 is the floor of the param's RMS
   * in the step size under scaleParameter. Default [1e-30, 1e-3]. */
  eps?: readonly [number, number];
  /** The update is divided by max(1, RMS(update) / clipThreshold). Default 1. */
  clipThreshold?: number;
  /** The second moment's decay: beta2 at step t is 1 - t^decayRate. Default -0.8. */
  decayRate?: number;
  /** Keep a first moment (an average of the clipped, scaled updates) with this beta, or null
   * (default: none, the memory-lean setting). Fixed per group: it decides whether expAvg exists. */
  beta1?: number | null;
  /** Decoupled weight decay, scaled by the step size: p -= weightDecay * lr_t * p. Default 0. */
  weightDecay?: number;
  /** Multiply the step size by max(eps2, RMS(param)). Default true. */
  scaleParameter?: boolean;
  /** Use the relative step size min(1e-2, 1/sqrt(t)) instead of lr. Default true. */
  relativeStep?: boolean;
  /** With relativeStep: warm up as min(1e-6 * t, 1/sqrt(t)). Default false. */
  warmupInit?: boolean;
}

/** Adafactor's hyperparameters with every field present and validated. */
export type AdafactorHyperparameters = Required<AdafactorHyper>;

/** Adafactor's optimizer-wide options: default hyperparameters, threads and a schedule (which
 * needs a numeric lr, so relativeStep: false). */
export interface AdafactorOptions extends AdafactorHyper {
  /** Threads a step may use. Default: os.availableParallelism(). Small steps use fewer. */
  threads?: number;
  /** A learning-rate schedule driving every group's lr from its lr here. */
  schedule?: LrSchedule;
}

/** A set of params sharing Adafactor hyperparameters; unset fields take the optimizer's. */
export interface AdafactorParamGroup extends AdafactorHyper {
  params: AnyParam[];
}

/** An Adafactor group as the optimizer holds it; each assignment is validated (beta1 is fixed). */
export interface AdafactorLiveGroup {
  readonly params: readonly AnyParam[];
  lr: number | null;
  eps: readonly [number, number];
  clipThreshold: number;
  decayRate: number;
  readonly beta1: number | null;
  weightDecay: number;
  scaleParameter: boolean;
  relativeStep: boolean;
  warmupInit: boolean;
}

/** A param's Adafactor state (zero-copy views of the optimizer's Float32Arrays): expAvg with
 * beta1; expAvgSqRow and expAvgSqCol for a param of 2 or more dimensions, else expAvgSq. */
export interface AdafactorParamState extends BaseParamState {
  dtype: 'float32';
  expAvg?: Float32Array;
  expAvgSq?: Float32Array;
  /** One per row: the product of all dimensions but the last. */
  expAvgSqRow?: Float32Array;
  /** One per column of each matrix: the leading dimensions' product times the last dimension. */
  expAvgSqCol?: Float32Array;
}

/** Everything needed to resume an Adafactor optimizer, as returned by `stateDict()`. */
export interface AdafactorStateDict {
  optimizer: 'adafactor';
  /** One entry per param, in the optimizer's order: copies, with its shape. */
  state: (AdafactorParamState & { name?: string; shape: number[] })[];
  paramGroups: ({ params: number[] } & AdafactorHyperparameters)[];
  lrSchedule?: LrScheduleStateDict;
}

/** The adafactor op's scalars, in the order {@link ADAFACTOR_SPEC}'s stepScalars writes them. */
const ADAFACTOR_SCALARS = [
  'beta2t',
  'oneMinusBeta2t',
  'eps1',
  'eps2',
  'clipThreshold',
  'stepSize',
  'beta1',
  'oneMinusBeta1',
  'weightDecay',
] as const;
const ADAFACTOR_FLAGS = ['scaleParameter', 'firstMoment'] as const;

/** The step size before the param scale: the relative step, or lr (Hugging Face's _get_lr). */
function stepSize(h: Readonly<AdafactorHyperparameters>, step: number): number {
  if (!h.relativeStep) return h.lr ?? 0;
  const minStep = h.warmupInit ? 1e-6 * step : 1e-2;
  return Math.min(minStep, 1 / Math.sqrt(step));
}

const pair = (name: string, value: unknown) =>
  checkTuple(name, value, 2, checkNonNegative) as unknown as readonly [number, number];

function checkDecayRate(name: string, value: unknown): number {
  const n = checkNumber(name, value);
  if (!(n <= 0 && n > -Infinity)) {
    throw rangeError(name, 'a finite number <= 0 (beta2 at step t is 1 - t^decayRate)', value);
  }
  return n;
}

const adafactorSpec: OptimizerSpec<AdafactorHyperparameters> = {
  className: 'Adafactor',
  kind: 'adafactor',
  ops: { float32: 'adafactor' },
  factored: true,
  hyperparameters: {
    lr: { default: null, check: checkNullable(checkNonNegative, 'a number >= 0'), fileKey: 'lr' },
    eps: {
      default: Object.freeze<[number, number]>([1e-30, 1e-3]),
      check: pair,
      fileKey: 'eps',
    },
    clipThreshold: { default: 1, check: checkPositive, fileKey: 'clip_threshold' },
    decayRate: { default: -0.8, check: checkDecayRate, fileKey: 'decay_rate' },
    beta1: {
      default: null,
      check: checkNullable(checkBeta, 'a number in [0, 1)'),
      fileKey: 'beta1',
      fixed: true,
    },
    weightDecay: { default: 0, check: checkNonNegative, fileKey: 'weight_decay' },
    scaleParameter: { default: true, check: checkBoolean, fileKey: 'scale_parameter' },
    relativeStep: { default: true, check: checkBoolean, fileKey: 'relative_step' },
    warmupInit: { default: false, check: checkBoolean, fileKey: 'warmup_init' },
  },
  state: [
    {
      name: 'expAvg',
      fileName: 'exp_avg',
      shape: 'param',
      presentWhen: (h: Readonly<AdafactorHyperparameters>) => h.beta1 !== null,
    },
    { name: 'expAvgSq', fileName: 'exp_avg_sq', shape: 'param', factoring: 'unfactored' },
    { name: 'expAvgSqRow', fileName: 'exp_avg_sq_row', shape: 'rows', factoring: 'factored' },
    { name: 'expAvgSqCol', fileName: 'exp_avg_sq_col', shape: 'cols', factoring: 'factored' },
  ],
  decayKey: 'weightDecay',
  scalars: ADAFACTOR_SCALARS,
  flags: ADAFACTOR_FLAGS,
  // Hugging Face's constructor checks, here also before every step (a group's fields can be
  // changed one at a time).
  checkValues(name: string, h: Readonly<AdafactorHyperparameters>): void {
    if (h.relativeStep && h.lr !== null) {
      throw rangeError(
        `${name}.lr`,
        'null while relativeStep is true (Adafactor then computes its own step size; set ' +
          'relativeStep: false to use a fixed lr)',
        h.lr,
      );
    }
    if (!h.relativeStep && h.lr === null) {
      throw rangeError(`${name}.lr`, 'a number >= 0 while relativeStep is false', h.lr);
    }
    if (h.warmupInit && !h.relativeStep) {
      throw rangeError(
        `${name}.warmupInit`,
        'false while relativeStep is false (warmupInit changes the relative step)',
        h.warmupInit,
      );
    }
  },
  reportedLr: (h: Readonly<AdafactorHyperparameters>, step: number) => stepSize(h, step),
  // The scalars in double precision, as Hugging Face computes them in Python; the per-tensor ones
  // (the param's RMS in the step size, the clip divisor) are computed natively in the same call.
  stepScalars(
    h: Readonly<AdafactorHyperparameters>,
    step: number,
    out: Float64Array,
    offset: number,
  ): number {
    const beta2t = 1 - step ** h.decayRate;
    const beta1 = h.beta1 ?? 0;
    out[offset] = beta2t;
    out[offset + 1] = 1 - beta2t;
    out[offset + 2] = h.eps[0];
    out[offset + 3] = h.eps[1];
    out[offset + 4] = h.clipThreshold;
    out[offset + 5] = stepSize(h, step);
    out[offset + 6] = beta1;
    out[offset + 7] = 1 - beta1;
    out[offset + 8] = h.weightDecay;
    return (h.scaleParameter ? 1 : 0) | (h.beta1 !== null ? 2 : 0);
  },
};
/** Adafactor's declaration. */
export const ADAFACTOR_SPEC = Object.freeze(adafactorSpec);

/**
 * Adafactor (Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
 * 2018), as Hugging Face transformers implements it: a factored second moment for params of 2 or
 * more dimensions (give each param its `shape`), update clipping, the relative step size and
 * param-scaled steps by default, no first moment unless beta1 is set.
 */
export class Adafactor extends Optimizer<
  AdafactorLiveGroup,
  AdafactorParamState,
  AdafactorStateDict,
  AdafactorParamState,
  IterableParamGroup<AdafactorParamGroup>
> {
  static readonly spec = ADAFACTOR_SPEC;
  constructor(
    params: Iterable<AnyParam> | Iterable<IterableParamGroup<AdafactorParamGroup>>,
    defaults?: AdafactorOptions,
  ) {
    super(ADAFACTOR_SPEC, params, defaults);
  }
}
