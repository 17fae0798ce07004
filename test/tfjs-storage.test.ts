// Where the adapter's step writes (lib/tfjs/variable-storage.ts), and what it must never touch: on
// cpu the variable's own storage in place, copied first whenever another tensor shares it; on wasm a
// clone that is assigned back, so that XNNPACK's packed-weight cache (keyed by tensor id) never
// serves old weights, and heap views that survive the heap growing between steps. Also which
// variables a step touches (missing and shared gradients) and what bad input leaves unchanged.
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

import type { Param } from '../lib/optim/params';
import { SimdAdamW } from '../lib/tfjs';
import { firstBitDifference } from './helpers/bits';
import { NATIVE_BACKENDS, useBackend, wasmHeapBytes, wasmHeapView } from './helpers/tfjs-backends';
import {
  arrayBits,
  coreOf,
  coreReference,
  gradientValues,
  initialValues,
  makeVariables,
  stateFingerprint,
  stepCounts,
  variableBits,
  type VariableSpec,
} from './helpers/tfjs-reference';
import { variablesOf } from './helpers/tfjs-models';

const OPTIONS = { lr: 1e-2, weightDecay: 0.1 };
let nextId = 0;
const uniqueName = (label: string): string => `storage${nextId++}/${label}`;

/** One step of `optimizer` with the seeded gradients of `step` for `variables`. */
function step(optimizer: SimdAdamW, variables: readonly tf.Variable[], stepIndex: number): void {
  tf.tidy(() =>
    optimizer.applyGradients(
      variables.map((v, k) => ({
        name: v.name,
        tensor: tf.tensor(gradientValues(v.size, stepIndex, k), v.shape),
      })),
    ),
  );
}

/** The core's step with the same gradients. */
function referenceStep(
  reference: { optimizer: { step(): unknown }; params: Param[] },
  stepIndex: number,
): void {
  for (const [k, param] of reference.params.entries()) {
    param.grad.set(gradientValues(param.data.length, stepIndex, k));
  }
  reference.optimizer.step();
}

const specsOf = (variables: readonly tf.Variable[]): VariableSpec[] =>
  variables.map((v) => ({ name: v.name, shape: v.shape }));

const valuesBits = (params: readonly Param[]) => arrayBits(params.map((p) => p.data));

// Each way a variable's storage can be shared with another live tensor (the variables hold
// initialValues(shape, k) for their k, as the core reference starts from).
interface Sharing {
  variables: tf.Variable[];
  others: tf.Tensor[];
}
const SHARING_CASES: [string, () => Sharing][] = [
  [
    'tf.clone(v) alive',
    () => {
      const [v] = makeVariables([{ name: uniqueName('cloned'), shape: [6, 5] }]);
      return { variables: [v], others: [tf.clone(v)] };
    },
  ],
  [
    'tf.reshape(v) alive',
    () => {
      const [v] = makeVariables([{ name: uniqueName('reshaped'), shape: [6, 5] }]);
      return { variables: [v], others: [tf.reshape(v, [30])] };
    },
  ],
  [
    'tf.variable(t) with t alive',
    () => {
      const t = tf.tensor(initialValues([6, 5], 0), [6, 5]);
      return { variables: [tf.variable(t, true, uniqueName('fromT'))], others: [t] };
    },
  ],
  [
    'tensors given to model.setWeights',
    () => {
      const model = tfl.sequential({ layers: [tfl.layers.dense({ units: 5, inputShape: [6] })] });
      const variables = variablesOf(model);
      const given = variables.map((v, k) => tf.tensor(initialValues(v.shape, k), v.shape));
      model.setWeights(given);
      return { variables, others: given };
    },
  ],
  [
    'tensors given to layer.setWeights',
    () => {
      const layer = tfl.layers.dense({ units: 5, inputShape: [6] });
      tfl.sequential({ layers: [layer] });
      const variables = variablesOf(layer);
      const given = variables.map((v, k) => tf.tensor(initialValues(v.shape, k), v.shape));
      layer.setWeights(given);
      return { variables, others: given };
    },
  ],
];

