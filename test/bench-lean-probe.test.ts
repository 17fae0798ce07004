// The lean-state roofline probes of the bench addon (native/bench/lean-probes.cc) must really move
// the bytes bench/RESULTS.md says they move: every pass reads and writes param, both moments (bf16
// bits or 8-bit codes) and, with codes, both absmax arrays, on every element and block, partial
// blocks and thread parts included, while reading every gradient element (f32 or bf16). They run
// here with delta = 1, so each pass leaves a mark: p += widen(g), m += 1, v += 1, absmax += 1. The
// Lion probes (one moment, float32 state too) are held to the same.
import { benchNative, type LeanProbe } from '../bench/bench-native';

const f = Math.fround;

/** bf16 bits (the upper half of each float32) and their exact widening, for `values`. */
function bf16Of(values: Float32Array): { bits: Uint16Array; widened: Float32Array } {
  const words = new Uint32Array(values.slice().buffer);
  const bits = Uint16Array.from(words, (w) => w >>> 16);
  const widened = new Float32Array(new Uint32Array(Array.from(bits, (b) => b << 16)).buffer);
  return { bits, widened };
}

interface Case {
  bf16Grads: boolean;
  codes: boolean;
}

function run(c: Case, probe: LeanProbe, length: number, passes: number, threads: number): string[] {
  const param = Float32Array.from({ length }, (_, i) => f(Math.sin(i) * 0.5));
  const gradF32 = Float32Array.from({ length }, (_, i) => f(Math.cos(i) * 0.25));
  const bf16 = bf16Of(gradF32);
  const grad = c.bf16Grads ? bf16.bits : gradF32;
  const widened = c.bf16Grads ? bf16.widened : gradF32;
  const state = (make: (i: number) => number): Uint8Array | Uint16Array =>
    c.codes
      ? Uint8Array.from({ length }, (_, i) => make(i))
      : Uint16Array.from({ length }, (_, i) => make(i));
  const expAvg = state((i) => i % 200);
  const expAvgSq = state((i) => (i * 7) % 250);
  const blocks = Math.ceil(length / 256);
  const absM = c.codes ? Float32Array.from({ length: blocks }, (_, b) => b) : null;
  const absV = c.codes ? Float32Array.from({ length: blocks }, (_, b) => 2 * b) : null;
  const before = { param: param.slice(), m: expAvg.slice(), v: expAvgSq.slice() };
  benchNative.benchLeanProbe(param, grad, expAvg, expAvgSq, absM, absV, passes, threads, probe, 1);
  const wrap = c.codes ? 256 : 65536;
  const failures: string[] = [];
  for (let i = 0; i < length && failures.length < 5; i++) {
    let p = before.param[i]!;
    const g = widened[i]!;
    for (let k = 0; k < passes; k++) p = f(p + g);
    if (param[i] !== p) failures.push(`param[${i}] ${param[i]} instead of ${p}`);
    if (expAvg[i] !== (before.m[i]! + passes) % wrap) failures.push(`expAvg[${i}] not moved`);
    if (expAvgSq[i] !== (before.v[i]! + passes) % wrap) failures.push(`expAvgSq[${i}] not moved`);
  }
  for (let b = 0; c.codes && b < blocks; b++) {
    if (absM![b] !== b + passes || absV![b] !== 2 * b + passes)
      failures.push(`absmax[${b}] not moved`);
  }
  return failures;
}

/** "TypeError: message" of what fn throws (the addon's errors come from another realm than jest's
 * TypeError, so toThrow(TypeError) cannot match them). */
function thrown(fn: () => void): string {
  try {
    fn();
  } catch (error) {
    return `${(error as Error).name}: ${(error as Error).message}`;
  }
  return 'nothing thrown';
}

describe('benchLeanProbe (bench-only lean-state roofline probes)', () => {
  test('has the probes the bench names', () => {
    expect(benchNative.leanProbes).toEqual([
      'lean',
      'lean-prefetch',
      'lean-prefetch-far',
      'lean-256',
      'lean-256-prefetch',
      'lean-256-prefetch-far',
    ]);
  });

  const cases: Case[] = [
    { bf16Grads: false, codes: false },
    { bf16Grads: true, codes: false },
    { bf16Grads: false, codes: true },
    { bf16Grads: true, codes: true },
  ];
  test.each(cases)('every element and block moves, %o', (c) => {
    const failures: string[] = [];
    for (const probe of benchNative.leanProbes) {
      // Short, partial-block, and long enough for the prefetching loops (2048 + 256 ahead) and for
      // several thread parts (one thread per 16K elements).
      for (const length of [1, 255, 257, 40000 + 77]) {
        for (const threads of [1, 3]) {
          for (const found of run(c, probe, length, 2, threads)) {
            failures.push(`${probe}, ${length} elements, ${threads} threads: ${found}`);
          }
        }
      }
    }
    expect(failures).toEqual([]);
  });

  test('refuses arrays of the wrong type, length or overlap before touching them', () => {
    const param = new Float32Array(300);
    const grad = new Float32Array(300);
    const codes = () => new Uint8Array(300);
    const absmax = () => new Float32Array(2);
    expect(
      thrown(() =>
        benchNative.benchLeanProbe(
          param,
          grad,
          codes(),
          new Uint16Array(300),
          absmax(),
          absmax(),
          1,
          1,
          'lean',
          1,
        ),
      ),
    ).toMatch(/^TypeError: Expected/);
    expect(
      thrown(() =>
        benchNative.benchLeanProbe(
          param,
          grad,
          codes(),
          codes(),
          new Float32Array(1),
          absmax(),
          1,
          1,
          'lean',
          1,
        ),
      ),
    ).toMatch(/^RangeError: (Expected|Unknown)/);
    expect(
      thrown(() =>
        benchNative.benchLeanProbe(param, grad, codes(), codes(), null, null, 1, 1, 'lean', 1),
      ),
    ).toMatch(/^TypeError: Expected/);
    const shared = new Uint16Array(300);
    expect(
      thrown(() =>
        benchNative.benchLeanProbe(param, grad, shared, shared, null, null, 1, 1, 'lean', 1),
      ),
    ).toMatch(/^RangeError: (Expected|Unknown)/);
    expect(
      thrown(() =>
        benchNative.benchLeanProbe(
          param,
          grad,
          new Uint16Array(300),
          new Uint16Array(300),
          null,
          null,
          1,
          1,
          'x' as LeanProbe,
          1,
        ),
      ),
    ).toMatch(/^RangeError: (Expected|Unknown)/);
    expect(param.every((p) => p === 0)).toBe(true);
  });
});

