// Float32 arithmetic as C++ compiled for x86-64 evaluates it, emulated in JavaScript doubles: each
// +, *, /, sqrt of float32 operands is Math.fround of the double result (a double holds every
// product of two float32s exactly, and the double rounding of +, /, sqrt is harmless because
// 53 >= 2 * 24 + 2), and a fused multiply-add, which one double operation cannot give, is
// computed exactly (see fmaFloat32). Also: an exact rounding of any a * b + c to float32 in BigInt,
// which is the independent check of fmaFloat32 (test/dynamic-maps.test.ts).

const { fround } = Math;

const scratch = new Float64Array(1);
const scratchBits = new BigUint64Array(scratch.buffer);

/**
 * float32 fma(a, b, c) = a * b + c rounded once: a, b, c must be float32 values. a * b is exact in
 * double; the sum is made exact as s + e (Knuth's TwoSum) and s is moved to the neighbouring double
 * with an odd significand when e != 0 ("round to odd"), after which one rounding to float32 is
 * correct: a double has more than 24 + 2 bits, so round-to-odd followed by rounding to the
 * narrower format equals the direct rounding (Boldo and Melquiond 2008).
 */
export function fmaFloat32(a: number, b: number, c: number): number {
  const product = a * b;
  const sum = product + c;
  const productPart = sum - c;
  const error = product - productPart + (c - (sum - productPart));
  if (error === 0 || !Number.isFinite(sum)) return fround(sum);
  scratch[0] = sum;
  if ((scratchBits[0]! & 1n) === 0n) {
    // error and sum have the same sign: the exact value is larger in magnitude than sum.
    scratchBits[0] = error > 0 === sum > 0 ? scratchBits[0]! + 1n : scratchBits[0]! - 1n;
  }
  return fround(scratch[0]);
}

/** The exact value of a finite float32 x as integer * 2^-149 (every float32 is a multiple). */
function float32Units(x: number): bigint {
  // |x| < 2^128 and a multiple of 2^-149, so x * 2^149 is an integer of at most 277 bits; doubles
  // cannot hold it, so it is built from the significand and exponent.
  if (x === 0) return 0n;
  const bits = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  const exponent = (bits >>> 23) & 0xff;
  const fraction = bits & 0x7fffff;
  const significand = BigInt(exponent === 0 ? fraction : fraction | 0x800000);
  const shift = BigInt(exponent === 0 ? 0 : exponent - 1);
  const magnitude = significand << shift;
  return bits >>> 31 === 1 ? -magnitude : magnitude;
}

/**
 * a * b + c for finite float32 a, b, c, computed exactly in BigInt and rounded to nearest-even
 * float32 by hand (subnormals and overflow to +-Inf included). Slow; for checking fmaFloat32.
 */
export function exactFmaFloat32(a: number, b: number, c: number): number {
  // Units of 2^-298: a product of two multiples of 2^-149, and c scaled up to match.
  const exact = float32Units(a) * float32Units(b) + (float32Units(c) << 149n);
  if (exact === 0n) {
    // An exact zero: -0 only when both a * b and c are -0 (IEEE's rule for round to nearest).
    const productNegative = (a < 0 || Object.is(a, -0)) !== (b < 0 || Object.is(b, -0));
    return productNegative && Object.is(c, -0) ? -0 : 0;
  }
  const negative = exact < 0n;
  const magnitude = negative ? -exact : exact;
  // The result's last significand bit has weight 2^(top - 23) for a normal result, where 2^top is
  // the leading bit of the value; never below 2^-149 (subnormals).
  const top = magnitude.toString(2).length - 1 - 298;
  const lsbExponent = Math.max(top - 23, -149);
  const drop = BigInt(lsbExponent + 298);
  let kept = magnitude >> drop;
  const remainder = magnitude - (kept << drop);
  const half = 1n << (drop - 1n);
  if (remainder > half || (remainder === half && (kept & 1n) === 1n)) kept += 1n;
  // kept * 2^lsbExponent is exact in double when it fits (kept <= 2^24), and overflows to Infinity
  // past the float32 range through fround.
  const value = Number(kept) * 2 ** lsbExponent;
  return fround(negative ? -value : value);
}
