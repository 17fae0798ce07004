// gradNorm (docs/training.md): the global L2 norm of gradients is the canonical
// double-precision sum of squares (blocks of 4096 per tensor, 16 interleaved partials, a fixed
// tree, blocks then tensors in order), bit for bit, on every kernel and thread count; it is within
// 1e-12 of a plain float64 sum; NaN/Inf anywhere make it NaN/Infinity; bad input is an error.
import { backend, gradNorm, type Param } from '../lib';
import { gaussian, mulberry32 } from './helpers/random';

const { sqrt } = Math;

const initialIsa = backend.isa;
afterAll(() => backend.setIsa(initialIsa));

/** The canonical order of native/grad-norm.h, written out in plain double arithmetic. */
function canonicalSumOfSquares(arrays: readonly Float32Array[]): number {
  let total = 0;
  for (const array of arrays) {
    let tensorSum = 0;
    for (let offset = 0; offset < array.length; offset += 4096) {
      const end = Math.min(array.length, offset + 4096);
      const partials = new Float64Array(16);
      for (let i = offset; i < end; i++) partials[(i - offset) % 16] += array[i]! * array[i]!;
      for (let half = 8; half >= 1; half /= 2) {
        for (let j = 0; j < half; j++) partials[j] = partials[j]! + partials[j + half]!;
      }
      tensorSum += partials[0]!;
    }
    total += tensorSum;
  }
  return total;
}

/** A plain left-to-right float64 sum: the value the canonical one approximates. */
function plainNorm(arrays: readonly Float32Array[]): number {
  let sum = 0;
  for (const array of arrays) for (const x of array) sum += x * x;
  return sqrt(sum);
}

/** Gradient-like arrays: gaussian values over 12 orders of magnitude (so the order of the sums
 * matters), as views at odd offsets into shared buffers. */
function makeGrads(lengths: readonly number[], seed: number): Float32Array[] {
  const random = mulberry32(seed);
  const normal = gaussian(random);
  return lengths.map((length, k) => {
    const offset = k % 5;
    const array = new Float32Array(length + offset + 3).subarray(offset, offset + length);
    for (let i = 0; i < length; i++) array[i] = normal() * 10 ** (12 * random() - 6);
    return array;
  });
}

// Lengths around the block size (4096) and the vector widths, an empty tensor, and enough
// elements in total (> 2 * 16K) for several threads.
const MODEL_LENGTHS = [70001, 4096, 4095, 4097, 0, 1, 15, 16, 17, 8193, 33, 20000, 65];

describe('gradNorm', () => {
  const grads = makeGrads(MODEL_LENGTHS, 1);

  test('is the canonical order of sums, bit for bit, and within 1e-12 of a plain float64 sum', () => {
    const norm = gradNorm(grads);
    expect(norm).toBe(sqrt(canonicalSumOfSquares(grads)));
    expect(Math.abs(norm - plainNorm(grads)) / plainNorm(grads)).toBeLessThan(1e-12);
    // The canonical order is not the plain one: the bitwise check above can fail.
    expect(sqrt(canonicalSumOfSquares(grads))).not.toBe(plainNorm(grads));
  });

  test.each(backend.available.map((isa) => [isa]))(
    '%s: the same bits on 1, 2, 3 and 8 threads as the canonical order',
    (isa) => {
      backend.setIsa(isa);
      const expected = sqrt(canonicalSumOfSquares(grads));
      for (const threads of [1, 2, 3, 8]) expect(gradNorm(grads, { threads })).toBe(expected);
    },
  );

  test('takes params (their grad) or Float32Arrays, mixed', () => {
    const params: Param[] = grads.map((grad) => ({ data: new Float32Array(grad.length), grad }));
    const expected = gradNorm(grads);
    expect(gradNorm(params)).toBe(expected);
    expect(gradNorm([params[0]!, ...grads.slice(1)])).toBe(expected);
  });

  test('is 0 for no gradients or empty ones', () => {
    expect(gradNorm([])).toBe(0);
    expect(gradNorm([new Float32Array(0), new Float32Array(0)])).toBe(0);
    expect(Object.is(gradNorm([new Float32Array(5)]), 0)).toBe(true);
  });

  test('squares cannot overflow: FLT_MAX everywhere is finite', () => {
    const max = new Float32Array(1000).fill(-3.4028234663852886e38);
    const norm = gradNorm([max]);
    expect(Number.isFinite(norm)).toBe(true);
    expect(Math.abs(norm / (sqrt(1000) * 3.4028234663852886e38) - 1)).toBeLessThan(1e-15);
  });

  test.each(backend.available.map((isa) => [isa]))(
    '%s: NaN anywhere gives NaN, Inf (without NaN) gives Infinity',
    (isa) => {
      backend.setIsa(isa);
      for (const [k, i] of [
        [0, 0],
        [0, 69999],
        [3, 4096],
        [5, 0],
        [12, 64],
      ] as const) {
        const copy = grads.map((g) => g.slice());
        copy[k]![i] = NaN;
        expect(gradNorm(copy)).toBeNaN();
        copy[k]![i] = -Infinity;
        expect(gradNorm(copy)).toBe(Infinity);
        copy[0]![1] = NaN;
        expect(gradNorm(copy, { threads: 3 })).toBeNaN();
      }
    },
  );

  test('bad input is a TypeError or RangeError naming it', () => {
    expect(() => gradNorm('x' as never)).toThrow(TypeError);
    expect(() => gradNorm([new Float32Array(2), new Float64Array(2) as never])).toThrow(
      /params\[1\]/,
    );
    expect(() => gradNorm([{ data: new Float32Array(2) } as never])).toThrow(/params\[0\]\.grad/);
    expect(() => gradNorm([new Float32Array(2)], { threads: 0 })).toThrow(RangeError);
    expect(() => gradNorm([new Float32Array(2)], { threads: 'x' as never })).toThrow(TypeError);
  });
});
