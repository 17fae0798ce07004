// The worker-threads communicator: ranks are worker_threads of one process (docs/distributed.md).
//
// The main thread creates a group (createThreadGroup): one SharedArrayBuffer holding every param's
// data (and, if asked, its bf16 copy), shared by all ranks, and one gradient buffer per rank. Each
// worker joins with its rank's handle (joinThreadGroup) and gets params whose data are the shared
// arrays and whose grads are its own. The all-gather is then free: a rank's step writes its range
// of the shared data, and a barrier tells the others it is done. The reduce-scatter reads every
// rank's gradient buffer directly and adds them in rank order (native.reduceInRankOrder).
//
// Synchronization is one sense-reversing barrier over Atomics (a counter and a generation), with a
// timeout: a rank that never arrives (it threw, it exited) makes every waiting rank throw instead
// of hanging, and marks the group failed, so that every later collective of every rank throws too.
import { checkInteger, checkObject, isPlainObject } from '../core/checks';
import { rangeError, typeError } from '../core/errors';
import { checkGradDtype, type AnyParam, type GradArray, type GradDtype } from '../optim/params';
import { checkShape } from '../optim/params';
import type { Communicator, ScalarReduceOp, ShardLayout } from './communicator';
import { checkLayout, checkValueCounts } from './layout-checks';
import { reduceInRankOrder } from './reduce';

/** One param of a thread group, as the main thread declares it. */
export interface SharedParamSpec {
  /** Its name (checkpoints, messages). */
  name?: string;
  /** Its dimensions; the product is its length. */
  shape: readonly number[];
  /** Its gradients' dtype on every rank (default 'float32'). */
  gradDtype?: GradDtype;
  /** Whether it has a shared bf16 copy (Param.dataBf16) that every step rewrites. */
  dataBf16?: boolean;
  /** false: no weight decay (Param.decay). */
  decay?: boolean;
}

/** What createThreadGroup takes. */
export interface ThreadGroupOptions {
  /** The number of ranks (worker threads that will join): an integer >= 1. */
  worldSize: number;
  /** The params, in the order every rank's optimizer takes them. */
  params: readonly SharedParamSpec[];
  /** How long a rank waits for the others at a collective before the group fails, in ms
   * (default 120000). */
  timeoutMs?: number;
}

/** What one worker needs to join (pass it as workerData: it holds only SharedArrayBuffers and
 * plain values, which postMessage shares rather than copies). */
export interface ThreadGroupHandle {
  readonly kind: 'simd-adamw/thread-group';
  readonly rank: number;
  readonly worldSize: number;
  readonly timeoutMs: number;
  readonly specs: readonly SharedParamSpec[];
  readonly data: SharedArrayBuffer;
  readonly dataBf16: SharedArrayBuffer | null;
  readonly grads: readonly SharedArrayBuffer[];
  readonly sync: SharedArrayBuffer;
  readonly scratch: SharedArrayBuffer;
}

/** A group of worker-thread ranks over shared memory, made on the main thread. */
export interface ThreadGroup {
  readonly worldSize: number;
  /** The shared params as the main thread sees them: data (and dataBf16) shared with every rank,
   * for initializing and reading the model; `grad` is rank 0's gradient. */
  readonly params: readonly AnyParam[];
  /** The handle of rank `rank`, for `new Worker(file, { workerData: group.handle(rank) })`. */
  handle(rank: number): ThreadGroupHandle;
}

// The sync words: arrivals at the current barrier, its generation, and the failed flag (the
// rank + 1 that failed first, or -1 for a timeout).
const ARRIVED = 0;
const GENERATION = 1;
const FAILED = 2;
const SYNC_WORDS = 4;

const DEFAULT_TIMEOUT_MS = 120_000;

interface Layout {
  readonly lengths: number[];
  readonly gradDtypes: GradDtype[];
  readonly dataOffsets: number[]; // in float32 elements
  readonly bf16Offsets: number[]; // in uint16 elements
  readonly gradByteOffsets: number[];
  readonly dataElements: number;
  readonly bf16Elements: number;
  readonly gradBytes: number;
  readonly scratchValues: number;
}

