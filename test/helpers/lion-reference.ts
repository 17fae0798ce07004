// An independent reference for the Lion step, for tests only: the contract's definitions
// (/work/notes/i13-contract.md, "Lion family"; the golden-lean README's pseudo-code) element by
// element, float32 rounding emulated by Math.fround where the kernel rounds, the lean-state
// formats from helpers/lean-reference.ts (bf16 RNE / stochastic, blockwise8 with the signed map).
// Nothing here calls the addon or lib/.
//
//   g = -g with maximize;  p = p * decay;  c = beta1 * m + (1 - beta1) * g
//   p = p + (-lr) * sign(c)     (torch.sign: sign(+-0) = +-0, NaN stays NaN)
//   m = beta2 * m + (1 - beta2) * g
// blockwise8: a non-finite gradient or new moment keeps the param (no decay) and zeroes the state.
import {
  BLOCK,
  bf16Rne,
  bf16Stochastic,
  bf16Widen,
  canonicalBits,
  dequantize,
  type GradDtype,
  type Maps,
  type Quantized,
  quantizeBlock,
  srBits,
  type StateDtype,
  widenGrad,
  zeroQuantized,
} from './lean-reference';

const { fround } = Math;

export interface LionRefHyper {
  lr: number;
  beta1: number;
  beta2: number;
  weightDecay: number;
  maximize: boolean;
}

export type LionRefMoment = Float32Array | Uint16Array | Quantized;

export interface LionRefTensor {
  stateDtype: StateDtype;
  param: Float32Array;
  expAvg: LionRefMoment;
  step: number;
}

export function newLionRefTensor(
  param0: Float32Array,
  stateDtype: StateDtype,
  maps: Maps,
): LionRefTensor {
  const n = param0.length;
  return {
    stateDtype,
    param: param0.slice(),
    expAvg:
      stateDtype === 'float32'
        ? new Float32Array(n)
        : stateDtype === 'bfloat16'
          ? new Uint16Array(n)
          : zeroQuantized(maps.signed, n),
    step: 0,
  };
}

/** torch.sign. */
export function torchSign(x: number): number {
  if (Number.isNaN(x)) return NaN;
  return x > 0 ? 1 : x < 0 ? -1 : x;
}

export interface LionStepInput {
  grad: Float32Array | Uint16Array;
  gradDtype: GradDtype;
  hyper: LionRefHyper;
  /** Multiplies the gradient first (the fused clip / unscale), when given. */
  gradFactor?: number;
  /** With bfloat16 state: the tensor's stochastic-rounding key for this step (else RNE). */
  srKey?: number;
  /** Written with the RNE bf16 of each new param when given. */
  dataBf16?: Uint16Array;
}

/** One Lion step of one tensor, in place. */
export function lionReferenceStep(t: LionRefTensor, input: LionStepInput, maps: Maps): void {
  const { grad, gradDtype, hyper: h, gradFactor, srKey: key, dataBf16 } = input;
  t.step += 1;
  // The scalars, in float64 from the hyperparameters, rounded to float32 once.
  const beta1 = fround(h.beta1);
  const oneMinusBeta1 = fround(1 - h.beta1);
  const beta2 = fround(h.beta2);
  const oneMinusBeta2 = fround(1 - h.beta2);
  const decay = fround(1 - h.lr * h.weightDecay);
  const negLr = fround(-h.lr);
  const factor = gradFactor === undefined ? undefined : fround(gradFactor);
  const n = t.param.length;
  const m0 = t.expAvg;
  const newParam = new Float32Array(n);
  const newM = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const raw = widenGrad(grad, gradDtype, i);
    let g = factor === undefined ? raw : fround(raw * factor);
    if (h.maximize) g = -g;
    const m =
      m0 instanceof Float32Array
        ? m0[i]!
        : m0 instanceof Uint16Array
          ? bf16Widen(m0[i]!)
          : dequantize(maps.signed, m0, i);
    const p0 = t.param[i]!;
    const p = fround(p0 * decay);
    const c = fround(fround(beta1 * m) + fround(oneMinusBeta1 * g));
    const p1 = fround(p + fround(negLr * torchSign(c)));
    const m1 = fround(fround(beta2 * m) + fround(oneMinusBeta2 * g));
    if (t.stateDtype === 'blockwise8' && !(Number.isFinite(raw) && Number.isFinite(m1))) {
      newParam[i] = p0;
      newM[i] = 0;
    } else {
      newParam[i] = p1;
      newM[i] = m1;
    }
  }
  const paramBits = new Uint32Array(t.param.buffer, t.param.byteOffset, n);
  for (let i = 0; i < n; i++) {
    paramBits[i] = canonicalBits(newParam[i]!);
    if (dataBf16) dataBf16[i] = bf16Rne(newParam[i]!);
  }
  if (m0 instanceof Float32Array) {
    const bits = new Uint32Array(m0.buffer, m0.byteOffset, n);
    for (let i = 0; i < n; i++) bits[i] = canonicalBits(newM[i]!);
  } else if (m0 instanceof Uint16Array) {
    for (let i = 0; i < n; i++) {
      m0[i] =
        key === undefined ? bf16Rne(newM[i]!) : bf16Stochastic(newM[i]!, srBits(key, i) & 0xffff);
    }
  } else {
    for (let from = 0; from < n; from += BLOCK) {
      quantizeBlock(maps.signed, newM, from, Math.min(n, from + BLOCK), m0);
    }
  }
}
