/**
 * XXH3-64 (seed 1337) of one 256-byte input — a 64-token KV block, the default block size — in a
 * tiny WebAssembly function, where u64 arithmetic is native. The module is assembled here at load
 * time from the algorithm below (no binary blob); xxh3.ts uses it when WebAssembly is available
 * and falls back to its pure-JS long path otherwise. Same results bit for bit (tested against
 * @node-rs/xxhash).
 *
 * Memory layout (one 64 KiB page): [0, 256) input, [256, 448) the seed-1337 secret,
 * [448, 456) the result as a little-endian u64.
 *
 * For 256 bytes the long path has 3 stripes at input offsets 0, 64, 128 (secret offsets 0, 8,
 * 16) plus the last stripe at input offset 192 with secret offset 192 - 64 - 7 = 121, and no
 * scramble (that starts at 1024 bytes); then the accumulators are merged with secret offset 11.
 */

const IN_BYTES = 256;
const SECRET_AT = 256;
const OUT_AT = 448;

// Opcodes used below (WebAssembly core spec, binary format).
const OP = {
  end: 0x0b,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  i32Const: 0x41,
  i64Const: 0x42,
  i64Load: 0x29,
  i64Store: 0x37,
  i64Add: 0x7c,
  i64Mul: 0x7e,
  i64And: 0x83,
  i64Or: 0x84,
  i64Xor: 0x85,
  i64Shl: 0x86,
  i64ShrU: 0x88,
} as const;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb64(v: bigint): number[] {
  const out: number[] = [];
  for (;;) {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    const done = (v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0);
    out.push(done ? b : b | 0x80);
    if (done) return out;
  }
}

/** Emits one function body; u64 locals are numbered by the caller. */
class Asm {
  readonly code: number[] = [];
  get(i: number): this {
    this.code.push(OP.localGet, ...uleb(i));
    return this;
  }
  set(i: number): this {
    this.code.push(OP.localSet, ...uleb(i));
    return this;
  }
  tee(i: number): this {
    this.code.push(OP.localTee, ...uleb(i));
    return this;
  }
  /** Push a u64 constant (two's complement as i64). */
  c64(v: bigint): this {
    this.code.push(OP.i64Const, ...sleb64(BigInt.asIntN(64, v)));
    return this;
  }
  /** Push the u64 at a constant byte address (unaligned loads are allowed). */
  load(addr: number): this {
    this.code.push(OP.i32Const, 0, OP.i64Load, 0, ...uleb(addr));
    return this;
  }
  op(code: number): this {
    this.code.push(code);
    return this;
  }
}

const PRIME32_1 = 0x9e3779b1n;
const PRIME32_2 = 0x85ebca77n;
const PRIME32_3 = 0xc2b2ae3dn;
const PRIME64_1 = 0x9e3779b185ebca87n;
const PRIME64_2 = 0xc2b2ae3d27d4eb4fn;
const PRIME64_3 = 0x165667b19e3779f9n;
const PRIME64_4 = 0x85ebca77c2b2ae63n;
const PRIME64_5 = 0x27d4eb2f165667c5n;
const PRIME_MX1 = 0x165667919e3779f9n;
const MASK32 = 0xffffffffn;

