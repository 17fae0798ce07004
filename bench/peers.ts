// Question: how does simd-adamw compare with what a Node.js user could use instead?
//
// - The straightforward AdamW loop over Float32Arrays in JavaScript (the same update, in double
//   precision per element, stored as float32), on the same arrays as the kernel (data.ts).
// - TensorFlow.js tf.train.adam on its pure-JavaScript CPU backend (@tensorflow/tfjs-core and
//   @tensorflow/tfjs-backend-cpu only: no WebGL, no native tfjs-node binding, nothing fetched). Its
//   Adam has no decoupled weight decay (no weight decay at all), so it does slightly less work
//   than AdamW. Production mode is on, as a user would deploy it.
// - PyTorch's torch.optim.AdamW is listed only as a note: see torchNote().
import { spawnSync } from 'node:child_process';

import { formatSize, STEP_HYPERPARAMETERS, type ThroughputArrays } from './data';
import { importModule } from './esm';
import type { Contender, Workload } from './measure';

/** The textbook AdamW step (PyTorch's single-tensor formula), one element at a time. */
export function plainJsAdamwStep(
  param: Float32Array,
  grad: Float32Array,
  expAvg: Float32Array,
  expAvgSq: Float32Array,
  step: number,
): void {
  const { lr, beta1, beta2, eps, weightDecay } = STEP_HYPERPARAMETERS;
  const biasCorrection1 = 1 - beta1 ** step;
  const biasCorrection2Sqrt = Math.sqrt(1 - beta2 ** step);
  const stepSize = lr / biasCorrection1;
  const decay = 1 - lr * weightDecay;
  for (let i = 0; i < param.length; i++) {
    const g = grad[i];
    const m = beta1 * expAvg[i] + (1 - beta1) * g;
    const v = beta2 * expAvgSq[i] + (1 - beta2) * g * g;
    expAvg[i] = m;
    expAvgSq[i] = v;
    param[i] = param[i] * decay - (stepSize * m) / (Math.sqrt(v) / biasCorrection2Sqrt + eps);
  }
}

export function plainJsContender(arrays: ThroughputArrays): Contender {
  return {
    id: 'peer/plain-js/t1',
    label: 'plain JS loop',
    family: 'peer',
    threads: 1,
    setup(size: number): Workload {
      const { param, grad, expAvg, expAvgSq } = arrays.at(size);
      let step = 0;
      return {
        run(reps: number) {
          for (let r = 0; r < reps; r++) plainJsAdamwStep(param, grad, expAvg, expAvgSq, ++step);
        },
      };
    },
  };
}

// The few TensorFlow.js functions the bench uses (see esm.ts for why they are declared here).
interface TfTensor {
  dispose(): void;
}
interface TfVariable extends TfTensor {
  readonly name: string;
}
interface TfOptimizer {
  applyGradients(gradients: Record<string, TfTensor>): void;
  dispose(): void;
}
interface Tfjs {
  readonly version_core: string;
  enableProdMode(): void;
  setBackend(name: string): Promise<boolean>;
  getBackend(): string;
  tensor1d(values: Float32Array): TfTensor;
  variable(initialValue: TfTensor): TfVariable;
  readonly train: {
    adam(learningRate: number, beta1: number, beta2: number, epsilon: number): TfOptimizer;
  };
}

export interface TfjsPeer {
  readonly version: string;
  readonly contender: Contender;
}

/**
 * tf.train.adam on the CPU backend, at sizes up to `maxSize` (one step at 16M parameters takes
 * seconds; the reason is shown for larger sizes).
 */
export async function loadTfjsPeer(arrays: ThroughputArrays, maxSize: number): Promise<TfjsPeer> {
  const tf = await importModule<Tfjs>('@tensorflow/tfjs-core');
  await importModule<unknown>('@tensorflow/tfjs-backend-cpu'); // registers the 'cpu' backend
  tf.enableProdMode(); // also silences its "install tfjs-node" banner
  if (!(await tf.setBackend('cpu')) || tf.getBackend() !== 'cpu') {
    throw new Error('TensorFlow.js: the cpu backend did not initialise');
  }
  const { lr, beta1, beta2, eps } = STEP_HYPERPARAMETERS;
  const contender: Contender = {
    id: 'peer/tfjs/t1',
    label: `tfjs ${tf.version_core} adam (cpu)`,
    family: 'peer',
    threads: 1,
    setup(size: number) {
      if (size > maxSize) {
        return {
          skipped: `tfjs measured up to ${formatSize(maxSize)} parameters in this mode (slow)`,
        };
      }
      const view = arrays.at(size);
      const variable = tf.variable(tf.tensor1d(view.param.slice()));
      const gradient = tf.tensor1d(view.grad);
      const optimizer = tf.train.adam(lr, beta1, beta2, eps);
      const gradients = { [variable.name]: gradient };
      return {
        run(reps: number) {
          for (let r = 0; r < reps; r++) optimizer.applyGradients(gradients);
        },
        dispose() {
          optimizer.dispose();
          gradient.dispose();
          variable.dispose();
        },
      };
    },
  };
  return { version: tf.version_core, contender };
}

/**
 * Whether PyTorch can be compared here. The bench has no PyTorch contender of its own (it would need
 * a Python timing harness); this says so, or says why PyTorch is not available.
 */
export function torchNote(): string {
  const probe = spawnSync('python3', ['-c', 'import torch; print(torch.__version__)'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (probe.error !== undefined || probe.status !== 0) {
    const why =
      probe.error?.message ??
      probe.stderr.trim().split('\n').pop() ??
      `exit status ${String(probe.status)}`;
    return `PyTorch: skipped, \`python3 -c 'import torch'\` failed here (${why}).`;
  }
  return (
    `PyTorch ${probe.stdout.trim()} is importable, but not measured: this bench has no ` +
    'PyTorch contender (it would need a Python timing harness).'
  );
}
