// saveTensors / loadTensors (lib/checkpoint/tensors.ts): they read files written by Python's
// `safetensors` (test/fixtures/safetensors, see its SOURCE.md), write the layout of the reference
// Rust serializer (safetensors/src/tensor.rs, `prepare`), checked byte for byte against those files
// and by an independent reader written here; F16/BF16 widen exactly; bad input throws before
// anything is written. Also: the next save removes the temporary file of a writer killed mid-save.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

import { loadTensors, loadTensorsMetadata, SafetensorsError, saveTensors } from '../lib';
import { DIST_ENTRY, ensureDist } from './helpers/child';

const FIXTURES = path.join(__dirname, 'fixtures', 'safetensors');

let folder: string;
beforeAll(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'simd-adamw-tensors-'));
});
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});
let counter = 0;
function tempPath(): string {
  counter += 1;
  return path.join(folder, `t${counter}.safetensors`);
}

// ---------------------------------------------------------------------------------------------
// An independent reader, from the format's README: 8-byte little-endian length, JSON, buffer.

interface ParsedFile {
  headerLength: number;
  headerText: string;
  header: Record<string, unknown>;
  keys: string[];
  tensors: {
    name: string;
    dtype: string;
    shape: number[];
    begin: number;
    end: number;
    bytes: Buffer;
  }[];
}

function parseFile(bytes: Buffer): ParsedFile {
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const headerText = bytes.subarray(8, 8 + headerLength).toString('utf8');
  const header = JSON.parse(headerText) as Record<string, unknown>;
  const data = bytes.subarray(8 + headerLength);
  const tensors = Object.entries(header)
    .filter(([name]) => name !== '__metadata__')
    .map(([name, value]) => {
      const info = value as { dtype: string; shape: number[]; data_offsets: [number, number] };
      const [begin, end] = info.data_offsets;
      return {
        name,
        dtype: info.dtype,
        shape: info.shape,
        begin,
        end,
        bytes: data.subarray(begin, end),
      };
    });
  return { headerLength, headerText, header, keys: Object.keys(header), tensors };
}

/** The CRC-32 a file declares must be that of the file with the 8 digits zeroed (zlib's). */
function expectValidCrc(bytes: Buffer): string {
  const text = bytes.toString('latin1');
  const match = /"crc32":"([0-9a-f]{8})"/.exec(text);
  expect(match).not.toBeNull();
  const digits = match![1]!;
  const zeroed = Buffer.from(bytes);
  zeroed.write('00000000', match!.index + '"crc32":"'.length, 'latin1');
  expect(zlib.crc32(zeroed).toString(16).padStart(8, '0')).toBe(digits);
  return digits;
}

// ---------------------------------------------------------------------------------------------
// Files written by Python's safetensors

