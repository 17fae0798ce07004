// Named tensors (model weights, embeddings, anything with a shape) to and from safetensors files,
// the format of Python's `safetensors` package, in both directions.
//
// saveTensors writes the layout of the reference serializer (huggingface/safetensors,
// safetensors/src/tensor.rs, `prepare`): tensors ordered by dtype, the larger dtypes of its Dtype
// enum first (F32, I32, BF16, F16, U8 here), then by name (bytewise, as Rust orders Strings), each
// at the offset where the previous one ends, `__metadata__` first in the header, the header padded
// with spaces to a multiple of 8 bytes. So every tensor starts aligned to its element size. One
// addition: the metadata's `crc32` (format/safetensors.ts), which Python's reader ignores, as it
// does any metadata key, and which readers here verify.
//
// Both directions stream: the writer writes each array from its own memory, the reader reads each
// tensor straight into the array it returns (F16/BF16 widened to float32 in place, within that
// array), so a file never sits in memory twice. Files without `crc32` (Python's) load unchecked.
import * as fs from 'node:fs';
import { types } from 'node:util';

import { checkObject, isPlainObject } from '../core/checks';
import { checkKnownKeys, countOf, rangeError, typeError } from '../core/errors';
import { lengthOf } from '../core/intrinsics';
import {
  assertLittleEndianHost,
  CRC32_KEY,
  type Dtype,
  readHeader,
  readTensors,
  type SafetensorsHeader,
  type TensorInfo,
  type TensorToWrite,
  writeSafetensors,
} from '../format/safetensors';

/** The element types of the tensors saveTensors writes and loadTensors returns. */
export type TensorDtype = 'float32' | 'float16' | 'bfloat16' | 'int32' | 'uint8';

/** The arrays that hold them: float16 and bfloat16 as their 16-bit patterns in a Uint16Array. */
export type TensorArray = Float32Array | Uint16Array | Int32Array | Uint8Array;

/** A tensor to save with its shape (default `[data.length]`) and dtype (needed for a
 * Uint16Array: 'float16' or 'bfloat16'; otherwise the array's own). */
export interface TensorToSave {
  data: TensorArray;
  shape?: readonly number[];
  dtype?: TensorDtype;
}

/** Tensors by name: a bare array is a 1-dimensional tensor of its own dtype. */
export type TensorsToSave = Readonly<
  Record<string, Float32Array | Int32Array | Uint8Array | TensorToSave>
>;

/** A tensor as loaded: its dtype in the file (float32 after conversion with `as: 'float32'`). */
export interface LoadedTensor {
  dtype: TensorDtype;
  shape: number[];
  data: TensorArray;
}

export interface SaveTensorsOptions {
  /** String metadata for `__metadata__` (Python: `save_file(tensors, path, metadata)`). */
  metadata?: Readonly<Record<string, string>>;
}

export interface LoadTensorsOptions {
  /** 'float32': F16 and BF16 tensors are returned as float32 (exactly: every value is one). */
  as?: 'float32';
}

interface DtypeEntry {
  readonly dtype: TensorDtype;
  readonly fileDtype: Dtype;
  /** The array's class name, for messages, and how to make one. */
  readonly arrayName: string;
  readonly create: (length: number) => TensorArray;
}

// In the reference serializer's order: its Dtype enum from the largest.
const DTYPES: readonly DtypeEntry[] = [
  {
    dtype: 'float32',
    fileDtype: 'F32',
    arrayName: 'Float32Array',
    create: (n) => new Float32Array(n),
  },
  { dtype: 'int32', fileDtype: 'I32', arrayName: 'Int32Array', create: (n) => new Int32Array(n) },
  {
    dtype: 'bfloat16',
    fileDtype: 'BF16',
    arrayName: 'Uint16Array',
    create: (n) => new Uint16Array(n),
  },
  {
    dtype: 'float16',
    fileDtype: 'F16',
    arrayName: 'Uint16Array',
    create: (n) => new Uint16Array(n),
  },
  { dtype: 'uint8', fileDtype: 'U8', arrayName: 'Uint8Array', create: (n) => new Uint8Array(n) },
];
const BY_DTYPE = new Map(DTYPES.map((entry) => [entry.dtype, entry]));
const BY_FILE_DTYPE = new Map(DTYPES.map((entry) => [entry.fileDtype, entry]));
const DTYPE_NAMES = DTYPES.map((entry) => `'${entry.dtype}'`).join(', ');
const TENSOR_KEYS = ['data', 'shape', 'dtype'];

