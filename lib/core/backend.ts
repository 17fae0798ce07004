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
  readonly isa: IsaName;
  /** The kernels this CPU can run, best first. */
  readonly available: readonly IsaName[];
  /** The kernels compiled into this binary, best first (some may not run on this CPU). */
  readonly compiled: readonly IsaName[];
  /** Switches to the named kernel. RangeError if this build has no such kernel or this CPU
   * cannot run it (checked at run time too: a name from SIMD_ADAMW_ISA or JavaScript is any
   * string). */
  setIsa(name: IsaName): void;
}

// The addon reports its names as strings; they are the public names of native/simd/isa-list.h,
// which IsaName lists (test/backend.test.ts checks the two agree).
const compiled = Object.freeze(native.compiledIsas()) as readonly IsaName[];
const available = Object.freeze(native.availableIsas()) as readonly IsaName[];

function setIsa(name: string, source = 'name'): void {
  if (typeof name !== 'string') throw typeError(source, 'a string', name);
  if (!native.setIsa(name)) {
    const why = (compiled as readonly string[]).includes(name)
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
  get isa(): IsaName {
    return native.activeIsa() as IsaName;
  },
  available,
  compiled,
  setIsa: (name: IsaName) => {
    setIsa(name);
  },
});
