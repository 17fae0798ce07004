// Turns results into text: the tables printed at the end of a run and bench/RESULTS.md. Every
// number comes from a BenchResults; nothing here is typed in by hand.
import { formatSize } from './data';
import {
  findResult,
  rooflineWinners,
  type BenchResults,
  type Result,
  type TargetResult,
} from './results';
import type { LeanModelRow, LeanOptimizerRow } from './lean-optimizers';
import type { LeanRow } from './lean-state';
import type { TfjsRow } from './tfjs';
import { describeTarget } from './targets';

type Align = 'left' | 'right';

/** A Markdown table with padded columns, readable as plain text too. */
export function table(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  align: readonly Align[] = [],
): string {
  const widths = headers.map((h, c) =>
    Math.max(h.length, 3, ...rows.map((row) => (row[c] ?? '').length)),
  );
  const pad = (text: string, c: number): string =>
    align[c] === 'right' ? text.padStart(widths[c] ?? 0) : text.padEnd(widths[c] ?? 0);
  const line = (cells: readonly string[]): string =>
    `| ${headers.map((_, c) => pad(cells[c] ?? '', c)).join(' | ')} |`;
  const rule = `| ${widths
    .map((w, c) => (align[c] === 'right' ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w)))
    .join(' | ')} |`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

function mparams(value: number): string {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toPrecision(2);
}

function seconds(value: number): string {
  if (value >= 1) return `${value.toFixed(2)} s`;
  if (value >= 1e-3) return `${(value * 1e3).toFixed(2)} ms`;
  if (value >= 1e-6) return `${(value * 1e6).toFixed(2)} µs`;
  return `${(value * 1e9).toFixed(0)} ns`;
}

function contenderName(r: Result, showThreads: boolean): string {
  return showThreads ? `${r.contender.label}, ${r.contender.threads}T` : r.contender.label;
}

function hasSeveralThreadCounts(results: readonly Result[]): boolean {
  return new Set(results.map((r) => r.contender.threads)).size > 1;
}

/** Contenders down, sizes across: "median Mparams/s (fraction of roofline)". */
export function throughputMatrix(results: readonly Result[]): string {
  const sizes = [...new Set(results.map((r) => r.size))].sort((a, b) => a - b);
  const ids = [...new Set(results.map((r) => r.contender.id))];
  const showThreads = hasSeveralThreadCounts(results);
  const rows = ids.map((id) => {
    const mine = results.filter((r) => r.contender.id === id);
    const first = mine.at(0);
    const name = first === undefined ? id : contenderName(first, showThreads);
    return [
      name,
      ...sizes.map((size) => {
        const r = mine.find((m) => m.size === size);
        if (r?.throughput === undefined) return '-';
        const fraction =
          r.contender.family === 'roofline' || r.fractionOfRoofline === undefined
            ? ''
            : ` (${r.fractionOfRoofline.toFixed(r.fractionOfRoofline < 0.1 ? 3 : 2)}x)`;
        return `${mparams(r.throughput.mparamsPerSecond)}${fraction}`;
      }),
    ];
  });
  return table(['Mparams/s (x roofline)', ...sizes.map(formatSize)], rows, [
    'left',
    ...sizes.map((): Align => 'right'),
  ]);
}

/** One row per contender and size, with the spread and the sample counts. */
export function throughputDetail(results: readonly Result[]): string {
  const rows = results.map((r) => {
    const t = r.throughput;
    const timing = r.timing;
    const label =
      r.rooflineSource === undefined ? r.contender.label : `roofline = ${r.rooflineSource}`;
    if (t === undefined || timing === undefined) {
      return [formatSize(r.size), label, String(r.contender.threads), r.skipped ?? '-'];
    }
    return [
      formatSize(r.size),
      label,
      String(r.contender.threads),
      mparams(t.mparamsPerSecond),
      `${mparams(t.mparamsPerSecondMin)}-${mparams(t.mparamsPerSecondMax)}`,
      t.gbPerSecond.toFixed(1),
      r.fractionOfRoofline === undefined ? '' : r.fractionOfRoofline.toFixed(3),
      seconds(timing.medianSeconds),
      `${timing.samples} x ${timing.repsPerSample}`,
    ];
  });
  return table(
    [
      'size',
      'contender',
      'threads',
      'Mparams/s',
      'min-max',
      'GB/s',
      'x roofline',
      'time/step',
      'samples x reps',
    ],
    rows,
    ['right', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
}

export function modelStepTable(results: readonly Result[]): string {
  const showThreads = hasSeveralThreadCounts(results);
  const one = new Map(
    results
      .filter((r) => r.contender.id.startsWith('model-step/one-tensor'))
      .map((r) => [r.contender.threads, r.throughput?.mparamsPerSecond]),
  );
  const rows = results.map((r) => {
    const t = r.throughput;
    const timing = r.timing;
    if (t === undefined || timing === undefined) return [contenderName(r, showThreads), '-'];
    const reference = one.get(r.contender.threads);
    return [
      contenderName(r, showThreads),
      `${seconds(timing.medianSeconds)} (${seconds(timing.minSeconds)}-${seconds(timing.maxSeconds)})`,
      mparams(t.mparamsPerSecond),
      t.gbPerSecond.toFixed(1),
      reference === undefined ? '' : `${(t.mparamsPerSecond / reference).toFixed(3)}x`,
    ];
  });
  return table(['step', 'time/step (min-max)', 'Mparams/s', 'GB/s', 'vs 1 tensor'], rows, [
    'left',
    'right',
    'right',
    'right',
    'right',
  ]);
}

/** Many small tensors against one of the same total size (many-tensors.ts). */
export function manyTensorsTable(results: readonly Result[]): string {
  const one = findResult(results, 'many-tensors/one/t1')?.throughput?.mparamsPerSecond;
  const rows = results.map((r) => {
    const t = r.throughput;
    const timing = r.timing;
    if (t === undefined || timing === undefined) return [r.contender.label, '-'];
    return [
      r.contender.label,
      `${seconds(timing.medianSeconds)} (${seconds(timing.minSeconds)}-${seconds(timing.maxSeconds)})`,
      mparams(t.mparamsPerSecond),
      one === undefined ? '' : `${(t.mparamsPerSecond / one).toFixed(3)}x`,
    ];
  });
  return table(['step, 1 thread', 'time/step (min-max)', 'Mparams/s', 'vs 1 tensor'], rows, [
    'left',
    'right',
    'right',
    'right',
  ]);
}

/** Which probe set the roofline, per thread setting and size. */
export function rooflineWinnersTable(results: readonly Result[]): string {
  const winners = rooflineWinners(results);
  const sizes = [...new Set(results.map((r) => r.size))].sort((a, b) => a - b);
  const rows = [...winners.entries()]
    .sort(([a], [b]) => a - b)
    .map(([threads, bySize]) => [
      threads === 1 ? '1 thread' : `${threads} threads`,
      ...sizes.map((size) => (bySize.get(size) ?? '-').replace(/^probe: /, '')),
    ]);
  return table(['fastest probe', ...sizes.map(formatSize)], rows);
}

/** Issue 10's rows: measured, target, met or missed. */
export function issue10Table(targets: readonly TargetResult[]): string {
  const rows = targets
    .filter((t) => t.issue === 10)
    .map((t) => [
      t.name,
      t.where,
      t.measured === undefined ? '-' : `${t.measured.toFixed(2)}x`,
      `>= ${t.threshold.toFixed(2)}x`,
      t.met === undefined ? 'not measured' : t.met ? 'met' : 'missed',
    ]);
  return table(['row', 'where (medians)', 'measured', 'target', 'result'], rows, [
    'left',
    'left',
    'right',
    'right',
    'left',
  ]);
}

export function callOverheadTable(results: readonly Result[]): string {
  const rows = results.map((r) => {
    const timing = r.timing;
    const t = r.throughput;
    if (t === undefined || timing === undefined) return [r.contender.label, String(r.size), '-'];
    return [
      r.contender.label,
      String(r.size),
      seconds(timing.medianSeconds),
      `${seconds(timing.minSeconds)}-${seconds(timing.maxSeconds)}`,
      mparams(t.mparamsPerSecond),
    ];
  });
  return table(['call', 'params', 'time/step', 'min-max', 'Mparams/s'], rows, [
    'left',
    'right',
    'right',
    'right',
    'right',
  ]);
}

/**
 * The few numbers a reader wants first, as sentences (the README quotes them): the best kernel at
 * 64K and 16M on each thread setting with its fraction of the roofline, the 4K call from
 * JavaScript, and the peers at 16M.
 */
export function headlines(results: BenchResults): string[] {
  const { throughput, callOverhead } = results;
  const best = results.machine.kernels[0] ?? '';
  const out: string[] = [];
  const threadCounts = [...new Set(throughput.map((r) => r.contender.threads))].sort(
    (a, b) => a - b,
  );
  for (const size of [64 * 1024, 16 * 1024 * 1024, 64 * 1024 * 1024]) {
    const parts = threadCounts.flatMap((threads) => {
      const r = findResult(throughput, `simd-adamw/${best}/t${threads}`, size);
      if (r?.throughput === undefined) return [];
      const fraction =
        r.fractionOfRoofline === undefined
          ? ''
          : `, ${r.fractionOfRoofline.toFixed(2)}x the roofline`;
      return [
        `${mparams(r.throughput.mparamsPerSecond)} Mparams/s (${r.throughput.gbPerSecond.toFixed(1)} GB/s${fraction}) on ${threads === 1 ? '1 thread' : `${threads} threads`}`,
      ];
    });
    if (parts.length > 0) out.push(`${formatSize(size)} params, ${best}: ${parts.join('; ')}.`);
  }
  const call = findResult(callOverhead, 'call/class/t1', 4096);
  if (call?.throughput !== undefined && call.timing !== undefined) {
    out.push(
      `4K params through AdamW.step() from JavaScript, 1 thread: ${seconds(call.timing.medianSeconds)} per step, ` +
        `${mparams(call.throughput.mparamsPerSecond)} Mparams/s including the call.`,
    );
  }
  for (const size of [4 * 1024, 64 * 1024]) {
    const ours = findResult(throughput, `simd-adamw/${best}/t1`, size)?.throughput;
    const loop = findResult(throughput, 'c-loop/t1', size)?.throughput;
    if (ours !== undefined && loop !== undefined) {
      out.push(
        `${formatSize(size)} params, 1 thread: AdamW.step() from JavaScript ${mparams(ours.mparamsPerSecond)} Mparams/s, ` +
          `${(ours.mparamsPerSecond / loop.mparamsPerSecond).toFixed(2)}x the plain C loop (${mparams(loop.mparamsPerSecond)} Mparams/s, no call).`,
      );
    }
  }
  const many = findResult(results.manyTensors, 'many-tensors/many/t1')?.throughput;
  const oneBig = findResult(results.manyTensors, 'many-tensors/one/t1')?.throughput;
  if (many !== undefined && oneBig !== undefined) {
    out.push(
      `1,024 tensors of 1,024 through AdamW.step(), 1 thread: ${mparams(many.mparamsPerSecond)} Mparams/s, ` +
        `${(many.mparamsPerSecond / oneBig.mparamsPerSecond).toFixed(2)}x one tensor of 1M.`,
    );
  }
  const kernel16M = findResult(throughput, `simd-adamw/${best}/t1`, 16 * 1024 * 1024)?.throughput;
  if (kernel16M !== undefined) {
    const peers: [string, string][] = [
      ['the plain JS loop', 'peer/plain-js/t1'],
      ['tfjs tf.train.adam (cpu backend)', 'peer/tfjs/t1'],
    ];
    const versus = peers.flatMap(([label, id]) => {
      const peer = findResult(throughput, id, 16 * 1024 * 1024)?.throughput;
      return peer === undefined
        ? []
        : [`${(kernel16M.mparamsPerSecond / peer.mparamsPerSecond).toFixed(1)}x ${label}`];
    });
    if (versus.length > 0) out.push(`At 16M params on 1 thread: ${versus.join(', ')}.`);
  }
  return out;
}

/** Issue 12: one row per state configuration, size and thread count. */
export function leanStateTable(rows: readonly LeanRow[]): string {
  const ratio = (value: number | undefined): string =>
    value === undefined ? '-' : `${value.toFixed(2)}x`;
  return table(
    [
      'size',
      'threads',
      'state, grads',
      'bytes/param',
      'Mparams/s',
      'GB/s',
      'vs float32 step',
      'roofline Mparams/s',
      'vs roofline',
      'roofline probe',
    ],
    rows.map((r) => [
      formatSize(r.size),
      String(r.threads),
      r.label,
      r.bytesPerParam.toFixed(r.bytesPerParam % 1 === 0 ? 0 : 2),
      r.mparamsPerSecond === undefined ? (r.skipped ?? '-') : mparams(r.mparamsPerSecond),
      r.gbPerSecond === undefined ? '-' : r.gbPerSecond.toFixed(1),
      ratio(r.versusFloat32),
      r.rooflineMparamsPerSecond === undefined ? '-' : mparams(r.rooflineMparamsPerSecond),
      ratio(r.fractionOfRoofline),
      r.rooflineProbe ?? '-',
    ]),
    ['right', 'right', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'left'],
  );
}

function bytes(value: number): string {
  return value.toFixed(value % 1 === 0 ? 0 : value < 0.1 ? 4 : 2);
}

const ratioOrDash = (value: number | undefined): string =>
  value === undefined ? '-' : `${value.toFixed(2)}x`;

/** Issue 13: configurations (and thread settings) down, sizes across, "Mparams/s (x AdamW)". */
export function leanOptimizersMatrix(rows: readonly LeanOptimizerRow[]): string {
  const sizes = [...new Set(rows.map((r) => r.size))].sort((a, b) => a - b);
  const showThreads = new Set(rows.map((r) => r.threads)).size > 1;
  const keys = [...new Set(rows.map((r) => `${r.threads}/${r.config}`))];
  const body = keys.map((key) => {
    const mine = rows.filter((r) => `${r.threads}/${r.config}` === key);
    const first = mine.at(0);
    const name =
      first === undefined ? key : `${first.label}${showThreads ? `, ${first.threads}T` : ''}`;
    return [
      name,
      first === undefined ? '' : bytes(first.bytesPerParam),
      ...sizes.map((size) => {
        const r = mine.find((m) => m.size === size);
        if (r?.mparamsPerSecond === undefined) return r?.skipped === undefined ? '-' : 'skipped';
        const versus =
          r.config === 'adamw' || r.versusAdamw === undefined
            ? ''
            : ` (${r.versusAdamw.toFixed(2)}x)`;
        return `${mparams(r.mparamsPerSecond)}${versus}`;
      }),
    ];
  });
  return table(['Mparams/s (x AdamW)', 'bytes/param', ...sizes.map(formatSize)], body, [
    'left',
    'right',
    ...sizes.map((): Align => 'right'),
  ]);
}

/** Issue 13: each Lion state dtype's step against the fastest probe of its own traffic. */
export function lionRooflineTable(rows: readonly LeanOptimizerRow[]): string {
  return table(
    [
      'size',
      'threads',
      'Lion state',
      'bytes/param',
      'Mparams/s',
      'GB/s',
      'roofline Mparams/s',
      'vs roofline',
      'roofline probe',
    ],
    rows
      .filter((r) => r.rooflineMparamsPerSecond !== undefined || r.config.startsWith('lion'))
      .map((r) => [
        formatSize(r.size),
        String(r.threads),
        r.label.replace(/^Lion, /, ''),
        bytes(r.bytesPerParam),
        r.mparamsPerSecond === undefined ? (r.skipped ?? '-') : mparams(r.mparamsPerSecond),
        r.gbPerSecond === undefined ? '-' : r.gbPerSecond.toFixed(1),
        r.rooflineMparamsPerSecond === undefined ? '-' : mparams(r.rooflineMparamsPerSecond),
        ratioOrDash(r.fractionOfRoofline),
        (r.rooflineProbe ?? '-').replace(/^probe: /, '').replace(/, Lion, .*$/, ''),
      ]),
    ['right', 'right', 'left', 'right', 'right', 'right', 'right', 'right', 'left'],
  );
}

/** Issue 13: what each configuration moves per step and keeps per param (at the largest size). */
export function leanOptimizerTrafficTable(rows: readonly LeanOptimizerRow[]): string {
  const largest = Math.max(...rows.map((r) => r.size));
  const seen = new Set<string>();
  const body: string[][] = [];
  for (const r of rows) {
    if (seen.has(r.config)) continue;
    seen.add(r.config);
    const atLargest = rows.find((x) => x.config === r.config && x.size === largest);
    const state = atLargest?.stateBytesPerParam;
    body.push([
      r.label,
      String(r.passes),
      r.traffic,
      bytes(r.bytesPerParam),
      state === undefined ? '-' : bytes(state),
    ]);
  }
  return table(
    [
      'configuration',
      'passes',
      'per step (p param, g grad, m/v moments)',
      'bytes/param moved',
      `state bytes/param at ${formatSize(largest)}`,
    ],
    body,
    ['left', 'right', 'left', 'right', 'right'],
  );
}

/** Issue 13: the model-shaped step per optimizer. */
export function leanModelTable(rows: readonly LeanModelRow[]): string {
  const showThreads = new Set(rows.map((r) => r.threads)).size > 1;
  return table(
    [
      'step',
      'time/step (min-max)',
      'Mparams/s',
      'bytes/param',
      'GB/s',
      'state bytes/param',
      'vs AdamW',
    ],
    rows.map((r) => [
      `${r.optimizer}.step()${showThreads ? `, ${r.threads}T` : ''}`,
      r.medianSeconds === undefined || r.minSeconds === undefined || r.maxSeconds === undefined
        ? (r.skipped ?? '-')
        : `${seconds(r.medianSeconds)} (${seconds(r.minSeconds)}-${seconds(r.maxSeconds)})`,
      r.mparamsPerSecond === undefined ? '-' : mparams(r.mparamsPerSecond),
      bytes(r.bytesPerParam),
      r.gbPerSecond === undefined ? '-' : r.gbPerSecond.toFixed(1),
      r.stateBytesPerParam === undefined ? '-' : bytes(r.stateBytesPerParam),
      r.optimizer === 'AdamW' ? '' : ratioOrDash(r.versusAdamw),
    ]),
    ['left', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
}

/** Issue 14: applyGradients per optimizer on the MLP, its share of a train step, the ratio. */
export function tfjsTable(rows: readonly TfjsRow[]): string {
  return table(
    [
      'optimizer',
      'threads',
      'applyGradients (min-max)',
      'train step',
      'optimizer share',
      'tf.train.adam / this',
    ],
    rows.map((r) => [
      r.optimizer,
      String(r.threads),
      r.applySeconds === undefined
        ? (r.skipped ?? '-')
        : `${seconds(r.applySeconds.median)} (${seconds(r.applySeconds.min)}-${seconds(r.applySeconds.max)})`,
      r.trainStepSeconds === undefined ? '' : seconds(r.trainStepSeconds),
      r.optimizerShare === undefined ? '' : `${(r.optimizerShare * 100).toFixed(1)}%`,
      r.versusAdam === undefined ? '' : `${r.versusAdam.toFixed(0)}x`,
    ]),
    ['left', 'right', 'right', 'right', 'right', 'right'],
  );
}

/** What the tfjs question measured, in one paragraph (terminal and RESULTS.md). */
function tfjsDescription(results: BenchResults): string {
  const tfjs = results.tfjs;
  if (tfjs === undefined) return '';
  return (
    `TensorFlow.js ${tfjs.version}, cpu backend; an MLP 784-512-256-10 (${tfjs.model.variables} ` +
    `variables, ${tfjs.model.params.toLocaleString('en-US')} parameters), every optimizer fed the ` +
    'same gradients (bench/tfjs.ts). applyGradients: one call over all variables; train step: ' +
    `optimizer.minimize over a batch of ${tfjs.model.batchSize} (forward, gradients, ` +
    'applyGradients), as model.fit runs it per batch. Medians of interleaved samples.'
  );
}

export function targetsTable(targets: readonly TargetResult[]): string {
  return table(
    ['issue', 'target', 'where', 'result'],
    targets.map((t) => [`#${t.issue}`, t.name, t.where, describeTarget(t)]),
  );
}

export function machineTable(results: BenchResults): string {
  const { machine: m, run } = results;
  return table(
    ['', ''],
    [
      ['machine', m.name],
      ['CPU', `${m.cpuModel} (${m.cpuFamilyModel})`],
      ['SIMD flags', m.cpuFlags],
      ['caches', m.caches],
      ['CPUs, memory', `${m.logicalCpus} logical CPUs, ${m.memoryGiB} GiB`],
      ['OS', m.os],
      ['Node.js', m.node],
      ['compiler', m.compiler],
      ['kernels available', m.kernels.join(', ')],
      ['commit', m.gitCommit],
      ['date', run.date],
      ['command', `\`${run.command}\``],
      ['duration', `${run.durationSeconds.toFixed(0)} s`],
      [
        'load average (1 min)',
        `${run.loadAverageBefore.toFixed(2)} before, ${run.loadAverageAfter.toFixed(2)} after`,
      ],
      ['samples', `up to ${run.samplesPerContender} per contender and size, interleaved`],
    ],
  );
}

/** The text printed at the end of a run. */
export function terminalReport(results: BenchResults): string {
  const parts: string[] = [];
  if (results.throughput.length > 0) {
    parts.push('Throughput', throughputMatrix(results.throughput));
  }
  if (results.modelStep.length > 0)
    parts.push('Model-shaped step', modelStepTable(results.modelStep));
  if (results.manyTensors.length > 0) {
    parts.push('Many small tensors', manyTensorsTable(results.manyTensors));
  }
  if (results.callOverhead.length > 0) {
    parts.push('Call overhead', callOverheadTable(results.callOverhead));
  }
  if (results.throughput.length > 0) {
    parts.push('Fastest probe (the roofline)', rooflineWinnersTable(results.throughput));
  }
  if (results.leanState !== undefined && results.leanState.rows.length > 0) {
    parts.push('Lean optimizer state (issue 12)', leanStateTable(results.leanState.rows));
  }
  const optimizers = results.leanOptimizers;
  if (optimizers !== undefined && optimizers.rows.length > 0) {
    parts.push(
      'Lion, Adafactor, CAME beside AdamW (issue 13)',
      leanOptimizersMatrix(optimizers.rows),
      'Lion against its own roofline',
      lionRooflineTable(optimizers.rows),
      'Bytes per param',
      leanOptimizerTrafficTable(optimizers.rows),
    );
  }
  if (optimizers !== undefined && optimizers.modelRows.length > 0) {
    parts.push('Model-shaped step per optimizer', leanModelTable(optimizers.modelRows));
  }
  if (results.tfjs !== undefined && results.tfjs.rows.length > 0) {
    parts.push(
      'TensorFlow.js adapter (issue 14)',
      `${tfjsDescription(results)}\n\n${tfjsTable(results.tfjs.rows)}`,
    );
  }
  parts.push('Issue 10 rows', issue10Table(results.targets));
  parts.push('Targets', targetsTable(results.targets));
  const lines = headlines(results);
  if (lines.length > 0) parts.push('Headline numbers', lines.map((line) => `- ${line}`).join('\n'));
  if (results.notes.length > 0) parts.push('Notes', results.notes.map((n) => `- ${n}`).join('\n'));
  return parts.join('\n\n');
}

export interface ChartLinks {
  readonly throughput?: string;
  readonly fraction?: string;
}

/** RESULTS.md's issue 13 section: the configurations beside AdamW, Lion against its roofline,
 * the bytes behind the GB/s, and the model-shaped step. */
function leanOptimizersSection(results: BenchResults): string[] {
  const optimizers = results.leanOptimizers;
  if (optimizers === undefined) return [];
  const lines: string[] = ['## Lion, Adafactor and CAME beside AdamW (issue 13)', ''];
  if (optimizers.rows.length > 0) {
    lines.push(
      'One tensor per configuration, `step()` of its class per step (bench/lean-optimizers.ts), ' +
        "all configurations and Lion's probes interleaved at each size in this run. Adafactor " +
        'and CAME are measured on a square-ish matrix (factored second moment) and on a 1-D ' +
        'tensor (full second moment). Each cell: median Mparams/s and, in brackets, the ratio to ' +
        "AdamW's step at the same size and thread setting.",
      '',
      leanOptimizersMatrix(optimizers.rows),
      '',
      "Lion against the fastest probe that moves its step's bytes (read p, g, m; write p, m; " +
        "six loop shapes of native/bench/lean-probes.cc on the optimizer's own arrays). The step " +
        'is timed from JavaScript, one call per step, and the probes carry no call, so at small ' +
        "sizes the ratio includes the call. Issue 13's target is at DRAM sizes:",
      '',
      lionRooflineTable(optimizers.rows),
      '',
      targetsTable(results.targets.filter((t) => t.issue === 13)),
      '',
      'Bytes per param: what one step reads and writes, summed over its passes over the data ' +
        '(native/ops/adafactor.h and came.h say why each pass is needed; the factored row and ' +
        'column state, R + C floats, left out). At DRAM sizes each pass streams from memory, so ' +
        'Mparams/s times bytes/param is the memory traffic (the GB/s above); in cache, the ' +
        'repeated reads of the gradient hit the cache. State bytes/param is `memory().state` over ' +
        'the param count.',
      '',
      leanOptimizerTrafficTable(optimizers.rows),
      '',
    );
  }
  if (optimizers.modelRows.length > 0) {
    const shape = optimizers.modelShape;
    lines.push(
      '### Model-shaped step per optimizer',
      '',
      `The small GPT-style transformer of bench/model-step.ts: ${shape.tensors} tensors, ` +
        `${(shape.params / 1e6).toFixed(1)}M parameters, ${shape.factored} of them 2-D (factored by ` +
        "Adafactor and CAME, which are given each param's `shape`; the biases and norms keep a " +
        'full second moment). One `step()` over all of them, each optimizer with its own copy of ' +
        'the values; bytes/param weighted by tensor size.',
      '',
      leanModelTable(optimizers.modelRows),
      '',
    );
  }
  return lines;
}

/** bench/RESULTS.md. */
export function resultsMarkdown(results: BenchResults, charts: ChartLinks): string {
  const { run } = results;
  const lines: string[] = [
    '# Benchmark results',
    '',
    '<!-- Generated by `npm run bench` (bench/report.ts) from one run; do not edit by hand. -->',
    '',
    `The latest ${run.mode} run of \`${run.command}\`. Every number below was measured in this ` +
      'run, with the contenders interleaved so that drift on this shared machine hits all of them ' +
      'alike (bench/measure.ts); medians are shown, spreads are in the detail table. One parameter ' +
      'is one float32 element of param, grad, expAvg and expAvgSq: 28 bytes of memory traffic per ' +
      'step. The roofline is the fastest of eleven probes of the bench-only addon ' +
      '(native/bench/roofline-probes.cc): the same traffic with trivial arithmetic, in the same ' +
      'run, on the same arrays, split across threads as the step is; no contender may beat it ' +
      'beyond noise. The plain C AdamW loop (native/bench/c-loop.cc) is the same arithmetic as ' +
      'the kernel, compiled for this machine.',
    '',
    '## Machine and run',
    '',
    machineTable(results),
    '',
    `Machine: ${results.machine.name}.`,
    '',
    '## Headline numbers',
    '',
    ...headlines(results).map((line) => `- ${line}`),
    '',
    '## Against the plain C loop and the roofline (issue 10)',
    '',
    'Measured from JavaScript through `AdamW.step()`, 1 thread, interleaved with the plain C loop ' +
      'and the probes in the same run; the C loop and the probes have no per-call cost.',
    '',
    issue10Table(results.targets),
    '',
    '## Targets',
    '',
    targetsTable(results.targets),
    '',
  ];
  if (results.throughput.length > 0) {
    lines.push('## Throughput by tensor size', '');
    if (charts.throughput !== undefined) {
      lines.push(`![Throughput by tensor size](${charts.throughput})`, '');
    }
    lines.push(throughputMatrix(results.throughput), '');
    if (charts.fraction !== undefined) {
      lines.push(`![simd-adamw as a fraction of the roofline](${charts.fraction})`, '');
    }
  }
  if (results.modelStep.length > 0) {
    const shape = results.modelShape;
    lines.push(
      '## Model-shaped step',
      '',
      shape === undefined
        ? ''
        : `The parameters of a small GPT-style transformer (bench/model-step.ts): ${shape.tensors} ` +
            `tensors, ${(shape.params / 1e6).toFixed(1)}M parameters, ${shape.small} of the tensors ` +
            'with at most 2048 elements; one AdamW.step() against one tensor of the same total size.',
      '',
      modelStepTable(results.modelStep),
      '',
    );
  }
  if (results.leanState !== undefined && results.leanState.rows.length > 0) {
    lines.push(
      '## Lean optimizer state (issue 12)',
      '',
      'One tensor, `AdamW.step()` per step, for each state dtype and for bf16 gradients ' +
        '(bench/lean-state.ts), against the float32-state step and against the fastest probe ' +
        'that moves the same bytes per param (the float32 probes of the throughput question for ' +
        'float32 state, native/bench/lean-probes.cc for the others), all interleaved in this run.',
      '',
      leanStateTable(results.leanState.rows),
      '',
    );
  }
  lines.push(...leanOptimizersSection(results));
  if (results.tfjs !== undefined && results.tfjs.rows.length > 0) {
    lines.push(
      '## TensorFlow.js adapter (issue 14)',
      '',
      `${tfjsDescription(results)} The whole training run, with the loss curves, is ` +
        '`npm run example` (docs/tensorflow.md, "Example: training a tfjs-layers model").',
      '',
      tfjsTable(results.tfjs.rows),
      '',
    );
  }
  if (results.throughput.length > 0) {
    lines.push('## Which probe set the roofline', '', rooflineWinnersTable(results.throughput), '');
  }
  if (results.manyTensors.length > 0) {
    lines.push(
      '## Many small tensors',
      '',
      '1,024 tensors of 1,024 elements against one tensor of 1M (bench/many-tensors.ts): the same ' +
        'parameters and bytes, one AdamW.step() call each.',
      '',
      manyTensorsTable(results.manyTensors),
      '',
    );
  }
  if (results.callOverhead.length > 0) {
    lines.push('## Call overhead', '', callOverheadTable(results.callOverhead), '');
  }
  if (results.throughput.length > 0) {
    lines.push('## Detail', '', throughputDetail(results.throughput), '');
  }
  if (results.notes.length > 0) {
    lines.push('## Notes', '', ...results.notes.map((n) => `- ${n}`), '');
  }
  return lines.join('\n');
}
