// ZeRO stage 1 (DeepSpeed; PyTorch's ZeroRedundancyOptimizer): every data-parallel rank keeps the
// optimizer state of only its shard of the params, steps that shard, and the updated params are
// all-gathered (docs/distributed.md).
//
// A rank's shard is stepped by an ordinary optimizer of this package over views: subarrays of the
// params' data (and dataBf16) for the rank's segments (distributed/partition.ts), and of one
// float32 buffer that the reduce-scatter fills with the reduced gradient. Each view is marked with
// the tensor it is part of (optim/shard-views.ts), so its blockwise8 rule and stochastic-rounding
// bits are the whole tensor's. Elementwise kernels then give each element the bits of the
// unsharded step; the gradient norm, the one quantity that spans ranks, is assembled from every
// rank's canonical block sums in the unsharded order (native/grad-norm.h), so clipping, unscaling
// and the non-finite skip decide exactly as the unsharded step would. The sharded result is thus
// bitwise the unsharded optimizer's fed the same reduced gradient, for every world size.
//
// Every method here is collective: each rank calls it, in the same order. Before anything is
// written, the ranks agree (one small all-gather) that every rank's input passed its checks and
// that all ranks passed the same options; otherwise every rank throws, and none has changed.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { checkBoolean, isPlainObject, readOnce } from '../core/checks';
import { rangeError, typeError } from '../core/errors';
import { crc32 } from '../format/crc32';
import type { GenericStateDict } from '../checkpoint/state-dict';
import type { MemoryReport } from '../optim/memory';
import { type AnyOptimizer, optimizerInternals } from '../optim/optimizer';
import { groupValues } from '../optim/param-groups';
import {
  type AnyParam,
  checkGrad,
  GRAD_DTYPE_CODES,
  type GradArray,
  type GradDtype,
  validateParam,
  type ValidatedParam,
} from '../optim/params';
import { markShardView } from '../optim/shard-views';
import type { AnyOptimizerSpec } from '../optim/spec';
import type { StateArray } from '../optim/state-storage';
import {
  checkOptimizerStepOptions,
  type StepOptions,
  type StepReport,
  type TrainStepRequest,
} from '../train/step-options';
import type { Communicator, Segment, ShardLayout } from './communicator';
import { PARTITION_ALIGNMENT, partitionTensors, type PartitionMode } from './partition';
import { gradBlockSums } from './reduce';

/** An optimizer class of this package (AdamW, Adam, Lion, Adafactor, CAME), as ZeRO takes it. */
export interface ShardableOptimizerClass<O extends AnyOptimizer = AnyOptimizer> {
  new (params: { params: AnyParam[]; [key: string]: unknown }[], defaults?: never): O;
  readonly spec: AnyOptimizerSpec;
  load(path: string, params: Iterable<AnyParam>): O;
}

/** The options of a ZeroRedundancyOptimizer: its own, and the wrapped optimizer's (its
 * hyperparameter defaults, threads, schedule and lean-state options), passed on to it. */
export interface ZeroOptions<O extends AnyOptimizer = AnyOptimizer> {
  /** The optimizer each rank runs over its shard. */
  optimizerClass: ShardableOptimizerClass<O>;
  /** This rank's communicator (joinThreadGroup's, or mpiCommunicator()). */
  communicator: Communicator;
  /** Average the ranks' gradients (sum, then one float32 division by worldSize) instead of
   * summing them. Default false. */
  average?: boolean;
  /** Any option of the wrapped optimizer (lr, weightDecay, threads, schedule, stateDtype...). */
  [option: string]: unknown;
}

/** What memory() reports: this rank's bytes, and the state of every rank. */
export interface ZeroMemoryReport {
  readonly rank: number;
  readonly worldSize: number;
  /** This rank's optimizer: the views of its range of the params, its reduced-gradient buffer
   * (float32, as `grads`) and its state. */
  readonly shard: MemoryReport;
  /** Every rank's optimizer-state bytes, in rank order. */
  readonly stateByRank: readonly number[];
  /** Their sum: exactly the state one unsharded optimizer of these params would hold. */
  readonly stateTotal: number;
  /** The params' elements this rank steps, and all params' elements. */
  readonly shardElements: number;
  readonly totalElements: number;
}

// The manifest a save writes beside the ranks' files.
const MANIFEST = 'zero-manifest.json';
const MANIFEST_FORMAT = 'simd-adamw/zero-1';

