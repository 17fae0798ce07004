// Which SIMD kernel runs, and how to force one.
//
// The addon picks the best kernel this CPU and OS support when it loads. SIMD_ADAMW_ISA in the
// environment (read once, when this module loads) or backend.setIsa() forces another one, as
// PyTorch's ATEN_CPU_CAPABILITY does. Every kernel gives bitwise the same results; forcing one is
// for testing and benchmarking.
import { native } from './native';
import { typeError } from './errors';

/** The kernel names this package can be built with, best first (`Backend.compiled` says which this binary has). */
export type IsaName = 'avx512' | 'avx2' | 'sse2' | 'neon' | 'scalar';

export interface Backend {
  /** The kernel in use, e.g. 'avx512'. */
  readonly isa: string;
  /** The kernels this CPU can run, best first. */
  readonly available: readonly string[];
  /** The kernels compiled into this binary, best first (some may not run on this CPU). */
  readonly compiled: readonly string[];
  /** Switches to the named kernel. RangeError if it is unknown or this CPU cannot run it. */
  setIsa(name: string): void;
}

const compiled: readonly string[] = Object.freeze(native.compiledIsas());
const available: readonly string[] = Object.freeze(native.availableIsas());

function setIsa(name: string, source = 'name'): void {
  if (typeof name !== 'string') throw typeError(source, 'a string', name);
  if (!native.setIsa(name)) {
    const why = compiled.includes(name)
      ? 'this CPU cannot run it'
      : 'it is not a kernel of this build';
    throw new RangeError(
      `Expected one of ${available.join(', ')} for ${source} but received '${name}' (${why})`,
    );
  }
}

const forced = process.env.SIMD_ADAMW_ISA;
if (forced !== undefined && forced !== '') setIsa(forced, 'SIMD_ADAMW_ISA');

export const backend: Backend = Object.freeze({
  get isa(): string {
    return native.activeIsa();
  },
  available,
  compiled,
  setIsa: (name: string) => {
    setIsa(name);
  },
});
