// The speed targets of issue 3, issue 4's threading targets once there is more than one thread,
// issue 10's rows against the plain C loop and the roofline, issue 12's lean-state targets and
// issue 13's Lion roofline, evaluated on this run's numbers. A missed target is reported with its ratio; the
// thresholds are the issues' and are never adjusted to the results.
import { formatSize } from './data';
import type { LeanOptimizerRow } from './lean-optimizers';
import { leanConfig, type LeanRow } from './lean-state';
import { findResult, type Result, type TargetResult } from './results';

const M = 1 << 20;

interface Measured {
  readonly throughput: readonly Result[];
  readonly modelStep: readonly Result[];
  readonly callOverhead: readonly Result[];
  readonly manyTensors: readonly Result[];
  readonly leanRows?: readonly LeanRow[];
  readonly leanOptimizerRows?: readonly LeanOptimizerRow[];
}

function target(
  issue: number,
  name: string,
  where: string,
  threshold: number,
  unit: TargetResult['unit'],
  measured: number | undefined,
): TargetResult {
  if (measured === undefined || !Number.isFinite(measured)) {
    return { issue, name, where, threshold, unit };
  }
  return { issue, name, where, threshold, unit, measured, met: measured >= threshold };
}

function mparams(result: Result | undefined): number | undefined {
  return result?.throughput?.mparamsPerSecond;
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined ? undefined : a / b;
}

const threadWord = (threads: number): string => (threads === 1 ? '1 thread' : `${threads} threads`);

export function evaluateTargets(
  measured: Measured,
  bestIsa: string,
  threadCounts: readonly number[],
  allThreads: number,
): TargetResult[] {
  const { throughput, modelStep, callOverhead, manyTensors } = measured;
  const kernelId = (threads: number): string => `simd-adamw/${bestIsa}/t${threads}`;
  const targets: TargetResult[] = [];

  // Issue 3: at DRAM sizes, >= 0.95x of the same-run roofline, on one thread and on all threads.
  const dramSizes = [...new Set(throughput.map((r) => r.size))].filter((s) => s >= 16 * M);
  for (const threads of [...new Set([1, allThreads])]) {
    const name = `>= 16M params: step / same-run roofline, ${threadWord(threads)}`;
    if (!threadCounts.includes(threads)) {
      targets.push(
        target(
          3,
          name,
          `not measured: ${threadWord(threads)} not in this run`,
          0.95,
          'x',
          undefined,
        ),
      );
      continue;
    }
    if (dramSizes.length === 0) {
      targets.push(
        target(3, name, 'not measured: no size >= 16M in this run', 0.95, 'x', undefined),
      );
    }
    for (const size of dramSizes) {
      const kernel = findResult(throughput, kernelId(threads), size);
      targets.push(
        target(3, name, `${formatSize(size)}, ${bestIsa}`, 0.95, 'x', kernel?.fractionOfRoofline),
      );
    }
  }

  targets.push(
    target(
      3,
      '64K params (cache-resident), 1 thread',
      `AdamW.step(), ${bestIsa}`,
      2000,
      'Mparams/s',
      mparams(findResult(throughput, kernelId(1), 64 * 1024)),
    ),
    target(
      3,
      '4K params from JS including the call, 1 thread',
      `AdamW.step(), ${bestIsa}`,
      1200,
      'Mparams/s',
      mparams(findResult(callOverhead, 'call/class/t1', 4096)),
    ),
  );

  for (const threads of threadCounts) {
    const model = findResult(modelStep, `model-step/model/t${threads}`);
    const one = findResult(modelStep, `model-step/one-tensor/t${threads}`);
    targets.push(
      target(
        3,
        `model-shaped step / one tensor of the same size, ${threadWord(threads)}`,
        model === undefined ? 'not measured in this run' : `${formatSize(model.size)} params`,
        0.9,
        'x',
        ratio(mparams(model), mparams(one)),
      ),
    );
  }

  const kernel16M = mparams(findResult(throughput, kernelId(1), 16 * M));
  const peer = (id: string, label: string, threshold: number): TargetResult => {
    const result = findResult(throughput, id, 16 * M);
    const where =
      result === undefined
        ? 'not measured: no 16M size in this run'
        : result.skipped !== undefined
          ? `not measured: ${result.skipped}`
          : `16M, 1 thread, ${bestIsa}`;
    return target(
      3,
      `vs ${label} at 16M`,
      where,
      threshold,
      'x',
      ratio(kernel16M, mparams(result)),
    );
  };
  targets.push(
    peer('peer/plain-js/t1', 'the plain JS loop', 5),
    peer('peer/tfjs/t1', 'tfjs tf.train.adam', 100),
  );

  // Issue 4, once the step runs on more than one thread.
  const most = Math.max(...threadCounts);
  if (most > 1) {
    for (const size of dramSizes) {
      targets.push(
        target(
          4,
          `>= 16M params: ${most} threads / ${most}-thread roofline`,
          `${formatSize(size)}, ${bestIsa}`,
          0.9,
          'x',
          findResult(throughput, kernelId(most), size)?.fractionOfRoofline,
        ),
      );
    }
    for (const size of [64 * 1024, M]) {
      targets.push(
        target(
          4,
          `64K-1M params: ${most} threads / 1 thread`,
          `${formatSize(size)}, ${bestIsa}`,
          1.6,
          'x',
          ratio(
            mparams(findResult(throughput, kernelId(most), size)),
            mparams(findResult(throughput, kernelId(1), size)),
          ),
        ),
      );
    }
  }
  targets.push(...issue10Targets(throughput, manyTensors, kernelId(1), bestIsa));
  targets.push(...issue12Targets(measured.leanRows ?? [], bestIsa));
  targets.push(...issue13Targets(measured.leanOptimizerRows ?? [], bestIsa));
  return targets;
}

