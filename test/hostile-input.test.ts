// Hostile input: everything a caller can throw at the API, by accident or on purpose. Every case
// asserts a clear TypeError/RangeError (or the caller's own exception, for a getter that throws),
// that no array changed (no half-applied step), and, by running at all, that the process survived.
// `npm run test:sanitize` runs this file under ASan/UBSan too, where a stray write is a report.
import {
  Adam,
  AdamW,
  Optimizer,
  adamwStep,
  adamwStepAsync,
  type AdamwStepOptions,
  backend,
  type Param,
  type ParamGroup,
} from '../lib';
import { native, type NativePlan } from '../lib/core/native';
import { bitsOf, firstBitDifference } from './helpers/bits';
import { f32 } from './helpers/float32-state';

const OPTIONS: AdamwStepOptions = Object.freeze({
  step: 3,
  lr: 1e-2,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.1,
});

// Deterministic, non-trivial values: a step changes every element of every array.
function filled(length: number, seed: number): Float32Array {
  const array = new Float32Array(length);
  for (let i = 0; i < length; i++) array[i] = Math.sin(seed * 7.13 + i * 0.37) + 0.5 * seed;
  return array;
}

// The bits of every element; copying through the constructor reads the internal slots, not an own
// `length` or `buffer` property a test may have planted. A detached array has no bits.
function bits(array: Float32Array): number[] {
  if (array.byteLength === 0) return [];
  return Array.from(new Uint32Array(new Float32Array(array).buffer));
}

/** Records the bits of `arrays` now; the returned function asserts they are still the same. */
function unchanged(...arrays: Float32Array[]): () => void {
  const before = arrays.map(bits);
  return () => {
    expect(arrays.map(bits)).toEqual(before);
  };
}

/** Transfers `buffer` away (detaching it); returns the buffer that now owns its bytes. */
function detach(buffer: ArrayBufferLike): ArrayBuffer {
  return structuredClone(buffer, { transfer: [buffer as ArrayBuffer] }) as ArrayBuffer;
}

// Resizable ArrayBuffer (ES2024) is in Node 20 but not in the ES2022 lib this project compiles with.
interface ResizableArrayBuffer extends ArrayBuffer {
  resize(byteLength: number): void;
}
function resizableBuffer(byteLength: number, maxByteLength: number): ResizableArrayBuffer {
  const Resizable = ArrayBuffer as unknown as new (
    byteLength: number,
    options: { maxByteLength: number },
  ) => ResizableArrayBuffer;
  return new Resizable(byteLength, { maxByteLength });
}
interface GrowableSharedArrayBuffer extends SharedArrayBuffer {
  grow(byteLength: number): void;
}
function growableSharedBuffer(
  byteLength: number,
  maxByteLength: number,
): GrowableSharedArrayBuffer {
  const Growable = SharedArrayBuffer as unknown as new (
    byteLength: number,
    options: { maxByteLength: number },
  ) => GrowableSharedArrayBuffer;
  return new Growable(byteLength, { maxByteLength });
}

interface StepArrays {
  param: Float32Array;
  grad: Float32Array;
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}
function stepArrays(length: number): StepArrays {
  return {
    param: filled(length, 1),
    grad: filled(length, 2),
    expAvg: filled(length, 3),
    expAvgSq: filled(length, 4).map(Math.abs),
  };
}
function runStep(a: StepArrays, options: AdamwStepOptions = OPTIONS): void {
  adamwStep(a.param, a.grad, a.expAvg, a.expAvgSq, options);
}
/** The step of `a` on fresh copies, for comparing with a step that went through hostile objects. */
function expectedStep(a: StepArrays, options: AdamwStepOptions = OPTIONS): StepArrays {
  const copy = {
    param: a.param.slice(),
    grad: a.grad.slice(),
    expAvg: a.expAvg.slice(),
    expAvgSq: a.expAvgSq.slice(),
  };
  runStep(copy, options);
  return copy;
}
// Fast on millions of elements, and a failure names the first differing element instead of
// diffing whole arrays.
function expectSameBits(actual: StepArrays, expected: StepArrays): void {
  const lengths = [actual.param, actual.expAvg, actual.expAvgSq].map((a) => a.length);
  expect(lengths).toEqual([expected.param.length, expected.param.length, expected.param.length]);
  expect(
    firstBitDifference(
      bitsOf([actual.param, actual.expAvg, actual.expAvgSq]),
      bitsOf([expected.param, expected.expAvg, expected.expAvgSq]),
    ),
  ).toBeNull();
}

function param(length: number, seed: number, name?: string): Param {
  return {
    data: filled(length, seed),
    grad: filled(length, seed + 1),
    ...(name === undefined ? {} : { name }),
  };
}

// ---------------------------------------------------------------------------------------------
describe('adamwStep: a value that is not a Float32Array is a TypeError and changes nothing', () => {
  const uint8LookingLikeFloat32 = new Uint8Array(16);
  Object.setPrototypeOf(uint8LookingLikeFloat32, Float32Array.prototype);
  const wrongValues: [string, unknown, string][] = [
    ['a number', 4, '4 of type number'],
    ['a plain array', [1, 2, 3, 4], 'an Array of 4 elements'],
    ['a Float64Array', new Float64Array(4), 'a Float64Array of 4 elements'],
    ['a Uint16Array of the same byte length', new Uint16Array(8), 'a Uint16Array of 8 elements'],
    ['a DataView', new DataView(new ArrayBuffer(16)), 'a DataView of 16 bytes'],
    ['an ArrayBuffer', new ArrayBuffer(16), 'a ArrayBuffer'],
    ['null', null, 'null'],
    ['a string', 'four', "'four' of type string"],
    ['an array-like object', { length: 4, 0: 1, 1: 2, 2: 3, 3: 4 }, 'an object'],
    ['a Proxy of a Float32Array', new Proxy(new Float32Array(4), {}), 'a Proxy'],
    [
      'a Proxy whose traps throw',
      new Proxy(new Float32Array(4), {
        get() {
          throw new Error('trap');
        },
        getPrototypeOf() {
          throw new Error('trap');
        },
      }),
      'a Proxy',
    ],
    [
      'an object inheriting from Float32Array.prototype',
      Object.create(Float32Array.prototype),
      'a Float32Array',
    ],
    [
      'a Uint8Array with Float32Array.prototype',
      uint8LookingLikeFloat32,
      'a Uint8Array of 16 elements',
    ],
    [
      'an object whose constructor getter throws',
      {
        get constructor(): never {
          throw new Error('getter');
        },
      },
      'an object',
    ],
  ];
  const positions = ['param', 'grad', 'expAvg', 'expAvgSq', 'options.maxExpAvgSq'] as const;

  test.each(
    positions.flatMap((position) =>
      wrongValues.map(([what, value, described]) => [position, what, value, described] as const),
    ),
  )('%s: %s', (position, _what, value, described) => {
    const a = stepArrays(4);
    const maxExpAvgSq = filled(4, 5);
    const same = unchanged(a.param, a.grad, a.expAvg, a.expAvgSq, maxExpAvgSq);
    const args: unknown[] = [a.param, a.grad, a.expAvg, a.expAvgSq];
    const options: Record<string, unknown> = { ...OPTIONS, maxExpAvgSq };
    if (position === 'options.maxExpAvgSq') options.maxExpAvgSq = value;
    else args[positions.indexOf(position)] = value;
    expect(() => {
      adamwStep(
        args[0] as Float32Array,
        args[1] as Float32Array,
        args[2] as Float32Array,
        args[3] as Float32Array,
        options as unknown as AdamwStepOptions,
      );
    }).toThrow(new TypeError(`Expected a Float32Array for ${position} but received ${described}`));
    same();
  });

  test('a subclass of Float32Array is a Float32Array', () => {
    class Tensor extends Float32Array {}
    const a = stepArrays(5);
    const expected = expectedStep(a);
    const param = Tensor.from(a.param);
    adamwStep(param, a.grad, a.expAvg, a.expAvgSq, OPTIONS);
    expect(bits(param)).toEqual(bits(expected.param));
  });

  test('an own `length` property that lies does not fool the length check', () => {
    const a = stepArrays(4);
    const shortGrad = filled(2, 2);
    Object.defineProperty(shortGrad, 'length', { value: 4 });
    const same = unchanged(a.param, shortGrad, a.expAvg, a.expAvgSq);
    expect(() => {
      adamwStep(a.param, shortGrad, a.expAvg, a.expAvgSq, OPTIONS);
    }).toThrow(
      new RangeError(
        'Expected a Float32Array of 4 elements for grad but received a Float32Array of 2 elements',
      ),
    );
    same();
  });

  test('own `buffer`/`byteOffset` properties that lie do not hide an overlap', () => {
    const shared = filled(8, 1);
    const a = stepArrays(4);
    const grad = shared.subarray(2, 6);
    Object.defineProperty(grad, 'buffer', { value: new ArrayBuffer(16) });
    Object.defineProperty(grad, 'byteOffset', { value: 0 });
    const same = unchanged(shared, a.expAvg, a.expAvgSq);
    expect(() => {
      adamwStep(shared.subarray(0, 4), grad, a.expAvg, a.expAvgSq, OPTIONS);
    }).toThrow(/^Expected param and grad not to overlap in memory/);
    same();
  });
});

