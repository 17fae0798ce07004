// Seeded pseudo-random test data: the same seed gives the same arrays on every run and machine, so
// a failing case (fast-check prints its seed) can be replayed exactly.

// Math is read once here: a global lookup inside a hot loop is ~8x slower in jest's vm sandbox.
const { cos, imul, log, sqrt, PI } = Math;

/** mulberry32: a tiny 32-bit generator; returns uniform numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal numbers (Box-Muller) from a uniform generator. */
export function gaussian(uniform: () => number): () => number {
  return () => sqrt(-2 * log(1 - uniform())) * cos(2 * PI * uniform());
}

/** The raw IEEE-754 bits of float32 values, as an independent copy. */
export function float32Bits(values: Float32Array): Uint32Array {
  return new Uint32Array(values.slice().buffer);
}

/** 0x-prefixed, 8 hex digits: how float32 bit patterns are shown in failure messages. */
export function hex(bits: number): string {
  return `0x${(bits >>> 0).toString(16).padStart(8, '0')}`;
}
