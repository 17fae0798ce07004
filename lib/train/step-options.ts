// A training step beyond the bare update: global-norm clipping, loss-scale unscaling and the
// non-finite skip, their validation, and the report a step returns.
//
// All of it runs in the step's own native call: one read-only pass over the
// gradients for the norm (only when clipping or the skip asks for it), then the update, which
// multiplies each gradient by clipCoef / gradScale as it reads it. The gradients are never written.

import { checkBoolean, checkNumber, checkObject } from '../core/checks';
import { checkKnownKeys, rangeError } from '../core/errors';
import { native } from '../core/native';
import type { AnyParam } from '../optim/params';

/** Options of `step()` / `stepAsync()` (and of `adamwStep`) for training loops. */
export interface StepOptions {
  /**
   * Clip the global L2 norm of the (unscaled) gradients of the step to this value, as
   * `torch.nn.utils.clip_grad_norm_(params, clipGradNorm)`: when the norm exceeds it, every
   * gradient is multiplied by `clipGradNorm / (norm + 1e-6)` as the update reads it (the `grad`
   * arrays themselves are not written). `Infinity` measures the norm without clipping.
   */
  clipGradNorm?: number;
  /**
   * The factor the gradients carry from a scaled loss (mixed-precision training); the update
   * divides it out as it reads them, and `gradNorm` is reported unscaled. Default 1.
   */
  gradScale?: number;
  /**
   * If any gradient of the step is NaN or +-Infinity, change nothing (params, moments, step counts
   * and the schedule's position) and report `skipped: true`. Default false: NaN and Inf propagate
   * as in PyTorch.
   */
  skipNonFinite?: boolean;
}

/** Options of an optimizer's `step()` / `stepAsync()`: the step options and the params to leave out. */
export interface OptimizerStepOptions extends StepOptions {
  /**
   * Params of this optimizer that take no part in this step, as PyTorch's params whose `grad` is
   * None: their `data`, `grad` and `dataBf16` are not read (they may be stale, detached or
   * anything), and their data, state tensors and step count do not change. The gradient norm
   * (`clipGradNorm`, `skipNonFinite`) is over the other params' gradients only, and those params
   * get the same bits as from an optimizer holding only them. A param listed twice is skipped
   * once. With every param skipped nothing changes but the schedule's position (it is a step of
   * the loop), and the report says gradNorm 0 (when measured), clipped false, skipped false.
   */
  skip?: Iterable<AnyParam>;
}

/** What a step did. */
export interface StepReport {
  /**
   * The L2 norm of all of the step's gradients, unscaled (divided by `gradScale`), computed in
   * double precision in an order that does not depend on the CPU or the thread count; NaN or
   * Infinity if a gradient is. null when no option asked for it (`clipGradNorm` or
   * `skipNonFinite`): then no extra pass runs.
   */
  gradNorm: number | null;
  /** Whether the gradients were scaled down by clipping. */
  clipped: boolean;
  /** Whether the step was skipped (nothing changed) because a gradient was NaN or Inf. */
  skipped: boolean;
  /** Why the step was skipped, naming the first parameter with a non-finite gradient. */
  reason?: string;
  /**
   * The learning rate of this step: paramGroups[0]'s (every group's lr is in `paramGroups`).
   * For `adamwStep`, its `lr` option.
   */
  lr: number;
}

/** A validated request, in the form the native step reads. */
export interface TrainStepRequest {
  maxNorm: number; // Infinity: no clipping
  gradScale: number;
  measureNorm: boolean;
  skipNonFinite: boolean;
  /** A gradient factor computed by the caller (a finite number; lib/distributed's ZeRO-1 step,
   * whose norm is of every rank's gradients): the step measures nothing and uses float32(gradFactor)
   * instead of the factor it would compute from the fields above, which it then does not read. */
  gradFactor?: number;
}

export const STEP_OPTION_KEYS = ['clipGradNorm', 'gradScale', 'skipNonFinite'] as const;
const OPTIMIZER_STEP_OPTION_KEYS = [...STEP_OPTION_KEYS, 'skip'] as const;

/** An optimizer step's options as validated here: the fused request (null for a bare step) and
 * `skip` as read (undefined without it), which only the optimizer can match to its params. */
