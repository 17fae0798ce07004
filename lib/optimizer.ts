// The Adam and AdamW optimizer classes: parameters, groups, per-parameter state, and one native
// call per step for all parameters (PyTorch's foreach/fused idea: real models have hundreds of small
// bias and norm vectors, and one call per tensor would cost more than their update).

import { markAsUntransferable } from 'node:worker_threads';

import {
  loadCheckpointInto,
  loadOptimizer,
  loadStateDictInto,
  type OptimizerStateDict,
  saveCheckpoint,
  stateDictOf,
} from './checkpoint';
import { ARRAYS_PER_TENSOR, SCALARS_PER_TENSOR, writeScalars } from './coefficients';
import {
  ADAM_DEFAULTS,
  ADAMW_DEFAULTS,
  type Hyper,
  type ResolvedHyper,
  resolveHyperparameters,
} from './hyperparameters';
import { addBreakdown, emptyBreakdown, type MemoryReport } from './memory';
import { native } from './native';
import { checkSchedule, type LrSchedule, lrFactor, type ScheduleState } from './schedules';
import { checkThreads, defaultThreads } from './threads';
import {
  checkStepOptions,
  CONTROL_LENGTH,
  plainReport,
  readReport,
  type StepOptions,
  type StepReport,
  type TrainStepRequest,
  writeControl,
} from './train-step';
import {
  checkBetas,
  checkBoolean,
  checkFloat32Array,
  checkNoOverlap,
  checkNonNegative,
  describe,
  holdForAsyncStep,
  isPlainObject,
  lengthOf,
  stepInFlightError,
  type NamedArray,
  typeError,
} from './validate';

/** A trainable tensor: its values and its gradient, both updated/read in place. */
export interface Param {
  data: Float32Array;
  grad: Float32Array;
  /** Optional unique name, used in error messages and checkpoints. */
  name?: string;
  /** false: no weight decay for this param, whatever its group's weightDecay. Read once, when the
   * optimizer is created. Default true. */
  decay?: boolean;
}

/** The optimizer-wide options: default hyperparameters for every group, and threads. */
export interface OptimizerOptions extends Hyper {
  /** Threads a step may use. Default: os.availableParallelism(). Small steps use fewer. */
  threads?: number;
  /** A learning-rate schedule (lib/schedules.ts) driving every group's lr from its lr here. */
  schedule?: LrSchedule;
}

/** A set of parameters sharing hyperparameters; unset fields take the optimizer's defaults. */
export interface ParamGroup extends Hyper {
  params: Param[];
}

/** A group as the optimizer holds it. Hyperparameters can be changed between steps; each
 * assignment is validated. amsgrad is fixed because it decides which state exists. */
export interface OptimizerParamGroup {
  readonly params: readonly Param[];
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
  maximize: boolean;
  readonly amsgrad: boolean;
}

/** A parameter's optimizer state. The arrays are the optimizer's own (zero-copy views). */
export interface ParamState {
  /** Steps taken by this parameter. */
  step: number;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
  /** Present only with amsgrad. */
  maxExpAvgSq?: Float32Array;
}

class LiveParamGroup implements OptimizerParamGroup {
  readonly params: readonly Param[];
  readonly amsgrad: boolean;
  #lr: number;
  #betas: readonly [number, number];
  #eps: number;
  #weightDecay: number;
  #maximize: boolean;

  constructor(
    private readonly label: string,
    params: readonly Param[],
    h: ResolvedHyper,
    // Throws while the optimizer's async step runs: it reads these values when it starts, and a
    // change meanwhile would be silently ignored for that step.
    private readonly assertIdle: (action: string) => void,
  ) {
    this.params = Object.freeze([...params]);
    this.amsgrad = h.amsgrad;
    this.#lr = h.lr;
    this.#betas = Object.freeze([h.betas[0], h.betas[1]] as const);
    this.#eps = h.eps;
    this.#weightDecay = h.weightDecay;
    this.#maximize = h.maximize;
    // Only the validated setters can change a group: params and amsgrad are fixed, and no other
    // property can be added.
    Object.freeze(this);
  }

