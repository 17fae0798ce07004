// adamwStep / adamwStepAsync: one stateless Adam/AdamW step on caller-owned arrays, in place. The
// classes (optim/adam.ts) run the same native op with the same scalars (adamStepScalars); this is
// for callers that keep their own state. Float32 state and gradients only: lean state (bfloat16,
// blockwise8), low-precision gradients and dataBf16 are the classes' (their state layout, per-tensor
// seeds and absmax arenas are the optimizer's to keep).
import {
  checkFloat32Array,
  checkNoOverlap,
  holdForAsyncStep,
  type NamedArray,
} from '../core/arrays';
import {
  checkBeta,
  checkBoolean,
  checkInteger,
  checkNonNegative,
  checkObject,
} from '../core/checks';
import { checkKnownKeys } from '../core/errors';
import { lengthOf } from '../core/intrinsics';
import { native, type NativePlan, opLayout } from '../core/native';
import { checkThreads, defaultThreads } from '../core/threads';
import {
  checkStepOptionValues,
  newControl,
  plainReport,
  readReport,
  type StepOptions,
  type StepReport,
  STEP_OPTION_KEYS,
  type TrainStepRequest,
  writeControl,
} from '../train/step-options';
import { ADAM_SPEC, ADAMW_SPEC } from './adam';
import type { AnyOptimizerSpec } from './spec';
import { scalarWriter } from './step-scalars';

/** Options of {@link adamwStep}. Unlike the classes, every hyperparameter is explicit. The
 * training-step options (clipGradNorm, gradScale, skipNonFinite) apply to this one tensor. */
export interface AdamwStepOptions extends StepOptions {
  /** This parameter's 1-based step count, including this step (PyTorch's state["step"] after += 1). */
  step: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Step along +grad. Default false. */
  maximize?: boolean;
  /** AMSGrad's running maximum of expAvgSq; passing it turns AMSGrad on. */
  maxExpAvgSq?: Float32Array;
  /** true (default): AdamW's decoupled decay. false: Adam, weightDecay added to the gradient. */
  decoupled?: boolean;
  /** Threads the step may use. Default: os.availableParallelism(). Small steps use one. */
  threads?: number;
}

const KNOWN_OPTIONS = [
  'step',
  'lr',
  'beta1',
  'beta2',
  'eps',
  'weightDecay',
  'maximize',
  'maxExpAvgSq',
  'decoupled',
  'threads',
  ...STEP_OPTION_KEYS,
];
const LAYOUT = opLayout(ADAMW_SPEC.ops.float32);
const writeScalarsOf = (spec: AnyOptimizerSpec) => scalarWriter(spec, LAYOUT);
// One scalar set, for the one tensor.
const TENSOR_SET = new Uint32Array(1);

/**
 * Applies one Adam/AdamW step in place: updates `param`, `expAvg`, `expAvgSq` (and
 * `options.maxExpAvgSq`) from `grad`, all Float32Arrays (float32 state only: for bfloat16 or
 * blockwise8 state, bf16/fp16 gradients or a bf16 copy of the params use the AdamW/Adam classes).
 * All arrays must have the same length and must not overlap. Throws TypeError/RangeError before
 * touching any array if an argument is invalid. Returns what the step did (with skipNonFinite, a NaN or Inf in `grad` leaves every array unchanged).
 */
export function adamwStep(
  param: Float32Array,
  grad: Float32Array,
  expAvg: Float32Array,
  expAvgSq: Float32Array,
  options: AdamwStepOptions,
): StepReport {
  const call = prepareCall(param, grad, expAvg, expAvgSq, options);
  native.runPlan(call.plan, call.scalars, call.flags, TENSOR_SET, call.threads, call.control);
  return reportOf(call);
}

/**
 * {@link adamwStep} off the JavaScript thread: the update runs on a worker thread and the promise
 * resolves with its report when it is done (it rejects, with nothing changed, on invalid
 * arguments). Do not read or write the arrays, nor start another step on them, until it settles.
 * Arrays over a resizable ArrayBuffer are refused, and the buffers are marked untransferable (see
 * holdForAsyncStep).
 */
