// ZeRO-1 over worker threads (lib/distributed/): 1 to 4 ranks, every optimizer and state dtype,
// bitwise equal to the unsharded optimizer fed the same reduced gradient (the ranks' gradients
// added in rank order in float32, then divided by worldSize with `average`); the partition; state
// bytes per rank; agreement errors; checkpoints that resume on other world sizes.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { Adafactor, Adam, AdamW, CAME, Lion } from '../lib';
import { createThreadGroup } from '../lib/distributed/threads';
import { partitionTensors } from '../lib/distributed/partition';
import type { AnyParam } from '../lib/optim/params';
import { ensureDist, PACKAGE_ROOT } from './helpers/child';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { fillGrad } = require('./distributed/zero-rank.js') as {
  fillGrad(
    grad: Float32Array | Uint16Array,
    dtype: string,
    rank: number,
    step: number,
    k: number,
    scale: number,
  ): void;
};

const RANK_SCRIPT = path.join(__dirname, 'distributed', 'zero-rank.js');
const LIB = path.join(PACKAGE_ROOT, 'dist', 'lib', 'index.js');

interface Spec {
  name?: string;
  shape: number[];
  gradDtype?: 'float32' | 'bfloat16';
  dataBf16?: boolean;
}

// Tensors that span ranks, cuts inside tensors (moved to 4096-element blocks), tiny ones, a
// blockwise8-sized one (>= 4096) and matrices for the factored optimizers.
const SPECS: Spec[] = [
  { name: 'w1', shape: [100, 100] },
  { name: 'b1', shape: [300] },
  { name: 'w2', shape: [90, 100], gradDtype: 'bfloat16', dataBf16: true },
  { name: 'b2', shape: [5] },
  { name: 'w3', shape: [17, 241] },
];

// The same without bf16 gradients: a checkpoint resumed on one rank is fed the float32 sum of two
// ranks' gradients, which a bf16 gradient could not hold.
const SPECS_F32: Spec[] = SPECS.map((spec) => {
  const copy = { ...spec };
  delete copy.gradDtype;
  return copy;
});

const lengthOf = (spec: Spec): number => spec.shape.reduce((a, b) => a * b, 1);

function initial(k: number, length: number): Float32Array {
  const data = new Float32Array(length);
  for (let i = 0; i < length; i++) data[i] = Math.sin(k * 7 + i * 0.37) * 0.1;
  return data;
}

type Case = {
  label: string;
  optimizer: 'AdamW' | 'Adam' | 'Lion' | 'Adafactor' | 'CAME';
  options: Record<string, unknown>;
  stepOptions?: Record<string, unknown>;
  scale?: number;
};

const CASES: Case[] = [
  { label: 'AdamW float32', optimizer: 'AdamW', options: { lr: 1e-2, weightDecay: 0.1 } },
  {
    label: 'AdamW float32, clipped, average',
    optimizer: 'AdamW',
    options: { lr: 1e-2, average: true },
    stepOptions: { clipGradNorm: 0.5 },
  },
  {
    label: 'Adam amsgrad',
    optimizer: 'Adam',
    options: { lr: 1e-2, amsgrad: true, weightDecay: 0.01 },
  },
  {
    label: 'AdamW bfloat16, stochastic rounding',
    optimizer: 'AdamW',
    options: { lr: 1e-2, stateDtype: 'bfloat16', stochasticRounding: true, seed: 7 },
  },
  {
    label: 'AdamW blockwise8, gradScale',
    optimizer: 'AdamW',
    options: { lr: 1e-2, stateDtype: 'blockwise8' },
    stepOptions: { gradScale: 1024, clipGradNorm: Infinity },
    scale: 1024,
  },
  { label: 'Lion float32', optimizer: 'Lion', options: { lr: 1e-3, weightDecay: 0.1 } },
  { label: 'Lion bfloat16', optimizer: 'Lion', options: { lr: 1e-3, stateDtype: 'bfloat16' } },
  {
    label: 'Lion blockwise8, clipped',
    optimizer: 'Lion',
    options: { lr: 1e-3, stateDtype: 'blockwise8' },
    stepOptions: { clipGradNorm: 1 },
  },
  { label: 'Adafactor', optimizer: 'Adafactor', options: {} },
  {
    label: 'CAME, clipped',
    optimizer: 'CAME',
    options: { lr: 1e-3, weightDecay: 0.01 },
    stepOptions: { clipGradNorm: 2 },
  },
];

const CLASSES = { AdamW, Adam, Lion, Adafactor, CAME } as const;

interface RankResult {
  rank: number;
  error?: { name: string; message: string };
  reports?: { gradNorm: number | null; clipped: boolean; skipped: boolean; lr: number }[];
  memory?: {
    stateByRank: number[];
    stateTotal: number;
    shard: { state: number };
    shardElements: number;
  };
}

