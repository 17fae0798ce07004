// Bitwise comparison of float arrays that stays fast on millions of elements (jest's toEqual walks
// typed arrays element by element) and says where the first difference is.

/** Raw bits of each array (copies, so later steps cannot change them). */
export function bitsOf(arrays: readonly Float32Array[]): Uint32Array[] {
  return arrays.map((a) => new Uint32Array(a.slice().buffer));
}

/** null if every array is bitwise equal to its counterpart, else where they first differ. */
export function firstBitDifference(
  actual: readonly Uint32Array[],
  expected: readonly Uint32Array[],
): string | null {
  if (actual.length !== expected.length) {
    return `${actual.length} arrays instead of ${expected.length}`;
  }
  for (const [k, a] of actual.entries()) {
    const e = expected[k]!;
    if (a.length !== e.length) return `array ${k}: length ${a.length} instead of ${e.length}`;
    if (
      Buffer.compare(
        Buffer.from(a.buffer, a.byteOffset, a.byteLength),
        Buffer.from(e.buffer, e.byteOffset, e.byteLength),
      ) === 0
    ) {
      continue;
    }
    const i = a.findIndex((bits, index) => bits !== e[index]);
    return `array ${k}[${i}]: 0x${a[i]!.toString(16)} instead of 0x${e[i]!.toString(16)}`;
  }
  return null;
}
