// The adapter classes, one per optimizer of the package, and their tf.train-style factories. Each is
// the core class and the names tfjs gives its state (tf.train.adam's 'm' and 'v'); the behaviour is
// lib/tfjs/optimizer.ts's. Importing this file registers every class with
// tf.serialization.registerClass, so tf.loadLayersModel finds them by className.
import * as tf from '@tensorflow/tfjs-core';

import type { AdafactorOptions } from '../optim/adafactor';
import { Adafactor } from '../optim/adafactor';
import { Adam, AdamW, type OptimizerOptions } from '../optim/adam';
import { CAME, type CameOptions } from '../optim/came';
import { Lion, type LionOptions } from '../optim/lion';
import type { StateDtype } from '../optim/spec';
import { type CoreOptimizerClass, SimdOptimizer, type TfjsAdapterOptions } from './optimizer';

// tf.train.adam's names for Adam's moments; the others keep the core's state names.
const ADAM_NAMES = Object.freeze({ expAvg: 'm', expAvgSq: 'v' });
const LION_NAMES = Object.freeze({ expAvg: 'm' });

/** SimdAdamW's and SimdAdam's options: the core AdamW/Adam options and the adapter's. */
export type SimdAdamOptions = OptimizerOptions<StateDtype> & TfjsAdapterOptions;
/** SimdLion's options: the core Lion options and the adapter's. */
export type SimdLionOptions = LionOptions<StateDtype> & TfjsAdapterOptions;
/** SimdAdafactor's options: the core Adafactor options and the adapter's. */
export type SimdAdafactorOptions = AdafactorOptions & TfjsAdapterOptions;
/** SimdCAME's options: the core CAME options and the adapter's. */
export type SimdCameOptions = CameOptions & TfjsAdapterOptions;

// The core classes as the adapter creates them (their generic constructors widened).
const ADAMW = AdamW as unknown as CoreOptimizerClass;
const ADAM = Adam as unknown as CoreOptimizerClass;
const LION = Lion as unknown as CoreOptimizerClass;
const ADAFACTOR = Adafactor as unknown as CoreOptimizerClass;
const CAME_CLASS = CAME as unknown as CoreOptimizerClass;

/** AdamW (decoupled weight decay, PyTorch's semantics and defaults) as a tf.Optimizer. */
export class SimdAdamW extends SimdOptimizer {
  static readonly className = 'SimdAdamW';
  constructor(options?: SimdAdamOptions) {
    super(ADAMW, options, ADAM_NAMES);
  }
}

/** Adam (weight decay added to the gradient, PyTorch's semantics and defaults) as a tf.Optimizer. */
export class SimdAdam extends SimdOptimizer {
  static readonly className = 'SimdAdam';
  constructor(options?: SimdAdamOptions) {
    super(ADAM, options, ADAM_NAMES);
  }
}

/** Lion (the sign of an interpolated moment; 4 bytes of state per element) as a tf.Optimizer. */
export class SimdLion extends SimdOptimizer {
  static readonly className = 'SimdLion';
  constructor(options?: SimdLionOptions) {
    super(LION, options, LION_NAMES);
  }
}

/** Adafactor (factored second moments for variables of 2 or more dimensions) as a tf.Optimizer. */
export class SimdAdafactor extends SimdOptimizer {
  static readonly className = 'SimdAdafactor';
  constructor(options?: SimdAdafactorOptions) {
    super(ADAFACTOR, options, {});
  }
}

/** CAME (Adafactor's factored moments with a confidence-guided update) as a tf.Optimizer. */
export class SimdCAME extends SimdOptimizer {
  static readonly className = 'SimdCAME';
  constructor(options?: SimdCameOptions) {
    super(CAME_CLASS, options, {});
  }
}

for (const cls of [SimdAdamW, SimdAdam, SimdLion, SimdAdafactor, SimdCAME]) {
  tf.serialization.registerClass(cls);
}

/** A new {@link SimdAdamW}, as tf.train.adam makes an Adam. */
export function adamw(options?: SimdAdamOptions): SimdAdamW {
  return new SimdAdamW(options);
}

/** A new {@link SimdAdam}. */
export function adam(options?: SimdAdamOptions): SimdAdam {
  return new SimdAdam(options);
}

/** A new {@link SimdLion}. */
export function lion(options?: SimdLionOptions): SimdLion {
  return new SimdLion(options);
}

/** A new {@link SimdAdafactor}. */
export function adafactor(options?: SimdAdafactorOptions): SimdAdafactor {
  return new SimdAdafactor(options);
}

/** A new {@link SimdCAME}. */
export function came(options?: SimdCameOptions): SimdCAME {
  return new SimdCAME(options);
}