export async function adamwStepAsync(
  param: Float32Array,
  grad: Float32Array,
  expAvg: Float32Array,
  expAvgSq: Float32Array,
  options: AdamwStepOptions,
): Promise<StepReport> {
  const call = prepareCall(param, grad, expAvg, expAvgSq, options);
  holdForAsyncStep(call.named);
  await native.runPlanAsync(
    call.plan,
    call.scalars,
    call.flags,
    TENSOR_SET,
    call.threads,
    call.control,
  );
  return reportOf(call);
}

interface NativeCall {
  plan: NativePlan;
  named: NamedArray[]; // the same arrays with their argument names
  scalars: Float64Array;
  flags: Uint32Array;
  threads: number;
  lr: number;
  // The training-step request and its control array, or undefined for the bare step.
  request: TrainStepRequest | null;
  control: Float64Array | undefined;
}

function reportOf(call: NativeCall): StepReport {
  if (call.request === null || call.control === undefined) return plainReport(call.lr);
  return readReport(call.control, call.request, call.lr, () => 'grad');
}

// Validates every argument and builds the native call; touches no array.
function prepareCall(
  param: Float32Array,
  grad: Float32Array,
  expAvg: Float32Array,
  expAvgSq: Float32Array,
  options: AdamwStepOptions,
): NativeCall {
  const o = checkObject('options', options);
  checkKnownKeys('options', o, KNOWN_OPTIONS);
  // Every option is read once, and all of them before any array is checked: a getter cannot hand
  // validation one value and the kernel another, nor detach or resize an array after its check.
  // From the first array check to the native call no code of the caller runs.
  const { step, lr, beta1, beta2, eps, weightDecay, maximize, maxExpAvgSq, decoupled, threads } = o;
  const checkedLr = checkNonNegative('options.lr', lr);
  const hyperparameters = {
    lr: checkedLr,
    betas: [checkBeta('options.beta1', beta1), checkBeta('options.beta2', beta2)],
    eps: checkNonNegative('options.eps', eps),
    weightDecay: checkNonNegative('options.weightDecay', weightDecay),
    amsgrad: maxExpAvgSq !== undefined,
    maximize: maximize === undefined ? false : checkBoolean('options.maximize', maximize),
  };
  const isDecoupled = decoupled === undefined ? true : checkBoolean('options.decoupled', decoupled);
  const stepCount = checkInteger('options.step', step, 1);
  const threadCount =
    threads === undefined ? defaultThreads() : checkThreads('options.threads', threads);
  const request = checkStepOptionValues('options', o);

  const length = lengthOf(checkFloat32Array('param', param));
  const arrays: NamedArray[] = [
    { name: 'param', array: param },
    { name: 'grad', array: checkFloat32Array('grad', grad, length) },
    { name: 'expAvg', array: checkFloat32Array('expAvg', expAvg, length) },
    { name: 'expAvgSq', array: checkFloat32Array('expAvgSq', expAvgSq, length) },
  ];
  const checkedMaxExpAvgSq =
    maxExpAvgSq === undefined
      ? null
      : checkFloat32Array('options.maxExpAvgSq', maxExpAvgSq, length);
  if (checkedMaxExpAvgSq !== null)
    arrays.push({ name: 'options.maxExpAvgSq', array: checkedMaxExpAvgSq });
  checkNoOverlap(arrays);

  const scalars = new Float64Array(LAYOUT.scalars.length);
  const spec = isDecoupled ? ADAMW_SPEC : ADAM_SPEC;
  const flags = new Uint32Array([writeScalarsOf(spec)(hyperparameters, stepCount, scalars, 0)]);
  // The op's arrays by name; any other optional array of it (paramBf16) is absent here.
  const given: Record<string, Float32Array | null> = {
    param,
    grad,
    expAvg,
    expAvgSq,
    maxExpAvgSq: checkedMaxExpAvgSq,
  };
  return {
    plan: native.createPlan(
      spec.ops.float32,
      LAYOUT.arrays.map((name) => given[name] ?? null),
    ),
    named: arrays,
    scalars,
    flags,
    threads: threadCount,
    lr: checkedLr,
    request,
    control: request === null ? undefined : writeControl(newControl(), request),
  };
}
