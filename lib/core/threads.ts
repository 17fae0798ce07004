// The `threads` option: how many threads one step may use.
//
// The default is every core this process may use (os.availableParallelism()). A step never uses
// more threads than its size warrants: below about 16K elements per thread the addon stays on the
// calling thread (native/runner.h), so a high setting never makes small steps slower.
import * as os from 'node:os';

import { native } from './native';
import { checkNumber } from './checks';
import { rangeError } from './errors';

// Read once: os.availableParallelism() asks the OS each time, which cost about a microsecond per
// adamwStep call (a 4K-element step itself takes about two).
const DEFAULT_THREADS = Math.min(os.availableParallelism(), native.MAX_THREADS);

export function defaultThreads(): number {
  return DEFAULT_THREADS;
}

/** An integer in [1, MAX_THREADS] (256). */
export function checkThreads(name: string, value: unknown): number {
  const n = checkNumber(name, value);
  if (!Number.isInteger(n) || n < 1 || n > native.MAX_THREADS) {
    throw rangeError(name, `an integer from 1 to ${native.MAX_THREADS}`, value);
  }
  return n;
}
