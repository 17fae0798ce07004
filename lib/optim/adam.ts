// Adam and AdamW: their spec (hyperparameters, state, scalars) and their classes. The semantics and
// defaults are PyTorch's torch.optim.AdamW / torch.optim.Adam (single-tensor path); the native ops
// are 'adamw' (native/ops/adamw.h) for float32 state and its bfloat16 and blockwise8 variants, for
// both, with Adam's L2 decay as their 'coupled' flag.
import { checkBetas, checkBoolean, checkNonNegative } from '../core/checks';
import { rangeError, typeError } from '../core/errors';
import {
  type BaseParamState,
  type CommonOptions,
  type IterableParamGroup,
  Optimizer,
} from './optimizer';
import type { LrScheduleStateDict } from '../checkpoint/state-dict';
import type { AnyParam } from './params';
import { type OptimizerSpec, type StateDtype, STATE_DTYPES } from './spec';
import type { Blockwise8Tensor } from './state-storage';

/** Options of Adam and AdamW; every field has PyTorch's default. `D` is the state dtypes the
 * options may name (all of them by default). */
export interface Hyper<D extends StateDtype = StateDtype> {
  /** Learning rate. Default 1e-3. */
  lr?: number;
  /** Coefficients of the running averages of the gradient and its square. Default [0.9, 0.999]. */
  betas?: readonly [number, number];
  /** Added to the denominator for numerical stability. Default 1e-8. */
  eps?: number;
  /** Weight decay: decoupled for AdamW (default 1e-2), L2 added to the gradient for Adam (default 0). */
  weightDecay?: number;
  /** Use the running maximum of the second moment (AMSGrad). Default false. Fixed per group. */
  amsgrad?: boolean;
  /** Maximize the objective: step along +gradient. Default false. */
  maximize?: boolean;
  /** How the moments (and AMSGrad's maximum) are kept: 'float32' (default, 8 bytes per element),
   * 'bfloat16' (4) or 'blockwise8' (about 2.03; params under min8bitSize keep float32). Fixed
   * per group. */
  stateDtype?: D;
}

// `T`, but not a place TypeScript infers `T` from: the built-in NoInfer, spelled so that compilers
// older than TypeScript 5.4 also read the published .d.ts. (Every optimizer class's constructor
// uses it.)
export type NotInferred<T> = [T][T extends unknown ? 0 : never];

/** Adam's hyperparameters with every field present and validated. */
export type AdamHyperparameters = Required<Hyper>;

/** The optimizer-wide options: default hyperparameters for every group, threads and a schedule.
 * `D` is the state dtype they may name: 'float32' unless given (as 0.1.0's options were typed),
 * e.g. `OptimizerOptions<'blockwise8'>`. */
export interface OptimizerOptions<D extends StateDtype = 'float32'>
  extends Hyper<D>, CommonOptions {}

/** A set of parameters sharing hyperparameters; unset fields take the optimizer's defaults. `D`
 * as in {@link OptimizerOptions}. */
export interface ParamGroup<D extends StateDtype = 'float32'> extends Hyper<D> {
  params: AnyParam[];
}

/** An Adam/AdamW group as the optimizer holds it. Hyperparameters can be changed between steps;
 * each assignment is validated. amsgrad is fixed because it decides which state exists. */
export interface OptimizerParamGroup {
  readonly params: readonly AnyParam[];
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
  maximize: boolean;
  readonly amsgrad: boolean;
  readonly stateDtype: StateDtype;
}

/** A parameter's Adam state with state tensors of type `T`, kept as `D`. */
export interface AdamStateOf<D extends StateDtype, T> extends BaseParamState {
  dtype: D;
  expAvg: T;
  expAvgSq: T;
  /** Present only with amsgrad. */
  maxExpAvgSq?: T;
}

/** A parameter's Adam state, by how it is kept (`dtype`). The arrays are the optimizer's own
 * (zero-copy views): Float32Arrays; Uint16Arrays of bfloat16 bits; or per tensor a Uint8Array of
 * codes and a Float32Array of absmax, one per block of 256 elements. */
export type ParamState =
  | AdamStateOf<'float32', Float32Array>
  | AdamStateOf<'bfloat16', Uint16Array>
  | AdamStateOf<'blockwise8', Blockwise8Tensor>;

// The state arrays of each dtype.
interface AdamStateArrays {
  float32: Float32Array;
  bfloat16: Uint16Array;
  blockwise8: Blockwise8Tensor;
}

/** How a param of a group with state dtype `D` keeps its state: as `D`, or as float32 for a
 * blockwise8 param under min8bitSize. */
export type KeptStateDtype<D extends StateDtype> = D extends 'blockwise8' ? D | 'float32' : D;

