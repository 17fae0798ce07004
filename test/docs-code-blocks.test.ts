// Every ```ts block of README.md and docs/*.md compiles against the package, so the documentation
// cannot drift from the API; and the README's training loop runs as written, stops, resumes from
// its checkpoint and ends bit for bit where a run that never stopped ends.
//
// Each block is a module of its own (an .mts file: top-level await is allowed), with the code of
// the `<!-- ts-preamble ... -->` comment before it, if any, prepended; `simd-adamw` and
// `simd-adamw/tfjs` resolve to lib/ through the paths of a generated tsconfig, with the project's
// strict options (docs/development.md, "Code blocks in the documentation").
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ts from 'typescript';

import { ensureDist, PACKAGE_ROOT } from './helpers/child';
import { type CodeBlock, typeScriptBlocks } from './helpers/markdown';

const blocks = typeScriptBlocks();
let workDir = '';

beforeAll(() => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-docs-'));
});
afterAll(() => {
  fs.rmSync(workDir, { recursive: true, force: true });
});

/** The file name of a block: its page and line, readable in a diagnostic. */
function fileNameOf(block: CodeBlock): string {
  return `${block.page.replace(/[/.]/g, '_')}_L${block.line}.mts`;
}

/** The module compiled for a block: the preamble, then the block, then `export {}`. */
function moduleOf(block: CodeBlock): string {
  const preamble = block.preamble === '' ? '' : `${block.preamble}\n`;
  return `${preamble}${block.code}\nexport {};\n`;
}

/** The page line of a 0-based line of the block's module. */
function pageLine(block: CodeBlock, moduleLine: number): number {
  const preambleLines = block.preamble === '' ? 0 : block.preamble.split('\n').length;
  return moduleLine < preambleLines
    ? block.preambleLine + moduleLine
    : block.line + 1 + (moduleLine - preambleLines);
}

/**
 * Type-checks the blocks as one program and returns each diagnostic as
 * "<page>:<line> (the block at line <n>): <message>".
 */
function typeCheck(checked: readonly CodeBlock[], dir: string): string[] {
  fs.symlinkSync(path.join(PACKAGE_ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  const byFile = new Map<string, CodeBlock>();
  for (const block of checked) {
    const file = path.join(dir, fileNameOf(block));
    fs.writeFileSync(file, moduleOf(block));
    byFile.set(file, block);
  }
  const tsconfig = {
    compilerOptions: {
      strict: true,
      target: 'ES2022',
      lib: ['ES2022'],
      module: 'node16',
      moduleResolution: 'node16',
      esModuleInterop: true,
      skipLibCheck: true,
      noEmit: true,
      types: ['node'],
      noImplicitOverride: true,
      noFallthroughCasesInSwitch: true,
      // A block is a fragment of a page: names it declares for the reader may go unused.
      noUnusedLocals: false,
      noUnusedParameters: false,
      paths: {
        'simd-adamw': [path.join(PACKAGE_ROOT, 'lib', 'index.ts')],
        'simd-adamw/tfjs': [path.join(PACKAGE_ROOT, 'lib', 'tfjs', 'index.ts')],
      },
    },
    files: [...byFile.keys()],
  };
  const configPath = path.join(dir, 'tsconfig.json');
  fs.writeFileSync(configPath, JSON.stringify(tsconfig, null, 2));
  const parsed = ts.getParsedCommandLineOfConfigFile(configPath, undefined, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
      throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
    },
  });
  if (parsed === undefined) throw new Error(`could not read ${configPath}`);
  const program = ts.createProgram({ rootNames: parsed.fileNames, options: parsed.options });
  const problems: string[] = [];
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
    const file = diagnostic.file;
    const block = file === undefined ? undefined : byFile.get(path.resolve(file.fileName));
    if (file === undefined || block === undefined) {
      // lib/ is type-checked by `npm run typecheck`; only a problem of the setup is reported here.
      if (file === undefined) problems.push(`(the generated tsconfig): ${message}`);
      continue;
    }
    const { line } = file.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
    problems.push(
      `${block.page}:${pageLine(block, line)} (the block at line ${block.line}): ${message}`,
    );
  }
  return problems;
}