function checkPath(file: unknown): string {
  if (typeof file !== 'string' || file === '') throw typeError('path', 'a non-empty string', file);
  return file;
}

// Lone surrogates have no UTF-8 form; JSON.stringify would write them as escapes Rust rejects.
function checkWellFormed(name: string, text: string): void {
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text)) {
    throw rangeError(name, 'a string without unpaired UTF-16 surrogates', text);
  }
}

/** The dtype of a bare array, or undefined for a Uint16Array (ambiguous) or another value. */
function arrayDtype(data: unknown): TensorDtype | 'uint16' | undefined {
  if (types.isFloat32Array(data)) return 'float32';
  if (types.isInt32Array(data)) return 'int32';
  if (types.isUint8Array(data)) return 'uint8';
  if (types.isUint16Array(data)) return 'uint16';
  return undefined;
}

function checkShape(name: string, value: unknown, length: number): number[] {
  if (!Array.isArray(value)) throw typeError(name, 'an array of dimensions', value);
  const shape = value.map((dimension: unknown, i) => {
    if (typeof dimension !== 'number' || !Number.isSafeInteger(dimension) || dimension < 0) {
      throw rangeError(`${name}[${i}]`, 'an integer >= 0', dimension);
    }
    return dimension;
  });
  const elements = shape.reduce((product, dimension) => product * dimension, 1);
  if (elements !== length) {
    throw rangeError(
      name,
      `a shape of ${countOf(length, 'element')} (the length of its data)`,
      value,
    );
  }
  return shape;
}

/** One validated tensor of `tensors` (named `where` in messages). */
function checkTensor(
  where: string,
  name: string,
  value: unknown,
): { name: string; entry: DtypeEntry; shape: number[]; data: TensorArray } {
  const subject = `${where}[${JSON.stringify(name)}]`;
  checkWellFormed(`the tensor name ${subject}`, name);
  let data: unknown = value;
  let shapeValue: unknown;
  let dtypeValue: unknown;
  if (arrayDtype(value) === undefined) {
    if (!isPlainObject(value)) {
      throw typeError(
        subject,
        'a Float32Array, Int32Array, Uint8Array or { data, shape?, dtype? }',
        value,
      );
    }
    checkKnownKeys(subject, value, TENSOR_KEYS);
    ({ data, shape: shapeValue, dtype: dtypeValue } = value);
  }
  const own = arrayDtype(data);
  if (own === undefined) {
    throw typeError(
      `${subject}.data`,
      'a Float32Array, Uint16Array (float16 or bfloat16), Int32Array or Uint8Array',
      data,
    );
  }
  let dtype: TensorDtype;
  if (dtypeValue === undefined) {
    if (own === 'uint16') {
      throw typeError(
        `${subject}.dtype`,
        "'float16' or 'bfloat16' (a Uint16Array holds either)",
        dtypeValue,
      );
    }
    dtype = own;
  } else {
    const entry = BY_DTYPE.get(dtypeValue as TensorDtype);
    if (entry === undefined)
      throw rangeError(`${subject}.dtype`, `one of ${DTYPE_NAMES}`, dtypeValue);
    if (entry.arrayName !== BY_DTYPE.get(own === 'uint16' ? 'float16' : own)?.arrayName) {
      throw typeError(`${subject}.data`, `a ${entry.arrayName} (dtype '${entry.dtype}')`, data);
    }
    dtype = entry.dtype;
  }
  const array = data as TensorArray;
  const length = lengthOf(array);
  const shape =
    shapeValue === undefined ? [length] : checkShape(`${subject}.shape`, shapeValue, length);
  const entry = BY_DTYPE.get(dtype) as DtypeEntry;
  return { name, entry, shape, data: array };
}