interface Manifest {
  format: string;
  version: number;
  optimizer: string;
  worldSize: number;
  mode: PartitionMode;
  steps: number;
  tensors: { name?: string; length: number; shape: number[] }[];
  shards: Segment[][];
  files: string[];
}

// One tensor as every rank passes it.
interface Tensor {
  readonly v: ValidatedParam;
  readonly group: number;
}

// A view param of this rank's optimizer and the segment it covers.
interface View {
  readonly param: AnyParam;
  readonly segment: Segment;
  readonly offset: number; // in the reduced-gradient buffer
}

// How an Error crosses ranks: its class, by a code.
const ERROR_CODES = [Error, TypeError, RangeError] as const;

function errorCode(error: unknown): number {
  if (error instanceof RangeError) return 2;
  if (error instanceof TypeError) return 1;
  return 0;
}

// The crc32 of a string's UTF-8 bytes, as a number every rank computes alike.
function fingerprint(value: string): number {
  return crc32(Buffer.from(value, 'utf8'), 0);
}

function checkCommunicator(name: string, value: unknown): Communicator {
  const c = value as Partial<Communicator> | null;
  if (
    typeof c !== 'object' ||
    c === null ||
    !Number.isSafeInteger(c.rank) ||
    !Number.isSafeInteger(c.worldSize) ||
    typeof c.reduceScatter !== 'function' ||
    typeof c.allGather !== 'function' ||
    typeof c.allGatherValues !== 'function' ||
    typeof c.allReduce !== 'function' ||
    typeof c.barrier !== 'function'
  ) {
    throw typeError(
      name,
      'a Communicator (joinThreadGroup(...).communicator, mpiCommunicator())',
      value,
    );
  }
  const comm = c as Communicator;
  if (!(comm.worldSize >= 1 && comm.rank >= 0 && comm.rank < comm.worldSize)) {
    throw rangeError(`${name}.rank`, `an integer in [0, ${comm.worldSize})`, comm.rank);
  }
  return comm;
}

function checkOptimizerClass(name: string, value: unknown): ShardableOptimizerClass {
  const Class = (typeof value === 'function' ? value : {}) as {
    spec?: AnyOptimizerSpec;
    load?: unknown;
  };
  if (
    typeof value !== 'function' ||
    Class.spec === undefined ||
    typeof Class.spec.kind !== 'string' ||
    typeof Class.load !== 'function'
  ) {
    throw typeError(
      name,
      'an optimizer class of this package (AdamW, Adam, Lion, Adafactor, CAME)',
      value,
    );
  }
  return Class as unknown as ShardableOptimizerClass;
}

/**
 * ZeRO-1 over a communicator: the optimizer state of every param is kept by one rank only (its
 * shard), each rank steps its shard, and the params are all-gathered. Every rank creates it with
 * the same params (the same lengths, shapes, grad dtypes, names and groups) and options; every
 * method is collective.
 */
export class ZeroRedundancyOptimizer<O extends AnyOptimizer = AnyOptimizer> {
  readonly #comm: Communicator;
  readonly #Class: ShardableOptimizerClass<O>;
  readonly #spec: AnyOptimizerSpec;
  readonly #average: boolean;
  readonly #tensors: readonly Tensor[];
  readonly #gradDtypes: readonly GradDtype[];
  readonly #mode: PartitionMode;
  readonly #layout: ShardLayout;
  readonly #reduced: Float32Array;
  readonly #views: readonly View[];
  readonly #optimizer: O;
  readonly #stateByRank: readonly number[];
  // The norm's block sums: this rank's count per rank, and where each rank's segments' sums land.
  readonly #blockCounts: readonly number[];
  readonly #blockOrder: readonly { tensor: number; first: number; count: number }[];
  readonly #viewGrads: readonly Float32Array[];
  readonly #hasBf16: boolean;
  #steps = 0;