/** `state(p)` of an optimizer whose groups use the state dtypes `D`: {@link ParamState} narrowed
 * to the dtypes its params can have (with `D = 'float32'`, as in 0.1.0, the Float32Array state). */
export type ParamStateOf<D extends StateDtype> = {
  [K in KeptStateDtype<D>]: AdamStateOf<K, AdamStateArrays[K]>;
}[KeptStateDtype<D>];

/** A parameter's Adam state as float32 values (`stateFloat32(p)`): copies, for any dtype. */
export type ParamStateFloat32 = AdamStateOf<StateDtype, Float32Array>;

// The state dict of an AdamW or Adam optimizer (the generic GenericStateDict, typed).

/** Which update rule an Adam state belongs to: AdamW's decoupled weight decay or Adam's L2. */
export type OptimizerKind = 'adamw' | 'adam';

/** One parameter's state in an {@link OptimizerStateDict}: copies, not views. */
export type ParamStateDict = ParamState & {
  /** The param's name, when it has one. */
  name?: string;
};

/** One group's hyperparameters in an {@link OptimizerStateDict}. */
export interface ParamGroupStateDict {
  /** Indices into `state` of the group's params: the groups list 0, 1, 2, ... in order. */
  params: number[];
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
  stateDtype: StateDtype;
}

/** Everything needed to resume an AdamW or Adam optimizer, as returned by `stateDict()`. */
export interface OptimizerStateDict {
  optimizer: OptimizerKind;
  /** One entry per param, in the optimizer's order (its groups' params, group after group). */
  state: ParamStateDict[];
  paramGroups: ParamGroupStateDict[];
  /** Present when a schedule is attached. Loading a dict without it detaches the optimizer's. */
  lrSchedule?: LrScheduleStateDict;
  /** The optimizer's stochastic rounding and its seed (restored by loadStateDict; absent means
   * off, seed 0). */
  stochasticRounding?: boolean;
  seed?: number;
}

/** The adamw op's scalars, in the order {@link adamStepScalars} writes them. */
export const ADAM_SCALARS = [
  'beta1',
  'oneMinusBeta1',
  'beta2',
  'oneMinusBeta2',
  'decay',
  'l2',
  'negStepSize',
  'epsHat',
] as const;
/** The adamw op's flags that a spec sets, bit i = ADAM_FLAGS[i] (the framework sets the op's
 * stochasticRounding flag). */
export const ADAM_FLAGS = ['amsgrad', 'maximize', 'coupled'] as const;

/**
 * Writes the op's scalars for step `step` (1-based) to out[offset ..] (ADAM_SCALARS' order) and
 * returns the flags (ADAM_FLAGS' bits), in double precision as PyTorch computes them in Python;
 * the addon rounds each to float32 once, and none is derived from another float32 value
 * (1 - beta2 from float32(0.9999) would be off by 1.7e-4 relative, which the golden tests catch).
 *
 * PyTorch's update is p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps). Multiplying numerator and
 * denominator by sqrt(bc2) gives the same quantity with one division per element:
 * p += negStepSize * m / (sqrt(v) + epsHat), negStepSize = -lr*sqrt(bc2)/bc1, epsHat = eps*sqrt(bc2).
 */
export function adamStepScalars(
  h: Readonly<AdamHyperparameters>,
  step: number,
  decoupled: boolean,
  out: Float64Array,
  offset: number,
): number {
  const [beta1, beta2] = h.betas;
  const biasCorrection1 = 1 - beta1 ** step;
  const sqrtBiasCorrection2 = Math.sqrt(1 - beta2 ** step);
  // Adam's L2 term only exists when weightDecay != 0 (as in PyTorch), so 0 * Inf never makes a NaN.
  const coupled = !decoupled && h.weightDecay !== 0;
  out[offset] = beta1;
  out[offset + 1] = 1 - beta1;
  out[offset + 2] = beta2;
  out[offset + 3] = 1 - beta2;
  out[offset + 4] = decoupled ? 1 - h.lr * h.weightDecay : 1;
  out[offset + 5] = coupled ? h.weightDecay : 0;
  out[offset + 6] = -(h.lr / biasCorrection1) * sqrtBiasCorrection2;
  out[offset + 7] = h.eps * sqrtBiasCorrection2;
  return (h.amsgrad ? 1 : 0) | (h.maximize ? 2 : 0) | (coupled ? 4 : 0);
}

/** A state dtype option: one of {@link STATE_DTYPES}. */
export function checkStateDtype(name: string, value: unknown): StateDtype {
  const expected = `${STATE_DTYPES.slice(0, -1)
    .map((dtype) => `'${dtype}'`)
    .join(', ')} or '${STATE_DTYPES.at(-1) ?? ''}'`;
  if (typeof value !== 'string') throw typeError(name, expected, value);
  if (!(STATE_DTYPES as readonly string[]).includes(value)) throw rangeError(name, expected, value);
  return value as StateDtype;
}