// ---------------------------------------------------------------------------------------------
describe('adamwStep options: wrong types are TypeErrors, bad values RangeErrors', () => {
  test.each([null, 3, 'options', [OPTIONS], new Float32Array(4)])('options = %p', (options) => {
    const a = stepArrays(3);
    const same = unchanged(a.param, a.grad, a.expAvg, a.expAvgSq);
    expect(() => {
      runStep(a, options as unknown as AdamwStepOptions);
    }).toThrow(TypeError);
    same();
  });

  const rangeCases: [string, unknown][] = [];
  for (const key of ['lr', 'eps', 'weightDecay'])
    for (const value of [NaN, Infinity, -Infinity, -1e-12, -Number.MAX_VALUE])
      rangeCases.push([key, value]);
  for (const key of ['beta1', 'beta2'])
    for (const value of [NaN, Infinity, -Infinity, 1, 1.5, -0.1]) rangeCases.push([key, value]);
  for (const value of [0, -1, 1.5, NaN, Infinity, 2 ** 53, Number.MAX_VALUE])
    rangeCases.push(['step', value]);

  test.each(rangeCases)('%s = %p is a RangeError naming it', (key, value) => {
    const a = stepArrays(3);
    const same = unchanged(a.param, a.grad, a.expAvg, a.expAvgSq);
    expect(() => {
      runStep(a, { ...OPTIONS, [key]: value });
    }).toThrow(RangeError);
    expect(() => {
      runStep(a, { ...OPTIONS, [key]: value });
    }).toThrow(`for options.${key} but received`);
    same();
  });

  const typeCases: [string, unknown][] = [];
  for (const key of ['lr', 'eps', 'weightDecay', 'beta1', 'beta2', 'step'])
    for (const value of ['0.1', 1n, null, true, [0.1], { valueOf: () => 0.1 }])
      typeCases.push([key, value]);
  for (const key of ['maximize', 'decoupled'])
    for (const value of [1, 'true', null]) typeCases.push([key, value]);

  test.each(typeCases)('%s = %p is a TypeError naming it', (key, value) => {
    const a = stepArrays(3);
    const same = unchanged(a.param, a.grad, a.expAvg, a.expAvgSq);
    expect(() => {
      runStep(a, { ...OPTIONS, [key]: value });
    }).toThrow(new RegExp(`^Expected .* for options\\.${key} but received`));
    expect(() => {
      runStep(a, { ...OPTIONS, [key]: value });
    }).toThrow(TypeError);
    same();
  });

  test('an unknown option is a TypeError', () => {
    const a = stepArrays(3);
    const same = unchanged(a.param, a.grad, a.expAvg, a.expAvgSq);
    expect(() => {
      runStep(a, { ...OPTIONS, learningRate: 0.1 } as AdamwStepOptions);
    }).toThrow(
      new TypeError(
        `Expected one of step, lr, beta1, beta2, eps, weightDecay, maximize, maxExpAvgSq, decoupled, threads, clipGradNorm, gradScale, skipNonFinite for the key options.learningRate but received an unknown key`,
      ),
    );
    same();
  });

  // Valid but extreme: the float32 scalars overflow to Inf or flush to 0, the results are NaN or
  // Inf; what matters is that nothing crashes and every kernel still agrees with the scalar one.
  const extremes: [string, Partial<AdamwStepOptions>][] = [
    ['lr = MAX_VALUE', { lr: Number.MAX_VALUE }],
    ['lr = MIN_VALUE (denormal)', { lr: Number.MIN_VALUE }],
    ['lr = 0', { lr: 0 }],
    ['eps = MAX_VALUE', { eps: Number.MAX_VALUE }],
    ['eps = 0', { eps: 0 }],
    ['weightDecay = MAX_VALUE', { weightDecay: Number.MAX_VALUE }],
    ['weightDecay = MAX_VALUE, Adam', { weightDecay: Number.MAX_VALUE, decoupled: false }],
    ['betas = 0', { beta1: 0, beta2: 0 }],
    ['betas just below 1', { beta1: 1 - 2 ** -53, beta2: 1 - 2 ** -53 }],
    ['step = 2^53 - 1', { step: Number.MAX_SAFE_INTEGER }],
    ['step = 1, beta1 just below 1', { step: 1, beta1: 1 - 2 ** -53 }],
  ];
  test.each(extremes)('%s: no crash, every kernel bitwise equal to scalar', (_name, extreme) => {
    const options = { ...OPTIONS, ...extreme };
    const results = backend.available.map((isa) => {
      backend.setIsa(isa);
      const a = stepArrays(37);
      const maxExpAvgSq = filled(37, 5).map(Math.abs);
      adamwStep(a.param, a.grad, a.expAvg, a.expAvgSq, { ...options, maxExpAvgSq });
      return [a.param, a.expAvg, a.expAvgSq, maxExpAvgSq].map(bits);
    });
    backend.setIsa(backend.available[0]!);
    for (const result of results) expect(result).toEqual(results[results.length - 1]);
  });
});

