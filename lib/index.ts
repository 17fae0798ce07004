// simd-adamw: optimizer steps for Float32Arrays in a SIMD native kernel. The public API, re-exported
// from the layers (docs/architecture.md): core/ (the addon, the backend, errors and checks),
// optim/ (the spec, the generic optimizer, AdamW, Adam, Lion, Adafactor and CAME, the functional
// step, memory), train/ (step options, gradient norm, grad scaler, schedules, weight-decay masks),
// checkpoint/ (state dicts and files) and format/ (safetensors, strict JSON).
export { Optimizer } from './optim/optimizer';
export type {
  AnyOptimizer,
  AddedParamGroup,
  BaseParamState,
  CommonOptions,
  IterableParamGroup,
  LeanStateOptions,
  OptimizerClass,
  ParamGroupInput,
} from './optim/optimizer';
export { Adam, AdamBase, ADAM_SPEC, AdamW, ADAMW_SPEC } from './optim/adam';
export type {
  AdamHyperparameters,
  AdamStateOf,
  Hyper,
  OptimizerKind,
  OptimizerOptions,
  OptimizerParamGroup,
  OptimizerStateDict,
  ParamGroup,
  ParamGroupStateDict,
  ParamState,
  ParamStateOf,
  KeptStateDtype,
  ParamStateDict,
  ParamStateFloat32,
} from './optim/adam';
export { Lion, LION_SPEC } from './optim/lion';
export type {
  LionHyper,
  LionHyperparameters,
  LionOptimizerParamGroup,
  LionOptions,
  LionParamGroup,
  LionParamGroupStateDict,
  LionParamState,
  LionParamStateDict,
  LionParamStateFloat32,
  LionParamStateOf,
  LionStateDict,
  LionStateOf,
} from './optim/lion';
export { Adafactor, ADAFACTOR_SPEC } from './optim/adafactor';
export type {
  AdafactorHyper,
  AdafactorHyperparameters,
  AdafactorLiveGroup,
  AdafactorOptions,
  AdafactorParamGroup,
  AdafactorParamState,
  AdafactorStateDict,
} from './optim/adafactor';
export { CAME, CAME_SPEC } from './optim/came';
export type {
  CameHyper,
  CameHyperparameters,
  CameLiveGroup,
  CameOptions,
  CameParamGroup,
  CameParamState,
  CameStateDict,
} from './optim/came';
export type { AnyParam, GradArray, GradDtype, Param } from './optim/params';
export type { Blockwise8Tensor, StateArray } from './optim/state-storage';
export type {
  BaseHyperparameters,
  HyperparameterSchema,
  HyperparameterSpec,
  OptimizerSpec,
  QuantizationMap,
  StateDtype,
  StateDtypeOps,
  StateTensorSpec,
} from './optim/spec';
export { STATE_DTYPES } from './optim/spec';
export type { LiveGroup } from './optim/param-groups';
export type { GenericStateDict, LrScheduleStateDict } from './checkpoint/state-dict';
export { loadTensors, loadTensorsMetadata, saveTensors } from './checkpoint/tensors';
export type {
  LoadedTensor,
  LoadTensorsOptions,
  SaveTensorsOptions,
  TensorArray,
  TensorDtype,
  TensorsToSave,
  TensorToSave,
} from './checkpoint/tensors';
export { loadTraining, saveTraining } from './checkpoint/training';
export type { JsonValue, LoadedTraining, TrainingRun, TrainingTarget } from './checkpoint/training';
export { SafetensorsError } from './format/safetensors';
export { adamwStep, adamwStepAsync } from './optim/functional';
export type { AdamwStepOptions } from './optim/functional';
export { estimateMemory } from './optim/memory-estimate';
export type { EstimatedOptimizer, MemoryEstimateOptions } from './optim/memory-estimate';
export type { MemoryBreakdown, MemoryReport } from './optim/memory';
export { backend } from './core/backend';
export type { Backend, IsaName } from './core/backend';
export type { OptimizerStepOptions, StepOptions, StepReport } from './train/step-options';
export { gradNorm } from './train/grad-norm';
export { GradScaler } from './train/grad-scaler';
export type {
  GradScalerOptions,
  GradScalerStateDict,
  GradScalerStepOptions,
} from './train/grad-scaler';
export {
  constant,
  cosineWithWarmup,
  exponential,
  lambdaSchedule,
  linearWarmup,
  lrFactor,
  multiStep,
  oneCycle,
  reduceOnPlateau,
  stepDecay,
} from './train/schedules';
export type {
  ConstantSchedule,
  CosineWithWarmupSchedule,
  ExponentialSchedule,
  LambdaSchedule,
  LinearWarmupSchedule,
  LrSchedule,
  MultiStepSchedule,
  OneCycleSchedule,
  PlateauStateDict,
  ReduceOnPlateauSchedule,
  SavedLrSchedule,
  StepDecaySchedule,
} from './train/schedules';
export { isBiasOrNorm, noDecay } from './train/weight-decay';
export type { NoDecayGroup } from './train/weight-decay';
export { ZeroRedundancyOptimizer } from './distributed/zero';
export type { ShardableOptimizerClass, ZeroMemoryReport, ZeroOptions } from './distributed/zero';
export type {
  Communicator,
  ScalarReduceOp,
  Segment,
  ShardLayout,
} from './distributed/communicator';
export { createThreadGroup, joinThreadGroup } from './distributed/threads';
export type {
  SharedParamSpec,
  ThreadGroup,
  ThreadGroupHandle,
  ThreadGroupOptions,
} from './distributed/threads';
export { partitionTensors, PARTITION_ALIGNMENT } from './distributed/partition';
export type { PartitionMode } from './distributed/partition';
