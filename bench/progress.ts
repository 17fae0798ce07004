// A progress bar for the long runs, on stderr so that stdout keeps only the report. Off when stderr
// is not a terminal or under CI; then each section prints one line when it starts.
import { Presets, SingleBar } from 'cli-progress';

export interface Progress {
  /** A new section of the run (e.g. "throughput 16M"). */
  section(name: string): void;
  /** One planned sample slot done. */
  tick(contender: string): void;
  stop(): void;
}

function underCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
}

export function createProgress(total: number): Progress {
  if (!process.stderr.isTTY || underCi()) {
    return {
      section: (name) => {
        process.stderr.write(`bench: ${name}\n`);
      },
      tick: () => undefined,
      stop: () => undefined,
    };
  }
  const bar = new SingleBar(
    {
      stream: process.stderr,
      format: '{bar} {percentage}% | {value}/{total} samples | ETA {eta_formatted} | {task}',
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 100,
    },
    Presets.shades_classic,
  );
  let section = '';
  bar.start(total, 0, { task: '' });
  return {
    section: (name) => {
      section = name;
      bar.update({ task: section });
    },
    tick: (contender) => {
      bar.increment(1, { task: `${section}: ${contender}` });
    },
    stop: () => {
      bar.stop();
    },
  };
}