// ---------------------------------------------------------------------------------------------
describe('getters: each option is read once, and none can change an array after its check', () => {
  test('a getter that throws propagates its error and changes nothing', () => {
    const a = stepArrays(4);
    const same = unchanged(a.param, a.grad, a.expAvg, a.expAvgSq);
    const options = {
      ...OPTIONS,
      get lr(): number {
        throw new Error('lr getter');
      },
    };
    expect(() => {
      runStep(a, options);
    }).toThrow('lr getter');
    same();
  });

  test('a Proxy of the options sees each option read exactly once', () => {
    const a = stepArrays(4);
    const reads = new Map<PropertyKey, number>();
    const options = new Proxy(
      { ...OPTIONS, maximize: false, decoupled: true, maxExpAvgSq: filled(4, 5), threads: 2 },
      {
        get(target, key, receiver) {
          reads.set(key, (reads.get(key) ?? 0) + 1);
          return Reflect.get(target, key, receiver) as unknown;
        },
      },
    );
    runStep(a, options);
    expect(Object.fromEntries(reads)).toEqual({
      step: 1,
      lr: 1,
      beta1: 1,
      beta2: 1,
      eps: 1,
      weightDecay: 1,
      maximize: 1,
      maxExpAvgSq: 1,
      decoupled: 1,
      threads: 1,
      clipGradNorm: 1,
      gradScale: 1,
      skipNonFinite: 1,
    });
  });

  test('a getter that detaches grad: TypeError, nothing written anywhere', () => {
    const a = stepArrays(6);
    const same = unchanged(a.param, a.expAvg, a.expAvgSq);
    const gradBits = bits(a.grad);
    let transferred: ArrayBuffer | undefined;
    const options = {
      ...OPTIONS,
      get lr(): number {
        transferred = detach(a.grad.buffer);
        return 1e-2;
      },
    };
    expect(() => {
      runStep(a, options);
    }).toThrow(
      new TypeError(
        'Expected a Float32Array for grad but received a Float32Array whose ArrayBuffer is detached',
      ),
    );
    same();
    expect(bits(new Float32Array(transferred!))).toEqual(gradBits);
  });

  test('a getter that detaches every array: TypeError, nothing written to the moved bytes', () => {
    const a = stepArrays(6);
    const before = [a.param, a.grad, a.expAvg, a.expAvgSq].map(bits);
    const transferred: ArrayBuffer[] = [];
    const options = {
      ...OPTIONS,
      get eps(): number {
        for (const array of [a.param, a.grad, a.expAvg, a.expAvgSq])
          transferred.push(detach(array.buffer));
        return 1e-8;
      },
    };
    expect(() => {
      runStep(a, options);
    }).toThrow(
      new TypeError(
        'Expected a Float32Array for param but received a Float32Array whose ArrayBuffer is detached',
      ),
    );
    expect(transferred.map((buffer) => bits(new Float32Array(buffer)))).toEqual(before);
  });

  test('a getter that shrinks a resizable buffer under param: RangeError, nothing changed', () => {
    const buffer = resizableBuffer(32, 64);
    const param = new Float32Array(buffer); // length-tracking
    param.set(filled(8, 1));
    const a = { ...stepArrays(8), param };
    const same = unchanged(a.grad, a.expAvg, a.expAvgSq);
    const paramBits = bits(param).slice(0, 4);
    const options = {
      ...OPTIONS,
      get beta1(): number {
        buffer.resize(16);
        return 0.9;
      },
    };
    expect(() => {
      runStep(a, options);
    }).toThrow(
      new RangeError(
        'Expected a Float32Array of 4 elements for grad but received a Float32Array of 8 elements',
      ),
    );
    same();
    expect(bits(param)).toEqual(paramBits);
  });

  test('a getter that writes new values into the arrays: the step uses what is there at the call', () => {
    const a = stepArrays(9);
    const rewritten = { ...a, param: filled(9, 7), grad: filled(9, 8) };
    const expected = expectedStep(rewritten);
    const options = {
      ...OPTIONS,
      get weightDecay(): number {
        a.param.set(rewritten.param);
        a.grad.set(rewritten.grad);
        return OPTIONS.weightDecay;
      },
    };
    runStep(a, options);
    expectSameBits(a, expected);
  });

  test('optimizer: data and grad are read once per step', () => {
    const reads = { data: 0, grad: 0 };
    const data = filled(5, 1);
    const grad = filled(5, 2);
    const p: Param = {
      get data() {
        reads.data++;
        return data;
      },
      get grad() {
        reads.grad++;
        return grad;
      },
    };
    const optimizer = new AdamW([p]);
    const atConstruction = { ...reads };
    optimizer.step();
    optimizer.step();
    expect({
      data: reads.data - atConstruction.data,
      grad: reads.grad - atConstruction.grad,
    }).toEqual({
      data: 2,
      grad: 2,
    });
  });

  test("optimizer: one param's getter detaching another param's data: TypeError, nothing changed", () => {
    const first = param(7, 1, 'first');
    const secondData = filled(7, 3);
    const secondGrad = filled(7, 4);
    let transferred: ArrayBuffer | undefined;
    let armed = false;
    const second: Param = {
      name: 'second',
      data: secondData,
      get grad() {
        if (armed) transferred = detach(first.data.buffer);
        return secondGrad;
      },
    };
    const optimizer = new AdamW([first, second]);
    optimizer.step();
    const firstBits = bits(first.data);
    const same = unchanged(
      first.grad,
      secondData,
      secondGrad,
      ...states(optimizer, [first, second]),
    );
    armed = true;
    expect(() => {
      optimizer.step();
    }).toThrow(
      new TypeError(
        'Expected a Float32Array for first.data but received a Float32Array whose ArrayBuffer is detached',
      ),
    );
    same();
    expect(bits(new Float32Array(transferred!))).toEqual(firstBits);
    expect(optimizer.state(second).step).toBe(1);
  });

  test('optimizer: a getter that throws leaves every param, state and step count as it was', () => {
    const good = param(6, 1);
    let throwNow = false;
    const bad: Param = {
      data: filled(6, 3),
      get grad(): Float32Array {
        if (throwNow) throw new Error('grad getter');
        return filled(6, 4);
      },
    };
    const optimizer = new Adam([good, bad], { weightDecay: 0.1 });
    optimizer.step();
    const same = unchanged(good.data, good.grad, ...states(optimizer, [good, bad]));
    throwNow = true;
    expect(() => {
      optimizer.step();
    }).toThrow('grad getter');
    same();
    expect(optimizer.state(good).step).toBe(1);
  });
});

function states(optimizer: AdamW | Adam, params: Param[]): Float32Array[] {
  return params.flatMap((p) => {
    const s = f32(optimizer.state(p));
    return s.maxExpAvgSq === undefined
      ? [s.expAvg, s.expAvgSq]
      : [s.expAvg, s.expAvgSq, s.maxExpAvgSq];
  });
}

// ---------------------------------------------------------------------------------------------
describe('code that runs in the middle of a step or a load', () => {
  // A spec's stepScalars is its author's code. It runs before the step reads and checks the
  // arrays, so whatever it does to them is caught by the checks (the plan does not re-read its
  // arrays, so anything after the checks would reach the kernel).
  test("a spec's stepScalars that shrinks a param's buffer: RangeError, no crash, nothing written", () => {
    const buffer = resizableBuffer(4 * 1024, 4 * 1024);
    const data = new Float32Array(buffer);
    data.fill(0.5);
    const p: Param = { data, grad: new Float32Array(1024).fill(0.1) };
    let attack = false;
    const spec = {
      ...AdamW.spec,
      className: 'Shrinking',
      stepScalars: (...args: Parameters<typeof AdamW.spec.stepScalars>) => {
        if (attack) buffer.resize(0);
        return AdamW.spec.stepScalars(...args);
      },
    };
    class Shrinking extends Optimizer {
      constructor(params: Param[]) {
        super(spec, params, undefined);
      }
    }
    const optimizer = new Shrinking([p]);
    optimizer.step();
    attack = true;
    expect(() => optimizer.step()).toThrow(
      new RangeError(
        'Expected a Float32Array of 1024 elements for params[0].data but received a Float32Array of 0 elements',
      ),
    );
  });

  test.each(['detach', 'shrink'] as const)(
    'loadStateDict: a getter that %ss a state array already read: an error or a full load, never half of one',
    (attack) => {
      const a = param(8, 1, 'a');
      const b = param(8, 3, 'b');
      const optimizer = new AdamW([a, b], { lr: 0.5 });
      optimizer.step();
      const sd = optimizer.stateDict();
      const buffer = resizableBuffer(32, 32);
      const expAvg = new Float32Array(buffer);
      expAvg.set(f32(sd.state[0]!).expAvg);
      const saved = { ...f32(sd.state[0]!), expAvg };
      const second = { ...sd.state[1]! };
      Object.defineProperty(second, 'step', {
        enumerable: true,
        get() {
          if (attack === 'detach') detach(buffer);
          else buffer.resize(8);
          return sd.state[1]!.step;
        },
      });
      optimizer.paramGroups[0]!.lr = 0.25;
      const before = states(optimizer, [a, b]).map(bits);
      expect(() => {
        optimizer.loadStateDict({ ...sd, state: [saved, second] });
      }).toThrow(/Expected a Float32Array (of 8 elements )?for stateDict\.state\[0\]\.expAvg/);
      expect(optimizer.paramGroups[0]!.lr).toBe(0.25); // nothing of the dict applied
      expect(states(optimizer, [a, b]).map(bits)).toEqual(before);
    },
  );
});

