import { test } from 'node:test';
import assert from 'node:assert/strict';
import { xxh3 } from '@node-rs/xxhash';
import { computeSequenceHashes } from '../../src/engine/engine.js';

const SEED = 1337n;
const u64 = (hi: number, lo: number): bigint => (BigInt(hi) << 32n) | BigInt(lo);

/** Reference chain built from the native XXH3 binding: bytes of u32 LE tokens, then [parent LE, block LE]. */
function referenceHashes(tokens: Uint32Array, blockSize: number): bigint[] {
  const out: bigint[] = [];
  const n = Math.floor(tokens.length / blockSize);
  for (let b = 0; b < n; b++) {
    const bytes = new Uint8Array(blockSize * 4);
    const view = new DataView(bytes.buffer);
    for (let t = 0; t < blockSize; t++) view.setUint32(t * 4, tokens[b * blockSize + t] as number, true);
    const blockHash = xxh3.xxh64(bytes, SEED);
    if (b === 0) {
      out.push(blockHash);
    } else {
      const pair = new Uint8Array(16);
      const pv = new DataView(pair.buffer);
      pv.setBigUint64(0, out[b - 1] as bigint, true);
      pv.setBigUint64(8, blockHash, true);
      out.push(xxh3.xxh64(pair, SEED));
    }
  }
  return out;
}

test('engine hash - Dynamo test vectors come out bit-exact (block size 4)', () => {
  const hi = new Uint32Array(2);
  const lo = new Uint32Array(2);
  const n = computeSequenceHashes(new Uint32Array([1, 2, 3, 4, 5, 6, 7, 8]), 8, 4, hi, lo);
  assert.equal(n, 2);
  assert.equal(u64(hi[0] as number, lo[0] as number), 14643705804678351452n, 'block 0 sequence hash = its block hash');
  assert.equal(u64(hi[1] as number, lo[1] as number), 4945711292740353085n, 'block 1 sequence hash chains the parent');
});

test('engine hash - a partial tail block is not hashed', () => {
  const hi = new Uint32Array(4);
  const lo = new Uint32Array(4);
  assert.equal(computeSequenceHashes(new Uint32Array([1, 2, 3, 4, 5, 6, 7]), 7, 4, hi, lo), 1);
  assert.equal(computeSequenceHashes(new Uint32Array([1, 2, 3]), 3, 4, hi, lo), 0);
  assert.equal(computeSequenceHashes(new Uint32Array([1, 2, 3, 4, 5, 6, 7, 8]), 5, 4, hi, lo), 1, 'only numTokens count');
});

test('engine hash - chained hashes match a native XXH3 reference for random tokens and block sizes', () => {
  let s = 99;
  for (const blockSize of [1, 2, 4, 16, 64, 128]) {
    const tokens = new Uint32Array(blockSize * 5 + 3);
    for (let i = 0; i < tokens.length; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      tokens[i] = s;
    }
    const hi = new Uint32Array(8);
    const lo = new Uint32Array(8);
    const n = computeSequenceHashes(tokens, tokens.length, blockSize, hi, lo);
    const ref = referenceHashes(tokens, blockSize);
    assert.equal(n, ref.length);
    for (let b = 0; b < n; b++) assert.equal(u64(hi[b] as number, lo[b] as number), ref[b], `block size ${blockSize}, block ${b}`);
  }
});

test('engine hash - the same block content under different parents gets different sequence hashes', () => {
  const hi = new Uint32Array(2);
  const lo = new Uint32Array(2);
  computeSequenceHashes(new Uint32Array([1, 2, 3, 4, 9, 9, 9, 9]), 8, 4, hi, lo);
  const a = u64(hi[1] as number, lo[1] as number);
  computeSequenceHashes(new Uint32Array([5, 6, 7, 8, 9, 9, 9, 9]), 8, 4, hi, lo);
  const b = u64(hi[1] as number, lo[1] as number);
  assert.notEqual(a, b);
});

test('engine hash - bad arguments throw RangeError', () => {
  const hi = new Uint32Array(1);
  const lo = new Uint32Array(1);
  assert.throws(() => computeSequenceHashes(new Uint32Array(8), 8, 4, hi, lo), RangeError);
  assert.throws(() => computeSequenceHashes(new Uint32Array(8), 9, 4, hi, lo), RangeError);
  assert.throws(() => computeSequenceHashes(new Uint32Array(8), 8, 0, hi, lo), RangeError);
});
