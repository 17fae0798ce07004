// What the adapter asks of a value it is given as a tensor.
import * as tf from '@tensorflow/tfjs-core';

/** True for a tf.Tensor of the tfjs-core this package loaded (a Variable is one). */
export function isTensor(value: unknown): value is tf.Tensor {
  return value instanceof tf.Tensor;
}
