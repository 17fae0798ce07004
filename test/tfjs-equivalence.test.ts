// The adapter computes what the core computes: with the same gradient sequence every Simd*
// optimizer gives the same bits as its core optimizer over plain Float32Arrays (param order =
// applyGradients order), on each update path: cpu in place, wasm clone+assign, and the copy path
// of a backend whose internals the adapter cannot see. And SimdAdam is tf.train.adam's algorithm.
import * as tf from '@tensorflow/tfjs-core';

import { SimdAdafactor, SimdAdam, SimdAdamW, SimdCAME, SimdLion } from '../lib/tfjs';
import type { SimdOptimizer, UpdatePath } from '../lib/tfjs';
import { firstBitDifference } from './helpers/bits';
import { OPAQUE_BACKEND, useBackend } from './helpers/tfjs-backends';
import {
  type AdapterName,
  arrayBits,
  coreOf,
  coreReference,
  gradientValues,
  makeVariables,
  stateFingerprint,
  variableBits,
  type VariableSpec,
} from './helpers/tfjs-reference';

const ADAPTERS: Record<AdapterName, new (options: Record<string, unknown>) => SimdOptimizer> = {
  SimdAdamW,
  SimdAdam,
  SimdLion,
  SimdAdafactor,
  SimdCAME,
};

// Every optimizer, and AdamW with each lean state dtype. The first variable (5,120 elements, 2-D)
// is over blockwise8's min8bitSize and factored by Adafactor and CAME; the others are not.
const CASES: [AdapterName, Record<string, unknown>][] = [
  ['SimdAdamW', { lr: 1e-2, weightDecay: 0.1 }],
  ['SimdAdamW', { lr: 1e-2, weightDecay: 0.1, stateDtype: 'bfloat16' }],
  ['SimdAdamW', { lr: 1e-2, weightDecay: 0.1, stateDtype: 'blockwise8' }],
  ['SimdAdam', { lr: 1e-2, weightDecay: 0.01, amsgrad: true }],
  ['SimdLion', { lr: 1e-3, weightDecay: 0.1 }],
  ['SimdAdafactor', { beta1: 0.9, weightDecay: 0.01 }],
  ['SimdCAME', { lr: 1e-3, weightDecay: 0.01 }],
];

const BACKEND_PATHS: [string, UpdatePath][] = [
  ['cpu', 'cpu-in-place'],
  ['wasm', 'wasm-clone-assign'],
  [OPAQUE_BACKEND, 'copy'],
];

const STEPS = 4;
let nextId = 0;

function specs(): VariableSpec[] {
  const id = nextId++;
  return [
    { name: `eq${id}/kernel`, shape: [64, 80] },
    { name: `eq${id}/bias`, shape: [80] },
    { name: `eq${id}/embedding`, shape: [7, 9] },
  ];
}

