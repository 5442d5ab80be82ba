/**
 * Loader for measured perf profiles (Dynamo `--planner-profile-data`, engine-spec §7.2): an NPZ
 * archive (zip of .npy arrays, as written by numpy.savez / savez_compressed) or a JSON file with
 * the same keys. Lives outside src/engine because it reads files; the engine only sees arrays.
 *
 * Keys: prefill_isl [n], prefill_ttft_ms [n], decode_active_kv_tokens [r],
 * decode_context_length [c], decode_itl [r, c] (JSON: an array of r rows of c numbers).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { createInterpolatedPerfModel } from '../engine/perf-model.js';
import type { PerfProfileArrays } from '../engine/perf-model.js';
import type { PerfModel } from '../engine/types.js';
import { InvalidConfigError, PerfModelError } from '../util/errors.js';

/** Field name used in every error (the CLI flag without dashes). */
export const PROFILE_FIELD = 'planner-profile-data';

const KEYS = ['prefill_isl', 'prefill_ttft_ms', 'decode_active_kv_tokens', 'decode_context_length', 'decode_itl'] as const;
type ProfileKey = (typeof KEYS)[number];

/** One decoded .npy array: C-order data as float64 and its shape. */
export interface NpyArray {
  readonly shape: readonly number[];
  readonly data: Float64Array;
}

function fail(source: string, message: string, cause?: unknown): never {
  const err = new InvalidConfigError(PROFILE_FIELD, `${source}: ${message}`);
  if (cause !== undefined) Object.defineProperty(err, 'cause', { value: cause });
  throw err;
}

/** Decode one .npy file (format versions 1–3; <f8, <f4, <i8, <i4, <u4; C or Fortran order). */
export function parseNpy(buf: Uint8Array, source: string): NpyArray {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (buf.length < 10 || magic.some((b, i) => buf[i] !== b)) fail(source, 'not a .npy array (bad magic)');
  const major = buf[6] as number;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let headerLen: number;
  let headerStart: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) fail(source, 'truncated .npy header');
    headerLen = view.getUint32(8, true);
    headerStart = 12;
  } else {
    fail(source, `unsupported .npy format version ${major}`);
  }
  if (headerStart + headerLen > buf.length) fail(source, 'truncated .npy header');
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(buf.subarray(headerStart, headerStart + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) fail(source, `unreadable .npy header ${JSON.stringify(header)}`);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => Number(s));
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) fail(source, `bad shape (${shapeText})`);
  const count = shape.reduce((a, b) => a * b, 1);
  const kinds: Record<string, [number, (o: number) => number]> = {
    '<f8': [8, (o) => view.getFloat64(o, true)],
    '<f4': [4, (o) => view.getFloat32(o, true)],
    '<i8': [8, (o) => Number(view.getBigInt64(o, true))],
    '<i4': [4, (o) => view.getInt32(o, true)],
    '<u4': [4, (o) => view.getUint32(o, true)],
  };
  const kind = kinds[descr];
  if (kind === undefined) fail(source, `unsupported dtype ${descr} (expected float64, float32 or int64, little-endian)`);
  const [size, read] = kind;
  const dataStart = headerStart + headerLen;
  if (dataStart + count * size > buf.length) fail(source, `truncated data: ${count} × ${size} bytes expected`);
  const data = new Float64Array(count);
  for (let i = 0; i < count; i++) data[i] = read(dataStart + i * size);
  if (fortran === 'True' && shape.length === 2) {
    const rows = shape[0] as number;
    const cols = shape[1] as number;
    const c = new Float64Array(count);
    for (let r = 0; r < rows; r++) for (let k = 0; k < cols; k++) c[r * cols + k] = data[k * rows + r] as number;
    return { shape, data: c };
  }
  if (fortran === 'True' && shape.length > 2) fail(source, 'Fortran-order arrays with more than 2 dimensions are not supported');
  return { shape, data };
}