// Three variables a, b, c, the adapter, and one core AdamW per variable, stepped only when the
// variable has a gradient: AdamW steps each param on its own, so that is the reference.
function partialSteps() {
  const variables = makeVariables(
    ['a', 'b', 'c'].map((label) => ({ name: uniqueName(label), shape: [4, 3] })),
  );
  const optimizer = new SimdAdamW(OPTIONS);
  const references = variables.map((v, k) => {
    const reference = coreReference('SimdAdamW', [{ name: v.name, shape: v.shape }], OPTIONS);
    reference.params[0].data.set(initialValues(v.shape, k));
    return reference;
  });
  // true: a gradient; null: an explicit "none"; absent: left out of the map.
  const stepSome = (stepIndex: number, given: Record<string, boolean | null>): void => {
    tf.tidy(() => {
      const map: tf.NamedTensorMap = {};
      for (const [k, v] of variables.entries()) {
        const has = given[v.name];
        if (has === true) map[v.name] = tf.tensor(gradientValues(v.size, stepIndex, k), v.shape);
        else if (has === null) map[v.name] = null as unknown as tf.Tensor;
      }
      optimizer.applyGradients(map);
    });
    for (const [k, v] of variables.entries()) {
      if (given[v.name] !== true) continue;
      references[k].params[0].grad.set(gradientValues(v.size, stepIndex, k));
      references[k].optimizer.step();
    }
  };
  const expectMatchesReferences = (): void => {
    for (const [k, v] of variables.entries()) {
      expect(firstBitDifference(variableBits([v]), valuesBits(references[k].params))).toBeNull();
    }
  };
  const dispose = (): void => {
    optimizer.dispose();
    tf.dispose(variables);
  };
  return { variables, optimizer, stepSome, expectMatchesReferences, dispose };
}