function buildBody(): number[] {
  const a = new Asm();
  // Locals: 0..7 accumulators, 8 key / scratch, 9..14 mul128 temporaries, 15 result.
  const ACC = 0, K = 8, LL = 9, LH = 10, HL = 11, HH = 12, X = 13, Y = 14, RES = 15;
  const init = [PRIME32_3, PRIME64_1, PRIME64_2, PRIME64_3, PRIME64_4, PRIME32_2, PRIME64_5, PRIME32_1];
  init.forEach((v, i) => a.c64(v).set(ACC + i));
  const stripes: Array<[number, number]> = [[0, 0], [64, 8], [128, 16], [IN_BYTES - 64, 121]];
  for (const [input, secret] of stripes) {
    for (let i = 0; i < 8; i++) {
      // acc[i ^ 1] += data; acc[i] += lo32(key) × hi32(key), key = data ^ secret.
      a.get(ACC + (i ^ 1)).load(input + 8 * i).op(OP.i64Add).set(ACC + (i ^ 1));
      a.load(input + 8 * i).load(SECRET_AT + secret + 8 * i).op(OP.i64Xor).set(K);
      a.get(ACC + i).get(K).c64(MASK32).op(OP.i64And).get(K).c64(32n).op(OP.i64ShrU).op(OP.i64Mul).op(OP.i64Add).set(ACC + i);
    }
  }
  // result = len × PRIME64_1 + Σ fold64(mul128((acc[2i] ^ s), (acc[2i+1] ^ s'))), secret offset 11.
  a.c64(BigInt(IN_BYTES) * PRIME64_1).set(RES);
  for (let i = 0; i < 4; i++) {
    const s = SECRET_AT + 11 + 16 * i;
    a.get(ACC + 2 * i).load(s).op(OP.i64Xor).set(X);
    a.get(ACC + 2 * i + 1).load(s + 8).op(OP.i64Xor).set(Y);
    // 128-bit product from four 32 × 32 → 64 partial products (the cross sum cannot overflow).
    a.get(X).c64(MASK32).op(OP.i64And).get(Y).c64(MASK32).op(OP.i64And).op(OP.i64Mul).set(LL);
    a.get(X).c64(MASK32).op(OP.i64And).get(Y).c64(32n).op(OP.i64ShrU).op(OP.i64Mul).set(LH);
    a.get(X).c64(32n).op(OP.i64ShrU).get(Y).c64(MASK32).op(OP.i64And).op(OP.i64Mul).set(HL);
    a.get(X).c64(32n).op(OP.i64ShrU).get(Y).c64(32n).op(OP.i64ShrU).op(OP.i64Mul).set(HH);
    // cross = (ll >> 32) + lo32(lh) + hl
    a.get(LL).c64(32n).op(OP.i64ShrU).get(LH).c64(MASK32).op(OP.i64And).op(OP.i64Add).get(HL).op(OP.i64Add).set(K);
    // upper = hh + (lh >> 32) + (cross >> 32); lower = (cross << 32) | lo32(ll); res += lower ^ upper
    a.get(RES);
    a.get(HH).get(LH).c64(32n).op(OP.i64ShrU).op(OP.i64Add).get(K).c64(32n).op(OP.i64ShrU).op(OP.i64Add);
    a.get(K).c64(32n).op(OP.i64Shl).get(LL).c64(MASK32).op(OP.i64And).op(OP.i64Or);
    a.op(OP.i64Xor).op(OP.i64Add).set(RES);
  }
  // XXH3 avalanche: h ^= h >> 37; h *= PRIME_MX1; h ^= h >> 32.
  a.get(RES).get(RES).c64(37n).op(OP.i64ShrU).op(OP.i64Xor).c64(PRIME_MX1).op(OP.i64Mul).tee(RES);
  a.get(RES).c64(32n).op(OP.i64ShrU).op(OP.i64Xor).set(RES);
  a.code.push(OP.i32Const, 0, OP.localGet, ...uleb(RES), OP.i64Store, 3, ...uleb(OUT_AT));
  a.code.push(OP.end);
  // One local declaration group: 16 × i64 (0x7e).
  const body = [1, 16, 0x7e, ...a.code];
  return [...uleb(body.length), ...body];
}

function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}

function buildModule(): Uint8Array {
  const name = (s: string): number[] => [s.length, ...Array.from(s, (ch) => ch.charCodeAt(0))];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 0, 0]), // type 0: () -> ()
    ...section(3, [1, 0]), // function 0 has type 0
    ...section(5, [1, 0x00, 1]), // one memory, min 1 page
    ...section(7, [2, ...name('m'), 0x02, 0, ...name('h'), 0x00, 0]), // exports: memory m, func h
    ...section(10, [1, ...buildBody()]),
  ]);
}

/** The part of the WebAssembly JS API used here (a global in Node, but not in the es2023 lib). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
}

/** The 256-byte hasher: write 64 tokens to `words[0..64)`, call `run()`, read the hash from words[112] (lo) and words[113] (hi). */
export interface Xxh3Block256 {
  readonly words: Uint32Array;
  readonly run: () => void;
}

/**
 * Instantiate the hasher with the long-path secret for seed 1337 (as 32-bit words at every byte
 * offset, the layout of xxh3.ts's tables). Null when WebAssembly is unavailable.
 */
export function createXxh3Block256(secretTable: Int32Array): Xxh3Block256 | null {
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (wasm === undefined) return null;
  const instance = new wasm.Instance(new wasm.Module(buildModule()), {});
  const memory = instance.exports['m'] as { readonly buffer: ArrayBuffer };
  const run = instance.exports['h'] as () => void;
  const words = new Uint32Array(memory.buffer);
  // The secret as bytes: word o of the table holds bytes o .. o + 3, so every 4th word covers all.
  const bytes = new Uint8Array(memory.buffer);
  for (let o = 0; o < 192; o += 4) {
    const w = secretTable[o] as number;
    bytes[SECRET_AT + o] = w & 0xff;
    bytes[SECRET_AT + o + 1] = (w >>> 8) & 0xff;
    bytes[SECRET_AT + o + 2] = (w >>> 16) & 0xff;
    bytes[SECRET_AT + o + 3] = (w >>> 24) & 0xff;
  }
  return { words, run };
}