describe('detached and resized buffers', () => {
  test('adamwStep with a detached grad: TypeError', () => {
    const a = stepArrays(5);
    detach(a.grad.buffer);
    const same = unchanged(a.param, a.expAvg, a.expAvgSq);
    expect(() => {
      runStep(a);
    }).toThrow(
      new TypeError(
        'Expected a Float32Array for grad but received a Float32Array whose ArrayBuffer is detached',
      ),
    );
    same();
  });

  test('optimizer: param data detached between steps: TypeError naming it, other params untouched', () => {
    const a = param(8, 1, 'a');
    const b = param(8, 3, 'b');
    const optimizer = new AdamW([a, b], { amsgrad: true });
    optimizer.step();
    detach(b.data.buffer);
    const same = unchanged(a.data, a.grad, b.grad, ...states(optimizer, [a, b]));
    expect(() => {
      optimizer.step();
    }).toThrow(
      new TypeError(
        'Expected a Float32Array for b.data but received a Float32Array whose ArrayBuffer is detached',
      ),
    );
    same();
  });

  // state() hands out the optimizer's own arrays. They are marked untransferable: structuredClone
  // copies them (Node 20) or throws a DataCloneError (Node 21+). Where ArrayBuffer.prototype.transfer
  // exists (Node 21+) it may still detach one; then the next step is a TypeError naming it.
  test.each(['expAvg', 'expAvgSq', 'maxExpAvgSq'] as const)(
    "optimizer: the optimizer's own %s cannot be transferred away through state()",
    (which) => {
      const a = param(8, 1, 'a');
      const b = param(8, 3, 'b');
      const optimizer = new AdamW([a, b], { amsgrad: true });
      optimizer.step();
      const array = f32(optimizer.state(b))[which]!;
      const before = bits(array);
      let copy: ArrayBuffer | undefined;
      try {
        copy = structuredClone(array.buffer as ArrayBuffer, {
          transfer: [array.buffer as ArrayBuffer],
        });
      } catch (error) {
        expect((error as Error).name).toBe('DataCloneError');
      }
      expect(bits(array)).toEqual(before); // still attached, still the same bits
      // The state of every param lives in one buffer per state tensor: b's is a view into it.
      if (copy !== undefined) {
        const view = new Float32Array(copy, array.byteOffset, array.length);
        expect(bits(view)).toEqual(before);
      }

      const transfer = (array.buffer as { transfer?: () => ArrayBuffer }).transfer;
      let detached = false;
      if (transfer !== undefined) {
        try {
          transfer.call(array.buffer);
          detached = true;
        } catch (error) {
          expect((error as Error).name).toBe('TypeError');
        }
      }
      const same = unchanged(a.data, a.grad, b.data, b.grad, ...states(optimizer, [a]));
      if (detached) {
        expect(() => {
          optimizer.step();
        }).toThrow(
          new TypeError(
            `Expected a Float32Array for state of b (${which}) but received a Float32Array whose ArrayBuffer is detached`,
          ),
        );
        same();
      } else {
        optimizer.step();
        expect(optimizer.state(b).step).toBe(2);
      }
    },
  );

  test('optimizer: a length-tracking data array resized between steps: RangeError until it is back', () => {
    const buffer = resizableBuffer(16, 64);
    const data = new Float32Array(buffer);
    data.set(filled(4, 1));
    const p: Param = { data, grad: filled(4, 2) };
    const optimizer = new AdamW([p]);
    optimizer.step();
    for (const byteLength of [32, 8, 0]) {
      buffer.resize(byteLength);
      const same = unchanged(p.data, p.grad, ...states(optimizer, [p]));
      expect(() => {
        optimizer.step();
      }).toThrow(
        new RangeError(
          `Expected a Float32Array of 4 elements for params[0].data but received a Float32Array of ${byteLength / 4} elements`,
        ),
      );
      same();
    }
    buffer.resize(16);
    optimizer.step();
    expect(optimizer.state(p).step).toBe(2);
  });

  test('a fixed-length view pushed out of bounds by a shrink reads as empty: RangeError', () => {
    const buffer = resizableBuffer(64, 64);
    const view = new Float32Array(buffer, 16, 8);
    view.set(filled(8, 1));
    buffer.resize(32);
    const a = { ...stepArrays(8), param: view };
    const same = unchanged(a.grad, a.expAvg, a.expAvgSq);
    expect(() => {
      runStep(a);
    }).toThrow(
      new RangeError(
        'Expected a Float32Array of 0 elements for grad but received a Float32Array of 8 elements',
      ),
    );
    same();
  });

  test('length-tracking views grown together: the step covers the new length, same bits as fresh arrays', () => {
    const buffers = [0, 1, 2, 3].map(() => resizableBuffer(16, 256));
    const [param, grad, expAvg, expAvgSq] = buffers.map(
      (buffer) => new Float32Array(buffer) as Float32Array,
    ) as [Float32Array, Float32Array, Float32Array, Float32Array];
    for (const buffer of buffers) buffer.resize(4 * 37);
    const a = { param, grad, expAvg, expAvgSq };
    const fresh = stepArrays(37);
    for (const key of ['param', 'grad', 'expAvg', 'expAvgSq'] as const) a[key].set(fresh[key]);
    const expected = expectedStep(fresh);
    runStep(a);
    expectSameBits(a, expected);
  });

  test('a growable SharedArrayBuffer grown between steps is read at its new length', () => {
    const buffer = growableSharedBuffer(16, 256);
    const param = new Float32Array(buffer);
    buffer.grow(4 * 19);
    const fresh = stepArrays(19);
    param.set(fresh.param);
    const a = { ...fresh, param };
    const expected = expectedStep(fresh);
    runStep(a);
    expectSameBits(a, expected);
  });
});

