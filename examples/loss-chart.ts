// The example's loss curve: training loss per step of each run (faint) with its moving average
// (solid for the first run, dashed for the second), and the held-out loss after each epoch
// (points), as SVG. Specified in Vega-Lite and rendered headless by Vega, as the bench's charts
// are (bench/chart.ts).

/** One point of a run's curve. */
export interface LossPoint {
  readonly run: string;
  readonly step: number;
  readonly loss: number;
  readonly kind: 'training (per batch)' | 'held-out (per epoch)';
}

// The parts of vega and vega-lite used here. Both are ES modules with top-level await, which
// require() cannot load; import() with a specifier held in a variable stays an import() in the
// CommonJS output and keeps TypeScript from reading their .d.ts files (which need the DOM types).
interface VegaLite {
  compile(spec: object): { spec: object };
}
interface Vega {
  parse(spec: object): object;
  View: new (
    runtime: object,
    options: { renderer: 'none' },
  ) => { toSVG(): Promise<string>; finalize(): void };
}

async function importModule<T>(name: string): Promise<T> {
  return (await import(name)) as T;
}

/** The chart as an SVG document (`subtitle`: one entry per line); `smoothing` is the moving
 * average's window, in steps. */
export async function lossChartSvg(
  points: readonly LossPoint[],
  title: string,
  subtitle: readonly string[],
  smoothing: number,
): Promise<string> {
  const color = {
    field: 'run',
    type: 'nominal',
    title: null,
    legend: { orient: 'bottom', symbolOpacity: 1, symbolStrokeWidth: 3 },
  };
  const x = { field: 'step', type: 'quantitative', title: 'optimizer step' };
  const y = {
    field: 'loss',
    type: 'quantitative',
    title: 'cross-entropy loss (log scale)',
    scale: { type: 'log' },
  };
  const dash = {
    field: 'run',
    type: 'nominal',
    scale: {
      range: [
        [1, 0],
        [6, 4],
      ],
    },
  };
  const training = { filter: "datum.kind === 'training (per batch)'" };
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle },
    width: 560,
    height: 320,
    data: { values: points },
    layer: [
      {
        transform: [training],
        mark: { type: 'line', strokeWidth: 1, opacity: 0.25 },
        encoding: { x, y, color },
      },
      {
        transform: [
          training,
          {
            window: [{ op: 'mean', field: 'loss', as: 'smoothed' }],
            frame: [-(smoothing - 1), 0],
            groupby: ['run'],
            sort: [{ field: 'step' }],
          },
        ],
        mark: { type: 'line', strokeWidth: 2 },
        // Dashed from the second run on: runs that nearly coincide stay visible.
        encoding: { x, y: { ...y, field: 'smoothed' }, color, strokeDash: dash },
      },
      {
        transform: [{ filter: "datum.kind === 'held-out (per epoch)'" }],
        mark: { type: 'point', filled: true, size: 70, shape: 'diamond' },
        encoding: { x, y, color },
      },
    ],
  };
  const vegaLite = await importModule<VegaLite>('vega-lite');
  const vega = await importModule<Vega>('vega');
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
