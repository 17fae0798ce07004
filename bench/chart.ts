// The charts: throughput against size per contender with the roofline drawn, and the step's
// fraction of the roofline. Specified in Vega-Lite, rendered to SVG headless by Vega (no browser,
// no canvas: Vega estimates text widths), so the figure is data plus a spec, not hand-made SVG.
import { formatSize } from './data';
import { importModule } from './esm';
import type { Result } from './results';

// The parts of vega and vega-lite used here (see esm.ts for why they are declared locally).
interface VegaLite {
  compile(spec: object): { spec: object };
}
interface VegaView {
  toSVG(): Promise<string>;
  finalize(): void;
}
interface Vega {
  parse(spec: object): object;
  View: new (runtime: object, options: { renderer: 'none' }) => VegaView;
}

async function renderSvg(spec: object): Promise<string> {
  const vegaLite = await importModule<VegaLite>('vega-lite');
  const vega = await importModule<Vega>('vega');
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

interface Point {
  contender: string;
  family: string;
  threads: string;
  size: number;
  median: number;
  min: number;
  max: number;
  fraction: number | null;
}

// The roofline rows stand for the probes, which are not drawn themselves.
function points(results: readonly Result[]): Point[] {
  const out: Point[] = [];
  for (const r of results) {
    if (r.throughput === undefined || r.contender.family === 'probe') continue;
    out.push({
      contender: r.contender.label,
      family: r.contender.family,
      threads: r.contender.threads === 1 ? '1 thread' : `${r.contender.threads} threads`,
      size: r.size,
      median: r.throughput.mparamsPerSecond,
      min: r.throughput.mparamsPerSecondMin,
      max: r.throughput.mparamsPerSecondMax,
      fraction: r.fractionOfRoofline ?? null,
    });
  }
  return out;
}

// Roofline in black; everything else from a categorical palette, in first-seen order. Both charts
// build it from all the results, so a contender has the same colour in each.
function colorScale(
  all: readonly Point[],
  shown: readonly Point[],
): { domain: string[]; range: string[] } {
  const palette = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2'];
  const labels = [...new Set(all.map((p) => p.contender))];
  let next = 0;
  const colors = new Map(
    labels.map((label) => [
      label,
      all.find((p) => p.contender === label)?.family === 'roofline'
        ? '#000000'
        : (palette[next++ % palette.length] ?? '#7f7f7f'),
    ]),
  );
  const domain = labels.filter((label) => shown.some((p) => p.contender === label));
  return { domain, range: domain.map((label) => colors.get(label) ?? '#7f7f7f') };
}

function colorEncoding(all: readonly Point[], shown: readonly Point[]): object {
  const scale = colorScale(all, shown);
  return {
    field: 'contender',
    type: 'nominal',
    title: null,
    scale,
    sort: scale.domain,
    legend: { orient: 'bottom', columns: 2, labelLimit: 320 },
  };
}

function sizeAxis(data: readonly Point[]): object {
  const sizes = [...new Set(data.map((p) => p.size))].sort((a, b) => a - b);
  const labels = Object.fromEntries(sizes.map((s) => [String(s), formatSize(s)]));
  return {
    field: 'size',
    type: 'quantitative',
    title: 'parameters per tensor',
    scale: { type: 'log', base: 2, domain: [sizes[0] ?? 1, sizes[sizes.length - 1] ?? 2] },
    axis: { values: sizes, labelExpr: `${JSON.stringify(labels)}[datum.value + '']` },
  };
}

function facetOrSingle(data: readonly Point[], layers: object[], extra: object): object {
  const threadLabels = [...new Set(data.map((p) => p.threads))];
  const base = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', ...extra };
  const spec = { width: 420, height: 300, layer: layers };
  if (threadLabels.length <= 1) return { ...base, data: { values: data }, ...spec };
  return {
    ...base,
    data: { values: data },
    facet: { column: { field: 'threads', type: 'nominal', title: null, sort: threadLabels } },
    spec,
  };
}

/** Throughput (Mparams/s, log) against size, one line per contender, min-max bars, roofline dashed. */
export async function throughputChartSvg(
  results: readonly Result[],
  subtitle: string,
): Promise<string> {
  const data = points(results);
  const x = sizeAxis(data);
  const color = colorEncoding(data, data);
  const y = {
    field: 'median',
    type: 'quantitative',
    title: 'Mparams/s (log scale; 1 param = 28 bytes moved)',
    scale: { type: 'log' },
  };
  const dash = {
    field: 'family',
    type: 'nominal',
    legend: null,
    scale: {
      domain: ['roofline', 'simd-adamw', 'peer'],
      range: [
        [6, 4],
        [1, 0],
        [2, 2],
      ],
    },
  };
  return renderSvg(
    facetOrSingle(
      data,
      [
        { mark: { type: 'line', strokeWidth: 2 }, encoding: { x, y, color, strokeDash: dash } },
        { mark: { type: 'point', filled: true, size: 40 }, encoding: { x, y, color } },
        {
          mark: { type: 'rule', strokeWidth: 2 },
          encoding: { x, y: { ...y, field: 'min' }, y2: { field: 'max' }, color },
        },
      ],
      {
        title: {
          text: 'AdamW step throughput by tensor size (median of samples; bars: min-max)',
          subtitle,
        },
        resolve: { scale: { y: 'shared' } },
      },
    ),
  );
}

/** The simd-adamw kernels as a fraction of the same-run roofline, with the 0.95 target drawn. */
export async function rooflineFractionChartSvg(
  results: readonly Result[],
  subtitle: string,
  target: number,
): Promise<string> {
  const all = points(results);
  const data = all.filter((p) => p.family === 'simd-adamw' && p.fraction !== null);
  const x = sizeAxis(data);
  // Never clip a point: the axis reaches past the largest fraction measured.
  const top = Math.max(1.1, ...data.map((p) => (p.fraction ?? 0) * 1.05));
  return renderSvg(
    facetOrSingle(
      data,
      [
        {
          mark: { type: 'line', strokeWidth: 2, point: true },
          encoding: {
            x,
            y: {
              field: 'fraction',
              type: 'quantitative',
              title: 'fraction of the same-run roofline (median)',
              scale: { domain: [0, top] },
            },
            color: colorEncoding(all, data),
          },
        },
        {
          mark: { type: 'rule', strokeDash: [4, 4], color: '#d62728' },
          encoding: { y: { datum: target } },
        },
      ],
      {
        title: {
          text: `simd-adamw step / roofline (dashed: target ${target}x at >= 16M)`,
          subtitle,
        },
      },
    ),
  );
}