/** Entries of a zip archive (stored or deflated; ZIP64 sizes and offsets in the central directory). */
export function readZipEntries(buf: Uint8Array, source: string): Map<string, Uint8Array> {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 0xffff); i--) {
    if (view.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail(source, 'not a zip/NPZ archive (no end-of-central-directory record)');
  let numEntries = view.getUint16(eocd + 10, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  if ((numEntries === 0xffff || cdOffset === 0xffffffff) && eocd >= 20 && view.getUint32(eocd - 20, true) === 0x07064b50) {
    const z64 = Number(view.getBigUint64(eocd - 12, true));
    if (z64 + 56 > buf.length || view.getUint32(z64, true) !== 0x06064b50) fail(source, 'bad ZIP64 end-of-central-directory record');
    numEntries = Number(view.getBigUint64(z64 + 32, true));
    cdOffset = Number(view.getBigUint64(z64 + 48, true));
  }
  const out = new Map<string, Uint8Array>();
  let p = cdOffset;
  for (let e = 0; e < numEntries; e++) {
    if (p + 46 > buf.length || view.getUint32(p, true) !== 0x02014b50) fail(source, `bad central directory entry ${e}`);
    const flags = view.getUint16(p + 8, true);
    const method = view.getUint16(p + 10, true);
    let compSize = view.getUint32(p + 20, true);
    let size = view.getUint32(p + 24, true);
    const nameLen = view.getUint16(p + 28, true);
    const extraLen = view.getUint16(p + 30, true);
    const commentLen = view.getUint16(p + 32, true);
    let localOffset = view.getUint32(p + 42, true);
    const name = new TextDecoder().decode(buf.subarray(p + 46, p + 46 + nameLen));
    // ZIP64 extended information: the 0xffffffff fields, in this order.
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = view.getUint16(x, true);
      const len = view.getUint16(x + 2, true);
      if (id === 0x0001) {
        let q = x + 4;
        if (size === 0xffffffff) {
          size = Number(view.getBigUint64(q, true));
          q += 8;
        }
        if (compSize === 0xffffffff) {
          compSize = Number(view.getBigUint64(q, true));
          q += 8;
        }
        if (localOffset === 0xffffffff) localOffset = Number(view.getBigUint64(q, true));
      }
      x += 4 + len;
    }
    p = xEnd + commentLen;
    if ((flags & 1) !== 0) fail(source, `entry ${name} is encrypted`);
    if (localOffset + 30 > buf.length || view.getUint32(localOffset, true) !== 0x04034b50) fail(source, `bad local header for ${name}`);
    const dataStart = localOffset + 30 + view.getUint16(localOffset + 26, true) + view.getUint16(localOffset + 28, true);
    if (dataStart + compSize > buf.length) fail(source, `entry ${name} is truncated`);
    const raw = buf.subarray(dataStart, dataStart + compSize);
    let data: Uint8Array;
    if (method === 0) {
      data = raw;
    } else if (method === 8) {
      try {
        data = inflateRawSync(raw);
      } catch (err) {
        fail(source, `entry ${name} does not inflate`, err);
      }
    } else {
      fail(source, `entry ${name} uses unsupported compression method ${method}`);
    }
    if (data.length !== size) fail(source, `entry ${name} has ${data.length} bytes, header says ${size}`);
    out.set(name, data);
  }
  return out;
}

function toArrays(source: string, get: (key: ProfileKey) => NpyArray | undefined): PerfProfileArrays {
  const arrays = {} as Record<ProfileKey, NpyArray>;
  for (const key of KEYS) {
    const a = get(key);
    if (a === undefined) fail(source, `missing array ${key}`);
    arrays[key] = a;
  }
  for (const key of ['prefill_isl', 'prefill_ttft_ms', 'decode_active_kv_tokens', 'decode_context_length'] as const) {
    if (arrays[key].shape.length !== 1) fail(source, `${key} must be 1-D, has shape (${arrays[key].shape.join(', ')})`);
  }
  const itl = arrays.decode_itl;
  const rows = arrays.decode_active_kv_tokens.data.length;
  const cols = arrays.decode_context_length.data.length;
  if (itl.shape.length !== 2 || itl.shape[0] !== rows || itl.shape[1] !== cols) {
    fail(source, `decode_itl must have shape (${rows}, ${cols}) = (decode_active_kv_tokens, decode_context_length), has (${itl.shape.join(', ')})`);
  }
  return {
    prefillIsl: arrays.prefill_isl.data,
    prefillTtftMs: arrays.prefill_ttft_ms.data,
    decodeActiveKvTokens: arrays.decode_active_kv_tokens.data,
    decodeContextLength: arrays.decode_context_length.data,
    decodeItl: itl.data,
  };
}

/** Parse NPZ bytes into profile arrays. */
export function parseProfileNpz(buf: Uint8Array, source: string): PerfProfileArrays {
  const entries = readZipEntries(buf, source);
  return toArrays(source, (key) => {
    const bytes = entries.get(`${key}.npy`) ?? entries.get(key);
    return bytes === undefined ? undefined : parseNpy(bytes, `${source}:${key}.npy`);
  });
}

/** Parse the JSON form: an object with the five keys; decode_itl is an array of rows. */
export function parseProfileJson(text: string, source: string): PerfProfileArrays {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    fail(source, `invalid JSON: ${(err as Error).message}`, err);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) fail(source, 'expected a JSON object');
  const obj = doc as Record<string, unknown>;
  const vector = (key: string, v: unknown): Float64Array => {
    if (!Array.isArray(v)) fail(source, `${key} must be an array of numbers`);
    const out = new Float64Array(v.length);
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      if (typeof x !== 'number' || !Number.isFinite(x)) fail(source, `${key}[${i}] must be a finite number`);
      out[i] = x;
    }
    return out;
  };
  return toArrays(source, (key) => {
    const v = obj[key];
    if (v === undefined) return undefined;
    if (key !== 'decode_itl') return { shape: [Array.isArray(v) ? v.length : 0], data: vector(key, v) };
    if (!Array.isArray(v)) fail(source, 'decode_itl must be an array of rows');
    const rows = v.map((row: unknown, r) => vector(`decode_itl[${r}]`, row));
    const cols = rows[0]?.length ?? 0;
    if (rows.some((row) => row.length !== cols)) fail(source, 'decode_itl rows must all have the same length');
    const data = new Float64Array(rows.length * cols);
    rows.forEach((row, r) => data.set(row, r * cols));
    return { shape: [rows.length, cols], data };
  });
}

