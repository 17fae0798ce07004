// An independent reference for the lean-state step (issue 12), for tests only: the numeric
// definitions (docs/lean-state.md) written out element by element in TypeScript, with
// float32 rounding emulated by Math.fround exactly where the kernel rounds, so results can be
// compared bit for bit. Nothing here calls the addon or lib/.
//
// - The float32 update is the sequence of native/ops/adamw-math.h (one correctly rounded float32
//   operation at a time, no fusion), on scalars computed in float64 as PyTorch does in Python and
//   rounded to float32 once.
// - bf16: widen = bits << 16; RNE store (x + 0x7FFF + ((x >> 16) & 1)) >> 16; stochastic store
//   (x + r) >> 16 with 16 bits from the mix32 hash of (seed, param index, step, element); NaN 0x7FC0.
// - blockwise8: blocks of 256, one float32 absmax per block = max |new value|; the code of a value
//   is the exactly nearest map entry to fround(value / absmax), ties to the lower index, found by
//   brute force over all 256 codes; dequantize fround(map[code] * absmax). A non-finite gradient
//   or new moment leaves the param unchanged and zeroes the element's state.
import type { RefHyper } from './reference';

const { fround, imul, sqrt, abs } = Math;

export const CANONICAL_NAN_BITS = 0x7fc00000;
export const BF16_CANONICAL_NAN = 0x7fc0;
export const BLOCK = 256;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bitsOfFloat(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

export function floatOfBits(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}

/** The float32 the kernel stores for x: NaNs become the canonical NaN. */
export function canonicalBits(x: number): number {
  return Number.isNaN(x) ? CANONICAL_NAN_BITS : bitsOfFloat(x);
}

export function bf16Widen(bits: number): number {
  return floatOfBits((bits & 0xffff) << 16);
}

export function bf16Rne(x: number): number {
  if (Number.isNaN(x)) return BF16_CANONICAL_NAN;
  const bits = bitsOfFloat(x);
  return (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
}

/** r: 16 random bits. Non-NaN bits + r < 2^32, so uint32 arithmetic does not wrap. */
export function bf16Stochastic(x: number, r: number): number {
  if (Number.isNaN(x)) return BF16_CANONICAL_NAN;
  return (bitsOfFloat(x) + (r & 0xffff)) >>> 16;
}

/** Exact IEEE binary16 -> number (every binary16 is a float32). */
export function fp16Widen(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1024 + fraction) * 2 ** (exponent - 25);
}

/** "lowbias32" (the contract's mix32). */
export function mix32(value: number): number {
  let x = value >>> 0;
  x ^= x >>> 16;
  x = imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The stochastic-rounding key of param `paramIndex` at the step that takes it to `step`. */
export function srKey(seed: number, paramIndex: number, step: number): number {
  return mix32(mix32(mix32((seed ^ 0x9e3779b9) >>> 0) ^ paramIndex) ^ step);
}

/** The 32 random bits of element i of a tensor with key `key`. */
export function srBits(key: number, i: number): number {
  return mix32(key ^ imul(i, 0x9e3779b9));
}

export type GradDtype = 'float32' | 'bfloat16' | 'float16';
export type StateDtype = 'float32' | 'bfloat16' | 'blockwise8';

export function widenGrad(grad: Float32Array | Uint16Array, dtype: GradDtype, i: number): number {
  if (dtype === 'float32') return grad[i]!;
  return dtype === 'bfloat16' ? bf16Widen(grad[i]!) : fp16Widen(grad[i]!);
}

// ---------------------------------------------------------------------------------------------
// blockwise8

/** A map's values must be multiples of 2^-45 with |v| <= 1 (bitsandbytes' maps are: the smallest
 * magnitude is 3.25e-7 > 2^-22), so the sum of two has at most 46 significant bits and is exact in
 * double, and the midpoint test below is exact. */
function checkMap(map: Float32Array): void {
  for (const v of map) {
    if (abs(v) > 1 || !Number.isInteger(v * 2 ** 45)) {
      throw new Error(`map value ${v} is not a multiple of 2^-45 in [-1, 1]`);
    }
  }
}

/**
 * The index of the map value nearest to y in exact arithmetic, ties to the lower index, by brute
 * force over every code. |y - a| < |y - b| for a < b iff y < (a + b) / 2 (for a > b iff
 * y > (a + b) / 2), and (a + b) / 2 is exact in double for map values (checkMap), so no distance is
 * ever rounded.
 */
export function nearestCode(map: Float32Array, y: number): number {
  let best = 0;
  for (let k = 1; k < map.length; k++) {
    const a = map[k]!;
    const b = map[best]!;
    const middle = (a + b) / 2;
    if (a < b ? y < middle : y > middle) best = k;
  }
  return best;
}

export interface Quantized {
  codes: Uint8Array;
  absmax: Float32Array;
}

export function blockCount(n: number): number {
  return Math.ceil(n / BLOCK);
}

export function dequantize(map: Float32Array, q: Quantized, i: number): number {
  return fround(map[q.codes[i]!]! * q.absmax[Math.floor(i / BLOCK)]!);
}

/** Quantizes finite values[from, to) (one block) into q. */
export function quantizeBlock(
  map: Float32Array,
  values: Float32Array,
  from: number,
  to: number,
  q: Quantized,
): void {
  let absmax = 0;
  for (let i = from; i < to; i++) absmax = Math.max(absmax, abs(values[i]!));
  q.absmax[from / BLOCK] = absmax;
  for (let i = from; i < to; i++) {
    const y = absmax > 0 ? fround(values[i]! / absmax) : 0;
    q.codes[i] = nearestCode(map, y);
  }
}

export function zeroQuantized(map: Float32Array, n: number): Quantized {
  return {
    codes: new Uint8Array(n).fill(nearestCode(map, 0)),
    absmax: new Float32Array(blockCount(n)),
  };
}

// ---------------------------------------------------------------------------------------------
// The step

// The hyperparameters are the float64 reference's (helpers/reference.ts).
export type { RefHyper } from './reference';

/** The kernel's eight scalars for step `step`, computed in float64 and rounded to float32 once. */
export interface StepScalars {
  beta1: number;
  oneMinusBeta1: number;
  beta2: number;
  oneMinusBeta2: number;
  decay: number;
  l2: number;
  negStepSize: number;
  epsHat: number;
  coupled: boolean;
}

/** PyTorch's p -= (lr/bc1) m / (sqrt(v)/sqrt(bc2) + eps), written p += negStepSize m / (sqrt(v) +
 * epsHat) with negStepSize = -lr sqrt(bc2)/bc1, epsHat = eps sqrt(bc2) (native/ops/adamw-math.h). */
export function stepScalars(h: RefHyper, step: number): StepScalars {
  const bc1 = 1 - h.beta1 ** step;
  const sqrtBc2 = sqrt(1 - h.beta2 ** step);
  const coupled = !h.decoupled && h.weightDecay !== 0;
  return {
    beta1: fround(h.beta1),
    oneMinusBeta1: fround(1 - h.beta1),
    beta2: fround(h.beta2),
    oneMinusBeta2: fround(1 - h.beta2),
    decay: fround(h.decoupled ? 1 - h.lr * h.weightDecay : 1),
    l2: fround(coupled ? h.weightDecay : 0),
    negStepSize: fround(-(h.lr / bc1) * sqrtBc2),
    epsHat: fround(h.eps * sqrtBc2),
    coupled,
  };
}

/** One param's optimizer state in its own representation, like the optimizer's state(p). */
export type RefMoment = Float32Array | Uint16Array | Quantized;

export interface RefTensor {
  stateDtype: StateDtype;
  param: Float32Array;
  expAvg: RefMoment;
  expAvgSq: RefMoment;
  /** Present with amsgrad. */
  maxExpAvgSq?: RefMoment;
  step: number;
}

export interface Maps {
  signed: Float32Array;
  unsigned: Float32Array;
}

export function newRefTensor(
  param0: Float32Array,
  stateDtype: StateDtype,
  amsgrad: boolean,
  maps: Maps,
): RefTensor {
  const n = param0.length;
  checkMap(maps.signed);
  checkMap(maps.unsigned);
  const moment = (map: Float32Array): RefMoment =>
    stateDtype === 'float32'
      ? new Float32Array(n)
      : stateDtype === 'bfloat16'
        ? new Uint16Array(n)
        : zeroQuantized(map, n);
  return {
    stateDtype,
    param: param0.slice(),
    expAvg: moment(maps.signed),
    expAvgSq: moment(maps.unsigned),
    ...(amsgrad ? { maxExpAvgSq: moment(maps.unsigned) } : {}),
    step: 0,
  };
}

function readMoment(moment: RefMoment, map: Float32Array, i: number): number {
  if (moment instanceof Float32Array) return moment[i]!;
  if (moment instanceof Uint16Array) return bf16Widen(moment[i]!);
  return dequantize(map, moment, i);
}

export interface RefStepInput {
  grad: Float32Array | Uint16Array;
  gradDtype: GradDtype;
  hyper: RefHyper;
  /** With bfloat16 state: the tensor's stochastic-rounding key for this step (else RNE). */
  srKey?: number;
  /** Written with the RNE bf16 of each new param when given. */
  dataBf16?: Uint16Array;
}

/** One optimizer step of one tensor, in place. */
export function referenceStep(t: RefTensor, input: RefStepInput, maps: Maps): void {
  const { grad, gradDtype, hyper, srKey: key, dataBf16 } = input;
  t.step += 1;
  const c = stepScalars(hyper, t.step);
  const n = t.param.length;
  const amsgrad = t.maxExpAvgSq !== undefined;
  const newParam = new Float32Array(n);
  const newM = new Float32Array(n);
  const newV = new Float32Array(n);
  const newMax = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let g = widenGrad(grad, gradDtype, i);
    const gradFinite = Number.isFinite(g);
    if (hyper.maximize) g = -g;
    const p0 = t.param[i]!;
    let p = p0;
    if (c.coupled) g = fround(g + fround(c.l2 * p));
    else p = fround(p * c.decay);
    const m = fround(
      fround(c.beta1 * readMoment(t.expAvg, maps.signed, i)) + fround(c.oneMinusBeta1 * g),
    );
    const v = fround(
      fround(c.beta2 * readMoment(t.expAvgSq, maps.unsigned, i)) +
        fround(fround(c.oneMinusBeta2 * g) * g),
    );
    let s = v;
    if (amsgrad) {
      const old = readMoment(t.maxExpAvgSq!, maps.unsigned, i);
      s = Number.isNaN(old) ? old : old > v ? old : v; // NaN-propagating max, like torch.maximum
    }
    const denom = fround(fround(sqrt(s)) + c.epsHat);
    p = fround(p + fround(c.negStepSize * fround(m / denom)));
    if (
      t.stateDtype === 'blockwise8' &&
      !(gradFinite && Number.isFinite(m) && Number.isFinite(v) && Number.isFinite(s))
    ) {
      // bitsandbytes' rule: the element is skipped and its state restarts from zero.
      newParam[i] = p0;
      newM[i] = 0;
      newV[i] = 0;
      newMax[i] = 0;
    } else {
      newParam[i] = p;
      newM[i] = m;
      newV[i] = v;
      newMax[i] = s;
    }
  }
  const paramBits = new Uint32Array(t.param.buffer, t.param.byteOffset, n);
  for (let i = 0; i < n; i++) {
    paramBits[i] = canonicalBits(newParam[i]!);
    if (dataBf16) dataBf16[i] = bf16Rne(newParam[i]!);
  }
  const store = (moment: RefMoment, values: Float32Array, map: Float32Array, high: boolean) => {
    if (moment instanceof Float32Array) {
      const bits = new Uint32Array(moment.buffer, moment.byteOffset, n);
      for (let i = 0; i < n; i++) bits[i] = canonicalBits(values[i]!);
    } else if (moment instanceof Uint16Array) {
      for (let i = 0; i < n; i++) {
        if (key === undefined) {
          moment[i] = bf16Rne(values[i]!);
        } else {
          const r = srBits(key, i);
          moment[i] = bf16Stochastic(values[i]!, high ? r >>> 16 : r & 0xffff);
        }
      }
    } else {
      for (let from = 0; from < n; from += BLOCK) {
        quantizeBlock(map, values, from, Math.min(n, from + BLOCK), moment);
      }
    }
  };
  store(t.expAvg, newM, maps.signed, false);
  store(t.expAvgSq, newV, maps.unsigned, true);
  if (amsgrad) store(t.maxExpAvgSq!, newMax, maps.unsigned, true);
}
