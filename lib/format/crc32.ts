// CRC-32 (the zlib/PNG/gzip polynomial, as Python's zlib.crc32), updated chunk by chunk.
//
// Node's zlib.crc32 (Node >= 20.15 and 22.2) runs at several GB/s; on older Node the table-driven
// version below gives the same values, more slowly.
import * as zlib from 'node:zlib';

type Crc32 = (data: Uint8Array, value: number) => number;

let table: Uint32Array | undefined;

/** The reference bytewise algorithm (reflected polynomial 0xEDB88320). */
export function crc32Portable(data: Uint8Array, value: number): number {
  if (table === undefined) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  const t = table;
  let crc = ~value >>> 0;
  for (const byte of data) crc = t[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return ~crc >>> 0;
}

const nodeCrc32 = (zlib as { crc32?: Crc32 }).crc32;

/** CRC-32 of `data` continuing from `value` (0 to start). */
export function crc32(data: Uint8Array, value: number): number {
  // zlib.crc32 of a view of a zero-byte ArrayBuffer (no backing store) returns 0, zlib's answer for
  // a NULL buffer, instead of `value`: an empty tensor would reset the running checksum.
  if (data.byteLength === 0) return value;
  return nodeCrc32 === undefined ? crc32Portable(data, value) : nodeCrc32(data, value);
}