/** Issue 12's speed targets: at DRAM sizes (the issue names 64M) on 1 and 2 threads, each lean
 * state's step against the float32-state step of the same run, and against its own roofline. */
const ISSUE12_VERSUS_FLOAT32: readonly [string, number][] = [
  ['bfloat16', 1.3],
  ['blockwise8', 1.5],
  ['blockwise8-bf16-grads', 1.7],
];

function issue12Targets(rows: readonly LeanRow[], bestIsa: string): TargetResult[] {
  const targets: TargetResult[] = [];
  const dram = rows.filter((r) => r.size >= 16 * M);
  for (const threads of [1, 2]) {
    const measured = dram.filter((r) => r.threads === threads);
    const sizes = [...new Set(measured.map((r) => r.size))];
    const where = (size: number | undefined): string =>
      size === undefined
        ? `not measured: no lean-state size >= 16M on ${threadWord(threads)} in this run`
        : `${formatSize(size)}, ${threadWord(threads)}, ${bestIsa}`;
    for (const [config, threshold] of ISSUE12_VERSUS_FLOAT32) {
      const label = leanConfig(config)?.label ?? config;
      for (const size of sizes.length > 0 ? sizes : [undefined]) {
        const row = measured.find((r) => r.config === config && r.size === size);
        targets.push(
          target(
            12,
            `DRAM: ${label} / float32-state step`,
            where(size),
            threshold,
            'x',
            row?.versusFloat32,
          ),
        );
      }
    }
    for (const [config] of ISSUE12_VERSUS_FLOAT32) {
      const label = leanConfig(config)?.label ?? config;
      for (const size of sizes.length > 0 ? sizes : [undefined]) {
        const row = measured.find((r) => r.config === config && r.size === size);
        targets.push(
          target(
            12,
            `DRAM: ${label} / its own roofline`,
            where(size),
            0.9,
            'x',
            row?.fractionOfRoofline,
          ),
        );
      }
    }
  }
  // Each class's roofline is a ceiling, as issue 10's: no lean step may beat its own beyond noise.
  let worst: { value: number; where: string } | undefined;
  for (const r of rows) {
    if (r.fractionOfRoofline === undefined || r.fractionOfRoofline <= 0) continue;
    if (worst === undefined || 1 / r.fractionOfRoofline < worst.value) {
      worst = {
        value: 1 / r.fractionOfRoofline,
        where: `worst: ${r.label}, ${formatSize(r.size)}, ${threadWord(r.threads)}`,
      };
    }
  }
  targets.push(
    target(
      12,
      'each lean roofline is a ceiling: roofline / its step, every size and thread setting',
      worst?.where ?? 'not measured in this run',
      0.95,
      'x',
      worst?.value,
    ),
  );
  return targets;
}

/** Issue 13: at DRAM sizes on 1 and 2 threads, Lion's float32-state step against the same-run
 * roofline of its own traffic (20 B/param); and every Lion roofline is a ceiling. */
function issue13Targets(rows: readonly LeanOptimizerRow[], bestIsa: string): TargetResult[] {
  const targets: TargetResult[] = [];
  const name = 'DRAM: Lion (float32 state) / its own roofline';
  for (const threads of [1, 2]) {
    const measured = rows.filter(
      (r) => r.config === 'lion-float32' && r.threads === threads && r.size >= 16 * M,
    );
    if (measured.length === 0) {
      const where = `not measured: no lean-optimizers size >= 16M on ${threadWord(threads)} in this run`;
      targets.push(target(13, name, where, 0.95, 'x', undefined));
    }
    for (const row of measured) {
      const where = `${formatSize(row.size)}, ${threadWord(threads)}, ${bestIsa}`;
      targets.push(target(13, name, where, 0.95, 'x', row.fractionOfRoofline));
    }
  }
  let worst: { value: number; where: string } | undefined;
  for (const r of rows) {
    if (r.fractionOfRoofline === undefined || r.fractionOfRoofline <= 0) continue;
    if (worst === undefined || 1 / r.fractionOfRoofline < worst.value) {
      worst = {
        value: 1 / r.fractionOfRoofline,
        where: `worst: ${r.label}, ${formatSize(r.size)}, ${threadWord(r.threads)}`,
      };
    }
  }
  targets.push(
    target(
      13,
      'each Lion roofline is a ceiling: roofline / its step, every size, state and thread setting',
      worst?.where ?? 'not measured in this run',
      0.95,
      'x',
      worst?.value,
    ),
  );
  return targets;
}

