// What a run produces, in the shape written to --json and read by the report, the chart and the
// targets. Throughput is derived from the measured time per step here, in one place.
import type { LeanModelRow, LeanOptimizerRow } from './lean-optimizers';
import type { LeanRow } from './lean-state';
import type { Family, MeasuredContender, Timing } from './measure';
import type { TfjsRow } from './tfjs';

/** Bytes an AdamW step moves per parameter: reads param, grad, expAvg, expAvgSq; writes three. */
export const BYTES_PER_PARAM = 28;

export interface ContenderInfo {
  readonly id: string;
  readonly label: string;
  readonly family: Family;
  readonly threads: number;
  readonly isa?: string;
}

export interface Throughput {
  /** Millions of parameters updated per second: from the median sample, the slowest, the fastest. */
  readonly mparamsPerSecond: number;
  readonly mparamsPerSecondMin: number;
  readonly mparamsPerSecondMax: number;
  /** BYTES_PER_PARAM per parameter, from the median. */
  readonly gbPerSecond: number;
}

export interface Result {
  readonly contender: ContenderInfo;
  /** Parameters updated per step. */
  readonly size: number;
  readonly timing?: Timing;
  readonly throughput?: Throughput;
  /** Median throughput over the roofline's median at the same size and thread count. */
  readonly fractionOfRoofline?: number;
  /** On roofline rows: the probe whose median it is. */
  readonly rooflineSource?: string;
  readonly skipped?: string;
}

export interface MachineInfo {
  /** What the machine is, in a few words: "2-core AMD EPYC (Zen 5) KVM guest, AVX-512". */
  readonly name: string;
  readonly cpuModel: string;
  readonly cpuFamilyModel: string;
  readonly cpuFlags: string;
  readonly caches: string;
  readonly logicalCpus: number;
  readonly memoryGiB: number;
  readonly os: string;
  readonly node: string;
  readonly compiler: string;
  readonly kernels: readonly string[];
  readonly gitCommit: string;
}

export interface RunInfo {
  readonly date: string;
  readonly command: string;
  readonly mode: 'quick' | 'full';
  readonly durationSeconds: number;
  /** 1-minute load average before and after the run (others' work on this shared machine). */
  readonly loadAverageBefore: number;
  readonly loadAverageAfter: number;
  readonly samplesPerContender: number;
}

export interface TargetResult {
  readonly issue: number;
  readonly name: string;
  /** Where it was measured: size, threads, contenders. */
  readonly where: string;
  readonly threshold: number;
  readonly unit: 'x' | 'Mparams/s';
  /** undefined: not measured in this run (the reason is in `where`). */
  readonly measured?: number;
  readonly met?: boolean;
}

export interface BenchResults {
  readonly machine: MachineInfo;
  readonly run: RunInfo;
  readonly throughput: readonly Result[];
  readonly modelStep: readonly Result[];
  readonly modelShape?: {
    readonly tensors: number;
    readonly params: number;
    readonly small: number;
  };
  readonly callOverhead: readonly Result[];
  /** 1,024 tensors of 1,024 against one tensor of 1M, 1 thread (many-tensors.ts). */
  readonly manyTensors: readonly Result[];
  /** Issue 12: each state dtype's step and its own-traffic roofline (lean-state.ts). */
  readonly leanState?: {
    readonly results: readonly Result[];
    readonly rows: readonly LeanRow[];
  };
  /** Issue 13: Lion, Adafactor and CAME beside AdamW, Lion against its own-traffic roofline, and
   * the model-shaped step per optimizer (lean-optimizers.ts). */
  readonly leanOptimizers?: {
    readonly results: readonly Result[];
    readonly rows: readonly LeanOptimizerRow[];
    readonly model: readonly Result[];
    readonly modelRows: readonly LeanModelRow[];
    /** The model's tensors, parameters and 2-D (factored) tensors. */
    readonly modelShape: {
      readonly tensors: number;
      readonly params: number;
      readonly factored: number;
    };
  };
  /** Issue 14: simd-adamw/tfjs's applyGradients against tf.train.adam's on an MLP, and the
   * optimizer's share of a train step (tfjs.ts). */
  readonly tfjs?: {
    readonly version: string;
    readonly results: readonly Result[];
    readonly rows: readonly TfjsRow[];
    readonly model: {
      readonly variables: number;
      readonly params: number;
      readonly batchSize: number;
    };
  };
  readonly targets: readonly TargetResult[];
  readonly notes: readonly string[];
}

export function contenderInfo(measured: MeasuredContender): ContenderInfo {
  const { id, label, family, threads, isa } = measured.contender;
  return isa === undefined ? { id, label, family, threads } : { id, label, family, threads, isa };
}

export function toResult(measured: MeasuredContender, size: number): Result {
  const contender = contenderInfo(measured);
  const { timing } = measured;
  if (timing === undefined) return { contender, size, skipped: measured.skipped ?? 'not run' };
  const perSecond = (seconds: number): number => size / seconds / 1e6;
  return {
    contender,
    size,
    timing,
    throughput: {
      mparamsPerSecond: perSecond(timing.medianSeconds),
      mparamsPerSecondMin: perSecond(timing.maxSeconds),
      mparamsPerSecondMax: perSecond(timing.minSeconds),
      gbPerSecond: (BYTES_PER_PARAM * size) / timing.medianSeconds / 1e9,
    },
  };
}

/**
 * Adds the roofline of each size and thread count, the fastest of the probes by median (its row
 * carries that probe's timing and names it in `rooflineSource`), and every other result's fraction
 * of it.
 */
export function withRoofline(results: readonly Result[]): Result[] {
  const best = new Map<string, Result>();
  for (const r of results) {
    if (r.contender.family !== 'probe' || r.throughput === undefined) continue;
    const key = `${r.size}/${r.contender.threads}`;
    const current = best.get(key)?.throughput?.mparamsPerSecond ?? 0;
    if (r.throughput.mparamsPerSecond > current) best.set(key, r);
  }
  const out: Result[] = [];
  const added = new Set<string>();
  for (const r of results) {
    const key = `${r.size}/${r.contender.threads}`;
    const probe = best.get(key);
    if (probe !== undefined && !added.has(key)) {
      added.add(key);
      const { threads } = r.contender;
      out.push({
        ...probe,
        contender: {
          id: `roofline/t${threads}`,
          label: 'roofline (fastest probe)',
          family: 'roofline',
          threads,
        },
        rooflineSource: probe.contender.label,
        fractionOfRoofline: 1,
      });
    }
    const limit = probe?.throughput?.mparamsPerSecond;
    out.push(
      r.throughput === undefined || limit === undefined
        ? r
        : { ...r, fractionOfRoofline: r.throughput.mparamsPerSecond / limit },
    );
  }
  return out;
}

export function findResult(
  results: readonly Result[],
  id: string,
  size?: number,
): Result | undefined {
  return results.find((r) => r.contender.id === id && (size === undefined || r.size === size));
}

/** The probe that set the roofline at each size, per thread count: threads -> size -> label. */
export function rooflineWinners(results: readonly Result[]): Map<number, Map<number, string>> {
  const winners = new Map<number, Map<number, string>>();
  for (const r of results) {
    if (r.contender.family !== 'roofline' || r.rooflineSource === undefined) continue;
    const bySize = winners.get(r.contender.threads) ?? new Map<number, string>();
    bySize.set(r.size, r.rooflineSource);
    winners.set(r.contender.threads, bySize);
  }
  return winners;
}
