// Kernel selection: backend.isa / available / compiled agree with each other and with the CPU,
// setIsa() switches between the available kernels and rejects anything else, and SIMD_ADAMW_ISA
// forces a kernel when the module loads (checked in child processes on the built package).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backend, type IsaName } from '../lib';
import { ensureDist, printBackendScript, runNode } from './helpers/child';

/** The kernels each architecture's build compiles, best first (CMakeLists.txt, native/dispatch.cc). */
const KERNELS_OF_ARCH: Record<string, string[]> = {
  x64: ['avx512', 'avx2', 'sse2', 'scalar'],
  arm64: ['neon', 'scalar'],
};

/** The kernels every CPU of the architecture runs (SSE2 is part of x86-64, NEON of AArch64). */
const BASELINE_OF_ARCH: Record<string, string[]> = {
  x64: ['sse2', 'scalar'],
  arm64: ['neon', 'scalar'],
};

const initialIsa = backend.isa;
afterAll(() => backend.setIsa(initialIsa));

describe('backend in this process', () => {
  test("compiled lists this architecture's kernels, best first", () => {
    expect(backend.compiled).toEqual(KERNELS_OF_ARCH[process.arch] ?? ['scalar']);
  });

  test('available is the compiled kernels this CPU runs, in the same order, baseline included', () => {
    expect(backend.available).toEqual(
      backend.compiled.filter((isa) => backend.available.includes(isa)),
    );
    const baseline = BASELINE_OF_ARCH[process.arch] ?? ['scalar'];
    expect(backend.available).toEqual(expect.arrayContaining(baseline));
  });

  test('available matches the CPU features in /proc/cpuinfo (Linux on x86-64)', () => {
    const isLinuxX64 = process.platform === 'linux' && process.arch === 'x64';
    const cpuinfo = isLinuxX64 ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
    // The kernel lists avx2/avx512f only when the OS saves their registers, as dispatch requires.
    const flags = new Set((/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '').trim().split(/\s+/));
    const expected = isLinuxX64
      ? ['avx512', 'avx2', 'sse2', 'scalar'].filter(
          (isa) =>
            isa === 'sse2' || isa === 'scalar' || flags.has(isa === 'avx512' ? 'avx512f' : isa),
        )
      : backend.available;
    expect(backend.available).toEqual(expected);
  });

  test('the lists are frozen', () => {
    expect([Object.isFrozen(backend.available), Object.isFrozen(backend.compiled)]).toEqual([
      true,
      true,
    ]);
  });

  test('IsaName is the public names of native/simd/isa-list.h, and the lists are typed with it', () => {
    // Record<IsaName, ...> needs exactly one key per name: tsc fails if IsaName gains or loses one.
    const everyName: Record<IsaName, true> = {
      avx512: true,
      avx2: true,
      sse2: true,
      neon: true,
      scalar: true,
    };
    const header = fs.readFileSync(
      path.join(__dirname, '..', 'native', 'simd', 'isa-list.h'),
      'utf8',
    );
    const listed = [...header.matchAll(/^ {2}X\(\w+, "(\w+)",/gm)].map((match) => match[1]);
    expect(listed).toEqual(Object.keys(everyName));

    const isa: IsaName = backend.isa;
    const available: readonly IsaName[] = backend.available;
    const compiled: readonly IsaName[] = backend.compiled;
    backend.setIsa('scalar');
    // @ts-expect-error not a kernel name
    expect(() => backend.setIsa('avx-512')).toThrow(RangeError);
    const fromEnvironment: string = 'scalar';
    // @ts-expect-error a string is not known to be a kernel name
    expect(() => backend.setIsa(fromEnvironment)).not.toThrow();
    backend.setIsa(isa);
    expect(compiled).toEqual(expect.arrayContaining([...available]));
  });

  test('isa is one of the available kernels', () => {
    expect(backend.available).toContain(backend.isa);
  });

  test.each(backend.available.map((isa) => [isa]))('setIsa(%p) switches to it', (isa) => {
    backend.setIsa(isa);
    expect(backend.isa).toBe(isa);
  });

  test.each(['nope', '', 'AVX2', 'avx-512', ' scalar'])(
    'setIsa(%p): RangeError listing the available kernels; isa unchanged',
    (name) => {
      backend.setIsa('scalar');
      let thrown: unknown = undefined;
      try {
        backend.setIsa(name as IsaName); // as from JavaScript: any string
      } catch (error) {
        thrown = error;
      }
      const error = thrown as Error | undefined;
      expect(error?.name).toBe('RangeError');
      expect(error?.message).toContain(`'${name}'`);
      for (const isa of backend.available) expect(error?.message).toContain(isa);
      expect(backend.isa).toBe('scalar');
    },
  );

  test.each<[string, unknown]>([
    ['a number', 5],
    ['null', null],
    ['undefined', undefined],
    ['an object', { toString: () => 'scalar' }],
  ])('setIsa(%s): TypeError saying a string is expected; isa unchanged', (_what, value) => {
    backend.setIsa('scalar');
    let thrown: unknown = undefined;
    try {
      backend.setIsa(value as IsaName);
    } catch (error) {
      thrown = error;
    }
    const error = thrown as Error | undefined;
    expect(error?.name).toBe('TypeError');
    expect(error?.message).toMatch(/Expected a string for name/);
    expect(backend.isa).toBe('scalar');
  });
});

describe('SIMD_ADAMW_ISA, read when the module loads (child processes on dist/)', () => {
  beforeAll(() => ensureDist(), 200_000);

  function childBackend(env: Record<string, string>): unknown {
    const result = runNode(printBackendScript(), env);
    if (result.status !== 0) throw new Error(`child failed (${result.status}):\n${result.stderr}`);
    return JSON.parse(result.stdout) as unknown;
  }

  test('unset: the best available kernel', () => {
    expect(childBackend({})).toEqual({
      isa: backend.available[0],
      available: backend.available,
      compiled: backend.compiled,
    });
  });

  test('empty: ignored, the best available kernel', () => {
    expect(childBackend({ SIMD_ADAMW_ISA: '' })).toMatchObject({ isa: backend.available[0] });
  });

  test.each(backend.available.map((isa) => [isa]))('SIMD_ADAMW_ISA=%s forces it', (isa) => {
    expect(childBackend({ SIMD_ADAMW_ISA: isa })).toMatchObject({
      isa,
      available: backend.available,
    });
  });

  test('SIMD_ADAMW_ISA=bogus: loading fails with a RangeError naming the variable and the choices', () => {
    const result = runNode(printBackendScript(), { SIMD_ADAMW_ISA: 'bogus' });
    expect(result.status).not.toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(
      /RangeError: Expected one of .* for SIMD_ADAMW_ISA but received 'bogus'/,
    );
    for (const isa of backend.available) expect(result.stderr).toContain(isa);
  });
});