// Rust orders Strings by their UTF-8 bytes; JavaScript's < compares UTF-16 code units.
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * The tensors of `tensors` (an argument named `where`), validated, in the reference serializer's
 * order, each name prefixed by `prefix`. Throws TypeError/RangeError before anything is written.
 */
export function tensorsToWrite(where: string, tensors: unknown, prefix = ''): TensorToWrite[] {
  const object = checkObject(where, tensors);
  const checked = Object.keys(object).map((name) => checkTensor(where, name, object[name]));
  const rank = (entry: DtypeEntry) => DTYPES.indexOf(entry);
  checked.sort((a, b) => rank(a.entry) - rank(b.entry) || compareUtf8(a.name, b.name));
  return checked.map(({ name, entry, shape, data }) => ({
    name: prefix + name,
    dtype: entry.fileDtype,
    shape,
    data,
  }));
}

/** String metadata for a file (named `where`), validated; `crc32` is the package's own key. */
export function checkMetadata(where: string, metadata: unknown): Record<string, string> {
  const object = checkObject(where, metadata);
  const checked: Record<string, string> = {};
  for (const key of Object.keys(object)) {
    const value = object[key];
    const name = `${where}[${JSON.stringify(key)}]`;
    if (key === CRC32_KEY) {
      throw rangeError(
        `the key of ${name}`,
        `a key other than '${CRC32_KEY}' (the file's checksum, which saveTensors writes)`,
        key,
      );
    }
    if (typeof value !== 'string') throw typeError(name, 'a string', value);
    checkWellFormed(`the key of ${name}`, key);
    checkWellFormed(name, value);
    checked[key] = value;
  }
  return checked;
}

/**
 * Writes named tensors to `path` as a safetensors file that Python's `safetensors.safe_open` and
 * `load_file` read, atomically (as `optimizer.save`: a crash or an error leaves any previous file
 * as it was, and nothing new), streaming from the arrays. Throws TypeError/RangeError for bad
 * input before anything is written.
 */
export function saveTensors(
  path: string,
  tensors: TensorsToSave,
  options?: SaveTensorsOptions,
): void {
  const target = checkPath(path);
  const o = options === undefined ? {} : checkObject('options', options);
  checkKnownKeys('options', o, ['metadata']);
  const metadata = o.metadata === undefined ? {} : checkMetadata('options.metadata', o.metadata);
  writeSafetensors(target, tensorsToWrite('tensors', tensors), metadata);
}

/** Where each tensor of a header is read to, and the tensors once read (see planTensorReads). */
export interface TensorReads {
  readonly destinations: ReadonlyMap<string, ArrayBufferView>;
  /** After every destination was read: the tensors, F16/BF16 widened if asked. */
  finish(): Record<string, LoadedTensor>;
}

/**
 * Plans reading `infos` (tensors of a validated header, in file order) into new arrays, each named
 * by its name without `prefix`. A dtype other than those of {@link TensorDtype} is a RangeError,
 * thrown before anything is allocated.
 */
