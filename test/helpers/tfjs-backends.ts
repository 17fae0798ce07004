// The TensorFlow.js backends the adapter's tests run on (lib/tfjs/variable-storage.ts has one path
// per kind): the cpu backend (stepped in place), the wasm backend (clone, step, assign), and an
// "opaque" backend that runs the cpu kernels but hides the cpu backend's storage, so the adapter
// cannot find its internals and must take the copy path, as on webgl or tfjs-node.
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';

/** The backends with a fast path of their own. */
export const NATIVE_BACKENDS = ['cpu', 'wasm'] as const;
export type NativeBackendName = (typeof NATIVE_BACKENDS)[number];

/** The name the opaque backend is registered under. */
export const OPAQUE_BACKEND = 'opaque-cpu';

/** Makes `name` the current backend and waits for it (the wasm module loads asynchronously). */
export async function useBackend(name: string): Promise<void> {
  if (name === OPAQUE_BACKEND) registerOpaqueBackend();
  if (!(await tf.setBackend(name)))
    throw new Error(`the tfjs backend '${name}' did not initialise`);
  await tf.ready();
}

/**
 * Registers {@link OPAQUE_BACKEND}: a MathBackendCPU behind a proxy without `data`, and every cpu
 * kernel re-registered for it, called with the real backend. tfjs sees a working backend; the
 * adapter sees neither the cpu backend's `data` map nor the wasm backend's heap.
 */
export function registerOpaqueBackend(): void {
  if (tf.findBackendFactory(OPAQUE_BACKEND) !== null) return;
  const inner = new MathBackendCPU();
  const opaque = new Proxy(inner, {
    get(target, key) {
      if (key === 'data') return undefined;
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
    },
    has(target, key) {
      return key !== 'data' && Reflect.has(target, key);
    },
  });
  tf.registerBackend(OPAQUE_BACKEND, () => opaque);
  for (const kernel of tf.getKernelsForBackend('cpu')) {
    tf.registerKernel({
      ...kernel,
      backendName: OPAQUE_BACKEND,
      kernelFunc: (args) => kernel.kernelFunc({ ...args, backend: inner }),
    });
  }
}

// What the tests read of the wasm backend (BackendWasm of tfjs-backend-wasm 4.x).
interface WasmBackendView {
  dataIdMap: { get(dataId: tf.DataId): { memoryOffset: number } | undefined };
  wasm: { HEAPU8: Uint8Array };
}

function wasmBackend(): WasmBackendView {
  if (tf.getBackend() !== 'wasm') throw new Error('the current backend is not wasm');
  return tf.engine().backend as unknown as WasmBackendView;
}

/** The wasm module's heap size in bytes. */
export function wasmHeapBytes(): number {
  return wasmBackend().wasm.HEAPU8.buffer.byteLength;
}

/** A live view of a tensor's values in the wasm heap (writing it is what the adapter must NOT do:
 * the tests use it to show that the stale-weights check can fail). */
export function wasmHeapView(tensor: tf.Tensor): Float32Array {
  const backend = wasmBackend();
  const entry = backend.dataIdMap.get(tensor.dataId);
  if (entry === undefined) throw new Error('the tensor has no data on the wasm backend');
  return new Float32Array(backend.wasm.HEAPU8.buffer, entry.memoryOffset, tensor.size);
}
