// The built-in getters of typed arrays and buffers, as this module found them, called on the
// internal slots. A typed array is an ordinary object that can carry its own `length` or `buffer`
// property (or be a Proxy that claims to be a Float32Array), so lib/ never reads those properties:
// it measures arrays through these, which run none of the caller's code.

const apply = Reflect.apply;
function intrinsicGetter(prototype: object, key: string | symbol): (target: object) => unknown {
  const descriptor: { get?: (this: unknown) => unknown } | undefined =
    Object.getOwnPropertyDescriptor(prototype, key);
  const getter = descriptor?.get;
  if (getter === undefined) throw new Error(`no intrinsic getter ${String(key)}`);
  return (target) => apply(getter, target, []);
}

const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;
const lengthGetter = intrinsicGetter(typedArrayPrototype, 'length');
export const bufferOf = intrinsicGetter(typedArrayPrototype, 'buffer') as (
  array: ArrayBufferView,
) => ArrayBufferLike;
export const byteLengthOf = intrinsicGetter(typedArrayPrototype, 'byteLength') as (
  array: ArrayBufferView,
) => number;
/** 'Float32Array', 'Uint8Array', ...: the typed array's own kind. */
export const typedArrayName = intrinsicGetter(typedArrayPrototype, Symbol.toStringTag) as (
  array: ArrayBufferView,
) => string;
export const dataViewByteLength = intrinsicGetter(DataView.prototype, 'byteLength') as (
  view: DataView,
) => number;
/** Whether an ArrayBuffer is resizable (always false where Node has no resizable buffers). */
export const isResizable: (buffer: ArrayBufferLike) => boolean =
  Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'resizable') === undefined
    ? () => false
    : (intrinsicGetter(ArrayBuffer.prototype, 'resizable') as (b: ArrayBufferLike) => boolean);

/** Elements of a typed array (0 once its buffer is detached or it is out of bounds). */
export function lengthOf(array: ArrayBufferView): number {
  return lengthGetter(array) as number;
}
