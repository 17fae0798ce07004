// The adapter inside tfjs-layers: model.fit trains with it, a callback's learningRate takes effect,
// model.save(handler, { includeOptimizer: true }) and tf.loadLayersModel resume bit for bit (in
// this process and in a fresh one), the config round-trips through tf.serialization, and nothing
// leaks over many steps and saves.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

import { AdamW } from '../lib';
import type { Param } from '../lib/optim/params';
import {
  SimdAdafactor,
  SimdAdam,
  SimdAdamW,
  SimdCAME,
  SimdLion,
  type SimdOptimizer,
} from '../lib/tfjs';
import { firstBitDifference } from './helpers/bits';
import { ensureDist } from './helpers/child';
import { NATIVE_BACKENDS, useBackend } from './helpers/tfjs-backends';
import {
  irisModel,
  irisTensors,
  loadFromMemory,
  rows,
  saveToMemory,
  trainBatches,
  variablesOf,
} from './helpers/tfjs-models';
import {
  arrayBits,
  coreOf,
  gradientValues,
  makeVariables,
  variableBits,
} from './helpers/tfjs-reference';

type AdapterClass = tf.serialization.SerializableConstructor<SimdOptimizer> &
  (new (options: Record<string, unknown>) => SimdOptimizer);

const BATCH = 30; // iris: 5 batches per epoch

const weightBits = (model: tfl.LayersModel): Uint32Array[] => variableBits(model.getWeights());

describe.each(NATIVE_BACKENDS)('model.fit on %s', (backend) => {
  beforeAll(() => useBackend(backend));

  it('trains the iris classifier: the loss falls; on cpu no variable changes its dataId', async () => {
    const optimizer = new SimdAdamW({ lr: 2e-2, weightDecay: 0.01 });
    const model = irisModel(optimizer);
    const variables = variablesOf(model);
    const dataIds = variables.map((v) => v.dataId);
    const data = irisTensors();
    const history = await model.fit(data.xs, data.ys, {
      epochs: 15,
      batchSize: BATCH,
      shuffle: false,
    });
    const losses = history.history.loss as number[];
    expect(losses[losses.length - 1]).toBeLessThan(0.5 * losses[0]);
    expect(optimizer.iterations).toBe(15 * 5);
    expect(optimizer.updatePath).toBe(backend === 'cpu' ? 'cpu-in-place' : 'wasm-clone-assign');
    // Still the model's variables (the adapter assigns, never replaces them), and on cpu stepped
    // in their own storage from the first step to the last.
    expect(variablesOf(model)).toEqual(variables);
    if (backend === 'cpu') variables.forEach((v, k) => expect(v.dataId).toBe(dataIds[k]));
    optimizer.dispose();
    model.dispose();
    tf.dispose(data);
  });
});

