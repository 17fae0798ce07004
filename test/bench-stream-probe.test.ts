// The bench addon (simd_adamw_bench.node, native/bench/) must really do what the bench says it does.
// Every roofline probe reads all four arrays and writes param, expAvg and expAvgSq on every element,
// including partial vectors and blocks at the end: a probe the compiler could shortcut would make
// every "fraction of roofline" in bench/RESULTS.md a lie. And the plain C loop must compute the
// kernel's update bit for bit, or "ours vs the C loop" compares different arithmetic.
import { AdamW } from '../lib/index';
import { benchNative, type RooflineProbe } from '../bench/bench-native';
import { cLoopScalars } from '../bench/c-loop';

const KEEP = 0.5; // the AdamW-pattern probes' constants (gKeep, gMix in roofline-probes.cc)
const MIX = 0.5;
const f = Math.fround;

function filled(length: number, seed: number): Float32Array {
  const array = new Float32Array(length);
  for (let i = 0; i < length; i++) array[i] = f(Math.sin(seed * 1000 + i) * 0.75);
  return array;
}

function expectedAfterPasses(
  probe: RooflineProbe,
  param: Float32Array,
  grad: Float32Array,
  expAvg: Float32Array,
  expAvgSq: Float32Array,
  passes: number,
): [Float32Array, Float32Array, Float32Array] {
  const p = Float32Array.from(param);
  const m = Float32Array.from(expAvg);
  const v = Float32Array.from(expAvgSq);
  const pattern = probe.startsWith('adamw-pattern');
  for (let pass = 0; pass < passes; pass++) {
    for (let i = 0; i < p.length; i++) {
      const g = grad[i]!;
      if (pattern) {
        m[i] = f(f(KEEP * m[i]!) + f(MIX * g));
        v[i] = f(f(KEEP * v[i]!) + f(MIX * f(g * g)));
        p[i] = f(f(KEEP * p[i]!) + f(MIX * f(m[i]! + v[i]!)));
      } else {
        p[i] = f(p[i]! + g);
        m[i] = f(m[i]! + g);
        v[i] = f(v[i]! + f(g * g));
      }
    }
  }
  return [p, m, v];
}

const HYPER = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 } as const;
const SCALARS = cLoopScalars(HYPER, 1);