  constructor(
    params: Iterable<AnyParam> | Iterable<{ params: Iterable<AnyParam>; [key: string]: unknown }>,
    options: ZeroOptions<O>,
  ) {
    if (!isPlainObject(options))
      throw typeError('options', 'an object { optimizerClass, communicator, ... }', options);
    const comm = checkCommunicator('options.communicator', options.communicator);
    this.#comm = comm;
    // From here every rank reaches the agreement, whatever its input: a rank that threw alone
    // would leave the others waiting.
    let prepared: {
      Class: ShardableOptimizerClass<O>;
      average: boolean;
      tensors: Tensor[];
      groups: Record<string, unknown>[];
      defaults: Record<string, unknown>;
      fingerprints: number[];
    } | null = null;
    let error: unknown = null;
    try {
      const Class = checkOptimizerClass(
        'options.optimizerClass',
        options.optimizerClass,
      ) as ShardableOptimizerClass<O>;
      const average =
        options.average === undefined ? false : checkBoolean('options.average', options.average);
      const defaults: Record<string, unknown> = { ...options };
      delete defaults.optimizerClass;
      delete defaults.communicator;
      delete defaults.average;
      const { tensors, groups } = readGroups(params);
      prepared = {
        Class,
        average,
        tensors,
        groups,
        defaults,
        fingerprints: fingerprintsOf(Class, average, tensors, groups, defaults, comm.worldSize),
      };
    } catch (e) {
      error = e;
    }
    this.#agree('new ZeroRedundancyOptimizer()', error, prepared?.fingerprints ?? [0, 0, 0, 0], [
      'the params (their count, lengths and shapes)',
      "the params' grad dtypes and dataBf16 copies",
      "the params' names, groups and decay flags",
      'the optimizer class, its hyperparameters and options, or average',
    ]);
    if (prepared === null) throw new Error('simd-adamw: unreachable');
    const { Class, average, tensors, groups, defaults } = prepared;
    this.#Class = Class;
    this.#spec = Class.spec;
    this.#average = average;
    this.#tensors = tensors;
    this.#gradDtypes = tensors.map(({ v }) => v.gradDtype);
    this.#hasBf16 = tensors.some(({ v }) => v.dataBf16 !== null);
    this.#mode = Class.spec.factored === true ? 'tensors' : 'elements';
    this.#layout = partitionTensors(
      tensors.map(({ v }) => v.length),
      comm.worldSize,
      this.#mode,
    );
    const mine = this.#layout.shards[comm.rank];
    let elements = 0;
    for (const s of mine) elements += s.end - s.begin;
    this.#reduced = new Float32Array(elements);
    this.#views = this.#makeViews(mine);
    this.#viewGrads = this.#views.map((view) => view.param.grad as Float32Array);

    // The optimizer of this rank's shard: every group, some perhaps empty here.
    let optimizer: O | null = null;
    error = null;
    try {
      optimizer = new Class(
        groups.map((group, g) => ({
          ...group,
          params: this.#views
            .filter((view) => tensors[view.segment.tensor].group === g)
            .map((view) => view.param),
        })),
        defaults as never,
      );
    } catch (e) {
      error = e;
    }
    this.#agree('new ZeroRedundancyOptimizer()', error, [], []);
    if (optimizer === null) throw new Error('simd-adamw: unreachable');
    this.#optimizer = optimizer;
    this.#stateByRank = Array.from(
      comm.allGatherValues(
        Float64Array.of(optimizer.memory().state),
        new Array<number>(comm.worldSize).fill(1),
      ),
    );

    // The norm's block sums: each segment's blocks (segments start at a block of their tensor).
    const blocksOf = (s: Segment): number => Math.ceil((s.end - s.begin) / PARTITION_ALIGNMENT);
    this.#blockCounts = this.#layout.shards.map((shard) =>
      shard.reduce((n, s) => n + blocksOf(s), 0),
    );
    const order: { tensor: number; begin: number; first: number; count: number }[] = [];
    let first = 0;
    for (const shard of this.#layout.shards) {
      for (const s of shard) {
        order.push({ tensor: s.tensor, begin: s.begin, first, count: blocksOf(s) });
        first += blocksOf(s);
      }
    }
    order.sort((a, b) => a.tensor - b.tensor || a.begin - b.begin);
    this.#blockOrder = order;
  }

  /** This rank. */
  get rank(): number {
    return this.#comm.rank;
  }

  /** The number of ranks. */
  get worldSize(): number {
    return this.#comm.worldSize;
  }

  /** The optimizer of this rank's shard (its params are views of this rank's range). Read its
   * state and groups through it; step, save and load through this object. */
  get optimizer(): O {
    return this.#optimizer;
  }

  /** The wrapped optimizer's param groups on this rank (hyperparameters may be changed between
   * steps, the same way on every rank: step() checks that they agree). */
  get paramGroups(): O['paramGroups'] {
    return this.#optimizer.paramGroups;
  }

  /** Every rank's segments: rank q steps `layout.shards[q]` (docs/distributed.md). */
  get layout(): ShardLayout {
    return this.#layout;
  }

  /** Steps taken. */
  get steps(): number {
    return this.#steps;
  }

  /**
   * One step (collective): the gradients are reduce-scattered (summed, or averaged, in rank
   * order), the fused options act on the global norm, this rank steps its shard, and the params
   * are all-gathered. Every rank must pass the same options. Invalid input on any rank: every
   * rank throws, nothing changed.
   */
  step(options?: StepOptions): StepReport {
    const comm = this.#comm;
    let request: TrainStepRequest | null = null;
    let grads: GradArray[] = [];
    let error: unknown = null;
    try {
      const checked = checkOptimizerStepOptions('options', options);
      if (checked.skip !== undefined) {
        throw rangeError(
          'options.skip',
          'no skip (under ZeRO every rank steps every param of its shard; zero the gradients of params to leave out)',
          checked.skip,
        );
      }
      request = checked.request;
      grads = this.#readArrays();
    } catch (e) {
      error = e;
    }
    const r = request;
    this.#agree(
      'step()',
      error,
      [
        r === null ? 0 : r.maxNorm === Infinity ? -1 : r.maxNorm,
        r === null ? 1 : r.gradScale,
        r === null ? 0 : (r.measureNorm ? 1 : 0) + (r.skipNonFinite ? 2 : 0),
        fingerprint(
          JSON.stringify(
            this.#optimizer.paramGroups.map((g) => ({ ...groupValues(g), params: undefined })),
          ),
        ),
      ],
      [
        'options.clipGradNorm',
        'options.gradScale',
        'options.skipNonFinite',
        "the param groups' hyperparameters",
      ],
    );
    comm.reduceScatter(grads, this.#gradDtypes, this.#layout, this.#reduced, this.#average);
    const lr = this.#reportedLr();
    let report: StepReport = { gradNorm: null, clipped: false, skipped: false, lr };
    const internals = optimizerInternals(this.#optimizer);
    if (r === null) {
      this.#optimizer.step();
    } else {
      let factor = 1 / r.gradScale;
      const clip = r.maxNorm < Infinity;
      if (r.measureNorm || r.skipNonFinite || clip) {
        const { total, nonFinite } = this.#sumOfSquares();
        const gradNorm = Math.sqrt(total) / r.gradScale;
        report = { ...report, gradNorm };
        if (!Number.isFinite(total) && r.skipNonFinite) {
          const label = nonFinite < 0 ? 'a tensor' : `${this.#tensors[nonFinite].v.label}.grad`;
          return {
            ...report,
            skipped: true,
            reason:
              `non-finite gradient: ${label} holds a NaN or an infinity (gradient norm ` +
              `${String(gradNorm)}); the step was skipped and nothing changed`,
          };
        }
        if (clip) {
          const clipCoef = r.maxNorm / (gradNorm + 1e-6);
          if (!(clipCoef >= 1)) {
            report = { ...report, clipped: true };
            factor = clipCoef / r.gradScale;
          }
        }
      }
      internals.stepWithGradFactor(factor);
    }
    this.#steps += 1;
    comm.allGather(
      this.#tensors.map(({ v }) => v.param.data),
      this.#layout,
    );
    if (this.#hasBf16) {
      comm.allGather(
        this.#tensors.map(({ v }) => v.param.dataBf16 ?? new Uint16Array(0)),
        this.#bf16Layout(),
      );
    }
    return report;
  }

  /** This rank's bytes and every rank's state bytes (not collective: the state sizes were
   * exchanged when the optimizer was created). */
  memory(): ZeroMemoryReport {
    const shard = this.#optimizer.memory();
    return Object.freeze({
      rank: this.rank,
      worldSize: this.worldSize,
      shard,
      stateByRank: Object.freeze([...this.#stateByRank]),
      stateTotal: this.#stateByRank.reduce((a, b) => a + b, 0),
      shardElements: this.#reduced.length,
      totalElements: this.#tensors.reduce((n, { v }) => n + v.length, 0),
    });
  }

  /**
   * Saves a checkpoint of every rank into directory `dir` (collective): each rank's shard as a
   * safetensors file of the wrapped optimizer's format (`rank-<r>-of-<worldSize>.safetensors`),
   * and rank 0 writes `zero-manifest.json`, the partition. Each file is written atomically.
   */
  save(dir: string): void {
    const comm = this.#comm;
    let error: unknown = null;
    try {
      if (typeof dir !== 'string' || dir === '') throw typeError('dir', 'a directory path', dir);
      mkdirSync(dir, { recursive: true });
      this.#optimizer.save(join(dir, this.#fileName(comm.rank, comm.worldSize)));
    } catch (e) {
      error = e;
    }
    this.#agree('save()', error, [], []);
    error = null;
    if (comm.rank === 0) {
      try {
        const manifest: Manifest = {
          format: MANIFEST_FORMAT,
          version: 1,
          optimizer: this.#spec.kind,
          worldSize: comm.worldSize,
          mode: this.#mode,
          steps: this.#steps,
          tensors: this.#tensors.map(({ v }) => {
            const name = v.param.name;
            return name === undefined
              ? { length: v.length, shape: [...v.shape] }
              : { name, length: v.length, shape: [...v.shape] };
          }),
          shards: this.#layout.shards.map((shard) => shard.map((s) => ({ ...s }))),
          files: this.#layout.shards.map((_, q) => this.#fileName(q, comm.worldSize)),
        };
        const path = join(dir, MANIFEST);
        const tmp = `${path}.${process.pid}.tmp`;
        writeFileSync(tmp, `${JSON.stringify(manifest, null, 1)}\n`);
        renameSync(tmp, path);
      } catch (e) {
        error = e;
      }
    }
    this.#agree('save()', error, [], []);
  }

  /**
   * Loads a checkpoint written by save() (collective), from any world size: with the same
   * partition each rank reads its own file; otherwise each rank assembles its new shard's state
   * from the files whose segments overlap it (re-sharding). Validated first (the manifest against
   * these params, and every file read) on every rank; on error on any rank, nothing changed.
   */
  loadFrom(dir: string): void {
    let error: unknown = null;
    let apply: (() => void) | null = null;
    try {
      if (typeof dir !== 'string' || dir === '') throw typeError('dir', 'a directory path', dir);
      const manifest = this.#readManifest(dir);
      apply = this.#planLoad(dir, manifest);
    } catch (e) {
      error = e;
    }
    this.#agree('loadFrom()', error, [], []);
    error = null;
    try {
      apply?.();
    } catch (e) {
      error = e;
    }
    this.#agree('loadFrom()', error, [], []);
  }

  // ---- private ----

  #fileName(rank: number, worldSize: number): string {
    return `rank-${rank}-of-${worldSize}.safetensors`;
  }

  // The views of this rank's segments: its range of each param's data (and dataBf16), and its
  // place in the reduced-gradient buffer.
  #makeViews(segments: readonly Segment[]): View[] {
    let offset = 0;
    return segments.map((segment) => {
      const { v } = this.#tensors[segment.tensor];
      const length = segment.end - segment.begin;
      const param = this.#viewOf(
        segment,
        v.data.subarray(segment.begin, segment.end),
        this.#reduced.subarray(offset, offset + length),
        v.dataBf16?.subarray(segment.begin, segment.end),
      );
      const view = { param, segment, offset };
      offset += length;
      return view;
    });
  }

  // The param of `segment` of a tensor, marked as a view of it (optim/shard-views.ts): these
  // arrays, the tensor's shape under 'tensors' (whole tensors) or [length], its decay and name.
  #viewOf(
    segment: Segment,
    data: Float32Array,
    grad: Float32Array,
    dataBf16: Uint16Array | undefined,
  ): AnyParam {
    const { v } = this.#tensors[segment.tensor];
    const param: AnyParam = {
      data,
      grad,
      shape: this.#mode === 'tensors' ? v.shape : [data.length],
      decay: v.decay,
    };
    if (dataBf16 !== undefined) param.dataBf16 = dataBf16;
    const name = v.param.name;
    if (name !== undefined) param.name = name;
    markShardView(param, {
      tensorLength: v.length,
      tensorIndex: segment.tensor,
      elementOffset: segment.begin,
    });
    return param;
  }

  // Placeholder views of an old shard's segments, to read its file into (loadFrom).
  #placeholderViews(shard: readonly Segment[]): AnyParam[] {
    return shard.map((s) => {
      const length = s.end - s.begin;
      return this.#viewOf(s, new Float32Array(length), new Float32Array(length), undefined);
    });
  }

  // Every param's grad (checked: its length and dtype as when created), and its data and dataBf16
  // still the arrays the views are of, or of their length (a replaced array is viewed anew).
  #readArrays(): GradArray[] {
    const grads = this.#tensors.map(({ v }) => {
      const { grad, gradDtype } = checkGrad(v.label, v.param.grad, v.param.gradDtype, v.length);
      if (gradDtype !== v.gradDtype) {
        throw rangeError(
          `${v.label}.gradDtype`,
          `'${v.gradDtype}' (as when the optimizer was created)`,
          gradDtype,
        );
      }
      return grad;
    });
    for (const view of this.#views) {
      const { v } = this.#tensors[view.segment.tensor];
      const data: unknown = v.param.data;
      if (!(data instanceof Float32Array) || data.length !== v.length) {
        throw typeError(`${v.label}.data`, `a Float32Array of ${v.length} elements`, data);
      }
      if (data !== v.data) {
        throw rangeError(
          `${v.label}.data`,
          'the array the optimizer was created with (under ZeRO the ranks gather into it: copy new values into it instead)',
          data,
        );
      }
      if ((v.param.dataBf16 ?? null) !== v.dataBf16) {
        throw rangeError(
          `${v.label}.dataBf16`,
          'the array the optimizer was created with (copy new values into it instead)',
          v.param.dataBf16,
        );
      }
    }
    return grads;
  }

  // The canonical sum of squares of the reduced gradient (native/grad-norm.h), from every rank's
  // block sums in the unsharded order: each tensor's blocks in order from 0, then the tensors in
  // order from 0.
  #sumOfSquares(): { total: number; nonFinite: number } {
    const comm = this.#comm;
    const mine = gradBlockSums(this.#viewGrads);
    const sums = comm.allGatherValues(mine, this.#blockCounts);
    let total = 0;
    let nonFinite = -1;
    let tensor = -1;
    let tensorSum = 0;
    for (const entry of this.#blockOrder) {
      if (entry.tensor !== tensor) {
        if (tensor >= 0) {
          total += tensorSum;
          if (nonFinite < 0 && !Number.isFinite(tensorSum)) nonFinite = tensor;
        }
        tensor = entry.tensor;
        tensorSum = 0;
      }
      for (let b = entry.first; b < entry.first + entry.count; b++) tensorSum += sums[b];
    }
    if (tensor >= 0) {
      total += tensorSum;
      if (nonFinite < 0 && !Number.isFinite(tensorSum)) nonFinite = tensor;
    }
    return { total, nonFinite };
  }

  // The layout of the bf16 copies: the params' segments, of the tensors that have one.
  #bf16Layout(): ShardLayout {
    return {
      shards: this.#layout.shards.map((shard) =>
        shard.map((s) =>
          this.#tensors[s.tensor].v.dataBf16 === null ? { ...s, end: s.begin } : s,
        ),
      ),
    };
  }

  // The lr the step reports: as the unsharded optimizer's (its first group's, at the step count
  // that every param shares under ZeRO).
  #reportedLr(): number {
    const group = this.#optimizer.paramGroups.at(0);
    if (group === undefined) return 0;
    const values = groupValues(group);
    const spec = this.#spec;
    if (spec.reportedLr === undefined) return values.lr ?? 0;
    return spec.reportedLr(values, this.#steps + 1);
  }

  // The agreement every collective method starts with: each rank contributes whether its own
  // input passed (and the class of its error) and fingerprints of what must be equal on every
  // rank. If any rank failed, every rank throws (the failing one its own error); if any
  // fingerprint differs from rank 0's, every rank throws a RangeError naming what differs.
  #agree(action: string, error: unknown, values: readonly number[], what: readonly string[]): void {
    const comm = this.#comm;
    const w = comm.worldSize;
    const mine = Float64Array.from([error === null ? -1 : errorCode(error), ...values]);
    const all = comm.allGatherValues(mine, new Array<number>(w).fill(mine.length));
    const per = mine.length;
    for (let q = 0; q < w; q++) {
      const code = all[q * per];
      if (code < 0) continue;
      if (q === comm.rank) throw error;
      const ErrorClass = ERROR_CODES[code] ?? Error;
      throw new ErrorClass(
        `simd-adamw: ${action} failed on rank ${q} (its error says why); nothing changed on any rank`,
      );
    }
    for (let i = 1; i < per; i++) {
      for (let q = 1; q < w; q++) {
        const a = all[i];
        const b = all[q * per + i];
        if (!(a === b || (Number.isNaN(a) && Number.isNaN(b)))) {
          throw new RangeError(
            `Expected the same ${what[i - 1] ?? 'input'} on every rank for ${action} but rank ${q}'s ` +
              "differ from rank 0's; nothing changed on any rank",
          );
        }
      }
    }
  }

  #readManifest(dir: string): Manifest {
    const path = join(dir, MANIFEST);
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
    const manifest = parsed as Manifest;
    if (!isPlainObject(parsed) || manifest.format !== MANIFEST_FORMAT || manifest.version !== 1) {
      throw rangeError(
        path,
        `a ZeRO-1 manifest (format '${MANIFEST_FORMAT}', version 1)`,
        manifest,
      );
    }
    if (manifest.optimizer !== this.#spec.kind) {
      throw rangeError(
        `${path}: optimizer`,
        `'${this.#spec.kind}' (this optimizer's kind)`,
        manifest.optimizer,
      );
    }
    const tensors = manifest.tensors;
    if (!Array.isArray(tensors) || tensors.length !== this.#tensors.length) {
      throw rangeError(
        `${path}: tensors`,
        `${this.#tensors.length} tensors (this optimizer's params)`,
        (tensors as unknown[] | undefined)?.length,
      );
    }
    for (const [k, t] of tensors.entries()) {
      const { v } = this.#tensors[k];
      if (t.length !== v.length) {
        throw rangeError(
          `${path}: tensors[${k}].length`,
          `${v.length} (${v.label}'s length)`,
          t.length,
        );
      }
      if (this.#mode === 'tensors' && t.shape.join(',') !== v.shape.join(',')) {
        throw rangeError(
          `${path}: tensors[${k}].shape`,
          `[${v.shape.join(', ')}] (${v.label}'s shape)`,
          t.shape,
        );
      }
      const name = v.param.name;
      if (name !== undefined && t.name !== undefined && name !== t.name) {
        throw rangeError(`${path}: tensors[${k}].name`, `'${name}' (the param's name)`, t.name);
      }
    }
    if (
      !Number.isSafeInteger(manifest.worldSize) ||
      manifest.shards.length !== manifest.worldSize
    ) {
      throw rangeError(`${path}: shards`, 'one shard per rank of its worldSize', manifest.shards);
    }
    return manifest;
  }

  // Reads and checks everything loadFrom needs (the old shards' files overlapping this rank's
  // segments, each into a temporary optimizer of its old segments) and returns the function that
  // applies it, a loadStateDict of the state assembled for this rank's segments.
  #planLoad(dir: string, manifest: Manifest): () => void {
    const rank = this.#comm.rank;
    // Always through a state dict, also with the same partition: every file is read and checked
    // on every rank before any rank changes anything.
    // Re-sharding: the state of every old shard overlapping this rank's segments, as a state dict.
    const mine = this.#layout.shards[rank];
    const overlaps = (a: Segment, b: Segment): boolean =>
      a.tensor === b.tensor && a.begin < b.end && b.begin < a.end;
    const old: { segments: Segment[]; dict: GenericStateDict }[] = [];
    for (const [q, shard] of manifest.shards.entries()) {
      if (!shard.some((s) => mine.some((m) => overlaps(s, m)))) continue;
      const views = this.#placeholderViews(shard);
      const loaded = this.#Class.load(join(dir, manifest.files[q]), views);
      old.push({ segments: shard, dict: loaded.stateDict() as GenericStateDict });
    }
    const own = this.#optimizer.stateDict() as GenericStateDict;
    const template =
      old[0]?.dict ??
      (() => {
        // No old shard overlaps (this rank owns nothing): the hyperparameters and schedule still
        // come from the file of rank 0.
        const views = this.#placeholderViews(manifest.shards[0] ?? []);
        return this.#Class
          .load(join(dir, manifest.files[0]), views)
          .stateDict() as GenericStateDict;
      })();
    const stateNames = this.#spec.state.map((t) => t.name);
    const state = mine.map((m, i) => {
      const pieces: { segment: Segment; entry: GenericStateDict['state'][number] }[] = [];
      for (const o of old) {
        for (const [j, s] of o.segments.entries()) {
          if (overlaps(s, m)) pieces.push({ segment: s, entry: o.dict.state[j] });
        }
      }
      pieces.sort((a, b) => a.segment.begin - b.segment.begin);
      const first = pieces.at(0)?.entry;
      const entry: GenericStateDict['state'][number] = { ...own.state[i], step: first?.step ?? 0 };
      if (first?.dtype !== undefined) entry.dtype = first.dtype;
      for (const name of stateNames) {
        if (!(name in (first ?? {}))) continue;
        entry[name] = joinStatePieces(
          pieces.map(({ segment, entry: e }) => ({
            array: e[name] as StateArray,
            from: Math.max(m.begin, segment.begin) - segment.begin,
            to: Math.min(m.end, segment.end) - segment.begin,
          })),
          this.#mode,
        );
      }
      return entry;
    });
    const assembled: GenericStateDict = {
      ...template,
      state,
      paramGroups: own.paramGroups.map((group, g) => ({
        ...(template.paramGroups[g] ?? group),
        params: group.params,
      })),
    };
    return () => {
      this.#optimizer.loadStateDict(assembled);
      this.#steps = manifest.steps;
    };
  }
}