function layoutOf(specs: readonly SharedParamSpec[], worldSize: number): Layout {
  const lengths: number[] = [];
  const gradDtypes: GradDtype[] = [];
  const dataOffsets: number[] = [];
  const bf16Offsets: number[] = [];
  const gradByteOffsets: number[] = [];
  let dataElements = 0;
  let bf16Elements = 0;
  let gradBytes = 0;
  let blocks = 0;
  for (const spec of specs) {
    const length = spec.shape.reduce((a, b) => a * b, 1);
    const gradDtype = spec.gradDtype ?? 'float32';
    lengths.push(length);
    gradDtypes.push(gradDtype);
    dataOffsets.push(dataElements);
    dataElements += length;
    bf16Offsets.push(bf16Elements);
    if (spec.dataBf16 === true) bf16Elements += length;
    // 8-byte aligned, so every typed view is aligned whatever the dtypes around it.
    gradByteOffsets.push(gradBytes);
    gradBytes += Math.ceil((length * (gradDtype === 'float32' ? 4 : 2)) / 8) * 8;
    blocks += Math.ceil(length / 4096) + 1;
  }
  // allGatherValues' values (the norm's block sums: at most one per 4096 elements of each tensor
  // plus a partial one per rank and segment) and allReduce's one value per rank.
  const scratchValues = blocks + 2 * worldSize + 16;
  return {
    lengths,
    gradDtypes,
    dataOffsets,
    bf16Offsets,
    gradByteOffsets,
    dataElements,
    bf16Elements,
    gradBytes,
    scratchValues,
  };
}

function checkSpecs(name: string, value: unknown): SharedParamSpec[] {
  if (!Array.isArray(value)) throw typeError(name, 'an array of { shape, gradDtype?, ... }', value);
  return (value as unknown[]).map((entry, i) => {
    const where = `${name}[${i}]`;
    const o = checkObject(where, entry);
    const shapeInput: unknown = o.shape;
    if (!Array.isArray(shapeInput))
      throw typeError(`${where}.shape`, 'an array of dimensions', shapeInput);
    const length = (shapeInput as unknown[]).reduce<number>(
      (a, b) => a * (typeof b === 'number' ? b : NaN),
      1,
    );
    const shape = checkShape(
      `${where}.shape`,
      shapeInput,
      Number.isSafeInteger(length) ? length : -1,
    );
    const spec: SharedParamSpec = { shape };
    if (o.name !== undefined) {
      if (typeof o.name !== 'string' || o.name === '')
        throw typeError(`${where}.name`, 'a non-empty string', o.name);
      spec.name = o.name;
    }
    if (o.gradDtype !== undefined)
      spec.gradDtype = checkGradDtype(`${where}.gradDtype`, o.gradDtype);
    if (o.dataBf16 !== undefined) {
      if (typeof o.dataBf16 !== 'boolean')
        throw typeError(`${where}.dataBf16`, 'a boolean', o.dataBf16);
      spec.dataBf16 = o.dataBf16;
    }
    if (o.decay !== undefined) {
      if (typeof o.decay !== 'boolean') throw typeError(`${where}.decay`, 'a boolean', o.decay);
      spec.decay = o.decay;
    }
    return Object.freeze(spec);
  });
}

/**
 * Creates the shared memory of a group of `worldSize` worker-thread ranks (call on the main
 * thread, before starting the workers): every param's data (zeros: write the initial weights
 * through `group.params`), the bf16 copies asked for, and each rank's gradients.
 */
export function createThreadGroup(options: ThreadGroupOptions): ThreadGroup {
  const o = checkObject('options', options);
  const worldSize = checkInteger('options.worldSize', o.worldSize, 1);
  const specs = checkSpecs('options.params', o.params);
  const timeoutMs =
    o.timeoutMs === undefined
      ? DEFAULT_TIMEOUT_MS
      : checkInteger('options.timeoutMs', o.timeoutMs, 1);
  const layout = layoutOf(specs, worldSize);
  const data = new SharedArrayBuffer(layout.dataElements * 4);
  const dataBf16 = layout.bf16Elements > 0 ? new SharedArrayBuffer(layout.bf16Elements * 2) : null;
  const grads = Array.from({ length: worldSize }, () => new SharedArrayBuffer(layout.gradBytes));
  const sync = new SharedArrayBuffer(SYNC_WORDS * 4);
  const scratch = new SharedArrayBuffer(layout.scratchValues * 8);
  const handleOf = (rank: number): ThreadGroupHandle =>
    Object.freeze({
      kind: 'simd-adamw/thread-group' as const,
      rank,
      worldSize,
      timeoutMs,
      specs,
      data,
      dataBf16,
      grads,
      sync,
      scratch,
    });
  const main = paramsOf(handleOf(0), layout);
  return Object.freeze({
    worldSize,
    params: main,
    handle(rank: number): ThreadGroupHandle {
      const r = checkInteger('rank', rank, 0);
      if (r >= worldSize) throw rangeError('rank', `an integer in [0, ${worldSize})`, rank);
      return handleOf(r);
    },
  });
}

