// Lion: its spec (hyperparameters, state, scalars) and its class. The semantics and defaults are
// google/automl's lion_pytorch.py (Chen et al. 2023, "Symbolic Discovery of Optimization
// Algorithms"), with torch's maximize added; the native ops are 'lion' (native/ops/lion.h) for
// float32 state and its bfloat16 and blockwise8 variants. Lion keeps one moment, so its state is
// half of Adam's in every dtype.
import { checkBetas, checkBoolean, checkNonNegative } from '../core/checks';
import { type KeptStateDtype, checkStateDtype, type NotInferred } from './adam';
import {
  type BaseParamState,
  type CommonOptions,
  type IterableParamGroup,
  Optimizer,
} from './optimizer';
import type { LrScheduleStateDict } from '../checkpoint/state-dict';
import type { AnyParam } from './params';
import type { OptimizerSpec, StateDtype } from './spec';
import type { Blockwise8Tensor } from './state-storage';

/** Options of Lion; every field has the reference's default. `D` is the state dtypes the options
 * may name (all of them by default). */
export interface LionHyper<D extends StateDtype = StateDtype> {
  /** Learning rate: every element moves by exactly lr (or not at all) per step. Default 1e-4. */
  lr?: number;
  /** beta1 interpolates the moment and the gradient for the update's sign; beta2 is the moment's
   * running average. Default [0.9, 0.99]. */
  betas?: readonly [number, number];
  /** Decoupled weight decay, p *= 1 - lr * weightDecay. Default 0. */
  weightDecay?: number;
  /** Maximize the objective: step along +gradient (the moment averages -gradient). Default
   * false. */
  maximize?: boolean;
  /** How the moment is kept: 'float32' (default, 4 bytes per element), 'bfloat16' (2) or
   * 'blockwise8' (about 1.02; params under min8bitSize keep float32). Fixed per group. */
  stateDtype?: D;
}

/** Lion's hyperparameters with every field present and validated. */
export type LionHyperparameters = Required<LionHyper>;

/** Lion's optimizer-wide options: default hyperparameters for every group, threads, a schedule
 * and the lean-state options. `D` is the state dtype they may name: 'float32' unless given. */
export interface LionOptions<D extends StateDtype = 'float32'>
  extends LionHyper<D>, CommonOptions {}

/** A set of parameters sharing Lion hyperparameters; unset fields take the optimizer's defaults. */
export interface LionParamGroup<D extends StateDtype = 'float32'> extends LionHyper<D> {
  params: AnyParam[];
}

/** A Lion group as the optimizer holds it. Hyperparameters can be changed between steps; each
 * assignment is validated. stateDtype is fixed because it decides how the state is kept. */
export interface LionOptimizerParamGroup {
  readonly params: readonly AnyParam[];
  lr: number;
  betas: readonly [number, number];
  weightDecay: number;
  maximize: boolean;
  readonly stateDtype: StateDtype;
}

/** A parameter's Lion state with its moment of type `T`, kept as `D`. */
export interface LionStateOf<D extends StateDtype, T> extends BaseParamState {
  dtype: D;
  /** The running average (beta2) of the gradient. */
  expAvg: T;
}

/** A parameter's Lion state, by how it is kept (`dtype`): the optimizer's own arrays (zero-copy
 * views), as for Adam's {@link ParamState}. */
export type LionParamState =
  | LionStateOf<'float32', Float32Array>
  | LionStateOf<'bfloat16', Uint16Array>
  | LionStateOf<'blockwise8', Blockwise8Tensor>;

interface LionStateArrays {
  float32: Float32Array;
  bfloat16: Uint16Array;
  blockwise8: Blockwise8Tensor;
}

/** `state(p)` of a Lion optimizer whose groups use the state dtypes `D`. */
export type LionParamStateOf<D extends StateDtype> = {
  [K in KeptStateDtype<D>]: LionStateOf<K, LionStateArrays[K]>;
}[KeptStateDtype<D>];

/** A parameter's Lion state as float32 values (`stateFloat32(p)`): copies, for any dtype. */
export type LionParamStateFloat32 = LionStateOf<StateDtype, Float32Array>;

/** One parameter's state in a {@link LionStateDict}: copies, not views. */
export type LionParamStateDict = LionParamState & {
  /** The param's name, when it has one. */
  name?: string;
};

/** One group's hyperparameters in a {@link LionStateDict}. */
export interface LionParamGroupStateDict {
  /** Indices into `state` of the group's params: the groups list 0, 1, 2, ... in order. */
  params: number[];
  lr: number;
  betas: [number, number];
  weightDecay: number;
  maximize: boolean;
  stateDtype: StateDtype;
}

