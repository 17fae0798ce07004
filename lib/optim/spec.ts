// What an optimizer is, as data: the declaration every optimizer of this package makes, and from
// which the generic machinery (optim/optimizer.ts, checkpoint/, optim/memory.ts) does the rest.
//
// An optimizer declares its hyperparameters (default, check, checkpoint name, whether fixed after
// construction), its per-param state tensors (name, file name, dtype, shape rule, when present),
// the native op that runs it, and how its hyperparameters become the op's per-step scalars. Nothing
// outside its spec file names `expAvg` or `betas`.

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
}

/** Every hyperparameter of an optimizer; declaration order is the order of files and dicts. */
export type HyperparameterSchema<H> = { readonly [K in keyof H]: HyperparameterSpec<H[K]> };

/** Every optimizer has a learning rate: schedules drive it and step reports return it. */
export interface BaseHyperparameters {
  lr: number;
}

/** Element types of state tensors, with their sizes in bytes. */
export const STATE_DTYPE_BYTES = { float32: 4 } as const;
export type StateDtype = keyof typeof STATE_DTYPE_BYTES;

/** One per-param state tensor. */
export interface StateTensorSpec<H> {
  /** Its name in `state(p)`, in state dicts and among the native op's arrays: `expAvg`. */
  readonly name: string;
  /** Its name in checkpoint files, `state.<param key>.<fileName>`: PyTorch's `exp_avg`. */
  readonly fileName: string;
  readonly dtype: StateDtype;
  /** Its length: 'param', as many elements as the param. */
  readonly shape: 'param';
  /** Whether a param whose group has these hyperparameters keeps it (default: always). Only
   * fixed hyperparameters may decide it. */
  presentWhen?(h: Readonly<H>): boolean;
}

/** The declaration of an optimizer. */
export interface OptimizerSpec<H extends BaseHyperparameters> {
  /** The class name, for messages: 'AdamW'. */
  readonly className: string;
  /** What state dicts and checkpoint files record as `optimizer`: 'adamw'. */
  readonly kind: string;
  readonly hyperparameters: HyperparameterSchema<H>;
  readonly state: readonly StateTensorSpec<H>[];
  /** The native op (native/ops/) that applies a step; its arrays are 'param', 'grad' and these
   * state tensors, by name. */
  readonly op: string;
  /** The hyperparameter that a param with `decay: false` sees as 0 (weight decay), if any. */
  readonly decayKey?: string;
  /** The op's per-step scalars, by name, in the order stepScalars writes them. */
  readonly scalars: readonly string[];
  /** The op's flags, by name: bit i of stepScalars' result is flags[i]. */
  readonly flags: readonly string[];
  /**
   * Writes the scalars of one step of a tensor whose group has hyperparameters `h`, at 1-based
   * step `step`, to out[offset ..] in the order of `scalars` (double precision; the addon rounds
   * each to float32 once), and returns its flags (bit i: flags[i]). It runs once per group (and
   * step count) every step, so it should allocate nothing. The names are matched to the native op's once, at first use.
   */
  stepScalars(h: Readonly<H>, step: number, out: Float64Array, offset: number): number;
}

/** Any optimizer's spec, seen by the generic code (which reads hyperparameters by name). The
 * methods above are declared as methods so that every spec is one of these. */
export type AnyOptimizerSpec = OptimizerSpec<BaseHyperparameters>;