describe('learningRate set by a tfjs callback', () => {
  beforeAll(() => useBackend('cpu'));

  it('takes effect at the next step: the run equals the core AdamW run with those lrs', async () => {
    const optimizer = new SimdAdamW({ lr: 1e-2, weightDecay: 0.05 });
    const model = irisModel(optimizer, 7);
    const variables = variablesOf(model);
    const initial = variables.map((v) => Float32Array.from(v.dataSync()));
    // Each gradient the model hands the optimizer, recorded before the step.
    const recorded: { names: string[]; grads: Float32Array[]; lr: number }[] = [];
    const applyGradients = optimizer.applyGradients.bind(optimizer);
    optimizer.applyGradients = (gradients) => {
      const list = Array.isArray(gradients)
        ? gradients
        : Object.entries(gradients).map(([name, tensor]) => ({ name, tensor }));
      recorded.push({
        names: list.map((g) => g.name),
        grads: list.map((g) => Float32Array.from(g.tensor.dataSync())),
        lr: optimizer.learningRate,
      });
      applyGradients(gradients);
    };
    const lrFor = (epoch: number, batch: number): number => 1e-2 / (1 + epoch) / (1 + batch);
    let epochNow = 0;
    const data = irisTensors();
    await model.fit(data.xs, data.ys, {
      epochs: 2,
      batchSize: BATCH,
      shuffle: false,
      callbacks: {
        onEpochBegin: (epoch) => {
          epochNow = epoch;
          return Promise.resolve();
        },
        onBatchBegin: (batch) => {
          // As a tfjs callback reaches it: through the model.
          const current = model.optimizer;
          if (!(current instanceof SimdAdamW)) throw new Error('not the SimdAdamW');
          current.learningRate = lrFor(epochNow, batch);
          return Promise.resolve();
        },
      },
    });
    const lrs = [0, 1].flatMap((epoch) => [0, 1, 2, 3, 4].map((batch) => lrFor(epoch, batch)));
    expect(recorded.map((step) => step.lr)).toEqual(lrs);
    // The core over copies of the initial weights, in the order the model gave the gradients.
    const replay = (lrOf: (step: number) => number): Float32Array[] => {
      const order = recorded[0].names.map((name) => variables.findIndex((v) => v.name === name));
      const params: Param[] = order.map((k) => ({
        data: initial[k].slice(),
        grad: new Float32Array(initial[k].length),
      }));
      const core = new AdamW(params, { lr: 1e-2, weightDecay: 0.05 });
      for (const [step, { grads }] of recorded.entries()) {
        for (const [i, param] of params.entries()) param.grad.set(grads[i]);
        core.paramGroups[0].lr = lrOf(step);
        core.step();
      }
      return params.map((param) => param.data);
    };
    const expected = replay((step) => lrs[step]);
    const modelOrder = recorded[0].names.map((name) => variables.find((v) => v.name === name)!);
    expect(firstBitDifference(variableBits(modelOrder), arrayBits(expected))).toBeNull();
    // The lrs mattered: a constant lr ends elsewhere.
    expect(
      firstBitDifference(variableBits(modelOrder), arrayBits(replay(() => 1e-2))),
    ).not.toBeNull();
    optimizer.dispose();
    model.dispose();
    tf.dispose(data);
  });
});

// Each optimizer with options that exercise its state: the resumed run must continue all of it.
const RESUME_CASES: [AdapterClass, Record<string, unknown>][] = [
  [SimdAdamW, { lr: 2e-2, weightDecay: 0.05, noDecay: 'biasAndNorm' }],
  [SimdAdamW, { lr: 2e-2, weightDecay: 0.05, stateDtype: 'blockwise8', min8bitSize: 16 }],
  [SimdAdamW, { lr: 2e-2, stateDtype: 'bfloat16' }],
  [SimdAdam, { lr: 2e-2, amsgrad: true }],
  [SimdLion, { lr: 2e-3, weightDecay: 0.1 }],
  [SimdAdafactor, { beta1: 0.9 }],
  [SimdCAME, { lr: 2e-3 }],
];
const FIRST = 4; // batches before the save
const MORE = 4; // batches after it