/**
 * Read a profile from a path: an .npz file, a .json file (detected by content), or a directory
 * holding exactly one .npz (preferred) or .json file. Throws InvalidConfigError naming
 * planner-profile-data.
 */
export function loadPerfProfile(path: string): PerfProfileArrays {
  let file = path;
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    fail(path, `cannot read: ${(err as Error).message}`, err);
  }
  if (st.isDirectory()) {
    const names = readdirSync(path).sort();
    const npz = names.filter((n) => n.endsWith('.npz'));
    const json = names.filter((n) => n.endsWith('.json'));
    const pick = npz.length > 0 ? npz : json;
    if (pick.length !== 1) {
      fail(path, `directory must contain exactly one .npz or .json profile, found ${pick.length === 0 ? 'none' : pick.join(', ')}`);
    }
    file = join(path, pick[0] as string);
  }
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (err) {
    fail(file, `cannot read: ${(err as Error).message}`, err);
  }
  if (buf.length >= 4 && buf.readUInt32LE(0) === 0x04034b50) return parseProfileNpz(buf, file);
  return parseProfileJson(buf.toString('utf8'), file);
}

/** Interpolating perf model from a profile file; array problems surface as InvalidConfigError too. */
export function loadInterpolatedPerfModel(path: string): PerfModel {
  return loadInterpolatedPerfModelFrom(path, loadPerfProfile(path));
}

function loadInterpolatedPerfModelFrom(path: string, arrays: PerfProfileArrays): PerfModel {
  try {
    return createInterpolatedPerfModel(arrays);
  } catch (err) {
    if (err instanceof PerfModelError) fail(path, err.message, err);
    throw err;
  }
}

/** Profile arrays as they travel to rank workers (plain typed arrays, structured-clone friendly). */
export type ProfileArrays = PerfProfileArrays;

/**
 * Load and validate a profile for the fleet: the arrays are checked by building the interpolating
 * model once, so a bad profile fails at startup (InvalidConfigError) rather than inside a rank.
 */
export async function loadProfileData(path: string): Promise<ProfileArrays> {
  const arrays = loadPerfProfile(path);
  loadInterpolatedPerfModelFrom(path, arrays);
  return arrays;
}
