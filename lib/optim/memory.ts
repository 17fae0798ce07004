// Memory accounting: what an optimizer holds, in bytes, by what they hold (optim/optimizer.ts's
// memory() fills it from the arrays themselves; optim/memory-estimate.ts predicts it).

/** Bytes, by what they hold. */
export interface MemoryBreakdown {
  /** Number of parameter elements (not bytes). */
  paramCount: number;
  /** Bytes of the parameter arrays (owned by the caller, counted here for the total). */
  params: number;
  /** Bytes of the gradient arrays (owned by the caller). */
  grads: number;
  /** Bytes of optimizer state this optimizer allocated: the state tensors its spec declares. */
  state: number;
  /** params + grads + state. */
  total: number;
}

/** Per-group and overall memory of an optimizer, exact to the byte for the arrays it holds. */
export interface MemoryReport extends MemoryBreakdown {
  groups: MemoryBreakdown[];
}

export function emptyBreakdown(): MemoryBreakdown {
  return { paramCount: 0, params: 0, grads: 0, state: 0, total: 0 };
}

export function addBreakdown(into: MemoryBreakdown, from: MemoryBreakdown): void {
  into.paramCount += from.paramCount;
  into.params += from.params;
  into.grads += from.grads;
  into.state += from.state;
  into.total += from.total;
}
