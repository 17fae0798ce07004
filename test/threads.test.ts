// Threads and the asynchronous step: every thread count gives bitwise the same result, stepAsync
// leaves the event loop running, and an optimizer refuses to be touched while its step is in flight.
import * as vm from 'node:vm';
import * as v8 from 'node:v8';

import { AdamW, adamwStep, adamwStepAsync, backend, type Param } from '../lib';
import { bitsOf, firstBitDifference } from './helpers/bits';
import { f32 } from './helpers/float32-state';

// Deterministic pseudo-random floats in [-0.5, 0.5) (xorshift), generated once; tests take copies
// of slices so that data generation does not dominate the run time.
const POOL_SIZE = (1 << 21) + 4099;
const pool = new Float32Array(POOL_SIZE);
{
  let x = 2463534242;
  for (let i = 0; i < POOL_SIZE; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    pool[i] = (x >>> 0) / 4294967296 - 0.5;
  }
}

function randomArray(length: number, seed: number, scale = 1): Float32Array {
  const start = (seed * 7919) % (POOL_SIZE - length + 1);
  const out = pool.slice(start, start + length);
  if (scale !== 1) for (let i = 0; i < length; i++) out[i]! *= scale;
  return out;
}

// A model-shaped parameter list: a few large tensors (split across threads) and many small ones
// (spread across threads), with lengths that leave SIMD tails everywhere.
function makeModel(seed: number): Param[] {
  const lengths = [70001, 3, 1, 17, 40000, 65, 128, 33, 1000, 16, 15, 20000];
  for (let i = 0; i < 60; i++) lengths.push(1 + ((i * 37) % 97));
  return lengths.map((length, i) => ({
    name: `p${i}`,
    data: randomArray(length, seed * 1000 + i),
    grad: randomArray(length, seed * 7919 + i, 2),
  }));
}

async function runModel(
  threads: number,
  mode: 'sync' | 'async',
  steps: number,
): Promise<Uint32Array[]> {
  const params = makeModel(1);
  const optimizer = new AdamW(
    [
      { params: params.slice(0, 20), amsgrad: true },
      { params: params.slice(20), weightDecay: 0, maximize: true },
    ],
    { lr: 1e-2, threads },
  );
  for (let t = 0; t < steps; t++) {
    for (const [i, p] of params.entries()) p.grad = randomArray(p.data.length, 31 * t + i, 3);
    if (mode === 'sync') optimizer.step();
    else await optimizer.stepAsync();
  }
  return bitsOf(
    params.flatMap((p) => {
      const s = f32(optimizer.state(p));
      return [p.data, s.expAvg, s.expAvgSq, ...(s.maxExpAvgSq ? [s.maxExpAvgSq] : [])];
    }),
  );
}

describe('thread counts', () => {
  afterAll(() => backend.setIsa(backend.available[0]!));

  test.each(backend.available.map((isa) => [isa]))(
    '%s: 1, 2, 3 and 8 threads, sync and async, give bitwise the same model step',
    async (isa) => {
      backend.setIsa(isa);
      const expected = await runModel(1, 'sync', 3);
      for (const threads of [2, 3, 8]) {
        expect(firstBitDifference(await runModel(threads, 'sync', 3), expected)).toBeNull();
      }
      expect(firstBitDifference(await runModel(2, 'async', 3), expected)).toBeNull();
    },
  );

  test('adamwStep on one large tensor: every thread count matches one thread', async () => {
    const n = 200003;
    const run = async (threads: number, async: boolean): Promise<Uint32Array[]> => {
      const param = randomArray(n, 5);
      const grad = randomArray(n, 6);
      const expAvg = randomArray(n, 7, 0.1);
      const expAvgSq = randomArray(n, 8, 0.01).map((x) => x * x);
      const options = {
        step: 3,
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0.01,
        threads,
      };
      if (async) await adamwStepAsync(param, grad, expAvg, expAvgSq, options);
      else adamwStep(param, grad, expAvg, expAvgSq, options);
      return bitsOf([param, expAvg, expAvgSq]);
    };
    const expected = await run(1, false);
    for (const threads of [2, 4, 7])
      expect(firstBitDifference(await run(threads, false), expected)).toBeNull();
    expect(firstBitDifference(await run(2, true), expected)).toBeNull();
  });

  test('threads is validated', () => {
    const p = { data: new Float32Array(4), grad: new Float32Array(4) };
    expect(() => new AdamW([p], { threads: 0 })).toThrow(RangeError);
    expect(() => new AdamW([p], { threads: 1.5 })).toThrow(/defaults\.threads/);
    const optimizer = new AdamW([p], { threads: 2 });
    expect(optimizer.threads).toBe(2);
    expect(() => (optimizer.threads = 257)).toThrow(RangeError);
    expect(optimizer.threads).toBe(2);
    const { data, grad } = p;
    expect(() =>
      adamwStep(data, grad, new Float32Array(4), new Float32Array(4), {
        step: 1,
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0,
        threads: -1,
      }),
    ).toThrow(/options\.threads/);
  });
});

