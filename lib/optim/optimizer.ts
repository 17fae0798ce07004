// The one optimizer machinery: everything an optimizer of this package does besides its own
// arithmetic, for any spec (optim/spec.ts). Groups and their validated setters, per-param state,
// the native step plan, step/stepAsync with the fused clip/unscale/skip options, schedules,
// threads, state(), memory(), state dicts and checkpoint files. Each optimizer is its spec plus a
// thin subclass (optim/adam.ts).
//
// A step is one native call for all params (PyTorch's foreach/fused idea: real models have
// hundreds of small bias and norm vectors, and one call per tensor would cost more than their
// update). The addon holds a plan of the step's arrays, gathered and checked once; every step only
// confirms, in JavaScript, that each array is the same object and still has its length, and makes
// a new plan when a param's data or grad was replaced.
import { markAsUntransferable } from 'node:worker_threads';

import {
  loadCheckpointInto,
  loadOptimizer,
  type OptimizerFactory,
  saveCheckpoint,
} from '../checkpoint/file';
import { loadStateDictInto, stateDictOf } from '../checkpoint/state-dict';
import {
  checkFloat32Array,
  checkNoOverlap,
  holdForAsyncStep,
  type NamedArray,
} from '../core/arrays';
import { isPlainObject } from '../core/checks';
import { describe, stepInFlightError, typeError } from '../core/errors';
import { lengthOf } from '../core/intrinsics';
import { native, type NativeOpLayout, type NativePlan, opLayout } from '../core/native';
import { checkThreads, defaultThreads } from '../core/threads';
import { checkSchedule, type LrSchedule, lrFactor, type ScheduleState } from '../train/schedules';
import {
  checkStepOptions,
  newControl,
  plainReport,
  readReport,
  type StepOptions,
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
import { type Param, validateParam, type ValidatedParam } from './params';
import { type AnyOptimizerSpec, STATE_DTYPE_BYTES } from './spec';
import { scalarWriter, type ScalarWriter } from './step-scalars';

/** The options every optimizer takes besides its hyperparameters. */
export interface CommonOptions {
  /** Threads a step may use. Default: os.availableParallelism(). Small steps use fewer. */
  threads?: number;
  /** A learning-rate schedule (train/schedules.ts) driving every group's lr from its lr here. */
  schedule?: LrSchedule;
}

/** A param group as passed in: its params and any of the optimizer's hyperparameters. */
export interface ParamGroupInput {
  params: Param[];
}

/** Every param's state has its step count; each optimizer adds its tensors (AdamW's ParamState). */
export interface BaseParamState {
  /** Steps taken by this parameter. */
  step: number;
}

// Everything the optimizer keeps about one parameter.
interface Slot extends SlotView {
  readonly decay: boolean; // false: the spec's decayKey is 0 for this param (Param.decay)
  readonly variant: number; // index into #variants: its group and decay
  // The arrays of the current native plan.
  data: Float32Array;
  grad: Float32Array;
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

// The optimizer's own state: one buffer per state tensor of the spec, each param's tensor a view
// of it, laid end to end in param order. A step then walks each state tensor as one contiguous
// stream, which the hardware prefetcher follows from one small tensor into the next (separate
// allocations for hundreds of bias vectors stepped at about half the speed of one large tensor).
// state(p) hands the views out, so the buffers are marked untransferable: a structuredClone or
// postMessage that lists one copies it (Node 20) or throws (Node 21+) instead of detaching the
// optimizer's memory, perhaps while a stepAsync is writing it.
function newStateArena(length: number): Float32Array {
  const arena = new Float32Array(length);
  markAsUntransferable(arena.buffer);
  return arena;
}

// How messages name a param's state tensor: "state of fc.bias (expAvg)".
function stateLabel(slot: Slot, tensor: string): string {
  return `state of ${slot.label} (${tensor})`;
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
 * groups, `S` of `state(p)` and `D` of its state dict (a GenericStateDict); the behaviour comes
 * from the spec its subclass passes. `Optimizer` alone is any optimizer of the package.
 */
export abstract class Optimizer<
  G extends LiveGroup = LiveGroup,
  S extends BaseParamState = BaseParamState,
  D = unknown,
> {
  readonly #spec: AnyOptimizerSpec;
  readonly #layout: NativeOpLayout;
  readonly #groups: LiveGroup[] = [];
  readonly #groupsView: readonly G[];
  readonly #slots: Slot[] = [];
  readonly #slotOf = new Map<Param, Slot>();
  readonly #variants: Variant[] = [];
  // The op's arrays of one tensor, in its order: -1 data, -2 grad, else an index into slot.state.
  readonly #arraySources: readonly number[];
  readonly #writeScalars: ScalarWriter;
  #plan: NativePlan;
  // Scalar sets of one step (at most one per param) and each tensor's set; the views passed to
  // the addon are cached by set count.
  readonly #scalars: Float64Array;
  readonly #flags: Uint32Array;
  readonly #tensorSet: Uint32Array;
  readonly #setViews = new Map<number, readonly [Float64Array, Uint32Array]>();
  #setCount = 0; // scalar sets written for the coming step
  // data and grad of every param as read at the start of a step, reused between steps.
  readonly #current: unknown[];
  // The buffers behind every param's state tensors (see newStateArena), with their lengths.
  #arenas: readonly { array: Float32Array; length: number }[] = [];
  #threads: number;
  #inFlight = false;
  // The fused step's request and result (train/step-options.ts), reused between steps.
  readonly #control = newControl();
  #schedule: ScheduleState | null = null;

  static {
    internalsOf = (optimizer) => ({
      spec: optimizer.#spec,
      groups: optimizer.#groups,
      slots: optimizer.#slots,
      get scheduleState() {
        return optimizer.#schedule;
      },
      setScheduleState(state) {
        optimizer.#schedule = state;
      },
    });
  }

  protected constructor(spec: AnyOptimizerSpec, params: unknown, defaults: unknown) {
    this.#spec = spec;
    this.#layout = opLayout(spec.op);
    this.#arraySources = this.#layout.arrays.map((name, a) => {
      if (a === 0) return -1;
      if (a === 1) return -2;
      const index = spec.state.findIndex((tensor) => tensor.name === name);
      // A per-tensor array this optimizer does not use yet (paramBf16): always null (slot.state[-3]).
      if (index < 0 && this.#layout.optionalArrays[name] === 'tensor') return -3;
      if (index < 0) throw new Error(`simd-adamw: ${spec.className} has no state '${name}'`);
      return index;
    });
    this.#writeScalars = scalarWriter(spec, this.#layout);

    const threadsOption = isPlainObject(defaults) ? defaults.threads : undefined;
    this.#threads =
      threadsOption === undefined
        ? defaultThreads()
        : checkThreads('defaults.threads', threadsOption);
    const scheduleOption = isPlainObject(defaults) ? defaults.schedule : undefined;
    const schedule =
      scheduleOption === undefined ? null : checkSchedule('defaults.schedule', scheduleOption);
    const groupDefaults = resolveHyperparameters(
      spec,
      'defaults',
      defaults,
      defaultHyperparameters(spec),
      ['threads', 'schedule'],
    );
    if (!Array.isArray(params))
      throw typeError('params', 'an array of params or of param groups', params);
    if (params.length === 0)
      throw new RangeError('Expected at least one param for params but received an empty array');
    const groupList = isGroupList(params);
    const groupInputs: unknown[] = groupList ? params : [{ params }];
    const names = new Set<string>();
    const seen = new Set<unknown>();
    const pending: { v: ValidatedParam; g: number; values: HyperparameterValues }[] = [];
    for (const [g, groupInput] of groupInputs.entries()) {
      const groupLabel = `paramGroups[${g}]`;
      if (!isPlainObject(groupInput) || !Array.isArray(groupInput.params)) {
        throw typeError(groupLabel, 'a param group { params: Param[], ...options }', groupInput);
      }
      const values = resolveHyperparameters(spec, groupLabel, groupInput, groupDefaults, [
        'params',
      ]);
      const validated = (groupInput.params as unknown[]).map((p, i) =>
        validateParam(groupList ? `${groupLabel}.params[${i}]` : `params[${i}]`, p, names, seen),
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
      this.#groups.push(group);
      for (const v of validated) pending.push({ v, g, values });
    }
    this.#addSlots(pending);
    this.#groupsView = Object.freeze([...this.#groups]) as readonly G[];
    this.#checkOverlap(this.#slots);
    const n = this.#slots.length;
    this.#scalars = new Float64Array(n * this.#layout.scalars.length);
    this.#flags = new Uint32Array(n);
    this.#tensorSet = new Uint32Array(n);
    this.#current = new Array<unknown>(2 * n).fill(null);
    this.#plan = this.#createPlan();
    if (schedule !== null) this.schedule = schedule;
  }

  /** The parameter groups, in order. Change hyperparameters through them between steps. */
  get paramGroups(): readonly G[] {
    return this.#groupsView;
  }

  /** Threads a step may use (default: os.availableParallelism()); small steps use fewer. */
  get threads(): number {
    return this.#threads;
  }
  set threads(value: number) {
    this.#assertIdle('set threads');
    this.#threads = checkThreads('threads', value);
  }

  /**
   * One optimization step for every parameter, from its current `grad`, in a single native call.
   * `options` adds global-norm clipping, loss-scale unscaling and the non-finite skip, in the same
   * call (README, "Training-loop utilities"). Validates everything first: on error nothing has
   * changed. Returns what the step did.
   */
  step(options?: StepOptions): StepReport {
    this.#assertIdle('step()');
    const request = checkStepOptions('options', options);
    const lr = this.#prepareStep();
    const [scalars, flags] = this.#setView();
    if (request === null) {
      native.runPlan(this.#plan, scalars, flags, this.#tensorSet, this.#threads);
      this.#finishStep();
      return plainReport(lr);
    }
    const control = writeControl(this.#control, request);
    native.runPlan(this.#plan, scalars, flags, this.#tensorSet, this.#threads, control);
    return this.#finishFusedStep(request, lr);
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
  async stepAsync(options?: StepOptions): Promise<StepReport> {
    this.#assertIdle('stepAsync()');
    const request = checkStepOptions('options', options);
    const lr = this.#prepareStep();
    holdForAsyncStep(
      this.#slots.flatMap((slot): NamedArray[] => [
        { name: `${slot.label}.data`, array: slot.data },
        { name: `${slot.label}.grad`, array: slot.grad },
      ]),
    );
    const [scalars, flags] = this.#setView();
    const control = request === null ? undefined : writeControl(this.#control, request);
    const done = native.runPlanAsync(
      this.#plan,
      scalars,
      flags,
      this.#tensorSet,
      this.#threads,
      control,
    );
    this.#inFlight = true;
    try {
      await done;
    } finally {
      this.#inFlight = false;
    }
    if (request === null) {
      this.#finishStep();
      return plainReport(lr);
    }
    return this.#finishFusedStep(request, lr);
  }

  /**
   * The learning-rate schedule driving the groups' lr (train/schedules.ts), or null. Attaching one
   * records every group's current lr as its base lr (or keeps the base lrs of the schedule it
   * replaces), restarts at position 0 and sets lr = baseLr * factor(0); after every step that is
   * not skipped the position advances and the lrs are set for the next step. While a schedule is
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
    const schedule = checkSchedule('schedule', value);
    const baseLrs = this.#schedule?.baseLrs ?? Object.freeze(this.#groups.map((g) => g.lr));
    this.#schedule = Object.freeze({ schedule, position: 0, baseLrs });
    this.#applySchedule();
  }

  /** Steps taken since the schedule was attached, skipped steps not counted (0 without one). */
  get schedulePosition(): number {
    return this.#schedule?.position ?? 0;
  }

  /** True while a {@link stepAsync} is running. */
  get stepInFlight(): boolean {
    return this.#inFlight;
  }

  /** Sets every gradient to zero (PyTorch's zero_grad(set_to_none=False)). */
  zeroGrad(): void {
    this.#assertIdle('zeroGrad()');
    const values = this.#slots.map((slot) => slot.param.grad);
    const grads = this.#slots.map((slot, k) =>
      checkFloat32Array(`${slot.label}.grad`, values[k], slot.length),
    );
    for (const grad of grads) grad.fill(0);
  }

  /** The state of `param`: its step count and zero-copy views of its state tensors. */
  state(param: Param): S {
    const slot = this.#slotOf.get(param);
    if (slot === undefined) {
      throw new RangeError(
        `Expected a param of this optimizer for param but received ${describe(param)}`,
      );
    }
    const state: Record<string, unknown> = { step: slot.step };
    for (const [i, tensor] of this.#spec.state.entries()) {
      const array = slot.state[i];
      if (array !== null) state[tensor.name] = array;
    }
    return state as unknown as S;
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

  /** Writes the state to `path` as a safetensors file, atomically (README, "Checkpoints"). */
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
   * A new optimizer of this class for `params` (in the saved order), with the groups,
   * hyperparameters and state of the file at `path`, read directly into its arrays.
   */
  static load<T extends AnyOptimizer>(this: OptimizerClass<T>, path: string, params: Param[]): T {
    const create: OptimizerFactory<T> = (groups) => {
      const optimizer = new this(groups);
      return { optimizer, internals: internals(optimizer) };
    };
    return loadOptimizer(this.spec, path, params, create);
  }

  /** Bytes held: params, grads and optimizer state, per group and in total. */
  memory(): MemoryReport {
    const byGroup = this.#groups.map(() => emptyBreakdown());
    for (const slot of this.#slots) {
      const breakdown = byGroup[slot.groupIndex] ?? emptyBreakdown();
      const arrayBytes = slot.length * Float32Array.BYTES_PER_ELEMENT;
      let state = 0;
      for (const array of slot.state) state += array?.byteLength ?? 0;
      breakdown.paramCount += slot.length;
      breakdown.params += arrayBytes;
      breakdown.grads += arrayBytes;
      breakdown.state += state;
      breakdown.total += 2 * arrayBytes + state;
    }
    const report: MemoryReport = { ...emptyBreakdown(), groups: byGroup };
    for (const breakdown of report.groups) addBreakdown(report, breakdown);
    return report;
  }

  // After a step that changed the state: step counts, then the schedule.
  #finishStep(): void {
    const slots = this.#slots;
    for (let k = 0; k < slots.length; k++) slots[k].step += 1;
    const schedule = this.#schedule;
    if (schedule !== null) {
      this.#schedule = Object.freeze({ ...schedule, position: schedule.position + 1 });
      this.#applySchedule();
    }
  }

  #finishFusedStep(request: TrainStepRequest, lr: number): StepReport {
    const report = readReport(this.#control, request, lr, (k) => {
      const slot: Slot | undefined = k >= 0 ? this.#slots.at(k) : undefined;
      return slot === undefined ? `tensor ${k}` : `${slot.label}.grad`;
    });
    if (!report.skipped) this.#finishStep();
    return report;
  }

  // lr = baseLr * factor(position) for every group. Cannot throw: every factor is in [0, 1] and
  // every base lr a finite number >= 0.
  #applySchedule(): void {
    const schedule = this.#schedule;
    if (schedule === null) return;
    const factor = lrFactor(schedule.schedule, schedule.position);
    const groups = this.#groups as unknown as { lr: number }[];
    for (const [g, group] of groups.entries()) group.lr = (schedule.baseLrs[g] ?? 0) * factor;
  }

  // Confirms the plan still describes every param's arrays (making a new one if a data or grad
  // was replaced) and writes this step's scalar sets; changes no array. Returns the step's lr
  // (the first group's).
  #prepareStep(): number {
    // The scalars first: a spec's stepScalars is code of the spec's author, so it runs before the
    // arrays are read and checked, never between the checks and the native call.
    this.#writeScalarSets();
    const slots = this.#slots;
    const current = this.#current;
    // Every param's data and grad are read once, all before any is checked: reading them can run
    // the caller's getters, which could detach or resize an array already checked. From the first
    // check to the native call no code of the caller runs, so the kernel updates what was checked
    // (the plan does not re-read its arrays: these checks are what keeps it in bounds).
    for (let k = 0; k < slots.length; k++) {
      const param = slots[k].param;
      current[2 * k] = param.data;
      current[2 * k + 1] = param.grad;
    }
    // Every state tensor is a fixed-length view of an arena that cannot be resized, so one look at
    // each arena tells whether any of them was detached (through a buffer state() handed out).
    for (const arena of this.#arenas) {
      if (lengthOf(arena.array) !== arena.length) {
        for (const slot of slots) this.#checkArrays(slot, slot.data, slot.grad);
      }
    }
    let replaced = false;
    for (let k = 0; k < slots.length; k++) {
      const slot = slots[k];
      if (current[2 * k] !== slot.data || current[2 * k + 1] !== slot.grad) {
        replaced = true;
      } else if (!this.#lengthsHold(slot)) {
        // Detached, shrunk or out of bounds: the full check names the array and what happened.
        this.#checkArrays(slot, slot.data, slot.grad);
      }
    }
    if (replaced) this.#adoptReplacedArrays();
    return this.#groups[0]?.lr ?? 0;
  }

  // True if the param's data and grad still have its length (the intrinsic getter: an own
  // `length` property cannot fake it). A detached buffer reads as 0; for a param of length 0 that
  // is indistinguishable from attached, and harmless: the addon touches no element of it.
  #lengthsHold(slot: Slot): boolean {
    const n = slot.length;
    return lengthOf(slot.data) === n && lengthOf(slot.grad) === n;
  }

  // The full check of a param's arrays; throws with the array's name.
  #checkArrays(
    slot: Slot,
    data: unknown,
    grad: unknown,
  ): { data: Float32Array; grad: Float32Array } {
    for (const [i, tensor] of this.#spec.state.entries()) {
      const array = slot.state[i];
      if (array !== null) {
        checkFloat32Array(stateLabel(slot, tensor.name), array, slot.length);
      }
    }
    return {
      data: checkFloat32Array(`${slot.label}.data`, data, slot.length),
      grad: checkFloat32Array(`${slot.label}.grad`, grad, slot.length),
    };
  }

  // A param's data or grad was replaced: check the new set, overlap included, before adopting it.
  #adoptReplacedArrays(): void {
    const current = this.#current;
    const checked = this.#slots.map((slot, k) =>
      this.#checkArrays(slot, current[2 * k], current[2 * k + 1]),
    );
    this.#checkOverlap(this.#slots, checked);
    for (const [k, slot] of this.#slots.entries()) {
      slot.data = checked[k].data;
      slot.grad = checked[k].grad;
    }
    this.#plan = this.#createPlan();
  }

  // The scalar sets of this step: a new one whenever a param's (group, decay, step) differs from
  // the last one written for its variant, so params with equal step counts share one.
  // (Index loops over locals: this runs for every param of every step.)
  #writeScalarSets(): void {
    const variants = this.#variants;
    const slots = this.#slots;
    const tensorSet = this.#tensorSet;
    for (const variant of variants) variant.step = -1;
    let sets = 0;
    for (let k = 0; k < slots.length; k++) {
      const slot = slots[k];
      const variant = variants[slot.variant];
      const step = slot.step + 1;
      if (variant.step !== step) {
        variant.step = step;
        variant.set = sets;
        this.#flags[sets] = this.#writeScalars(this.#valuesOf(variant), step, this.#scalars, sets);
        sets++;
      }
      tensorSet[k] = variant.set;
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

  // Every param's slot, its state tensors as views of one arena per state tensor of the spec.
  #addSlots(
    pending: readonly { v: ValidatedParam; g: number; values: HyperparameterValues }[],
  ): void {
    const spec = this.#spec;
    const present = pending.map(({ values }) =>
      spec.state.map((tensor) => tensor.presentWhen === undefined || tensor.presentWhen(values)),
    );
    const arenas = spec.state.map((tensor, i) => {
      if (STATE_DTYPE_BYTES[tensor.dtype] !== Float32Array.BYTES_PER_ELEMENT) {
        throw new Error(`simd-adamw: state dtype ${tensor.dtype} is not supported`);
      }
      let total = 0;
      for (const [k, { v }] of pending.entries()) if (present[k][i]) total += v.length;
      return { array: newStateArena(total), next: 0 };
    });
    this.#arenas = arenas.map(({ array }) => ({ array, length: array.length }));
    for (const [k, { v, g }] of pending.entries()) {
      const group = this.#groups[g];
      let variant = this.#variants.findIndex((x) => x.group === group && x.decay === v.decay);
      if (variant < 0) {
        variant = this.#variants.length;
        this.#variants.push({
          group,
          decay: v.decay,
          step: -1,
          set: 0,
          source: null,
          values: null,
        });
      }
      const slot: Slot = {
        param: v.param,
        label: v.label,
        groupIndex: g,
        length: v.length,
        decay: v.decay,
        variant,
        step: 0,
        state: arenas.map((arena, i) => {
          if (!present[k][i]) return null;
          const view = arena.array.subarray(arena.next, arena.next + v.length);
          arena.next += v.length;
          return view;
        }),
        data: v.data,
        grad: v.grad,
      };
      this.#slots.push(slot);
      this.#slotOf.set(v.param, slot);
    }
  }

  // No two arrays of the step may share memory: not data with grad, not two params' arrays, not a
  // param with the optimizer's own state (someone passing state(p).expAvg as a grad).
  #checkOverlap(
    slots: readonly Slot[],
    userArrays: readonly { data: Float32Array; grad: Float32Array }[] = slots,
  ): void {
    const arrays: NamedArray[] = [];
    for (const [k, slot] of slots.entries()) {
      const { data, grad } = userArrays[k];
      arrays.push(
        { name: `${slot.label}.data`, array: data },
        { name: `${slot.label}.grad`, array: grad },
      );
      for (const [i, tensor] of this.#spec.state.entries()) {
        const array = slot.state[i];
        if (array !== null) {
          arrays.push({ name: stateLabel(slot, tensor.name), array });
        }
      }
    }
    checkNoOverlap(arrays);
  }

  // The native plan over every param's current arrays, in the op's order.
  #createPlan(): NativePlan {
    const sources = this.#arraySources;
    const arrays: (Float32Array | null)[] = [];
    for (const slot of this.#slots) {
      for (const source of sources) {
        arrays.push(
          source === -1 ? slot.data : source === -2 ? slot.grad : (slot.state[source] ?? null),
        );
      }
    }
    return native.createPlan(this.#spec.op, arrays);
  }
}
