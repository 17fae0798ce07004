// Question: what does the TensorFlow.js adapter (simd-adamw/tfjs, issue 14) save a tfjs user? Its
// applyGradients against tf.train.adam's, on a model such a user trains, and the optimizer's
// share of a whole training step.
//
// The model: an MLP 784-512-256-10 (six variables, 535,818 parameters: what the example trains on
// the MNIST digits, examples/tfjs-train.ts), on the pure-JavaScript cpu backend. Every contender
// has its own variables (same initial values) and is fed the same gradient tensors, one
// applyGradients per repetition, interleaved with the others (bench/measure.ts):
//
//   SimdAdamW.applyGradients     one native AdamW step over the six variables, in place on cpu
//   tf.train.adam applyGradients tfjs' Adam: about 14 tensor ops per variable (no weight decay)
//   train step (both)            optimizer.minimize over a batch of 64: forward pass, gradients
//                                and applyGradients, as model.fit runs it per batch
//
// The share of the optimizer is the median applyGradients over the median train step of the same
// optimizer. tfjs-core, its cpu backend, tfjs-layers and the adapter are loaded only when this
// question runs.
import type * as Tf from '@tensorflow/tfjs-core';

import type * as TfjsAdapter from '../lib/tfjs';
import { fillUniform, SEED, STEP_HYPERPARAMETERS } from './data';
import { importModule } from './esm';
import type { Contender, Workload } from './measure';
import type { Result } from './results';

type TfjsCore = typeof Tf;

/** The MLP's variables, in the order model.fit hands them to the optimizer. */
export const TFJS_MLP_SHAPES: readonly (readonly number[])[] = [
  [784, 512],
  [512],
  [512, 256],
  [256],
  [256, 10],
  [10],
];
export const TFJS_BATCH_SIZE = 64;

export const TFJS_MLP_PARAMS = TFJS_MLP_SHAPES.reduce(
  (sum, shape) => sum + shape.reduce((a, b) => a * b, 1),
  0,
);

/** The optimizers compared, by the contender ids' middle part. */
export type TfjsOptimizerId = 'simd-adamw' | 'adam';

interface TfjsModules {
  readonly tf: TfjsCore;
  readonly adapter: typeof TfjsAdapter;
}

async function loadTfjs(): Promise<TfjsModules> {
  const tf = await importModule<TfjsCore>('@tensorflow/tfjs-core');
  await importModule<unknown>('@tensorflow/tfjs-backend-cpu'); // registers the 'cpu' backend
  // tfjs-core alone has no gradients registered (the tfjs bundles register them); tfjs-layers,
  // which model.fit users have, does it on load.
  await importModule<unknown>('@tensorflow/tfjs-layers');
  tf.enableProdMode(); // also silences its "install tfjs-node" banner
  if (!(await tf.setBackend('cpu')) || tf.getBackend() !== 'cpu') {
    throw new Error('TensorFlow.js: the cpu backend did not initialise');
  }
  // Relative to esm.js: dist/lib/tfjs, what `require('simd-adamw/tfjs')` loads.
  const adapter = await importModule<typeof TfjsAdapter>('../lib/tfjs/index.js');
  return { tf, adapter };
}

function seededFloats(length: number, seed: number, low: number, high: number): Float32Array {
  const values = new Float32Array(length);
  fillUniform(values, seed, low, high);
  return values;
}

/** The tensors every contender shares: the gradients, one batch of inputs and its labels. */
interface SharedTensors {
  readonly initial: readonly Float32Array[];
  readonly gradients: readonly Tf.Tensor[];
  readonly inputs: Tf.Tensor2D;
  readonly labels: Tf.Tensor2D;
}

function sharedTensors(tf: TfjsCore): SharedTensors {
  const initial = TFJS_MLP_SHAPES.map((shape, i) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const limit = shape.length === 2 ? Math.sqrt(6 / ((shape[0] ?? 1) + (shape[1] ?? 1))) : 0;
    return seededFloats(size, SEED + 140 + i, -limit, limit); // Glorot uniform; biases 0
  });
  const gradients = TFJS_MLP_SHAPES.map((shape, i) =>
    tf.tensor(
      seededFloats(
        shape.reduce((a, b) => a * b, 1),
        SEED + 150 + i,
        -1e-2,
        1e-2,
      ),
      [...shape],
    ),
  );
  const inputs = tf.tensor2d(seededFloats(TFJS_BATCH_SIZE * 784, SEED + 160, 0, 1), [
    TFJS_BATCH_SIZE,
    784,
  ]);
  const classes = Int32Array.from(seededFloats(TFJS_BATCH_SIZE, SEED + 161, 0, 10), Math.floor);
  const labels = tf.tidy(() => tf.oneHot(tf.tensor1d(classes, 'int32'), 10) as Tf.Tensor2D);
  return { initial, gradients, inputs, labels };
}