// ---------------------------------------------------------------------------------------------
describe('zero-length and huge lengths', () => {
  test('all arrays empty: a valid step that writes nothing', () => {
    const backing = filled(8, 1);
    const same = unchanged(backing);
    const empty = backing.subarray(8); // zero-length view at the very end of a buffer
    adamwStep(empty, new Float32Array(0), new Float32Array(0), new Float32Array(0), OPTIONS);
    same();
  });

  test('an empty param with a non-empty grad: RangeError', () => {
    const a = { ...stepArrays(3), param: new Float32Array(0) };
    const same = unchanged(a.grad, a.expAvg, a.expAvgSq);
    expect(() => {
      runStep(a);
    }).toThrow(RangeError);
    same();
  });

  test('optimizer with a zero-length param beside a real one', () => {
    const empty = param(0, 1, 'empty');
    const real = param(33, 2, 'real');
    const optimizer = new AdamW([empty, real]);
    optimizer.step();
    expect(optimizer.state(empty).step).toBe(1);
    expect(optimizer.state(real).step).toBe(1);
  });

  // 2^30 + 1 floats: a byte length just over 2^32, allocated lazily and never touched, so no test
  // machine needs 4 GiB of RAM. A 32-bit length anywhere would wrap and call the lengths equal.
  test('a param over 4 GiB against a 1-element grad: RangeError before anything is touched', () => {
    const huge = new Float32Array(2 ** 30 + 1);
    const a = { ...stepArrays(1), param: huge };
    const same = unchanged(a.grad, a.expAvg, a.expAvgSq);
    expect(() => {
      runStep(a);
    }).toThrow(
      new RangeError(
        `Expected a Float32Array of ${2 ** 30 + 1} elements for grad but received a Float32Array of 1 element`,
      ),
    );
    expect(
      nativeError(() => {
        native.createPlan('adamw', [huge, a.grad, a.expAvg, a.expAvgSq, null, null]);
      }),
    ).toEqual({
      name: 'RangeError',
      message: `tensor 0 grad has 1 elements but needs ${2 ** 30 + 1}`,
    });
    same();
  });
});

// ---------------------------------------------------------------------------------------------
describe('frozen objects', () => {
  test('frozen options, params, groups and betas work as unfrozen ones', () => {
    const make = (): Param[] => [param(10, 1, 'w'), param(3, 2, 'b')];
    const plain = make();
    const frozen = make().map((p) => Object.freeze(p));
    const groups = (params: Param[], freeze: boolean): ParamGroup[] => {
      const list: ParamGroup[] = [
        { params: [params[0]!], weightDecay: 0.1, betas: [0.8, 0.99] },
        { params: [params[1]!], weightDecay: 0 },
      ];
      if (!freeze) return list;
      for (const group of list) {
        Object.freeze(group.params);
        if (group.betas !== undefined) Object.freeze(group.betas);
        Object.freeze(group);
      }
      return Object.freeze(list) as ParamGroup[];
    };
    const a = new AdamW(groups(plain, false), { lr: 0.01 });
    const b = new AdamW(groups(frozen, true), Object.freeze({ lr: 0.01 }));
    for (let i = 0; i < 3; i++) {
      a.step();
      b.step();
    }
    expect(frozen.map((p) => bits(p.data))).toEqual(plain.map((p) => bits(p.data)));
  });

  test('non-extensible and sealed data arrays are still updated in place', () => {
    const p = param(6, 1);
    Object.preventExtensions(p.data);
    Object.seal(p.grad);
    const before = bits(p.data);
    new AdamW([p]).step();
    expect(bits(p.data)).not.toEqual(before);
  });

  test('a frozen empty Float32Array is a valid zero-length param', () => {
    const p = { data: Object.freeze(new Float32Array(0)), grad: new Float32Array(0) };
    const optimizer = new AdamW([p]);
    optimizer.step();
    expect(optimizer.state(p).step).toBe(1);
  });

  test('paramGroups is frozen: no new groups, no own properties shadowing the validated setters', () => {
    const p = param(5, 1);
    const optimizer = new AdamW([p], { lr: 0.01 });
    const groups = optimizer.paramGroups as unknown as OptimizerParamGroupLike[];
    expect(() => groups.push(groups[0]!)).toThrow(TypeError);
    expect(() => Object.defineProperty(groups[0], 'lr', { value: NaN })).toThrow(TypeError);
    expect(() => {
      groups[0]!.lr = NaN;
    }).toThrow(
      new RangeError(
        'Expected a finite number >= 0 for paramGroups[0].lr but received NaN of type number',
      ),
    );
    expect(optimizer.paramGroups[0]!.lr).toBe(0.01);
    optimizer.step();
    expect(Array.from(p.data).every(Number.isFinite)).toBe(true);
  });
});

interface OptimizerParamGroupLike {
  lr: number;
}

// ---------------------------------------------------------------------------------------------
describe('shared params and aliased arrays', () => {
  test('the same param in two groups: RangeError', () => {
    const p = param(4, 1);
    expect(() => new AdamW([{ params: [p] }, { params: [p], lr: 0.1 }])).toThrow(
      new RangeError(
        'Expected a param not listed before (each param once, in one group) for ' +
          'paramGroups[1].params[0] but received one listed before',
      ),
    );
  });

  test('one data array in two params: RangeError', () => {
    const data = filled(4, 1);
    expect(
      () =>
        new AdamW([
          { params: [{ data, grad: filled(4, 2) }] },
          { params: [{ data, grad: filled(4, 3) }] },
        ]),
    ).toThrow(
      /^Expected paramGroups\[\d\]\.params\[0\]\.data and paramGroups\[\d\]\.params\[0\]\.data not to overlap/,
    );
  });

  test("one param's data as another's grad, across groups: RangeError", () => {
    const a = param(4, 1);
    const b = { data: filled(4, 3), grad: a.data };
    expect(() => new Adam([{ params: [a] }, { params: [b] }])).toThrow(/not to overlap in memory/);
  });

  test('overlapping subarrays of a SharedArrayBuffer in different params: RangeError', () => {
    const shared = new Float32Array(new SharedArrayBuffer(64));
    const a = { data: shared.subarray(0, 8), grad: filled(8, 1) };
    const b = { data: shared.subarray(7, 15), grad: filled(8, 2) };
    expect(() => new AdamW([a, b])).toThrow(
      /^Expected params\[0\]\.data and params\[1\]\.data not to overlap/,
    );
  });

  test("the optimizer's own state swapped in as a grad between steps: RangeError, nothing changed", () => {
    const a = param(6, 1, 'a');
    const b = param(6, 3, 'b');
    const optimizer = new AdamW([a, b]);
    optimizer.step();
    b.grad = f32(optimizer.state(a)).expAvg;
    const same = unchanged(a.data, a.grad, b.data, ...states(optimizer, [a, b]));
    expect(() => {
      optimizer.step();
    }).toThrow(/not to overlap in memory/);
    same();
  });

  test('adamwStep with grad === param, and with expAvg overlapping expAvgSq: RangeError', () => {
    const a = stepArrays(8);
    const same = unchanged(a.param, a.expAvg, a.expAvgSq);
    expect(() => {
      adamwStep(a.param, a.param, a.expAvg, a.expAvgSq, OPTIONS);
    }).toThrow(/^Expected param and grad not to overlap/);
    const moments = filled(12, 3);
    const sameMoments = unchanged(moments);
    expect(() => {
      adamwStep(a.param, a.grad, moments.subarray(0, 8), moments.subarray(4, 12), OPTIONS);
    }).toThrow(/^Expected expAvg and expAvgSq not to overlap/);
    same();
    sameMoments();
  });
});

