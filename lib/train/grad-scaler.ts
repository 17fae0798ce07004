// GradScaler: dynamic loss scaling for mixed-precision training, in the style of
// torch.cuda.amp.GradScaler, on top of the fused step's gradScale and skipNonFinite.
//
// The caller multiplies the loss by `scaler.scale` before backpropagation, so small gradients do
// not underflow in half precision. `scaler.step(optimizer)` runs the optimizer's step with the
// gradients unscaled inside the update and skipped if any is NaN or Inf (an overflow: the scale is
// too large), then updates the scale: halve it after a skipped step, double it after
// growthInterval steps in a row without one.

import { checkBoolean, checkInteger, checkNumber, checkObject } from '../core/checks';
import { checkKnownKeys, rangeError, typeError } from '../core/errors';
import { Optimizer } from '../optim/optimizer';
import type { StepReport } from './step-options';

/** Options of {@link GradScaler}; every field has torch.cuda.amp.GradScaler's default. */
export interface GradScalerOptions {
  /** The first scale. Default 2^16. */
  initScale?: number;
  /** The scale is multiplied by this after growthInterval clean steps. Default 2. */
  growthFactor?: number;
  /** The scale is multiplied by this after a skipped step. Default 0.5. */
  backoffFactor?: number;
  /** Clean steps in a row before the scale grows. Default 2000. */
  growthInterval?: number;
  /** false: step() is a plain optimizer.step() (with clipGradNorm) and the scale stays 1. */
  enabled?: boolean;
}

/** Options of {@link GradScaler.step}. */
export interface GradScalerStepOptions {
  /** Clip the global norm of the unscaled gradients (see StepOptions.clipGradNorm). */
  clipGradNorm?: number;
}

/** Everything needed to resume a {@link GradScaler}, as returned by `stateDict()`. */
export interface GradScalerStateDict {
  scale: number;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  /** Clean steps in a row since the scale last changed. */
  growthTracker: number;
}

const OPTION_KEYS = ['initScale', 'growthFactor', 'backoffFactor', 'growthInterval', 'enabled'];
const STATE_KEYS = ['scale', 'growthFactor', 'backoffFactor', 'growthInterval', 'growthTracker'];

function checkScale(name: string, value: unknown): number {
  const n = checkNumber(name, value);
  if (!(n > 0 && n < Infinity)) throw rangeError(name, 'a finite number > 0', value);
  return n;
}

function checkGrowthFactor(name: string, value: unknown): number {
  const n = checkNumber(name, value);
  if (!(n > 1 && n < Infinity)) throw rangeError(name, 'a finite number > 1', value);
  return n;
}

function checkBackoffFactor(name: string, value: unknown): number {
  const n = checkNumber(name, value);
  if (!(n > 0 && n < 1)) throw rangeError(name, 'a number in (0, 1)', value);
  return n;
}

/** Dynamic loss scaling (torch.cuda.amp.GradScaler) for {@link AdamW} and {@link Adam}. */
export class GradScaler {
  readonly enabled: boolean;
  #scale: number;
  #growthFactor: number;
  #backoffFactor: number;
  #growthInterval: number;
  #growthTracker = 0;

  constructor(options?: GradScalerOptions) {
    const o = options === undefined ? {} : checkObject('options', options);
    checkKnownKeys('options', o, OPTION_KEYS);
    const { initScale, growthFactor, backoffFactor, growthInterval, enabled } = o;
    this.enabled = enabled === undefined ? true : checkBoolean('options.enabled', enabled);
    this.#scale = initScale === undefined ? 2 ** 16 : checkScale('options.initScale', initScale);
    this.#growthFactor =
      growthFactor === undefined ? 2 : checkGrowthFactor('options.growthFactor', growthFactor);
    this.#backoffFactor =
      backoffFactor === undefined
        ? 0.5
        : checkBackoffFactor('options.backoffFactor', backoffFactor);
    this.#growthInterval =
      growthInterval === undefined
        ? 2000
        : checkInteger('options.growthInterval', growthInterval, 1);
  }