describe('files written by Python safetensors', () => {
  const range = [-3, -2, -1, 0, 1, 2];

  it('loads F32, F16 (as stored and as float32), I32 and U8 with their metadata', () => {
    const f = loadTensors(path.join(FIXTURES, 'f.safetensors'));
    expect(f.f).toEqual({ dtype: 'float32', shape: [6], data: Float32Array.from(range) });
    const i = loadTensors(path.join(FIXTURES, 'i.safetensors'));
    expect(i.i).toEqual({ dtype: 'int32', shape: [6], data: Int32Array.from(range) });
    const u8 = loadTensors(path.join(FIXTURES, 'B.safetensors'));
    expect(u8.B).toEqual({ dtype: 'uint8', shape: [6], data: Uint8Array.from(range) });
    // IEEE binary16 of -3, -2, -1, 0, 1, 2.
    const e = loadTensors(path.join(FIXTURES, 'e.safetensors'));
    expect(e.e).toEqual({
      dtype: 'float16',
      shape: [6],
      data: Uint16Array.from([0xc200, 0xc000, 0xbc00, 0x0000, 0x3c00, 0x4000]),
    });
    const widened = loadTensors(path.join(FIXTURES, 'e.safetensors'), { as: 'float32' });
    expect(widened.e).toEqual({ dtype: 'float32', shape: [6], data: Float32Array.from(range) });
    expect(loadTensorsMetadata(path.join(FIXTURES, 'f.safetensors'))).toEqual({ test: 'a' });
  });

  it('rejects a dtype it does not load (overall.safetensors has U16 and others), naming it', () => {
    expect(() => loadTensors(path.join(FIXTURES, 'overall.safetensors'))).toThrow(
      /^Expected one of the dtypes F32, I32, BF16, F16, U8 for tensor 'H' of '.*overall\.safetensors' but received U16 \(not supported here\)$/,
    );
  });

  it.each(['f', 'e', 'i', 'B'])(
    '%s.safetensors re-saved by saveTensors is the same file, as the serializer of today writes it, plus crc32',
    (name) => {
      const python = fs.readFileSync(path.join(FIXTURES, `${name}.safetensors`));
      const loaded = loadTensors(path.join(FIXTURES, `${name}.safetensors`));
      const file = tempPath();
      const tensors = Object.fromEntries(
        Object.entries(loaded).map(([key, t]) => [
          key,
          { data: t.data, shape: t.shape, dtype: t.dtype },
        ]),
      );
      saveTensors(file, tensors, {
        metadata: loadTensorsMetadata(path.join(FIXTURES, `${name}.safetensors`)),
      });
      const ours = fs.readFileSync(file);
      const crc = expectValidCrc(ours);
      // Python's header (unpadded in these 2022 files), with the crc32 key first, padded to 8.
      const theirs = parseFile(python);
      const json = theirs.headerText.replace(
        '{"__metadata__":{',
        `{"__metadata__":{"crc32":"${crc}",`,
      );
      expect(json).not.toBe(theirs.headerText);
      const padded = json.padEnd(Math.ceil(json.length / 8) * 8, ' ');
      const length = Buffer.alloc(8);
      length.writeBigUInt64LE(BigInt(padded.length));
      const expected = Buffer.concat([
        length,
        Buffer.from(padded),
        python.subarray(8 + theirs.headerLength),
      ]);
      expect(ours.equals(expected)).toBe(true);
    },
  );
});

// ---------------------------------------------------------------------------------------------
// Layout