// ---------------------------------------------------------------------------------------------
// stepAsync keeps running after it returns, so whatever the caller does next happens while native
// threads are writing the arrays. Transferring a buffer away used to free memory under the step
// (a segfault once the new owner was collected); shrinking a resizable one unmapped it.
describe('asynchronous steps', () => {
  // Large enough that the step is still running when the next statement runs.
  const LARGE = 1 << 21;

  const bigParam = (seed: number): Param => ({
    data: filled(LARGE, seed),
    grad: filled(LARGE, seed + 1),
  });
  // The same step, synchronous, on copies: what the asynchronous one must produce.
  const expectedAfterOneStep = (p: Param): Float32Array => {
    const copy = { data: p.data.slice(), grad: p.grad.slice() };
    new AdamW([copy], { threads: 1 }).step();
    return copy.data;
  };
  // Transfers `buffer` if it can: on Node 20 a marked buffer is copied instead, on Node 21+ the
  // transfer throws a DataCloneError. Either way the original must stay attached.
  const tryTransfer = (buffer: ArrayBufferLike): void => {
    try {
      structuredClone(buffer, { transfer: [buffer as ArrayBuffer] });
    } catch (error) {
      expect((error as Error).name).toBe('DataCloneError');
    }
  };

  test.each(['data', 'grad', 'expAvg'] as const)(
    'transferring %s away while stepAsync runs: not detached, the step completes on it',
    async (which) => {
      const p = bigParam(1);
      const expected = expectedAfterOneStep(p);
      const optimizer = new AdamW([p], { threads: 2 });
      const array = which === 'expAvg' ? f32(optimizer.state(p)).expAvg : p[which];
      const running = optimizer.stepAsync();
      tryTransfer(array.buffer);
      await running;
      expect(array.length).toBe(LARGE);
      expect(p.data.length).toBe(LARGE);
      expect(firstBitDifference(bitsOf([p.data]), bitsOf([expected]))).toBeNull();
    },
  );

  test('adamwStepAsync: transferring param away while it runs: not detached, the step completes', async () => {
    const a = stepArrays(LARGE);
    const expected = expectedStep(a);
    const running = adamwStepAsync(a.param, a.grad, a.expAvg, a.expAvgSq, {
      ...OPTIONS,
      threads: 2,
    });
    tryTransfer(a.param.buffer);
    await running;
    expectSameBits(a, expected);
  });

  test('params over a resizable ArrayBuffer: stepAsync rejects with a TypeError, step() takes them', async () => {
    const buffer = resizableBuffer(4 * 64, 4 * 64);
    const data = new Float32Array(buffer);
    data.set(filled(64, 1));
    const p: Param = { name: 'w', data, grad: filled(64, 2) };
    const optimizer = new AdamW([p]);
    const same = unchanged(p.data, p.grad, ...states(optimizer, [p]));
    await expect(optimizer.stepAsync()).rejects.toThrow(
      new TypeError(
        'Expected a Float32Array over a fixed-length buffer for w.data in an asynchronous step but ' +
          'received one over a resizable ArrayBuffer (a resize during the step would unmap memory ' +
          'it is writing); use step() for it',
      ),
    );
    same();
    expect(optimizer.stepInFlight).toBe(false);
    optimizer.step();
    expect(optimizer.state(p).step).toBe(1);

    const a = { ...stepArrays(64), grad: new Float32Array(resizableBuffer(4 * 64, 4 * 128)) };
    const sameArrays = unchanged(a.param, a.grad, a.expAvg, a.expAvgSq);
    await expect(adamwStepAsync(a.param, a.grad, a.expAvg, a.expAvgSq, OPTIONS)).rejects.toThrow(
      /^Expected a Float32Array over a fixed-length buffer for grad/,
    );
    sameArrays();
  });

  test('a growable SharedArrayBuffer (it never shrinks) is fine for stepAsync', async () => {
    const buffer = growableSharedBuffer(4 * 100, 4 * 200);
    const data = new Float32Array(buffer);
    data.set(filled(100, 1));
    const p: Param = { data, grad: filled(100, 2) };
    const expected = expectedAfterOneStep(p);
    await new AdamW([p]).stepAsync();
    expect(bits(p.data)).toEqual(bits(expected));
  });

  test("a getter run by stepAsync's checks that detaches another param: rejects, nothing changed", async () => {
    const first = param(7, 1, 'first');
    const secondGrad = filled(7, 4);
    let armed = false;
    const second: Param = {
      name: 'second',
      data: filled(7, 3),
      get grad() {
        if (armed) detach(first.data.buffer);
        return secondGrad;
      },
    };
    const optimizer = new AdamW([first, second]);
    const same = unchanged(
      first.grad,
      second.data,
      secondGrad,
      ...states(optimizer, [first, second]),
    );
    armed = true;
    await expect(optimizer.stepAsync()).rejects.toThrow(
      new TypeError(
        'Expected a Float32Array for first.data but received a Float32Array whose ArrayBuffer is detached',
      ),
    );
    same();
    expect(optimizer.stepInFlight).toBe(false);
    expect(optimizer.state(second).step).toBe(0);
  });

  test('threads: wrong types are TypeErrors, values outside 1..MAX_THREADS RangeErrors', () => {
    const a = stepArrays(3);
    const same = unchanged(a.param, a.grad, a.expAvg, a.expAvgSq);
    for (const threads of ['2', 2n, null, true])
      expect(() => {
        runStep(a, { ...OPTIONS, threads } as unknown as AdamwStepOptions);
      }).toThrow(TypeError);
    for (const threads of [NaN, Infinity, -Infinity, 0, 0.5, native.MAX_THREADS + 1])
      expect(() => {
        runStep(a, { ...OPTIONS, threads });
      }).toThrow(/^Expected an integer from 1 to \d+ for options\.threads but received/);
    same();
  });

  test('threads = MAX_THREADS gives the bits of one thread', async () => {
    const one = stepArrays(100003);
    const many = stepArrays(100003);
    runStep(one, { ...OPTIONS, threads: 1 });
    runStep(many, { ...OPTIONS, threads: native.MAX_THREADS });
    expectSameBits(many, one);
    const asyncMany = stepArrays(100003);
    await adamwStepAsync(asyncMany.param, asyncMany.grad, asyncMany.expAvg, asyncMany.expAvgSq, {
      ...OPTIONS,
      threads: native.MAX_THREADS,
    });
    expectSameBits(asyncMany, one);
  });
});

// ---------------------------------------------------------------------------------------------
// The binding is internal (lib/ validates first), but it is the last line of defence: it must
// re-check everything that protects memory, at call time, against any caller. Its errors are
// made in node's main realm, not in jest's sandbox, so they are matched by name and message.
function nativeError(fn: () => void): { name: string; message: string } | 'no error' {
  try {
    fn();
  } catch (error) {
    const { name, message } = error as Error;
    return { name, message };
  }
  return 'no error';
}

