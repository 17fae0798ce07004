// A tf.Optimizer over one of this package's optimizers: tfjs-layers' model.fit (or your own
// minimize/applyGradients loop) computes the gradients, and every variable is stepped in one native
// call by the core optimizer (lib/optim/), with its guarantees: the same bits as the core on plain
// arrays, on every kernel and thread count.
//
// The core optimizer is made at the first applyGradients, over the variables of that call in their
// order; a variable first seen later is added (the others keep their state). Where each step's
// arrays come from, per backend, is lib/tfjs/variable-storage.ts; the weights that carry the state
// through model.save are lib/tfjs/weights.ts.
import * as tf from '@tensorflow/tfjs-core';

import type { GenericStateDict } from '../checkpoint/state-dict';
import { isPlainObject } from '../core/checks';
import { countOf, typeError } from '../core/errors';
import { type AnyOptimizer, optimizerInternals } from '../optim/optimizer';
import type { Param } from '../optim/params';
import type { AnyOptimizerSpec } from '../optim/spec';
import { isBiasOrNorm } from '../train/weight-decay';
import { isTensor } from './tensors';
import {
  type StepArrays,
  stepArrays,
  type SteppedVariable,
  type UpdatePath,
} from './variable-storage';
import {
  decodeWeights,
  encodeWeights,
  type NamedTensor,
  type PendingState,
  pendingWeights,
} from './weights';

/**
 * Which variables take no weight decay: 'biasAndNorm' (the core's isBiasOrNorm on the variable's
 * name, without a `_<n>` suffix: `dense_Dense1/bias`, `dense_Dense1/bias_1`,
 * `batch_normalization_.../gamma`, `layer_normalization_.../beta`), a
 * predicate on the variable name, or one boolean per variable in the order they are first stepped
 * (true: no decay; what getConfig() records for a predicate, which a config cannot hold).
 */
export type NoDecayRule = 'biasAndNorm' | ((variableName: string) => boolean) | readonly boolean[];

/** The options every adapter takes besides the core optimizer's. */
export interface TfjsAdapterOptions {
  /** Variables exempt from weight decay (see {@link NoDecayRule}). Default: every variable decays. */
  noDecay?: NoDecayRule;
}

/** A core optimizer class as the adapter creates it. */
export interface CoreOptimizerClass {
  new (params: Param[], defaults?: object): AnyOptimizer;
  readonly spec: AnyOptimizerSpec;
}

// What the adapter keeps per variable: the variable and the Param the core optimizer holds, whose
// data and grad are set to the variable's current arrays before every step.
interface Slot {
  readonly variable: tf.Variable;
  readonly param: Param;
}

function checkNoDecay(value: unknown): NoDecayRule | null {
  if (value === undefined || value === null) return null;
  if (value === 'biasAndNorm' || typeof value === 'function') return value as NoDecayRule;
  if (Array.isArray(value) && value.every((x) => typeof x === 'boolean')) {
    return Object.freeze([...value]);
  }
  throw typeError(
    'options.noDecay',
    "'biasAndNorm', a function (variableName) => boolean or an array of booleans",
    value,
  );
}

// The core names its second constructor argument `defaults`; here it is the options object.
function asOptionsError(error: unknown): unknown {
  if (error instanceof TypeError || error instanceof RangeError) {
    error.message = error.message.replace(/\bdefaults\b/g, 'options');
  }
  return error;
}

/** The pairs of an applyGradients call, checked; `gradient` null where the variable has none. */
function readGradients(
  value: unknown,
): { name: string; variable: tf.Variable; gradient: tf.Tensor | null }[] {
  let pairs: [string, unknown][];
  if (Array.isArray(value)) {
    pairs = (value as unknown[]).map((entry, i) => {
      if (!isPlainObject(entry) || typeof entry.name !== 'string') {
        throw typeError(
          `variableGradients[${i}]`,
          'a NamedTensor { name: string, tensor: Tensor }',
          entry,
        );
      }
      return [entry.name, entry.tensor];
    });
  } else if (isPlainObject(value)) {
    pairs = Object.entries(value);
  } else {
    throw typeError(
      'variableGradients',
      'a NamedTensorMap { [variableName]: Tensor } or an array of NamedTensors',
      value,
    );
  }
  const registered = tf.engine().registeredVariables;
  const seen = new Set<string>();
  return pairs.map(([name, gradient]) => {
    const label = `variableGradients['${name}']`;
    if (seen.has(name)) {
      throw new RangeError(
        `Expected each variable once for variableGradients but received '${name}' twice`,
      );
    }
    seen.add(name);
    if (!Object.hasOwn(registered, name)) {
      throw new RangeError(
        `Expected the name of a registered variable for ${label} but received '${name}', which ` +
          'no tf.Variable has',
      );
    }
    const variable = registered[name];
    if (variable.dtype !== 'float32') {
      throw typeError(`the variable '${name}'`, 'a float32 variable', variable.dtype);
    }
    if (gradient === undefined || gradient === null) return { name, variable, gradient: null };
    if (!isTensor(gradient) || gradient.isDisposed) {
      throw typeError(label, 'a tf.Tensor that is not disposed', gradient);
    }
    if (gradient.dtype !== 'float32') throw typeError(label, 'a float32 tensor', gradient.dtype);
    if (!tf.util.arraysEqual(gradient.shape, variable.shape)) {
      throw new RangeError(
        `Expected shape [${variable.shape.join(', ')}] (the variable's) for ${label} but ` +
          `received [${gradient.shape.join(', ')}]`,
      );
    }
    return { name, variable, gradient };
  });
}