describe('the code blocks of README.md and docs/*.md', () => {
  test('there are blocks, and exactly one of them (the README training loop) is marked to run', () => {
    expect(blocks.length).toBeGreaterThan(5);
    expect(blocks.filter((block) => block.run).map((block) => block.page)).toEqual(['README.md']);
  });

  test('every ts block type-checks against the package', () => {
    const dir = path.join(workDir, 'typecheck');
    fs.mkdirSync(dir);
    expect(typeCheck(blocks, dir)).toEqual([]);
  }, 180_000);

  test('a wrong block is reported with its page, line and diagnostic', () => {
    const dir = path.join(workDir, 'wrong');
    fs.mkdirSync(dir);
    const wrong: CodeBlock = {
      page: 'docs/x.md',
      lang: 'ts',
      line: 10,
      code: "import { AdamW } from 'simd-adamw';\nconst opt = new AdamW([], { lr: 'high' });",
      preamble: 'declare const unused: number;',
      preambleLine: 7,
      run: false,
    };
    const problems = typeCheck([wrong], dir);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^docs\/x\.md:12 \(the block at line 10\): .*'string'.*'number'/s);
  }, 180_000);
});

describe("the README's training loop, run as written", () => {
  const runBlock = blocks.find((block) => block.run);

  /** Compiles the block as the README says (CommonJS, ES2022) into `dir`/train.js. */
  function writeScript(dir: string, block: CodeBlock): void {
    fs.mkdirSync(path.join(dir, 'node_modules'), { recursive: true });
    // The package as a dependency would be: node_modules/simd-adamw is this checkout.
    fs.symlinkSync(PACKAGE_ROOT, path.join(dir, 'node_modules', 'simd-adamw'), 'dir');
    const js = ts.transpileModule(moduleOf(block), {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    fs.writeFileSync(path.join(dir, 'train.js'), js);
  }

  function run(dir: string, args: string[]): string {
    const env = { ...process.env };
    delete env.SIMD_ADAMW_ISA;
    delete env.SIMD_ADAMW_NATIVE;
    const result = spawnSync(process.execPath, ['train.js', ...args], {
      cwd: dir,
      env,
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (result.error !== undefined) throw result.error;
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: '' });
    return result.stdout;
  }

  test('stopped at step 300 and run again, it resumes and ends bit for bit as a run that never stopped', () => {
    expect(runBlock).toBeDefined();
    if (runBlock === undefined) return;
    ensureDist();
    const interrupted = path.join(workDir, 'interrupted');
    const straight = path.join(workDir, 'straight');
    writeScript(interrupted, runBlock);
    writeScript(straight, runBlock);

    const first = run(interrupted, ['300']);
    expect(first).toMatch(/^step 300: loss /m);
    expect(first).not.toMatch(/resumed|step 400/);
    const second = run(interrupted, []);
    expect(second).toMatch(/^resumed at step 300$/m);
    expect(second).not.toMatch(/^step (100|200|300):/m);
    const whole = run(straight, []);
    expect(whole).not.toMatch(/resumed/);

    // The same log from step 400 on, and the same checkpoint file, byte for byte: the weights,
    // the optimizer's moments and step counts, and the schedule's position all resumed exactly.
    const tail = (log: string) => log.split('\n').filter((line) => /^step [4-9]\d\d:/.test(line));
    expect(tail(second)).toEqual(tail(whole));
    expect(tail(whole)).toHaveLength(3);
    const checkpoint = (dir: string) =>
      fs.readFileSync(path.join(dir, 'run', 'checkpoint.safetensors'));
    expect(checkpoint(interrupted).equals(checkpoint(straight))).toBe(true);
    // ...and it learned: the loss at the end is below a tenth of the loss at step 100.
    const losses = whole.match(/loss (\d+\.\d+)/g)?.map((match) => Number(match.slice(5))) ?? [];
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] / 10);
  }, 180_000);
});
