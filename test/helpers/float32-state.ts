// The state of a param that keeps float32 state, typed as such: state(p) and state dicts return a
// union over the state dtypes (lib/optim/adam.ts, ParamState), and the tests written for float32
// state read its Float32Arrays directly. Throws for any other dtype, so a test cannot silently
// read lean state as float32.
export function f32<T extends { dtype?: string }>(state: T): Extract<T, { dtype: 'float32' }> {
  if (state.dtype !== 'float32') {
    throw new Error(`expected float32 state but the param keeps ${String(state.dtype)}`);
  }
  return state as Extract<T, { dtype: 'float32' }>;
}