describe.each(NATIVE_BACKENDS)('on %s', (backend) => {
  beforeAll(() => useBackend(backend));

  it.each(SHARING_CASES)(
    'copy-on-write, %s: the other tensor keeps its values while the variable moves',
    (_label, share) => {
      const { variables, others } = share();
      const othersBefore = variableBits(others);
      const variablesBefore = variableBits(variables);
      const optimizer = new SimdAdamW(OPTIONS);
      const reference = coreReference('SimdAdamW', specsOf(variables), OPTIONS);
      expect(firstBitDifference(variablesBefore, valuesBits(reference.params))).toBeNull();
      step(optimizer, variables, 0);
      referenceStep(reference, 0);
      expect(firstBitDifference(variableBits(others), othersBefore)).toBeNull();
      expect(firstBitDifference(variableBits(variables), variablesBefore)).not.toBeNull();
      expect(firstBitDifference(variableBits(variables), valuesBits(reference.params))).toBeNull();
      // The storage is the variable's own now: on cpu the next step is in place (same dataId).
      const dataIds = variables.map((v) => v.dataId);
      step(optimizer, variables, 1);
      referenceStep(reference, 1);
      expect(firstBitDifference(variableBits(others), othersBefore)).toBeNull();
      expect(firstBitDifference(variableBits(variables), valuesBits(reference.params))).toBeNull();
      if (backend === 'cpu') {
        expect(optimizer.updatePath).toBe('cpu-in-place');
        variables.forEach((v, k) => expect(v.dataId).toBe(dataIds[k]));
      }
      optimizer.dispose();
      tf.dispose([...variables, ...others]);
    },
  );

  it('variables first seen in later steps are added; the others keep their state', () => {
    const { variables, optimizer, stepSome, expectMatchesReferences, dispose } = partialSteps();
    const [a, b, c] = variables;
    // One more variable each step (on wasm, every step's heap memory is freed and reused by the
    // next: the known variables' arrays from an earlier step must not be handed to the core).
    stepSome(0, { [a.name]: true });
    stepSome(1, { [a.name]: true, [b.name]: true });
    expect(stepCounts(optimizer)).toEqual([2, 1]);
    stepSome(2, { [a.name]: true, [b.name]: true, [c.name]: true });
    expect(stepCounts(optimizer)).toEqual([3, 2, 1]);
    expectMatchesReferences();
    stepSome(3, { [a.name]: true, [b.name]: true, [c.name]: true });
    expectMatchesReferences();
    dispose();
  });

  it('missing gradients: a variable without one is skipped (value, state and step count kept)', () => {
    const { variables, optimizer, stepSome, expectMatchesReferences, dispose } = partialSteps();
    const [a, b, c] = variables;
    stepSome(0, { [a.name]: true, [b.name]: true, [c.name]: true });
    // b left out of the map, then given as null: skipped both times.
    const bBefore = variableBits([b]);
    const bState = (stateFingerprint(coreOf(optimizer)) as { state: unknown[] }).state[1];
    stepSome(1, { [a.name]: true, [c.name]: true });
    stepSome(2, { [a.name]: true, [b.name]: null, [c.name]: true });
    expect(firstBitDifference(variableBits([b]), bBefore)).toBeNull();
    expect((stateFingerprint(coreOf(optimizer)) as { state: unknown[] }).state[1]).toEqual(bState);
    expect(stepCounts(optimizer)).toEqual([3, 1, 3]);
    expectMatchesReferences();
    stepSome(3, { [a.name]: true, [b.name]: true, [c.name]: true });
    expect(stepCounts(optimizer)).toEqual([4, 2, 4]);
    expectMatchesReferences();
    expect(optimizer.iterations).toBe(4);
    dispose();
  });

  it('shared gradients: one gradient tensor (or dataId) for several variables, or a variable as a gradient', () => {
    const variables = makeVariables(
      ['a', 'b', 'c', 'd'].map((label, k) => ({
        name: uniqueName(label),
        shape: k === 2 ? [2, 6] : [12],
      })),
    );
    const [a, b, c, d] = variables;
    const optimizer = new SimdAdamW(OPTIONS);
    const reference = coreReference('SimdAdamW', specsOf(variables), OPTIONS);
    for (let stepIndex = 0; stepIndex < 3; stepIndex++) {
      const values = gradientValues(12, stepIndex, 0);
      const g = tf.tensor(values, [12]);
      const reshaped = tf.reshape(g, [2, 6]); // another tensor, the same data
      const aBefore = a.dataSync().slice();
      // a, b and c get g's values; d gets a's values from before this step.
      optimizer.applyGradients([
        { name: a.name, tensor: g },
        { name: b.name, tensor: g },
        { name: c.name, tensor: reshaped },
        { name: d.name, tensor: a },
      ]);
      for (const k of [0, 1, 2]) reference.params[k].grad.set(values);
      reference.params[3].grad.set(aBefore);
      reference.optimizer.step();
      expect(firstBitDifference(variableBits([g]), arrayBits([values]))).toBeNull();
      expect(firstBitDifference(variableBits(variables), valuesBits(reference.params))).toBeNull();
      tf.dispose([g, reshaped]);
    }
    expect(stateFingerprint(coreOf(optimizer))).toEqual(stateFingerprint(reference.optimizer));
    optimizer.dispose();
    tf.dispose(variables);
  });

  it('bad input throws TypeError/RangeError naming what was wrong, with nothing changed', () => {
    const variables = makeVariables(
      ['a', 'b'].map((label) => ({ name: uniqueName(label), shape: [3, 4] })),
    );
    const [a, b] = variables;
    const intVariable = tf.variable(tf.tensor([1, 2], [2], 'int32'), true, uniqueName('int'));
    const optimizer = new SimdAdamW(OPTIONS);
    const reference = coreReference('SimdAdamW', specsOf(variables), OPTIONS);
    step(optimizer, variables, 0);
    referenceStep(reference, 0);
    const valuesBefore = variableBits(variables);
    const stateBefore = stateFingerprint(coreOf(optimizer));
    const good = tf.tensor(gradientValues(12, 1, 0), [3, 4]);
    const disposed = tf.zeros([3, 4]);
    disposed.dispose();
    const wrongShape = tf.zeros([4, 3]);
    const wrongDtype = tf.zeros([3, 4], 'int32');
    const bad: [unknown, ErrorConstructor, RegExp][] = [
      [42, TypeError, /Expected a NamedTensorMap .* for variableGradients/],
      [[{ name: a.name, tensor: good }, 'b'], TypeError, /variableGradients\[1\]/],
      [
        [
          { name: a.name, tensor: good },
          { name: b.name, tensor: wrongShape },
        ],
        RangeError,
        /shape \[3, 4\].*\[4, 3\]/,
      ],
      [{ [a.name]: good, [b.name]: wrongDtype }, TypeError, /float32 tensor.*int32/],
      [
        { [a.name]: good, 'no/such/variable': good },
        RangeError,
        /registered variable.*no\/such\/variable/,
      ],
      [{ [a.name]: good, [b.name]: [1, 2, 3] }, TypeError, new RegExp(`tf.Tensor.*${b.name}`)],
      [{ [a.name]: good, [b.name]: disposed }, TypeError, /not disposed/],
      [
        [
          { name: a.name, tensor: good },
          { name: a.name, tensor: good },
        ],
        RangeError,
        /once/,
      ],
      [{ [a.name]: good, [intVariable.name]: tf.zeros([2]) }, TypeError, /float32 variable.*int32/],
    ];
    for (const [input, ErrorType, message] of bad) {
      expect(() => optimizer.applyGradients(input as tf.NamedTensorMap)).toThrow(ErrorType);
      expect(() => optimizer.applyGradients(input as tf.NamedTensorMap)).toThrow(message);
    }
    expect(firstBitDifference(variableBits(variables), valuesBefore)).toBeNull();
    expect(stateFingerprint(coreOf(optimizer))).toEqual(stateBefore);
    expect(optimizer.iterations).toBe(1);
    // And the next good step is the reference's second.
    step(optimizer, variables, 1);
    referenceStep(reference, 1);
    expect(firstBitDifference(variableBits(variables), valuesBits(reference.params))).toBeNull();
    optimizer.dispose();
    tf.dispose([...variables, intVariable, good, wrongShape, wrongDtype]);
  });
});