// Rank `handle.rank`'s params: the shared data, its own grads.
function paramsOf(handle: ThreadGroupHandle, layout: Layout): AnyParam[] {
  return handle.specs.map((spec, k) => {
    const length = layout.lengths[k];
    const gradDtype = layout.gradDtypes[k];
    const gradBuffer = handle.grads[handle.rank];
    const grad: GradArray =
      gradDtype === 'float32'
        ? new Float32Array(gradBuffer, layout.gradByteOffsets[k], length)
        : new Uint16Array(gradBuffer, layout.gradByteOffsets[k], length);
    const param: AnyParam = {
      data: new Float32Array(handle.data, layout.dataOffsets[k] * 4, length),
      grad,
      shape: spec.shape,
    };
    if (gradDtype !== 'float32') param.gradDtype = gradDtype;
    if (spec.dataBf16 === true && handle.dataBf16 !== null) {
      param.dataBf16 = new Uint16Array(handle.dataBf16, layout.bf16Offsets[k] * 2, length);
    }
    if (spec.name !== undefined) param.name = spec.name;
    if (spec.decay !== undefined) param.decay = spec.decay;
    return param;
  });
}

function checkHandle(value: unknown): ThreadGroupHandle {
  const expected = "a thread group's handle (createThreadGroup(...).handle(rank), as workerData)";
  if (!isPlainObject(value) || value.kind !== 'simd-adamw/thread-group') {
    throw typeError('handle', expected, value);
  }
  const h = value as unknown as ThreadGroupHandle;
  if (
    !(h.data instanceof SharedArrayBuffer) ||
    !(h.sync instanceof SharedArrayBuffer) ||
    !(h.scratch instanceof SharedArrayBuffer) ||
    !Array.isArray(h.grads) ||
    h.grads.length !== h.worldSize ||
    !Number.isSafeInteger(h.rank) ||
    h.rank < 0 ||
    h.rank >= h.worldSize
  ) {
    throw typeError('handle', expected, value);
  }
  return h;
}

/** Joins a thread group as the handle's rank (in its worker): its params (shared data, its own
 * grads) and the communicator to pass to ZeroRedundancyOptimizer. */
export function joinThreadGroup(handle: ThreadGroupHandle): {
  communicator: Communicator;
  params: AnyParam[];
} {
  const h = checkHandle(handle);
  const layout = layoutOf(h.specs, h.worldSize);
  const params = paramsOf(h, layout);
  return { communicator: new ThreadCommunicator(h, layout, params), params };
}

class ThreadCommunicator implements Communicator {
  readonly rank: number;
  readonly worldSize: number;
  readonly kind = 'threads';
  readonly #handle: ThreadGroupHandle;
  readonly #layout: Layout;
  readonly #sync: Int32Array;
  readonly #scratch: Float64Array;
  // Every rank's params (grads differ; data and dataBf16 are the same shared arrays).
  readonly #ranks: readonly AnyParam[][];