/** Everything needed to resume a Lion optimizer, as returned by `stateDict()`. */
export interface LionStateDict {
  optimizer: 'lion';
  /** One entry per param, in the optimizer's order (its groups' params, group after group). */
  state: LionParamStateDict[];
  paramGroups: LionParamGroupStateDict[];
  /** Present when a schedule is attached. Loading a dict without it detaches the optimizer's. */
  lrSchedule?: LrScheduleStateDict;
  /** The optimizer's stochastic rounding and its seed (absent means off, seed 0). */
  stochasticRounding?: boolean;
  seed?: number;
}

/** The lion op's scalars, in the order {@link lionStepScalars} writes them. */
export const LION_SCALARS = [
  'beta1',
  'oneMinusBeta1',
  'beta2',
  'oneMinusBeta2',
  'decay',
  'negLr',
] as const;
/** The lion op's flags that the spec sets (the framework sets stochasticRounding). */
export const LION_FLAGS = ['maximize'] as const;

/**
 * Writes the lion op's scalars (LION_SCALARS' order) to out[offset ..] and returns its flags, in
 * double precision; the addon rounds each to float32 once (so 1 - beta2 is not computed from a
 * float32 beta2). Lion has no bias correction: the step count does not enter.
 */
export function lionStepScalars(
  h: Readonly<LionHyperparameters>,
  out: Float64Array,
  offset: number,
): number {
  const [beta1, beta2] = h.betas;
  out[offset] = beta1;
  out[offset + 1] = 1 - beta1;
  out[offset + 2] = beta2;
  out[offset + 3] = 1 - beta2;
  out[offset + 4] = 1 - h.lr * h.weightDecay;
  out[offset + 5] = -h.lr;
  return h.maximize ? 1 : 0;
}

const spec: OptimizerSpec<LionHyperparameters> = {
  className: 'Lion',
  kind: 'lion',
  ops: { float32: 'lion', bfloat16: 'lionBfloat16', blockwise8: 'lionBlockwise8' },
  stateDtypeKey: 'stateDtype',
  hyperparameters: {
    lr: { default: 1e-4, check: checkNonNegative, fileKey: 'lr' },
    betas: {
      default: Object.freeze<[number, number]>([0.9, 0.99]),
      check: (name: string, value: unknown) => Object.freeze(checkBetas(name, value)),
      fileKey: 'betas',
    },
    weightDecay: { default: 0, check: checkNonNegative, fileKey: 'weight_decay' },
    maximize: { default: false, check: checkBoolean, fileKey: 'maximize' },
    stateDtype: {
      default: 'float32',
      check: checkStateDtype,
      fileKey: 'state_dtype',
      fixed: true,
      absentMeans: 'float32',
    },
  },
  state: [{ name: 'expAvg', fileName: 'exp_avg', shape: 'param', map: 'signed' }],
  decayKey: 'weightDecay',
  scalars: LION_SCALARS,
  flags: LION_FLAGS,
  stepScalars: (
    h: Readonly<LionHyperparameters>,
    _step: number,
    out: Float64Array,
    offset: number,
  ) => lionStepScalars(h, out, offset),
};
/** Lion's declaration. */
export const LION_SPEC = Object.freeze(spec);

/**
 * Lion (Chen et al. 2023): the sign of an interpolation of momentum and gradient, so every
 * element moves by exactly lr; one moment of state. p *= 1 - lr * weightDecay;
 * p -= lr * sign(beta1 * m + (1 - beta1) * g); m = beta2 * m + (1 - beta2) * g. Semantics and
 * defaults of google/automl's lion_pytorch.py (sign(0) = 0).
 */
export class Lion<D extends StateDtype = 'float32'> extends Optimizer<
  LionOptimizerParamGroup,
  LionParamStateOf<D>,
  LionStateDict,
  LionParamStateFloat32,
  IterableParamGroup<LionParamGroup<D>>
> {
  static readonly spec = LION_SPEC;
  /** `D`, the state dtypes of its groups, is inferred from `defaults.stateDtype` ('float32' when
   * absent); groups naming another dtype need it spelled out, e.g.
   * `new Lion<'float32' | 'bfloat16'>(groups)`. */
  constructor(
    params: Iterable<AnyParam> | Iterable<IterableParamGroup<LionParamGroup<NotInferred<D>>>>,
    defaults?: LionOptions<D>,
  ) {
    super(LION_SPEC, params, defaults);
  }
}