function adamSpec(
  className: string,
  kind: string,
  weightDecay: number,
  decoupled: boolean,
): OptimizerSpec<AdamHyperparameters> {
  const spec: OptimizerSpec<AdamHyperparameters> = {
    className,
    kind,
    ops: { float32: 'adamw', bfloat16: 'adamwBfloat16', blockwise8: 'adamwBlockwise8' },
    stateDtypeKey: 'stateDtype',
    hyperparameters: {
      lr: { default: 1e-3, check: checkNonNegative, fileKey: 'lr' },
      betas: {
        default: Object.freeze<[number, number]>([0.9, 0.999]),
        check: (name: string, value: unknown) => Object.freeze(checkBetas(name, value)),
        fileKey: 'betas',
      },
      eps: { default: 1e-8, check: checkNonNegative, fileKey: 'eps' },
      weightDecay: { default: weightDecay, check: checkNonNegative, fileKey: 'weight_decay' },
      amsgrad: { default: false, check: checkBoolean, fileKey: 'amsgrad', fixed: true },
      maximize: { default: false, check: checkBoolean, fileKey: 'maximize' },
      stateDtype: {
        default: 'float32',
        check: checkStateDtype,
        fileKey: 'state_dtype',
        fixed: true,
        absentMeans: 'float32',
      },
    },
    state: [
      { name: 'expAvg', fileName: 'exp_avg', shape: 'param', map: 'signed' },
      { name: 'expAvgSq', fileName: 'exp_avg_sq', shape: 'param', map: 'unsigned' },
      {
        name: 'maxExpAvgSq',
        fileName: 'max_exp_avg_sq',
        shape: 'param',
        map: 'unsigned',
        presentWhen: (h: Readonly<AdamHyperparameters>) => h.amsgrad,
      },
    ],
    decayKey: 'weightDecay',
    scalars: ADAM_SCALARS,
    flags: ADAM_FLAGS,
    stepScalars: (
      h: Readonly<AdamHyperparameters>,
      step: number,
      out: Float64Array,
      offset: number,
    ) => adamStepScalars(h, step, decoupled, out, offset),
  };
  return Object.freeze(spec);
}

/** AdamW's declaration: decoupled weight decay, default 1e-2. */
export const ADAMW_SPEC = adamSpec('AdamW', 'adamw', 1e-2, true);
/** Adam's declaration: L2 weight decay added to the gradient, default 0. */
export const ADAM_SPEC = adamSpec('Adam', 'adam', 0, false);

/** The base of {@link AdamW} and {@link Adam} (as in 0.1.0); {@link Optimizer} is the base of
 * every optimizer of this package. */
// `D`: the state dtypes its groups use, which types state(p); 'float32' unless given, as in 0.1.0.
export abstract class AdamBase<D extends StateDtype = 'float32'> extends Optimizer<
  OptimizerParamGroup,
  ParamStateOf<D>,
  OptimizerStateDict,
  ParamStateFloat32,
  IterableParamGroup<ParamGroup<D>>
> {}

/**
 * AdamW (Loshchilov & Hutter): Adam with weight decay decoupled from the gradient,
 * p *= 1 - lr * weightDecay. Semantics and defaults of torch.optim.AdamW.
 */
export class AdamW<D extends StateDtype = 'float32'> extends AdamBase<D> {
  static readonly spec = ADAMW_SPEC;
  /** `D`, the state dtypes of its groups, is inferred from `defaults.stateDtype` ('float32' when
   * absent); groups naming another dtype need it spelled out, e.g.
   * `new AdamW<'float32' | 'bfloat16'>(groups)`, so that `state(p)` is typed by what it returns. */
  constructor(
    params: Iterable<AnyParam> | Iterable<IterableParamGroup<ParamGroup<NotInferred<D>>>>,
    defaults?: OptimizerOptions<D>,
  ) {
    super(ADAMW_SPEC, params, defaults);
  }
}

/**
 * Adam (Kingma & Ba), with weightDecay as L2 added to the gradient (g += weightDecay * p).
 * Semantics and defaults of torch.optim.Adam (weightDecay 0).
 */
export class Adam<D extends StateDtype = 'float32'> extends AdamBase<D> {
  static readonly spec = ADAM_SPEC;
  /** `D`, the state dtypes of its groups, is inferred from `defaults.stateDtype` ('float32' when
   * absent); groups naming another dtype need it spelled out, e.g.
   * `new Adam<'float32' | 'bfloat16'>(groups)`, so that `state(p)` is typed by what it returns. */
  constructor(
    params: Iterable<AnyParam> | Iterable<IterableParamGroup<ParamGroup<NotInferred<D>>>>,
    defaults?: OptimizerOptions<D>,
  ) {
    super(ADAM_SPEC, params, defaults);
  }
}
