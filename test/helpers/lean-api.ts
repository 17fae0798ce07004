// The lean-state surface of the public API (issue 12) as the lean tests use it, in one place: an
// optimizer built from '../../lib' with stateDtype / gradDtype / dataBf16, its state(p) and
// stateFloat32(p) read back as plain copies.
import { Adam, AdamW } from '../../lib';
import type { GradDtype, StateDtype } from './lean-reference';

export interface LeanParam {
  data: Float32Array;
  grad: Float32Array | Uint16Array;
  gradDtype?: GradDtype;
  dataBf16?: Uint16Array;
  name?: string;
}

export interface LeanHyper {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
  maximize: boolean;
  stateDtype?: StateDtype;
}

export interface LeanOptions extends LeanHyper {
  threads?: number;
  stochasticRounding?: boolean;
  seed?: number;
  min8bitSize?: number;
}

export type LeanMomentCopy =
  Float32Array | Uint16Array | { codes: Uint8Array; absmax: Float32Array };

export interface LeanStateCopy {
  step: number;
  dtype: StateDtype;
  expAvg: LeanMomentCopy;
  expAvgSq: LeanMomentCopy;
  maxExpAvgSq?: LeanMomentCopy;
}

export interface LeanOptimizer {
  step(): unknown;
  threads: number;
  state(param: LeanParam): unknown;
  stateFloat32(param: LeanParam): unknown;
}

export function createLeanOptimizer(
  decoupled: boolean,
  groups: (Partial<LeanHyper> & { params: LeanParam[] })[],
  options: LeanOptions,
): LeanOptimizer {
  const Optimizer = (decoupled ? AdamW : Adam) as unknown as new (
    groups: (Partial<LeanHyper> & { params: LeanParam[] })[],
    options: LeanOptions,
  ) => LeanOptimizer;
  return new Optimizer(groups, options);
}

function copyMoment(value: unknown, where: string): LeanMomentCopy {
  if (value instanceof Float32Array || value instanceof Uint16Array) return value.slice();
  const { codes, absmax } = (value ?? {}) as { codes?: unknown; absmax?: unknown };
  if (codes instanceof Uint8Array && absmax instanceof Float32Array) {
    return { codes: codes.slice(), absmax: absmax.slice() };
  }
  throw new Error(`${where} is neither a typed array nor { codes, absmax }`);
}

/** A copy of optimizer.state(param), checked to have the shape the contract gives it. */
export function leanState(optimizer: LeanOptimizer, param: LeanParam): LeanStateCopy {
  const s = optimizer.state(param) as Record<string, unknown>;
  const out: LeanStateCopy = {
    step: s.step as number,
    dtype: s.dtype as StateDtype,
    expAvg: copyMoment(s.expAvg, 'state.expAvg'),
    expAvgSq: copyMoment(s.expAvgSq, 'state.expAvgSq'),
  };
  if (s.maxExpAvgSq !== undefined) out.maxExpAvgSq = copyMoment(s.maxExpAvgSq, 'state.maxExpAvgSq');
  return out;
}

/** optimizer.stateFloat32(param): dequantized Float32Array copies of every moment. */
export function leanStateFloat32(
  optimizer: LeanOptimizer,
  param: LeanParam,
): { dtype: StateDtype; expAvg: Float32Array; expAvgSq: Float32Array; maxExpAvgSq?: Float32Array } {
  return optimizer.stateFloat32(param) as {
    dtype: StateDtype;
    expAvg: Float32Array;
    expAvgSq: Float32Array;
    maxExpAvgSq?: Float32Array;
  };
}