function makeOptimizer(modules: TfjsModules, id: TfjsOptimizerId, threads: number): Tf.Optimizer {
  const { lr, beta1, beta2, eps, weightDecay } = STEP_HYPERPARAMETERS;
  return id === 'adam'
    ? modules.tf.train.adam(lr, beta1, beta2, eps)
    : new modules.adapter.SimdAdamW({ lr, betas: [beta1, beta2], eps, weightDecay, threads });
}

/** The MLP's forward pass and softmax cross-entropy over the shared batch. */
function lossOf(tf: TfjsCore, variables: readonly Tf.Variable[], shared: SharedTensors): Tf.Scalar {
  let activations: Tf.Tensor2D = shared.inputs;
  for (let layer = 0; layer < variables.length; layer += 2) {
    const kernel = variables[layer] as Tf.Variable<Tf.Rank.R2>;
    const bias = variables[layer + 1] as Tf.Variable<Tf.Rank.R1>;
    const z = tf.add<Tf.Tensor2D>(tf.matMul(activations, kernel), bias);
    activations = layer + 2 < variables.length ? tf.relu(z) : z;
  }
  return tf.losses.softmaxCrossEntropy<Tf.Tensor2D, Tf.Scalar>(shared.labels, activations);
}

const LABELS: Readonly<Record<TfjsOptimizerId, string>> = {
  'simd-adamw': 'SimdAdamW (simd-adamw/tfjs)',
  adam: 'tf.train.adam',
};

/**
 * The contenders: applyGradients of SimdAdamW per thread setting and of tf.train.adam, and a whole
 * train step with SimdAdamW (at the most threads) and with tf.train.adam.
 */
export async function tfjsContenders(
  threadSettings: readonly number[],
): Promise<{ contenders: Contender[]; version: string; release: () => void }> {
  const modules = await loadTfjs();
  const { tf } = modules;
  const shared = sharedTensors(tf);
  const most = Math.max(...threadSettings);

  const contender = (
    kind: 'apply' | 'train-step',
    id: TfjsOptimizerId,
    threads: number,
  ): Contender => ({
    id: `tfjs/${kind}/${id}/t${threads}`,
    label: `${LABELS[id]} ${kind === 'apply' ? 'applyGradients' : 'train step'}`,
    family: id === 'adam' ? 'peer' : 'simd-adamw',
    threads,
    setup(): Workload {
      const variables = TFJS_MLP_SHAPES.map((shape, i) =>
        tf.variable(tf.tensor(shared.initial[i] ?? new Float32Array(0), [...shape])),
      );
      const optimizer = makeOptimizer(modules, id, threads);
      const gradients = Object.fromEntries(variables.map((v, i) => [v.name, shared.gradients[i]]));
      const run =
        kind === 'apply'
          ? () => {
              optimizer.applyGradients(gradients);
            }
          : () => {
              optimizer.minimize(() => lossOf(tf, variables, shared), false, variables);
            };
      return {
        run(reps: number) {
          for (let r = 0; r < reps; r++) run();
        },
        dispose() {
          optimizer.dispose();
          tf.dispose(variables);
        },
      };
    },
  });

  const contenders = [
    ...threadSettings.map((threads) => contender('apply', 'simd-adamw', threads)),
    contender('apply', 'adam', 1),
    contender('train-step', 'simd-adamw', most),
    contender('train-step', 'adam', 1),
  ];
  const release = (): void => {
    tf.dispose([...shared.gradients, shared.inputs, shared.labels]);
  };
  return { contenders, version: tf.version_core, release };
}

/** One optimizer at one thread setting: its applyGradients, and its train step where measured. */
export interface TfjsRow {
  readonly optimizer: string;
  readonly threads: number;
  readonly applySeconds?: { median: number; min: number; max: number };
  readonly trainStepSeconds?: number;
  /** Median applyGradients over median train step. */
  readonly optimizerShare?: number;
  /** tf.train.adam's median applyGradients over this one's. */
  readonly versusAdam?: number;
  readonly skipped?: string;
}

export function tfjsRows(results: readonly Result[]): TfjsRow[] {
  const median = (id: string): number | undefined =>
    results.find((r) => r.contender.id === id)?.timing?.medianSeconds;
  const adamApply = median('tfjs/apply/adam/t1');
  return results
    .filter((r) => r.contender.id.startsWith('tfjs/apply/'))
    .map((r) => {
      const { timing } = r;
      const optimizerId = r.contender.id.split('/')[2] ?? '';
      const trainStep = median(`tfjs/train-step/${optimizerId}/t${r.contender.threads}`);
      const base = {
        optimizer: r.contender.label.replace(/ applyGradients$/, ''),
        threads: r.contender.threads,
      };
      if (timing === undefined) return { ...base, skipped: r.skipped ?? 'not run' };
      return {
        ...base,
        applySeconds: {
          median: timing.medianSeconds,
          min: timing.minSeconds,
          max: timing.maxSeconds,
        },
        ...(trainStep === undefined
          ? {}
          : { trainStepSeconds: trainStep, optimizerShare: timing.medianSeconds / trainStep }),
        ...(adamApply === undefined || optimizerId === 'adam'
          ? {}
          : { versusAdam: adamApply / timing.medianSeconds }),
      };
    });
}