// One state tensor of a new segment, from the pieces of old segments that cover it, in order.
// Under 'tensors' the segments are whole tensors (one piece, copied whole: factored moments are
// per row and column); under 'elements' every cut is at a multiple of 4096 elements of the tensor,
// so blockwise8's absmax blocks of 256 are whole in every piece.
function joinStatePieces(
  pieces: readonly { array: StateArray; from: number; to: number }[],
  mode: PartitionMode,
): StateArray {
  if (mode === 'tensors' || pieces.length === 1) {
    const { array, from, to } = pieces[0];
    if (mode === 'tensors') return array;
    return sliceState(array, from, to);
  }
  const slices = pieces.map(({ array, from, to }) => sliceState(array, from, to));
  const firstSlice = slices[0];
  if (ArrayBuffer.isView(firstSlice)) {
    const length = slices.reduce((n, s) => n + (s as Float32Array).length, 0);
    const out = new (firstSlice.constructor as Float32ArrayConstructor | Uint16ArrayConstructor)(
      length,
    );
    let at = 0;
    for (const s of slices as (Float32Array | Uint16Array)[]) {
      out.set(s, at);
      at += s.length;
    }
    return out;
  }
  const codes = new Uint8Array(
    slices.reduce((n, s) => n + (s as { codes: Uint8Array }).codes.length, 0),
  );
  const absmax = new Float32Array(
    slices.reduce((n, s) => n + (s as { absmax: Float32Array }).absmax.length, 0),
  );
  let c = 0;
  let a = 0;
  for (const s of slices as { codes: Uint8Array; absmax: Float32Array }[]) {
    codes.set(s.codes, c);
    absmax.set(s.absmax, a);
    c += s.codes.length;
    a += s.absmax.length;
  }
  return { codes, absmax };
}

