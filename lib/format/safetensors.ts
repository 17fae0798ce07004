// The safetensors file format (Hugging Face), written atomically and read with full validation,
// one tensor at a time.
//
// Layout (https://github.com/huggingface/safetensors, README "Format"):
//   8 bytes   N: unsigned 64-bit little-endian, the length of the header
//   N bytes   the header: a UTF-8 JSON object, starting with '{', optionally padded with spaces:
//               { "__metadata__": { "<key>": "<string>", ... },
//                 "<tensor name>": { "dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end] },
//                 ... }
//   the rest  the byte buffer: each tensor's elements, little-endian, row-major, at [begin, end)
//             counted from the start of the buffer.
// Like the reference implementation, a reader here accepts a header of at most 100 MB and only
// tensors that tile the buffer exactly (sorted by offset, each starts where the previous ends, the
// last ends at the end of the file), with end - begin == product(shape) * dtype size. Beyond it,
// this reader also rejects duplicate keys (the README disallows them; JSON.parse would keep the
// last), unknown fields in a tensor entry, and nesting deeper than the format can use.
//
// Everything is checked before anything large is allocated: the only allocation sized by the file
// is the header itself, after its length has been checked against the cap and the file's size.
//
// Integrity: the format has no checksum, and a flipped bit in a tensor or in a number of the
// header still makes a valid file. Files written here carry `__metadata__.crc32`: the CRC-32 of
// the whole file, computed with those 8 hex digits set to "00000000" (the writer streams the file,
// then patches the digits in). Readers verify it when present, as they read the tensors.
//
// Temporary files: a write goes to `.<base>.<pid>.<12 hex digits>.tmp` beside the file and is
// renamed over it. A writer killed mid-write leaves its temporary file behind; the next write to
// the same path removes those whose writer process is gone (removeStaleTemporaryFiles).

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { countOf } from '../core/errors';
import { crc32 } from './crc32';
import { type JsonValue, JsonSyntaxError, parseStrictJson } from './strict-json';

/** The largest header a reader accepts, as in the reference implementation (100 MB). */
export const MAX_HEADER_LENGTH = 100_000_000;

/** Bytes per element of each dtype the format defines. */
export const DTYPE_SIZES = new Map<string, number>([
  ['BOOL', 1],
  ['U8', 1],
  ['I8', 1],
  ['F8_E5M2', 1],
  ['F8_E4M3', 1],
  ['I16', 2],
  ['U16', 2],
  ['F16', 2],
  ['BF16', 2],
  ['I32', 4],
  ['U32', 4],
  ['F32', 4],
  ['I64', 8],
  ['U64', 8],
  ['F64', 8],
]);

export type Dtype =
  | 'BOOL'
  | 'U8'
  | 'I8'
  | 'F8_E5M2'
  | 'F8_E4M3'
  | 'I16'
  | 'U16'
  | 'F16'
  | 'BF16'
  | 'I32'
  | 'U32'
  | 'F32'
  | 'I64'
  | 'U64'
  | 'F64';

const METADATA_KEY = '__metadata__';
/** The metadata key of the whole-file CRC-32 (8 lowercase hex digits). */
export const CRC32_KEY = 'crc32';
const CRC32_PLACEHOLDER = '00000000';
const TENSOR_FIELDS = ['dtype', 'shape', 'data_offsets'];
// Linux transfers at most 2 GiB - 4 KiB per read()/write() call; larger requests are split.
const IO_CHUNK_BYTES = 1 << 30;

/**
 * A file that is not a valid safetensors file: truncated, corrupt or malformed. A RangeError (a
 * bad value from outside the program), with the project's message format.
 */
export class SafetensorsError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

