// Question: what does global-norm clipping cost when it is fused into the step, compared with a
// bare step and with clipping as a separate pass?
//
// Issue 5's target: at >= 16M parameters the fused clip + step costs <= 1.5x a bare step (the
// read-only norm pass over the gradients is the floor of what clipping adds), where the unfused
// way (measure the norm, scale every gradient in place, then step) costs a full read-write pass
// more. Contenders, on one model-shaped parameter set (four 4M-element matrices and 64 small
// vectors: 16.8M parameters), through the public API only:
//   bare       optimizer.step()
//   fused      optimizer.step({ clipGradNorm }), with a maxNorm that clips (factor != 1)
//   unfused    gradNorm(params), then grad *= clipCoef in a JavaScript loop, then step()
//   norm only  gradNorm(params): the reduction pass alone
// Timing: process.hrtime around one call; before every sample (untimed) the gradients are reset
// from a pristine copy, the same for every contender, since the unfused contender scales them in
// place. Rounds interleave the contenders, rotating their order, so drift on a shared machine hits
// all alike; reported: the median per contender and its ratio to the bare step's median.
//
//   npx tsc -p tsconfig.build.json && node dist/bench/fused-clip.js [--rounds 15] [--threads 1,2]
//     [--scale 1] [--json]
//
// --scale multiplies the parameter count (0.25 for a quick run). Self-contained: it needs nothing
// from the rest of bench/; a runner can import measureFusedClip instead.
import * as os from 'node:os';

import { AdamW, backend, gradNorm, type Param } from '../lib';

export interface FusedClipOptions {
  rounds: number;
  threads: number[];
  scale: number;
  json: boolean;
}

function parseArgs(argv: readonly string[]): FusedClipOptions {
  const options: FusedClipOptions = {
    rounds: 15,
    threads: [1, os.availableParallelism()],
    scale: 1,
    json: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv.at(i + 1);
    if (arg === '--json') {
      options.json = true;
    } else if (arg === '--rounds' && value !== undefined) {
      options.rounds = Number(value);
      i++;
    } else if (arg === '--threads' && value !== undefined) {
      options.threads = value.split(',').map(Number);
      i++;
    } else if (arg === '--scale' && value !== undefined) {
      options.scale = Number(value);
      i++;
    } else {
      throw new Error(`fused-clip: unknown argument ${arg}`);
    }
  }
  options.threads = [...new Set(options.threads)];
  return options;
}

// xorshift32 in [-1, 1): deterministic data without a dependency.
function fill(array: Float32Array, seed: number, scale: number): void {
  let x = seed | 1;
  for (let i = 0; i < array.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    array[i] = ((x >>> 0) / 2 ** 31 - 1) * scale;
  }
}

function makeParams(scale: number): { params: Param[]; pristine: Float32Array[] } {
  const lengths = [
    ...Array.from({ length: 4 }, () => Math.round(4 * 2 ** 20 * scale)),
    ...Array.from({ length: 64 }, () => 1024),
  ];
  const params = lengths.map((length, k) => {
    const data = new Float32Array(length);
    const grad = new Float32Array(length);
    fill(data, 2 * k + 1, 0.1);
    fill(grad, 2 * k + 2, 1e-2);
    return { name: `p${k}`, data, grad };
  });
  return { params, pristine: params.map((p) => p.grad.slice()) };
}

type ContenderName = 'bare' | 'fused' | 'unfused' | 'norm only';
const CONTENDERS: readonly ContenderName[] = ['bare', 'fused', 'unfused', 'norm only'];

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export interface FusedClipRow {
  threads: number;
  contender: ContenderName;
  medianMs: number;
  minMs: number;
  maxMs: number;
  ratioToBare: number;
}

/** Runs the comparison; one row per thread count and contender. */
export function measureFusedClip(options: FusedClipOptions): FusedClipRow[] {
  const { params, pristine } = makeParams(options.scale);
  const rows: FusedClipRow[] = [];
  for (const threads of options.threads) {
    const optimizer = new AdamW(params, { lr: 1e-4, threads });
    const maxNorm = gradNorm(params) / 2; // clips by about one half
    const reset = (): void => {
      for (const [k, p] of params.entries()) p.grad.set(pristine[k]);
    };
    const runs: Record<ContenderName, () => void> = {
      bare: () => optimizer.step(),
      fused: () => {
        if (!optimizer.step({ clipGradNorm: maxNorm }).clipped) throw new Error('did not clip');
      },
      unfused: () => {
        const clipCoef = maxNorm / (gradNorm(params, { threads }) + 1e-6);
        if (clipCoef < 1) {
          const coef = Math.fround(clipCoef);
          for (const p of params) {
            const grad = p.grad;
            for (let i = 0; i < grad.length; i++) grad[i] *= coef;
          }
        }
        optimizer.step();
      },
      'norm only': () => {
        gradNorm(params, { threads });
      },
    };
    const samples: Record<ContenderName, number[]> = {
      bare: [],
      fused: [],
      unfused: [],
      'norm only': [],
    };
    // Warm-up: every contender twice (JIT, page faults of the state arrays, thread pool).
    for (let i = 0; i < 2; i++) {
      for (const name of CONTENDERS) {
        reset();
        runs[name]();
      }
    }
    for (let round = 0; round < options.rounds; round++) {
      for (let j = 0; j < CONTENDERS.length; j++) {
        const name = CONTENDERS[(round + j) % CONTENDERS.length];
        reset();
        const start = process.hrtime.bigint();
        runs[name]();
        samples[name].push(Number(process.hrtime.bigint() - start) / 1e6);
      }
    }
    const bare = median(samples.bare);
    for (const name of CONTENDERS) {
      rows.push({
        threads,
        contender: name,
        medianMs: median(samples[name]),
        minMs: Math.min(...samples[name]),
        maxMs: Math.max(...samples[name]),
        ratioToBare: median(samples[name]) / bare,
      });
    }
  }
  return rows;
}

function main(): void {
  const options = parseArgs(process.argv.slice(2));
  const paramCount = makeParams(options.scale).params.reduce((n, p) => n + p.data.length, 0);
  const machine = {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    node: process.version,
    isa: backend.isa,
    params: paramCount,
    rounds: options.rounds,
  };
  const rows = measureFusedClip(options);
  if (options.json) {
    console.log(JSON.stringify({ machine, rows }, null, 2));
    return;
  }
  console.log(
    `fused-clip: ${(paramCount / 1e6).toFixed(2)}M params, ${machine.isa}, ${machine.cpu}, ` +
      `${machine.cores} cores, node ${machine.node}, ${options.rounds} interleaved rounds`,
  );
  console.log('threads  contender   median ms   min ms    max ms   x bare');
  for (const row of rows) {
    console.log(
      `${String(row.threads).padStart(7)}  ${row.contender.padEnd(10)} ` +
        `${row.medianMs.toFixed(2).padStart(9)} ${row.minMs.toFixed(2).padStart(8)} ` +
        `${row.maxMs.toFixed(2).padStart(9)} ${row.ratioToBare.toFixed(2).padStart(7)}`,
    );
  }
}

// Run as a script; imported (by a bench runner), it only exports measureFusedClip.
if (require.main === module) main();