// Lion's probes (benchLionProbe, one moment): the same loops over param, grad and expAvg alone, the
// moment float32, bf16 bits or 8-bit codes with one absmax per block.
type LionState = 'float32' | 'bfloat16' | 'blockwise8';

function runLion(
  state: LionState,
  bf16Grads: boolean,
  probe: LeanProbe,
  length: number,
  passes: number,
  threads: number,
): string[] {
  const param = Float32Array.from({ length }, (_, i) => f(Math.sin(i) * 0.5));
  const gradF32 = Float32Array.from({ length }, (_, i) => f(Math.cos(i) * 0.25));
  const bf16 = bf16Of(gradF32);
  const grad = bf16Grads ? bf16.bits : gradF32;
  const widened = bf16Grads ? bf16.widened : gradF32;
  const expAvg =
    state === 'float32'
      ? Float32Array.from({ length }, (_, i) => i % 200)
      : state === 'bfloat16'
        ? Uint16Array.from({ length }, (_, i) => i % 200)
        : Uint8Array.from({ length }, (_, i) => i % 200);
  const blocks = Math.ceil(length / 256);
  const absmax = state === 'blockwise8' ? Float32Array.from({ length: blocks }, (_, b) => b) : null;
  const before = { param: param.slice(), m: expAvg.slice() };
  benchNative.benchLionProbe(param, grad, expAvg, absmax, passes, threads, probe, 1);
  const wrap = state === 'blockwise8' ? 256 : state === 'bfloat16' ? 65536 : Infinity;
  const failures: string[] = [];
  for (let i = 0; i < length && failures.length < 5; i++) {
    let p = before.param[i]!;
    const g = widened[i]!;
    for (let k = 0; k < passes; k++) p = f(p + g);
    if (param[i] !== p) failures.push(`param[${i}] ${param[i]} instead of ${p}`);
    if (expAvg[i] !== (before.m[i]! + passes) % wrap) failures.push(`expAvg[${i}] not moved`);
  }
  for (let b = 0; absmax !== null && b < blocks; b++) {
    if (absmax[b] !== b + passes) failures.push(`absmax[${b}] not moved`);
  }
  if (!grad.every((x, i) => x === (bf16Grads ? bf16.bits : gradF32)[i])) failures.push('grad');
  return failures;
}

describe('benchLionProbe (bench-only Lion roofline probes)', () => {
  const cases = (['float32', 'bfloat16', 'blockwise8'] as const).flatMap((state) =>
    [false, true].map((bf16Grads) => ({ state, bf16Grads })),
  );
  test.each(cases)('every element and block moves, %o', ({ state, bf16Grads }) => {
    const failures: string[] = [];
    for (const probe of benchNative.leanProbes) {
      for (const length of [1, 255, 257, 40000 + 77]) {
        for (const threads of [1, 3]) {
          for (const found of runLion(state, bf16Grads, probe, length, 2, threads)) {
            failures.push(`${probe}, ${length} elements, ${threads} threads: ${found}`);
          }
        }
      }
    }
    expect(failures).toEqual([]);
  });

  test('refuses arrays of the wrong type, length or overlap before touching them', () => {
    const param = new Float32Array(300);
    const grad = new Float32Array(300);
    const call = (
      expAvg: Float32Array | Uint16Array | Uint8Array,
      absmax: Float32Array | null,
      probe: LeanProbe = 'lean',
      g: Float32Array | Uint16Array = grad,
    ): string => thrown(() => benchNative.benchLionProbe(param, g, expAvg, absmax, 1, 1, probe, 1));
    expect(call(new Uint8Array(300), null)).toMatch(/^TypeError: Expected/);
    expect(call(new Float32Array(300), new Float32Array(2))).toMatch(/^TypeError: Expected null/);
    expect(call(new Uint8Array(300), new Float32Array(1))).toMatch(/^RangeError: Expected 2/);
    expect(call(new Float32Array(299), null)).toMatch(/^RangeError: Expected 300/);
    expect(call(new Int32Array(300) as unknown as Float32Array, null)).toMatch(/^TypeError/);
    expect(call(param, null)).toMatch(/^RangeError: Expected separate memory/);
    expect(call(new Float32Array(300), null, 'x' as LeanProbe)).toMatch(/^RangeError: Unknown/);
    expect(call(new Float32Array(300), null, 'lean', new Float32Array(3))).toMatch(/^RangeError/);
    expect(param.every((p) => p === 0)).toBe(true);
  });
});