/** One tensor of a header. Offsets count from the start of the byte buffer. */
export interface TensorInfo {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

/** A validated header. */
export interface SafetensorsHeader {
  /** The file offset of the byte buffer: 8 + the header length. */
  readonly dataStart: number;
  /** Every tensor, by name, in the order of their data. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** The `__metadata__` map (empty when absent). */
  readonly metadata: ReadonlyMap<string, string>;
  /** The first 8 + N bytes of the file, for the checksum. */
  readonly prefix: Uint8Array;
}

/** A tensor to write: `data` holds its bytes (a view; never copied). */
export interface TensorToWrite {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly data: ArrayBufferView;
}

/**
 * The file operations a write uses. Tests substitute them to make a write fail midway; everything
 * else uses {@link nodeFileOps}.
 */
export interface FileOps {
  openSync(file: string, flags: string, mode: number): number;
  /** Writes at `position`, or at the current position when it is null. */
  writeSync(
    fd: number,
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number | null,
  ): number;
  fsyncSync(fd: number): void;
  closeSync(fd: number): void;
  renameSync(from: string, to: string): void;
  unlinkSync(file: string): void;
}

export const nodeFileOps: FileOps = {
  openSync: (file, flags, mode) => fs.openSync(file, flags, mode),
  writeSync: (fd, buffer, offset, length, position) =>
    fs.writeSync(fd, buffer, offset, length, position),
  fsyncSync: (fd) => {
    fs.fsyncSync(fd);
  },
  closeSync: (fd) => {
    fs.closeSync(fd);
  },
  renameSync: (from, to) => {
    fs.renameSync(from, to);
  },
  unlinkSync: (file) => {
    fs.unlinkSync(file);
  },
};

/**
 * Float32Arrays are written and read as their memory holds them, which is the file's little-endian
 * order only on a little-endian CPU (x86, ARM as Node runs on it). A big-endian host would need a
 * byte swap per element; rather than write files other readers misread, it is refused.
 */
export function assertLittleEndianHost(): void {
  if (os.endianness() !== 'LE') {
    throw new Error(
      'simd-adamw: safetensors files are little-endian and this host is big-endian; ' +
        'reading and writing them here is not supported',
    );
  }
}

// The one message format (lib/core/errors.ts) for a file's contents: <name> is the file, or a part
// of it (`subject`: "the header", "tensor 'x'") of the file.
function formatError(
  file: string,
  subject: string,
  expected: string,
  received: string,
  why?: string,
): SafetensorsError {
  const where = subject === '' ? `the safetensors file '${file}'` : `${subject} of '${file}'`;
  const tail = why === undefined ? '' : ` (${why})`;
  return new SafetensorsError(`Expected ${expected} for ${where} but received ${received}${tail}`);
}

/** A short rendering of a header value for a message. */
function show(value: JsonValue | undefined): string {
  if (value === undefined) return 'nothing';
  if (value instanceof Map) return 'an object';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 60)}...` : text;
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Reads exactly `into.byteLength` bytes at `position`; a short file is a SafetensorsError. */
function readFully(fd: number, file: string, into: Uint8Array, position: number): void {
  let done = 0;
  while (done < into.byteLength) {
    const length = Math.min(into.byteLength - done, IO_CHUNK_BYTES);
    const read = fs.readSync(fd, into, done, length, position + done);
    if (read === 0) {
      throw formatError(
        file,
        '',
        `${countOf(into.byteLength, 'byte')} at offset ${position}`,
        `the end of the file after ${countOf(done, 'byte')}`,
        'the file shrank while it was read',
      );
    }
    done += read;
  }
}

/**
 * Reads and validates the header of the open file `fd` (named `file` in messages). Throws a
 * SafetensorsError for anything the format does not allow; reads at most 8 + the header length.
 */
export function readHeader(fd: number, file: string): SafetensorsHeader {
  const fileSize = fs.fstatSync(fd).size;
  if (fileSize < 8) {
    throw formatError(
      file,
      '',
      'at least 8 bytes',
      countOf(fileSize, 'byte'),
      'a safetensors file starts with the 8-byte length of its header',
    );
  }
  const lengthBytes = new Uint8Array(8);
  readFully(fd, file, lengthBytes, 0);
  const declaredLength = new DataView(lengthBytes.buffer).getBigUint64(0, true);
  if (declaredLength > BigInt(MAX_HEADER_LENGTH)) {
    throw formatError(
      file,
      'the header length',
      `at most ${countOf(MAX_HEADER_LENGTH, 'byte')}`,
      `${String(declaredLength)} bytes`,
    );
  }
  const headerLength = Number(declaredLength);
  if (8 + headerLength > fileSize) {
    throw formatError(
      file,
      'the header length',
      `at most ${countOf(fileSize - 8, 'byte')}`,
      countOf(headerLength, 'byte'),
      `the file has ${countOf(fileSize, 'byte')}, 8 of them the header length`,
    );
  }
  const prefix = new Uint8Array(8 + headerLength);
  prefix.set(lengthBytes);
  readFully(fd, file, prefix.subarray(8), 8);
  const root = parseHeaderJson(file, prefix.subarray(8));
  const bufferLength = fileSize - 8 - headerLength;

  let metadata: ReadonlyMap<string, string> = new Map();
  const tensors: TensorInfo[] = [];
  for (const [name, value] of root) {
    if (name === METADATA_KEY) metadata = validateMetadata(file, value);
    else tensors.push(validateTensor(file, name, value, bufferLength));
  }
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expectedBegin = 0;
  for (const tensor of tensors) {
    if (tensor.begin !== expectedBegin) {
      throw formatError(
        file,
        `tensor '${tensor.name}'`,
        `data starting at offset ${expectedBegin}`,
        `data_offsets [${tensor.begin}, ${tensor.end}]`,
        `tensors must tile the buffer without ${tensor.begin > expectedBegin ? 'gaps' : 'overlaps'}`,
      );
    }
    expectedBegin = tensor.end;
  }
  if (expectedBegin !== bufferLength) {
    throw formatError(
      file,
      '',
      `tensors covering all ${countOf(bufferLength, 'byte')} of the buffer after the header`,
      `tensors covering ${countOf(expectedBegin, 'byte')}`,
    );
  }
  const crc = metadata.get(CRC32_KEY);
  if (crc !== undefined && !/^[0-9a-f]{8}$/.test(crc)) {
    throw formatError(file, `${METADATA_KEY}.${CRC32_KEY}`, '8 lowercase hex digits', show(crc));
  }
  return {
    dataStart: 8 + headerLength,
    tensors: new Map(tensors.map((tensor) => [tensor.name, tensor])),
    metadata,
    prefix,
  };
}

function parseHeaderJson(file: string, bytes: Uint8Array): Map<string, JsonValue> {
  let text: string;
  try {
    // ignoreBOM keeps a byte-order mark in the text, where the '{' check below rejects it.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw formatError(file, 'the header', 'UTF-8 text', 'invalid UTF-8');
  }
  if (!text.startsWith('{')) {
    throw formatError(
      file,
      'the header',
      "a JSON object starting with '{'",
      show(text.slice(0, 20)),
    );
  }
  let root: JsonValue;
  try {
    root = parseStrictJson(text);
  } catch (error) {
    if (error instanceof JsonSyntaxError) {
      throw formatError(file, 'the header', 'well-formed JSON', 'invalid JSON', error.message);
    }
    throw error;
  }
  if (!(root instanceof Map)) throw formatError(file, 'the header', 'a JSON object', show(root));
  return root;
}

function validateMetadata(file: string, value: JsonValue): ReadonlyMap<string, string> {
  // The reference implementation reads `"__metadata__": null` as no metadata.
  if (value === null) return new Map();
  if (!(value instanceof Map)) {
    throw formatError(file, METADATA_KEY, 'an object of strings', show(value));
  }
  const metadata = new Map<string, string>();
  for (const [key, entry] of value) {
    if (typeof entry !== 'string') {
      throw formatError(file, `${METADATA_KEY}.${key}`, 'a string', show(entry));
    }
    metadata.set(key, entry);
  }
  return metadata;
}

function isOffset(value: JsonValue | undefined): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function validateTensor(
  file: string,
  name: string,
  value: JsonValue,
  bufferLength: number,
): TensorInfo {
  const subject = `tensor '${name}'`;
  if (!(value instanceof Map)) {
    throw formatError(file, subject, 'an object { dtype, shape, data_offsets }', show(value));
  }
  for (const key of value.keys()) {
    if (!TENSOR_FIELDS.includes(key)) {
      throw formatError(
        file,
        subject,
        `only the fields ${TENSOR_FIELDS.join(', ')}`,
        `the field ${JSON.stringify(key)}`,
      );
    }
  }
  const dtype = value.get('dtype');
  const dtypeSize = typeof dtype === 'string' ? DTYPE_SIZES.get(dtype) : undefined;
  if (typeof dtype !== 'string' || dtypeSize === undefined) {
    throw formatError(
      file,
      `${subject}.dtype`,
      `one of ${[...DTYPE_SIZES.keys()].join(', ')}`,
      show(dtype),
    );
  }
  const shape = value.get('shape');
  if (!Array.isArray(shape) || !shape.every(isOffset)) {
    throw formatError(file, `${subject}.shape`, 'an array of integers >= 0', show(shape));
  }
  const offsets = value.get('data_offsets');
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isOffset)) {
    throw formatError(
      file,
      `${subject}.data_offsets`,
      'two integers [begin, end] >= 0',
      show(offsets),
    );
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end || end > bufferLength) {
    throw formatError(
      file,
      `${subject}.data_offsets`,
      `begin <= end <= ${bufferLength} (the size of the byte buffer)`,
      show(offsets),
    );
  }
  // end - begin <= bufferLength < 2^53, so stopping once the product passes it keeps it exact.
  let bytes = shape.includes(0) ? 0 : dtypeSize;
  for (const dimension of shape) {
    if (bytes > bufferLength) break;
    bytes *= dimension;
  }
  if (bytes !== end - begin) {
    throw formatError(
      file,
      subject,
      `data_offsets spanning product(shape) * ${dtypeSize} bytes`,
      `data_offsets [${begin}, ${end}], which span ${countOf(end - begin, 'byte')}`,
      `dtype ${dtype}, shape ${show(shape)}`,
    );
  }
  return { name, dtype: dtype as Dtype, shape, begin, end };
}

function indexOfBytes(haystack: Uint8Array, needle: Uint8Array): number {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength).indexOf(needle);
}

/** The checksum field as it appears in a header: `"crc32":"<8 hex digits>"`. */
function crcField(digits: string): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(CRC32_KEY)}:"${digits}"`);
}

