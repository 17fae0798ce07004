// Loads a package through a real import(), typed by the caller.
//
// vega and vega-lite are ES modules with top-level await, which require() cannot load; tsconfig's
// module "node16" keeps import() as is in the CommonJS output. The specifier is a parameter on
// purpose: with a literal one, TypeScript would also load the package's own .d.ts files, and those
// of vega and TensorFlow.js need the browser's DOM types, which this Node project does not include.
// Callers describe the few functions they use with a local interface instead.
export async function importModule<T>(name: string): Promise<T> {
  return (await import(name)) as T;
}