/**
 * Issue 10: AdamW.step() from JavaScript on 1 thread against the plain C loop (64K, 4K with the
 * call included), many small tensors against one, the DRAM sizes against the roofline (the C loop
 * shown there too), and the roofline itself: no contender may beat it beyond noise (5%).
 */
function issue10Targets(
  throughput: readonly Result[],
  manyTensors: readonly Result[],
  kernelId: string,
  bestIsa: string,
): TargetResult[] {
  const targets: TargetResult[] = [];
  const versusCLoop = (size: number, name: string, threshold: number): TargetResult => {
    const ours = mparams(findResult(throughput, kernelId, size));
    const loop = mparams(findResult(throughput, 'c-loop/t1', size));
    const where =
      ours === undefined || loop === undefined
        ? `not measured: no ${formatSize(size)} size in this run`
        : `${formatSize(size)}, AdamW.step() ${bestIsa} ${Math.round(ours)} vs C loop ${Math.round(loop)} Mparams/s`;
    return target(10, name, where, threshold, 'x', ratio(ours, loop));
  };
  targets.push(
    versusCLoop(64 * 1024, '64K params (L2): AdamW.step() / plain C loop, 1 thread', 0.9),
    versusCLoop(4 * 1024, '4K params, call included: AdamW.step() / plain C loop, 1 thread', 0.5),
  );
  const many = mparams(findResult(manyTensors, 'many-tensors/many/t1'));
  const one = mparams(findResult(manyTensors, 'many-tensors/one/t1'));
  targets.push(
    target(
      10,
      '1,024 tensors of 1,024 / 1 tensor of 1M, AdamW.step(), 1 thread',
      many === undefined || one === undefined
        ? 'not measured in this run'
        : `${Math.round(many)} vs ${Math.round(one)} Mparams/s`,
      0.8,
      'x',
      ratio(many, one),
    ),
  );
  for (const size of [...new Set(throughput.map((r) => r.size))].filter((s) => s >= 16 * M)) {
    const ours = findResult(throughput, kernelId, size);
    const loop = findResult(throughput, 'c-loop/t1', size)?.fractionOfRoofline;
    targets.push(
      target(
        10,
        'DRAM: AdamW.step() / roofline, 1 thread',
        `${formatSize(size)}, ${bestIsa}; C loop ${loop === undefined ? '-' : `${loop.toFixed(2)}x`}`,
        0.95,
        'x',
        ours?.fractionOfRoofline,
      ),
    );
  }
  // The roofline is a ceiling: roofline / fastest contender, the worst size and thread count.
  let worst: { value: number; where: string } | undefined;
  for (const r of throughput) {
    if (r.contender.family === 'probe' || r.contender.family === 'roofline') continue;
    const fraction = r.fractionOfRoofline;
    if (fraction === undefined || fraction <= 0) continue;
    if (worst === undefined || 1 / fraction < worst.value) {
      worst = {
        value: 1 / fraction,
        where: `worst: ${r.contender.label}, ${formatSize(r.size)}, ${threadWord(r.contender.threads)}`,
      };
    }
  }
  targets.push(
    target(
      10,
      'roofline is a ceiling: roofline / fastest contender, every size and thread setting',
      worst?.where ?? 'not measured in this run',
      0.95,
      'x',
      worst?.value,
    ),
  );
  return targets;
}

/** "met: 0.97x (target >= 0.95x)" or "missed by 8%: 0.87x (target >= 0.95x)". */
export function describeTarget(t: TargetResult): string {
  const show = (value: number): string =>
    t.unit === 'x' ? `${value.toFixed(2)}x` : `${Math.round(value)} Mparams/s`;
  if (t.measured === undefined) return `not measured (target >= ${show(t.threshold)})`;
  const verdict =
    t.met === true ? 'met' : `missed by ${Math.ceil((1 - t.measured / t.threshold) * 100)}%`;
  return `${verdict}: ${show(t.measured)} (target >= ${show(t.threshold)}, ratio ${(t.measured / t.threshold).toFixed(2)})`;
}
