// What an optimizer is, as data: the declaration every optimizer of this package makes, and from
// which the generic machinery (optim/optimizer.ts, checkpoint/, optim/memory.ts) does the rest.
//
// An optimizer declares its hyperparameters (default, check, checkpoint name, whether fixed after
// construction), its per-param state tensors (name, file name, shape rule, blockwise8 map, when
// present), the native op that runs it for each state dtype it supports, and how its
// hyperparameters become the ops' per-step scalars. Nothing outside its spec file names `expAvg`
// or `betas`; another optimizer gets bfloat16 and blockwise8 state by declaring their ops and its
// tensors' maps.

/** One hyperparameter: its default, its check, and how a checkpoint file names it. */
export interface HyperparameterSpec<T> {
  readonly default: T;
  /** Validates a caller's value (named `name` in messages); returns it as it is kept (arrays are
   * copies, frozen). */
  check(name: string, value: unknown): T;
  /** The key in a checkpoint file's param_groups: PyTorch's snake_case name (`weight_decay`). */
  readonly fileKey: string;
  /** Fixed after construction, because it decides which state exists (amsgrad): read-only on a
   * group, and a checkpoint must agree with the optimizer on it. */
  readonly fixed?: boolean;
  /** What a checkpoint file or state dict without this key means: one written before the
   * hyperparameter existed (stateDtype: 'float32'). Without it the key is required. */
  readonly absentMeans?: T;
}

/** Every hyperparameter of an optimizer; declaration order is the order of files and dicts. */
export type HyperparameterSchema<H> = { readonly [K in keyof H]: HyperparameterSpec<H[K]> };

/** Every optimizer has a learning rate: schedules drive it and step reports return it. It may be
 * null where the optimizer computes its own step size (Adafactor's relativeStep). */
export interface BaseHyperparameters {
  lr: number | null;
}

/**
 * How an optimizer keeps a param's state tensors: 'float32' (Float32Array), 'bfloat16' (the high
 * 16 bits of each float32, Uint16Array) or 'blockwise8' (bitsandbytes' 8-bit blockwise scheme: one
 * Uint8Array code per element and one float32 absmax per block of 256).
 */
export type StateDtype = 'float32' | 'bfloat16' | 'blockwise8';
/** Every state dtype, in the order messages list them. */
export const STATE_DTYPES: readonly StateDtype[] = Object.freeze([
  'float32',
  'bfloat16',
  'blockwise8',
]);

/** Which of bitsandbytes' two dynamic maps a state tensor's blockwise8 codes index: 'signed' for
 * values of either sign (a first moment), 'unsigned' for values >= 0 (a second moment). */
export type QuantizationMap = 'signed' | 'unsigned';

/** One per-param state tensor. */
export interface StateTensorSpec<H> {
  /** Its name in `state(p)`, in state dicts and among the native op's arrays: `expAvg`. With
   * blockwise8 state its absmax is the op's array `<name>Absmax`. */
  readonly name: string;
  /** Its name in checkpoint files, `state.<param key>.<fileName>`: PyTorch's `exp_avg`. */
  readonly fileName: string;
  /** Its length: 'param', as many elements as the param; for a factored moment (a spec with
   * `factored`), 'rows' (one per row: the product of all dimensions but the last) or 'cols' (one
   * per column of each matrix: the leading dimensions' product times the last dimension). */
  readonly shape: 'param' | 'rows' | 'cols';
  /** In a spec with `factored`: kept only by params of 2 or more dimensions ('factored') or only by
   * the others ('unfactored'); absent, by both. */
  readonly factoring?: 'factored' | 'unfactored';
  /** The dynamic map of its codes when the state dtype is 'blockwise8' (required if the spec has a
   * blockwise8 op). */
  readonly map?: QuantizationMap;
  /** Whether a param whose group has these hyperparameters keeps it (default: always). Only
   * fixed hyperparameters may decide it. */
  presentWhen?(h: Readonly<H>): boolean;
}

/** The native op of each state dtype an optimizer supports; float32 always. All must be of one
 * family (the same scalars and flags), since a step may run several of them. */
export type StateDtypeOps = { readonly float32: string } & {
  readonly [D in Exclude<StateDtype, 'float32'>]?: string;
};

/** The declaration of an optimizer. */
export interface OptimizerSpec<H extends BaseHyperparameters> {
  /** The class name, for messages: 'AdamW'. */
  readonly className: string;
  /** What state dicts and checkpoint files record as `optimizer`: 'adamw'. */
  readonly kind: string;
  readonly hyperparameters: HyperparameterSchema<H>;
  readonly state: readonly StateTensorSpec<H>[];
  /** The native op (native/ops/) that applies a step, per state dtype; its arrays are 'param',
   * 'grad', these state tensors by name (with `<name>Absmax` for blockwise8) and, optionally,
   * 'paramBf16' (a param's dataBf16). */
  readonly ops: StateDtypeOps;
  /** The fixed hyperparameter that holds a group's state dtype (`stateDtype`, file key
   * `state_dtype`), when the spec supports more than float32. */
  readonly stateDtypeKey?: string;
  /** The hyperparameter that a param with `decay: false` sees as 0 (weight decay), if any. */
  readonly decayKey?: string;
  /** The op factors the second moment of params of 2 or more dimensions (Adafactor, CAME): each
   * param's [batches, rows, columns] goes to the native plan, and a checkpoint must have been
   * saved with the same shapes. */
  readonly factored?: boolean;
  /** Checks a group's hyperparameters against each other (each is already valid alone), when the
   * optimizer is created and before every step; throws a RangeError naming `name`. */
  checkValues?(name: string, h: Readonly<H>): void;
  /** The lr a step reports for a group with these hyperparameters at 1-based step `step`
   * (default: its lr). */
  reportedLr?(h: Readonly<H>, step: number): number;
  /** The op's per-step scalars, by name, in the order stepScalars writes them. */
  readonly scalars: readonly string[];
  /** The op's flags, by name: bit i of stepScalars' result is flags[i]. Not the framework's own
   * (stochasticRounding, an optimizer option that optim/optimizer.ts sets). */
  readonly flags: readonly string[];
  /**
   * Writes the scalars of one step of a tensor whose group has hyperparameters `h`, at 1-based
   * step `step`, to out[offset ..] in the order of `scalars` (double precision; the addon rounds
   * each to float32 once), and returns its flags (bit i: flags[i]). It runs once per group (and
   * step count) every step, so it should allocate nothing. The names are matched to the native
   * op's once, at first use.
   */
  stepScalars(h: Readonly<H>, step: number, out: Float64Array, offset: number): number;
}

/** Any optimizer's spec, seen by the generic code (which reads hyperparameters by name). The
 * methods above are declared as methods so that every spec is one of these. */
export type AnyOptimizerSpec = OptimizerSpec<BaseHyperparameters>;