async function runGroup(
  worldSize: number,
  c: Case,
  steps: number,
  extra: Record<string, unknown> = {},
  init: Float32Array[] = SPECS.map((s, k) => initial(k, lengthOf(s))),
  specs: Spec[] = SPECS,
): Promise<{ data: Float32Array[]; bf16: (Uint16Array | undefined)[]; results: RankResult[] }> {
  const group = createThreadGroup({ worldSize, params: specs, timeoutMs: 20_000 });
  for (const [k, p] of group.params.entries()) {
    p.data.set(init[k]);
  }
  const results = await Promise.all(
    Array.from(
      { length: worldSize },
      (_, rank) =>
        new Promise<RankResult>((resolve, reject) => {
          const worker = new Worker(RANK_SCRIPT, {
            workerData: {
              zeroTest: true,
              lib: LIB,
              handle: group.handle(rank),
              optimizer: c.optimizer,
              options: { threads: 1 + (rank % 2), ...c.options },
              stepOptions: c.stepOptions,
              scale: c.scale ?? 1,
              steps,
              ...extra,
            },
          });
          let result: RankResult | undefined;
          worker.on('message', (m: RankResult) => (result = m));
          worker.on('error', reject);
          worker.on('exit', () =>
            result === undefined
              ? reject(new Error(`rank ${rank} posted nothing`))
              : resolve(result),
          );
        }),
    ),
  );
  return {
    data: group.params.map((p) => p.data.slice()),
    bf16: group.params.map((p) => p.dataBf16?.slice()),
    results,
  };
}

// The unsharded optimizer fed the reduced gradient.
function reference(
  worldSize: number,
  c: Case,
  steps: number,
  init: Float32Array[] = SPECS.map((s, k) => initial(k, lengthOf(s))),
  specs: Spec[] = SPECS,
): {
  data: Float32Array[];
  bf16: (Uint16Array | undefined)[];
  optimizer: InstanceType<(typeof CLASSES)[keyof typeof CLASSES]>;
} {
  const params: AnyParam[] = specs.map((spec, k) => {
    const length = lengthOf(spec);
    const p: AnyParam = {
      name: spec.name,
      shape: spec.shape,
      data: init[k].slice(),
      grad: new Float32Array(length),
    };
    if (spec.dataBf16 === true) p.dataBf16 = new Uint16Array(length);
    return p;
  });
  const { average, ...options } = c.options;
  const Class = CLASSES[c.optimizer] as unknown as new (
    g: unknown,
    o: unknown,
  ) => InstanceType<(typeof CLASSES)[keyof typeof CLASSES]>;
  const optimizer = new Class(
    [{ params: params.slice(0, 2) }, { params: params.slice(2), weightDecay: 0 }],
    { threads: 2, ...options },
  );
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let s = 0; s < steps; s++) {
    for (const [k, spec] of specs.entries()) {
      const length = lengthOf(spec);
      const dtype = spec.gradDtype ?? 'float32';
      const sum = params[k].grad as Float32Array;
      for (let r = 0; r < worldSize; r++) {
        const g = dtype === 'float32' ? new Float32Array(length) : new Uint16Array(length);
        fillGrad(g, dtype, r, s, k, c.scale ?? 1);
        for (let i = 0; i < length; i++) {
          let x = g[i];
          if (dtype === 'bfloat16') {
            u32[0] = g[i] << 16;
            x = f32[0];
          }
          sum[i] = r === 0 ? x : Math.fround(sum[i] + x);
        }
      }
      if (average === true)
        for (let i = 0; i < length; i++) sum[i] = Math.fround(sum[i] / worldSize);
    }
    optimizer.step(c.stepOptions);
  }
  return { data: params.map((p) => p.data), bf16: params.map((p) => p.dataBf16), optimizer };
}

