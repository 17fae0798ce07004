// Where a step reads and writes a tfjs variable's values, per backend. The adapter hands the core
// optimizer plain Float32Arrays; this file finds them, and says afterwards how the backend learns of
// the new values. Three ways, picked per step by what the current backend offers (never by its name,
// so a renamed or wrapped backend with the same internals still gets the fast path):
//
// - 'cpu-in-place' (@tensorflow/tfjs-backend-cpu: `data.get(dataId).values` and `refCount`): the
//   variable's own Float32Array is the param and the gradient's own array the grad. No copy, and
//   the variable keeps its dataId. A storage shared with another tensor (a clone or reshape of the
//   variable, the tensor a tf.variable() was made from while it lives, tensors given to setWeights)
//   is copied first (copy-on-write), so no other tensor ever changes.
// - 'wasm-clone-assign' (@tensorflow/tfjs-backend-wasm: `dataIdMap` entries with `memoryOffset`,
//   and the module's heap): writing a variable's heap memory in place would be wrong there. Its
//   XNNPACK matmul caches packed weights by tensor id, so the next forward pass would silently use
//   the old weights. So each variable is cloned (a new tensor id), the clone's heap view stepped and
//   assigned to the variable. Heap views detach when the heap grows: every allocation of the step
//   (clones, gradients moved onto this backend) happens before the first view is taken.
// - 'copy' (any other backend: webgl, tfjs-node): the values are copied out with dataSync, stepped,
//   and assigned back as a new tensor.
//
// The backend is looked up at every step: a backend switch moves the data, and `data.get` (cpu) or
// `dataIdMap.get` (wasm) is what moves it onto the current one.
import * as tf from '@tensorflow/tfjs-core';

/** How the last step reached the variables' values (see lib/tfjs/variable-storage.ts). */
export type UpdatePath = 'cpu-in-place' | 'wasm-clone-assign' | 'copy';

// What the adapter relies on of the cpu backend (MathBackendCPU in tfjs-backend-cpu 4.x).
interface CpuBackendInternals {
  data: { get(dataId: tf.DataId): { values?: unknown } | undefined };
  refCount(dataId: tf.DataId): number;
}

// And of the wasm backend (BackendWasm in tfjs-backend-wasm 4.x).
interface WasmBackendInternals {
  dataIdMap: { get(dataId: tf.DataId): { memoryOffset?: unknown } | undefined };
  wasm: { HEAPU8: Uint8Array };
}

function hasFunction(object: object, key: string): boolean {
  return typeof (object as Record<string, unknown>)[key] === 'function';
}

function objectField(object: object, key: string): object | null {
  const value = (object as Record<string, unknown>)[key];
  return typeof value === 'object' && value !== null ? value : null;
}

function asCpuBackend(backend: tf.KernelBackend): CpuBackendInternals | null {
  const data = objectField(backend, 'data');
  if (data === null || !hasFunction(data, 'get') || !hasFunction(backend, 'refCount')) return null;
  return backend as unknown as CpuBackendInternals;
}

function asWasmBackend(backend: tf.KernelBackend): WasmBackendInternals | null {
  const map = objectField(backend, 'dataIdMap');
  const wasm = objectField(backend, 'wasm');
  if (map === null || !hasFunction(map, 'get') || wasm === null) return null;
  if (!((wasm as Record<string, unknown>).HEAPU8 instanceof Uint8Array)) return null;
  return backend as unknown as WasmBackendInternals;
}

/** One variable of the step and its gradient (already checked: float32, same shape). */
export interface SteppedVariable {
  readonly variable: tf.Variable;
  readonly gradient: tf.Tensor;
}

/**
 * The arrays a step updates: `data[i]` and `grads[i]` for `stepped[i]`, and `finish()`, to call
 * after the native step (it makes the backend see the new values and frees what the step made).
 * `abort()` frees them without assigning, for a step that threw.
 */
export interface StepArrays {
  readonly path: UpdatePath;
  readonly data: Float32Array[];
  readonly grads: Float32Array[];
  finish(): void;
  abort(): void;
}

// A gradient array that is also another gradient's or a variable's (two variables given one
// gradient tensor, as tf.add's backward pass does) is copied: the core refuses overlapping arrays,
// and the copy is only ever read.
function distinctGrads(data: readonly Float32Array[], grads: Float32Array[]): void {
  const seen = new Set<Float32Array>(data);
  for (let i = 0; i < grads.length; i++) {
    const grad = grads[i];
    if (seen.has(grad)) grads[i] = grad.slice();
    seen.add(grads[i]);
  }
}

