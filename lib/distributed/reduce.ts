// The two pieces of arithmetic ZeRO-1 does outside the optimizer's step, in JavaScript: the
// reduced gradient (ranks' gradients added in rank order) and the block sums of the canonical
// gradient norm (native/grad-norm.h). Both are bitwise the C++ definitions: JavaScript numbers are
// IEEE doubles, a float32 addition or division computed in double and rounded once to float32
// (Math.fround, or a Float32Array store) is the correctly rounded float32 result (53 >= 2 * 24 + 2
// bits), and a square of a float32 is exact in double.
import type { GradDtype } from '../optim/params';

// float32 values of every bfloat16 and float16 bit pattern (exact widenings), made on first use.
let bf16Table: Float32Array | null = null;
let fp16Table: Float32Array | null = null;

function widenTable(dtype: GradDtype): Float32Array | null {
  if (dtype === 'float32') return null;
  if (dtype === 'bfloat16') {
    if (bf16Table === null) {
      const bits = new Uint32Array(65536);
      for (let h = 0; h < 65536; h++) bits[h] = h << 16;
      bf16Table = new Float32Array(bits.buffer);
    }
    return bf16Table;
  }
  if (fp16Table === null) {
    fp16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1;
      const exponent = (h >> 10) & 0x1f;
      const fraction = h & 0x3ff;
      let value: number;
      if (exponent === 0) value = fraction * 2 ** -24;
      else if (exponent === 31) value = fraction === 0 ? Infinity : NaN;
      else value = (1024 + fraction) * 2 ** (exponent - 25);
      fp16Table[h] = sign * value;
    }
  }
  return fp16Table;
}

/**
 * out[i] = ((in_0[i] + in_1[i]) + ...) / divisor: float32 additions in input order, in_0 taken as
 * it is (a -0 stays -0), each input widened exactly from its dtype, then one float32 division when
 * divisor !== 1. Every input has out's length.
 */
export function reduceInRankOrder(
  out: Float32Array,
  inputs: readonly (Float32Array | Uint16Array)[],
  dtypes: readonly GradDtype[],
  divisor: number,
): void {
  const n = out.length;
  for (const [r, input] of inputs.entries()) {
    const table = widenTable(dtypes[r]);
    if (r === 0) {
      if (table === null) out.set(input);
      else for (let i = 0; i < n; i++) out[i] = table[input[i]];
    } else if (table === null) {
      for (let i = 0; i < n; i++) out[i] = out[i] + input[i];
    } else {
      for (let i = 0; i < n; i++) out[i] = out[i] + table[input[i]];
    }
  }
  if (divisor !== 1) for (let i = 0; i < n; i++) out[i] = out[i] / divisor;
}

const BLOCK = 4096;
const PARTIALS = 16;
const partials = new Float64Array(PARTIALS);

/**
 * The canonical block sums of each float32 array's squares, concatenated (native/grad-norm.h):
 * blocks of 4096 elements from its start (the last shorter), element i of a block added to
 * partial i % 16, the 16 partials folded 16 -> 8 -> 4 -> 2 -> 1.
 */
export function gradBlockSums(arrays: readonly Float32Array[]): Float64Array {
  let count = 0;
  for (const a of arrays) count += Math.ceil(a.length / BLOCK);
  const sums = new Float64Array(count);
  let b = 0;
  for (const a of arrays) {
    for (let start = 0; start < a.length; start += BLOCK) {
      const end = Math.min(a.length, start + BLOCK);
      partials.fill(0);
      for (let i = start; i < end; i++) {
        const x = a[i];
        partials[(i - start) & (PARTIALS - 1)] += x * x;
      }
      for (let half = PARTIALS / 2; half >= 1; half /= 2) {
        for (let j = 0; j < half; j++) partials[j] = partials[j] + partials[j + half];
      }
      sums[b++] = partials[0];
    }
  }
  return sums;
}