function bitsOf(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

beforeAll(() => ensureDist(), 200_000);

describe('the partition', () => {
  test("elements: DeepSpeed's even split, cuts moved down to a 4096-element block of the tensor", () => {
    const lengths = [10000, 300, 9000, 5, 4097];
    const layout = partitionTensors(lengths, 3, 'elements');
    // n = 23402: DeepSpeed's cuts at 7801 and 15602, inside tensor 0 (offset 7801 -> 4096) and
    // tensor 2 (offset 5302 -> 4096).
    expect(layout.shards).toEqual([
      [{ tensor: 0, begin: 0, end: 4096 }],
      [
        { tensor: 0, begin: 4096, end: 10000 },
        { tensor: 1, begin: 0, end: 300 },
        { tensor: 2, begin: 0, end: 4096 },
      ],
      [
        { tensor: 2, begin: 4096, end: 9000 },
        { tensor: 3, begin: 0, end: 5 },
        { tensor: 4, begin: 0, end: 4097 },
      ],
    ]);
    // Every element is owned exactly once, for every world size.
    for (const w of [1, 2, 3, 4, 7, 64]) {
      const owned = lengths.map((n) => new Uint8Array(n));
      for (const shard of partitionTensors(lengths, w, 'elements').shards) {
        for (const s of shard) {
          expect(s.begin % 4096).toBe(0);
          for (let i = s.begin; i < s.end; i++) owned[s.tensor][i] += 1;
        }
      }
      expect(owned.every((o) => o.every((x) => x === 1))).toBe(true);
    }
  });

  test('tensors: whole tensors, largest first to the least loaded rank', () => {
    // 50 -> rank 0, 30 -> rank 1, 30 -> rank 1 (30 < 50), 10 -> rank 0 (50 < 60), 5 -> rank 0
    // (60 = 60: the lower rank).
    const layout = partitionTensors([10, 50, 30, 30, 5], 2, 'tensors');
    expect(layout.shards).toEqual([
      [
        { tensor: 0, begin: 0, end: 10 },
        { tensor: 1, begin: 0, end: 50 },
        { tensor: 4, begin: 0, end: 5 },
      ],
      [
        { tensor: 2, begin: 0, end: 30 },
        { tensor: 3, begin: 0, end: 30 },
      ],
    ]);
  });
});

describe.each(CASES)('$label: bitwise the unsharded optimizer fed the reduced gradient', (c) => {
  test.each([1, 2, 3, 4])(
    '%i ranks, 4 steps',
    async (worldSize) => {
      const steps = 4;
      const { data, bf16, results } = await runGroup(worldSize, c, steps);
      for (const r of results) expect(r.error).toBeUndefined();
      const ref = reference(worldSize, c, steps);
      for (const [k, expected] of ref.data.entries()) {
        expect(bitsOf(data[k])).toEqual(bitsOf(expected));
        if (ref.bf16[k] !== undefined) expect(bf16[k]).toEqual(ref.bf16[k]);
      }
      // The state is split: every rank's bytes add up to the unsharded optimizer's exactly.
      const memory = results[0].memory;
      expect(memory?.stateTotal).toBe(ref.optimizer.memory().state);
      expect(results.map((r) => r.memory?.shard.state)).toEqual(memory?.stateByRank);
      // The reports agree with the unsharded step's (norm, clipped).
      for (const r of results) expect(r.reports?.length).toBe(steps);
    },
    60_000,
  );
});

describe('errors on every rank, before anything changes', () => {
  const c = CASES[0];
  test('a rank created with another lr', async () => {
    const init = SPECS.map((s, k) => initial(k, lengthOf(s)));
    const { data, results } = await runGroup(2, c, 2, { mutate: 'lr' }, init);
    for (const r of results) {
      expect(r.error?.name).toBe('RangeError');
      expect(r.error?.message).toMatch(
        /Expected the same the optimizer class, its hyperparameters/,
      );
    }
    for (const [k, d] of data.entries()) expect(bitsOf(d)).toEqual(bitsOf(init[k]));
  });

  test('a rank whose shapes differ', async () => {
    const { results } = await runGroup(2, c, 2, { mutate: 'shape' });
    for (const r of results) {
      expect(r.error?.name).toBe('RangeError');
      expect(r.error?.message).toMatch(/the params \(their count, lengths and shapes\)/);
    }
  });

  test("a rank's bad grad at step 2: every rank throws there, after one good step", async () => {
    const init = SPECS.map((s, k) => initial(k, lengthOf(s)));
    const { data, results } = await runGroup(2, c, 3, { mutate: 'grad' }, init);
    expect(results[1].error?.name).toBe('RangeError');
    expect(results[1].error?.message).toMatch(/w1/);
    expect(results[0].error?.message).toMatch(/step\(\) failed on rank 1/);
    const ref = reference(2, c, 1, init);
    for (const [k, d] of data.entries()) expect(bitsOf(d)).toEqual(bitsOf(ref.data[k]));
  });
});

describe('checkpoints: a 2-rank checkpoint resumes bit for bit on 2, 1 and 3 ranks', () => {
  test.each([
    ['AdamW blockwise8', CASES[4]],
    ['AdamW bfloat16, stochastic rounding', CASES[3]],
    ['CAME', CASES[9]],
  ])(
    '%s',
    async (_label, c) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-zero-'));
      try {
        const steps = 6;
        // 2 ranks save after step 3 (of 6).
        const init = SPECS_F32.map((s, k) => initial(k, lengthOf(s)));
        const full = await runGroup(2, c, steps, { saveDir: dir }, init, SPECS_F32);
        expect(full.results.map((r) => r.error)).toEqual([undefined, undefined]);
        expect(fs.readdirSync(dir).sort()).toEqual([
          'rank-0-of-2.safetensors',
          'rank-1-of-2.safetensors',
          'zero-manifest.json',
        ]);
        // The params after step 3: the unsharded reference's (bitwise the sharded run's).
        const mid = reference(2, c, 3, init, SPECS_F32).data;
        for (const worldSize of [2, 1, 3]) {
          const resumed = await runGroup(
            worldSize,
            c,
            3,
            { loadDir: dir, gradRanks: 2 },
            mid,
            SPECS_F32,
          );
          for (const r of resumed.results) expect(r.error).toBeUndefined();
          for (const [k, d] of resumed.data.entries())
            expect(bitsOf(d)).toEqual(bitsOf(full.data[k]));
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
    60_000,
  );
});
