// How every number in the bench is taken: warm-up, a repetition count calibrated so that one sample
// lasts long enough to time, then rounds in which every contender takes one sample in turn
// (interleaved, with the order rotated each round), so that drift on this shared machine hits all
// contenders alike. Reported: the median time per repetition, with the fastest and slowest sample.

/** One contender prepared for one size. */
export interface Workload {
  /** Runs the measured operation `reps` times, back to back. */
  run(reps: number): void;
  /** Releases what setup allocated. */
  dispose?(): void;
}

/** Why a contender does not run at some size (shown in the report). */
export interface Skipped {
  readonly skipped: string;
}

/** 'roofline' rows are derived from the 'probe' rows (results.ts), never measured directly;
 * 'c-loop' is the plain C AdamW loop of the bench addon (c-loop.ts). */
export type Family = 'probe' | 'roofline' | 'simd-adamw' | 'c-loop' | 'peer';

export interface Contender {
  /** Stable id for JSON and targets, e.g. 'simd-adamw/avx512/t1'. */
  readonly id: string;
  /** For tables and the chart, e.g. 'simd-adamw avx512'. */
  readonly label: string;
  readonly family: Family;
  readonly threads: number;
  /** The kernel's instruction set, for simd-adamw contenders. */
  readonly isa?: string;
  setup(size: number): Workload | Skipped;
}

export interface SampleSettings {
  /** Rounds of interleaved samples. */
  readonly rounds: number;
  /** Contenders whose samples are slow stop after this many rounds, but never below it. */
  readonly minRounds: number;
  /** Target duration of one sample. */
  readonly sampleSeconds: number;
  /** Time spent running a contender before its first sample. */
  readonly warmupSeconds: number;
  /** Time one contender may take at one size; above it, minRounds applies. */
  readonly budgetSeconds: number;
}

export interface Timing {
  /** Seconds per repetition: median, fastest and slowest sample. */
  readonly medianSeconds: number;
  readonly minSeconds: number;
  readonly maxSeconds: number;
  readonly samples: number;
  readonly repsPerSample: number;
}

// With node --expose-gc (as `npm run bench` runs), a full collection before every sample: a
// contender that allocates a lot (TensorFlow.js) otherwise leaves V8 mid-way through incremental
// marking, and the next contender's allocations pay for it inside its timed loop (measured: the
// 4K step read 25% slower after tfjs samples than without them).
const collectGarbage = (globalThis as { gc?: () => void }).gc;

export function isolatesGarbageCollection(): boolean {
  return collectGarbage !== undefined;
}

function now(): bigint {
  return process.hrtime.bigint();
}

function secondsOf(run: () => void): number {
  const start = now();
  run();
  return Number(now() - start) / 1e9;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? Number.NaN)
    : ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}

interface Calibrated {
  readonly reps: number;
  readonly rounds: number;
}

// Runs the workload for at least warmupSeconds (at least twice), doubling the batch, and returns
// the repetitions per sample and the rounds it can afford from the warmed-up time per repetition.
function warmUpAndCalibrate(workload: Workload, settings: SampleSettings): Calibrated {
  collectGarbage?.();
  let spent = secondsOf(() => {
    workload.run(1);
  });
  let perRep = spent;
  for (let batch = 1; spent < settings.warmupSeconds || batch === 1; batch *= 2) {
    const seconds = secondsOf(() => {
      workload.run(batch);
    });
    spent += seconds;
    perRep = seconds / batch;
    if (batch >= 1 << 24) break;
  }
  const reps = Math.max(1, Math.round(settings.sampleSeconds / Math.max(perRep, 1e-9)));
  const affordable = Math.floor(settings.budgetSeconds / (reps * perRep));
  const rounds = Math.min(settings.rounds, Math.max(settings.minRounds, affordable));
  return { reps, rounds };
}

export interface MeasuredContender {
  readonly contender: Contender;
  readonly timing?: Timing;
  readonly skipped?: string;
}

/**
 * Measures every contender at one size, interleaved. `onSlot` is called once per contender and
 * round (settings.rounds times per contender in all, whether it sampled, sat the round out or was
 * skipped at this size), for the progress bar.
 */
export function measureInterleaved(
  contenders: readonly Contender[],
  size: number,
  settings: SampleSettings,
  onSlot: (label: string) => void = () => undefined,
): MeasuredContender[] {
  const prepared = contenders.map((contender) => ({ contender, prepared: contender.setup(size) }));
  try {
    const active: { index: number; workload: Workload; calibrated: Calibrated; times: number[] }[] =
      [];
    prepared.forEach(({ contender, prepared: p }, index) => {
      if ('skipped' in p) {
        for (let round = 0; round < settings.rounds; round++) onSlot(contender.label);
        return;
      }
      active.push({ index, workload: p, calibrated: warmUpAndCalibrate(p, settings), times: [] });
    });
    for (let round = 0; round < settings.rounds; round++) {
      for (let k = 0; k < active.length; k++) {
        const entry = active[(k + round) % active.length];
        const { reps, rounds } = entry.calibrated;
        if (round < rounds) {
          collectGarbage?.();
          const seconds = secondsOf(() => {
            entry.workload.run(reps);
          });
          entry.times.push(seconds / reps);
        }
        onSlot(contenders[entry.index]?.label ?? '');
      }
    }
    return prepared.map(({ contender, prepared: p }, index) => {
      if ('skipped' in p) return { contender, skipped: p.skipped };
      const entry = active.find((a) => a.index === index);
      const times = entry?.times ?? [];
      return {
        contender,
        timing: {
          medianSeconds: median(times),
          minSeconds: Math.min(...times),
          maxSeconds: Math.max(...times),
          samples: times.length,
          repsPerSample: entry?.calibrated.reps ?? 0,
        },
      };
    });
  } finally {
    for (const { prepared: p } of prepared) if (!('skipped' in p)) p.dispose?.();
  }
}