describe('save, load, resume bit for bit', () => {
  beforeAll(() => useBackend('cpu'));

  describe.each(NATIVE_BACKENDS)('in this process, on %s', (backend) => {
    beforeAll(() => useBackend(backend));

    it.each(RESUME_CASES)('%p %j', async (Adapter, options) => {
      const data = irisTensors();
      const straight = irisModel(new Adapter(options), 3);
      await trainBatches(straight, data, 0, FIRST + MORE, BATCH);
      const interrupted = irisModel(new Adapter(options), 3);
      await trainBatches(interrupted, data, 0, FIRST, BATCH);
      const artifacts = await saveToMemory(interrupted);
      const loaded = await loadFromMemory(artifacts);
      expect(loaded.optimizer).toBeInstanceOf(Adapter);
      expect(loaded.optimizer.iterations).toBe(FIRST);
      // Renamed variables (the originals still exist): the state is matched by position.
      expect(variablesOf(loaded).map((v) => v.name)).not.toEqual(
        variablesOf(interrupted).map((v) => v.name),
      );
      await trainBatches(loaded, data, FIRST, MORE, BATCH);
      expect(firstBitDifference(weightBits(loaded), weightBits(straight))).toBeNull();
      expect(loaded.optimizer.getConfig()).toEqual(straight.optimizer.getConfig());
      // The comparison can fail: resuming without the optimizer's state ends elsewhere.
      const stateless = await loadFromMemory(await saveToMemory(interrupted, false));
      stateless.compile({ optimizer: new Adapter(options), loss: 'categoricalCrossentropy' });
      await trainBatches(stateless, data, FIRST, MORE, BATCH);
      expect(firstBitDifference(weightBits(stateless), weightBits(straight))).not.toBeNull();
      for (const model of [straight, interrupted, loaded, stateless]) {
        model.optimizer.dispose();
        model.dispose();
      }
      tf.dispose(data);
    });
  });

  describe('in a fresh process', () => {
    let folder = '';
    beforeAll(() => {
      ensureDist(); // the child loads dist/lib/tfjs
      folder = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-tfjs-'));
    }, 180_000);
    afterAll(() => fs.rmSync(folder, { recursive: true, force: true }));

    it.each(NATIVE_BACKENDS)(
      '%s: save after N batches, load and train M more in a child == N + M batches here',
      async (backend) => {
        await useBackend(backend);
        const options = { lr: 2e-2, weightDecay: 0.05, stateDtype: 'bfloat16' } as const;
        const data = irisTensors();
        const straight = irisModel(new SimdAdamW(options), 5);
        await trainBatches(straight, data, 0, FIRST + MORE, BATCH);
        const interrupted = irisModel(new SimdAdamW(options), 5);
        await trainBatches(interrupted, data, 0, FIRST, BATCH);
        const artifacts = await saveToMemory(interrupted);
        const weightData = tf.io.CompositeArrayBuffer.join(artifacts.weightData);
        const batches = Array.from({ length: MORE }, (_, i) => {
          const start = ((FIRST + i) % 5) * BATCH;
          return {
            xs: Array.from(rows(data.xs, start, BATCH).dataSync()),
            ys: Array.from(rows(data.ys, start, BATCH).dataSync()),
          };
        });
        const input = path.join(folder, `resume-${backend}.json`);
        fs.writeFileSync(
          input,
          JSON.stringify({
            backend,
            artifacts: { ...artifacts, weightData: Buffer.from(weightData).toString('base64') },
            batches,
            xsShape: [BATCH, 4],
            ysShape: [BATCH, 3],
          }),
        );
        const child = path.join(__dirname, 'helpers', 'tfjs-resume-child.js');
        const output = JSON.parse(
          execFileSync(process.execPath, [child, input], { encoding: 'utf8', timeout: 60_000 }),
        ) as { className: string; iterations: number; updatePath: string; weights: string[] };
        expect(output.className).toBe('SimdAdamW');
        expect(output.iterations).toBe(FIRST + MORE);
        expect(output.updatePath).toBe(backend === 'cpu' ? 'cpu-in-place' : 'wasm-clone-assign');
        const base64 = (bits: Uint32Array): string =>
          Buffer.from(bits.buffer, bits.byteOffset, bits.byteLength).toString('base64');
        expect(output.weights).toEqual(weightBits(straight).map(base64));
        // And the child did train: its weights are not the saved ones.
        expect(output.weights).not.toEqual(weightBits(interrupted).map(base64));
        for (const model of [straight, interrupted]) {
          model.optimizer.dispose();
          model.dispose();
        }
        tf.dispose(data);
      },
      60_000,
    );
  });
});

const CLASSES: [AdapterClass, Record<string, unknown>][] = [
  [SimdAdamW, { lr: 3e-3, betas: [0.8, 0.95], weightDecay: 0.02, stateDtype: 'bfloat16' }],
  [SimdAdam, { lr: 3e-3, eps: 1e-6, amsgrad: true, maximize: true }],
  [SimdLion, { lr: 1e-4, betas: [0.95, 0.98], weightDecay: 0.1 }],
  [SimdAdafactor, { beta1: 0.9, clipThreshold: 2, scaleParameter: false }],
  [SimdCAME, { lr: 1e-4, betas: [0.9, 0.99, 0.999] }],
];