/**
 * Reads every tensor of the file, in the order of their data, into `destination(tensor)` (a view
 * exactly as long as the tensor's bytes). With `__metadata__.crc32` in the header, checks the
 * file's CRC-32 after the last tensor: a mismatch is a SafetensorsError, so a caller that reads into
 * new arrays and keeps them only on success never uses corrupt data.
 */
export function readTensors(
  fd: number,
  file: string,
  header: SafetensorsHeader,
  destination: (tensor: TensorInfo) => ArrayBufferView,
): void {
  const expectedCrc = header.metadata.get(CRC32_KEY);
  let crc = 0;
  if (expectedCrc !== undefined) {
    // The header as it was when the writer computed the checksum: the digits zeroed.
    const field = crcField(expectedCrc);
    const at = 8 + indexOfBytes(header.prefix.subarray(8), field);
    if (at < 8) {
      throw formatError(
        file,
        'the header',
        `the checksum written verbatim as ${new TextDecoder().decode(field)}`,
        'another spelling',
      );
    }
    const zeroed = header.prefix.slice();
    zeroed.set(crcField(CRC32_PLACEHOLDER), at);
    crc = crc32(zeroed, 0);
  }
  for (const tensor of header.tensors.values()) {
    const into = destination(tensor);
    const length = tensor.end - tensor.begin;
    if (into.byteLength !== length) {
      throw new Error(
        `simd-adamw: internal error: ${into.byteLength} bytes for a ${length}-byte tensor`,
      );
    }
    const bytes = new Uint8Array(into.buffer, into.byteOffset, into.byteLength);
    readFully(fd, file, bytes, header.dataStart + tensor.begin);
    if (expectedCrc !== undefined) crc = crc32(bytes, crc);
  }
  if (expectedCrc !== undefined) {
    const actual = crc.toString(16).padStart(8, '0');
    if (actual !== expectedCrc) {
      throw formatError(
        file,
        '',
        `contents matching their CRC-32 ${expectedCrc} (${METADATA_KEY}.${CRC32_KEY})`,
        `contents with CRC-32 ${actual}`,
        'the file is corrupt',
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

// Lone surrogates survive JSON.stringify as \udXXX escapes, which the reference reader rejects.
function isWellFormedUnicode(text: string): boolean {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);
}

/** The 8-byte length and the header JSON, padded with spaces so the buffer starts 8-aligned. */
function encodeHeader(
  file: string,
  tensors: readonly TensorToWrite[],
  metadata: Readonly<Record<string, string>>,
): Uint8Array {
  const names = new Set<string>();
  const entries: string[] = [];
  // The checksum goes first, so the first `"crc32":"` of the header is it.
  const metadataEntries: [string, string][] = [
    [CRC32_KEY, CRC32_PLACEHOLDER],
    ...Object.entries(metadata).filter(([key]) => key !== CRC32_KEY),
  ];
  const metadataJson = metadataEntries
    .map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value)}`)
    .join(',');
  entries.push(`${JSON.stringify(METADATA_KEY)}:{${metadataJson}}`);
  let offset = 0;
  for (const tensor of tensors) {
    const dtypeSize = DTYPE_SIZES.get(tensor.dtype);
    const subject = `tensor '${tensor.name}' written to '${file}'`;
    if (dtypeSize === undefined) {
      throw new RangeError(
        `Expected one of ${[...DTYPE_SIZES.keys()].join(', ')} for the dtype of ${subject} but ` +
          `received '${tensor.dtype}'`,
      );
    }
    if (tensor.name === METADATA_KEY || names.has(tensor.name)) {
      throw new RangeError(
        `Expected a unique tensor name other than ${METADATA_KEY} for the tensors written to ` +
          `'${file}' but received '${tensor.name}' ` +
          (tensor.name === METADATA_KEY ? "(the key of the header's metadata)" : 'twice'),
      );
    }
    if (!isWellFormedUnicode(tensor.name)) {
      throw new RangeError(
        `Expected a name without unpaired UTF-16 surrogates for ${subject} but received ` +
          `'${tensor.name}'`,
      );
    }
    names.add(tensor.name);
    const elements = tensor.shape.reduce((product, dimension) => product * dimension, 1);
    if (elements * dtypeSize !== tensor.data.byteLength) {
      throw new RangeError(
        `Expected ${countOf(elements * dtypeSize, 'byte')} (dtype ${tensor.dtype}, shape ` +
          `[${tensor.shape.join(', ')}]) for the data of ${subject} but received ` +
          countOf(tensor.data.byteLength, 'byte'),
      );
    }
    const end = offset + tensor.data.byteLength;
    const info = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, end] };
    entries.push(`${JSON.stringify(tensor.name)}:${JSON.stringify(info)}`);
    offset = end;
  }
  const json = new TextEncoder().encode(`{${entries.join(',')}}`);
  const paddedLength = Math.ceil(json.length / 8) * 8;
  const header = new Uint8Array(8 + paddedLength).fill(0x20, 8 + json.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(paddedLength), true);
  header.set(json, 8);
  return header;
}

function writeFully(ops: FileOps, fd: number, bytes: Uint8Array, position: number | null): void {
  let done = 0;
  while (done < bytes.byteLength) {
    const length = Math.min(bytes.byteLength - done, IO_CHUNK_BYTES);
    done += ops.writeSync(fd, bytes, done, length, position === null ? null : position + done);
  }
}

/**
 * Writes a safetensors file atomically: into a new temporary file in the same folder, flushed to
 * disk (fsync), then renamed over `file` and the folder flushed. A crash or an error at any point
 * leaves the previous `file` as it was; an error also removes the temporary file. The tensors'
 * bytes are written from their own memory, one tensor at a time, without a copy. The metadata
 * gains `crc32`, the file's checksum (see the top of this file).
 */
export function writeSafetensors(
  file: string,
  tensors: readonly TensorToWrite[],
  metadata: Readonly<Record<string, string>>,
  ops: FileOps = nodeFileOps,
): void {
  assertLittleEndianHost();
  const header = encodeHeader(file, tensors, metadata);
  const folder = path.dirname(path.resolve(file));
  const base = path.basename(file);
  removeStaleTemporaryFiles(folder, base);
  const temporary = path.join(
    folder,
    `.${base}.${process.pid}.${randomBytes(TEMPORARY_ID_BYTES).toString('hex')}.tmp`,
  );
  // 'wx': never reuse an existing file (a stale temporary file or a symlink someone planted).
  const fd = ops.openSync(temporary, 'wx', 0o666);
  let open = true;
  try {
    writeFully(ops, fd, header, null);
    let crc = crc32(header, 0);
    for (const tensor of tensors) {
      const data = tensor.data;
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      writeFully(ops, fd, bytes, null);
      crc = crc32(bytes, crc);
    }
    const digits = new TextEncoder().encode(crc.toString(16).padStart(8, '0'));
    writeFully(ops, fd, digits, crcDigitsOffset(header));
    ops.fsyncSync(fd);
    open = false;
    ops.closeSync(fd);
    ops.renameSync(temporary, file);
  } catch (error) {
    if (open)
      ignoreErrors(() => {
        ops.closeSync(fd);
      });
    ignoreErrors(() => {
      ops.unlinkSync(temporary);
    });
    throw error;
  }
  fsyncFolder(folder);
}

const TEMPORARY_ID_BYTES = 6;

/**
 * Removes the temporary files a killed writer left beside `folder/base`: exactly those named as
 * writeSafetensors names them, `.<base>.<pid>.<12 hex digits>.tmp`, whose writer process no longer
 * exists (signal 0 to it fails with ESRCH). A live pid (EPERM: another user's process) may be
 * writing, and this process's own pid may be a worker thread's write in progress: both are left,
 * as is every other file. A pid reused since by another process keeps its file until that one
 * ends too. Failures are ignored: the cleanup must never stop the save.
 */
export function removeStaleTemporaryFiles(folder: string, base: string): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(folder);
  } catch {
    return;
  }
  const prefix = `.${base}.`;
  const rest = new RegExp(`^([1-9][0-9]{0,9})\\.[0-9a-f]{${2 * TEMPORARY_ID_BYTES}}\\.tmp$`);
  for (const entry of entries) {
    if (!entry.startsWith(prefix)) continue;
    const match = rest.exec(entry.slice(prefix.length));
    if (match === null) continue;
    const pid = Number(match[1]);
    if (pid === process.pid || pid > 0x7fffffff || isProcessAlive(pid)) continue;
    ignoreErrors(() => {
      fs.unlinkSync(path.join(folder, entry));
    });
  }
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Where the placeholder digits of the checksum field are in the encoded header. */
function crcDigitsOffset(header: Uint8Array): number {
  const field = crcField(CRC32_PLACEHOLDER);
  return indexOfBytes(header, field) + field.length - 1 - CRC32_PLACEHOLDER.length;
}

function ignoreErrors(action: () => void): void {
  try {
    action();
  } catch {
    // Cleaning up after an earlier error, which is the one to report.
  }
}

// Makes the rename itself durable. Some systems cannot open or flush a folder (Windows: EISDIR or
// EPERM); there the rename is as durable as the system makes it.
function fsyncFolder(folder: string): void {
  let fd: number;
  try {
    fd = fs.openSync(folder, 'r');
  } catch {
    return;
  }
  try {
    fs.fsyncSync(fd);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'ENOTSUP')
      throw error;
  } finally {
    fs.closeSync(fd);
  }
}
