// The layout docs/architecture.md promises: lib/ in layers with no import cycles,
// index.ts only re-exporting, and the native layouts taken from the addon rather than restated.
import * as fs from 'node:fs';
import * as path from 'node:path';

const LIB = path.join(__dirname, '..', 'lib');

function sourceFiles(): string[] {
  return fs
    .readdirSync(LIB, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts'))
    .map((file) => path.join(LIB, file));
}

/** Every relative import of `file` (type-only imports included: a cycle of types is still a
 * cycle a reader has to untangle), resolved to a file. */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const imports: string[] = [];
  for (const match of text.matchAll(/^(?:import|export)[^'"]*?from '(\.[^']+)'/gms)) {
    const target = path.resolve(path.dirname(file), match[1]!);
    imports.push(fs.existsSync(`${target}.ts`) ? `${target}.ts` : path.join(target, 'index.ts'));
  }
  return imports;
}

test('lib/ has no import cycles', () => {
  const graph = new Map(sourceFiles().map((file) => [file, importsOf(file)]));
  const state = new Map<string, 'visiting' | 'done'>();
  const cycles: string[] = [];
  const visit = (file: string, trail: string[]): void => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'visiting') {
      const start = trail.indexOf(file);
      cycles.push([...trail.slice(start), file].map((f) => path.relative(LIB, f)).join(' -> '));
      return;
    }
    state.set(file, 'visiting');
    for (const next of graph.get(file) ?? []) visit(next, [...trail, file]);
    state.set(file, 'done');
  };
  for (const file of graph.keys()) visit(file, []);
  expect(cycles).toEqual([]);
  // The walk above saw the real graph: index.ts reaches most of lib/.
  expect(graph.get(path.join(LIB, 'index.ts'))?.length).toBeGreaterThan(10);
});

test('lib/index.ts only re-exports', () => {
  const text = fs.readFileSync(path.join(LIB, 'index.ts'), 'utf8');
  const code = text
    .split('\n')
    .filter((line) => !line.startsWith('//') && line.trim() !== '')
    .join('\n');
  // Every statement is `export { ... } from '...'` or `export type { ... } from '...'`.
  const statements = code.split(';').filter((s) => s.trim() !== '');
  for (const statement of statements) {
    expect(statement.trim()).toMatch(/^export (type )?\{[^}]*\} from '\.\/[a-z/-]+'$/s);
  }
});

test('only lib/tfjs/ imports TensorFlow.js, so the main entry never loads it', () => {
  const importers = sourceFiles().filter((file) =>
    /from '@tensorflow\//.test(fs.readFileSync(file, 'utf8')),
  );
  expect(importers.length).toBeGreaterThan(0);
  for (const file of importers) {
    expect(path.relative(LIB, file).split(path.sep)[0]).toBe('tfjs');
  }
  for (const file of importsOf(path.join(LIB, 'index.ts'))) {
    expect(path.relative(LIB, file).split(path.sep)[0]).not.toBe('tfjs');
  }
});

test('every layer sits in its folder, and a lower layer never imports a higher one', () => {
  // core <- format, optim, train, checkpoint; format imports only itself and core (the one error
  // format of core/errors.ts), never optim, train or checkpoint.
  const layerOf = (file: string) => path.relative(LIB, file).split(path.sep)[0]!;
  const allowed: Record<string, string[]> = {
    core: ['core'],
    format: ['core', 'format'],
    train: ['core', 'train', 'optim'],
    checkpoint: ['core', 'format', 'optim', 'train', 'checkpoint'],
    optim: ['core', 'optim', 'train', 'checkpoint'],
    // The tfjs adapter sits on top: nothing of the package imports it but its own entry.
    tfjs: ['core', 'optim', 'train', 'checkpoint', 'tfjs'],
    // ZeRO-1 wraps an optimizer: it sits above optim, train and checkpoint, below nothing.
    distributed: ['core', 'format', 'optim', 'train', 'checkpoint', 'distributed'],
  };
  for (const file of sourceFiles()) {
    const layer = layerOf(file);
    if (layer === 'index.ts') continue;
    expect(Object.keys(allowed)).toContain(layer);
    for (const target of importsOf(file)) {
      expect([file, allowed[layer]]).toEqual([file, expect.arrayContaining([layerOf(target)])]);
    }
  }
});

test('no file of lib/ outside core/native.ts loads the addon', () => {
  for (const file of sourceFiles()) {
    if (file.endsWith(path.join('core', 'native.ts'))) continue;
    const text = fs.readFileSync(file, 'utf8');
    expect([file, /require\(|bindings/.test(text.replace(/\/\/.*$/gm, ''))]).toEqual([file, false]);
  }
});