describe('the binding re-checks what protects memory', () => {
  const SCALARS = [0.9, 0.1, 0.999, 0.001, 0.999, 0, -0.01, 1e-8];
  const scalars = (sets: number) =>
    new Float64Array(Array.from({ length: sets }, () => SCALARS).flat());
  const tensor = (length: number, seed: number, amsgrad = false): (Float32Array | null)[] => [
    filled(length, seed),
    filled(length, seed + 1),
    filled(length, seed + 2),
    filled(length, seed + 3).map(Math.abs),
    amsgrad ? filled(length, seed + 4).map(Math.abs) : null,
    null, // paramBf16
  ];
  const arraysOf = (arrays: (Float32Array | null)[]) =>
    arrays.filter((a): a is Float32Array => a !== null);
  const createPlan = native.createPlan as unknown as (...args: unknown[]) => NativePlan;
  const runPlan = native.runPlan as unknown as (...args: unknown[]) => void;
  const runPlanAsync = native.runPlanAsync as unknown as (...args: unknown[]) => Promise<void>;
  /** One scalar set, used by every tensor; runs on 2 threads (the checks come before any). */
  const runAll = (plan: NativePlan, tensors: number, flags = 0, threads = 2) => {
    runPlan(plan, scalars(1), new Uint32Array([flags]), new Uint32Array(tensors), threads);
  };

  test.each([
    ['no arguments', []],
    ['an op that is not a string', [1, tensor(4, 1)]],
    ['arrays not an array', ['adamw', {}]],
    ['a Proxy of an array', ['adamw', new Proxy(tensor(4, 1), {})]],
    ['a sixth argument', ['adamw', tensor(4, 1), undefined, undefined, undefined, 0]],
  ])('createPlan with %s: TypeError', (_what, args) => {
    expect(nativeError(() => createPlan(...args))).toEqual({
      name: 'TypeError',
      message:
        'createPlan(op: string | string[], arrays: (TypedArray | null)[], gradDtypes?: Uint8Array, shapes?: Uint32Array, elementOffsets?: Uint32Array)',
    });
  });

  test('an unknown op, alone or in a per-tensor list: TypeError naming the ops', () => {
    const ops = Object.keys(native.ops)
      .map((name) => `'${name}'`)
      .join(', ');
    expect(ops).toMatch(/^'adamw', 'adamwBfloat16', 'adamwBlockwise8'/);
    expect(nativeError(() => createPlan('sgd', tensor(4, 1)))).toEqual({
      name: 'TypeError',
      message: `Expected one of ${ops} for op but received 'sgd'`,
    });
    expect(nativeError(() => createPlan(['adamw', 'sgd'], tensor(4, 1)))).toEqual({
      name: 'TypeError',
      message: `Expected one of ${ops} for op[1] but received 'sgd'`,
    });
    expect(nativeError(() => createPlan(['adamw', 3], tensor(4, 1)))).toEqual({
      name: 'TypeError',
      message: `Expected one of ${ops} for op[1]`,
    });
  });

  test('per-tensor ops: the arrays must be exactly their arrays', () => {
    expect(nativeError(() => createPlan(['adamw', 'adamw'], tensor(4, 1)))).toEqual({
      name: 'RangeError',
      message: "createPlan(): 6 arrays but the 2 tensors' ops need 12",
    });
  });

  test('gradDtypes: a Uint8Array of one valid dtype per tensor, and grads of that type', () => {
    expect(nativeError(() => createPlan('adamw', tensor(4, 1), new Uint16Array(1)))).toEqual({
      name: 'TypeError',
      message: 'createPlan(): gradDtypes must be a Uint8Array',
    });
    expect(nativeError(() => createPlan('adamw', tensor(4, 1), new Uint8Array(2)))).toEqual({
      name: 'RangeError',
      message: 'createPlan(): gradDtypes has 2 elements but there are 1 tensors',
    });
    expect(nativeError(() => createPlan('adamw', tensor(4, 1), Uint8Array.of(3)))).toEqual({
      name: 'RangeError',
      message:
        'createPlan(): gradDtypes[0] is 3 but must be 0 (float32), 1 (bfloat16) or 2 (float16)',
    });
    expect(nativeError(() => createPlan('adamw', tensor(4, 1), Uint8Array.of(1)))).toEqual({
      name: 'TypeError',
      message: 'Expected a Uint16Array for tensor 0 grad (gradDtypes[0] is bfloat16)',
    });
    const halfGrad: unknown[] = tensor(4, 1);
    halfGrad[1] = new Uint16Array(4);
    expect(nativeError(() => createPlan('adamw', halfGrad))).toEqual({
      name: 'TypeError',
      message: 'Expected a Float32Array for tensor 0 grad (gradDtypes[0] is float32)',
    });
    expect(nativeError(() => createPlan('adamw', halfGrad, Uint8Array.of(2)))).toBe('no error');
  });

  test('the lean ops: element types, per-block lengths, overlap across types', () => {
    const param = filled(300, 1);
    const grad = filled(300, 2);
    const bf16 = [param, grad, new Uint16Array(300), new Uint16Array(300), null, null];
    expect(nativeError(() => createPlan('adamwBfloat16', bf16))).toBe('no error');
    const wrongBf16: unknown[] = [...bf16];
    wrongBf16[2] = new Float32Array(300);
    expect(nativeError(() => createPlan('adamwBfloat16', wrongBf16))).toEqual({
      name: 'TypeError',
      message: 'Expected a Uint16Array for tensor 0 expAvg',
    });
    // 300 elements: 2 blocks of 256.
    const blockwise = () => [
      filled(300, 1),
      filled(300, 2),
      new Uint8Array(300),
      new Float32Array(2),
      new Uint8Array(300),
      new Float32Array(2),
      null,
      null,
      new Uint16Array(300),
    ];
    expect(nativeError(() => createPlan('adamwBlockwise8', blockwise()))).toBe('no error');
    const shortAbsmax: unknown[] = blockwise();
    shortAbsmax[5] = new Float32Array(1);
    expect(nativeError(() => createPlan('adamwBlockwise8', shortAbsmax))).toEqual({
      name: 'RangeError',
      message:
        'tensor 0 expAvgSqAbsmax has 1 elements but needs 2 (one per block of 256 elements of param)',
    });
    const signedCodes: unknown[] = blockwise();
    signedCodes[2] = new Int8Array(300);
    expect(nativeError(() => createPlan('adamwBlockwise8', signedCodes))).toEqual({
      name: 'TypeError',
      message: 'Expected a Uint8Array for tensor 0 expAvg',
    });
    const shortCopy: unknown[] = blockwise();
    shortCopy[8] = new Uint16Array(299);
    expect(nativeError(() => createPlan('adamwBlockwise8', shortCopy))).toEqual({
      name: 'RangeError',
      message: 'tensor 0 paramBf16 has 299 elements but needs 300',
    });
    // Codes over the bytes of the second tensor's param: a byte is shared whatever the types.
    const second = tensor(300, 5);
    const codesOverParam: unknown[] = blockwise();
    codesOverParam[4] = new Uint8Array(second[0]!.buffer, 4, 300);
    expect(
      nativeError(() => createPlan(['adamwBlockwise8', 'adamw'], [...codesOverParam, ...second])),
    ).toEqual({
      name: 'RangeError',
      message: 'tensor 0 expAvgSq and tensor 1 param overlap in memory',
    });
  });

  test('a count of arrays that is not whole tensors is a RangeError; a sparse array of 2^32 - 1 fails at its first hole', () => {
    expect(nativeError(() => createPlan('adamw', tensor(4, 1).slice(0, 4)))).toEqual({
      name: 'RangeError',
      message: "createPlan(): 4 arrays is not a multiple of the 6 arrays of a 'adamw' tensor",
    });
    // 2^32 - 2 is no whole number of tensors; 2^32 - 4 is 715,827,882 of them, and the first hole
    // ends the read (no 4 billion Get() calls).
    const sparse: unknown[] = [];
    sparse.length = 2 ** 32 - 2;
    expect(nativeError(() => createPlan('adamw', sparse))).toMatchObject({ name: 'RangeError' });
    sparse.length = 2 ** 32 - 4;
    expect(nativeError(() => createPlan('adamw', sparse))).toEqual({
      name: 'TypeError',
      message: 'Expected a Float32Array for tensor 0 param',
    });
  });

  test('a hole, a null that is not optional, a wrong type: TypeError', () => {
    const holey = [...tensor(16, 1), ...tensor(4, 10)];
    Reflect.deleteProperty(holey, 7); // a hole
    expect(nativeError(() => createPlan('adamw', holey))).toEqual({
      name: 'TypeError',
      message: 'Expected a Float32Array or Uint16Array for tensor 1 grad',
    });
    const nullGrad = tensor(4, 1);
    nullGrad[1] = null;
    expect(nativeError(() => createPlan('adamw', nullGrad))).toEqual({
      name: 'TypeError',
      message: 'Expected a Float32Array or Uint16Array for tensor 0 grad',
    });
    const second: unknown[] = tensor(4, 10);
    second[3] = new Float64Array(4);
    expect(nativeError(() => createPlan('adamw', [...tensor(16, 1), ...second]))).toEqual({
      name: 'TypeError',
      message: 'Expected a Float32Array for tensor 1 expAvgSq',
    });
    const badMax: unknown[] = tensor(4, 10);
    badMax[4] = 0;
    expect(nativeError(() => createPlan('adamw', badMax))).toEqual({
      name: 'TypeError',
      message: 'Expected a Float32Array or null for tensor 0 maxExpAvgSq',
    });
  });

  test('unequal lengths and overlap, inside a tensor and across tensors: RangeError', () => {
    const short = tensor(4, 10);
    short[2] = filled(3, 1);
    expect(nativeError(() => createPlan('adamw', [...tensor(16, 1), ...short]))).toEqual({
      name: 'RangeError',
      message: 'tensor 1 expAvg has 3 elements but needs 4',
    });
    const shared = filled(12, 5);
    const overlapping = tensor(8, 10);
    overlapping[0] = shared.subarray(0, 8);
    overlapping[3] = shared.subarray(4, 12);
    expect(nativeError(() => createPlan('adamw', [...tensor(16, 1), ...overlapping]))).toEqual({
      name: 'RangeError',
      message: 'tensor 1 param and tensor 1 expAvgSq overlap in memory',
    });
    const first = tensor(8, 1);
    const across = tensor(8, 20);
    across[1] = first[2]!; // tensor 1's grad is tensor 0's expAvg
    expect(nativeError(() => createPlan('adamw', [...first, ...across]))).toEqual({
      name: 'RangeError',
      message: 'tensor 0 expAvg and tensor 1 grad overlap in memory',
    });
  });

  test.each([
    ['no arguments', [], 'TypeError'],
    [
      'a plain object as the plan',
      [{}, scalars(1), new Uint32Array(1), new Uint32Array(1), 1],
      'TypeError',
    ],
    [
      'scalars a plain array',
      ['plan', SCALARS, new Uint32Array(1), new Uint32Array(1), 1],
      'TypeError',
    ],
    [
      'scalars a Float32Array',
      ['plan', new Float32Array(8), new Uint32Array(1), new Uint32Array(1), 1],
      'TypeError',
    ],
    [
      'flags an Int32Array',
      ['plan', scalars(1), new Int32Array(1), new Uint32Array(1), 1],
      'TypeError',
    ],
    ['tensorSet a plain array', ['plan', scalars(1), new Uint32Array(1), [0], 1], 'TypeError'],
    [
      'threads a string',
      ['plan', scalars(1), new Uint32Array(1), new Uint32Array(1), '2'],
      'TypeError',
    ],
    [
      'an eighth argument',
      ['plan', scalars(1), new Uint32Array(1), new Uint32Array(1), 1, undefined, undefined, 0],
      'TypeError',
    ],
    [
      'tensorSeeds an Int32Array',
      ['plan', scalars(1), new Uint32Array(1), new Uint32Array(1), 1, undefined, new Int32Array(1)],
      'TypeError',
    ],
    [
      'tensorSeeds of 2 elements for 1 tensor',
      [
        'plan',
        scalars(1),
        new Uint32Array(1),
        new Uint32Array(1),
        1,
        undefined,
        new Uint32Array(2),
      ],
      'RangeError',
    ],
    ['threads 0', ['plan', scalars(1), new Uint32Array(1), new Uint32Array(1), 0], 'RangeError'],
    [
      'threads 0.5',
      ['plan', scalars(1), new Uint32Array(1), new Uint32Array(1), 0.5],
      'RangeError',
    ],
    [
      'threads NaN',
      ['plan', scalars(1), new Uint32Array(1), new Uint32Array(1), NaN],
      'RangeError',
    ],
    [
      'threads 1e9',
      ['plan', scalars(1), new Uint32Array(1), new Uint32Array(1), 1e9],
      'RangeError',
    ],
    [
      'a tensor set count that is not the tensor count',
      ['plan', scalars(1), new Uint32Array(1), new Uint32Array(2), 1],
      'RangeError',
    ],
    [
      'scalars for 2 sets with flags for 1',
      ['plan', scalars(2), new Uint32Array(1), new Uint32Array(1), 1],
      'RangeError',
    ],
    [
      'a tensor set that does not exist',
      ['plan', scalars(1), new Uint32Array(1), new Uint32Array([1]), 1],
      'RangeError',
    ],
    [
      'an unknown flag bit (the internal scale bit)',
      ['plan', scalars(1), new Uint32Array([16]), new Uint32Array(1), 1],
      'RangeError',
    ],
    [
      'amsgrad without maxExpAvgSq',
      ['plan', scalars(1), new Uint32Array([1]), new Uint32Array(1), 1],
      'RangeError',
    ],
  ] as [string, unknown[], string][])(
    'runPlan with %s: %s, nothing written',
    (_what, args, name) => {
      const arrays = tensor(16, 1);
      const same = unchanged(...arraysOf(arrays));
      const plan = createPlan('adamw', arrays);
      const call = args.map((arg) => (arg === 'plan' ? plan : arg));
      expect(nativeError(() => runPlan(...call))).toMatchObject({ name });
      expect(nativeError(() => void runPlanAsync(...call))).toMatchObject({ name });
      same();
    },
  );

  test('amsgrad with its maxExpAvgSq runs, and one plan runs again and again', () => {
    const arrays = tensor(16, 1, true);
    const plan = createPlan('adamw', arrays);
    const before = bits(arrays[4]!);
    runAll(plan, 1, 1);
    const once = bits(arrays[0]!);
    runAll(plan, 1, 1);
    expect(bits(arrays[0]!)).not.toEqual(once);
    expect(bits(arrays[4]!)).not.toEqual(before);
  });

  test('a plan whose asynchronous run is in flight refuses another run', async () => {
    const arrays = tensor(1 << 16, 1);
    const plan = createPlan('adamw', arrays);
    const run = runPlanAsync(plan, scalars(1), new Uint32Array(1), new Uint32Array(1), 1);
    expect(nativeError(() => runAll(plan, 1))).toEqual({
      name: 'Error',
      message: "runPlan(): this plan's asynchronous run has not settled yet",
    });
    await run;
    runAll(plan, 1); // settled: runs again
  });

  // Found by this file (in 0.1.0's binding): the binding took tensor 0's data pointer, then read
  // tensor 1's arrays with Get(), which ran an index getter on Array.prototype (arrays[7] is a
  // hole) that detached tensor 0's buffer. The kernel then wrote into memory owned by the buffer it
  // was transferred to, or freed by GC. The binding reads every element before taking any pointer.
  test.each([
    ['detaches a buffer read earlier', 'detach', 'tensor 0 grad has 1000 elements but needs 0'],
    [
      'shrinks a resizable buffer read earlier',
      'shrink',
      'tensor 0 grad has 1000 elements but needs 2',
    ],
  ] as const)(
    'an index getter on Array.prototype that %s: RangeError, no plan',
    (_what, attack, message) => {
      const length = 1000;
      const resizable = resizableBuffer(4 * length, 4 * length);
      const first = tensor(length, 1);
      const firstParam = new Float32Array(resizable);
      firstParam.set(first[0]!);
      first[0] = firstParam;
      const second = tensor(length, 10);
      const arrays: (Float32Array | null)[] = [...first, ...second];
      Reflect.deleteProperty(arrays, 8); // tensor 1's expAvg: a hole, so Get(8) reads Array.prototype
      Object.defineProperty(Array.prototype, '8', {
        configurable: true,
        get() {
          if (attack === 'detach') detach(firstParam.buffer);
          if (attack === 'shrink') resizable.resize(8);
          return second[2];
        },
      });
      let error;
      try {
        error = nativeError(() => createPlan('adamw', arrays));
      } finally {
        delete (Array.prototype as unknown as Record<string, unknown>)['8'];
      }
      expect(error).toEqual({ name: 'RangeError', message });
    },
  );
});
