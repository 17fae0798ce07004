// The Adam and AdamW optimizer classes: parameters, groups, per-parameter state, and one native
// call per step for all parameters (PyTorch's foreach/fused idea: real models have hundreds of small
// bias and norm vectors, and one call per tensor would cost more than their update).

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
import {
  checkBetas,
  checkBoolean,
  checkFloat32Array,
  checkNoOverlap,
  checkNonNegative,
  describe,
  isPlainObject,
  lengthOf,
  type NamedArray,
  typeError,
} from './validate';

/** A trainable tensor: its values and its gradient, both updated/read in place. */
export interface Param {
  data: Float32Array;
  grad: Float32Array;
  /** Optional unique name, used in error messages and checkpoints. */
  name?: string;
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
  ) {
    this.params = Object.freeze([...params]);
    this.amsgrad = h.amsgrad;
    this.#lr = h.lr;
    this.#betas = Object.freeze([h.betas[0], h.betas[1]] as const);
    this.#eps = h.eps;
    this.#weightDecay = h.weightDecay;
    this.#maximize = h.maximize;
    // Hyperparameters change only through the validating setters: an own `lr` property defined on
    // the group would otherwise shadow the accessor and reach the kernel unchecked.
    Object.freeze(this);
  }

  get lr(): number {
    return this.#lr;
  }
  set lr(value: number) {
    this.#lr = checkNonNegative(`${this.label}.lr`, value);
  }
  get betas(): readonly [number, number] {
    return this.#betas;
  }
  set betas(value: readonly [number, number]) {
    this.#betas = Object.freeze(checkBetas(`${this.label}.betas`, value));
  }
  get eps(): number {
    return this.#eps;
  }
  set eps(value: number) {
    this.#eps = checkNonNegative(`${this.label}.eps`, value);
  }
  get weightDecay(): number {
    return this.#weightDecay;
  }
  set weightDecay(value: number) {
    this.#weightDecay = checkNonNegative(`${this.label}.weightDecay`, value);
  }
  get maximize(): boolean {
    return this.#maximize;
  }
  set maximize(value: boolean) {
    this.#maximize = checkBoolean(`${this.label}.maximize`, value);
  }
}

// Everything the optimizer keeps about one parameter.
interface Slot {
  readonly param: Param;
  readonly label: string; // "params[3]" or the param's name, for messages
  readonly group: LiveParamGroup;
  readonly length: number;
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
  const { name, data, grad } = value as Record<string, unknown>;
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
  const checkedGrad = checkFloat32Array(`${where}.grad`, grad, checkedData.length);
  return {
    param: value as Param,
    label: typeof name === 'string' ? name : where,
    data: checkedData,
    grad: checkedGrad,
  };
}

// state(p) hands out the state arrays themselves, so the caller can detach their buffers.
function checkState(slot: Slot): void {
  checkStateArray(slot, 'expAvg', slot.expAvg);
  checkStateArray(slot, 'expAvgSq', slot.expAvgSq);
  if (slot.maxExpAvgSq !== null) checkStateArray(slot, 'maxExpAvgSq', slot.maxExpAvgSq);
}

function checkStateArray(slot: Slot, name: string, array: Float32Array): void {
  const length = lengthOf(array);
  if (length !== slot.length) {
    throw new RangeError(
      `Expected the optimizer state of ${slot.label} (${name}) to have ${slot.length} elements ` +
        `but it has ${length}: its buffer was detached or transferred`,
    );
  }
}

function isGroupList(value: readonly unknown[]): boolean {
  return value.length > 0 && isPlainObject(value[0]) && 'params' in value[0];
}

/** Shared implementation of {@link AdamW} and {@link Adam}; they differ in weight decay only. */
export abstract class AdamBase {
  readonly #groups: LiveParamGroup[] = [];
  // What paramGroups returns: frozen, so the caller cannot add or swap groups.
  readonly #publicGroups: readonly OptimizerParamGroup[];
  readonly #slots: Slot[] = [];
  readonly #slotOf = new Map<Param, Slot>();
  readonly #decoupled: boolean;
  // Reused between steps; rebuilt when a param's data or grad array is replaced.
  readonly #nativeArrays: (Float32Array | null)[];
  readonly #scalars: Float64Array;
  readonly #flags: Uint32Array;