describe('serialization', () => {
  beforeAll(() => useBackend('cpu'));
  let nextId = 0;

  it.each(CLASSES)(
    '%p: registered by className; getConfig/fromConfig round trip steps alike',
    (Adapter, options) => {
      expect(Adapter.className).toBe(Adapter.name);
      const registered = tf.serialization.SerializationMap.getMap().classNameMap[Adapter.className];
      expect(registered?.[0]).toBe(Adapter);
      const original = new Adapter(options);
      expect(original.getClassName()).toBe(Adapter.className);
      const config = original.getConfig();
      for (const [key, value] of Object.entries(options)) expect(config[key]).toEqual(value);
      const copy = tf.serialization.Serializable.fromConfig(Adapter, config) as SimdOptimizer;
      expect(copy).toBeInstanceOf(Adapter);
      expect(copy.getConfig()).toEqual(config);
      // The two step alike.
      const id = nextId++;
      const specs = [
        { name: `ser${id}/kernel`, shape: [6, 5] },
        { name: `ser${id}/bias`, shape: [5] },
      ];
      const ours = makeVariables(specs);
      const theirs = makeVariables(specs.map((s) => ({ ...s, name: `${s.name}/copy` })));
      for (let step = 0; step < 3; step++) {
        tf.tidy(() => {
          const grads = ours.map((v, k) => tf.tensor(gradientValues(v.size, step, k), v.shape));
          original.applyGradients(ours.map((v, k) => ({ name: v.name, tensor: grads[k] })));
          copy.applyGradients(theirs.map((v, k) => ({ name: v.name, tensor: grads[k] })));
        });
      }
      expect(firstBitDifference(variableBits(theirs), variableBits(ours))).toBeNull();
      // After steps the config still describes the optimizer (the live hyperparameters).
      expect(copy.getConfig()).toEqual(original.getConfig());
      original.dispose();
      copy.dispose();
      tf.dispose([...ours, ...theirs]);
    },
  );

  it("getWeights lists the state as tf.train.adam does: iter, every '<var>/m', every '<var>/v'", async () => {
    const id = nextId++;
    const variables = makeVariables([
      { name: `gw${id}/kernel`, shape: [4, 3] },
      { name: `gw${id}/bias`, shape: [3] },
    ]);
    const optimizer = new SimdAdamW({ lr: 1e-2 });
    for (let step = 0; step < 2; step++) {
      tf.tidy(() =>
        optimizer.applyGradients(
          variables.map((v, k) => ({
            name: v.name,
            tensor: tf.tensor(gradientValues(v.size, step, k), v.shape),
          })),
        ),
      );
    }
    const weights = await optimizer.getWeights();
    const [kernel, bias] = variables.map((v) => v.name);
    expect(weights.map((w) => w.name)).toEqual([
      'iter',
      `${kernel}/m`,
      `${bias}/m`,
      `${kernel}/v`,
      `${bias}/v`,
      'simd-adamw/state',
    ]);
    expect(weights[0].tensor.dataSync()[0]).toBe(2);
    const core = coreOf(optimizer);
    const state = core.paramGroups[0].params.map((param) => core.state(param));
    const moments = (name: 'expAvg' | 'expAvgSq') =>
      state.map((s) => (s as unknown as Record<string, Float32Array>)[name]);
    expect(
      firstBitDifference(
        variableBits(weights.slice(1, 3).map((w) => w.tensor)),
        arrayBits(moments('expAvg')),
      ),
    ).toBeNull();
    expect(
      firstBitDifference(
        variableBits(weights.slice(3, 5).map((w) => w.tensor)),
        arrayBits(moments('expAvgSq')),
      ),
    ).toBeNull();
    optimizer.dispose();
    tf.dispose(variables);
  });

  it('a noDecay function is saved as its answer per variable, and that config decays alike', () => {
    const isBias = (name: string): boolean => name.endsWith('/bias');
    const original = new SimdAdamW({ lr: 1e-2, weightDecay: 0.5, noDecay: isBias });
    expect(() => original.getConfig()).toThrow(/noDecay function/);
    const id = nextId++;
    const specs = [
      { name: `nd${id}/kernel`, shape: [4, 3] },
      { name: `nd${id}/bias`, shape: [3] },
    ];
    const ours = makeVariables(specs);
    const zero = (v: tf.Variable): tf.Tensor => tf.zerosLike(v);
    tf.tidy(() => original.applyGradients(ours.map((v) => ({ name: v.name, tensor: zero(v) }))));
    const config = original.getConfig();
    expect(config.noDecay).toEqual([false, true]);
    const copy = SimdAdamW.fromConfig<SimdAdamW>(SimdAdamW, config);
    const theirs = makeVariables(specs.map((s) => ({ ...s, name: `${s.name}/copy` })));
    const [kernelBefore, biasBefore] = variableBits(theirs);
    tf.tidy(() => copy.applyGradients(theirs.map((v) => ({ name: v.name, tensor: zero(v) }))));
    // A zero gradient leaves only the decay: the kernel shrank, the bias did not move.
    const [kernel, bias] = variableBits(theirs);
    expect(firstBitDifference([kernel], [kernelBefore])).not.toBeNull();
    expect(firstBitDifference([bias], [biasBefore])).toBeNull();
    expect(firstBitDifference(variableBits(theirs), variableBits(ours))).toBeNull();
    original.dispose();
    copy.dispose();
    tf.dispose([...ours, ...theirs]);
  });
});