describe('cpu: in place', () => {
  beforeAll(() => useBackend('cpu'));

  it('a variable nobody shares keeps its dataId and its Float32Array: the step writes it', () => {
    const variables = makeVariables([
      { name: uniqueName('w'), shape: [8, 8] },
      { name: uniqueName('b'), shape: [8] },
    ]);
    const dataIds = variables.map((v) => v.dataId);
    const optimizer = new SimdAdamW(OPTIONS);
    const reference = coreReference('SimdAdamW', specsOf(variables), OPTIONS);
    for (let i = 0; i < 3; i++) {
      step(optimizer, variables, i);
      referenceStep(reference, i);
    }
    expect(optimizer.updatePath).toBe('cpu-in-place');
    variables.forEach((v, k) => expect(v.dataId).toBe(dataIds[k]));
    expect(firstBitDifference(variableBits(variables), valuesBits(reference.params))).toBeNull();
    optimizer.dispose();
    tf.dispose(variables);
  });
});

describe('wasm: clone, step, assign', () => {
  beforeAll(() => useBackend('wasm'));

  // x [3, 8] times a [8, 4] variable, and the same with a fresh tensor of the variable's values
  // (a new tensor id: nothing cached for it).
  function products(
    x: tf.Tensor,
    v: tf.Variable,
  ): { viaVariable: Float32Array; fresh: Float32Array } {
    return tf.tidy(() => ({
      viaVariable: tf.matMul(x, v).dataSync() as Float32Array,
      fresh: tf.matMul(x, tf.tensor(v.dataSync(), v.shape)).dataSync() as Float32Array,
    }));
  }

  it('the stale-weights regression: tf.matMul after a step uses the new weights', () => {
    const [v] = makeVariables([{ name: uniqueName('matmul'), shape: [8, 4] }]);
    const x = tf.tensor(initialValues([3, 8], 9), [3, 8]);
    const optimizer = new SimdAdamW({ lr: 0.1 });
    const before = products(x, v); // XNNPACK packs v's weights and caches them by its tensor id
    for (let i = 0; i < 2; i++) {
      step(optimizer, [v], i);
      const after = products(x, v);
      expect(optimizer.updatePath).toBe('wasm-clone-assign');
      expect(
        firstBitDifference(arrayBits([after.viaVariable]), arrayBits([after.fresh])),
      ).toBeNull();
      expect(
        firstBitDifference(arrayBits([after.viaVariable]), arrayBits([before.viaVariable])),
      ).not.toBeNull();
    }
    // The check can fail: writing the variable's heap memory in place (what the adapter must not
    // do) leaves the next matMul on the cached, old weights.
    const stale = products(x, v);
    const view = wasmHeapView(v);
    for (let i = 0; i < view.length; i++) view[i] += 1;
    const afterInPlaceWrite = products(x, v);
    expect(
      firstBitDifference(
        arrayBits([afterInPlaceWrite.viaVariable]),
        arrayBits([stale.viaVariable]),
      ),
    ).toBeNull();
    expect(
      firstBitDifference(
        arrayBits([afterInPlaceWrite.viaVariable]),
        arrayBits([afterInPlaceWrite.fresh]),
      ),
    ).not.toBeNull();
    optimizer.dispose();
    tf.dispose([v, x]);
  });

  it("the stale-weights regression: a dense layer's predict after a step uses the new weights", () => {
    const model = tfl.sequential({
      layers: [tfl.layers.dense({ units: 4, inputShape: [8], activation: 'tanh' })],
    });
    const [kernel, bias] = variablesOf(model);
    const x = tf.tensor(initialValues([3, 8], 9), [3, 8]);
    const predict = (): Float32Array =>
      tf.tidy(() => (model.predict(x) as tf.Tensor).dataSync() as Float32Array);
    // tanh(x W + b) in float64 from the variables' current values.
    const expected = (): Float64Array => {
      const w = kernel.dataSync();
      const bb = bias.dataSync();
      const xv = x.dataSync();
      return Float64Array.from({ length: 12 }, (_, j) => {
        const [row, col] = [Math.floor(j / 4), j % 4];
        let sum = bb[col];
        for (let i = 0; i < 8; i++) sum += xv[row * 8 + i] * w[i * 4 + col];
        return Math.tanh(sum);
      });
    };
    const maxError = (actual: Float32Array, wanted: Float64Array): number =>
      Math.max(...Array.from(actual, (value, i) => Math.abs(value - wanted[i])));
    const optimizer = new SimdAdamW({ lr: 0.1 });
    const first = predict();
    expect(maxError(first, expected())).toBeLessThan(1e-5);
    for (let i = 0; i < 3; i++) {
      step(optimizer, [kernel, bias], i);
      const output = predict();
      expect(maxError(output, expected())).toBeLessThan(1e-5);
      expect(maxError(output, Float64Array.from(first))).toBeGreaterThan(1e-3);
    }
    optimizer.dispose();
    model.dispose();
    x.dispose();
  });

  it('the heap grows between steps: the steps stay exact and nothing throws', () => {
    const variables = makeVariables([
      { name: uniqueName('big'), shape: [64, 80] },
      { name: uniqueName('small'), shape: [80] },
    ]);
    const optimizer = new SimdAdamW(OPTIONS);
    const reference = coreReference('SimdAdamW', specsOf(variables), OPTIONS);
    // Three steps, the heap grown before the second and the third (it about doubles each time:
    // the suite's wasm heap stays under 100 MB).
    for (let i = 0; i < 3; i++) {
      if (i > 0) {
        // A tensor as big as the whole heap: the heap must grow, detaching every view of it.
        const heapBefore = wasmHeapBytes();
        const big = tf.zeros([heapBefore / 4]);
        expect(wasmHeapBytes()).toBeGreaterThan(heapBefore);
        big.dispose();
      }
      step(optimizer, variables, i);
      referenceStep(reference, i);
      expect(firstBitDifference(variableBits(variables), valuesBits(reference.params))).toBeNull();
    }
    expect(stateFingerprint(coreOf(optimizer))).toEqual(stateFingerprint(reference.optimizer));
    optimizer.dispose();
    tf.dispose(variables);
  });

  it('a variable skipped while the heap is reused and grows: its old heap views are not used', () => {
    const { variables, optimizer, stepSome, expectMatchesReferences, dispose } = partialSteps();
    const [a, b, c] = variables;
    const all = { [a.name]: true, [b.name]: true, [c.name]: true };
    const withoutB = { [a.name]: true, [c.name]: true };
    stepSome(0, all);
    stepSome(1, withoutB); // b's views of step 0 are freed memory that step 1's tensors reuse
    const heapBefore = wasmHeapBytes();
    tf.zeros([heapBefore / 4]).dispose(); // and now detached
    expect(wasmHeapBytes()).toBeGreaterThan(heapBefore);
    stepSome(2, withoutB);
    stepSome(3, all);
    expect(stepCounts(optimizer)).toEqual([4, 2, 4]);
    expectMatchesReferences();
    dispose();
  });
});