export function planTensorReads(
  file: string,
  infos: readonly TensorInfo[],
  asFloat32: boolean,
  prefix = '',
): TensorReads {
  for (const info of infos) {
    if (!BY_FILE_DTYPE.has(info.dtype)) {
      throw new RangeError(
        `Expected one of the dtypes ${DTYPES.map((entry) => entry.fileDtype).join(', ')} for ` +
          `tensor '${info.name}' of '${file}' but received ${info.dtype} (not supported here)`,
      );
    }
  }
  const destinations = new Map<string, ArrayBufferView>();
  const loaded: {
    name: string;
    dtype: TensorDtype;
    shape: number[];
    data: TensorArray;
    widen?: Uint16Array;
  }[] = [];
  for (const info of infos) {
    const entry = BY_FILE_DTYPE.get(info.dtype) as DtypeEntry;
    const length = info.shape.reduce((product, dimension) => product * dimension, 1);
    const name = info.name.slice(prefix.length);
    if (asFloat32 && (entry.dtype === 'float16' || entry.dtype === 'bfloat16')) {
      // The 16-bit values go into the back half of their float32 array and are widened front to
      // back: element i is read before element i is written, and no later element is overwritten.
      const data = new Float32Array(length);
      const bits = new Uint16Array(data.buffer, 2 * length, length);
      destinations.set(info.name, bits);
      loaded.push({ name, dtype: entry.dtype, shape: [...info.shape], data, widen: bits });
    } else {
      const data = entry.create(length);
      destinations.set(info.name, data);
      loaded.push({ name, dtype: entry.dtype, shape: [...info.shape], data });
    }
  }
  return {
    destinations,
    finish() {
      const result: Record<string, LoadedTensor> = {};
      for (const tensor of loaded) {
        let { dtype } = tensor;
        if (tensor.widen !== undefined) {
          const widen = dtype === 'bfloat16' ? bfloat16ToFloat32 : float16ToFloat32;
          widen(tensor.widen, tensor.data as Float32Array);
          dtype = 'float32';
        }
        // defineProperty: a tensor named "__proto__" is a tensor, not a prototype.
        Object.defineProperty(result, tensor.name, {
          value: { dtype, shape: tensor.shape, data: tensor.data },
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return result;
    },
  };
}

/** Widens bfloat16 bit patterns to float32 (exact: a bfloat16 is a float32's top 16 bits). */
function bfloat16ToFloat32(bits: Uint16Array, into: Float32Array): void {
  const out = new Uint32Array(into.buffer, into.byteOffset, into.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
}

/** Widens IEEE binary16 bit patterns to float32 exactly, subnormals, infinities and NaN payloads
 * included. */
function float16ToFloat32(bits: Uint16Array, into: Float32Array): void {
  const out = new Uint32Array(into.buffer, into.byteOffset, into.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const sign = (h & 0x8000) << 16;
    const exponent = (h >> 10) & 0x1f;
    let mantissa = h & 0x3ff;
    if (exponent === 0x1f) {
      out[i] = (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
    } else if (exponent !== 0) {
      out[i] = (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
    } else if (mantissa === 0) {
      out[i] = sign >>> 0;
    } else {
      // A subnormal: shift the mantissa up to a leading 1, lowering the exponent as it goes.
      let e = 113;
      while ((mantissa & 0x400) === 0) {
        mantissa <<= 1;
        e--;
      }
      out[i] = (sign | (e << 23) | ((mantissa & 0x3ff) << 13)) >>> 0;
    }
  }
}

/** Opens `file`, reads its validated header and runs `use`; closes the file whatever happens. */
export function withSafetensorsFile<T>(
  file: string,
  use: (fd: number, header: SafetensorsHeader) => T,
): T {
  assertLittleEndianHost();
  const fd = fs.openSync(file, 'r');
  try {
    return use(fd, readHeader(fd, file));
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Reads every tensor of the safetensors file at `path` (one written by Python's `safetensors`,
 * by {@link saveTensors}, or any other writer) into new arrays, by name, in file order. The header
 * is validated as a checkpoint's is (format/safetensors.ts) and the `crc32` checked when present.
 * F32, F16, BF16, I32 and U8 tensors load; another dtype is a RangeError. With `as: 'float32'`,
 * F16 and BF16 tensors come back as Float32Arrays of dtype 'float32'.
 */
export function loadTensors(
  path: string,
  options?: LoadTensorsOptions,
): Record<string, LoadedTensor> {
  const target = checkPath(path);
  const o = options === undefined ? {} : checkObject('options', options);
  checkKnownKeys('options', o, ['as']);
  if (o.as !== undefined && o.as !== 'float32') throw rangeError('options.as', "'float32'", o.as);
  return withSafetensorsFile(target, (fd, header) => {
    const reads = planTensorReads(target, [...header.tensors.values()], o.as === 'float32');
    readTensors(
      fd,
      target,
      header,
      (tensor) => reads.destinations.get(tensor.name) as ArrayBufferView,
    );
    return reads.finish();
  });
}

/** The `__metadata__` of the safetensors file at `path`, crc32 included when present. */
export function loadTensorsMetadata(path: string): Record<string, string> {
  const target = checkPath(path);
  return withSafetensorsFile(target, (_, header) => Object.fromEntries(header.metadata));
}