describe('no tensor leaks', () => {
  describe.each(NATIVE_BACKENDS)('on %s', (backend) => {
    beforeAll(() => useBackend(backend));

    it('tf.memory().numTensors is flat over 1,000 steps', () => {
      const variables = makeVariables([
        { name: `leak-${backend}/kernel`, shape: [16, 8] },
        { name: `leak-${backend}/bias`, shape: [8] },
      ]);
      const grads = variables.map((v, k) => tf.tensor(gradientValues(v.size, 0, k), v.shape));
      const optimizer = new SimdAdamW({ lr: 1e-4 });
      const named = variables.map((v, k) => ({ name: v.name, tensor: grads[k] }));
      optimizer.applyGradients(named);
      const counts = new Set<number>();
      for (let step = 1; step < 1000; step++) {
        optimizer.applyGradients(named);
        if (step % 100 === 0) counts.add(tf.memory().numTensors);
      }
      expect([...counts]).toEqual([tf.memory().numTensors]);
      const before = tf.memory().numTensors;
      optimizer.dispose();
      tf.dispose([...variables, ...grads]);
      expect(tf.memory().numTensors).toBe(before - 4);
    });
  });
});

describe('no tensor leaks over saves', () => {
  beforeAll(() => useBackend('cpu'));

  // numTensors after each of 20 saves, from the second on (the first one creates the tensors that
  // the optimizer keeps until its next getWeights).
  async function countsOverSaves(optimizer: tf.Optimizer): Promise<number[]> {
    const data = irisTensors();
    const model = irisModel(optimizer, 9);
    await trainBatches(model, data, 0, 2, BATCH);
    const counts: number[] = [];
    for (let save = 0; save < 20; save++) {
      await saveToMemory(model);
      if (save > 0) counts.push(tf.memory().numTensors);
    }
    optimizer.dispose();
    model.dispose();
    tf.dispose(data);
    return counts;
  }

  it('tf.memory().numTensors is flat over 20 saves with includeOptimizer', async () => {
    const counts = await countsOverSaves(new SimdAdamW({ lr: 1e-3 }));
    expect(new Set(counts).size).toBe(1);
    // The measure sees a leak: tfjs 4.22's own Adam leaks one tensor per save (its getWeights'
    // iterations scalar).
    const adamCounts = await countsOverSaves(tf.train.adam(1e-3));
    expect(adamCounts.map((count, i) => count - adamCounts[0] - i)).toEqual(counts.map(() => 0));
  });
});
