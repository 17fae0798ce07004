// simd-adamw: the AdamW/Adam optimizer step for Float32Arrays, in a SIMD native kernel.
//
// Public API. lib/optimizer.ts holds the classes, lib/functional.ts the stateless step,
// lib/memory.ts the memory accounting, lib/backend.ts the kernel selection, lib/checkpoint.ts and
// lib/safetensors.ts the state dicts and checkpoint files; lib/train-step.ts, lib/grad-norm.ts,
// lib/grad-scaler.ts, lib/schedules.ts and lib/weight-decay.ts the training-loop utilities.
export { Adam, AdamBase, AdamW } from './optimizer';
export type {
  OptimizerOptions,
  OptimizerParamGroup,
  Param,
  ParamGroup,
  ParamState,
} from './optimizer';
export type { Hyper } from './hyperparameters';
export type {
  LrScheduleStateDict,
  OptimizerKind,
  OptimizerStateDict,
  ParamGroupStateDict,
  ParamStateDict,
} from './checkpoint';
export { SafetensorsError } from './safetensors';
export { adamwStep, adamwStepAsync } from './functional';
export type { AdamwStepOptions } from './functional';
export { estimateMemory } from './memory';
export type { MemoryBreakdown, MemoryEstimateOptions, MemoryReport } from './memory';
export { backend } from './backend';
export type { Backend, IsaName } from './backend';
export type { StepOptions, StepReport } from './train-step';
export { gradNorm } from './grad-norm';
export { GradScaler } from './grad-scaler';
export type { GradScalerOptions, GradScalerStateDict, GradScalerStepOptions } from './grad-scaler';
export { constant, cosineWithWarmup, linearWarmup, lrFactor, stepDecay } from './schedules';
export type {
  ConstantSchedule,
  CosineWithWarmupSchedule,
  LinearWarmupSchedule,
  LrSchedule,
  StepDecaySchedule,
} from './schedules';
export { isBiasOrNorm, noDecay } from './weight-decay';
