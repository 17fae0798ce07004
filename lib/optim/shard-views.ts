// Params that are views of a part of a larger tensor: how ZeRO-1 (distributed/zero.ts) steps a
// rank's range with an ordinary optimizer and still gets the bits of the unsharded step. A view
// takes from its whole tensor the three things that depend on more than its own elements:
//   - the blockwise8 rule (min8bitSize) is decided on the whole tensor's length;
//   - the stochastic-rounding key is the whole tensor's place among all params;
//   - element i of the view draws the random bits of element `elementOffset + i` of the tensor.
// Set before the view's optimizer is created (read once, by its constructor); not exported from
// the package.
import type { AnyParam } from './params';

export interface ShardView {
  /** The whole tensor's length. */
  readonly tensorLength: number;
  /** The whole tensor's index among every param of the unsharded optimizer. */
  readonly tensorIndex: number;
  /** Where the view starts in the tensor. */
  readonly elementOffset: number;
}

const views = new WeakMap<AnyParam, ShardView>();

/** Marks `param` as a view of part of a tensor. */
export function markShardView(param: AnyParam, view: ShardView): void {
  views.set(param, Object.freeze({ ...view }));
}

/** What `param` is a view of, or undefined for an ordinary param. */
export function shardViewOf(param: AnyParam): ShardView | undefined {
  return views.get(param);
}
