// Reference agreement for Lion, Adafactor and CAME: every case of test/fixtures/golden-lean (the
// reference implementations themselves under PyTorch) through the public API, within the README's
// tolerance at both checkpoints for every quantity and with state(p).step == t after every step,
// on every kernel this CPU can run and with 1, 2 and 3 threads; and every kernel and thread count
// gives the same bits. Only float32 state is held to the tolerance: the golden set is float32
// (Lion's bf16 / blockwise8 state is tested against its own rounding rules elsewhere).
// test/golden-lean-helpers.test.ts shows that this harness fails wrong implementations.
import { Adafactor, backend, CAME, Lion, type Param } from '../lib';
import { firstBitDifference } from './helpers/bits';
import {
  type LeanGoldenCase,
  type LeanGoldenSubject,
  type LeanSubjectState,
  loadLeanGoldenManifest,
  runLeanGoldenCase,
} from './helpers/golden-lean';

const manifest = loadLeanGoldenManifest();
const THREADS = [1, 2, 3] as const;

const initialIsa = backend.isa;
afterAll(() => backend.setIsa(initialIsa));

type LeanOptimizer = Lion | Adafactor | CAME;

/** The case's optimizer from its api_options (the library's option names), as the README's loop
 * builds it: the first step's lr, and `threads`. */
function createOptimizer(c: LeanGoldenCase, param: Param, threads: number): LeanOptimizer {
  switch (c.optimizer) {
    case 'lion': {
      const lr = c.lr_per_step?.[0] ?? c.api_options.lr;
      return new Lion([param], { ...c.api_options, lr, threads });
    }
    case 'adafactor': {
      const lr = c.lr_per_step?.[0] ?? c.api_options.lr;
      return new Adafactor([param], { ...c.api_options, lr, threads });
    }
    case 'came': {
      const lr = c.lr_per_step?.[0] ?? c.api_options.lr;
      return new CAME([param], { ...c.api_options, lr, threads });
    }
  }
}

/** The library behind the harness: one optimizer for the whole run, each step's gradient a new
 * view into the step-major buffer, the lr set through paramGroups[0].lr when it changes. */
function librarySubject(
  c: LeanGoldenCase,
  params0: Float32Array,
  threads: number,
): LeanGoldenSubject {
  const param: Param = { data: params0, grad: new Float32Array(c.n), shape: c.shape };
  const optimizer = createOptimizer(c, param, threads);
  return {
    step(grad, _t, lr) {
      param.grad = grad;
      if (c.lr_per_step !== undefined && lr !== null) optimizer.paramGroups[0]!.lr = lr;
      optimizer.step();
    },
    params: () => param.data,
    state: () => optimizer.state(param) as unknown as LeanSubjectState,
  };
}

// Final bits of every (case, kernel, thread count), to compare across kernels once all have run.
const finalBits = new Map<string, Map<string, Uint32Array[]>>();

describe.each(backend.available.map((isa) => [isa]))('lean golden vectors on %s', (isa) => {
  beforeAll(() => backend.setIsa(isa));

  test.each(manifest.cases.map((c) => [c.name, c] as const))(
    '%s: threads 1, 2, 3 within tolerance and bitwise equal',
    (name, c) => {
      const runs = new Map<string, Uint32Array[]>();
      for (const threads of THREADS) {
        const result = runLeanGoldenCase(c, (params0) => librarySubject(c, params0, threads));
        expect({
          threads,
          worst: result.worst <= 1 ? 'within tolerance' : result.worst,
          where: result.where,
        }).toEqual({ threads, worst: 'within tolerance', where: result.where });
        runs.set(`${isa} threads=${threads}`, result.finalBits);
      }
      const [first, ...others] = [...runs.values()];
      for (const other of others) expect(firstBitDifference(other, first!)).toBeNull();
      const byRun = finalBits.get(name) ?? new Map<string, Uint32Array[]>();
      for (const [run, bits] of runs) byRun.set(run, bits);
      finalBits.set(name, byRun);
    },
  );
});

describe('every kernel and thread count gives the same bits', () => {
  test.each(manifest.cases.map((c) => [c.name] as const))('%s', (name) => {
    const byRun = finalBits.get(name);
    // Every kernel's run above stored its bits; a missing one failed there.
    expect(byRun?.size).toBe(backend.available.length * THREADS.length);
    const [[firstRun, first], ...others] = [...byRun!.entries()];
    for (const [run, bits] of others) {
      expect({ run, against: firstRun, difference: firstBitDifference(bits, first) }).toEqual({
        run,
        against: firstRun,
        difference: null,
      });
    }
  });
});