function noop(): void {}

function cpuArrays(cpu: CpuBackendInternals, stepped: readonly SteppedVariable[]): StepArrays {
  const valuesOf = (tensor: tf.Tensor): Float32Array | null => {
    const values = cpu.data.get(tensor.dataId)?.values;
    return values instanceof Float32Array && values.length === tensor.size ? values : null;
  };
  const data = stepped.map(({ variable }) => {
    const own = valuesOf(variable);
    if (own !== null && cpu.refCount(variable.dataId) === 1) return own;
    // Copy-on-write: the variable gets storage of its own (and a new dataId, once).
    const copy = new Float32Array(variable.dataSync());
    const fresh = tf.tensor(copy, variable.shape, 'float32');
    variable.assign(fresh);
    fresh.dispose();
    const adopted = valuesOf(variable);
    // The cpu backend adopts the array it is given; if this one did not, step its copy.
    return adopted ?? copy;
  });
  const grads = stepped.map(
    ({ gradient }) => valuesOf(gradient) ?? new Float32Array(gradient.dataSync()),
  );
  distinctGrads(data, grads);
  return { path: 'cpu-in-place', data, grads, finish: noop, abort: noop };
}

function wasmArrays(wasm: WasmBackendInternals, stepped: readonly SteppedVariable[]): StepArrays {
  const clones = stepped.map(({ variable }) => tf.keep(tf.clone(variable)));
  const disposeClones = (): void => {
    for (const clone of clones) clone.dispose();
  };
  // Every tensor of the step onto this backend first: moving data allocates on the heap.
  const tensors = [...clones, ...stepped.map(({ gradient }) => gradient)];
  const offsets = tensors.map((tensor) => wasm.dataIdMap.get(tensor.dataId)?.memoryOffset);
  const shared = clones.some((clone, i) => clone.dataId === stepped[i].variable.dataId);
  if (shared || offsets.some((offset) => typeof offset !== 'number')) {
    // A clone that shares its variable's memory (not tfjs-backend-wasm 4.x's Identity kernel) or
    // an entry without an offset: the in-heap path cannot be used safely.
    disposeClones();
    return copyArrays(stepped);
  }
  // From here to the native step nothing allocates on the heap, so the views stay attached.
  const heap = wasm.wasm.HEAPU8.buffer;
  const views = tensors.map(
    (tensor, i) => new Float32Array(heap, offsets[i] as number, tensor.size),
  );
  const data = views.slice(0, clones.length);
  const grads = views.slice(clones.length);
  // Two gradients at one offset are one tensor given twice.
  const byOffset = new Map<number, Float32Array>();
  for (const [i, view] of data.entries()) byOffset.set(offsets[i] as number, view);
  for (let i = 0; i < grads.length; i++) {
    const offset = offsets[clones.length + i] as number;
    const earlier = byOffset.get(offset);
    if (earlier !== undefined) grads[i] = earlier.slice();
    else byOffset.set(offset, grads[i]);
  }
  return {
    path: 'wasm-clone-assign',
    data,
    grads,
    finish() {
      for (const [i, { variable }] of stepped.entries()) variable.assign(clones[i]);
      disposeClones();
    },
    abort: disposeClones,
  };
}

function copyArrays(stepped: readonly SteppedVariable[]): StepArrays {
  // Fresh copies each step: dataSync may return the backend's own storage on a backend we do not
  // know, and the copy handed to tf.tensor below becomes the variable's (it is not used again).
  const data = stepped.map(({ variable }) => new Float32Array(variable.dataSync()));
  const grads = stepped.map(({ gradient }) => {
    const values = gradient.dataSync();
    return values instanceof Float32Array ? values : new Float32Array(values);
  });
  distinctGrads(data, grads);
  return {
    path: 'copy',
    data,
    grads,
    finish() {
      for (const [i, { variable }] of stepped.entries()) {
        const fresh = tf.tensor(data[i], variable.shape, 'float32');
        variable.assign(fresh);
        fresh.dispose();
      }
    },
    abort: noop,
  };
}

/** The arrays of this step on the current backend (see the top of this file). */
export function stepArrays(stepped: readonly SteppedVariable[]): StepArrays {
  const backend = tf.engine().backend;
  const cpu = asCpuBackend(backend);
  if (cpu !== null) return cpuArrays(cpu, stepped);
  const wasm = asWasmBackend(backend);
  if (wasm !== null) return wasmArrays(wasm, stepped);
  return copyArrays(stepped);
}
