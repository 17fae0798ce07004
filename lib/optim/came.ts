// CAME (Luo et al. 2023): its spec and class, with the semantics and defaults of the authors'
// `came_pytorch/CAME.py`. Adafactor's factored second moment (fixed beta2, update clipping), a
// first moment of the clipped update, and for params of 2 or more dimensions the confidence term:
// the factored average of (update - expAvg)^2 + eps2 (`expAvgResRow`, `expAvgResCol`), which
// scales the step of each element by how far its update strays from its momentum. The native op
// is 'came' (native/ops/came.h): all its passes run in the one native call of a step.
import { checkBeta, checkNonNegative, checkPositive, checkTuple } from '../core/checks';
import type { LrScheduleStateDict } from '../checkpoint/state-dict';
import type { LrSchedule } from '../train/schedules';
import { type BaseParamState, type IterableParamGroup, Optimizer } from './optimizer';
import type { AnyParam } from './params';
import type { OptimizerSpec } from './spec';

/** CAME's options; every field has the reference's default (lr: the README's 2e-4). */
export interface CameHyper {
  /** Learning rate. Default 2e-4. */
  lr?: number;
  /** [eps1, eps2]: eps1 is added to grad^2 before the means, eps2 to the squared instability.
   * Default [1e-30, 1e-16]. */
  eps?: readonly [number, number];
  /** The update is divided by max(1, RMS(update) / clipThreshold). Default 1. */
  clipThreshold?: number;
  /** [beta1, beta2, beta3]: the first moment's, the second moment's and the instability's.
   * Default [0.9, 0.999, 0.9999]. */
  betas?: readonly [number, number, number];
  /** Decoupled weight decay: p *= 1 - lr * weightDecay. Default 0. */
  weightDecay?: number;
}

/** CAME's hyperparameters with every field present and validated. */
export type CameHyperparameters = Required<CameHyper>;

/** CAME's optimizer-wide options: default hyperparameters, threads and a schedule. */
export interface CameOptions extends CameHyper {
  /** Threads a step may use. Default: os.availableParallelism(). Small steps use fewer. */
  threads?: number;
  /** A learning-rate schedule driving every group's lr from its lr here. */
  schedule?: LrSchedule;
}

/** A set of params sharing CAME hyperparameters; unset fields take the optimizer's. */
export interface CameParamGroup extends CameHyper {
  params: AnyParam[];
}

/** A CAME group as the optimizer holds it; each assignment is validated. */
export interface CameLiveGroup {
  readonly params: readonly AnyParam[];
  lr: number;
  eps: readonly [number, number];
  clipThreshold: number;
  betas: readonly [number, number, number];
  weightDecay: number;
}

/** A param's CAME state (zero-copy views of the optimizer's Float32Arrays): expAvg; for a param
 * of 2 or more dimensions the factored second moment (expAvgSqRow, expAvgSqCol) and instability
 * (expAvgResRow, expAvgResCol), else expAvgSq. */
export interface CameParamState extends BaseParamState {
  dtype: 'float32';
  expAvg: Float32Array;
  expAvgSq?: Float32Array;
  expAvgSqRow?: Float32Array;
  expAvgSqCol?: Float32Array;
  expAvgResRow?: Float32Array;
  expAvgResCol?: Float32Array;
}

/** Everything needed to resume a CAME optimizer, as returned by `stateDict()`. */
export interface CameStateDict {
  optimizer: 'came';
  /** One entry per param, in the optimizer's order: copies, with its shape. */
  state: (CameParamState & { name?: string; shape: number[] })[];
  paramGroups: ({ params: number[] } & CameHyperparameters)[];
  lrSchedule?: LrScheduleStateDict;
}

const CAME_SCALARS = [
  'beta1',
  'oneMinusBeta1',
  'beta2',
  'oneMinusBeta2',
  'beta3',
  'oneMinusBeta3',
  'eps1',
  'eps2',
  'clipThreshold',
  'decay',
  'negLr',
] as const;

const cameSpec: OptimizerSpec<CameHyperparameters> = {
  className: 'CAME',
  kind: 'came',
  ops: { float32: 'came' },
  factored: true,
  hyperparameters: {
    lr: { default: 2e-4, check: checkNonNegative, fileKey: 'lr' },
    eps: {
      default: Object.freeze<[number, number]>([1e-30, 1e-16]),
      check: (name: string, value: unknown) =>
        checkTuple(name, value, 2, checkNonNegative) as unknown as readonly [number, number],
      fileKey: 'eps',
    },
    clipThreshold: { default: 1, check: checkPositive, fileKey: 'clip_threshold' },
    betas: {
      default: Object.freeze<[number, number, number]>([0.9, 0.999, 0.9999]),
      check: (name: string, value: unknown) =>
        checkTuple(name, value, 3, checkBeta) as unknown as readonly [number, number, number],
      fileKey: 'betas',
    },
    weightDecay: { default: 0, check: checkNonNegative, fileKey: 'weight_decay' },
  },
  state: [
    { name: 'expAvg', fileName: 'exp_avg', shape: 'param' },
    { name: 'expAvgSq', fileName: 'exp_avg_sq', shape: 'param', factoring: 'unfactored' },
    { name: 'expAvgSqRow', fileName: 'exp_avg_sq_row', shape: 'rows', factoring: 'factored' },
    { name: 'expAvgSqCol', fileName: 'exp_avg_sq_col', shape: 'cols', factoring: 'factored' },
    { name: 'expAvgResRow', fileName: 'exp_avg_res_row', shape: 'rows', factoring: 'factored' },
    { name: 'expAvgResCol', fileName: 'exp_avg_res_col', shape: 'cols', factoring: 'factored' },
  ],
  decayKey: 'weightDecay',
  scalars: CAME_SCALARS,
  flags: [],
  // In double precision from the double hyperparameters (1 - float32(0.9999) would be off by
  // 1.7e-4 relative, which the golden vectors catch); the clip divisor is computed natively.
  stepScalars(h: Readonly<CameHyperparameters>, _step: number, out: Float64Array, offset: number) {
    const [beta1, beta2, beta3] = h.betas;
    out[offset] = beta1;
    out[offset + 1] = 1 - beta1;
    out[offset + 2] = beta2;
    out[offset + 3] = 1 - beta2;
    out[offset + 4] = beta3;
    out[offset + 5] = 1 - beta3;
    out[offset + 6] = h.eps[0];
    out[offset + 7] = h.eps[1];
    out[offset + 8] = h.clipThreshold;
    out[offset + 9] = 1 - h.lr * h.weightDecay;
    out[offset + 10] = -h.lr;
    return 0;
  },
};
/** CAME's declaration. */
export const CAME_SPEC = Object.freeze(cameSpec);

/**
 * CAME (Luo et al., "CAME: Confidence-guided Adaptive Memory Efficient Optimization", ACL 2023),
 * as the authors' came_pytorch implements it: Adafactor's memory (factored moments for params of
 * 2 or more dimensions: give each param its `shape`) with a first moment and a confidence-scaled
 * step. No bias correction and no relative step.
 */
export class CAME extends Optimizer<
  CameLiveGroup,
  CameParamState,
  CameStateDict,
  CameParamState,
  IterableParamGroup<CameParamGroup>
> {
  static readonly spec = CAME_SPEC;
  constructor(
    params: Iterable<AnyParam> | Iterable<IterableParamGroup<CameParamGroup>>,
    defaults?: CameOptions,
  ) {
    super(CAME_SPEC, params, defaults);
  }
}