describe('the layout of saveTensors', () => {
  it('orders by dtype (F32, I32, BF16, F16, U8) then UTF-8 name, aligned, padded, metadata first', () => {
    const file = tempPath();
    // '\uFF61' sorts after '\u{1F600}' in UTF-16 code units but before it in UTF-8, as in Rust.
    saveTensors(
      file,
      {
        u: Uint8Array.from([1, 2, 3]),
        h: { data: Uint16Array.from([0x3c00]), dtype: 'float16' },
        b: { data: Uint16Array.from([0x3f80, 0x4000]), dtype: 'bfloat16', shape: [1, 2] },
        '\u{1F600}': Float32Array.from([1]),
        '\uFF61': Float32Array.from([2]),
        a: { data: Float32Array.from([1, 2, 3, 4, 5, 6]), shape: [2, 3] },
        i: Int32Array.from([-1, 7]),
        z: Float32Array.from([]),
      },
      { metadata: { framework: 'simd-adamw', note: 'a "quoted" \\ value\n' } },
    );
    const bytes = fs.readFileSync(file);
    expectValidCrc(bytes);
    const parsed = parseFile(bytes);
    expect(parsed.headerLength % 8).toBe(0);
    expect(parsed.headerText).toMatch(
      /^\{"__metadata__":\{"crc32":"[0-9a-f]{8}","framework":"simd-adamw","note":"a \\"quoted\\" \\\\ value\\n"\},"a":\{"dtype":"F32","shape":\[2,3\],"data_offsets":\[0,24\]\}/,
    );
    expect(parsed.headerText.trimEnd().length).toBeGreaterThan(parsed.headerLength - 8);
    expect(parsed.headerText.slice(parsed.headerText.trimEnd().length)).toMatch(/^ *$/);
    expect(parsed.keys).toEqual([
      '__metadata__',
      'a',
      'z',
      '\uFF61',
      '\u{1F600}',
      'i',
      'b',
      'h',
      'u',
    ]);
    let offset = 0;
    for (const tensor of parsed.tensors) {
      expect(tensor.begin).toBe(offset);
      const size = { F32: 4, I32: 4, BF16: 2, F16: 2, U8: 1 }[tensor.dtype]!;
      expect((8 + parsed.headerLength + tensor.begin) % size).toBe(0);
      offset = tensor.end;
    }
    expect(8 + parsed.headerLength + offset).toBe(bytes.length);
    const byName = new Map(parsed.tensors.map((t) => [t.name, t]));
    expect(byName.get('b')).toMatchObject({ dtype: 'BF16', shape: [1, 2] });
    expect([...byName.get('b')!.bytes]).toEqual([0x80, 0x3f, 0x00, 0x40]);
    expect(byName.get('i')!.bytes.readInt32LE(0)).toBe(-1);
    expect(byName.get('z')).toMatchObject({
      dtype: 'F32',
      shape: [0],
      begin: byName.get('z')!.end,
    });
    expect(parsed.header.__metadata__).toEqual({
      crc32: expect.stringMatching(/^[0-9a-f]{8}$/) as unknown,
      framework: 'simd-adamw',
      note: 'a "quoted" \\ value\n',
    });
  });

  it('round-trips every dtype with its shape and metadata; a tensor may be named __proto__', () => {
    const file = tempPath();
    const tensors = {
      w: { data: Float32Array.from([1.5, -0, NaN, Infinity]), shape: [2, 1, 2] },
      bf: { data: Uint16Array.from([0x7fc1, 0x0001]), dtype: 'bfloat16' as const },
      hf: { data: Uint16Array.from([0x7e01, 0x8001]), dtype: 'float16' as const, shape: [2, 1] },
      mask: { data: Uint8Array.from([0, 255]), shape: [] as number[] },
    };
    // A scalar has shape [] and 1 element: the mask of 2 elements does not fit it.
    expect(() => saveTensors(file, tensors)).toThrow(RangeError);
    tensors.mask.shape = [2];
    Object.defineProperty(tensors, '__proto__', {
      value: Int32Array.from([2 ** 31 - 1, -(2 ** 31)]),
      enumerable: true,
    });
    saveTensors(file, tensors, { metadata: { epoch: '3' } });
    const loaded = loadTensors(file);
    expect(Object.keys(loaded).sort()).toEqual(['__proto__', 'bf', 'hf', 'mask', 'w']);
    expect(Object.getPrototypeOf(loaded)).toBe(Object.prototype);
    expect(loaded.w).toEqual({
      dtype: 'float32',
      shape: [2, 1, 2],
      data: Float32Array.from([1.5, -0, NaN, Infinity]),
    });
    expect(Object.is(loaded.w!.data[1], -0)).toBe(true);
    expect(Object.getOwnPropertyDescriptor(loaded, '__proto__')?.value).toEqual({
      dtype: 'int32',
      shape: [2],
      data: Int32Array.from([2 ** 31 - 1, -(2 ** 31)]),
    });
    expect(loaded.bf).toEqual({
      dtype: 'bfloat16',
      shape: [2],
      data: Uint16Array.from([0x7fc1, 0x0001]),
    });
    expect(loaded.hf).toEqual({
      dtype: 'float16',
      shape: [2, 1],
      data: Uint16Array.from([0x7e01, 0x8001]),
    });
    expect(loaded.mask).toEqual({ dtype: 'uint8', shape: [2], data: Uint8Array.from([0, 255]) });
    expect(loadTensorsMetadata(file)).toEqual({ epoch: '3', crc32: expect.any(String) as unknown });
  });
});

// ---------------------------------------------------------------------------------------------
// Widening F16 and BF16

/** The float32 bits of a binary16 pattern, from its definition (value = (-1)^s 2^(e-15) 1.m). */
function float16Reference(h: number): number {
  const sign = h >> 15 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  const out = new DataView(new ArrayBuffer(4));
  if (exponent === 0x1f && mantissa !== 0) {
    // NaN: float32 keeps the sign and the payload at the top of its mantissa.
    out.setUint32(0, ((h & 0x8000) << 16) | 0x7f800000 | (mantissa << 13));
  } else if (exponent === 0x1f) {
    out.setFloat32(0, sign * Infinity);
  } else if (exponent === 0) {
    out.setFloat32(0, sign * mantissa * 2 ** -24);
  } else {
    out.setFloat32(0, sign * (1 + mantissa / 1024) * 2 ** (exponent - 15));
  }
  return out.getUint32(0) >>> 0;
}

it("as: 'float32' widens all 65536 F16 and BF16 patterns exactly", () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const file = tempPath();
  saveTensors(file, { h: { data: all, dtype: 'float16' }, b: { data: all, dtype: 'bfloat16' } });
  const loaded = loadTensors(file, { as: 'float32' });
  expect(loaded.h!.dtype).toBe('float32');
  expect(loaded.b!.dtype).toBe('float32');
  const h = new Uint32Array((loaded.h!.data as Float32Array).buffer);
  const b = new Uint32Array((loaded.b!.data as Float32Array).buffer);
  const view = new DataView(new ArrayBuffer(4));
  let wrong = 0;
  for (let i = 0; i < 65536; i++) {
    view.setUint16(0, i);
    view.setUint16(2, 0);
    if (h[i] !== float16Reference(i) || b[i] !== view.getUint32(0)) wrong++;
  }
  expect(wrong).toBe(0);
  expect(loaded.h!.data[0x3c00]).toBe(1);
  expect(loaded.h!.data[0x7bff]).toBe(65504);
  expect(loaded.h!.data[0x0001]).toBe(2 ** -24);
  expect(loaded.b!.data[0x3f80]).toBe(1);
});

