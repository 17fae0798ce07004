// The one optimizer machinery: everything an optimizer of this package does besides its own
// arithmetic, for any spec (optim/spec.ts). Groups and their validated setters, per-param state in
// the dtype its group asks for (optim/state-storage.ts), the native step plan, step/stepAsync with
// the fused clip/unscale/skip options and stochastic rounding, schedules, threads, state(),
// stateFloat32(), memory(), state dicts and checkpoint files. Each optimizer is its spec plus a
// thin subclass (optim/adam.ts).
//
// A step is one native call for all params (PyTorch's foreach/fused idea: real models have
// hundreds of small bias and norm vectors, and one call per tensor would cost more than their
// update), each tensor with the op of its state dtype. The addon holds a plan of the step's arrays,
// gathered and checked once; every step only confirms, in JavaScript, that each array is the same
// object and still has its length, and makes a new plan when a param's data, grad, gradDtype or
// dataBf16 was replaced. A step with `skip` runs a plan over the other params (the last such plan
// is kept: a training loop tends to skip the same params every step).
import {
  loadCheckpointInto,
  loadOptimizer,
  type OptimizerFactory,
  saveCheckpoint,
} from '../checkpoint/file';
import { loadStateDictInto, stateDictOf } from '../checkpoint/state-dict';
import { checkNoOverlap, holdForAsyncStep, type NamedArray } from '../core/arrays';
import { checkBoolean, checkNumber, isPlainObject, readOnce } from '../core/checks';
import { describe, rangeError, stepInFlightError, typeError } from '../core/errors';
import { lengthOf } from '../core/intrinsics';
import {
  native,
  type NativeArray,
  type NativeOpLayout,
  type NativePlan,
  opLayout,
} from '../core/native';
import { checkThreads, defaultThreads } from '../core/threads';
import {
  afterMetric,
  checkSchedule,
  type LrSchedule,
  newScheduleState,
  scheduleFactor,
  type ScheduleState,
} from '../train/schedules';
import {
  checkOptimizerStepOptions,
  emptyStepReport,
  newControl,
  type OptimizerStepOptions,
  plainReport,
  readReport,
  type StepReport,
  type TrainStepRequest,
  writeControl,
} from '../train/step-options';
import type { OptimizerInternals, SlotView } from './internals';
import {
  defaultHyperparameters,
  type HyperparameterValues,
  resolveHyperparameters,
} from './hyperparameters';
import { addBreakdown, emptyBreakdown, type MemoryReport } from './memory';
import { createParamGroup, groupValues, type LiveGroup } from './param-groups';
import {
  checkGrad,
  checkParamArrays,
  currentName,
  GRAD_DTYPE_CODES,
  type GradDtype,
  type AnyParam,
  type Param,
  type ParamArrays,
  validateParam,
  type ValidatedParam,
} from './params';
import type { AnyOptimizerSpec, StateDtype } from './spec';
import {
  allocateState,
  blockwise8BlockSize,
  checkStateArray,
  DEFAULT_MIN_8BIT_SIZE,
  effectiveStateDtype,
  matrixShape,
  namedStateArrays,
  type StateArray,
  stateArrayBytes,
  stateTensorLengths,
  stateToFloat32,
} from './state-storage';
import { scalarWriter, type ScalarWriter } from './step-scalars';
import { checkMin8bitSize, checkSeed, leanOptionKeys } from './lean-options';
import { shardViewOf } from './shard-views';
import { stochasticRoundingKey } from './stochastic-rounding';

/** The optimizer-wide options of lean state, for optimizers whose spec has bfloat16 or blockwise8
 * state (the state dtype itself is the `stateDtype` hyperparameter, per group). */
export interface LeanStateOptions {
  /** Round bfloat16 state stochastically instead of to nearest even (RangeError unless some
   * group's stateDtype is 'bfloat16'). Default false. */
  stochasticRounding?: boolean;
  /** The seed of stochastic rounding's random bits: an integer in [0, 2^32). Default 0. */
  seed?: number;
  /** Under stateDtype 'blockwise8', params with fewer elements keep float32 state. An integer >= 0;
   * default 4096 (bitsandbytes'). */
  min8bitSize?: number;
}

/** The options every optimizer takes besides its hyperparameters. */
export interface CommonOptions extends LeanStateOptions {
  /** Threads a step may use. Default: os.availableParallelism(). Small steps use fewer. */
  threads?: number;
  /** A learning-rate schedule (train/schedules.ts) driving every group's lr from its lr here. */
  schedule?: LrSchedule;
}

/** A param group as passed in: its params and any of the optimizer's hyperparameters. */
export interface ParamGroupInput {
  // Param (float32 grads): what every optimizer class must accept, so that one written for
  // 0.1.0's Param[] is still an OptimizerClass.
  params: Param[];
}

/** A param group as the constructors and addParamGroup take it: `G` (an optimizer's ParamGroup)
 * with its params as any iterable (an Array, a Set, a generator, `map.values()`), read once. */
export type IterableParamGroup<G extends { params: unknown }> = Omit<G, 'params'> & {
  params: Iterable<AnyParam>;
};

/** A group for addParamGroup of any optimizer: its params and hyperparameters (each optimizer
 * class takes its own ParamGroup type instead). */
export interface AddedParamGroup {
  params: Iterable<AnyParam>;
  [hyperparameter: string]: unknown;
}

/** Every param's state has its step count and how it is kept; each optimizer adds its tensors
 * (AdamW's ParamState). */
export interface BaseParamState {
  /** Steps taken by this parameter. */
  step: number;
  /** How its state tensors are kept: its group's stateDtype, or 'float32' for a param under
   * min8bitSize in a 'blockwise8' group. */
  dtype: StateDtype;
}

// Where each array of a native op's tensor comes from: the param's data, grad or dataBf16, or part
// 0 (values or codes) or 1 (absmax) of one of its state tensors.
type ArraySource =
  | { readonly from: 'data' | 'grad' | 'dataBf16' }
  | { readonly from: 'state'; readonly index: number; readonly part: 0 | 1 };

// One native op the optimizer runs (one per state dtype in use).
interface OpEntry {
  readonly name: string;
  readonly layout: NativeOpLayout;
  readonly sources: readonly ArraySource[];
}

// Everything the optimizer keeps about one parameter.
interface Slot extends SlotView {
  readonly index: number; // its place in #slots
  // Its stochastic-rounding key's index (its place in #slots, whatever is skipped; a shard view's
  // whole tensor's place: optim/shard-views.ts) and where its elements start in that tensor.
  readonly keyIndex: number;
  readonly elementOffset: number;
  readonly decay: boolean; // false: the spec's decayKey is 0 for this param (Param.decay)
  readonly variant: number; // index into #variants: its group and decay
  // The arrays of the current native plan, and the gradDtype value they were checked with.
  data: Float32Array;
  grad: Float32Array | Uint16Array;
  gradDtype: GradDtype;
  gradDtypeInput: unknown;
  dataBf16: Uint16Array | null;
}

