// The addon's additions for ZeRO-1 sharding (issue 16): a rank steps only its range of the params,
// through an ordinary plan over views of them and of a reduced gradient, and must get bitwise the
// unsharded step. So: a gradient factor the caller computed from the global norm (the control
// array's optionGivenGradFactor) is exactly the factor the fused step would have computed;
// reduceInRankOrder is the one fixed-order reduction of the ranks' gradients; gradBlockSums gives
// the canonical sum of squares in pieces that add up to gradNorm's exact double; and a tensor's
// stochastic-rounding element offset makes a slice round as the whole tensor does.
import { backend } from '../lib';
import { native, type NativeArray } from '../lib/core/native';
import { newControl, writeControl } from '../lib/train/step-options';
import { gaussian, mulberry32 } from './helpers/random';

const { fround } = Math;

const initialIsa = backend.isa;
afterAll(() => backend.setIsa(initialIsa));

const CONTROL = native.control;
const GRAD_FLOAT32 = 0;
const GRAD_BFLOAT16 = 1;
const GRAD_FLOAT16 = 2;

/** A copy of every byte of each array: what "bitwise the same" compares. */
function bytesOf(arrays: readonly (NativeArray | null)[]): Uint8Array[] {
  return arrays
    .filter((a): a is NativeArray => a !== null)
    .map((a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice());
}

/** null when every array is bytewise equal to its counterpart, else where they first differ. */
function firstByteDifference(actual: Uint8Array[], expected: Uint8Array[]): string | null {
  if (actual.length !== expected.length) return `${actual.length} arrays, not ${expected.length}`;
  for (const [k, a] of actual.entries()) {
    const e = expected[k]!;
    if (Buffer.compare(Buffer.from(a), Buffer.from(e)) === 0) continue;
    const i = a.findIndex((byte, index) => byte !== e[index]);
    return `array ${k}: byte ${i} is ${a[i]} instead of ${e[i]} (length ${a.length} / ${e.length})`;
  }
  return null;
}

/** The name and message of what `run` throws (an addon's errors come from another realm than
 * jest's, so toThrow(RangeError) cannot match them by constructor). */
function thrown(run: () => void): { name: string; message: string } {
  try {
    run();
  } catch (error) {
    const e = error as Error;
    return { name: e.name, message: e.message };
  }
  throw new Error('expected an error');
}

/** float32 -> bf16 bits by truncation (any bf16 value will do as test data). */
function bf16Of(x: number): number {
  const f = new Float32Array([x]);
  return new Uint32Array(f.buffer)[0]! >>> 16;
}

/** Random fp16 bits of moderate magnitude: sign, exponent 5..24, any mantissa. */
function randomF16(random: () => number): number {
  const sign = random() < 0.5 ? 0x8000 : 0;
  const exponent = 5 + Math.floor(random() * 20);
  return sign | (exponent << 10) | Math.floor(random() * 1024);
}

/** A gradient of `length` elements of `dtype`, scaled by `scale` (float32 and bf16 ones). */
function randomGrad(
  random: () => number,
  length: number,
  dtype: number,
  scale = 1,
): Float32Array | Uint16Array {
  const normal = gaussian(random);
  if (dtype === GRAD_FLOAT32) {
    return Float32Array.from({ length }, () => normal() * scale);
  }
  if (dtype === GRAD_BFLOAT16) return Uint16Array.from({ length }, () => bf16Of(normal() * scale));
  return Uint16Array.from({ length }, () => randomF16(random));
}

// ---------------------------------------------------------------------------------------------
// A plan of any op, built from its layout (native.ops) alone.

interface PlanSpec {
  op: string;
  lengths: readonly number[];
  gradDtypes: readonly number[];
  /** [batches, R, C] per tensor for a phased op, [0, 0, 0] for unfactored; absent: none. */
  shapes?: readonly (readonly [number, number, number])[];
  /** The run's flags word (one scalar set for every tensor). */
  flags: number;
  scalars: readonly number[];
  seed: number;
}

interface BuiltPlan {
  arrays: (NativeArray | null)[];
  run(threads: number, control?: Float64Array, tensorSeeds?: Uint32Array): void;
}

/** Fresh arrays for `spec` (param and state random, from its seed) and a plan over them. */
function buildPlan(spec: PlanSpec): BuiltPlan {
  const layout = native.ops[spec.op]!;
  const random = mulberry32(spec.seed);
  const normal = gaussian(random);
  const arrays: (NativeArray | null)[] = [];
  spec.lengths.forEach((n, k) => {
    const [batches, rows, cols] = spec.shapes?.[k] ?? [0, 0, 0];
    const factored = batches !== 0;
    layout.arrays.forEach((name, a) => {
      const presence = layout.optionalArrays[name];
      const wanted =
        presence === undefined ||
        (presence === 'factored' && factored) ||
        (presence === 'unfactored' && !factored) ||
        (presence !== 'factored' &&
          presence !== 'unfactored' &&
          presence !== 'tensor' &&
          (spec.flags & (layout.flags[presence] ?? 0)) !== 0);
      if (!wanted) {
        arrays.push(null);
        return;
      }
      const kind = layout.arrayLengths[a];
      const length =
        kind === 'param'
          ? n
          : kind === 'blocks'
            ? Math.ceil(n / layout.blockSize)
            : kind === 'rows'
              ? batches * rows
              : batches * cols;
      const type = layout.arrayTypes[a];
      if (name === 'grad') {
        arrays.push(randomGrad(random, n, spec.gradDtypes[k]!, 1e-2));
      } else if (type === 'float32') {
        // Second moments and absmaxes must be >= 0; the param and first moments may be anything.
        const positive = name !== 'param' && name !== 'expAvg';
        arrays.push(
          Float32Array.from({ length }, () => (positive ? 1e-4 * random() : 0.1 * normal())),
        );
      } else if (type === 'bfloat16') {
        arrays.push(
          Uint16Array.from({ length }, () =>
            bf16Of(name === 'expAvg' ? 1e-2 * normal() : 1e-4 * random()),
          ),
        );
      } else {
        arrays.push(Uint8Array.from({ length }, () => Math.floor(random() * 256)));
      }
    });
  });
  const shapes =
    spec.shapes === undefined ? undefined : Uint32Array.from(spec.shapes.flatMap((s) => [...s]));
  const dtypes = Uint8Array.from(spec.gradDtypes);
  const plan = native.createPlan(spec.op, arrays, dtypes, shapes);
  const scalars = Float64Array.from(spec.scalars);
  const flags = Uint32Array.of(spec.flags);
  const tensorSet = new Uint32Array(spec.lengths.length);
  return {
    arrays,
    run(threads, control, tensorSeeds) {
      native.runPlan(plan, scalars, flags, tensorSet, threads, control, tensorSeeds);
    },
  };
}

const ADAMW_SCALARS = [0.9, 0.1, 0.999, 0.001, 0.999, 0, -1e-3, 1e-8];
const LION_SCALARS = [0.9, 0.1, 0.99, 0.01, 0.999, -1e-4];
const ADAFACTOR_SCALARS = [0.8, 0.2, 1e-30, 1e-3, 1, 1e-2, 0.9, 0.1, 0];

// Lengths around the vector widths, the 256-element blocks and the norm's 4096-element blocks, and
// enough elements in total (> 2 * 16K) for two threads.
const LENGTHS = [40000, 3, 1, 4097, 256, 257, 1000];
const DTYPES = [GRAD_FLOAT32, GRAD_BFLOAT16, GRAD_FLOAT32, GRAD_FLOAT16, GRAD_FLOAT32, 0, 1];

const FACTOR_CASES: { name: string; spec: Omit<PlanSpec, 'seed'> }[] = [
  {
    name: 'adamw',
    spec: { op: 'adamw', lengths: LENGTHS, gradDtypes: DTYPES, flags: 1, scalars: ADAMW_SCALARS },
  },
  {
    name: 'adamwBfloat16',
    spec: {
      op: 'adamwBfloat16',
      lengths: LENGTHS,
      gradDtypes: DTYPES,
      flags: 0,
      scalars: ADAMW_SCALARS,
    },
  },
  {
    name: 'adamwBlockwise8 (maximize)',
    spec: {
      op: 'adamwBlockwise8',
      lengths: LENGTHS,
      gradDtypes: DTYPES,
      flags: 2,
      scalars: ADAMW_SCALARS,
    },
  },
  {
    name: 'lion',
    spec: { op: 'lion', lengths: LENGTHS, gradDtypes: DTYPES, flags: 0, scalars: LION_SCALARS },
  },
  {
    name: 'adafactor (factored and not)',
    spec: {
      op: 'adafactor',
      lengths: [40000, 3, 4097, 600],
      gradDtypes: [0, 1, 2, 0],
      shapes: [
        [1, 200, 200],
        [0, 0, 0],
        [0, 0, 0],
        [2, 15, 20],
      ],
      flags: 2,
      scalars: ADAFACTOR_SCALARS,
    },
  },
];

/** A control array asking for clipping to maxNorm with the gradients scaled by gradScale. */
function clipControl(maxNorm: number, gradScale: number): Float64Array {
  const control = new Float64Array(CONTROL.length);
  control[CONTROL.maxNorm] = maxNorm;
  control[CONTROL.gradScale] = gradScale;
  return control;
}

function givenControl(gradFactor: number): Float64Array {
  const control = new Float64Array(CONTROL.length);
  control[CONTROL.options] = CONTROL.optionGivenGradFactor;
  control[CONTROL.gradFactor] = gradFactor;
  return control;
}

/** The factor native/train-step.cc computes from the norm it measured, in the same doubles. */
function factorOf(gradNorm: number, maxNorm: number, gradScale: number): number {
  const clipCoef = maxNorm / (gradNorm + 1e-6);
  return clipCoef >= 1 ? 1 / gradScale : clipCoef / gradScale;
}

describe('optionGivenGradFactor', () => {
  test('is exported as native.control.optionGivenGradFactor = 4', () => {
    expect(CONTROL.optionGivenGradFactor).toBe(4);
  });

  describe.each(FACTOR_CASES)('$name', ({ spec }) => {
    test.each([
      // clipped, unscaled, and neither clipped nor scaled (factor 1: the plain kernel)
      { maxNorm: 0.05, gradScale: 1 },
      { maxNorm: 0.05, gradScale: 3 },
      { maxNorm: Infinity, gradScale: 1024 },
      { maxNorm: 1e9, gradScale: 1 },
    ])('maxNorm $maxNorm, gradScale $gradScale: the given factor is the computed one', (c) => {
      for (const threads of [1, 2]) {
        const reference = buildPlan({ ...spec, seed: 7 });
        const control = clipControl(c.maxNorm, c.gradScale);
        control[CONTROL.options] = CONTROL.optionMeasureNorm;
        reference.run(threads, control);
        expect(control[CONTROL.clipped]).toBe(c.maxNorm === 0.05 ? 1 : 0);
        const factor = factorOf(control[CONTROL.gradNorm]!, c.maxNorm, c.gradScale);

        const given = buildPlan({ ...spec, seed: 7 });
        const out = givenControl(factor);
        given.run(threads, out);
        expect(firstByteDifference(bytesOf(given.arrays), bytesOf(reference.arrays))).toBeNull();
        expect(out[CONTROL.gradFactor]).toBe(fround(factor));
        expect(out[CONTROL.gradFactor]).toBe(control[CONTROL.gradFactor]);
        expect(out[CONTROL.gradNorm]).toBeNaN();
        expect(out[CONTROL.skipped]).toBe(0);
        expect(out[CONTROL.clipped]).toBe(0);
        expect(out[CONTROL.nonFiniteTensor]).toBe(-1);
      }
    });

    test('a given factor of 1 is the plain step, bit for bit', () => {
      const plain = buildPlan({ ...spec, seed: 11 });
      plain.run(2);
      const given = buildPlan({ ...spec, seed: 11 });
      given.run(2, givenControl(1));
      expect(firstByteDifference(bytesOf(given.arrays), bytesOf(plain.arrays))).toBeNull();
      // and a factor that is not 1 does change the step (the comparison above can fail)
      const scaled = buildPlan({ ...spec, seed: 11 });
      scaled.run(2, givenControl(0.5));
      expect(firstByteDifference(bytesOf(scaled.arrays), bytesOf(plain.arrays))).not.toBeNull();
    });
  });

  test("writeControl writes it for a request's gradFactor, and only then", () => {
    const request = { maxNorm: 1, gradScale: 2, measureNorm: true, skipNonFinite: true };
    const given = writeControl(newControl(), { ...request, gradFactor: 0.125 });
    expect(given[CONTROL.options]).toBe(CONTROL.optionGivenGradFactor);
    expect(given[CONTROL.gradFactor]).toBe(0.125);
    const computed = writeControl(given, request);
    expect(computed[CONTROL.options]).toBe(CONTROL.optionMeasureNorm | CONTROL.optionSkipNonFinite);
    expect(computed[CONTROL.gradFactor]).toBe(0);
  });

  test('measures nothing: a NaN gradient neither skips nor names a tensor', () => {
    const spec = { ...FACTOR_CASES[0]!.spec, seed: 3 };
    const built = buildPlan(spec);
    (built.arrays[1] as Float32Array)[5] = NaN;
    const out = givenControl(0.25);
    built.run(1, out);
    expect(out[CONTROL.skipped]).toBe(0);
    expect(out[CONTROL.nonFiniteTensor]).toBe(-1);
    expect(out[CONTROL.gradNorm]).toBeNaN();
    expect(Number.isNaN((built.arrays[0] as Float32Array)[5])).toBe(true);
  });

  test.each([NaN, Infinity, -Infinity])(
    'a gradFactor of %p is a RangeError, and nothing is written',
    (gradFactor) => {
      const built = buildPlan({ ...FACTOR_CASES[0]!.spec, seed: 5 });
      const before = bytesOf(built.arrays);
      const error = thrown(() => built.run(1, givenControl(gradFactor)));
      expect(error.name).toBe('RangeError');
      expect(error.message).toMatch(
        /control\[4\] \(gradFactor\) must be a finite number with optionGivenGradFactor/,
      );
      expect(firstByteDifference(bytesOf(built.arrays), before)).toBeNull();
    },
  );

  test('combined with another option it is a RangeError, and nothing is written', () => {
    const built = buildPlan({ ...FACTOR_CASES[0]!.spec, seed: 5 });
    const before = bytesOf(built.arrays);
    for (const other of [CONTROL.optionMeasureNorm, CONTROL.optionSkipNonFinite]) {
      const control = givenControl(0.5);
      control[CONTROL.options] = CONTROL.optionGivenGradFactor | other;
      const error = thrown(() => built.run(1, control));
      expect(error.name).toBe('RangeError');
      expect(error.message).toMatch(/optionGivenGradFactor, alone/);
    }
    expect(firstByteDifference(bytesOf(built.arrays), before)).toBeNull();
  });
});
