// `npm run bench`: the command-line entry. Decides what to measure, runs the questions (each in its
// own file), prints the tables and the targets, and writes the charts, the JSON and RESULTS.md.
//
//   npm run bench                      full run; rewrites bench/RESULTS.md and bench/results/
//   npm run bench -- --quick           under a minute; writes to the temp directory (CI smoke test)
//   npm run bench -- --only peers,call-overhead --sizes 64K,16M --json out.json
//   npm run bench -- --only lean-state --threads 1,2   issue 12's cases alone (64M; --sizes to change)
//   npm run bench -- --only lean-optimizers   issue 13's Lion, Adafactor and CAME beside AdamW
//   npm run bench -- --only tfjs       issue 14's simd-adamw/tfjs against tf.train.adam
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { backend, type IsaName } from '../lib/index';
import { cLoopContenders } from './c-loop';
import { CALL_OVERHEAD_SIZES, callOverheadContenders } from './call-overhead';
import { rooflineFractionChartSvg, throughputChartSvg } from './chart';
import { formatSize, parseSize, ThroughputArrays } from './data';
import { importModule } from './esm';
import { describeMachine, loadAverage } from './machine';
import {
  type Contender,
  isolatesGarbageCollection,
  measureInterleaved,
  type SampleSettings,
} from './measure';
import { MANY_TENSORS_TOTAL, manyTensorContenders } from './many-tensors';
import { modelStepContenders, smallTransformerShapes, totalLength } from './model-step';
import { loadTfjsPeer, plainJsContender, torchNote } from './peers';
import { createProgress } from './progress';
import { resultsMarkdown, terminalReport } from './report';
import {
  LeanModel,
  leanModelContenders,
  leanModelRows,
  LeanOptimizerArrays,
  leanOptimizerContenders,
  leanOptimizerRows,
  withOwnTraffic,
} from './lean-optimizers';
import { LeanArrays, leanContenders, leanRows } from './lean-state';
import { type BenchResults, type Result, toResult, withRoofline } from './results';
import { probeContenders } from './roofline';
import { singleTensorContenders } from './single-tensor';
import { evaluateTargets } from './targets';
import { threadCounts } from './threads';
import {
  TFJS_BATCH_SIZE,
  TFJS_MLP_PARAMS,
  TFJS_MLP_SHAPES,
  tfjsContenders,
  tfjsRows,
} from './tfjs';

const QUESTIONS = [
  'roofline',
  'single-tensor',
  'c-loop',
  'peers',
  'model-step',
  'many-tensors',
  'call-overhead',
  'lean-state',
  'lean-optimizers',
  'tfjs',
] as const;
type Question = (typeof QUESTIONS)[number];

const K = 1 << 10;
const M = 1 << 20;

interface Mode {
  readonly name: 'quick' | 'full';
  readonly sizes: readonly number[];
  readonly settings: SampleSettings;
  /** TensorFlow.js takes seconds per step at 16M; it is measured up to this size. */
  readonly tfjsMaxSize: number;
  /** The lean-state question's sizes unless --sizes is given (issue 12's targets are at 64M). */
  readonly leanSizes: readonly number[];
  /** The lean-optimizers question's sizes unless --sizes is given. */
  readonly leanOptimizerSizes: readonly number[];
}

const FULL: Mode = {
  name: 'full',
  sizes: [4 * K, 64 * K, M, 16 * M, 64 * M],
  settings: {
    rounds: 11,
    minRounds: 3,
    sampleSeconds: 0.1,
    warmupSeconds: 0.2,
    budgetSeconds: 6,
  },
  tfjsMaxSize: 16 * M,
  leanSizes: [64 * M],
  leanOptimizerSizes: [4 * K, 64 * K, M, 16 * M, 64 * M],
};