describe.each(BACKEND_PATHS)('on the %s backend', (backend, path) => {
  beforeAll(() => useBackend(backend));

  it.each(CASES)('%s %j: the same bits as the core optimizer, every step', (name, options) => {
    const variableSpecs = specs();
    const variables = makeVariables(variableSpecs);
    const initial = variableBits(variables);
    const adapter = new ADAPTERS[name](options);
    const reference = coreReference(name, variableSpecs, options);
    expect(adapter.updatePath).toBeNull();
    for (let step = 0; step < STEPS; step++) {
      const gradients = variables.map((v, k) => gradientValues(v.size, step, k));
      tf.tidy(() =>
        adapter.applyGradients(
          variables.map((v, k) => ({ name: v.name, tensor: tf.tensor(gradients[k], v.shape) })),
        ),
      );
      for (const [k, param] of reference.params.entries()) param.grad.set(gradients[k]);
      reference.optimizer.step();
      expect(adapter.updatePath).toBe(path);
      expect(
        firstBitDifference(variableBits(variables), arrayBits(reference.params.map((p) => p.data))),
      ).toBeNull();
      expect(stateFingerprint(coreOf(adapter))).toEqual(stateFingerprint(reference.optimizer));
    }
    expect(adapter.iterations).toBe(STEPS);
    // The case runs what it names: the lean dtype on the big variable, factored moments on 2-D.
    const state = (coreOf(adapter).stateDict() as { state: Record<string, unknown>[] }).state;
    expect(state[0].dtype).toBe(options.stateDtype ?? 'float32');
    if (name === 'SimdAdafactor' || name === 'SimdCAME') {
      expect(state[0]).toHaveProperty('expAvgSqRow');
      expect(state[1]).not.toHaveProperty('expAvgSqRow');
    }
    // The variables did move (so the comparison above is not of two untouched copies).
    expect(firstBitDifference(variableBits(variables), initial)).not.toBeNull();
    adapter.dispose();
    for (const v of variables) v.dispose();
  });

  it('a NamedTensorMap steps the variables in its key order, as the array form does', () => {
    const variableSpecs = specs();
    const variables = makeVariables(variableSpecs);
    const options = { lr: 1e-2, weightDecay: 0.1 };
    const adapter = new SimdAdamW(options);
    const reference = coreReference('SimdAdamW', variableSpecs, options);
    for (let step = 0; step < 2; step++) {
      const gradients = variables.map((v, k) => gradientValues(v.size, step, k));
      tf.tidy(() =>
        adapter.applyGradients(
          Object.fromEntries(variables.map((v, k) => [v.name, tf.tensor(gradients[k], v.shape)])),
        ),
      );
      for (const [k, param] of reference.params.entries()) param.grad.set(gradients[k]);
      reference.optimizer.step();
    }
    expect(
      firstBitDifference(variableBits(variables), arrayBits(reference.params.map((p) => p.data))),
    ).toBeNull();
    expect(stateFingerprint(coreOf(adapter))).toEqual(stateFingerprint(reference.optimizer));
    adapter.dispose();
    for (const v of variables) v.dispose();
  });
});

// tf.train.adam and the core's Adam run the same algorithm but round differently: tfjs keeps the
// bias corrections as float32 running products (accBeta1 *= beta1, accBeta2 *= beta2 each step)
// and divides m and v by (1 - accBeta) in float32 tensor ops, while the core computes beta^t and
// the step size in float64 and does one fused float32 update. accBeta's rounding error compounds
// with every multiplication, and 1 - accBeta2 (about 1e-3 early on) loses most of float32's digits,
// so the two runs agree to ~1e-7 over the first steps and then slowly drift apart.
describe.each(['cpu', 'wasm'])('SimdAdam next to tf.train.adam on %s', (backend) => {
  beforeAll(() => useBackend(backend));

  it('with weightDecay 0 and eps 1e-7 (tfjs: no decay, epsilon 1e-7): within 1e-5 for 10 steps', () => {
    const variableSpecs = specs();
    const ours = makeVariables(variableSpecs);
    const theirs = makeVariables(variableSpecs.map((s) => ({ ...s, name: `${s.name}/tfjs` })));
    const lr = 1e-2; // large enough that a wrong bias correction would show by far more than 1e-5
    const simd = new SimdAdam({ lr, betas: [0.9, 0.999], eps: 1e-7, weightDecay: 0 });
    const tfjs = tf.train.adam(lr, 0.9, 0.999, 1e-7);
    const initial = variableBits(ours);
    for (let step = 0; step < 10; step++) {
      tf.tidy(() => {
        const gradients = ours.map((v, k) => tf.tensor(gradientValues(v.size, step, k), v.shape));
        simd.applyGradients(ours.map((v, k) => ({ name: v.name, tensor: gradients[k] })));
        tfjs.applyGradients(theirs.map((v, k) => ({ name: v.name, tensor: gradients[k] })));
      });
      for (const [k, v] of ours.entries()) {
        const a = v.dataSync();
        const b = theirs[k].dataSync();
        let maxDifference = 0;
        for (let i = 0; i < a.length; i++)
          maxDifference = Math.max(maxDifference, Math.abs(a[i] - b[i]));
        expect(maxDifference).toBeLessThan(1e-5);
      }
    }
    // Ten steps of lr 1e-2 moved every variable by far more than the tolerance.
    const moved = ours[0].dataSync();
    const start = new Float32Array(initial[0].buffer);
    expect(Math.max(...moved.map((x, i) => Math.abs(x - start[i])))).toBeGreaterThan(1e-2);
    simd.dispose();
    tfjs.dispose();
    for (const v of [...ours, ...theirs]) v.dispose();
  });
});