  get lr(): number {
    return this.#lr;
  }
  set lr(value: number) {
    this.assertIdle(`set ${this.label}.lr`);
    this.#lr = checkNonNegative(`${this.label}.lr`, value);
  }
  get betas(): readonly [number, number] {
    return this.#betas;
  }
  set betas(value: readonly [number, number]) {
    this.assertIdle(`set ${this.label}.betas`);
    this.#betas = Object.freeze(checkBetas(`${this.label}.betas`, value));
  }
  get eps(): number {
    return this.#eps;
  }
  set eps(value: number) {
    this.assertIdle(`set ${this.label}.eps`);
    this.#eps = checkNonNegative(`${this.label}.eps`, value);
  }
  get weightDecay(): number {
    return this.#weightDecay;
  }
  set weightDecay(value: number) {
    this.assertIdle(`set ${this.label}.weightDecay`);
    this.#weightDecay = checkNonNegative(`${this.label}.weightDecay`, value);
  }
  get maximize(): boolean {
    return this.#maximize;
  }
  set maximize(value: boolean) {
    this.assertIdle(`set ${this.label}.maximize`);
    this.#maximize = checkBoolean(`${this.label}.maximize`, value);
  }
}

// Everything the optimizer keeps about one parameter.
interface Slot {
  readonly param: Param;
  readonly label: string; // "params[3]" or the param's name, for messages
  readonly group: LiveParamGroup;
  readonly length: number;
  readonly decay: boolean; // false: weight decay 0 for this param (Param.decay)
  step: number;
  readonly expAvg: Float32Array;
  readonly expAvgSq: Float32Array;
  readonly maxExpAvgSq: Float32Array | null;
  // The arrays last validated for overlap; a step re-checks overlap only when they change.
  data: Float32Array;
  grad: Float32Array;
}

interface ValidatedParam {
  param: Param;
  label: string; // the param's name if it has one, else where it was passed: "params[3]"
  data: Float32Array;
  grad: Float32Array;
  decay: boolean;
}

// Reads each field of a user's param once (a getter cannot change it between check and use).
function validateParam(
  where: string,
  value: unknown,
  names: Set<string>,
  seen: Set<unknown>,
): ValidatedParam {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw typeError(
      where,
      'a param { data: Float32Array, grad: Float32Array, name?: string }',
      value,
    );
  }
  if (seen.has(value)) throw new RangeError(`Expected each param once but ${where} appears twice`);
  seen.add(value);
  const { name, data, grad, decay } = value as Record<string, unknown>;
  if (name !== undefined) {
    if (typeof name !== 'string' || name === '') {
      throw typeError(`${where}.name`, 'a non-empty string', name);
    }
    if (names.has(name)) {
      throw new RangeError(`Expected unique param names but ${where}.name '${name}' is used twice`);
    }
    names.add(name);
  }
  const checkedData = checkFloat32Array(`${where}.data`, data);
  const checkedGrad = checkFloat32Array(`${where}.grad`, grad, lengthOf(checkedData));
  return {
    param: value as Param,
    label: typeof name === 'string' ? name : where,
    data: checkedData,
    grad: checkedGrad,
    decay: decay === undefined ? true : checkBoolean(`${where}.decay`, decay),
  };
}

// The optimizer's own state arrays. state(p) hands them out, so they are marked untransferable: a
// structuredClone or postMessage that lists one copies it (Node 20) or throws (Node 21+) instead of
// detaching the optimizer's memory, perhaps while a stepAsync is writing it.
function newStateArray(length: number): Float32Array {
  const array = new Float32Array(length);
  markAsUntransferable(array.buffer);
  return array;
}

// state(p) hands out the state arrays themselves; a detached one (on a Node where it can be) is an
// error at the next step.
function checkState(slot: Slot): void {
  checkFloat32Array(`state of ${slot.label} (expAvg)`, slot.expAvg, slot.length);
  checkFloat32Array(`state of ${slot.label} (expAvgSq)`, slot.expAvgSq, slot.length);
  if (slot.maxExpAvgSq !== null)
    checkFloat32Array(`state of ${slot.label} (maxExpAvgSq)`, slot.maxExpAvgSq, slot.length);
}

/**
 * What lib/checkpoint.ts reads and writes of an optimizer: its kind, groups and per-param slots
 * (the live objects, not copies). Internal: not exported from the package.
 */
export interface OptimizerInternals {
  readonly kind: 'adamw' | 'adam';
  readonly groups: readonly OptimizerParamGroup[];
  readonly slots: readonly {
    readonly param: Param;
    readonly label: string;
    readonly group: OptimizerParamGroup;
    readonly length: number;
    step: number;
    readonly expAvg: Float32Array;
    readonly expAvgSq: Float32Array;
    readonly maxExpAvgSq: Float32Array | null;
  }[];
  /** The attached schedule, or null. */
  readonly scheduleState: ScheduleState | null;
  /** Restores a schedule state as it was saved (the groups' lrs are restored separately). */
  setScheduleState(state: ScheduleState | null): void;
}