const QUICK: Mode = {
  name: 'quick',
  sizes: [4 * K, 64 * K, M, 16 * M],
  settings: {
    rounds: 5,
    minRounds: 3,
    sampleSeconds: 0.01,
    warmupSeconds: 0.02,
    budgetSeconds: 0.5,
  },
  tfjsMaxSize: M,
  leanSizes: [M],
  leanOptimizerSizes: [4 * K, M],
};

const USAGE = `Usage: npm run bench -- [options]

  --quick            fewer, shorter samples and sizes up to 16M (under a minute)
  --only <list>      questions to run, comma-separated: ${QUESTIONS.join(', ')}
                     (single-tensor, c-loop and peers always run with the roofline)
  --sizes <list>     tensor sizes for the throughput questions, e.g. 4K,64K,16M (and for
                     lean-state, whose default is 64M, 1M with --quick, and for
                     lean-optimizers, 4K-64M, 4K and 1M with --quick)
  --threads <list>   thread settings for the simd-adamw contenders, e.g. 1 (default: 1 and all)
  --isas <list>      kernels for the single-tensor question, e.g. avx512 (default: all available)
  --json <path>      also write the results as JSON to <path>
  --out <dir>        where RESULTS.md and results/ go; default: bench/ for a full run of every
                     question at the default sizes, otherwise a folder in the temp directory
  --help             this text`;

interface Options {
  readonly mode: Mode;
  readonly questions: ReadonlySet<Question>;
  readonly sizes: readonly number[];
  readonly leanSizes: readonly number[];
  readonly leanOptimizerSizes: readonly number[];
  readonly threads: readonly number[];
  readonly isas: readonly IsaName[];
  readonly json?: string;
  readonly outDir: string;
  readonly command: string;
}

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

function parseOptions(argv: readonly string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        quick: { type: 'boolean' },
        only: { type: 'string' },
        sizes: { type: 'string' },
        threads: { type: 'string' },
        isas: { type: 'string' },
        json: { type: 'string' },
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
  const mode = values.quick === true ? QUICK : FULL;
  const questions = new Set<Question>();
  for (const name of values.only?.split(',') ?? QUESTIONS) {
    const question = QUESTIONS.find((q) => q === name.trim());
    if (question === undefined) fail(`unknown question '${name}' in --only`);
    questions.add(question);
  }
  if (['single-tensor', 'c-loop', 'peers'].some((q) => questions.has(q as Question))) {
    questions.add('roofline');
  }
  const sizes =
    values.sizes === undefined
      ? mode.sizes
      : values.sizes.split(',').map((text) => parseSize(text) ?? fail(`bad size '${text}'`));
  const threads =
    values.threads === undefined
      ? threadCounts()
      : values.threads.split(',').map((text) => {
          const n = Number(text);
          return Number.isInteger(n) && n >= 1 && n <= 256 ? n : fail(`bad thread count '${text}'`);
        });
  const isas =
    values.isas === undefined
      ? backend.available
      : values.isas
          .split(',')
          .map(
            (name) =>
              backend.available.find((isa) => isa === name) ??
              fail(`kernel '${name}' is not available here`),
          );
  const partial = [values.only, values.sizes, values.threads, values.isas].some(
    (value) => value !== undefined,
  );
  const defaultOut =
    mode.name === 'full' && !partial
      ? path.resolve(__dirname, '..', '..', 'bench')
      : path.join(os.tmpdir(), 'simd-adamw-bench');
  const command =
    process.env.npm_lifecycle_event === 'bench'
      ? `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`
      : ['node', path.relative(process.cwd(), process.argv[1] ?? 'index.js'), ...argv].join(' ');
  return {
    mode,
    questions,
    sizes: [...new Set(sizes)].sort((a, b) => a - b),
    leanSizes:
      values.sizes === undefined ? mode.leanSizes : [...new Set(sizes)].sort((a, b) => a - b),
    leanOptimizerSizes:
      values.sizes === undefined
        ? mode.leanOptimizerSizes
        : [...new Set(sizes)].sort((a, b) => a - b),
    threads: [...new Set(threads)].sort((a, b) => a - b),
    isas,
    ...(values.json === undefined ? {} : { json: path.resolve(values.json) }),
    outDir: path.resolve(values.out ?? defaultOut),
    command,
  };
}

