// The lean-state ops through the binding (native/tests/lean-ops.h checks their arithmetic against a
// reference at the C++ level): every op with every grad dtype, flag set and thread count gives
// the same bits on every kernel this CPU runs; a 16-bit gradient's norm (gradNorm and the fused
// step's) equals the norm of its float32 widening bit for bit; stochastic rounding needs seeds and
// depends on nothing else (not on threads, not on how tensors are grouped into a plan).
import { native, type NativeArray, type NativeOpLayout } from '../lib/core/native';
import { mulberry32 } from './helpers/random';

const initialIsa = native.activeIsa();
afterAll(() => native.setIsa(initialIsa));

const SCALARS = [0.9, 0.1, 0.999, 0.001, 0.9999, 0.01, -1e-3, 1e-8];
const FLAGS = native.ops.adamw!.flags;

/** The float32 bits' top halves: bf16 bits of values near `source`. */
function bf16Of(source: Float32Array): Uint16Array {
  return new Uint16Array(
    new Uint32Array(source.buffer, source.byteOffset, source.length).map((x) => x >>> 16),
  );
}

/** binary16 by its definition (subnormals, Inf, NaN), for the widened reference. */
function decodeHalf(h: number): number {
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  const sign = h & 0x8000 ? -1 : 1;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

function randomFloats(length: number, seed: number, scale = 1): Float32Array {
  const random = mulberry32(seed);
  return Float32Array.from({ length }, () => (random() * 2 - 1) * scale);
}

/** One tensor's arrays for `layout`, from `seed`: every optional array present when `full`. */
function tensorArrays(
  layout: NativeOpLayout,
  length: number,
  seed: number,
  gradDtype: number,
): NativeArray[] {
  const blocks = Math.ceil(length / layout.blockSize);
  return layout.arrays.map((name, a): NativeArray => {
    const n = layout.arrayLengths[a] === 'blocks' ? blocks : length;
    const values = randomFloats(n, seed * 31 + a);
    const positive = values.map(Math.abs);
    switch (layout.arrayTypes[a]) {
      case 'grad':
        if (gradDtype === 0) return values;
        return gradDtype === 1
          ? bf16Of(values)
          : Uint16Array.from({ length: n }, (_, i) => (i * 7919 + seed) & 0x7bff);
      case 'bfloat16':
        return bf16Of(name === 'expAvg' || name === 'paramBf16' ? values : positive);
      case 'uint8':
        return Uint8Array.from({ length: n }, (_, i) => (i * 37 + seed) & 255);
      default:
        return name.endsWith('Absmax') ? positive : values;
    }
  });
}

function bytesOf(arrays: readonly NativeArray[]): Buffer {
  return Buffer.concat(
    arrays.map((array) => Buffer.from(array.buffer, array.byteOffset, array.byteLength)),
  );
}

interface LeanRun {
  op: string;
  gradDtype: number;
  flags: number;
  threads: number;
  scaled: boolean;
}

/** Runs one plan of three tensors (lengths around blocks and vector widths) and returns every byte. */
function runOnce(run: LeanRun, isa: string): Buffer {
  native.setIsa(isa);
  const layout = native.ops[run.op]!;
  const lengths = [37, 300, 70001];
  const tensors = lengths.map((length, k) => tensorArrays(layout, length, k + 1, run.gradDtype));
  const arrays = tensors.flatMap((t, k) =>
    t.map((array, a) => {
      const need = layout.optionalArrays[layout.arrays[a]!];
      if (need === 'tensor') return k === 1 ? null : array; // tensor 1 has no bf16 param copy
      if (need !== undefined && (run.flags & layout.flags[need]!) === 0) return null;
      return array;
    }),
  );
  const plan = native.createPlan(
    run.op,
    arrays,
    new Uint8Array(lengths.length).fill(run.gradDtype),
  );
  let control: Float64Array | undefined;
  if (run.scaled) {
    control = new Float64Array(native.control.length);
    control[native.control.maxNorm] = 1e-3; // clips: the gradient factor is not 1
    control[native.control.gradScale] = 1;
    control[native.control.options] = native.control.optionMeasureNorm;
  }
  native.runPlan(
    plan,
    new Float64Array(SCALARS.slice(0, layout.scalars.length)),
    new Uint32Array([run.flags]),
    new Uint32Array(lengths.length),
    run.threads,
    control,
    new Uint32Array([0x12345678, 0x9abcdef0, 0xdeadbeef]),
  );
  return bytesOf(arrays.filter((a): a is NativeArray => a !== null));
}

describe('every lean op gives the same bits on every kernel and thread count', () => {
  const isas = native.availableIsas();
  const cases: LeanRun[] = [];
  // The elementwise ops (the factored ones take shapes: native-factored.test.ts).
  const elementwise = Object.keys(native.ops).filter(
    (op) => !native.ops[op]!.arrayLengths.includes('rows'),
  );
  for (const op of elementwise) {
    // The op's own bits of these flag sets (a family without amsgrad or coupled just lacks them).
    const bits = native.ops[op]!.flags;
    const bitsOf = (names: string[]) => names.reduce((sum, name) => sum | (bits[name] ?? 0), 0);
    for (let gradDtype = 0; gradDtype < 3; gradDtype++) {
      for (const flags of [
        0,
        bitsOf(['amsgrad', 'maximize']),
        bitsOf(['coupled', 'stochasticRounding']),
        bitsOf(Object.keys(bits)),
      ]) {
        cases.push({ op, gradDtype, flags, threads: 1, scaled: (flags & 1) === 1 });
      }
    }
  }
  test.each(cases)('$op grad dtype $gradDtype flags $flags', (run) => {
    const reference = runOnce(run, 'scalar');
    for (const isa of isas) {
      for (const threads of [1, 2, 3]) {
        const got = runOnce({ ...run, threads }, isa);
        expect({ isa, threads, same: got.equals(reference) }).toEqual({ isa, threads, same: true });
      }
    }
  });
});

describe('16-bit gradients: the norm is that of their float32 widening', () => {
  const source = randomFloats(10000, 5, 100);
  const bf16 = bf16Of(source);
  const fp16 = Uint16Array.from(
    { length: 9000 },
    (_, i) => ((i * 40503) & 0x7bff) ^ (i & 1 ? 0x8000 : 0),
  );
  const widenedBf16 = new Float32Array(new Uint32Array(Array.from(bf16, (h) => h << 16)).buffer);
  const widenedFp16 = Float32Array.from(fp16, decodeHalf);

  test.each(native.availableIsas())('gradNorm on %s, 1 and 2 threads', (isa) => {
    native.setIsa(isa);
    const want = native.gradNorm([widenedBf16, widenedFp16], 1);
    for (const threads of [1, 2]) {
      expect(native.gradNorm([bf16, fp16], threads, Uint8Array.of(1, 2))).toBe(want);
    }
  });

  test('the fused step measures the same norm from bf16 grads', () => {
    const layout = native.ops.adamwBfloat16!;
    const n = bf16.length;
    const arrays = [new Float32Array(n), bf16, new Uint16Array(n), new Uint16Array(n), null, null];
    expect(layout.arrays.length).toBe(arrays.length);
    const control = new Float64Array(native.control.length);
    control[native.control.maxNorm] = Infinity;
    control[native.control.gradScale] = 1;
    control[native.control.options] = native.control.optionMeasureNorm;
    native.runPlan(
      native.createPlan('adamwBfloat16', arrays, Uint8Array.of(1)),
      new Float64Array(SCALARS),
      new Uint32Array(1),
      new Uint32Array(1),
      1,
      control,
    );
    expect(control[native.control.gradNorm]).toBe(native.gradNorm([widenedBf16], 1));
  });
});

describe('stochastic rounding', () => {
  const layout = native.ops.adamwBfloat16!;
  const n = 5000;
  const make = () => tensorArrays(layout, n, 9, 0).map((a, i) => (i === 4 || i === 5 ? null : a));

  test('needs tensorSeeds: RangeError, nothing written', () => {
    const arrays = make();
    const before = bytesOf(arrays.filter((a): a is NativeArray => a !== null));
    const plan = native.createPlan('adamwBfloat16', arrays);
    const run = () =>
      native.runPlan(
        plan,
        new Float64Array(SCALARS),
        Uint32Array.of(FLAGS.stochasticRounding!),
        new Uint32Array(1),
        1,
      );
    expect(run).toThrow(/needs tensorSeeds/);
    expect(bytesOf(arrays.filter((a): a is NativeArray => a !== null))).toEqual(before);
  });

  test('depends on the seed and on nothing else (not on how tensors are grouped)', () => {
    const step = (seed: number, alone: boolean): Buffer => {
      const arrays = make();
      const other = make();
      const all = alone ? arrays : [...other, ...arrays];
      const plan = native.createPlan('adamwBfloat16', all);
      const seeds = alone ? Uint32Array.of(seed) : Uint32Array.of(7, seed);
      native.runPlan(
        plan,
        new Float64Array(SCALARS),
        Uint32Array.of(FLAGS.stochasticRounding!),
        new Uint32Array(seeds.length),
        1,
        undefined,
        seeds,
      );
      return bytesOf(arrays.filter((a): a is NativeArray => a !== null));
    };
    expect(step(1, true).equals(step(1, false))).toBe(true);
    expect(step(1, true).equals(step(2, true))).toBe(false);
  });
});