describe('benchRooflineProbe (bench-only roofline probes)', () => {
  it('has the probes the report names', () => {
    expect(benchNative.rooflineProbes).toEqual([
      'adamw-pattern',
      'adamw-pattern-prefetch',
      'adamw-pattern-256',
      'adamw-pattern-256-prefetch',
      'add',
      'add-prefetch',
      'add-256',
      'add-256-prefetch',
      'adamw-pattern-256-prefetch-far',
      'add-prefetch-far',
      'add-256-prefetch-far',
    ]);
  });

  // The prefetching loops work a line (pattern) or a 64-float block (add) at a time while their
  // prefetch stays inside the arrays (length > 528 or > 576), then finish like the plain loops;
  // lengths around those edges are covered.
  const lengths = [1, 15, 16, 17, 63, 64, 65, 527, 528, 529, 544, 575, 576, 577, 1000, 4099];
  it.each(
    lengths.flatMap((length) =>
      benchNative.rooflineProbes.map((probe) => [length, probe] as const),
    ),
  )('reads and writes every element of %i (%s)', (length, probe) => {
    const param = filled(length, 1);
    const grad = filled(length, 2);
    const expAvg = filled(length, 3);
    const expAvgSq = filled(length, 4).map(Math.abs);
    const gradBefore = Float32Array.from(grad);
    const [p, m, v] = expectedAfterPasses(probe, param, grad, expAvg, expAvgSq, 3);
    benchNative.benchRooflineProbe(param, grad, expAvg, expAvgSq, 3, 1, probe);
    expect(param).toEqual(p);
    expect(expAvg).toEqual(m);
    expect(expAvgSq).toEqual(v);
    expect(grad).toEqual(gradBefore);
  });

  it.each(benchNative.rooflineProbes)(
    'computes the same with every thread setting (%s)',
    (probe) => {
      const length = 4 * 16384 + 5; // large enough for the step's split to use several threads
      expect(benchNative.threadsFor(length, 4)).toBe(4);
      const make = (): Float32Array[] => [1, 2, 3, 4].map((seed) => filled(length, seed));
      const single = make();
      const threaded = make();
      benchNative.benchRooflineProbe(single[0]!, single[1]!, single[2]!, single[3]!, 2, 1, probe);
      benchNative.benchRooflineProbe(
        threaded[0]!,
        threaded[1]!,
        threaded[2]!,
        threaded[3]!,
        2,
        4,
        probe,
      );
      expect(threaded).toEqual(single);
      const fresh = make();
      const [p] = expectedAfterPasses(probe, fresh[0]!, fresh[1]!, fresh[2]!, fresh[3]!, 2);
      expect(threaded[0]).toEqual(p);
    },
  );

  it.each(benchNative.rooflineProbes)(
    'keeps the arrays finite and expAvgSq non-negative, so the step can run on them (%s)',
    (probe) => {
      const length = 256;
      const arrays = [
        filled(length, 5),
        filled(length, 6).map((g) => g * 0.01),
        filled(length, 7),
        new Float32Array(length),
      ];
      benchNative.benchRooflineProbe(arrays[0]!, arrays[1]!, arrays[2]!, arrays[3]!, 200, 1, probe);
      for (const array of arrays) expect(array.every(Number.isFinite)).toBe(true);
      expect(arrays[3]!.every((x) => x >= 0)).toBe(true);
    },
  );
  // The addon's errors come from the main realm, not jest's sandbox, so they are matched by name and
  // message rather than by instanceof.
  type Call = (a: Float32Array[]) => void;
  const notFloat32 = new Float64Array(8) as unknown as Float32Array;
  it.each<[string, Call, string, RegExp]>([
    [
      'overlapping arrays',
      (a) => benchNative.benchRooflineProbe(a[0]!, a[0]!, a[2]!, a[3]!, 1, 1, 'adamw-pattern'),
      'RangeError',
      /separate memory for param and grad/,
    ],
    [
      'unequal lengths',
      (a) => benchNative.benchRooflineProbe(a[0]!, a[1]!, a[2]!, a[3]!.subarray(1), 1, 1, 'add'),
      'RangeError',
      /Expected 8 elements for expAvgSq but received 7/,
    ],
    [
      'a non-Float32Array',
      (a) => benchNative.benchRooflineProbe(a[0]!, a[1]!, a[2]!, notFloat32, 1, 1, 'adamw-pattern'),
      'TypeError',
      /Float32Array for expAvgSq/,
    ],
    [
      'a fractional pass count',
      (a) => benchNative.benchRooflineProbe(a[0]!, a[1]!, a[2]!, a[3]!, 1.5, 1, 'adamw-pattern'),
      'RangeError',
      /integer >= 1 for passes/,
    ],
    [
      'a missing prefetch flag',
      (a) =>
        (benchNative.benchRooflineProbe as (...args: unknown[]) => void)(
          a[0],
          a[1],
          a[2],
          a[3],
          1,
          1,
        ),
      'TypeError',
      /probe: string/,
    ],
    [
      'an unknown probe',
      (a) =>
        benchNative.benchRooflineProbe(
          a[0]!,
          a[1]!,
          a[2]!,
          a[3]!,
          1,
          1,
          'copy' as unknown as RooflineProbe,
        ),
      'RangeError',
      /Unknown probe 'copy'/,
    ],
    [
      'more threads than the pool allows',
      (a) => benchNative.benchRooflineProbe(a[0]!, a[1]!, a[2]!, a[3]!, 1, 257, 'adamw-pattern'),
      'RangeError',
      /at most 256 for threads/,
    ],
    [
      'zero threads',
      (a) => benchNative.benchRooflineProbe(a[0]!, a[1]!, a[2]!, a[3]!, 1, 0, 'adamw-pattern'),
      'RangeError',
      /integer >= 1 for threads/,
    ],
    [
      'C loop: scalars that are not a Float64Array of 7',
      (a) => benchNative.benchCLoop(a[0]!, a[1]!, a[2]!, a[3]!, new Float64Array(6), 1, 1),
      'TypeError',
      /scalars: Float64Array\(7\)/,
    ],
    [
      'C loop: overlapping arrays',
      (a) => benchNative.benchCLoop(a[0]!, a[1]!, a[1]!, a[3]!, SCALARS, 1, 1),
      'RangeError',
      /separate memory for grad and expAvg/,
    ],
    [
      'C loop: zero passes',
      (a) => benchNative.benchCLoop(a[0]!, a[1]!, a[2]!, a[3]!, SCALARS, 0, 1),
      'RangeError',
      /integer >= 1 for passes/,
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

describe('benchCLoop (the plain C AdamW loop contender)', () => {
  it.each([1, 15, 16, 17, 1000, 4 * 16384 + 5])(
    'is bit for bit AdamW.step() over %i elements, steps 1 to 3, on 1 and 4 threads',
    (length) => {
      const grad = filled(length, 2).map((g) => g * 0.01);
      const ours = { data: filled(length, 1), grad };
      const { lr, beta1, beta2, eps, weightDecay } = HYPER;
      const optimizer = new AdamW([ours], {
        lr,
        betas: [beta1, beta2],
        eps,
        weightDecay,
        threads: 4,
      });
      const loop = [filled(length, 1), new Float32Array(length), new Float32Array(length)];
      for (let step = 1; step <= 3; step++) {
        optimizer.step();
        const scalars = cLoopScalars(HYPER, step);
        benchNative.benchCLoop(loop[0]!, grad, loop[1]!, loop[2]!, scalars, 1, step === 2 ? 4 : 1);
        const { expAvg, expAvgSq } = optimizer.state(ours);
        expect(loop[0]).toEqual(ours.data);
        expect(loop[1]).toEqual(expAvg);
        expect(loop[2]).toEqual(expAvgSq);
      }
    },
  );
});