interface Prettier {
  resolveConfig(file: string): Promise<object | null>;
  format(source: string, options: object): Promise<string>;
}

// RESULTS.md is checked by `npm run lint` like every Markdown file, so it is written formatted.
async function formatMarkdown(file: string, source: string): Promise<string> {
  const prettier = await importModule<Prettier>('prettier');
  const config = (await prettier.resolveConfig(file)) ?? {};
  return prettier.format(source, { ...config, parser: 'markdown' });
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const { mode, questions, sizes, leanSizes, leanOptimizerSizes, threads, isas } = options;
  const started = Date.now();
  const loadAverageBefore = loadAverage();
  const machine = describeMachine();
  const bestIsa = backend.available[0] ?? backend.isa;
  const allThreads = os.availableParallelism();
  const notes: string[] = [];

  if (loadAverageBefore > 0.5) {
    const warning =
      `the 1-minute load average is ${loadAverageBefore.toFixed(2)} on ${allThreads} CPUs: ` +
      'other work is running and the numbers will be noisy.';
    process.stderr.write(`bench: warning: ${warning}\n`);
    notes.push(`Warning at the start of the run: ${warning}`);
  }
  if (mode.name === 'quick') {
    notes.push('Quick mode: fewer, shorter samples; indicative only (full mode: `npm run bench`).');
  }
  if (!isolatesGarbageCollection()) {
    notes.push(
      'Run without --expose-gc: no garbage collection between samples, so contenders that ' +
        'allocate can slow the next one (`npm run bench` passes the flag).',
    );
  }
  notes.push(
    `Threads: simd-adamw and the roofline ran with the \`threads\` setting at ${threads.join(' and ')}; ` +
      'a step uses at most one thread per 16K elements (native/runner.h), so small tensors run on ' +
      'fewer threads than the setting. The peers run on one thread.',
  );

  // The throughput questions share one set of arrays, sized for the largest tensor.
  const throughputContenders: Contender[] = [];
  const wantsThroughput = questions.has('roofline');
  const arrays = wantsThroughput ? new ThroughputArrays(Math.max(...sizes)) : undefined;
  if (arrays !== undefined) {
    throughputContenders.push(...probeContenders(arrays, threads));
    notes.push(
      'Roofline: the fastest (by median) of eleven probes of the bench addon ' +
        "(native/bench/roofline-probes.cc, -march=native), all with the step's memory traffic: " +
        'the AdamW access pattern with trivial arithmetic and the plain p += g, m += g, ' +
        'v += g*g (unrolled), each in the widest (512-bit) and in 256-bit vectors, with and ' +
        'without software prefetch (2 KiB ahead, as the kernel, and 8 KiB ahead); at the same ' +
        'size and thread setting, split as the step is. The probes run all repetitions of a ' +
        'sample in one native call, so they carry no per-call cost; simd-adamw rows are timed ' +
        'from JavaScript, one call per step, so at small sizes their fraction of the roofline ' +
        'includes the call.',
    );
    if (questions.has('single-tensor')) {
      throughputContenders.push(...singleTensorContenders(arrays, isas, threads));
      notes.push(
        'simd-adamw rows: AdamW.step() on one tensor, on the same arrays as the probes, one call ' +
          `per step, lr 1e-3, weight decay 0.01; kernels ${isas.join(', ')}.`,
      );
    }
    if (questions.has('c-loop')) {
      throughputContenders.push(...cLoopContenders(arrays, threads));
      notes.push(
        'plain C AdamW loop: native/bench/c-loop.cc, the same IEEE operations in the same order ' +
          'as the kernel, -O3 -march=native -ffp-contract=off -fno-math-errno, no NaN ' +
          'canonicalisation, no prefetch; all repetitions in one native call (no per-call cost), ' +
          'split across threads as the step is.',
      );
    }
    if (questions.has('peers')) {
      throughputContenders.push(plainJsContender(arrays));
      const tfjs = await loadTfjsPeer(arrays, mode.tfjsMaxSize);
      throughputContenders.push(tfjs.contender);
      notes.push(
        `TensorFlow.js ${tfjs.version}: tf.train.adam on the pure-JavaScript cpu backend ` +
          '(@tensorflow/tfjs-core + tfjs-backend-cpu, production mode). Its Adam has no weight ' +
          'decay (TensorFlow.js has no decoupled weight decay), so it does slightly less ' +
          `arithmetic than AdamW. Measured up to ${formatSize(mode.tfjsMaxSize)} parameters in ` +
          `${mode.name} mode.`,
        torchNote(),
      );
    }
  }
  const shapes = smallTransformerShapes();
  const modelContenders = questions.has('model-step')
    ? modelStepContenders(shapes, bestIsa, threads)
    : [];
  const manyContenders = questions.has('many-tensors') ? manyTensorContenders(bestIsa) : [];
  const callContenders = questions.has('call-overhead') ? callOverheadContenders(bestIsa) : [];
  const leanArrays = questions.has('lean-state')
    ? new LeanArrays(Math.max(...leanSizes))
    : undefined;
  const leanStateContenders =
    leanArrays === undefined ? [] : leanContenders(leanArrays, threads, bestIsa);
  if (leanArrays !== undefined) {
    notes.push(
      'Lean state (issue 12): AdamW.step() on one tensor per state dtype (lr 1e-3, weight decay ' +
        `0.01, ${bestIsa}), all sharing one param and its float32 / bf16 gradients, each with its ` +
        'own state; each against the float32-state step and the fastest probe of its own ' +
        'traffic (float32: the eleven probes of roofline-probes.cc on its arrays; lean: six ' +
        "loop shapes of lean-probes.cc, -march=native, on the optimizer's own state arrays). " +
        `Sizes ${leanSizes.map(formatSize).join(', ')}.`,
    );
  }
  const optimizerArrays = questions.has('lean-optimizers')
    ? new LeanOptimizerArrays(Math.max(...leanOptimizerSizes))
    : undefined;
  const optimizerContenders =
    optimizerArrays === undefined ? [] : leanOptimizerContenders(optimizerArrays, threads, bestIsa);
  const leanModel = optimizerArrays === undefined ? undefined : new LeanModel(shapes);
  const leanModelSteps =
    leanModel === undefined ? [] : leanModelContenders(leanModel, threads, bestIsa);
  const tfjs = questions.has('tfjs') ? await tfjsContenders(threads) : undefined;
  const tfjsSteps = tfjs?.contenders ?? [];
  if (tfjs !== undefined) {
    notes.push(
      `TensorFlow.js adapter (issue 14): simd-adamw/tfjs's SimdAdamW against tf.train.adam of ` +
        `TensorFlow.js ${tfjs.version} on the cpu backend, on an MLP 784-512-256-10 ` +
        `(${TFJS_MLP_SHAPES.length} variables, ${TFJS_MLP_PARAMS.toLocaleString('en-US')} ` +
        'parameters), every contender with its own variables and the same gradient tensors; ' +
        `SimdAdamW lr 1e-3, weight decay 0.01 (tf.train.adam has none). The train step is ` +
        `optimizer.minimize over a batch of ${TFJS_BATCH_SIZE} (forward pass, gradients, ` +
        'applyGradients), as model.fit runs it per batch; the share is the median applyGradients ' +
        'over the median train step of the same optimizer.',
    );
  }
  if (optimizerArrays !== undefined) {
    notes.push(
      'Lean optimizers (issue 13): one tensor per configuration through its class ' +
        `(${bestIsa}), each with its own copy of the param and a shared grad: AdamW lr 1e-3, ` +
        'weight decay 0.01; Lion lr 1e-4, weight decay 0.1; Adafactor and CAME their reference ' +
        "defaults with weight decay 0.01 (bench/lean-optimizers.ts says why); Adafactor's and " +
        "CAME's factored tensors square-ish [R, C]. Lion's roofline: the fastest of six loop " +
        'shapes of lean-probes.cc (benchLionProbe, -march=native) with its traffic, on its own ' +
        `arrays. Sizes ${leanOptimizerSizes.map(formatSize).join(', ')}; then the model-shaped ` +
        "step per optimizer (Adafactor and CAME given each tensor's shape).",
    );
  }

  const { rounds } = mode.settings;
  const progress = createProgress(
    rounds *
      (sizes.length * throughputContenders.length +
        modelContenders.length +
        manyContenders.length +
        CALL_OVERHEAD_SIZES.length * callContenders.length +
        leanSizes.length * leanStateContenders.length +
        leanOptimizerSizes.length * optimizerContenders.length +
        leanModelSteps.length +
        tfjsSteps.length),
  );
  const tick = (label: string): void => {
    progress.tick(label);
  };

  let throughput: Result[] = [];
  let modelStep: Result[] = [];
  let manyTensors: Result[] = [];
  const callOverhead: Result[] = [];
  const leanResults: Result[] = [];
  const optimizerResults: Result[] = [];
  let leanModelResults: Result[] = [];
  let tfjsResults: Result[] = [];
  try {
    if (throughputContenders.length > 0) {
      for (const size of sizes) {
        progress.section(`throughput ${formatSize(size)}`);
        const measured = measureInterleaved(throughputContenders, size, mode.settings, tick);
        throughput.push(...measured.map((m) => toResult(m, size)));
      }
      throughput = withRoofline(throughput);
    }
    if (modelContenders.length > 0) {
      progress.section('model-shaped step');
      const size = totalLength(shapes);
      modelStep = measureInterleaved(modelContenders, size, mode.settings, tick).map((m) =>
        toResult(m, size),
      );
    }
    if (manyContenders.length > 0) {
      progress.section('many small tensors');
      manyTensors = measureInterleaved(manyContenders, MANY_TENSORS_TOTAL, mode.settings, tick).map(
        (m) => toResult(m, MANY_TENSORS_TOTAL),
      );
    }
    for (const size of callContenders.length > 0 ? CALL_OVERHEAD_SIZES : []) {
      progress.section(`call overhead ${size}`);
      const measured = measureInterleaved(callContenders, size, mode.settings, tick);
      callOverhead.push(...measured.map((m) => toResult(m, size)));
    }
    for (const size of leanStateContenders.length > 0 ? leanSizes : []) {
      progress.section(`lean state ${formatSize(size)}`);
      const measured = measureInterleaved(leanStateContenders, size, mode.settings, tick);
      leanResults.push(...measured.map((m) => toResult(m, size)));
    }
    for (const size of optimizerContenders.length > 0 ? leanOptimizerSizes : []) {
      progress.section(`lean optimizers ${formatSize(size)}`);
      const measured = measureInterleaved(optimizerContenders, size, mode.settings, tick);
      optimizerResults.push(...withOwnTraffic(measured.map((m) => toResult(m, size))));
    }
    if (leanModelSteps.length > 0) {
      progress.section('lean optimizers, model-shaped step');
      const size = totalLength(shapes);
      leanModelResults = measureInterleaved(leanModelSteps, size, mode.settings, tick).map((m) =>
        toResult(m, size),
      );
    }
    if (tfjsSteps.length > 0) {
      progress.section('tfjs adapter');
      tfjsResults = measureInterleaved(tfjsSteps, TFJS_MLP_PARAMS, mode.settings, tick).map((m) =>
        toResult(m, TFJS_MLP_PARAMS),
      );
    }
  } finally {
    progress.stop();
    tfjs?.release();
    backend.setIsa(bestIsa);
  }

  const rows = leanRows(leanResults);
  const optimizerRows =
    optimizerArrays === undefined
      ? []
      : leanOptimizerRows(optimizerResults, optimizerArrays.stateBytes);
  const modelRows = leanModel === undefined ? [] : leanModelRows(leanModelResults, leanModel);
  const targets = evaluateTargets(
    {
      throughput,
      modelStep,
      callOverhead,
      manyTensors,
      leanRows: rows,
      leanOptimizerRows: optimizerRows,
    },
    bestIsa,
    threads,
    allThreads,
  );
  const results: BenchResults = {
    machine,
    run: {
      date: new Date(started).toISOString(),
      command: options.command,
      mode: mode.name,
      durationSeconds: (Date.now() - started) / 1000,
      loadAverageBefore,
      loadAverageAfter: loadAverage(),
      samplesPerContender: rounds,
    },
    throughput,
    modelStep,
    ...(modelStep.length > 0
      ? {
          modelShape: {
            tensors: shapes.length,
            params: totalLength(shapes),
            small: shapes.filter((s) => s.length <= 2048).length,
          },
        }
      : {}),
    callOverhead,
    manyTensors,
    ...(leanResults.length > 0 ? { leanState: { results: leanResults, rows } } : {}),
    ...(optimizerResults.length > 0 || leanModelResults.length > 0
      ? {
          leanOptimizers: {
            results: optimizerResults,
            rows: optimizerRows,
            model: leanModelResults,
            modelRows,
            modelShape: {
              tensors: shapes.length,
              params: totalLength(shapes),
              factored: shapes.filter((s) => (s.dims?.length ?? 1) >= 2).length,
            },
          },
        }
      : {}),
    ...(tfjs !== undefined
      ? {
          tfjs: {
            version: tfjs.version,
            results: tfjsResults,
            rows: tfjsRows(tfjsResults),
            model: {
              variables: TFJS_MLP_SHAPES.length,
              params: TFJS_MLP_PARAMS,
              batchSize: TFJS_BATCH_SIZE,
            },
          },
        }
      : {}),
    targets,
    notes,
  };
  process.stdout.write(`${terminalReport(results)}\n\n`);
  await writeOutputs(results, options);
}