  protected constructor(
    params: Param[] | ParamGroup[],
    defaults: Hyper | undefined,
    base: ResolvedHyper,
    decoupled: boolean,
  ) {
    this.#decoupled = decoupled;
    const groupDefaults = resolveHyperparameters('defaults', defaults, base);
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
      );
      this.#groups.push(group);
      for (const v of validated) this.#addSlot(v, group);
    }
    this.#publicGroups = Object.freeze([...this.#groups]);
    this.#checkOverlap();
    this.#nativeArrays = new Array<Float32Array | null>(
      this.#slots.length * ARRAYS_PER_TENSOR,
    ).fill(null);
    this.#scalars = new Float64Array(this.#slots.length * SCALARS_PER_TENSOR);
    this.#flags = new Uint32Array(this.#slots.length);
    this.#setAllNativeArrays();
  }

  /** The parameter groups, in order. Change hyperparameters through them between steps. */
  get paramGroups(): readonly OptimizerParamGroup[] {
    return this.#publicGroups;
  }

  /**
   * One optimization step for every parameter, from its current `grad`, in a single native call.
   * Validates every parameter first: on error nothing has changed.
   */
  step(): void {
    const slots = this.#slots;
    // Every param's data and grad are read once, all before any is checked: reading them can run
    // the caller's getters, which could detach or resize an array already checked. From the first
    // check to the native call no code of the caller runs, so the kernel updates what was checked.
    const current = slots.map((slot) => [slot.param.data, slot.param.grad] as const);
    let replaced = false;
    for (const [k, slot] of slots.entries()) {
      const [dataValue, gradValue] = current[k];
      const data = checkFloat32Array(`${slot.label}.data`, dataValue, slot.length);
      const grad = checkFloat32Array(`${slot.label}.grad`, gradValue, slot.length);
      checkState(slot);
      if (data !== slot.data || grad !== slot.grad) {
        slot.data = data;
        slot.grad = grad;
        replaced = true;
      }
    }
    if (replaced) {
      this.#checkOverlap();
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
          weightDecay: group.weightDecay,
          amsgrad: group.amsgrad,
          maximize: group.maximize,
          decoupled: this.#decoupled,
        },
        slot.step + 1,
      );
    }
    native.step(this.#nativeArrays, this.#scalars, this.#flags);
    for (const slot of slots) slot.step += 1;
  }

  /** Sets every gradient to zero (PyTorch's zero_grad(set_to_none=False)). */
  zeroGrad(): void {
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
    const length = v.data.length;
    const slot: Slot = {
      param: v.param,
      label: v.label,
      group,
      length,
      step: 0,
      expAvg: new Float32Array(length),
      expAvgSq: new Float32Array(length),
      maxExpAvgSq: group.amsgrad ? new Float32Array(length) : null,
      data: v.data,
      grad: v.grad,
    };
    this.#slots.push(slot);
    this.#slotOf.set(v.param, slot);
  }

  // No two arrays of the step may share memory: not data with grad, not two params' arrays, not a
  // param with the optimizer's own state (someone passing state(p).expAvg as a grad).
  #checkOverlap(): void {
    const arrays: NamedArray[] = [];
    for (const slot of this.#slots) {
      arrays.push(
        { name: `${slot.label}.data`, array: slot.data },
        { name: `${slot.label}.grad`, array: slot.grad },
      );
      arrays.push({ name: `state of ${slot.label} (expAvg)`, array: slot.expAvg });
      arrays.push({ name: `state of ${slot.label} (expAvgSq)`, array: slot.expAvgSq });
      if (slot.maxExpAvgSq !== null)
        arrays.push({ name: `state of ${slot.label} (maxExpAvgSq)`, array: slot.maxExpAvgSq });
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
  constructor(params: Param[] | ParamGroup[], defaults?: Hyper) {
    super(params, defaults, ADAMW_DEFAULTS, true);
  }
}

/**
 * Adam (Kingma & Ba), with weightDecay as L2 added to the gradient (g += weightDecay * p).
 * Semantics and defaults of torch.optim.Adam (weightDecay 0).
 */
export class Adam extends AdamBase {
  constructor(params: Param[] | ParamGroup[], defaults?: Hyper) {
    super(params, defaults, ADAM_DEFAULTS, false);
  }
}