// ---------------------------------------------------------------------------------------------
// Bad input

describe('bad input throws before anything is written', () => {
  const cases: [string, () => void, RegExp, ErrorConstructor][] = [
    [
      'a path that is not a string',
      () => saveTensors(3 as unknown as string, {}),
      /^Expected a non-empty string for path but received 3 of type number$/,
      TypeError,
    ],
    [
      'tensors not an object',
      () => saveTensors(tempPath(), [] as never),
      /^Expected an object for tensors but received an Array/,
      TypeError,
    ],
    [
      'a Float64Array',
      () => saveTensors(tempPath(), { x: new Float64Array(2) as never }),
      /^Expected a Float32Array, Int32Array, Uint8Array or \{ data, shape\?, dtype\? \} for tensors\["x"\] but received a Float64Array of 2 elements$/,
      TypeError,
    ],
    [
      'a Uint16Array without dtype',
      () => saveTensors(tempPath(), { x: { data: new Uint16Array(2) } }),
      /^Expected 'float16' or 'bfloat16' \(a Uint16Array holds either\) for tensors\["x"\]\.dtype but received undefined$/,
      TypeError,
    ],
    [
      'a dtype the array cannot hold',
      () => saveTensors(tempPath(), { x: { data: new Float32Array(2), dtype: 'bfloat16' } }),
      /^Expected a Uint16Array \(dtype 'bfloat16'\) for tensors\["x"\]\.data but received a Float32Array of 2 elements$/,
      TypeError,
    ],
    [
      'an unknown dtype',
      () =>
        saveTensors(tempPath(), { x: { data: new Float32Array(2), dtype: 'float64' as never } }),
      /^Expected one of 'float32', 'int32', 'bfloat16', 'float16', 'uint8' for tensors\["x"\]\.dtype/,
      RangeError,
    ],
    [
      'a shape of the wrong size',
      () => saveTensors(tempPath(), { x: { data: new Float32Array(6), shape: [2, 2] } }),
      /^Expected a shape of 6 elements \(the length of its data\) for tensors\["x"\]\.shape but received an Array of 2 elements$/,
      RangeError,
    ],
    [
      'a negative dimension',
      () => saveTensors(tempPath(), { x: { data: new Float32Array(0), shape: [-1] } }),
      /^Expected an integer >= 0 for tensors\["x"\]\.shape\[0\] but received -1 of type number$/,
      RangeError,
    ],
    [
      'an unknown key',
      () => saveTensors(tempPath(), { x: { data: new Float32Array(1), name: 'x' } as never }),
      /^Expected one of data, shape, dtype for the key tensors\["x"\]\.name but received an unknown key$/,
      TypeError,
    ],
    [
      'a name __metadata__',
      () => saveTensors(tempPath(), { __metadata__: new Float32Array(1) }),
      /__metadata__/,
      RangeError,
    ],
    [
      'a lone surrogate in a name',
      () => saveTensors(tempPath(), { '\uD800': new Float32Array(1) }),
      /unpaired UTF-16 surrogates/,
      RangeError,
    ],
    [
      'metadata that is not a string',
      () => saveTensors(tempPath(), {}, { metadata: { epoch: 3 as never } }),
      /^Expected a string for options\.metadata\["epoch"\] but received 3 of type number$/,
      TypeError,
    ],
    [
      'metadata crc32',
      () => saveTensors(tempPath(), {}, { metadata: { crc32: '00000000' } }),
      /^Expected a key other than 'crc32'/,
      RangeError,
    ],
    [
      'an unknown option',
      () => saveTensors(tempPath(), {}, { meta: {} } as never),
      /^Expected one of metadata for the key options\.meta but received an unknown key$/,
      TypeError,
    ],
  ];
  it.each(cases)('%s', (_, act, message, type) => {
    const before = fs.readdirSync(folder).length;
    expect(act).toThrow(message);
    expect(act).toThrow(type);
    expect(fs.readdirSync(folder).length).toBe(before);
  });

  it('an error leaves an existing file as it was', () => {
    const file = tempPath();
    saveTensors(file, { x: Float32Array.from([1]) });
    const before = fs.readFileSync(file);
    expect(() => saveTensors(file, { x: { data: Float32Array.from([1, 2]), shape: [3] } })).toThrow(
      RangeError,
    );
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(fs.readdirSync(folder).filter((entry) => entry.endsWith('.tmp'))).toEqual([]);
  });

  it('loadTensors: bad options, a corrupt file, a malformed header', () => {
    const file = tempPath();
    saveTensors(file, { x: Float32Array.from([1, 2, 3]) });
    expect(() => loadTensors(file, { as: 'float16' as never })).toThrow(
      /^Expected 'float32' for options\.as but received 'float16' of type string$/,
    );
    expect(() => loadTensors(file, { to: 'float32' } as never)).toThrow(TypeError);
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 1] ^= 1;
    fs.writeFileSync(file, bytes);
    expect(() => loadTensors(file)).toThrow(SafetensorsError);
    expect(() => loadTensors(file)).toThrow(/the file is corrupt/);
    // A duplicate key, which JSON.parse would accept: the strict parser rejects it.
    const json =
      '{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}';
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(file, Buffer.concat([length, Buffer.from(json), Buffer.from([7])]));
    expect(() => loadTensors(file)).toThrow(/Duplicate key "x"/);
  });
});

