// The lean-state surface of the public API (issue 12) as the lean tests use it, in one place, typed
// with the package's own exported types (a change to them breaks these tests at compile time): an
// AdamW or Adam from '../../lib' with stateDtype / gradDtype / dataBf16, and its state(p) read back
// as plain copies that later steps cannot change.
import {
  Adam,
  AdamW,
  type AnyParam,
  type Blockwise8Tensor,
  type OptimizerOptions,
  type ParamGroup,
  type ParamState,
  type ParamStateFloat32,
  type StateDtype,
} from '../../lib';

export type LeanParam = AnyParam;
export type LeanOptions = OptimizerOptions<StateDtype>;
export type LeanGroup = ParamGroup<StateDtype>;
export type LeanMomentCopy = Float32Array | Uint16Array | Blockwise8Tensor;

export interface LeanStateCopy {
  step: number;
  dtype: StateDtype;
  expAvg: LeanMomentCopy;
  expAvgSq: LeanMomentCopy;
  maxExpAvgSq?: LeanMomentCopy;
}

export type LeanOptimizer = AdamW<StateDtype> | Adam<StateDtype>;

export function createLeanOptimizer(
  decoupled: boolean,
  groups: LeanGroup[],
  options: LeanOptions,
): LeanOptimizer {
  return decoupled ? new AdamW<StateDtype>(groups, options) : new Adam<StateDtype>(groups, options);
}

function copyMoment(value: LeanMomentCopy): LeanMomentCopy {
  if (value instanceof Float32Array || value instanceof Uint16Array) return value.slice();
  return { codes: value.codes.slice(), absmax: value.absmax.slice() };
}

/** A copy of optimizer.state(param). */
export function leanState(optimizer: LeanOptimizer, param: LeanParam): LeanStateCopy {
  const s: ParamState = optimizer.state(param);
  const out: LeanStateCopy = {
    step: s.step,
    dtype: s.dtype,
    expAvg: copyMoment(s.expAvg),
    expAvgSq: copyMoment(s.expAvgSq),
  };
  if (s.maxExpAvgSq !== undefined) out.maxExpAvgSq = copyMoment(s.maxExpAvgSq);
  return out;
}

/** optimizer.stateFloat32(param): dequantized Float32Array copies of every moment. */
export function leanStateFloat32(optimizer: LeanOptimizer, param: LeanParam): ParamStateFloat32 {
  return optimizer.stateFloat32(param);
}
