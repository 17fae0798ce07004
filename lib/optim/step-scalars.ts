// A spec's per-step scalars, written where its native op reads them.
//
// The spec computes them by name (optim/spec.ts, stepScalars); the op's layout (native.ops, from
// native/ops/) says in which order the addon reads them and which bit each flag is. The spec and
// the op are matched by name once, when the first optimizer of a spec is created.
import type { NativeOpLayout } from '../core/native';
import type { HyperparameterValues } from './hyperparameters';
import { type AnyOptimizerSpec, type StepScalars } from './spec';

/** Writes scalar set `set` (its scalars in `out`) for a tensor with hyperparameters `values` at
 * 1-based step `step`; returns its flags word. */
export type ScalarWriter = (
  values: HyperparameterValues,
  step: number,
  out: Float64Array,
  set: number,
) => number;

const writers = new WeakMap<AnyOptimizerSpec, ScalarWriter>();

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join() === [...b].sort().join();
}

/** The writer of `spec`'s scalars for `layout`; throws if they do not describe the same names. */
export function scalarWriter(spec: AnyOptimizerSpec, layout: NativeOpLayout): ScalarWriter {
  const cached = writers.get(spec);
  if (cached !== undefined) return cached;
  const names = layout.scalars;
  const flagNames = Object.keys(layout.flags);
  const bits = flagNames.map((name) => layout.flags[name] ?? 0);
  const check = (scalars: StepScalars): void => {
    if (
      !sameNames(Object.keys(scalars.values), names) ||
      !sameNames(Object.keys(scalars.flags), flagNames)
    ) {
      throw new Error(
        `simd-adamw: ${spec.className}'s scalars (${Object.keys(scalars.values).join(', ')}; ` +
          `flags ${Object.keys(scalars.flags).join(', ')}) do not match native op '${spec.op}' ` +
          `(${names.join(', ')}; flags ${flagNames.join(', ')})`,
      );
    }
  };
  const defaults: Record<string, unknown> = {};
  for (const [key, entry] of Object.entries(spec.hyperparameters)) defaults[key] = entry.default;
  check(spec.stepScalars(defaults as HyperparameterValues, 1));

  const stride = names.length;
  // A spec that lists its scalars in the op's order (as the package's own do) is written by
  // position: reading an object by a varying key costs more than the rest of a small step.
  const inOrder = Object.keys(spec.stepScalars(defaults as HyperparameterValues, 1).values).every(
    (name, i) => name === names[i],
  );
  const writer: ScalarWriter = (values, step, out, set) => {
    const scalars = spec.stepScalars(values, step);
    const offset = set * stride;
    if (inOrder) {
      const ordered = Object.values(scalars.values);
      for (let i = 0; i < stride; i++) out[offset + i] = ordered[i];
    } else {
      for (let i = 0; i < stride; i++) out[offset + i] = scalars.values[names[i]] ?? NaN;
    }
    let word = 0;
    for (let f = 0; f < flagNames.length; f++) if (scalars.flags[flagNames[f]]) word |= bits[f];
    return word;
  };
  writers.set(spec, writer);
  return writer;
}