function sliceState(array: StateArray, from: number, to: number): StateArray {
  if (ArrayBuffer.isView(array)) return array.slice(from, to);
  const blockSize = 256;
  return {
    codes: array.codes.slice(from, to),
    absmax: array.absmax.slice(from / blockSize, Math.ceil(to / blockSize)),
  };
}

// Every tensor's params (groups in order) as every rank passes them, validated.
function readGroups(params: unknown): { tensors: Tensor[]; groups: Record<string, unknown>[] } {
  const inputs = [...readOnce('params', 'an iterable of params or of param groups', params)];
  if (inputs.length === 0) {
    throw new RangeError('Expected at least one param for params but received an empty iterable');
  }
  const grouped = isPlainObject(inputs[0]) && 'params' in inputs[0];
  const groupInputs = grouped ? inputs : [{ params: inputs }];
  const names = new Set<string>();
  const seen = new Set<unknown>();
  const tensors: Tensor[] = [];
  const groups: Record<string, unknown>[] = [];
  for (const [g, input] of groupInputs.entries()) {
    if (!isPlainObject(input))
      throw typeError(`paramGroups[${g}]`, 'a param group { params, ...options }', input);
    const { params: list, ...hyperparameters } = input;
    const members = [...readOnce(`paramGroups[${g}].params`, 'an iterable of params', list)];
    for (const [i, p] of members.entries()) {
      const v = validateParam(
        grouped ? `paramGroups[${g}].params[${i}]` : `params[${i}]`,
        p,
        names,
        seen,
      );
      tensors.push({ v, group: g });
    }
    groups.push(hyperparameters);
  }
  return { tensors, groups };
}

// What must be equal on every rank, as four numbers (the agreement names the one that differs).
function fingerprintsOf(
  Class: ShardableOptimizerClass,
  average: boolean,
  tensors: readonly Tensor[],
  groups: readonly Record<string, unknown>[],
  defaults: Record<string, unknown>,
  worldSize: number,
): number[] {
  const shapes = tensors.map(({ v }) => [v.length, v.shape]);
  const dtypes = tensors.map(({ v }) => [GRAD_DTYPE_CODES[v.gradDtype], v.dataBf16 !== null]);
  const names = tensors.map(({ v, group }) => [v.param.name ?? null, group, v.decay]);
  // threads is each rank's own choice: the results do not depend on it.
  const shared = { ...defaults };
  delete shared.threads;
  const options = [Class.spec.kind, average, worldSize, groups, shared];
  return [shapes, dtypes, names, options].map((x) => fingerprint(JSON.stringify(x)));
}