export interface OptimizerStepRequest {
  readonly request: TrainStepRequest | null;
  readonly skip: unknown;
}

// A step without options, allocated once: the common step does no work for options it lacks.
const BARE_STEP: OptimizerStepRequest = Object.freeze({ request: null, skip: undefined });

// Where the native step reads the request and writes its result (native.control, declared once
// in the addon).
const CONTROL = native.control;

/** A new control array for the native fused step. */
export function newControl(): Float64Array {
  return new Float64Array(CONTROL.length);
}

/** Validates an optimizer step's options (each read once, `skip` included). */
export function checkOptimizerStepOptions(name: string, value: unknown): OptimizerStepRequest {
  if (value === undefined) return BARE_STEP;
  const o = checkObject(name, value);
  checkKnownKeys(name, o, OPTIMIZER_STEP_OPTION_KEYS);
  const request = checkStepOptionValues(name, o);
  return { request, skip: o.skip };
}

/** The step options among other options (adamwStep's); `o` is the caller's object, read once each. */
export function checkStepOptionValues(
  name: string,
  o: { clipGradNorm?: unknown; gradScale?: unknown; skipNonFinite?: unknown },
): TrainStepRequest | null {
  const { clipGradNorm, gradScale, skipNonFinite } = o;
  let maxNorm = Infinity;
  if (clipGradNorm !== undefined) {
    maxNorm = checkNumber(`${name}.clipGradNorm`, clipGradNorm);
    if (!(maxNorm >= 0)) {
      throw rangeError(`${name}.clipGradNorm`, 'a number >= 0 (Infinity: measure only)', maxNorm);
    }
  }
  let scale = 1;
  if (gradScale !== undefined) {
    scale = checkNumber(`${name}.gradScale`, gradScale);
    if (!(scale > 0 && scale < Infinity)) {
      throw rangeError(`${name}.gradScale`, 'a finite number > 0', scale);
    }
  }
  const skip =
    skipNonFinite === undefined ? false : checkBoolean(`${name}.skipNonFinite`, skipNonFinite);
  const measureNorm = clipGradNorm !== undefined || skip;
  if (!measureNorm && scale === 1) return null;
  return { maxNorm, gradScale: scale, measureNorm, skipNonFinite: skip };
}

/** Writes the request into a control array for the native step. */
export function writeControl(control: Float64Array, request: TrainStepRequest): Float64Array {
  control.fill(0);
  control[CONTROL.maxNorm] = request.maxNorm;
  control[CONTROL.gradScale] = request.gradScale;
  if (request.gradFactor !== undefined) {
    control[CONTROL.options] = CONTROL.optionGivenGradFactor;
    control[CONTROL.gradFactor] = request.gradFactor;
    return control;
  }
  control[CONTROL.options] =
    (request.measureNorm ? CONTROL.optionMeasureNorm : 0) |
    (request.skipNonFinite ? CONTROL.optionSkipNonFinite : 0);
  return control;
}

/** The report of a step that ran with `control`; `labelOf(k)` names the k-th tensor. */
export function readReport(
  control: Float64Array,
  request: TrainStepRequest,
  lr: number,
  labelOf: (tensor: number) => string,
): StepReport {
  const gradNorm = request.measureNorm ? control[CONTROL.gradNorm] : null;
  const report: StepReport = {
    gradNorm,
    clipped: control[CONTROL.clipped] === 1,
    skipped: control[CONTROL.skipped] === 1,
    lr,
  };
  if (report.skipped) {
    const tensor = control[CONTROL.nonFiniteTensor];
    report.reason =
      `non-finite gradient: ${labelOf(tensor)} holds a NaN or an infinity (gradient norm ` +
      `${String(gradNorm)}); the step was skipped and nothing changed`;
  }
  return report;
}

/** The report of a step with every param skipped: no gradient, so a norm of 0 when one is
 * measured, nothing clipped, and not the non-finite skip (the step counts in the schedule). */
export function emptyStepReport(request: TrainStepRequest | null, lr: number): StepReport {
  return { gradNorm: request?.measureNorm === true ? 0 : null, clipped: false, skipped: false, lr };
}

/** The report of a bare step. */
export function plainReport(lr: number): StepReport {
  return { gradNorm: null, clipped: false, skipped: false, lr };
}
