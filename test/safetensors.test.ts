// The safetensors format layer (lib/format/safetensors.ts): files it writes are what the specification
// describes (checked by an independent reader written here from the spec, since neither Python's
// `safetensors` nor `torch` is installed on the machines this runs on), it reads files built by
// hand from the spec, and it turns every malformed, truncated or corrupted file into a
// SafetensorsError; writes are atomic.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

import { crc32, crc32Portable } from '../lib/format/crc32';
import {
  type FileOps,
  MAX_HEADER_LENGTH,
  nodeFileOps,
  readHeader,
  readTensors,
  type SafetensorsHeader,
  SafetensorsError,
  type TensorToWrite,
  writeSafetensors,
} from '../lib/format/safetensors';

let folder: string;
beforeAll(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-safetensors-'));
});
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});

let fileCount = 0;
function writeTemp(bytes: Uint8Array): string {
  const file = path.join(folder, `case-${fileCount++}.safetensors`);
  fs.writeFileSync(file, bytes);
  return file;
}

/** Reads the header and every tensor of `file` with the module under test. */
function readAll(file: string): { header: SafetensorsHeader; data: Map<string, Uint8Array> } {
  const fd = fs.openSync(file, 'r');
  try {
    const header = readHeader(fd, file);
    const data = new Map<string, Uint8Array>();
    readTensors(fd, file, header, (tensor) => {
      const bytes = new Uint8Array(tensor.end - tensor.begin);
      data.set(tensor.name, bytes);
      return bytes;
    });
    return { header, data };
  } finally {
    fs.closeSync(fd);
  }
}

function readBytes(bytes: Uint8Array) {
  return readAll(writeTemp(bytes));
}

/** A file per the spec: 8-byte little-endian header length, the header text, the buffer. */
function buildFile(header: string, buffer: Uint8Array = new Uint8Array(0)): Uint8Array {
  const text = new TextEncoder().encode(header);
  const file = new Uint8Array(8 + text.length + buffer.length);
  new DataView(file.buffer).setBigUint64(0, BigInt(text.length), true);
  file.set(text, 8);
  file.set(buffer, 8 + text.length);
  return file;
}

function f32Bytes(values: number[]): Uint8Array {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  values.forEach((value, i) => {
    view.setFloat32(i * 4, value, true);
  });
  return bytes;
}

interface IndependentTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
  fileOffset: number;
}

/**
 * An independent reader, straight from the specification: u64 LE header length, JSON header,
 * offsets relative to the byte buffer. Shares no code with lib/.
 */
function independentRead(file: Uint8Array): {
  headerLength: number;
  headerText: string;
  metadata: Record<string, string>;
  tensors: Map<string, IndependentTensor>;
} {
  const headerLength = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  const headerText = Buffer.from(file.subarray(8, 8 + headerLength)).toString('utf8');
  const parsed = JSON.parse(headerText) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const start = 8 + headerLength;
  const tensors = new Map<string, IndependentTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, info] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      metadata = info as unknown as Record<string, string>;
      continue;
    }
    const [begin, end] = info.data_offsets;
    tensors.set(name, {
      dtype: info.dtype,
      shape: info.shape,
      bytes: file.slice(start + begin, start + end),
      fileOffset: start + begin,
    });
  }
  return { headerLength, headerText, metadata, tensors };
}

/** The CRC-32 a file written here must carry, computed with Node's zlib, per the documented rule. */
function independentCrc(file: Uint8Array, digits: string): string {
  const text = Buffer.from(file);
  const field = Buffer.from(`"crc32":"${digits}"`);
  const at = text.indexOf(field);
  expect(at).toBeGreaterThan(8);
  const zeroed = Buffer.concat([
    text.subarray(0, at),
    Buffer.from('"crc32":"00000000"'),
    text.subarray(at + field.length),
  ]);
  return zlib.crc32(zeroed).toString(16).padStart(8, '0');
}