  constructor(handle: ThreadGroupHandle, layout: Layout, mine: AnyParam[]) {
    this.rank = handle.rank;
    this.worldSize = handle.worldSize;
    this.#handle = handle;
    this.#layout = layout;
    this.#sync = new Int32Array(handle.sync);
    this.#scratch = new Float64Array(handle.scratch);
    this.#ranks = Array.from({ length: handle.worldSize }, (_, q) =>
      q === handle.rank ? mine : paramsOf({ ...handle, rank: q }, layout),
    );
  }

  reduceScatter(
    grads: readonly GradArray[],
    gradDtypes: readonly GradDtype[],
    layout: ShardLayout,
    out: Float32Array,
    average: boolean,
  ): void {
    checkLayout(layout, this.#layout.lengths, this.worldSize, 'layout');
    this.#checkOwn('grads', grads, (p) => p.grad);
    let expected = 0;
    for (const s of layout.shards[this.rank]) expected += s.end - s.begin;
    if (!(out instanceof Float32Array) || out.length !== expected) {
      throw typeError('out', `a Float32Array of ${expected} elements (this rank's segments)`, out);
    }
    for (const [k, dtype] of gradDtypes.entries()) {
      if (dtype !== this.#layout.gradDtypes[k]) {
        throw rangeError(
          `gradDtypes[${k}]`,
          `'${this.#layout.gradDtypes[k]}' (the group's)`,
          dtype,
        );
      }
    }
    // Every rank's gradients are complete once all have arrived; none is rewritten until all
    // have left (the second barrier).
    this.barrier();
    let offset = 0;
    const dtypes = new Array<GradDtype>(this.worldSize);
    for (const s of layout.shards[this.rank]) {
      const length = s.end - s.begin;
      dtypes.fill(this.#layout.gradDtypes[s.tensor]);
      const inputs = this.#ranks.map((params) => params[s.tensor].grad.subarray(s.begin, s.end));
      reduceInRankOrder(
        out.subarray(offset, offset + length),
        inputs,
        dtypes,
        average ? this.worldSize : 1,
      );
      offset += length;
    }
    this.barrier();
  }

  allGather(arrays: readonly (Float32Array | Uint16Array)[], layout: ShardLayout): void {
    checkLayout(layout, this.#layout.lengths, this.worldSize, 'layout');
    // The arrays are the shared ones: every rank wrote its own range in place, so gathering is
    // waiting for all of them.
    if (arrays.length > 0 && arrays[0] instanceof Uint16Array) {
      this.#checkOwn('arrays', arrays, (p) => p.dataBf16 ?? null);
    } else {
      this.#checkOwn('arrays', arrays, (p) => p.data);
    }
    this.barrier();
  }

  allGatherValues(values: Float64Array, counts: readonly number[]): Float64Array {
    checkValueCounts(values, counts, this.rank, this.worldSize);
    let total = 0;
    let mine = 0;
    for (const [q, count] of counts.entries()) {
      if (q === this.rank) mine = total;
      total += count;
    }
    if (total > this.#scratch.length) {
      throw rangeError(
        'counts',
        `at most ${this.#scratch.length} values in all (the group's scratch)`,
        total,
      );
    }
    // Nobody may still be reading the last collective's values.
    this.barrier();
    this.#scratch.set(values, mine);
    this.barrier();
    return this.#scratch.slice(0, total);
  }

  allReduce(value: number, op: ScalarReduceOp): number {
    if (typeof value !== 'number') throw typeError('value', 'a number', value);
    if (!(['sum', 'max', 'min'] as unknown[]).includes(op))
      throw rangeError('op', "'sum', 'max' or 'min'", op);
    const values = this.allGatherValues(
      Float64Array.of(value),
      new Array<number>(this.worldSize).fill(1),
    );
    let result = values[0];
    for (let q = 1; q < values.length; q++) {
      const v = values[q];
      if (op === 'sum') result += v;
      else if (op === 'max') result = v > result || Number.isNaN(v) ? v : result;
      else result = v < result || Number.isNaN(v) ? v : result;
    }
    return result;
  }

  barrier(): void {
    const sync = this.#sync;
    this.#throwIfFailed();
    const generation = Atomics.load(sync, GENERATION);
    if (Atomics.add(sync, ARRIVED, 1) === this.worldSize - 1) {
      Atomics.store(sync, ARRIVED, 0);
      Atomics.add(sync, GENERATION, 1);
      Atomics.notify(sync, GENERATION);
      return;
    }
    const deadline = Date.now() + this.#handle.timeoutMs;
    while (Atomics.load(sync, GENERATION) === generation) {
      this.#throwIfFailed();
      const left = deadline - Date.now();
      if (left <= 0) {
        Atomics.compareExchange(sync, FAILED, 0, -1);
        Atomics.notify(sync, GENERATION);
        throw new Error(
          `simd-adamw: thread group rank ${this.rank} waited ${this.#handle.timeoutMs} ms for the ` +
            'other ranks at a collective (a rank failed, exited or stopped calling them); the ' +
            'group has failed and every later collective throws',
        );
      }
      Atomics.wait(sync, GENERATION, generation, Math.min(left, 1000));
    }
  }

  /** Marks the group failed (a rank that cannot go on): every rank's next or current collective
   * throws at once. */
  fail(): void {
    Atomics.compareExchange(this.#sync, FAILED, 0, this.rank + 1);
    Atomics.notify(this.#sync, GENERATION);
  }

  #throwIfFailed(): void {
    const failed = Atomics.load(this.#sync, FAILED);
    if (failed !== 0) {
      throw new Error(
        `simd-adamw: the thread group has failed (${
          failed < 0 ? 'a rank timed out at a collective' : `rank ${failed - 1} failed`
        }); this rank (${this.rank}) cannot go on`,
      );
    }
  }

  // `arrays` must be this rank's own arrays of the group, every tensor, in order.
  #checkOwn(
    name: string,
    arrays: readonly unknown[],
    pick: (p: AnyParam) => GradArray | Uint16Array | null,
  ): void {
    const own = this.#ranks[this.rank];
    if (!Array.isArray(arrays) || arrays.length !== own.length) {
      throw typeError(name, `the group's ${own.length} arrays of this rank, in order`, arrays);
    }
    for (const [k, array] of arrays.entries()) {
      const expected = pick(own[k]);
      // A tensor without a bf16 copy: an empty array (its segments are empty in the layout).
      if (expected === null && ArrayBuffer.isView(array) && array.byteLength === 0) continue;
      if (
        expected === null ||
        !ArrayBuffer.isView(array) ||
        array.buffer !== expected.buffer ||
        array.byteOffset !== expected.byteOffset ||
        array.byteLength !== expected.byteLength
      ) {
        throw rangeError(
          `${name}[${k}]`,
          "this rank's array of the thread group (joinThreadGroup's params: the group's shared memory)",
          array,
        );
      }
    }
  }
}