// Set by AdamBase's static block, which can read its private fields.
let internalsOf: ((optimizer: AdamBase) => OptimizerInternals) | undefined;

/** The internals of `optimizer`, for lib/checkpoint.ts. */
export function optimizerInternals(optimizer: AdamBase): OptimizerInternals {
  if (internalsOf === undefined) throw new Error('simd-adamw: AdamBase is not initialized');
  return internalsOf(optimizer);
}

function isGroupList(value: readonly unknown[]): boolean {
  return value.length > 0 && isPlainObject(value[0]) && 'params' in value[0];
}

/** Shared implementation of {@link AdamW} and {@link Adam}; they differ in weight decay only. */
export abstract class AdamBase {
  readonly #groups: LiveParamGroup[] = [];
  #groupsView: readonly OptimizerParamGroup[] = [];
  readonly #slots: Slot[] = [];
  readonly #slotOf = new Map<Param, Slot>();
  readonly #decoupled: boolean;
  // Reused between steps; rebuilt when a param's data or grad array is replaced.
  readonly #nativeArrays: (Float32Array | null)[];
  readonly #scalars: Float64Array;
  readonly #flags: Uint32Array;
  #threads: number;
  #inFlight = false;
  // The fused step's request and result (lib/train-step.ts), reused between steps.
  readonly #control = new Float64Array(CONTROL_LENGTH);
  #schedule: ScheduleState | null = null;