function sampleTensors(): TensorToWrite[] {
  return [
    { name: 'a.f64', dtype: 'F64', shape: [2], data: new Float64Array([Math.PI, -0]) },
    { name: 'b.step', dtype: 'I64', shape: [], data: new BigInt64Array([123456789012345n]) },
    {
      name: 'c.weights "quoted" \\ é 😀',
      dtype: 'F32',
      shape: [2, 3],
      data: new Float32Array([1, -2, NaN, Infinity, 1e-45, -0]),
    },
    { name: 'd.empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
    { name: 'e.bytes', dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 255]) },
  ];
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

describe('writeSafetensors output, read by an independent reader', () => {
  const file = () => path.join(folder, 'sample.safetensors');
  let bytes: Uint8Array;
  beforeAll(() => {
    writeSafetensors(file(), sampleTensors(), { note: 'any "string" é', format: 'test' });
    bytes = new Uint8Array(fs.readFileSync(file()));
  });

  it('has an 8-aligned, space-padded JSON header that starts with {', () => {
    const { headerLength, headerText } = independentRead(bytes);
    expect(headerLength % 8).toBe(0);
    expect(headerText.startsWith('{')).toBe(true);
    expect(headerText).toBe(
      headerText.trimEnd() + ' '.repeat(headerText.length - headerText.trimEnd().length),
    );
    expect(headerText.length - headerText.trimEnd().length).toBeLessThan(8);
  });

  it('holds every tensor with its dtype, shape and exact bytes, tiling the buffer in order', () => {
    const { headerLength, tensors } = independentRead(bytes);
    const expected = sampleTensors();
    expect([...tensors.keys()]).toEqual(expected.map((t) => t.name));
    let offset = 8 + headerLength;
    for (const tensor of expected) {
      const found = tensors.get(tensor.name)!;
      expect(found.dtype).toBe(tensor.dtype);
      expect(found.shape).toEqual(tensor.shape);
      expect(found.fileOffset).toBe(offset);
      expect(found.bytes).toEqual(bytesOf(tensor.data));
      offset += tensor.data.byteLength;
    }
    expect(offset).toBe(bytes.length);
  });

  it('keeps the metadata and adds crc32, the CRC-32 of the file with its digits zeroed', () => {
    const { metadata } = independentRead(bytes);
    expect(metadata.note).toBe('any "string" é');
    expect(metadata.format).toBe('test');
    expect(metadata.crc32).toMatch(/^[0-9a-f]{8}$/);
    expect(independentCrc(bytes, metadata.crc32!)).toBe(metadata.crc32);
  });

  it('reads back with the module under test, bit for bit', () => {
    const { header, data } = readAll(file());
    for (const tensor of sampleTensors()) {
      expect(header.tensors.get(tensor.name)?.dtype).toBe(tensor.dtype);
      expect(header.tensors.get(tensor.name)?.shape).toEqual(tensor.shape);
      expect(data.get(tensor.name)).toEqual(bytesOf(tensor.data));
    }
    expect(header.metadata.get('note')).toBe('any "string" é');
  });

  it('writes float32 NaN payloads and signed zeros unchanged', () => {
    const words = new Uint32Array([0x7fc00001, 0xffbfffff, 0x7f800001, 0x80000000]);
    const target = path.join(folder, 'nan.safetensors');
    writeSafetensors(
      target,
      [{ name: 'x', dtype: 'F32', shape: [4], data: new Float32Array(words.buffer) }],
      {},
    );
    const into = new Uint32Array(4);
    const fd = fs.openSync(target, 'r');
    try {
      readTensors(fd, target, readHeader(fd, target), () => into);
    } finally {
      fs.closeSync(fd);
    }
    expect(into).toEqual(words);
  });
});

