// simd-adamw/tfjs: this package's optimizers as tf.Optimizers for TensorFlow.js (README
// "TensorFlow.js", docs/tensorflow.md). It imports @tensorflow/tfjs-core (an optional peer dependency: whichever tfjs
// bundle you use brings it), and the main entry never loads it.
export {
  adafactor,
  adam,
  adamw,
  came,
  lion,
  SimdAdafactor,
  SimdAdam,
  SimdAdamW,
  SimdCAME,
  SimdLion,
} from './optimizers';
export type {
  SimdAdafactorOptions,
  SimdAdamOptions,
  SimdCameOptions,
  SimdLionOptions,
} from './optimizers';
export { SimdOptimizer } from './optimizer';
export type { CoreOptimizerClass, NoDecayRule, TfjsAdapterOptions } from './optimizer';
export type { NamedTensor } from './weights';
export type { UpdatePath } from './variable-storage';
