import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PrefixIndex } from '../../src/router/prefix-index.js';
import { xorshift32 } from '../support/xorshift.js';

test('router-prefix-index - add, has and remove track membership per rank', () => {
  const idx = new PrefixIndex(3);
  idx.add(1, 0xdeadbeef, 0x80000001);
  idx.add(1, 0xdeadbeef, 0x80000001);
  idx.add(2, 0xdeadbeef, 0x80000001);
  assert.equal(idx.size, 1);
  assert.equal(idx.blocksOnRank(1), 1);
  assert.ok(idx.has(1, 0xdeadbeef, 0x80000001));
  assert.ok(idx.has(2, 0xdeadbeef | 0, 0x80000001 | 0), 'int32 and u32 spellings of a half are the same key');
  assert.ok(!idx.has(0, 0xdeadbeef, 0x80000001));
  idx.remove(1, 0xdeadbeef, 0x80000001);
  assert.ok(!idx.has(1, 0xdeadbeef, 0x80000001));
  assert.equal(idx.size, 1);
  idx.remove(2, 0xdeadbeef, 0x80000001);
  assert.equal(idx.size, 0);
  idx.remove(2, 1, 2);
  assert.equal(idx.blocksOnRank(2), 0);
  assert.throws(() => idx.add(3, 1, 1), RangeError);
});

test('router-prefix-index - random adds and removes across growth match a reference map', () => {
  const next = xorshift32(11);
  const numRanks = 40; // two bitset words
  const idx = new PrefixIndex(numRanks, 16);
  const ref = new Map<string, Set<number>>();
  // A small key space forces collisions, long probe chains and backward-shift deletions.
  const keys: Array<[number, number]> = [];
  for (let i = 0; i < 3000; i++) keys.push([next() & 7, next()]);
  for (let step = 0; step < 60000; step++) {
    const [hi, lo] = keys[next() % keys.length]!;
    const rank = next() % numRanks;
    const k = `${hi}:${lo}`;
    if (next() % 3 !== 0) {
      idx.add(rank, hi, lo);
      let s = ref.get(k);
      if (s === undefined) ref.set(k, (s = new Set()));
      s.add(rank);
    } else {
      idx.remove(rank, hi, lo);
      const s = ref.get(k);
      if (s !== undefined) {
        s.delete(rank);
        if (s.size === 0) ref.delete(k);
      }
    }
  }
  assert.equal(idx.size, ref.size);
  for (const [hi, lo] of keys) {
    const s = ref.get(`${hi}:${lo}`);
    for (let r = 0; r < numRanks; r++) assert.equal(idx.has(r, hi, lo), s?.has(r) ?? false);
  }
  const perRank = new Array<number>(numRanks).fill(0);
  for (const s of ref.values()) for (const r of s) perRank[r]!++;
  for (let r = 0; r < numRanks; r++) assert.equal(idx.blocksOnRank(r), perRank[r]);
});

test('router-prefix-index - clearRank forgets one rank and keeps the others', () => {
  const idx = new PrefixIndex(2);
  for (let i = 0; i < 5000; i++) {
    idx.add(0, i, i * 7);
    if (i % 2 === 0) idx.add(1, i, i * 7);
  }
  idx.clearRank(0);
  assert.equal(idx.blocksOnRank(0), 0);
  assert.equal(idx.blocksOnRank(1), 2500);
  assert.equal(idx.size, 2500);
  for (let i = 0; i < 5000; i++) {
    assert.equal(idx.has(0, i, i * 7), false);
    assert.equal(idx.has(1, i, i * 7), i % 2 === 0);
  }
});

test('router-prefix-index - matchDepths counts leading blocks held per candidate rank', () => {
  const idx = new PrefixIndex(70);
  const hi = Uint32Array.from([1, 2, 3, 4]);
  const lo = Uint32Array.from([10, 20, 30, 40]);
  // rank 0: blocks 0,1; rank 33: all; rank 65: blocks 0 and 2 (gap at 1); rank 5: block 1 only
  idx.add(0, 1, 10); idx.add(0, 2, 20);
  for (let i = 0; i < 4; i++) idx.add(33, hi[i]!, lo[i]!);
  idx.add(65, 1, 10); idx.add(65, 3, 30);
  idx.add(5, 2, 20);
  const depth = new Int32Array(70).fill(-1);
  idx.matchDepths(4, hi, lo, 0, 70, depth);
  assert.equal(depth[0], 2);
  assert.equal(depth[33], 4);
  assert.equal(depth[65], 1);
  assert.equal(depth[5], 0);
  assert.equal(depth[69], 0);
  // Only candidates are written.
  depth.fill(-1);
  idx.matchDepths(4, hi, lo, 30, 5, depth);
  assert.equal(depth[33], 4);
  assert.equal(depth[0], -1);
  assert.equal(depth[35], -1);
});

test('router-prefix-index - refCounted acquire/release keep per-rank reference counts exactly', () => {
  const next = xorshift32(23);
  const numRanks = 40; // two bitset words, two shared words
  const idx = new PrefixIndex(numRanks, 16, true);
  // The caller's side table of extra references (count − 1), as ActiveSequences keeps it.
  const extra = new Map<string, number>();
  const count = new Map<string, number>();
  const keys: Array<[number, number]> = [];
  for (let i = 0; i < 2000; i++) keys.push([next() & 7, next()]);
  for (let step = 0; step < 60000; step++) {
    const [hi, lo] = keys[next() % keys.length]!;
    const rank = next() % numRanks;
    const k = `${rank}:${hi}:${lo}`;
    const c = count.get(k) ?? 0;
    if (c === 0 || next() % 2 === 0) {
      const first = idx.acquire(rank, hi, lo);
      assert.equal(first, c === 0);
      if (!first) extra.set(k, (extra.get(k) ?? 0) + 1);
      count.set(k, c + 1);
    } else {
      const slot = idx.release(rank, hi, lo);
      assert.equal(slot >= 0, c > 1, 'release reports the shared slot exactly when the rank holds more than one reference');
      if (slot >= 0) {
        const e = (extra.get(k) as number) - 1;
        if (e === 0) {
          extra.delete(k);
          idx.unshareAt(slot, rank);
        } else extra.set(k, e);
      }
      if (c === 1) count.delete(k);
      else count.set(k, c - 1);
    }
  }
  const perRank = new Array<number>(numRanks).fill(0);
  const distinct = new Set<string>();
  for (const [k, c] of count) {
    const [r, hi, lo] = k.split(':').map(Number) as [number, number, number];
    assert.ok(idx.has(r, hi, lo));
    assert.equal(idx.isShared(r, hi, lo), c > 1);
    perRank[r]!++;
    distinct.add(`${hi}:${lo}`);
  }
  assert.equal(idx.size, distinct.size);
  for (let r = 0; r < numRanks; r++) assert.equal(idx.blocksOnRank(r), perRank[r]);
  for (const [hi, lo] of keys) for (let r = 0; r < numRanks; r++) assert.equal(idx.has(r, hi, lo), count.has(`${r}:${hi}:${lo}`));
  // A rank with no reference cannot release; plain indexes have no reference counts.
  const [hi, lo] = keys[0]!;
  let free = 0;
  while (count.has(`${free}:${hi}:${lo}`)) free++;
  assert.throws(() => idx.release(free, hi, lo), RangeError);
  assert.throws(() => new PrefixIndex(2).acquire(0, 1, 1), TypeError);
  assert.throws(() => new PrefixIndex(2).release(0, 1, 1), TypeError);
});