// ---------------------------------------------------------------------------------------------
// Stale temporary files

describe('stale temporary files', () => {
  beforeAll(() => {
    ensureDist();
  }, 240_000);

  /** Starts a save of `file` in a child that stops after its first write, and SIGKILLs it there. */
  async function killMidSave(file: string): Promise<number> {
    const script = `
      const { writeSafetensors, nodeFileOps } = require(${JSON.stringify(path.join(path.dirname(DIST_ENTRY), 'format', 'safetensors.js'))});
      const ops = { ...nodeFileOps, writeSync(...args) {
        const written = nodeFileOps.writeSync(...args);
        process.stdout.write('written\\n');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
        return written;
      } };
      writeSafetensors(${JSON.stringify(file)}, [{ name: 'w', dtype: 'F32', shape: [4096], data: new Float32Array(4096) }], {}, ops);
    `;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', () => resolve());
      child.on('exit', () => reject(new Error('the child exited before it wrote')));
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_, signal) => resolve(signal)),
    );
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    return child.pid!;
  }

  it('the next save removes those of killed writers of the same path and nothing else', async () => {
    const dir = fs.mkdtempSync(path.join(folder, 'stale-'));
    const file = path.join(dir, 'model.safetensors');
    const tempOf = (pid: number) =>
      new RegExp(`^\\.model\\.safetensors\\.${pid}\\.[0-9a-f]{12}\\.tmp$`);
    const first = await killMidSave(file);
    expect(fs.readdirSync(dir)).toEqual([expect.stringMatching(tempOf(first))]);
    // The second writer's save removed the first's file before it was killed in turn.
    const second = await killMidSave(file);
    expect(fs.readdirSync(dir)).toEqual([expect.stringMatching(tempOf(second))]);
    // Files that must stay: a live writer's (this process's parent), this process's own, another
    // path's, and names that only look alike.
    const keep = [
      `.model.safetensors.${process.ppid}.0123456789ab.tmp`,
      `.model.safetensors.${process.pid}.0123456789ab.tmp`,
      `.other.safetensors.${first}.0123456789ab.tmp`,
      `.model.safetensors.${first}.0123456789ab.tmp.bak`,
      `.model.safetensors.${first}.0123456789AB.tmp`,
      `.model.safetensors.${first}.0123456789a.tmp`,
      `model.safetensors.${first}.0123456789ab.tmp`,
      `.model.safetensors.x${first}.0123456789ab.tmp`,
    ];
    for (const name of keep) fs.writeFileSync(path.join(dir, name), 'keep');
    saveTensors(file, { w: Float32Array.from([1, 2]) });
    expect(fs.readdirSync(dir).sort()).toEqual([...keep, 'model.safetensors'].sort());
    expect(loadTensors(file).w!.data).toEqual(Float32Array.from([1, 2]));
  });
});