describe('stepAsync', () => {
  const n = 1 << 21; // large enough that the step takes several event-loop turns
  const makeParams = (): Param[] => [{ data: randomArray(n, 11), grad: randomArray(n, 12) }];

  test('the event loop keeps running while the step runs', async () => {
    const params = makeParams();
    const optimizer = new AdamW(params, { threads: 1 });
    let ticks = 0;
    let ticking = true;
    const tick = (): void => {
      ticks += 1;
      if (ticking) setImmediate(tick);
    };
    const ticksDuringStep: number[] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      ticks = 0;
      ticking = true;
      setImmediate(tick);
      await optimizer.stepAsync();
      ticking = false;
      ticksDuringStep.push(ticks);
    }
    // A synchronous step would block the loop: no tick at all until it returns.
    expect(Math.max(...ticksDuringStep)).toBeGreaterThan(1);
    expect(optimizer.state(params[0]!).step).toBe(3);
  });

  test('matches the synchronous step bitwise', async () => {
    const a = makeParams();
    const b = makeParams();
    const syncOptimizer = new AdamW(a, { lr: 1e-2 });
    const asyncOptimizer = new AdamW(b, { lr: 1e-2 });
    for (let t = 0; t < 2; t++) {
      syncOptimizer.step();
      await asyncOptimizer.stepAsync();
    }
    expect(
      firstBitDifference(
        bitsOf([b[0]!.data, f32(asyncOptimizer.state(b[0]!)).expAvg]),
        bitsOf([a[0]!.data, f32(syncOptimizer.state(a[0]!)).expAvg]),
      ),
    ).toBeNull();
  });

  test('while a step is in flight the optimizer refuses steps, zeroGrad and option changes', async () => {
    const params = makeParams();
    const optimizer = new AdamW(params);
    const before = params[0]!.grad.slice();
    const pending = optimizer.stepAsync();
    expect(optimizer.stepInFlight).toBe(true);
    expect(() => optimizer.step()).toThrow(/in flight/);
    await expect(optimizer.stepAsync()).rejects.toThrow(/in flight/);
    expect(() => optimizer.zeroGrad()).toThrow(/in flight/);
    expect(() => (optimizer.paramGroups[0]!.lr = 0.5)).toThrow(/in flight/);
    expect(() => (optimizer.paramGroups[0]!.betas = [0.8, 0.9])).toThrow(/in flight/);
    expect(() => (optimizer.threads = 1)).toThrow(/in flight/);
    // Checkpoints would read or write state the step is updating.
    expect(() => optimizer.stateDict()).toThrow(/in flight/);
    expect(() => optimizer.save('/nonexistent/never-written.safetensors')).toThrow(/in flight/);
    expect(() => optimizer.loadFrom('/nonexistent/never-read.safetensors')).toThrow(/in flight/);
    await pending;
    expect(optimizer.stepInFlight).toBe(false);
    expect(optimizer.paramGroups[0]!.lr).toBe(1e-3);
    expect(firstBitDifference(bitsOf([params[0]!.grad]), bitsOf([before]))).toBeNull();
    expect(optimizer.state(params[0]!).step).toBe(1);
    optimizer.paramGroups[0]!.lr = 0.5; // allowed again
    optimizer.step();
    expect(optimizer.state(params[0]!).step).toBe(2);
  });

  test('sync steps of one optimizer during an async step of another match one-thread runs', async () => {
    const reference = async (
      params: Param[],
      steps: number,
      async: boolean,
    ): Promise<Uint32Array[]> => {
      const optimizer = new AdamW(params, { threads: 1, lr: 1e-2 });
      for (let t = 0; t < steps; t++) {
        if (async) await optimizer.stepAsync();
        else optimizer.step();
      }
      return bitsOf([params[0]!.data, f32(optimizer.state(params[0]!)).expAvgSq]);
    };
    const big = makeParams();
    const small = (): Param[] => [{ data: randomArray(50000, 21), grad: randomArray(50000, 22) }];
    const bigOptimizer = new AdamW(big, { threads: 2, lr: 1e-2 });
    const smallParams = small();
    const smallOptimizer = new AdamW(smallParams, { threads: 2, lr: 1e-2 });
    // While the big step holds the pool, the small steps run on the calling thread alone.
    const pending = bigOptimizer.stepAsync();
    for (let t = 0; t < 200; t++) smallOptimizer.step();
    await pending;
    expect(
      firstBitDifference(
        bitsOf([big[0]!.data, f32(bigOptimizer.state(big[0]!)).expAvgSq]),
        await reference(makeParams(), 1, true),
      ),
    ).toBeNull();
    expect(
      firstBitDifference(
        bitsOf([smallParams[0]!.data, f32(smallOptimizer.state(smallParams[0]!)).expAvgSq]),
        await reference(small(), 200, false),
      ),
    ).toBeNull();
  });

  test('invalid input rejects the promise and changes nothing', async () => {
    const params = makeParams();
    const optimizer = new AdamW(params);
    const data = params[0]!.data.slice();
    params[0]!.grad = new Float32Array(3);
    await expect(optimizer.stepAsync()).rejects.toThrow(RangeError);
    expect(optimizer.stepInFlight).toBe(false);
    expect(firstBitDifference(bitsOf([params[0]!.data]), bitsOf([data]))).toBeNull();
    expect(optimizer.state(params[0]!).step).toBe(0);
  });

  test('keeps the arrays alive when the caller drops every reference', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const expected = makeParams();
    new AdamW(expected).step();
    // Only the param's data is kept here; the caller holds no reference to the optimizer, its
    // state or the grad while the step runs.
    const { data, pending } = ((): { data: Float32Array; pending: Promise<unknown> } => {
      const params = makeParams();
      return { data: params[0]!.data, pending: new AdamW(params).stepAsync() };
    })();
    for (let i = 0; i < 5; i++) gc();
    await pending;
    expect(firstBitDifference(bitsOf([data]), bitsOf([expected[0]!.data]))).toBeNull();
  });
});