describe('readHeader and readTensors on files built from the spec', () => {
  it('read the format documentation example: F32 [1, 2, 3], no metadata', () => {
    const file = buildFile(
      '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}',
      f32Bytes([0, 1, 2, 3, 4, 5]),
    );
    expect(file.length).toBe(8 + 64 + 24);
    const { header, data } = readBytes(file);
    expect(header.metadata.size).toBe(0);
    expect(header.tensors.get('attn.0')).toEqual({
      name: 'attn.0',
      dtype: 'F32',
      shape: [1, 2, 3],
      begin: 0,
      end: 24,
    });
    expect(new Float32Array(data.get('attn.0')!.buffer)).toEqual(
      new Float32Array([0, 1, 2, 3, 4, 5]),
    );
  });

  it('accept any key order, whitespace, padding, null metadata, 0-rank and empty tensors', () => {
    const header =
      '{ "z" : {"data_offsets":[8,12], "shape":[1], "dtype":"I32"},\n' +
      '  "__metadata__": null, "empty": {"dtype":"F16","shape":[3,0],"data_offsets":[8,8]},\n' +
      '  "a": {"dtype":"I64","shape":[],"data_offsets":[0,8]} }   ';
    const buffer = new Uint8Array(12);
    new DataView(buffer.buffer).setBigInt64(0, -5n, true);
    new DataView(buffer.buffer).setInt32(8, 7, true);
    const { header: parsed, data } = readBytes(buildFile(header, buffer));
    expect([...parsed.tensors.keys()]).toEqual(['a', 'empty', 'z']);
    expect(new BigInt64Array(data.get('a')!.buffer)[0]).toBe(-5n);
    expect(new Int32Array(data.get('z')!.buffer)[0]).toBe(7);
    expect(data.get('empty')!.length).toBe(0);
  });

  it('accept a file with no tensors', () => {
    const { header } = readBytes(buildFile('{}      '));
    expect(header.tensors.size).toBe(0);
  });
});

const tensorA = '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}';
const eightBytes = new Uint8Array(8);