  static {
    internalsOf = (optimizer) => ({
      kind: optimizer.#decoupled ? 'adamw' : 'adam',
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

  protected constructor(
    params: Param[] | ParamGroup[],
    defaults: OptimizerOptions | undefined,
    base: ResolvedHyper,
    decoupled: boolean,
  ) {
    this.#decoupled = decoupled;
    const threadsOption = isPlainObject(defaults) ? defaults.threads : undefined;
    this.#threads =
      threadsOption === undefined
        ? defaultThreads()
        : checkThreads('defaults.threads', threadsOption);
    const scheduleOption = isPlainObject(defaults) ? defaults.schedule : undefined;
    const schedule =
      scheduleOption === undefined ? null : checkSchedule('defaults.schedule', scheduleOption);
    const groupDefaults = resolveHyperparameters('defaults', defaults, base, [
      'threads',
      'schedule',
    ]);
    if (!Array.isArray(params))
      throw typeError('params', 'an array of params or of param groups', params);
    if (params.length === 0)
      throw new RangeError('Expected at least one param for params but received an empty array');
    const groupInputs: unknown[] = isGroupList(params) ? params : [{ params }];
    const names = new Set<string>();
    const seen = new Set<unknown>();
    const groupList = isGroupList(params);
    for (const [g, groupInput] of groupInputs.entries()) {
      const groupLabel = `paramGroups[${g}]`;
      if (!isPlainObject(groupInput) || !Array.isArray(groupInput.params)) {
        throw typeError(groupLabel, 'a param group { params: Param[], ...options }', groupInput);
      }
      const h = resolveHyperparameters(groupLabel, groupInput, groupDefaults, ['params']);
      const validated = (groupInput.params as unknown[]).map((p, i) =>
        validateParam(groupList ? `${groupLabel}.params[${i}]` : `params[${i}]`, p, names, seen),
      );
      const group = new LiveParamGroup(
        groupLabel,
        validated.map((v) => v.param),
        h,
        (action) => {
          this.#assertIdle(action);
        },
      );
      this.#groups.push(group);
      for (const v of validated) this.#addSlot(v, group);
    }
    this.#groupsView = Object.freeze([...this.#groups]);
    this.#checkOverlap();
    this.#nativeArrays = new Array<Float32Array | null>(
      this.#slots.length * ARRAYS_PER_TENSOR,
    ).fill(null);
    this.#scalars = new Float64Array(this.#slots.length * SCALARS_PER_TENSOR);
    this.#flags = new Uint32Array(this.#slots.length);
    this.#setAllNativeArrays();
    if (schedule !== null) this.schedule = schedule;
  }

  /** The parameter groups, in order. Change hyperparameters through them between steps. */
  get paramGroups(): readonly OptimizerParamGroup[] {
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
    if (request === null) {
      native.step(this.#nativeArrays, this.#scalars, this.#flags, this.#threads);
      this.#finishStep();
      return plainReport(lr);
    }
    const control = writeControl(this.#control, request);
    native.step(this.#nativeArrays, this.#scalars, this.#flags, this.#threads, control);
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
      this.#slots.flatMap((slot) => [
        { name: `${slot.label}.data`, array: slot.data },
        { name: `${slot.label}.grad`, array: slot.grad },
      ]),
    );
    const control = request === null ? undefined : writeControl(this.#control, request);
    const done = native.stepAsync(
      this.#nativeArrays,
      this.#scalars,
      this.#flags,
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
   * The learning-rate schedule driving the groups' lr (lib/schedules.ts), or null. Attaching one
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

  // After a step that changed the state: step counts, then the schedule.
  #finishStep(): void {
    for (const slot of this.#slots) slot.step += 1;
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
    for (const [g, group] of this.#groups.entries()) group.lr = (schedule.baseLrs[g] ?? 0) * factor;
  }

  /** True while a {@link stepAsync} is running. */
  get stepInFlight(): boolean {
    return this.#inFlight;
  }

  // Validates every param's current arrays and writes this step's scalars; changes no array.
  // Returns the step's lr (the first group's).
  #prepareStep(): number {
    const slots = this.#slots;
    // Every param's data and grad are read once, all before any is checked: reading them can run
    // the caller's getters, which could detach or resize an array already checked. From the first
    // check to the native call no code of the caller runs, so the kernel updates what was checked.
    const values = slots.map((slot) => [slot.param.data, slot.param.grad] as const);
    const current = slots.map((slot, k) => {
      const [data, grad] = values[k];
      checkState(slot);
      return {
        slot,
        data: checkFloat32Array(`${slot.label}.data`, data, slot.length),
        grad: checkFloat32Array(`${slot.label}.grad`, grad, slot.length),
      };
    });
    if (current.some(({ slot, data, grad }) => data !== slot.data || grad !== slot.grad)) {
      // A param's data or grad was replaced: check the new set for overlap before adopting it.
      this.#checkOverlap(current);
      for (const { slot, data, grad } of current) {
        slot.data = data;
        slot.grad = grad;
      }
      this.#setAllNativeArrays();
    }
    for (const [k, slot] of slots.entries()) {
      const group = slot.group;
      this.#flags[k] = writeScalars(
        this.#scalars,
        k * SCALARS_PER_TENSOR,
        {
          lr: group.lr,
          beta1: group.betas[0],
          beta2: group.betas[1],
          eps: group.eps,
          weightDecay: slot.decay ? group.weightDecay : 0,
          amsgrad: group.amsgrad,
          maximize: group.maximize,
          decoupled: this.#decoupled,
        },
        slot.step + 1,
      );
    }
    return this.#groups[0]?.lr ?? 0;
  }

  #assertIdle(action: string): void {
    if (this.#inFlight) {
      throw stepInFlightError(action);
    }
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

  /** The state of `param`: its step count and zero-copy views of its moments. */
  state(param: Param): ParamState {
    const slot = this.#slotOf.get(param);
    if (slot === undefined) {
      throw new RangeError(
        `Expected a param of this optimizer for param but received ${describe(param)}`,
      );
    }
    const state: ParamState = { step: slot.step, expAvg: slot.expAvg, expAvgSq: slot.expAvgSq };
    if (slot.maxExpAvgSq !== null) state.maxExpAvgSq = slot.maxExpAvgSq;
    return state;
  }

  /**
   * A copy of everything needed to resume: per-param step counts and moments, group
   * hyperparameters, the optimizer kind and param names. Later steps do not change it.
   */
  stateDict(): OptimizerStateDict {
    this.#assertIdle('stateDict()');
    return stateDictOf(optimizerInternals(this));
  }

  /**
   * Restores a {@link stateDict} (copying it in). Throws TypeError/RangeError, changing nothing,
   * unless it fits: same optimizer kind, group sizes, amsgrad, param count, lengths and names.
   */
  loadStateDict(stateDict: OptimizerStateDict): void {
    this.#assertIdle('loadStateDict()');
    loadStateDictInto(optimizerInternals(this), stateDict);
  }

  /** Writes the state to `path` as a safetensors file, atomically (README, "Checkpoints"). */
  save(path: string): void {
    this.#assertIdle('save()');
    saveCheckpoint(optimizerInternals(this), path);
  }

  /** Loads a file written by {@link save}; validated first, all or nothing. */
  loadFrom(path: string): void {
    this.#assertIdle('loadFrom()');
    loadCheckpointInto(optimizerInternals(this), path);
  }

  /**
   * A new optimizer of this class for `params` (in the saved order), with the groups,
   * hyperparameters and state of the file at `path`, read directly into its arrays.
   */
  static load<T extends AdamBase>(
    this: new (params: ParamGroup[]) => T,
    path: string,
    params: Param[],
  ): T {
    return loadOptimizer(path, params, (groups) => {
      const optimizer = new this(groups);
      return { optimizer, internals: optimizerInternals(optimizer) };
    });
  }

  /** Bytes held: params, grads and optimizer state, per group and in total. */
  memory(): MemoryReport {
    const byGroup = new Map(this.#groups.map((group) => [group, emptyBreakdown()]));
    for (const slot of this.#slots) {
      const breakdown = byGroup.get(slot.group) ?? emptyBreakdown();
      const arrayBytes = slot.length * Float32Array.BYTES_PER_ELEMENT;
      const state =
        slot.expAvg.byteLength + slot.expAvgSq.byteLength + (slot.maxExpAvgSq?.byteLength ?? 0);
      breakdown.paramCount += slot.length;
      breakdown.params += arrayBytes;
      breakdown.grads += arrayBytes;
      breakdown.state += state;
      breakdown.total += 2 * arrayBytes + state;
    }
    const report: MemoryReport = { ...emptyBreakdown(), groups: [...byGroup.values()] };
    for (const breakdown of report.groups) addBreakdown(report, breakdown);
    return report;
  }

  #addSlot(v: ValidatedParam, group: LiveParamGroup): void {
    const length = lengthOf(v.data);
    const slot: Slot = {
      param: v.param,
      label: v.label,
      group,
      length,
      decay: v.decay,
      step: 0,
      expAvg: newStateArray(length),
      expAvgSq: newStateArray(length),
      maxExpAvgSq: group.amsgrad ? newStateArray(length) : null,
      data: v.data,
      grad: v.grad,
    };
    this.#slots.push(slot);
    this.#slotOf.set(v.param, slot);
  }

  // No two arrays of the step may share memory: not data with grad, not two params' arrays, not a
  // param with the optimizer's own state (someone passing state(p).expAvg as a grad).
  #checkOverlap(
    userArrays: readonly { slot: Slot; data: Float32Array; grad: Float32Array }[] = this.#slots.map(
      (slot) => ({ slot, data: slot.data, grad: slot.grad }),
    ),
  ): void {
    const arrays: NamedArray[] = [];
    for (const { slot, data, grad } of userArrays) {
      arrays.push(
        { name: `${slot.label}.data`, array: data },
        { name: `${slot.label}.grad`, array: grad },
        { name: `state of ${slot.label} (expAvg)`, array: slot.expAvg },
        { name: `state of ${slot.label} (expAvgSq)`, array: slot.expAvgSq },
      );
      if (slot.maxExpAvgSq !== null) {
        arrays.push({ name: `state of ${slot.label} (maxExpAvgSq)`, array: slot.maxExpAvgSq });
      }
    }
    checkNoOverlap(arrays);
  }

  #setAllNativeArrays(): void {
    for (const [k, slot] of this.#slots.entries()) {
      const base = k * ARRAYS_PER_TENSOR;
      this.#nativeArrays[base] = slot.data;
      this.#nativeArrays[base + 1] = slot.grad;
      this.#nativeArrays[base + 2] = slot.expAvg;
      this.#nativeArrays[base + 3] = slot.expAvgSq;
      this.#nativeArrays[base + 4] = slot.maxExpAvgSq;
    }
  }
}

/**
 * AdamW (Loshchilov & Hutter): Adam with weight decay decoupled from the gradient,
 * p *= 1 - lr * weightDecay. Semantics and defaults of torch.optim.AdamW.
 */
export class AdamW extends AdamBase {
  constructor(params: Param[] | ParamGroup[], defaults?: OptimizerOptions) {
    super(params, defaults, ADAMW_DEFAULTS, true);
  }
}

/**
 * Adam (Kingma & Ba), with weightDecay as L2 added to the gradient (g += weightDecay * p).
 * Semantics and defaults of torch.optim.Adam (weightDecay 0).
 */
export class Adam extends AdamBase {
  constructor(params: Param[] | ParamGroup[], defaults?: OptimizerOptions) {
    super(params, defaults, ADAM_DEFAULTS, false);
  }
}