/**
 * The base of SimdAdamW, SimdAdam, SimdLion, SimdAdafactor and SimdCAME: a tf.Optimizer whose
 * step is one native call over every variable.
 */
export abstract class SimdOptimizer extends tf.Optimizer {
  readonly #Core: CoreOptimizerClass;
  // The core's options (frozen copy), without noDecay.
  #options: Record<string, unknown>;
  readonly #noDecay: NoDecayRule | null;
  // State tensor names as tfjs calls them ('expAvg' -> 'm').
  readonly #shortNames: Readonly<Record<string, string>>;
  #core: AnyOptimizer | null = null;
  readonly #slots: Slot[] = [];
  readonly #slotOf = new Map<tf.Variable, Slot>();
  #pending: PendingState | null = null;
  // The tensors of the last getWeights(): tfjs-layers does not dispose them after a save.
  #weightTensors: tf.Tensor[] = [];
  #updatePath: UpdatePath | null = null;
  #disposed = false;

  protected constructor(
    Core: CoreOptimizerClass,
    options: unknown,
    shortNames: Readonly<Record<string, string>>,
  ) {
    super();
    this.#Core = Core;
    this.#shortNames = shortNames;
    if (options !== undefined && !isPlainObject(options)) {
      throw typeError('options', 'an options object', options);
    }
    const { noDecay, ...coreOptions } = options ?? {};
    this.#noDecay = checkNoDecay(noDecay);
    // Validated now, with the core's messages, on a core optimizer of one element.
    try {
      new Core([{ data: new Float32Array(1), grad: new Float32Array(1) }], coreOptions);
    } catch (error) {
      throw asOptionsError(error);
    }
    this.#options = Object.freeze(coreOptions);
  }

  /** The core optimizer (AdamW, ...) once the first applyGradients made it; null before. */
  get core(): AnyOptimizer | null {
    return this.#core;
  }

  /** How the last step reached the variables' values: 'cpu-in-place', 'wasm-clone-assign' or
   * 'copy' (lib/tfjs/variable-storage.ts); null before the first step. */
  get updatePath(): UpdatePath | null {
    return this.#updatePath;
  }

