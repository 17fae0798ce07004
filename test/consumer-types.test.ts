// The published declarations (dist/**/*.d.ts) as a consumer's compiler reads them: a small file
// importing 'simd-adamw' and 'simd-adamw/tfjs' is type-checked, with skipLibCheck off, against
// targets older than ES2022 (tsc emits `#private;` for classes with private fields, which ES5
// refuses; scripts/dts-private-fields.js rewrites it) and under the old `node10` resolution (which
// reads package.json's typesVersions instead of its exports).
//
// The consumer's lib is ES2017 plus DOM: @tensorflow/tfjs-core's own declarations name DOM types
// (HTMLCanvasElement, ImageData, ...) and @types/long's Long, so its users compile with DOM and
// with those types in any case.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ensureDist, PACKAGE_ROOT } from './helpers/child';

const CONSUMER = `
import {
  Adafactor,
  AdamW,
  backend,
  CAME,
  GradScaler,
  Lion,
  noDecay,
  type IsaName,
  type Param,
} from 'simd-adamw';
import { adamw, SimdAdamW, type SimdOptimizer } from 'simd-adamw/tfjs';

const params: Param[] = [
  { name: 'w', data: new Float32Array(4), grad: new Float32Array(4) },
  { name: 'bias', data: new Float32Array(2), grad: new Float32Array(2) },
];
const config = { lr: 1e-3, betas: [0.9, 0.95], weightDecay: 0.1 } as const;
const optimizer = new AdamW(noDecay(params), config);
optimizer.step();
optimizer.zeroGrad();
new Lion(params, { betas: [0.9, 0.99] as const });
new CAME(params, { betas: [0.9, 0.999, 0.9999] as const });
new Adafactor(noDecay(params));
const scaler = new GradScaler();
const isa: IsaName = backend.isa;
backend.setIsa(isa);
const tfOptimizer: SimdOptimizer = adamw({ lr: 1e-3, betas: [0.9, 0.95] as const });
const tfAdamW: SimdAdamW = tfOptimizer as SimdAdamW;

// The rewritten declaration keeps the classes nominal, as '#private;' made them: an object with
// the same public members is not a GradScaler.
declare const sameShape: { [K in keyof GradScaler]: GradScaler[K] };
// @ts-expect-error not an instance of the class
const notAScaler: GradScaler = sameShape;
export { scaler, tfAdamW, notAScaler };
`;

let dir = '';
beforeAll(() => {
  ensureDist();
  // ensureDist trusts a dist/ built by a bare `tsc -p tsconfig.build.json`; the rewrite is
  // idempotent, so run it here as the build would.
  const fixed = spawnSync(process.execPath, [path.join('scripts', 'dts-private-fields.js')], {
    cwd: PACKAGE_ROOT,
    encoding: 'utf8',
  });
  if (fixed.status !== 0) throw new Error(fixed.stderr);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-consumer-'));
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(PACKAGE_ROOT, path.join(dir, 'node_modules', 'simd-adamw'), 'dir');
  fs.writeFileSync(path.join(dir, 'consumer.ts'), CONSUMER);
}, 200_000);
afterAll(() => {
  if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
});

function typeCheck(compilerOptions: Record<string, unknown>): string {
  const tsconfig = path.join(dir, `tsconfig-${String(compilerOptions.target)}.json`);
  fs.writeFileSync(
    tsconfig,
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        lib: ['ES2017', 'DOM'],
        types: ['node', 'long'],
        typeRoots: [path.join(PACKAGE_ROOT, 'node_modules', '@types')],
        ...compilerOptions,
      },
      files: ['consumer.ts'],
    }),
  );
  const tsc = path.join(PACKAGE_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', tsconfig], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return `exit ${String(result.status)}\n${result.stdout}${result.stderr}`.trim();
}

test("dist's declarations have no private identifier (the rewrite ran)", () => {
  const declarations = fs
    .readdirSync(path.join(PACKAGE_ROOT, 'dist', 'lib'), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.d.ts'))
    .map((name) => fs.readFileSync(path.join(PACKAGE_ROOT, 'dist', 'lib', name), 'utf8'));
  expect(declarations.filter((text) => /^\s*#/m.test(text))).toEqual([]);
  expect(declarations.some((text) => text.includes('private "#private";'))).toBe(true);
});

test.each([
  ['ES5', 'commonjs', 'node10'],
  ['ES5', 'node16', 'node16'],
  ['ES2017', 'node16', 'node16'],
])(
  'a consumer with target %s, module %s, moduleResolution %s compiles',
  (target, module, moduleResolution) => {
    expect(typeCheck({ target, module, moduleResolution })).toBe('exit 0');
  },
  120_000,
);