// A native plan and the slots it updates, in its tensor order. The addon takes a tensorSet and
// tensorSeeds of exactly its tensor count: views of the optimizer's arrays, made with the plan.
// The plan holds its slots' arrays as they were when it was made, so it is dropped as soon as
// one of them is replaced.
interface StepPlan {
  readonly slots: readonly Slot[];
  readonly native: NativePlan | null; // null: no slots (every param skipped)
  readonly tensorSet: Uint32Array;
  readonly tensorSeeds: Uint32Array;
  // For a plan of a step with skip: which slots it leaves out (1 at their index); null for all.
  readonly skipped: Uint8Array | null;
}

// The schedule's factor for the lrs after a step, computed before it, with the schedule state it
// was computed from.
interface NextFactor {
  readonly state: ScheduleState;
  readonly factor: number;
}

// A (group, decay) pair: the params that share a scalar set when their step counts agree.
interface Variant {
  readonly group: LiveGroup;
  readonly decay: boolean;
  // This step's scalar set for params at step `step`, or -1.
  step: number;
  set: number;
  // For decay: false, the group's values it was derived from and the derived values.
  source: HyperparameterValues | null;
  values: HyperparameterValues | null;
}

// The optimizer's own state is one arena per state tensor and storage kind, each param's tensor a
// view of it (optim/state-storage.ts, allocateState).