describe('malformed files are SafetensorsErrors', () => {
  function rawLength(length: bigint, rest: Uint8Array = new Uint8Array(0)): Uint8Array {
    const file = new Uint8Array(8 + rest.length);
    new DataView(file.buffer).setBigUint64(0, length, true);
    file.set(rest, 8);
    return file;
  }

  const cases: [string, Uint8Array, RegExp][] = [
    ['an empty file', new Uint8Array(0), /at least 8 bytes .* received 0 bytes/],
    [
      'a 7-byte file',
      new Uint8Array(7),
      /at least 8 bytes for the safetensors file '.*' but received 7 bytes \(/,
    ],
    ['a 1-byte file', new Uint8Array(1), /but received 1 byte \(a safetensors file starts with/],
    [
      'a header length of 2^64 - 1',
      rawLength(0xffffffffffffffffn),
      /Expected at most 100000000 bytes for the header length of '.*' but received 18446744073709551615 bytes$/,
    ],
    ['a header length just over the cap', rawLength(BigInt(MAX_HEADER_LENGTH) + 1n), /at most/],
    [
      'a header length beyond the file',
      rawLength(100n, new TextEncoder().encode('{}')),
      /at most 2 bytes for the header length of '.*' but received 100 bytes \(the file has 10 bytes/,
    ],
    ['invalid UTF-8', buildFile('{"\xff"}').map((b, i) => (i === 10 ? 0xff : b)), /UTF-8/],
    ['a byte-order mark', buildFile('\ufeff{}'), /starting with '\{'/],
    ['leading whitespace', buildFile(' {}'), /starting with '\{'/],
    ['a JSON array', buildFile('[]'), /starting with '\{'/],
    ['truncated JSON', buildFile('{"a":{"dtype":"F32"'), /well-formed JSON/],
    ['text after the JSON', buildFile('{} x'), /well-formed JSON/],
    [
      'duplicate tensor names',
      buildFile(`{${tensorA},${tensorA}}`, eightBytes),
      /Duplicate key "a"/,
    ],
    ['nesting 100000 deep', buildFile('{"a":' + '['.repeat(100000)), /deeper than 64/],
    ['a tensor that is not an object', buildFile('{"a":[1]}'), /tensor 'a'/],
    [
      'an unknown dtype',
      buildFile('{"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}}', eightBytes),
      /one of BOOL, U8.* for tensor 'a'.dtype .* received "F31"/,
    ],
    [
      'a lowercase dtype',
      buildFile('{"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}', eightBytes),
      /dtype/,
    ],
    [
      'a missing dtype',
      buildFile('{"a":{"shape":[2],"data_offsets":[0,8]}}', eightBytes),
      /received nothing/,
    ],
    [
      'an unknown field',
      buildFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}', eightBytes),
      /only the fields dtype, shape, data_offsets for tensor 'a' of '.*' but received the field "x"$/,
    ],
    [
      'a negative dimension',
      buildFile('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', eightBytes),
      /integers >= 0 for tensor 'a'.shape .* received \[-2\]/,
    ],
    [
      'a fractional dimension',
      buildFile('{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}}', eightBytes),
      /shape/,
    ],
    [
      'a dimension past 2^53',
      buildFile('{"a":{"dtype":"F32","shape":[1e300],"data_offsets":[0,8]}}', eightBytes),
      /shape/,
    ],
    [
      'a shape that is not an array',
      buildFile('{"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}', eightBytes),
      /shape/,
    ],
    [
      'a wrong shape (more elements than bytes)',
      buildFile('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', eightBytes),
      /product\(shape\) \* 4 bytes .* 8 bytes/,
    ],
    [
      'a wrong dtype (F64 for 8 bytes of shape [2])',
      buildFile('{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}}', eightBytes),
      /product\(shape\) \* 8 bytes/,
    ],
    [
      'a shape whose product overflows',
      buildFile(
        '{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}',
        eightBytes,
      ),
      /product\(shape\)/,
    ],
    [
      'offsets past the end of the file',
      buildFile('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', eightBytes),
      /begin <= end <= 8/,
    ],
    [
      'begin after end',
      buildFile('{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', eightBytes),
      /begin <= end/,
    ],
    [
      'three offsets',
      buildFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}', eightBytes),
      /two integers/,
    ],
    [
      'negative offsets',
      buildFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}', eightBytes),
      /two integers/,
    ],
    [
      'overlapping tensors',
      buildFile(
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
          '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
        new Uint8Array(12),
      ),
      /offset 8 for tensor 'b' of '.*' but received data_offsets \[4, 12\] \(.* without overlaps\)$/,
    ],
    [
      'two tensors on the same bytes',
      buildFile(
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
          '"b":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}',
        eightBytes,
      ),
      /overlaps/,
    ],
    [
      'a gap between tensors',
      buildFile(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
          '"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}',
        new Uint8Array(12),
      ),
      /starting at offset 4 for tensor 'b' of .* \(.* without gaps\)$/,
    ],
    [
      'a buffer not starting at offset 0',
      buildFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', eightBytes),
      /gaps/,
    ],
    [
      'bytes after the last tensor',
      buildFile(`{${tensorA}}`, new Uint8Array(9)),
      /covering all 9 bytes of the buffer .* covering 8 bytes$/,
    ],
    ['metadata that is not an object', buildFile('{"__metadata__":[]}'), /__metadata__/],
    [
      'a metadata value that is not a string',
      buildFile('{"__metadata__":{"k":1}}'),
      /__metadata__.k/,
    ],
    ['a malformed crc32', buildFile('{"__metadata__":{"crc32":"ABCDEF00"}}'), /8 lowercase hex/],
  ];

  it.each(cases)('%s', (_, bytes, message) => {
    const file = writeTemp(bytes);
    let error: unknown;
    try {
      readAll(file);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(SafetensorsError);
    expect(error).toBeInstanceOf(RangeError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).toContain(file);
  });

  it('a wrong checksum', () => {
    const target = path.join(folder, 'crc.safetensors');
    writeSafetensors(target, sampleTensors(), {});
    const bytes = new Uint8Array(fs.readFileSync(target));
    bytes[bytes.length - 1]! ^= 1;
    expect(() => readBytes(bytes)).toThrow(/CRC-32 .* \(the file is corrupt\)$/);
  });

  it('a checksum not written as "crc32":"<digits>"', () => {
    const header = '{"__metadata__":{"crc32" : "00000000"}}';
    expect(() => readBytes(buildFile(header))).toThrow(/written verbatim/);
  });

  it('a file that shrinks after its header was read', () => {
    const target = path.join(folder, 'shrinks.safetensors');
    writeSafetensors(target, sampleTensors(), {});
    const fd = fs.openSync(target, 'r+');
    try {
      const header = readHeader(fd, target);
      fs.ftruncateSync(fd, fs.fstatSync(fd).size - 3);
      expect(() => readTensors(fd, target, header, (t) => new Uint8Array(t.end - t.begin))).toThrow(
        /but received the end of the file after \d+ bytes? \(the file shrank while it was read\)$/,
      );
    } finally {
      fs.closeSync(fd);
    }
  });
});

describe('corrupted copies of a written file', () => {
  let good: Uint8Array;
  let headerEnd: number;
  beforeAll(() => {
    const target = path.join(folder, 'good.safetensors');
    writeSafetensors(target, sampleTensors(), { format: 'test' });
    good = new Uint8Array(fs.readFileSync(target));
    headerEnd = 8 + Number(new DataView(good.buffer).getBigUint64(0, true));
  });

  it('every truncation is a SafetensorsError', () => {
    for (let length = 0; length < good.length; length++) {
      expect(() => readBytes(good.slice(0, length))).toThrow(SafetensorsError);
    }
  });

  it('every flipped byte is a SafetensorsError, except in the name "crc32", which removes the check', () => {
    const crcKey = Buffer.from(good).indexOf('"crc32"') + 1;
    for (let i = 0; i < good.length; i++) {
      for (const mask of [0x01, 0x20, 0x80, 0xff]) {
        const bytes = good.slice();
        bytes[i]! ^= mask;
        let header: SafetensorsHeader | undefined;
        try {
          header = readBytes(bytes).header;
        } catch (error) {
          expect(error).toBeInstanceOf(SafetensorsError);
          continue;
        }
        // Still readable: only a changed key name can make the checksum field disappear.
        expect(i >= crcKey && i < crcKey + 5 && i < headerEnd).toBe(true);
        expect(header.metadata.has('crc32')).toBe(false);
      }
    }
  });
});

describe('writeSafetensors is atomic', () => {
  const target = () => path.join(folder, 'atomic', 'state.safetensors');
  const previous = [
    { name: 'old', dtype: 'F32' as const, shape: [3], data: new Float32Array([1, 2, 3]) },
  ];
  const next = [
    { name: 'new', dtype: 'F32' as const, shape: [4096], data: new Float32Array(4096).fill(7) },
  ];
  let previousBytes: Buffer;

  beforeEach(() => {
    fs.rmSync(path.dirname(target()), { recursive: true, force: true });
    fs.mkdirSync(path.dirname(target()));
    writeSafetensors(target(), previous, {});
    previousBytes = fs.readFileSync(target());
  });

  function expectPreviousIntact(): void {
    expect(fs.readdirSync(path.dirname(target()))).toEqual(['state.safetensors']);
    expect(fs.readFileSync(target())).toEqual(previousBytes);
    expect(readAll(target()).header.tensors.has('old')).toBe(true);
  }

  function failingAfter(bytes: number): FileOps {
    let written = 0;
    return {
      ...nodeFileOps,
      writeSync: (fd, buffer, offset, length, position) => {
        if (written + length > bytes) throw new Error('injected: disk full');
        written += length;
        return nodeFileOps.writeSync(fd, buffer, offset, length, position);
      },
    };
  }

  it.each([0, 8, 100, 5000, 16000])(
    'a write failing after %i bytes leaves the previous file and no temporary file',
    (bytes) => {
      expect(() => writeSafetensors(target(), next, {}, failingAfter(bytes))).toThrow(
        'injected: disk full',
      );
      expectPreviousIntact();
    },
  );

  it.each(['fsyncSync', 'closeSync', 'renameSync'] as const)(
    'a failing %s leaves the previous file and no temporary file',
    (operation) => {
      const ops: FileOps = {
        ...nodeFileOps,
        [operation]: () => {
          throw new Error(`injected: ${operation}`);
        },
      };
      // A failed close still closes the descriptor on Linux; close it for real to not leak it.
      if (operation === 'closeSync') {
        ops.closeSync = (fd) => {
          nodeFileOps.closeSync(fd);
          throw new Error('injected: closeSync');
        };
      }
      expect(() => writeSafetensors(target(), next, {}, ops)).toThrow(`injected: ${operation}`);
      expectPreviousIntact();
    },
  );

  it('replaces the file on success, leaving no temporary file', () => {
    writeSafetensors(target(), next, {});
    expect(fs.readdirSync(path.dirname(target()))).toEqual(['state.safetensors']);
    expect(readAll(target()).data.get('new')).toEqual(bytesOf(next[0]!.data));
  });

  it('handles short writes (the OS may write less than asked)', () => {
    const shortWrites: FileOps = {
      ...nodeFileOps,
      writeSync: (fd, buffer, offset, length, position) =>
        nodeFileOps.writeSync(fd, buffer, offset, Math.min(length, 7), position),
    };
    writeSafetensors(target(), next, {}, shortWrites);
    const shortBytes = fs.readFileSync(target());
    writeSafetensors(target(), next, {});
    expect(shortBytes).toEqual(fs.readFileSync(target()));
  });

  it('a missing folder is the operating system error, and no file appears', () => {
    const missing = path.join(folder, 'no-such-folder', 'x.safetensors');
    expect(() => writeSafetensors(missing, next, {})).toThrow(/ENOENT/);
    expect(fs.existsSync(path.dirname(missing))).toBe(false);
  });

  it.each([
    [
      'a duplicate name',
      [...next, ...next],
      /Expected a unique tensor name other than __metadata__ for the tensors written to '.*' but received '.*' twice$/,
    ],
    [
      'the name __metadata__',
      [{ ...next[0]!, name: '__metadata__' }],
      /unique tensor name .* received '__metadata__' \(the key of the header's metadata\)$/,
    ],
    [
      'an unknown dtype',
      [{ ...next[0]!, dtype: 'F31' }],
      /Expected one of BOOL, .* for the dtype of tensor '.*' written to '.*' but received 'F31'$/,
    ],
    ['a lone surrogate in a name', [{ ...next[0]!, name: 'x\ud800' }], /surrogates/],
    [
      'a shape that does not match the bytes',
      [{ ...next[0]!, shape: [4095] }],
      /Expected 16380 bytes \(dtype \w+, shape \[4095\]\) for the data of tensor '.*' written to '.*' but received 16384 bytes$/,
    ],
  ])('rejects %s before creating any file', (_, tensors, message) => {
    expect(() => writeSafetensors(target(), tensors as TensorToWrite[], {})).toThrow(message);
    expectPreviousIntact();
  });
});

describe('crc32', () => {
  it('gives the standard check value for "123456789"', () => {
    const check = new TextEncoder().encode('123456789');
    expect(crc32(check, 0)).toBe(0xcbf43926);
    expect(crc32Portable(check, 0)).toBe(0xcbf43926);
  });

  it('continues across empty chunks, even views of a zero-byte buffer (zlib.crc32 returns 0)', () => {
    const data = new TextEncoder().encode('123456789');
    const empty = new Uint8Array(new Float32Array(0).buffer);
    expect(crc32(data.subarray(5), crc32(empty, crc32(data.subarray(0, 5), 0)))).toBe(0xcbf43926);
  });

  it('portable version equals zlib.crc32, in one piece or in chunks', () => {
    const data = new Uint8Array(100_003).map((_, i) => (i * 2654435761) >>> 24);
    const expected = zlib.crc32(data);
    expect(crc32Portable(data, 0)).toBe(expected);
    let chunked = 0;
    for (let i = 0; i < data.length; i += 997)
      chunked = crc32Portable(data.subarray(i, i + 997), chunked);
    expect(chunked).toBe(expected);
  });
});
