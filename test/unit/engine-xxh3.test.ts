import { test } from 'node:test';
import assert from 'node:assert/strict';
import { xxh3 } from '@node-rs/xxhash';
import { xxh3Bytes, xxh3Chain, xxh3Tokens } from '../../src/engine/kv/xxh3.js';
import { xorshift32 } from '../support/xorshift.js';

function u64(out: Uint32Array): bigint {
  return (BigInt(out[0]!) << 32n) | BigInt(out[1]!);
}

const SEEDS = [0n, 1337n, 1n, 0xffffffffn, 0x100000000n, 0x123456789abcdef0n, 0xffffffffffffffffn];

test('engine-xxh3 - spec test vectors: block and chained sequence hashes of [1,2,3,4] and [5,6,7,8]', () => {
  const out0 = new Uint32Array(2);
  const out1 = new Uint32Array(2);
  const chained = new Uint32Array(2);
  xxh3Tokens(new Uint32Array([1, 2, 3, 4, 5, 6, 7, 8]), 0, 4, out0);
  assert.equal(u64(out0), 14643705804678351452n);
  xxh3Tokens(new Uint32Array([1, 2, 3, 4, 5, 6, 7, 8]), 4, 4, out1);
  assert.equal(u64(out1), 16777012769546811212n);
  xxh3Chain(out0[0]!, out0[1]!, out1[0]!, out1[1]!, chained);
  assert.equal(u64(chained), 4945711292740353085n);
});

test('engine-xxh3 - xxh3Bytes matches @node-rs/xxhash for every length 0..5000 and several seeds', () => {
  const next = xorshift32(42);
  const buf = new Uint8Array(5000 + 7);
  const out = new Uint32Array(2);
  for (const seed of SEEDS) {
    const sHi = Number(seed >> 32n), sLo = Number(seed & 0xffffffffn);
    for (let len = 0; len <= 5000; len++) {
      const start = len % 7;
      for (let i = 0; i < start + len; i++) buf[i] = next() & 0xff;
      const expected = xxh3.xxh64(Buffer.from(buf.buffer, start, len), seed);
      xxh3Bytes(buf, start, len, sHi, sLo, out);
      if (u64(out) !== expected) assert.fail(`seed ${seed} len ${len} start ${start}: got ${u64(out)}, want ${expected}`);
    }
  }
});

test('engine-xxh3 - seeds given as int32 bit patterns hash like their unsigned halves', () => {
  const next = xorshift32(9);
  const buf = new Uint8Array(600);
  for (let i = 0; i < buf.length; i++) buf[i] = next() & 0xff;
  const a = new Uint32Array(2);
  const b = new Uint32Array(2);
  for (const len of [0, 3, 8, 16, 100, 200, 600]) {
    xxh3Bytes(buf, 0, len, 0xdeadbeef, 0x80000001, a);
    xxh3Bytes(buf, 0, len, 0xdeadbeef | 0, 0x80000001 | 0, b);
    assert.deepEqual(a, b);
    assert.equal(u64(a), xxh3.xxh64(Buffer.from(buf.buffer, 0, len), 0xdeadbeef80000001n));
  }
});

test('engine-xxh3 - xxh3Tokens matches @node-rs/xxhash over u32 little-endian tokens for block sizes 0..1280', () => {
  const next = xorshift32(7);
  const tokens = new Uint32Array(1280 + 5);
  const out = new Uint32Array(2);
  for (let count = 0; count <= 1280; count++) {
    const start = count % 5;
    for (let i = 0; i < start + count; i++) tokens[i] = next();
    const bytes = Buffer.alloc(count * 4);
    for (let i = 0; i < count; i++) bytes.writeUInt32LE(tokens[start + i]!, i * 4);
    xxh3Tokens(tokens, start, count, out);
    const expected = xxh3.xxh64(bytes, 1337n);
    if (u64(out) !== expected) assert.fail(`count ${count}: got ${u64(out)}, want ${expected}`);
  }
});

test('engine-xxh3 - xxh3Chain matches @node-rs/xxhash over [parent u64 LE, hash u64 LE]', () => {
  const next = xorshift32(3);
  const out = new Uint32Array(2);
  const bytes = Buffer.alloc(16);
  for (let i = 0; i < 5000; i++) {
    const pHi = next(), pLo = next(), hi = next(), lo = next();
    bytes.writeUInt32LE(pLo, 0); bytes.writeUInt32LE(pHi, 4);
    bytes.writeUInt32LE(lo, 8); bytes.writeUInt32LE(hi, 12);
    xxh3Chain(pHi, pLo, hi, lo, out);
    const expected = xxh3.xxh64(bytes, 1337n);
    if (u64(out) !== expected) assert.fail(`case ${i}: got ${u64(out)}, want ${expected}`);
  }
});

test('engine-xxh3 - a long input after a short one (and vice versa) is unaffected by leftover scratch state', () => {
  const long = new Uint32Array(3000).fill(0xabcdef01);
  const short = new Uint32Array([1, 2, 3, 4]);
  const out = new Uint32Array(2);
  xxh3Tokens(long, 0, 3000, out);
  const longHash = u64(out);
  xxh3Tokens(short, 0, 4, out);
  assert.equal(u64(out), 14643705804678351452n);
  xxh3Tokens(long, 0, 3000, out);
  assert.equal(u64(out), longHash);
  assert.equal(longHash, xxh3.xxh64(Buffer.from(long.buffer), 1337n));
});

test('engine-xxh3 - repeated and in-place-modified token blocks hash like fresh inputs', () => {
  const buf = new Uint32Array(128).fill(77);
  const out = new Uint32Array(2);
  const fresh = (tokens: Uint32Array): bigint => {
    const b = Buffer.alloc(tokens.length * 4);
    tokens.forEach((t, i) => b.writeUInt32LE(t, i * 4));
    return xxh3.xxh64(b, 1337n);
  };
  xxh3Tokens(buf, 0, 64, out);
  assert.equal(u64(out), fresh(buf.subarray(0, 64)));
  xxh3Tokens(buf, 64, 64, out); // identical content at another offset
  assert.equal(u64(out), fresh(buf.subarray(0, 64)));
  buf[70] = 78; // same array and offset, one token changed
  xxh3Tokens(buf, 64, 64, out);
  assert.equal(u64(out), fresh(buf.subarray(64, 128)));
  buf[127] = 5; // a change in the last token only
  xxh3Tokens(buf, 64, 64, out);
  assert.equal(u64(out), fresh(buf.subarray(64, 128)));
  xxh3Tokens(buf, 64, 32, out); // same start, different length
  assert.equal(u64(out), fresh(buf.subarray(64, 96)));
});