// Whether two masks of the same optimizer hold the same bytes.
function sameBytes(a: Uint8Array | null, b: Uint8Array): boolean {
  if (a === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// How messages name a param's state tensor: "state of fc.bias (expAvg)".
function stateLabel(slot: Slot, tensor: string): string {
  return `state of ${slot.label} (${tensor})`;
}

// A param validated for a new slot, with its group and the group's index.
interface PendingParam {
  readonly v: ValidatedParam;
  readonly g: number;
  readonly group: LiveGroup;
}

// New slots, their state's arenas and the variants they add, made but not yet the optimizer's.
interface NewSlots {
  readonly slots: readonly Slot[];
  readonly arenas: readonly { array: ArrayBufferView; length: number }[];
  readonly variants: readonly Variant[];
  readonly blockSize: number;
}

function isGroupList(value: readonly unknown[]): boolean {
  return value.length > 0 && isPlainObject(value[0]) && 'params' in value[0];
}

/** Any optimizer of this package, whatever its group, state and state dict types. */
export type AnyOptimizer = Optimizer;

// Set by Optimizer's static block, which can read its private fields.
let internalsOf: ((optimizer: AnyOptimizer) => OptimizerInternals) | undefined;

function internals(optimizer: AnyOptimizer): OptimizerInternals {
  if (internalsOf === undefined) throw new Error('simd-adamw: Optimizer is not initialized');
  return internalsOf(optimizer);
}

/** The internals of `optimizer`, for checkpoint/ (through the methods below) and for tests. Not
 * exported from the package. */
export function optimizerInternals(optimizer: AnyOptimizer): OptimizerInternals {
  return internals(optimizer);
}

/** A class of this package's optimizers, as its static `load` sees it. */
export interface OptimizerClass<T> {
  new (params: ParamGroupInput[]): T;
  /** The optimizer's declaration. */
  readonly spec: AnyOptimizerSpec;
}

/**
 * The base of every optimizer of this package (AdamW, Adam, ...). `G` is the type of its param
 * groups, `S` of `state(p)`, `D` of its state dict (a GenericStateDict), `F` of
 * `stateFloat32(p)` and `I` of the group addParamGroup takes; the behaviour comes
 * from the spec its subclass passes. `Optimizer` alone is any optimizer of the package.
 */
export abstract class Optimizer<
  G extends LiveGroup = LiveGroup,
  S extends BaseParamState = BaseParamState,
  D = unknown,
  F extends BaseParamState = BaseParamState,
  I extends { params: Iterable<AnyParam> } = AddedParamGroup,
> {
  readonly #spec: AnyOptimizerSpec;
  // The float32 op's layout: its scalars and flags are those of every op of the spec's family.
  readonly #layout: NativeOpLayout;
  // The op of each state dtype in use.
  readonly #ops = new Map<StateDtype, OpEntry>();
  readonly #groups: LiveGroup[] = [];
  #groupsView: readonly G[] = [];
  readonly #slots: Slot[] = [];
  readonly #slotOf = new Map<AnyParam, Slot>();
  readonly #variants: Variant[] = [];
  readonly #writeScalars: ScalarWriter;
  // The plan over every param (null when a step with skip replaced arrays: made again when next
  // needed), and the last plan of a step with skip.
  #fullPlan: StepPlan | null = null;
  #skipPlan: StepPlan | null = null;
  // The slots the coming (or running) step updates, and the plan over them if one is kept: null
  // until #prepareStep makes it.
  #stepSlots: readonly Slot[] = [];
  #stepPlan: StepPlan | null = null;
  // The per-param arrays of a step below are sized by the param count (#sizeStepArrays): made
  // when the optimizer is created, again when addParamGroup adds params.
  // Which slots the coming step's skip names (1 at their index); rewritten by every such step.
  #skipMask = new Uint8Array(0);
  // Scalar sets of one step (at most one per param) and each tensor's set, by place in
  // #stepSlots; the views passed to the addon are cached by set count.
  #scalars = new Float64Array(0);
  #flags = new Uint32Array(0);
  #tensorSet = new Uint32Array(0);
  // Each tensor's stochastic-rounding key for the coming step (only with stochasticRounding).
  #tensorSeeds = new Uint32Array(0);
  readonly #setViews = new Map<number, readonly [Float64Array, Uint32Array]>();
  #setCount = 0; // scalar sets written for the coming step
  // data, grad, gradDtype and dataBf16 of every param as read at the start of a step, reused.
  #current: unknown[] = [];
  // The buffers behind every param's state tensors (optim/state-storage.ts), with their lengths.
  #arenas: readonly { array: ArrayBufferView; length: number }[] = [];
  // Elements per absmax of blockwise8 state; 0 when no group has blockwise8 state.
  #blockSize = 0;
  #stochasticRounding: boolean;
  #seed: number;
  readonly #min8bitSize: number;
  #threads: number;
  #inFlight = false;
  // The fused step's request and result (train/step-options.ts), reused between steps.
  readonly #control = newControl();
  #schedule: ScheduleState | null = null;
  // The constructor's defaults, which every group's unset hyperparameters take (addParamGroup's
  // too).
  readonly #groupDefaults: HyperparameterValues;

  static {
    internalsOf = (optimizer) => ({
      spec: optimizer.#spec,
      groups: optimizer.#groups,
      slots: optimizer.#slots,
      get blockSize() {
        return optimizer.#blockSize;
      },
      get scheduleState() {
        return optimizer.#schedule;
      },
      setScheduleState(state) {
        optimizer.#schedule = state;
      },
      get lean() {
        return {
          stochasticRounding: optimizer.#stochasticRounding,
          seed: optimizer.#seed,
          min8bitSize: optimizer.#min8bitSize,
        };
      },
      setStochasticRounding(stochasticRounding, seed) {
        optimizer.#stochasticRounding = stochasticRounding;
        optimizer.#seed = seed;
      },
      assertIdle(action) {
        optimizer.#assertIdle(action);
      },
      stepWithGradFactor(gradFactor) {
        optimizer.#stepWithGradFactor(gradFactor);
      },
    });
  }

  protected constructor(spec: AnyOptimizerSpec, params: unknown, defaults: unknown) {
    this.#spec = spec;
    this.#layout = opLayout(spec.ops.float32);
    this.#writeScalars = scalarWriter(spec, this.#layout);

    const options = isPlainObject(defaults) ? defaults : {};
    const threadsOption = options.threads;
    this.#threads =
      threadsOption === undefined
        ? defaultThreads()
        : checkThreads('defaults.threads', threadsOption);
    const scheduleOption = options.schedule;
    const schedule =
      scheduleOption === undefined ? null : checkSchedule('defaults.schedule', scheduleOption);
    const leanKeys = leanOptionKeys(spec);
    const groupDefaults = resolveHyperparameters(
      spec,
      'defaults',
      defaults,
      defaultHyperparameters(spec),
      ['threads', 'schedule', ...leanKeys],
    );
    spec.checkValues?.('defaults', groupDefaults);
    this.#groupDefaults = groupDefaults;
    // Read only when the spec takes them (resolveHyperparameters refused them otherwise).
    const { stochasticRounding, seed, min8bitSize } = leanKeys.length > 0 ? options : {};
    this.#stochasticRounding =
      stochasticRounding === undefined
        ? false
        : checkBoolean('defaults.stochasticRounding', stochasticRounding);
    this.#seed = seed === undefined ? 0 : checkSeed('defaults.seed', seed);
    this.#min8bitSize =
      min8bitSize === undefined
        ? DEFAULT_MIN_8BIT_SIZE
        : checkMin8bitSize('defaults.min8bitSize', min8bitSize);
    // Any iterable of params or of groups (an Array, a Set, a generator), read once.
    const inputs = [...readOnce('params', 'an iterable of params or of param groups', params)];
    if (inputs.length === 0)
      throw new RangeError('Expected at least one param for params but received an empty iterable');
    const groupList = isGroupList(inputs);
    const groupInputs: unknown[] = groupList ? inputs : [{ params: inputs }];
    const names = new Set<string>();
    const seen = new Set<unknown>();
    const pending: PendingParam[] = [];
    for (const [g, groupInput] of groupInputs.entries()) {
      const { group, validated } = this.#validateGroup(g, groupInput, names, seen, !groupList);
      this.#groups.push(group);
      for (const v of validated) pending.push({ v, g, group });
    }
    if (
      this.#stochasticRounding &&
      !this.#groups.some((group) => this.#groupDtype(groupValues(group)) === 'bfloat16')
    ) {
      throw rangeError(
        'defaults.stochasticRounding',
        "false (it rounds bfloat16 state, and no param group has stateDtype 'bfloat16')",
        stochasticRounding,
      );
    }
    this.#adoptSlots(this.#newSlots(pending));
    this.#groupsView = Object.freeze([...this.#groups]) as readonly G[];
    this.#sizeStepArrays();
    this.#checkOverlap(this.#slots);
    this.#fullPlan = this.#createPlan(this.#slots, null);
    if (schedule !== null) this.#attachSchedule('defaults.schedule', schedule);
  }

  /** The parameter groups, in order. Change hyperparameters through them between steps. */
  get paramGroups(): readonly G[] {
    return this.#groupsView;
  }

  /**
   * Adds a param group (PyTorch's add_param_group): its params (any iterable, read once) and any
   * hyperparameters, the unset ones taking the constructor's defaults. It is validated as a
   * constructor's group is, with the same messages (it is `paramGroups[n]`, n the group count
   * before): no param may be in another group, and a name used by another param is refused. Its
   * state is created at once (zeroed, step 0, in new memory of its own; the other params' state is
   * untouched) and is in every later stateDict and checkpoint. While a schedule is attached, the
   * group's lr is recorded as its base lr and its lr set for the schedule's position (as if it had
   * been there when the schedule was attached); a group whose lr is null is then refused.
   * `paramGroups` returns a new array, with the group last. Throws, changing nothing, on invalid
   * input or while a stepAsync runs.
   */
  addParamGroup(group: I): void {
    this.#assertIdle('addParamGroup()');
    const g = this.#groups.length;
    // The names a checkpoint would save, and the params already here.
    const names = new Set<string>();
    for (const slot of this.#slots) {
      const name = currentName(slot.param, slot.label);
      if (name !== undefined) names.add(name);
    }
    const seen = new Set<unknown>(this.#slotOf.keys());
    const { group: live, validated } = this.#validateGroup(g, group, names, seen, false);
    const schedule = this.#schedule;
    const lr = live.lr;
    if (schedule !== null && lr === null) {
      throw rangeError(
        `paramGroups[${g}].lr`,
        `a number (a schedule is attached, and it drives every group's lr; ` +
          `${this.#spec.className} computes its own step size where lr is null)`,
        lr,
      );
    }
    // The schedule's factor first: a lambda's is the caller's code, and may throw.
    const factor =
      schedule !== null && lr !== null ? scheduleFactor(schedule, schedule.position) : 1;
    const added = this.#newSlots(validated.map((v) => ({ v, g, group: live })));
    // No array of the new params may share memory with another's or with any state.
    this.#checkOverlap([...this.#slots, ...added.slots]);
    this.#groups.push(live);
    this.#adoptSlots(added);
    this.#groupsView = Object.freeze([...this.#groups]) as readonly G[];
    this.#sizeStepArrays();
    // Made again at the next step, over every param.
    this.#fullPlan = null;
    this.#skipPlan = null;
    this.#stepPlan = null;
    this.#stepSlots = [];
    if (schedule !== null && lr !== null) {
      this.#schedule = Object.freeze({
        ...schedule,
        baseLrs: Object.freeze([...schedule.baseLrs, lr]),
      });
      (live as unknown as { lr: number }).lr = lr * factor;
    }
  }

  /** Threads a step may use (default: os.availableParallelism()); small steps use fewer. */
  get threads(): number {
    return this.#threads;
  }
  set threads(value: number) {
    this.#assertIdle('set threads');
    this.#threads = checkThreads('threads', value);
  }

  /** Whether bfloat16 state is rounded stochastically (the option; restored by a checkpoint). */
  get stochasticRounding(): boolean {
    return this.#stochasticRounding;
  }

  /** The seed of stochastic rounding (the option; restored by a checkpoint). */
  get seed(): number {
    return this.#seed;
  }

  /** Params with fewer elements keep float32 state under stateDtype 'blockwise8'. */
  get min8bitSize(): number {
    return this.#min8bitSize;
  }

  /**
   * One optimization step for every parameter, from its current `grad`, in a single native call.
   * `options` adds global-norm clipping, loss-scale unscaling and the non-finite skip, in the same
   * call, and `skip` leaves params out of the step (docs/training.md). Validates
   * everything first: on error nothing has changed. Returns what the step did.
   */
  step(options?: OptimizerStepOptions): StepReport {
    this.#assertIdle('step()');
    const { request, skip } = checkOptimizerStepOptions('options', options);
    const next = this.#nextScheduleFactor();
    this.#selectStepSlots(skip);
    const plan = this.#prepareStep();
    const lr = this.#reportedLr();
    if (plan.native === null) {
      this.#finishStep(next);
      return emptyStepReport(request, lr);
    }
    const [scalars, flags] = this.#setView();
    const seeds = this.#stochasticRounding ? plan.tensorSeeds : undefined;
    const control = request === null ? undefined : writeControl(this.#control, request);
    const threads = this.#threads;
    if (seeds !== undefined) {
      native.runPlan(plan.native, scalars, flags, plan.tensorSet, threads, control, seeds);
    } else if (control !== undefined) {
      native.runPlan(plan.native, scalars, flags, plan.tensorSet, threads, control);
    } else {
      native.runPlan(plan.native, scalars, flags, plan.tensorSet, threads);
    }
    if (request === null) {
      this.#finishStep(next);
      return plainReport(lr);
    }
    return this.#finishFusedStep(request, lr, next);
  }

  // A step of every param whose gradients the kernel multiplies by float32(gradFactor) (1: the
  // plain kernel), decided by the caller: ZeRO-1's ranks clip and unscale on the global norm,
  // which none of them can measure alone (distributed/zero.ts). Everything else is step()'s.
  #stepWithGradFactor(gradFactor: number): void {
    this.#assertIdle('step()');
    const next = this.#nextScheduleFactor();
    this.#selectStepSlots(undefined);
    const plan = this.#prepareStep();
    if (plan.native !== null) {
      const [scalars, flags] = this.#setView();
      const control = writeControl(this.#control, {
        maxNorm: Infinity,
        gradScale: 1,
        measureNorm: false,
        skipNonFinite: false,
        gradFactor,
      });
      if (this.#stochasticRounding) {
        native.runPlan(
          plan.native,
          scalars,
          flags,
          plan.tensorSet,
          this.#threads,
          control,
          plan.tensorSeeds,
        );
      } else {
        native.runPlan(plan.native, scalars, flags, plan.tensorSet, this.#threads, control);
      }
    }
    this.#finishStep(next);
  }

  /**
   * {@link step} off the JavaScript thread: the update (and the gradient norm, with `options`)
   * runs on worker threads while the event loop keeps running, and the promise resolves with the
   * report when every parameter is updated. Until it settles the optimizer rejects another step,
   * zeroGrad and hyperparameter changes, and keeps the arrays alive; the caller must not write,
   * transfer or resize the params, grads or state meanwhile.
   * Invalid input rejects the promise with nothing changed.
   * Params or grads over a resizable ArrayBuffer are refused, and their buffers are marked
   * untransferable (see holdForAsyncStep).
   */
  async stepAsync(options?: OptimizerStepOptions): Promise<StepReport> {
    this.#assertIdle('stepAsync()');
    const { request, skip } = checkOptimizerStepOptions('options', options);
    const next = this.#nextScheduleFactor();
    this.#selectStepSlots(skip);
    const plan = this.#prepareStep();
    const lr = this.#reportedLr();
    if (plan.native === null) {
      this.#finishStep(next);
      return emptyStepReport(request, lr);
    }
    holdForAsyncStep(
      plan.slots.flatMap((slot): NamedArray[] => {
        const arrays: NamedArray[] = [
          { name: `${slot.label}.data`, array: slot.data },
          { name: `${slot.label}.grad`, array: slot.grad },
        ];
        if (slot.dataBf16 !== null) {
          arrays.push({ name: `${slot.label}.dataBf16`, array: slot.dataBf16 });
        }
        return arrays;
      }),
    );
    const [scalars, flags] = this.#setView();
    const control = request === null ? undefined : writeControl(this.#control, request);
    const seeds = this.#stochasticRounding ? plan.tensorSeeds : undefined;
    const threads = this.#threads;
    const done =
      seeds === undefined
        ? native.runPlanAsync(plan.native, scalars, flags, plan.tensorSet, threads, control)
        : native.runPlanAsync(plan.native, scalars, flags, plan.tensorSet, threads, control, seeds);
    this.#inFlight = true;
    try {
      await done;
    } finally {
      this.#inFlight = false;
    }
    if (request === null) {
      this.#finishStep(next);
      return plainReport(lr);
    }
    return this.#finishFusedStep(request, lr, next);
  }

  /**
   * The learning-rate schedule driving the groups' lr (train/schedules.ts), or null. Attaching one
   * records every group's current lr as its base lr (or keeps the base lrs of the schedule it
   * replaces), restarts at position 0 and sets lr = baseLr * factor(0); after every step that is
   * not skipped the position advances and the lrs are set for the next step (a lambda schedule's
   * function is called, and its value checked, before the step, for the step after). A
   * reduceOnPlateau schedule's lrs change only with {@link reportMetric}. While a schedule is
   * attached it owns lr: an lr you assign lasts only until the next step. Setting null detaches it
   * and leaves the lrs as they are.
   */
  get schedule(): LrSchedule | null {
    return this.#schedule?.schedule ?? null;
  }
  set schedule(value: LrSchedule | null) {
    this.#assertIdle('set schedule');
    if (value === null) {
      this.#schedule = null;
      return;
    }
    this.#attachSchedule('schedule', checkSchedule('schedule', value));
  }

  // Attaches a checked schedule (see the setter); `name` names the option in messages.
  #attachSchedule(name: string, schedule: LrSchedule): void {
    const baseLrs =
      this.#schedule?.baseLrs ??
      Object.freeze(
        this.#groups.map((g, i) => {
          if (g.lr === null) {
            throw rangeError(
              name,
              `no schedule (paramGroups[${i}].lr is null: ${this.#spec.className} computes its ` +
                'own step size there, and a schedule drives a numeric lr)',
              schedule,
            );
          }
          return g.lr;
        }),
      );
    const state = newScheduleState(schedule, baseLrs);
    // A lambda's factor is the caller's code and checked: computed before anything changes.
    const factor = scheduleFactor(state, 0);
    this.#schedule = state;
    this.#setScheduledLrs(state, factor);
  }

  /**
   * Reports a metric (the epoch's validation loss, say: a finite number) to the optimizer's
   * reduceOnPlateau schedule, which may lower every group's lr at once (torch's
   * ReduceLROnPlateau.step(metric)). Call it once per epoch; the schedule's best metric, counters
   * and factor are part of the state dict and checkpoint. RangeError unless that is the schedule.
   */
  reportMetric(metric: number): void {
    this.#assertIdle('reportMetric()');
    const state = this.#schedule;
    if (state === null || state.schedule.type !== 'reduceOnPlateau' || state.plateau === null) {
      throw rangeError(
        'schedule',
        'a reduceOnPlateau schedule (reportMetric drives only that schedule)',
        state?.schedule ?? null,
      );
    }
    const value = checkNumber('metric', metric);
    if (!Number.isFinite(value)) throw rangeError('metric', 'a finite number', value);
    const plateau = afterMetric(state.schedule, state.plateau, value);
    const reported = Object.freeze({ ...state, plateau });
    this.#schedule = reported;
    this.#setScheduledLrs(reported, plateau.factor);
  }

  /** Steps taken since the schedule was attached, skipped steps not counted (0 without one). */
  get schedulePosition(): number {
    return this.#schedule?.position ?? 0;
  }

  /** True while a {@link stepAsync} is running. */
  get stepInFlight(): boolean {
    return this.#inFlight;
  }

  /** Sets every gradient to zero (PyTorch's zero_grad(set_to_none=False)); +0 in every grad
   * dtype is all bits zero. It takes no argument: a grad is a typed array that the caller and
   * the optimizer share, so there is no None to set it to. */
  zeroGrad(): void {
    // A JavaScript caller's zeroGrad({ setToNone: true }) would otherwise be ignored silently.
    if (arguments.length > 0) {
      throw typeError(
        'zeroGrad()',
        'no argument',
        // eslint-disable-next-line prefer-rest-params
        arguments[0],
        "zeroGrad takes none: a grad is a typed array, which cannot be set to None as PyTorch's " +
          'set_to_none does; zeroGrad() fills it with zeros',
      );
    }
    this.#assertIdle('zeroGrad()');
    const values = this.#slots.map((slot) => [slot.param.grad, slot.param.gradDtype] as const);
    const grads = this.#slots.map(
      (slot, k) => checkGrad(slot.label, values[k][0], values[k][1], slot.length).grad,
    );
    for (const grad of grads) grad.fill(0);
  }

  /** The state of `param`: its step count, how its state is kept (`dtype`) and zero-copy views
   * of its state tensors (Float32Array, Uint16Array of bf16 bits, or blockwise8
   * { codes, absmax }). */
  state(param: AnyParam): S {
    const slot = this.#slotFor(param);
    const state: Record<string, unknown> = { step: slot.step, dtype: slot.dtype };
    for (const [i, tensor] of this.#spec.state.entries()) {
      const array = slot.state[i];
      if (array !== null) state[tensor.name] = array;
    }
    return state as unknown as S;
  }

  /**
   * The state of `param` as float32 values, whatever its dtype: new Float32Arrays (bfloat16
   * widened exactly; blockwise8 dequantized, each code's map value times its block's absmax,
   * rounded once to float32 as the kernel does). Later steps do not change them.
   */
  stateFloat32(param: AnyParam): F {
    const slot = this.#slotFor(param);
    const state: Record<string, unknown> = { step: slot.step, dtype: slot.dtype };
    for (const [i, tensor] of this.#spec.state.entries()) {
      const array = slot.state[i];
      if (array !== null) {
        state[tensor.name] = stateToFloat32(array, slot.dtype, tensor.map, this.#blockSize);
      }
    }
    return state as unknown as F;
  }

  /**
   * A copy of everything needed to resume: per-param step counts and state, group
   * hyperparameters, the optimizer kind and param names. Later steps do not change it.
   */
  stateDict(): D {
    this.#assertIdle('stateDict()');
    return stateDictOf(internals(this)) as D;
  }

  /**
   * Restores a {@link stateDict} (copying it in). Throws TypeError/RangeError, changing nothing,
   * unless it fits: same optimizer kind, group sizes, fixed hyperparameters, param count, lengths
   * and names.
   */
  loadStateDict(stateDict: D): void {
    this.#assertIdle('loadStateDict()');
    loadStateDictInto(internals(this), stateDict);
  }

  /** Writes the state to `path` as a safetensors file, atomically (docs/checkpoints.md). */
  save(path: string): void {
    this.#assertIdle('save()');
    saveCheckpoint(internals(this), path);
  }

  /** Loads a file written by {@link save}; validated first, all or nothing. */
  loadFrom(path: string): void {
    this.#assertIdle('loadFrom()');
    loadCheckpointInto(internals(this), path);
  }

  /**
   * A new optimizer of this class for `params`, with the groups, hyperparameters, lean-state
   * options and state of the file at `path`, read directly into its arrays. When every param (in
   * `params` and in the file) has a name, they are matched by name and `params` may come in any
   * order (say, the model's, while the file's groups came from noDecay()); a name missing or not in
   * the file is a RangeError listing them. Otherwise `params` are in the saved order. `params` is
   * any iterable, read once.
   */
  static load<T extends AnyOptimizer>(
    this: OptimizerClass<T>,
    path: string,
    params: Iterable<AnyParam>,
  ): T {
    // A class whose spec has lean state takes the lean-state options as its second argument, as
    // AdamW does; another is passed none.
    const Class = this as unknown as new (
      groups: { params: AnyParam[] }[],
      options?: CommonOptions,
    ) => T;
    const create: OptimizerFactory<T> = (groups, options) => {
      const optimizer =
        Object.keys(options).length === 0 ? new Class(groups) : new Class(groups, options);
      return { optimizer, internals: internals(optimizer) };
    };
    const given = [...readOnce('params', "an iterable of the checkpoint's params", params)];
    return loadOptimizer(this.spec, path, given, create);
  }

  /** Bytes held: params (with their dataBf16 copies), grads (as of the last step) and optimizer
   * state (absmax included), per group and in total. */
  memory(): MemoryReport {
    const byGroup = this.#groups.map(() => emptyBreakdown());
    for (const slot of this.#slots) {
      const breakdown = byGroup[slot.groupIndex] ?? emptyBreakdown();
      const params =
        slot.length * Float32Array.BYTES_PER_ELEMENT +
        (slot.dataBf16 === null ? 0 : slot.length * Uint16Array.BYTES_PER_ELEMENT);
      const grads =
        slot.length *
        (slot.gradDtype === 'float32'
          ? Float32Array.BYTES_PER_ELEMENT
          : Uint16Array.BYTES_PER_ELEMENT);
      let state = 0;
      for (const array of slot.state) state += array === null ? 0 : stateArrayBytes(array);
      breakdown.paramCount += slot.length;
      breakdown.params += params;
      breakdown.grads += grads;
      breakdown.state += state;
      breakdown.total += params + grads + state;
    }
    const report: MemoryReport = { ...emptyBreakdown(), groups: byGroup };
    for (const breakdown of report.groups) addBreakdown(report, breakdown);
    return report;
  }

  #slotFor(param: AnyParam): Slot {
    const slot = this.#slotOf.get(param);
    if (slot === undefined) {
      throw new RangeError(
        `Expected a param of this optimizer for param but received ${describe(param)}`,
      );
    }
    return slot;
  }

  // A group's state dtype: its stateDtype hyperparameter, or float32 for a spec without one.
  #groupDtype(values: HyperparameterValues): StateDtype {
    const key = this.#spec.stateDtypeKey;
    return key === undefined ? 'float32' : (values[key] as StateDtype);
  }

  // The schedule's factor for the step after the coming one, computed (and, a lambda's, checked)
  // before the step so that a bad one changes nothing.
  #nextScheduleFactor(): NextFactor | null {
    const state = this.#schedule;
    return state === null ? null : { state, factor: scheduleFactor(state, state.position + 1) };
  }

  // After a step that changed the state: the stepped params' step counts, then the schedule.
  #finishStep(next: NextFactor | null): void {
    const slots = this.#stepSlots;
    for (let k = 0; k < slots.length; k++) slots[k].step += 1;
    const state = this.#schedule;
    if (state !== null) {
      const advanced = Object.freeze({ ...state, position: state.position + 1 });
      // Computed anew only when the caller's code (a skip iterable) replaced the schedule after
      // `next` was: then a lambda's error comes after the step.
      const factor =
        next?.state === state ? next.factor : scheduleFactor(advanced, advanced.position);
      this.#schedule = advanced;
      this.#setScheduledLrs(advanced, factor);
    }
  }

  #finishFusedStep(request: TrainStepRequest, lr: number, next: NextFactor | null): StepReport {
    // The addon names tensor k of the plan, the k-th stepped param.
    const report = readReport(this.#control, request, lr, (k) => {
      const slot: Slot | undefined = k >= 0 ? this.#stepSlots.at(k) : undefined;
      return slot === undefined ? `tensor ${k}` : `${slot.label}.grad`;
    });
    if (!report.skipped) this.#finishStep(next);
    return report;
  }

  // lr = baseLr * factor for every group. Cannot throw: every factor is in [0, 1] (a lambda's
  // was checked) and every base lr a finite number >= 0.
  #setScheduledLrs(state: ScheduleState, factor: number): void {
    const groups = this.#groups as unknown as { lr: number }[];
    for (const [g, group] of groups.entries()) group.lr = (state.baseLrs[g] ?? 0) * factor;
  }

  // Chooses the slots of the coming step: every slot without options.skip (today's path: nothing
  // to build or compare), else those it does not name, with the kept plan when the skip set is the
  // last one's. The iterable is read once, through the iterator it hands out first; throws,
  // changing nothing that lasts, unless each entry is a param of this optimizer. A param named
  // twice is skipped once (a set's semantics: callers collect the params that had no gradient).
  #selectStepSlots(skip: unknown): void {
    if (skip !== undefined) {
      const name = 'options.skip';
      const entries = readOnce(name, 'an iterable of params of this optimizer', skip);
      // All read before the mask is written: the caller's iterator runs code, which could even
      // step this optimizer.
      const skippedSlots: Slot[] = [];
      for (const entry of entries) {
        const slot = this.#slotOf.get(entry as AnyParam);
        if (slot === undefined) {
          throw rangeError(`${name}[${skippedSlots.length}]`, 'a param of this optimizer', entry);
        }
        skippedSlots.push(slot);
      }
      if (skippedSlots.length > 0) {
        const mask = this.#skipMask;
        mask.fill(0);
        for (const slot of skippedSlots) mask[slot.index] = 1;
        const kept = this.#skipPlan;
        if (kept !== null && sameBytes(kept.skipped, mask)) {
          this.#stepSlots = kept.slots;
          this.#stepPlan = kept;
        } else {
          this.#stepSlots = this.#slots.filter((slot) => mask[slot.index] === 0);
          this.#stepPlan = null;
        }
        return;
      }
    }
    this.#stepSlots = this.#slots;
    this.#stepPlan = this.#fullPlan;
  }

  // Confirms the plan still describes the stepped params' arrays (making a new one if a data,
  // grad, gradDtype or dataBf16 was replaced, or if no plan over these params is kept) and writes
  // this step's scalar sets and stochastic-rounding keys; changes no array. A skipped param's
  // arrays are not read at all (PyTorch's grad None: they may be stale or detached).
  #prepareStep(): StepPlan {
    // The scalars first: a spec's stepScalars is code of the spec's author, so it runs before the
    // arrays are read and checked, never between the checks and the native call.
    this.#writeScalarSets();
    const slots = this.#stepSlots;
    const current = this.#current;
    // Every param's fields are read once, all before any is checked: reading them can run the
    // caller's getters, which could detach or resize an array already checked. From the first
    // check to the native call no code of the caller runs, so the kernel updates what was checked
    // (the plan does not re-read its arrays: these checks are what keeps it in bounds).
    for (let k = 0; k < slots.length; k++) {
      const param = slots[k].param;
      current[4 * k] = param.data;
      current[4 * k + 1] = param.grad;
      current[4 * k + 2] = param.gradDtype;
      current[4 * k + 3] = param.dataBf16;
    }
    // Every state tensor is a fixed-length view of an arena that cannot be resized, so one look at
    // each arena tells whether any of them was detached (through a buffer state() handed out).
    for (const arena of this.#arenas) {
      if (lengthOf(arena.array) !== arena.length) {
        for (const slot of slots) this.#checkArrays(slot, slot);
      }
    }
    let replaced = false;
    for (let k = 0; k < slots.length; k++) {
      const slot = slots[k];
      if (
        current[4 * k] !== slot.data ||
        current[4 * k + 1] !== slot.grad ||
        current[4 * k + 2] !== slot.gradDtypeInput ||
        (current[4 * k + 3] ?? null) !== slot.dataBf16
      ) {
        replaced = true;
      } else if (!this.#lengthsHold(slot)) {
        // Detached, shrunk or out of bounds: the full check names the array and what happened.
        this.#checkArrays(slot, slot);
      }
    }
    if (replaced) this.#adoptReplacedArrays();
    let plan = this.#stepPlan;
    if (plan === null) {
      // These params' arrays may never have been checked together (each adopted in a step that
      // skipped the other): the overlap check runs for every new plan.
      if (!replaced) this.#checkOverlap(slots);
      const all = slots === this.#slots;
      plan = this.#createPlan(slots, all ? null : this.#skipMask.slice());
      if (all) this.#fullPlan = plan;
      else this.#skipPlan = plan;
      this.#stepPlan = plan;
    }
    return plan;
  }

  // The lr a step report gives: the first group's (its spec's reportedLr, when it has one, at the
  // step its first param is about to take).
  #reportedLr(): number {
    const group = this.#groups.at(0);
    if (group === undefined) return 0;
    const values = groupValues(group);
    const spec = this.#spec;
    if (spec.reportedLr === undefined) return values.lr ?? 0;
    const inGroup0 = (slot: Slot): boolean => slot.groupIndex === 0;
    // Its first param that takes this step, or, with all of them skipped, its first.
    const first = this.#stepSlots.find(inGroup0) ?? this.#slots.find(inGroup0);
    return spec.reportedLr(values, (first?.step ?? 0) + 1);
  }

  // True if the param's data, grad and dataBf16 still have its length (the intrinsic getter: an
  // own `length` property cannot fake it). A detached buffer reads as 0; for a param of length 0
  // that is indistinguishable from attached, and harmless: the addon touches no element of it.
  #lengthsHold(slot: Slot): boolean {
    const n = slot.length;
    return (
      lengthOf(slot.data) === n &&
      lengthOf(slot.grad) === n &&
      (slot.dataBf16 === null || lengthOf(slot.dataBf16) === n)
    );
  }

  // The full check of a param's arrays (its state's, and the given data, grad, gradDtype and
  // dataBf16 values); throws with the array's name.
  #checkArrays(
    slot: Slot,
    given: { data: unknown; grad: unknown; gradDtypeInput: unknown; dataBf16: unknown },
  ): ParamArrays {
    for (const [i, tensor] of this.#spec.state.entries()) {
      const array = slot.state[i];
      const length = slot.stateLengths[i];
      if (array !== null && length !== null) {
        checkStateArray(stateLabel(slot, tensor.name), array, slot.dtype, length, this.#blockSize);
      }
    }
    return checkParamArrays(
      slot.label,
      given.data,
      given.grad,
      given.gradDtypeInput,
      given.dataBf16 ?? undefined,
      slot.length,
    );
  }

  // A stepped param's arrays were replaced: check the new set of the stepped params, overlap
  // included, before adopting it. Every kept plan holds old arrays then: #prepareStep makes this
  // step's, and the other is made again when next needed.
  #adoptReplacedArrays(): void {
    const current = this.#current;
    const slots = this.#stepSlots;
    const checked = slots.map((slot, k) =>
      this.#checkArrays(slot, {
        data: current[4 * k],
        grad: current[4 * k + 1],
        gradDtypeInput: current[4 * k + 2],
        dataBf16: current[4 * k + 3],
      }),
    );
    this.#checkOverlap(slots, checked);
    for (const [k, slot] of slots.entries()) {
      const arrays = checked[k];
      slot.data = arrays.data;
      slot.grad = arrays.grad;
      slot.gradDtype = arrays.gradDtype;
      slot.gradDtypeInput = current[4 * k + 2];
      slot.dataBf16 = arrays.dataBf16;
    }
    this.#fullPlan = null;
    this.#skipPlan = null;
    this.#stepPlan = null;
  }

  // The scalar sets of this step: a new one whenever a stepped param's (group, decay, step)
  // differs from the last one written for its variant, so params with equal step counts share one.
  // With stochastic rounding, also each bfloat16 tensor's key for this step, from the param's
  // place among all params (not among the stepped ones: its bits do not depend on what is skipped).
  // (Index loops over locals: this runs for every param of every step.)
  #writeScalarSets(): void {
    const variants = this.#variants;
    const slots = this.#stepSlots;
    const tensorSet = this.#tensorSet;
    const rounding = this.#stochasticRounding;
    const roundingFlag = rounding ? this.#layout.flags.stochasticRounding : 0;
    const spec = this.#spec;
    if (spec.checkValues !== undefined) {
      const groups = this.#groups;
      for (let g = 0; g < groups.length; g++) {
        spec.checkValues(`paramGroups[${g}]`, groupValues(groups[g]));
      }
    }
    for (const variant of variants) variant.step = -1;
    let sets = 0;
    for (let k = 0; k < slots.length; k++) {
      const slot = slots[k];
      const variant = variants[slot.variant];
      const step = slot.step + 1;
      if (variant.step !== step) {
        variant.step = step;
        variant.set = sets;
        this.#flags[sets] =
          this.#writeScalars(this.#valuesOf(variant), step, this.#scalars, sets) | roundingFlag;
        sets++;
      }
      tensorSet[k] = variant.set;
      if (rounding) {
        this.#tensorSeeds[k] =
          slot.dtype === 'bfloat16' ? stochasticRoundingKey(this.#seed, slot.keyIndex, step) : 0;
      }
    }
    this.#setCount = sets;
  }

  // The hyperparameters a variant's params step with: its group's, with the spec's decayKey 0 for
  // params with decay: false (derived once per change of the group's values).
  #valuesOf(variant: Variant): HyperparameterValues {
    const values = groupValues(variant.group);
    const decayKey = this.#spec.decayKey;
    if (variant.decay || decayKey === undefined) return values;
    if (variant.source !== values || variant.values === null) {
      variant.source = values;
      variant.values = Object.freeze({ ...values, [decayKey]: 0 });
    }
    return variant.values;
  }

  // This step's scalar sets as the addon reads them: exactly #setCount of them.
  #setView(): readonly [Float64Array, Uint32Array] {
    const sets = this.#setCount;
    let view = this.#setViews.get(sets);
    if (view === undefined) {
      view = [
        this.#scalars.subarray(0, sets * this.#layout.scalars.length),
        this.#flags.subarray(0, sets),
      ];
      this.#setViews.set(sets, view);
    }
    return view;
  }

  #assertIdle(action: string): void {
    if (this.#inFlight) throw stepInFlightError(action);
  }

  // The op of state dtype `dtype`, matched to the spec once: an op of the float32 op's family (the
  // same scalars and flags), each of its arrays a param array or a state tensor's.
  #opOf(dtype: StateDtype): OpEntry {
    const known = this.#ops.get(dtype);
    if (known !== undefined) return known;
    const spec = this.#spec;
    const name = spec.ops[dtype];
    if (name === undefined) throw new Error(`simd-adamw: ${spec.className} has no ${dtype} state`);
    const layout = opLayout(name);
    const base = this.#layout;
    if (layout.family !== base.family) {
      throw new Error(
        `simd-adamw: native op '${name}' is not of the family of '${spec.ops.float32}' ` +
          `('${layout.family}', not '${base.family}')`,
      );
    }
    const sources = layout.arrays.map((array, a): ArraySource => {
      if (a === 0) return { from: 'data' };
      if (a === 1) return { from: 'grad' };
      if (array === 'paramBf16') return { from: 'dataBf16' };
      const blocks = layout.arrayLengths[a] === 'blocks';
      const tensorName = blocks && array.endsWith('Absmax') ? array.slice(0, -6) : array;
      const index = spec.state.findIndex((tensor) => tensor.name === tensorName);
      if (index < 0 || (dtype === 'blockwise8' && spec.state[index].map === undefined)) {
        throw new Error(`simd-adamw: ${spec.className} has no state '${array}' (op '${name}')`);
      }
      return { from: 'state', index, part: blocks ? 1 : 0 };
    });
    const entry = { name, layout, sources };
    this.#ops.set(dtype, entry);
    return entry;
  }

  // Validates one param group as given (the constructor's or addParamGroup's) as group g of this
  // optimizer, its params against `names` and `seen` (the names and params so far, which it adds
  // to), and creates its live group; changes nothing else. `flat`: the params were passed without
  // groups, and messages name them params[i].
  #validateGroup(
    g: number,
    groupInput: unknown,
    names: Set<string>,
    seen: Set<unknown>,
    flat: boolean,
  ): { group: LiveGroup; validated: ValidatedParam[] } {
    const spec = this.#spec;
    const groupLabel = `paramGroups[${g}]`;
    const expected = 'a param group { params: Iterable<Param>, ...options }';
    if (!isPlainObject(groupInput)) throw typeError(groupLabel, expected, groupInput);
    // Read once: `params` may be a getter, and an iterable can be read only once.
    const paramsInput = groupInput.params;
    if (paramsInput === undefined) throw typeError(groupLabel, expected, groupInput);
    const paramList = [...readOnce(`${groupLabel}.params`, 'an iterable of params', paramsInput)];
    const values = resolveHyperparameters(spec, groupLabel, groupInput, this.#groupDefaults, [
      'params',
    ]);
    spec.checkValues?.(groupLabel, values);
    const validated = paramList.map((p, i) =>
      validateParam(flat ? `params[${i}]` : `${groupLabel}.params[${i}]`, p, names, seen),
    );
    const group = createParamGroup(
      spec,
      groupLabel,
      validated.map((v) => v.param),
      values,
      // Throws while the async step runs: it read the values when it started, and a change
      // meanwhile would be silently ignored for that step.
      (action) => {
        this.#assertIdle(action);
      },
    );
    return { group, validated };
  }

  // Slots for these params after the existing ones, their state tensors as views of new arenas
  // (optim/state-storage.ts), zeroed; changes nothing of the optimizer but its cache of ops.
  #newSlots(pending: readonly PendingParam[]): NewSlots {
    const spec = this.#spec;
    // A shard view's blockwise8 rule is its whole tensor's (optim/shard-views.ts).
    const views = pending.map(({ v }) => shardViewOf(v.param));
    const layouts = pending.map(({ v, group }, k) => ({
      dtype: effectiveStateDtype(
        this.#groupDtype(groupValues(group)),
        views[k]?.tensorLength ?? v.length,
        this.#min8bitSize,
      ),
      lengths: stateTensorLengths(spec, groupValues(group), v.shape, v.length),
    }));
    for (const { dtype } of layouts) this.#opOf(dtype);
    const blockSize =
      this.#blockSize === 0 && layouts.some(({ dtype }) => dtype === 'blockwise8')
        ? blockwise8BlockSize(spec)
        : this.#blockSize;
    const allocated = allocateState(layouts, spec.state.length, blockSize);
    const variants: Variant[] = [];
    const first = this.#slots.length;
    const slots = pending.map(({ v, g, group }, k): Slot => {
      const variantOf = (x: Variant) => x.group === group && x.decay === v.decay;
      let variant = this.#variants.findIndex(variantOf);
      if (variant < 0) {
        const added = variants.findIndex(variantOf);
        variant = this.#variants.length + (added < 0 ? variants.length : added);
        if (added < 0) {
          variants.push({ group, decay: v.decay, step: -1, set: 0, source: null, values: null });
        }
      }
      return {
        index: first + k,
        keyIndex: views[k]?.tensorIndex ?? first + k,
        elementOffset: views[k]?.elementOffset ?? 0,
        param: v.param,
        label: v.label,
        groupIndex: g,
        length: v.length,
        shape: v.shape,
        stateLengths: layouts[k].lengths,
        decay: v.decay,
        variant,
        step: 0,
        dtype: layouts[k].dtype,
        state: allocated.state[k],
        data: v.data,
        grad: v.grad,
        gradDtype: v.gradDtype,
        gradDtypeInput: v.gradDtypeInput,
        dataBf16: v.dataBf16,
      };
    });
    return { slots, arenas: allocated.arenas, variants, blockSize };
  }

  // Makes new slots the optimizer's (cannot fail).
  #adoptSlots(added: NewSlots): void {
    for (const slot of added.slots) {
      this.#slots.push(slot);
      this.#slotOf.set(slot.param, slot);
    }
    this.#variants.push(...added.variants);
    this.#arenas = [...this.#arenas, ...added.arenas];
    this.#blockSize = added.blockSize;
  }

  // The per-param arrays of a step, for the current param count (their previous contents are
  // rewritten by every step).
  #sizeStepArrays(): void {
    const n = this.#slots.length;
    this.#scalars = new Float64Array(n * this.#layout.scalars.length);
    this.#flags = new Uint32Array(n);
    this.#tensorSet = new Uint32Array(n);
    this.#tensorSeeds = new Uint32Array(n);
    this.#current = new Array<unknown>(4 * n).fill(null);
    this.#skipMask = new Uint8Array(n);
    this.#setViews.clear();
  }

  // No two arrays of the step may share memory: not data with grad or dataBf16, not two stepped
  // params' arrays, not a stepped param with the optimizer's own state, a skipped param's included
  // (someone passing state(p).expAvg as a grad). A skipped param's own arrays are not read.
  #checkOverlap(slots: readonly Slot[], userArrays: readonly ParamArrays[] = slots): void {
    const arrays: NamedArray[] = [];
    const pushState = (slot: Slot): void => {
      for (const [i, tensor] of this.#spec.state.entries()) {
        const array = slot.state[i];
        if (array !== null) arrays.push(...namedStateArrays(stateLabel(slot, tensor.name), array));
      }
    };
    for (const [k, slot] of slots.entries()) {
      const { data, grad, dataBf16 } = userArrays[k];
      arrays.push(
        { name: `${slot.label}.data`, array: data },
        { name: `${slot.label}.grad`, array: grad },
      );
      if (dataBf16 !== null) arrays.push({ name: `${slot.label}.dataBf16`, array: dataBf16 });
      pushState(slot);
    }
    if (slots.length < this.#slots.length) {
      const stepped = new Set(slots);
      for (const slot of this.#slots) if (!stepped.has(slot)) pushState(slot);
    }
    checkNoOverlap(arrays);
  }

  // The native plan over these params' current arrays (checked, overlap included), each tensor
  // in its op's order; `skipped` as in StepPlan.
  #createPlan(slots: readonly Slot[], skipped: Uint8Array | null): StepPlan {
    const count = slots.length;
    const full = count === this.#slots.length;
    const tensorSet = full ? this.#tensorSet : this.#tensorSet.subarray(0, count);
    const tensorSeeds = full ? this.#tensorSeeds : this.#tensorSeeds.subarray(0, count);
    if (count === 0) return { slots, native: null, tensorSet, tensorSeeds, skipped };
    const ops: string[] = [];
    const arrays: (NativeArray | null)[] = [];
    const gradDtypes = new Uint8Array(count);
    let lowPrecisionGrads = false;
    for (const [k, slot] of slots.entries()) {
      const op = this.#opOf(slot.dtype);
      ops.push(op.name);
      gradDtypes[k] = GRAD_DTYPE_CODES[slot.gradDtype];
      if (slot.gradDtype !== 'float32') lowPrecisionGrads = true;
      for (const source of op.sources) arrays.push(this.#arrayOf(slot, source));
    }
    const first = ops[0] ?? this.#spec.ops.float32;
    const oneOp = ops.every((op) => op === first);
    const op = oneOp ? first : ops;
    // Shard views (optim/shard-views.ts) that start inside their tensor draw its elements' bits.
    const offsets = slots.some((slot) => slot.elementOffset !== 0)
      ? Uint32Array.from(slots, (slot) => slot.elementOffset)
      : undefined;
    let shapes: Uint32Array | undefined;
    if (this.#spec.factored === true || offsets !== undefined) {
      shapes = new Uint32Array(3 * count);
      if (this.#spec.factored === true) {
        for (const [k, slot] of slots.entries()) {
          shapes.set(matrixShape(this.#spec, slot.shape), 3 * k);
        }
      }
    }
    const plan = native.createPlan(
      op,
      arrays,
      lowPrecisionGrads || shapes !== undefined ? gradDtypes : undefined,
      shapes,
      offsets,
    );
    return { slots, native: plan, tensorSet, tensorSeeds, skipped };
  }

  #arrayOf(slot: Slot, source: ArraySource): NativeArray | null {
    switch (source.from) {
      case 'data':
        return slot.data;
      case 'grad':
        return slot.grad;
      case 'dataBf16':
        return slot.dataBf16;
      case 'state': {
        const array: StateArray | null = slot.state[source.index] ?? null;
        if (array === null) return null;
        if (ArrayBuffer.isView(array)) return array;
        return source.part === 0 ? array.codes : array.absmax;
      }
    }
  }
}
