/**
 * Minimal NPZ writer for tests: .npy v1.0 arrays (little-endian float64 / float32 / int64, C order)
 * in a zip archive with stored or raw-deflated entries, laid out like numpy.savez output.
 */
import { deflateRawSync } from 'node:zlib';

export type NpyDtype = '<f8' | '<f4' | '<i8';

export interface NpyInput {
  readonly name: string;
  readonly shape: readonly number[];
  readonly values: readonly number[];
  readonly dtype?: NpyDtype;
  /** Compress this entry with deflate (method 8) instead of storing it. */
  readonly deflate?: boolean;
}

export function encodeNpy(shape: readonly number[], values: readonly number[], dtype: NpyDtype = '<f8'): Uint8Array {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${dtype}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // Pad so that magic (6) + version (2) + length (2) + header is a multiple of 64, ending in \n.
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const size = dtype === '<f4' ? 4 : 8;
  const out = new Uint8Array(10 + header.length + values.length * size);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  const base = 10 + header.length;
  values.forEach((v, i) => {
    if (dtype === '<f8') view.setFloat64(base + i * 8, v, true);
    else if (dtype === '<f4') view.setFloat32(base + i * 4, v, true);
    else view.setBigInt64(base + i * 8, BigInt(v), true);
  });
  return out;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = (CRC_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A zip archive of named byte entries. */
export function encodeZip(entries: ReadonlyArray<{ name: string; data: Uint8Array; deflate?: boolean }>): Uint8Array {
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = new TextEncoder().encode(e.name);
    const body = e.deflate === true ? new Uint8Array(deflateRawSync(e.data)) : e.data;
    const method = e.deflate === true ? 8 : 0;
    const crc = crc32(e.data);
    const local = new Uint8Array(30 + name.length + body.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(8, method, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, body.length, true);
    lv.setUint32(22, e.data.length, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    local.set(body, 30 + name.length);
    const central = new Uint8Array(46 + name.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint16(10, method, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, body.length, true);
    cv.setUint32(24, e.data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    central.set(name, 46);
    locals.push(local);
    centrals.push(central);
    offset += local.length;
  }
  const cdSize = centrals.reduce((a, c) => a + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + cdSize + 22);
  let p = 0;
  for (const part of [...locals, ...centrals, end]) {
    out.set(part, p);
    p += part.length;
  }
  return out;
}

/** An NPZ archive: each array becomes `<name>.npy`. */
export function encodeNpz(arrays: readonly NpyInput[]): Uint8Array {
  return encodeZip(arrays.map((a) => ({ name: `${a.name}.npy`, data: encodeNpy(a.shape, a.values, a.dtype), deflate: a.deflate ?? false })));
}