async function writeOutputs(results: BenchResults, options: Options): Promise<void> {
  const resultsDir = path.join(options.outDir, 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const json = `${JSON.stringify(results, null, 2)}\n`;
  fs.writeFileSync(path.join(resultsDir, 'results.json'), json);
  if (options.json !== undefined) fs.writeFileSync(options.json, json);

  const { machine, run } = results;
  const subtitle = `${machine.name}; node ${process.version}; ${run.date.slice(0, 10)}; ${run.command}`;
  const charts: { throughput?: string; fraction?: string } = {};
  if (results.throughput.length > 0) {
    fs.writeFileSync(
      path.join(resultsDir, 'throughput.svg'),
      await throughputChartSvg(results.throughput, subtitle),
    );
    fs.writeFileSync(
      path.join(resultsDir, 'roofline-fraction.svg'),
      await rooflineFractionChartSvg(results.throughput, subtitle, 0.95),
    );
    charts.throughput = 'results/throughput.svg';
    charts.fraction = 'results/roofline-fraction.svg';
  }
  const markdownFile = path.join(options.outDir, 'RESULTS.md');
  fs.writeFileSync(
    markdownFile,
    await formatMarkdown(markdownFile, resultsMarkdown(results, charts)),
  );
  process.stdout.write(
    `Wrote ${markdownFile}, ${resultsDir}/results.json` +
      (charts.throughput === undefined ? '' : ` and the charts in ${resultsDir}`) +
      `${options.json === undefined ? '' : ` and ${options.json}`}\n`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
