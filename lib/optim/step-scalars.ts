// A spec's per-step scalars, written where its native op reads them.
//
// The spec computes them by name (optim/spec.ts, stepScalars); the op's layout (native.ops, from
// native/ops/) says in which order the addon reads them and which bit each flag is. The spec and
// the op are matched by name once, when the first optimizer of a spec is created.
import type { NativeOpLayout } from '../core/native';
import type { HyperparameterValues } from './hyperparameters';
import type { AnyOptimizerSpec } from './spec';

/** Writes scalar set `set` (its scalars in `out`) for a tensor with hyperparameters `values` at
 * 1-based step `step`; returns its flags word in the op's bits. */
export type ScalarWriter = (
  values: HyperparameterValues,
  step: number,
  out: Float64Array,
  set: number,
) => number;

const writers = new WeakMap<AnyOptimizerSpec, ScalarWriter>();

/** Flags of the op family that the framework sets, not the spec: stochasticRounding is an
 * optimizer option (optim/optimizer.ts), not a hyperparameter. */
export const FRAMEWORK_FLAGS: readonly string[] = ['stochasticRounding'];

/** The writer of `spec`'s scalars for `layout`; throws if they do not name the same scalars and
 * flags, or if the spec's names collide with the state dict's own keys. */
export function scalarWriter(spec: AnyOptimizerSpec, layout: NativeOpLayout): ScalarWriter {
  const cached = writers.get(spec);
  if (cached !== undefined) return cached;
  const names = layout.scalars;
  const flagNames = Object.keys(layout.flags).filter((flag) => !FRAMEWORK_FLAGS.includes(flag));
  const position = spec.scalars.map((name) => names.indexOf(name));
  const bits = spec.flags.map((name) => layout.flags[name] ?? -1);
  if (
    spec.scalars.length !== names.length ||
    new Set(position).size !== names.length ||
    position.includes(-1) ||
    spec.flags.length !== flagNames.length ||
    new Set(spec.flags).size !== flagNames.length ||
    bits.includes(-1)
  ) {
    throw new Error(
      `simd-adamw: ${spec.className}'s scalars (${spec.scalars.join(', ')}; flags ` +
        `${spec.flags.join(', ')}) do not match native op '${spec.ops.float32}' (${names.join(', ')}; ` +
        `flags ${flagNames.join(', ')})`,
    );
  }
  // State tensor names share state dict entries with `step` and `name`, hyperparameter names share
  // group entries with `params`.
  const stateNames = spec.state.map((tensor) => tensor.name);
  const hyperNames = Object.keys(spec.hyperparameters);
  if (
    new Set(stateNames).size !== stateNames.length ||
    stateNames.some((name) => name === 'step' || name === 'name') ||
    hyperNames.includes('params')
  ) {
    throw new Error(
      `simd-adamw: ${spec.className}'s state (${stateNames.join(', ')}) or hyperparameters ` +
        `(${hyperNames.join(', ')}) reuse a name (step, name, params, or each other)`,
    );
  }
  const stride = names.length;
  // A spec that lists its scalars and flags in the op's order (as the package's own do) writes
  // straight into the addon's array; another is written to a scratch set and reordered.
  const sameScalars = position.every((p, i) => p === i);
  const sameFlags = bits.every((bit, i) => bit === 1 << i);
  const scratch = new Float64Array(stride);
  const writer: ScalarWriter = (values, step, out, set) => {
    const offset = set * stride;
    let word: number;
    if (sameScalars) {
      word = spec.stepScalars(values, step, out, offset);
    } else {
      word = spec.stepScalars(values, step, scratch, 0);
      for (let i = 0; i < stride; i++) out[offset + position[i]] = scratch[i];
    }
    if (sameFlags) return word;
    let opWord = 0;
    for (let i = 0; i < bits.length; i++) if ((word >> i) & 1) opWord |= bits[i];
    return opWord;
  };
  writers.set(spec, writer);
  return writer;
}