  /**
   * The learning rate, as tfjs optimizers have it (callbacks set it): every group's lr. While a
   * schedule is attached it owns lr and an assignment lasts until the next step, as in the core.
   */
  get learningRate(): number {
    const core = this.#core;
    if (core !== null) {
      const lr = (core.paramGroups[0] as { lr?: number | null } | undefined)?.lr;
      return lr ?? NaN;
    }
    const lr = this.#options.lr;
    if (typeof lr === 'number') return lr;
    const schema = this.#Core.spec.hyperparameters as Record<
      string,
      { default?: unknown } | undefined
    >;
    const defaultLr = schema.lr?.default;
    return typeof defaultLr === 'number' ? defaultLr : NaN;
  }
  set learningRate(value: number) {
    const core = this.#core;
    if (core === null) {
      const options = { ...this.#options, lr: value };
      try {
        new this.#Core([{ data: new Float32Array(1), grad: new Float32Array(1) }], options);
      } catch (error) {
        throw asOptionsError(error);
      }
      this.#options = Object.freeze(options);
      return;
    }
    for (const group of core.paramGroups as unknown as { lr: number }[]) group.lr = value;
  }

  /**
   * Steps every variable named in `variableGradients` by its gradient, in one native call. A
   * variable of an earlier step that has no gradient now is skipped (its value and state stay).
   * Checks everything first: on error no variable or state has changed.
   */
  applyGradients(variableGradients: tf.NamedTensorMap | NamedTensor[]): void {
    if (this.#disposed) throw new Error(`${this.getClassName()} was disposed`);
    const given = readGradients(variableGradients);
    const gradientOf = new Map<tf.Variable, tf.Tensor | null>();
    for (const { variable, gradient } of given) gradientOf.set(variable, gradient);
    const added = given.map(({ variable }) => variable).filter((v) => !this.#slotOf.has(v));
    if (this.#core === null && added.length === 0) {
      this.incrementIterations(); // no variable yet: nothing to step
      return;
    }
    // The variables with a gradient, in param order (those added last).
    const stepped: SteppedVariable[] = [];
    for (const variable of [...this.#slots.map((slot) => slot.variable), ...added]) {
      const gradient = gradientOf.get(variable) ?? null;
      if (gradient !== null) stepped.push({ variable, gradient });
    }
    const arrays = stepArrays(stepped);
    try {
      const indexOf = new Map(stepped.map(({ variable }, i) => [variable, i]));
      const core = added.length > 0 ? this.#addVariables(added, arrays, indexOf) : this.#core;
      if (core === null) throw new Error('simd-adamw: no core optimizer'); // returned above
      const skip: Param[] = [];
      for (const slot of this.#slots) {
        const i = indexOf.get(slot.variable);
        if (i === undefined) {
          skip.push(slot.param);
        } else {
          slot.param.data = arrays.data[i];
          slot.param.grad = arrays.grads[i];
        }
      }
      if (skip.length === 0) core.step();
      else core.step({ skip });
    } catch (error) {
      arrays.abort();
      throw error;
    }
    arrays.finish();
    this.#updatePath = arrays.path;
    this.incrementIterations();
  }

  // Makes (or remakes, keeping the others' state) the core optimizer with `variables` added, every
  // param holding this step's arrays (placeholders for those without a gradient: a skipped param's
  // arrays are not read). Throws with no state changed.
  #addVariables(
    variables: readonly tf.Variable[],
    arrays: StepArrays,
    indexOf: ReadonlyMap<tf.Variable, number>,
  ): AnyOptimizer {
    const position = this.#slots.length;
    const arraysOf = (variable: tf.Variable): { data: Float32Array; grad: Float32Array } => {
      const index = indexOf.get(variable);
      return index === undefined
        ? { data: new Float32Array(variable.size), grad: new Float32Array(variable.size) }
        : { data: arrays.data[index], grad: arrays.grads[index] };
    };
    const slots = variables.map((variable, i): Slot => {
      const param: Param = {
        ...arraysOf(variable),
        name: variable.name,
        shape: [...variable.shape],
        decay: !this.#exempt(variable.name, position + i),
      };
      return { variable, param };
    });
    // The new core checks every param's arrays when it is made, and a skipped param may still hold
    // an earlier step's (on wasm a heap view, since detached or reused): give them this step's.
    for (const slot of this.#slots) Object.assign(slot.param, arraysOf(slot.variable));
    const kept = this.#core?.stateDict() as GenericStateDict | undefined;
    const all = [...this.#slots, ...slots];
    let core: AnyOptimizer;
    try {
      core = new this.#Core(
        all.map((slot) => slot.param),
        this.#options,
      );
      const fresh = core.stateDict() as GenericStateDict;
      if (kept !== undefined) {
        core.loadStateDict({
          ...kept,
          state: [...kept.state, ...fresh.state.slice(kept.state.length)],
          paramGroups: [{ ...kept.paramGroups[0], params: all.map((_, k) => k) }],
        });
      } else if (this.#pending !== null) {
        this.#loadPending(core, this.#pending, fresh, all.length);
      }
    } catch (error) {
      throw asOptionsError(error);
    }
    this.#pending = null;
    this.#core = core;
    this.#slots.push(...slots);
    for (const slot of slots) this.#slotOf.set(slot.variable, slot);
    return core;
  }

  #exempt(name: string, position: number): boolean {
    const rule = this.#noDecay;
    if (rule === null) return false;
    // Without the `_1` tfjs-layers appends to the variables of a model loaded in the same process,
    // so a reloaded model gets the same answer (`dense_Dense1/bias_1` is a bias).
    if (rule === 'biasAndNorm') return isBiasOrNorm({ name: name.replace(/_\d+$/, '') } as Param);
    if (typeof rule === 'function') {
      const exempt: unknown = rule(name);
      if (typeof exempt !== 'boolean') {
        throw typeError(`options.noDecay('${name}')`, 'a boolean', exempt);
      }
      return exempt;
    }
    if (position >= rule.length) {
      throw new RangeError(
        `Expected one entry per variable for options.noDecay but received ` +
          `${countOf(rule.length, 'entry', 'entries')} (variable ${position} is '${name}')`,
      );
    }
    return rule[position];
  }

  // Loads a state read by setWeights into `core` (all or nothing) and sets the iteration count.
  #loadPending(
    core: AnyOptimizer,
    pending: PendingState,
    fresh: GenericStateDict,
    count: number,
  ): void {
    if (pending.paramCount !== null && pending.paramCount !== count) {
      throw new RangeError(
        `Expected the state of ${countOf(count, 'variable')} (this optimizer's) for the weights ` +
          `given to setWeights() but received the state of ${pending.paramCount}`,
      );
    }
    const dict = pending.stateDict(fresh);
    if (dict !== null) core.loadStateDict(dict);
    this.iterations_ = pending.iterations;
  }

  #releaseWeightTensors(): void {
    for (const tensor of this.#weightTensors) tensor.dispose();
    this.#weightTensors = [];
  }

  /**
   * The state as tfjs weights: `[iter, ...'<var>/m', ...'<var>/v', ..., 'simd-adamw/state']`
   * (lib/tfjs/weights.ts). The tensors stay valid until the next getWeights(), setWeights() or
   * dispose(), which dispose them (tfjs-layers' save does not).
   */
  override getWeights(): Promise<NamedTensor[]> {
    this.#releaseWeightTensors();
    const core = this.#core;
    let weights: NamedTensor[];
    if (core !== null) {
      const dict = core.stateDict() as GenericStateDict;
      weights = encodeWeights(
        dict,
        this.getClassName(),
        this.iterations,
        this.#slots.map((slot) => slot.variable.name),
        this.#slots.map((slot) => slot.variable.shape),
        this.#Core.spec.state.map((tensor) => tensor.name),
        this.#shortNames,
      );
    } else if (this.#pending !== null) {
      weights = pendingWeights(this.#pending);
    } else {
      weights = [{ name: 'iter', tensor: tf.scalar(this.iterations, 'int32') }];
    }
    this.#weightTensors = weights.map((w) => tf.keep(w.tensor));
    return Promise.resolve(weights);
  }

  /**
   * Restores weights from {@link getWeights} (or tf.train.adam's, for SimdAdam/SimdAdamW), copied
   * at once (tfjs disposes them after this call). Applied now if the variables are known, else at
   * the first step, matched by position.
   */
  override setWeights(weightValues: NamedTensor[]): Promise<void> {
    try {
      this.#setWeights(weightValues);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #setWeights(weightValues: unknown): void {
    const pending = decodeWeights(
      weightValues,
      this.getClassName(),
      'expAvgSq' in this.#shortNames,
    );
    const core = this.#core;
    if (core === null) {
      this.#pending = pending;
      this.iterations_ = pending.iterations; // at once, as tf.train.adam's setWeights does
    } else {
      const fresh = core.stateDict() as GenericStateDict;
      try {
        this.#loadPending(core, pending, fresh, this.#slots.length);
      } catch (error) {
        throw asOptionsError(error);
      }
    }
    this.#releaseWeightTensors();
  }

  /** The options, as tfjs-layers saves them with the model (lib/tfjs: `getConfig`). */
  getConfig(): tf.serialization.ConfigDict {
    const config: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(this.#options)) config[key] = value;
    const core = this.#core;
    if (core !== null) {
      const group = core.paramGroups[0] as unknown as Record<string, unknown>;
      for (const key of Object.keys(this.#Core.spec.hyperparameters)) config[key] = group[key];
      // Under a schedule, the base lr (the schedule's position is in the weights).
      const schedule = optimizerInternals(core).scheduleState;
      if (schedule !== null) config.lr = schedule.baseLrs[0];
    }
    const schedule = this.#options.schedule as { type?: unknown } | undefined;
    if (schedule?.type === 'lambda') {
      // JSON drops the function, and fromConfig could not make the optimizer again.
      throw new Error(
        `${this.getClassName()}.getConfig(): a lambdaSchedule cannot be saved in a config (its ` +
          'function is code); use one of the other schedules, or save the optimizer with ' +
          'core.save() and rebuild it with the same lambdaSchedule',
      );
    }
    const rule = this.#noDecay;
    if (typeof rule === 'function') {
      if (core === null) {
        throw new Error(
          `${this.getClassName()}.getConfig(): a noDecay function cannot be saved before the first ` +
            'step (after it, the config records its answer for each variable)',
        );
      }
      config.noDecay = this.#slots.map((slot) => !slot.param.decay);
    } else if (rule !== null) {
      config.noDecay = typeof rule === 'string' ? rule : [...rule];
    }
    return JSON.parse(JSON.stringify(config)) as tf.serialization.ConfigDict;
  }

  /**
   * A new optimizer of class `cls` from a {@link getConfig} result (tfjs-layers calls it when
   * loading a model saved with its optimizer; it adds a `customObjects` entry, ignored here).
   */
  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    const options: Record<string, unknown> = { ...config };
    delete options.customObjects;
    return new cls(options);
  }

  /** Frees the native state and the tensors of the last getWeights(). tfjs-layers does not
   * dispose an optimizer you created: call this when done. */
  override dispose(): void {
    this.#releaseWeightTensors();
    this.#core = null;
    this.#slots.length = 0;
    this.#slotOf.clear();
    this.#pending = null;
    this.#disposed = true;
    super.dispose();
  }
}
