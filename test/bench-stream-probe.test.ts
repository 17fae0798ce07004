// The bench's roofline probe (native/bench/stream-probe.cc) must really move the step's bytes: it
// reads all four arrays and writes param, expAvg and expAvgSq on every element, including a partial
// vector at the end. A probe the compiler could shortcut would make every "fraction of roofline" in
// bench/RESULTS.md a lie, so its arithmetic is checked here, element by element.
import { native } from '../lib/core/native';

const KEEP = 0.5; // the probe's constants (gKeep, gMix in stream-probe.cc)
const MIX = 0.5;
const f = Math.fround;

function filled(length: number, seed: number): Float32Array {
  const array = new Float32Array(length);
  for (let i = 0; i < length; i++) array[i] = f(Math.sin(seed * 1000 + i) * 0.75);
  return array;
}

function expectedAfterPasses(
  param: Float32Array,
  grad: Float32Array,
  expAvg: Float32Array,
  expAvgSq: Float32Array,
  passes: number,
): [Float32Array, Float32Array, Float32Array] {
  const p = Float32Array.from(param);
  const m = Float32Array.from(expAvg);
  const v = Float32Array.from(expAvgSq);
  for (let pass = 0; pass < passes; pass++) {
    for (let i = 0; i < p.length; i++) {
      const g = grad[i]!;
      m[i] = f(f(KEEP * m[i]!) + f(MIX * g));
      v[i] = f(f(KEEP * v[i]!) + f(MIX * f(g * g)));
      p[i] = f(f(KEEP * p[i]!) + f(MIX * f(m[i]! + v[i]!)));
    }
  }
  return [p, m, v];
}

describe('benchStreamProbe (bench-only roofline probe)', () => {
  // The prefetching loop works a 64-byte line at a time while its prefetch stays inside the arrays
  // (length > 528), then finishes like the plain loop; lengths around those edges are covered.
  const lengths = [1, 15, 16, 17, 527, 528, 529, 544, 1000, 4099];
  it.each(
    lengths.flatMap((length) => [
      [length, false],
      [length, true],
    ]),
  )('reads and writes every element of %i (prefetch: %s)', (length, prefetch) => {
    const param = filled(length, 1);
    const grad = filled(length, 2);
    const expAvg = filled(length, 3);
    const expAvgSq = filled(length, 4).map(Math.abs);
    const gradBefore = Float32Array.from(grad);
    const [p, m, v] = expectedAfterPasses(param, grad, expAvg, expAvgSq, 3);
    native.benchStreamProbe(param, grad, expAvg, expAvgSq, 3, 1, prefetch);
    expect(param).toEqual(p);
    expect(expAvg).toEqual(m);
    expect(expAvgSq).toEqual(v);
    expect(grad).toEqual(gradBefore);
  });

  it.each([false, true])(
    'computes the same with every thread setting (prefetch: %s)',
    (prefetch) => {
      const length = 4 * 16384 + 5; // large enough for the step's split to use several threads
      const make = (): Float32Array[] => [1, 2, 3, 4].map((seed) => filled(length, seed));
      const single = make();
      const threaded = make();
      native.benchStreamProbe(single[0]!, single[1]!, single[2]!, single[3]!, 2, 1, prefetch);
      native.benchStreamProbe(
        threaded[0]!,
        threaded[1]!,
        threaded[2]!,
        threaded[3]!,
        2,
        4,
        prefetch,
      );
      expect(threaded).toEqual(single);
      const fresh = make();
      const [p] = expectedAfterPasses(fresh[0]!, fresh[1]!, fresh[2]!, fresh[3]!, 2);
      expect(threaded[0]).toEqual(p);
    },
  );

  it('keeps expAvgSq non-negative and finite, so the real step can run on the same arrays', () => {
    const length = 256;
    const arrays = [
      filled(length, 5),
      filled(length, 6),
      filled(length, 7),
      new Float32Array(length),
    ];
    native.benchStreamProbe(arrays[0]!, arrays[1]!, arrays[2]!, arrays[3]!, 200, 1, true);
    for (const array of arrays) expect(array.every(Number.isFinite)).toBe(true);
    expect(arrays[3]!.every((x) => x >= 0)).toBe(true);
  });

  // The addon's errors come from the main realm, not jest's sandbox, so they are matched by name and
  // message rather than by instanceof.
  type Call = (a: Float32Array[]) => void;
  const notFloat32 = new Float64Array(8) as unknown as Float32Array;
  it.each<[string, Call, string, RegExp]>([
    [
      'overlapping arrays',
      (a) => native.benchStreamProbe(a[0]!, a[0]!, a[2]!, a[3]!, 1, 1, false),
      'RangeError',
      /separate memory for param and grad/,
    ],
    [
      'unequal lengths',
      (a) => native.benchStreamProbe(a[0]!, a[1]!, a[2]!, a[3]!.subarray(1), 1, 1, false),
      'RangeError',
      /Expected 8 elements for expAvgSq but received 7/,
    ],
    [
      'a non-Float32Array',
      (a) => native.benchStreamProbe(a[0]!, a[1]!, a[2]!, notFloat32, 1, 1, false),
      'TypeError',
      /Float32Array for expAvgSq/,
    ],
    [
      'a fractional pass count',
      (a) => native.benchStreamProbe(a[0]!, a[1]!, a[2]!, a[3]!, 1.5, 1, false),
      'RangeError',
      /integer >= 1 for passes/,
    ],
    [
      'a missing prefetch flag',
      (a) =>
        (native.benchStreamProbe as (...args: unknown[]) => void)(a[0], a[1], a[2], a[3], 1, 1),
      'TypeError',
      /prefetch: boolean/,
    ],
    [
      'more threads than the pool allows',
      (a) => native.benchStreamProbe(a[0]!, a[1]!, a[2]!, a[3]!, 1, 257, false),
      'RangeError',
      /at most 256 for threads/,
    ],
    [
      'zero threads',
      (a) => native.benchStreamProbe(a[0]!, a[1]!, a[2]!, a[3]!, 1, 0, false),
      'RangeError',
      /integer >= 1 for threads/,
    ],
  ])('rejects %s before touching any array', (_what, call, name, message) => {
    const arrays = [1, 2, 3, 4].map((seed) => filled(8, seed));
    const before = arrays.map((a) => Float32Array.from(a));
    let thrown: unknown;
    try {
      call(arrays);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ name, message: expect.stringMatching(message) as unknown });
    expect(arrays).toEqual(before);
  });
});