  /** The factor to multiply the loss (or the output gradient) by before backpropagation; 1 when
   * disabled. */
  get scale(): number {
    return this.enabled ? this.#scale : 1;
  }

  /**
   * `optimizer.step({ gradScale: scale, skipNonFinite: true, clipGradNorm })`, then updates the
   * scale from whether the step was skipped. The report's gradNorm is that of the unscaled
   * gradients. Disabled: a plain `optimizer.step({ clipGradNorm })`.
   */
  step(optimizer: Optimizer, options?: GradScalerStepOptions): StepReport {
    const stepOptions = this.#stepOptions(optimizer, options);
    const report = optimizer.step(stepOptions);
    this.#update(report);
    return report;
  }

  /** {@link step} with `optimizer.stepAsync`; the scale is updated when the step is done. */
  async stepAsync(optimizer: Optimizer, options?: GradScalerStepOptions): Promise<StepReport> {
    const stepOptions = this.#stepOptions(optimizer, options);
    const report = await optimizer.stepAsync(stepOptions);
    this.#update(report);
    return report;
  }

  /** A copy of the scaler's state (save it with the optimizer's checkpoint). */
  stateDict(): GradScalerStateDict {
    return {
      scale: this.#scale,
      growthFactor: this.#growthFactor,
      backoffFactor: this.#backoffFactor,
      growthInterval: this.#growthInterval,
      growthTracker: this.#growthTracker,
    };
  }

  /** Restores a {@link stateDict}; validated first, all or nothing. */
  loadStateDict(stateDict: GradScalerStateDict): void {
    const o = checkObject('stateDict', stateDict);
    checkKnownKeys('stateDict', o, STATE_KEYS);
    const { scale, growthFactor, backoffFactor, growthInterval, growthTracker } = o;
    const checkedScale = checkScale('stateDict.scale', scale);
    const checkedGrowthFactor = checkGrowthFactor('stateDict.growthFactor', growthFactor);
    const checkedBackoffFactor = checkBackoffFactor('stateDict.backoffFactor', backoffFactor);
    const checkedGrowthInterval = checkInteger('stateDict.growthInterval', growthInterval, 1);
    const checkedGrowthTracker = checkInteger('stateDict.growthTracker', growthTracker, 0);
    if (checkedGrowthTracker >= checkedGrowthInterval) {
      throw rangeError(
        'stateDict.growthTracker',
        `an integer below growthInterval (${checkedGrowthInterval})`,
        growthTracker,
      );
    }
    this.#scale = checkedScale;
    this.#growthFactor = checkedGrowthFactor;
    this.#backoffFactor = checkedBackoffFactor;
    this.#growthInterval = checkedGrowthInterval;
    this.#growthTracker = checkedGrowthTracker;
  }

  #stepOptions(
    optimizer: unknown,
    options: GradScalerStepOptions | undefined,
  ): { clipGradNorm?: number; gradScale?: number; skipNonFinite?: boolean } {
    if (!(optimizer instanceof Optimizer)) {
      throw typeError('optimizer', 'an optimizer of this package (AdamW, Adam, ...)', optimizer);
    }
    const o = options === undefined ? {} : checkObject('options', options);
    checkKnownKeys('options', o, ['clipGradNorm']);
    const { clipGradNorm } = o;
    const clip = clipGradNorm === undefined ? {} : { clipGradNorm: clipGradNorm as number };
    return this.enabled ? { ...clip, gradScale: this.#scale, skipNonFinite: true } : clip;
  }

  // torch's _amp_update_scale_: back off after a skipped step, grow after growthInterval clean
  // steps in a row (only to a finite scale).
  #update(report: StepReport): void {
    if (!this.enabled) return;
    if (report.skipped) {
      // A scale that reached 0 could never grow again; stay at the smallest one instead.
      const backedOff = this.#scale * this.#backoffFactor;
      if (backedOff > 0) this.#scale = backedOff;
      this.#growthTracker = 0;
      return;
    }
    this.#growthTracker += 1;
    if (this.#growthTracker === this.#growthInterval) {
      const grown = this.#scale * this.#growthFactor;
      if (grown < Infinity) this.#scale = grown;
      this.#growthTracker = 0;
    }
  }
}
