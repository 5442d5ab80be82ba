import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvEventRecorder } from '../../src/engine/events.js';
import { BlockPool, BlockState, COUNT_SHIFT } from '../../src/engine/kv/block-pool.js';
import { BlockHashTable } from '../../src/engine/kv/hash-table.js';
import type { BlockTable } from '../../src/engine/kv/hash-table.js';
import { GroupedBlockHashTable } from '../../src/engine/kv/grouped-hash-table.js';
import { KvEventKind } from '../../src/engine/types.js';
import { xorshift32 } from '../support/xorshift.js';

test('kv hash table - agrees with a Map under random inserts and removals (backward-shift deletion)', () => {
  const t = new BlockHashTable(64);
  const ref = new Map<string, number>();
  let s = 7;
  const rnd = (): number => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s;
  };
  // Few distinct lo values force long probe runs and wrap-around at the table end.
  const keys: Array<[number, number]> = [];
  for (let i = 0; i < 200; i++) keys.push([rnd(), (rnd() & 7) * 0x10000]);
  for (let step = 0; step < 20000; step++) {
    const [hi, lo] = keys[rnd() % keys.length] as [number, number];
    const k = `${hi}:${lo}`;
    if (ref.has(k)) {
      assert.equal(t.remove(hi, lo), ref.get(k));
      ref.delete(k);
    } else if (ref.size < 64) {
      const v = rnd() & 0xffff;
      t.insert(hi, lo, v);
      ref.set(k, v);
    }
    if (step % 97 === 0) {
      for (const [kh, kl] of keys) {
        const kk = `${kh}:${kl}`;
        assert.equal(t.find(kh, kl), ref.has(kk) ? ref.get(kk) : -1);
      }
    }
  }
  assert.equal(t.size, ref.size);
  assert.equal(t.remove(1, 2), -1, 'absent key');
});

test('kv hash tables - both agree with a Map on grouped keys: finds, runs, removals of whole groups, growth and clear', () => {
  // sticky: four operations in five stay on the previous key's group, as a replay's block runs do
  // (the grouped table's lookup memo then answers most of them; deletions must invalidate it).
  for (const sticky of [false, true]) for (const make of [
    (n: number): BlockTable => new BlockHashTable(n), (n: number): BlockTable => new GroupedBlockHashTable(n),
    (n: number): BlockTable => new GroupedBlockHashTable(n, true), (n: number): BlockTable => new GroupedBlockHashTable(n, true, 3),
    (n: number): BlockTable => new GroupedBlockHashTable(n, false, 1),
  ]) {
    const t = make(512);
    const ref = new Map<string, number>();
    let s = 11;
    const rnd = (): number => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s;
    };
    // 24 groups of up to 32 keys (hi shared, lo differing in its low 5 bits); few distinct groups
    // homes collide often, so entries shift on deletion and probe runs wrap around.
    const groups: Array<[number, number]> = [];
    for (let g = 0; g < 24; g++) groups.push([rnd() & 3, (rnd() & 0x3) << 16]);
    const key = (g: number, i: number): [number, number] => {
      const [hi, base] = groups[g] as [number, number];
      return [hi, (base | (g << 8) | i) >>> 0];
    };
    let lastGroup = 0;
    for (let step = 0; step < 30000; step++) {
      const g = sticky && rnd() % 5 !== 0 ? lastGroup : rnd() % groups.length, i = rnd() & 31;
      lastGroup = g;
      const [hi, lo] = key(g, i);
      const k = `${hi}:${lo}`;
      if (ref.has(k)) {
        // discard() removes like remove() without reading the value.
        if ((step & 1) === 0) assert.equal(t.remove(hi, lo), ref.get(k));
        else assert.equal(t.discard(hi, lo), true);
        ref.delete(k);
      } else if (ref.size < 512) {
        const v = rnd() & 0xffff;
        t.insert(hi, lo, v);
        ref.set(k, v);
      }
      if (step % 211 === 0) {
        for (let gg = 0; gg < groups.length; gg++) {
          // findRun over a group's 32 keys stops at the first absent one and reports the ids.
          const hs = new Uint32Array(32), ls = new Uint32Array(32), ids = new Int32Array(32).fill(-7);
          // The run from `from` ends at the first absent key at or after it.
          const from = gg % 4;
          let expectEnd = 32;
          for (let ii = 0; ii < 32; ii++) {
            const [kh, kl] = key(gg, ii);
            hs[ii] = kh;
            ls[ii] = kl;
            const kk = `${kh}:${kl}`;
            assert.equal(t.find(kh, kl), ref.has(kk) ? ref.get(kk) : -1);
            if (!ref.has(kk) && ii >= from && expectEnd === 32) expectEnd = ii;
          }
          assert.equal(t.findRun(hs, ls, from, 32, ids), expectEnd);
          for (let ii = from; ii < expectEnd; ii++) assert.equal(ids[ii], ref.get(`${hs[ii]}:${ls[ii]}`));
        }
      }
    }
    assert.equal(t.size, ref.size);
    assert.equal(t.remove(9, 9), -1, 'absent key');
    assert.equal(t.discard(9, 9), false, 'absent key');
    t.clear();
    assert.equal(t.size, 0);
    const [hi, lo] = key(0, 0);
    assert.equal(t.find(hi, lo), -1);
    t.insert(hi, lo, 5);
    assert.equal(t.find(hi, lo), 5);
  }
});

test('kv grouped hash table - its memos of the last stored and dropped entries follow a deletion that moves or removes their entries', () => {
  // Few groups in few entries (homes collide, entries shift on deletion): touch group x through
  // one path, empty group y (its entry goes, later entries of its probe run move back), touch x
  // again through either path, then check every key against a Map.
  const rnd = xorshift32(3);
  for (const groupBits of [3, 5]) {
    const t = new GroupedBlockHashTable(4096, false, groupBits);
    const width = 1 << groupBits;
    const ref = new Map<string, number>();
    const groups: Array<[number, number]> = Array.from({ length: 7 }, () => [rnd() & 1, (rnd() & 0xfff) << groupBits]);
    const keyOf = (g: number, i: number): [number, number] => [(groups[g] as [number, number])[0], ((groups[g] as [number, number])[1] | i) >>> 0];
    const touch = (g: number): void => {
      const i = rnd() % width;
      const [hi, lo] = keyOf(g, i);
      const k = `${hi}:${lo}`;
      const op = rnd() % 3;
      if (op === 0 && !ref.has(k)) {
        t.insert(hi, lo, rnd() & 0xffff);
        ref.set(k, t.find(hi, lo));
      } else if (op === 1) assert.equal(t.find(hi, lo), ref.has(k) ? ref.get(k) : -1);
      else if (ref.has(k)) {
        if ((rnd() & 1) === 0) assert.equal(t.discard(hi, lo), true);
        else assert.equal(t.remove(hi, lo), ref.get(k));
        ref.delete(k);
      }
    };
    const check = (): void => {
      for (let g = 0; g < groups.length; g++) {
        for (let i = 0; i < width; i++) {
          const [hi, lo] = keyOf(g, i);
          const k = `${hi}:${lo}`;
          assert.equal(t.find(hi, lo), ref.has(k) ? ref.get(k) : -1, `group ${g} index ${i}`);
        }
      }
      assert.equal(t.size, ref.size);
    };
    for (let round = 0; round < 3000; round++) {
      // Fill every group a little so that entries collide.
      for (let g = 0; g < groups.length; g++) {
        const [hi, lo] = keyOf(g, rnd() % width);
        if (!ref.has(`${hi}:${lo}`)) {
          t.insert(hi, lo, round);
          ref.set(`${hi}:${lo}`, round);
        }
      }
      const x = rnd() % groups.length;
      let y = rnd() % groups.length;
      if (y === x) y = (y + 1) % groups.length;
      touch(x);
      touch(x);
      for (let i = 0; i < width; i++) {
        const [hi, lo] = keyOf(y, i);
        const k = `${hi}:${lo}`;
        if (!ref.has(k)) continue;
        assert.equal(t.discard(hi, lo), true);
        ref.delete(k);
      }
      touch(x);
      touch(x);
      check();
    }
  }
});

test('kv grouped hash table - a group is one entry: 32 keys of a group take one, random keys one each', () => {
  const t = new GroupedBlockHashTable(4096);
  for (let i = 0; i < 32; i++) t.insert(0x1234, 0xabcd00 | i, i);
  assert.equal(t.size, 32);
  assert.equal(t.capacity, 16, 'one group never grows the table');
  for (let g = 0; g < 100; g++) t.insert(g + 1, g << 5, g);
  assert.ok(t.capacity >= 256, `101 groups at load ≤ 0.5 need ≥ 256 entries, got ${t.capacity}`);
  const hs = Uint32Array.from({ length: 40 }, () => 0x1234), ls = Uint32Array.from({ length: 40 }, (_, i) => 0xabcd00 | (i & 31));
  assert.equal(t.findRun(hs, ls, 0, 40, null), 40, 'a run may pass through a group twice');
  assert.equal(t.remove(0x1234, 0xabcd00 | 7), 7);
  assert.equal(t.findRun(hs, ls, 0, 40, null), 7);
});

test('kv grouped hash table - the group width sets the slab row width: 16 heads of 4 words, 8 rows of 8 or 32 ids and a free list', () => {
  const narrow = new GroupedBlockHashTable(4096, false, 3), wide = new GroupedBlockHashTable(4096);
  assert.equal(narrow.groupBits, 3);
  assert.equal(narrow.allocatedBytes, (16 * 4 + 8 * 8 + 8) * 4);
  assert.equal(wide.allocatedBytes, (16 * 4 + 8 * 32 + 8) * 4);
  // Keys 0..15 of one 5-bit group are two 3-bit groups: entries for 0..7 and 8..15.
  for (let i = 0; i < 16; i++) narrow.insert(0x1234, 0xabcd00 | i, 100 + i);
  const hs = Uint32Array.from({ length: 16 }, () => 0x1234), ls = Uint32Array.from({ length: 16 }, (_, i) => 0xabcd00 | i);
  const ids = new Int32Array(16);
  assert.equal(narrow.findRun(hs, ls, 0, 16, ids), 16);
  assert.deepEqual(Array.from(ids), Array.from({ length: 16 }, (_, i) => 100 + i));
  assert.equal(narrow.remove(0x1234, 0xabcd00 | 8), 108);
  assert.equal(narrow.findRun(hs, ls, 0, 16, null), 8);
  assert.equal(narrow.find(0x1234, 0xabcd00 | 9), 109);
  for (const bad of [0, 6, 2.5]) assert.throws(() => new GroupedBlockHashTable(64, false, bad), RangeError);
});

test('kv block pool - free blocks are handed out lowest first and evictions take the oldest inactive block', () => {
  const rec = new KvEventRecorder(4);
  const pool = new BlockPool(4, true, rec);
  const ids = [pool.allocate(), pool.allocate(), pool.allocate()];
  assert.deepEqual(ids, [0, 1, 2]);
  pool.makeFull(0, 0, 100);
  pool.makeFull(1, 0, 101);
  pool.makeFull(2, 0, 102);
  pool.release(2);
  pool.release(0);
  pool.release(1);
  assert.deepEqual(pool.inactiveOrder(), [2, 0, 1]);
  assert.equal(pool.find(0, 100), 0, 'inactive blocks stay findable');
  pool.touch(0);
  assert.equal(pool.stateOf(0), BlockState.active);
  assert.deepEqual(pool.inactiveOrder(), [2, 1], 'revival unlinks from the middle');
  assert.equal(pool.allocate(), 3, 'free before evicting');
  assert.equal(pool.allocate(), 2, 'then the oldest inactive');
  assert.equal(pool.find(0, 102), -1, 'evicted block left the table');
  const log = rec.take();
  assert.equal(log.count, 1);
  assert.equal(log.kind[0], KvEventKind.removed);
  assert.equal(log.seqHashLo[0], 102);
  assert.equal(pool.allocate(), 1);
  assert.equal(pool.allocate(), -1, 'nothing free or evictable');
  pool.checkInvariants();
});

test('kv block pool - a partial block is destroyed on release and reused next', () => {
  const pool = new BlockPool(3, true, new KvEventRecorder(4));
  const a = pool.allocate();
  const b = pool.allocate();
  pool.release(b);
  assert.equal(pool.stateOf(b), BlockState.free);
  assert.deepEqual(pool.freeOrder(), [b, 2]);
  assert.equal(pool.allocate(), b);
  assert.equal(pool.numActive, 2);
  pool.release(a);
  pool.checkInvariants();
});

test('kv block pool - shared full blocks become inactive only when the last reference goes', () => {
  const pool = new BlockPool(2, true, new KvEventRecorder(4));
  const a = pool.allocate();
  pool.makeFull(a, 9, 9);
  pool.touch(a);
  assert.equal(pool.refCountOf(a), 2);
  pool.release(a);
  assert.equal(pool.stateOf(a), BlockState.active);
  pool.release(a);
  assert.equal(pool.stateOf(a), BlockState.inactive);
  pool.checkInvariants();
});

test('kv block pool - without prefix caching released full blocks go straight back to free', () => {
  const pool = new BlockPool(2, false, new KvEventRecorder(4));
  const a = pool.allocate();
  pool.makeFullAnonymous(a);
  pool.release(a);
  assert.equal(pool.numInactive, 0);
  assert.equal(pool.numFree, 2);
  pool.checkInvariants();
});

test('kv block pool - checkInvariants detects a corrupted reference count', () => {
  const pool = new BlockPool(2, true, new KvEventRecorder(4));
  const a = pool.allocate();
  pool.state[a] = pool.state[a]! & ((1 << COUNT_SHIFT) - 1);
  assert.throws(() => pool.checkInvariants(), /active block 0 has refCount 0/);
  pool.state[a] = 3;
  assert.throws(() => pool.checkInvariants(), /block 0 has state 3/);
  pool.release(a);
  pool.checkInvariants();
  pool.state[a] = 1 << COUNT_SHIFT;
  assert.throws(() => pool.checkInvariants(), /free block 0 has state word 8, not 0/);
});

test('kv block pool - checkInvariants detects an inactive block whose LRU ring stamp is wrong', () => {
  const pool = new BlockPool(4, true, new KvEventRecorder(4));
  const a = pool.allocate();
  pool.makeFull(a, 1, 1);
  pool.release(a);
  pool.checkInvariants();
  // Stamp the block with another ring position: its entry names a block that is not inactive there
  // (eviction takes every entry that is not REVIVED as live).
  pool.state[a] = pool.state[a]! ^ (1 << (COUNT_SHIFT + 2));
  assert.throws(() => pool.checkInvariants(), /LRU ring entry 0 names block 0, which is not inactive with that stamp/);
});

test('kv block pool - the LRU ring agrees with a linked-list LRU through revivals, evictions, compaction and growth', () => {
  // Reference: the inactive blocks in an array, oldest first (what the pool kept as a linked list).
  for (const reserve of [false, true]) {
    const numBlocks = 200;
    const pool = new BlockPool(numBlocks, true, new KvEventRecorder(4), reserve);
    const lru: number[] = [];
    const refs = new Map<number, number>();
    const hashOf = new Map<number, number>();
    let s = 5;
    const rnd = (k: number): number => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return (s >>> 8) % k;
    };
    let nextHash = 1;
    for (let step = 0; step < 40000; step++) {
      const op = rnd(10);
      // First half: the pool never fills, so nothing is evicted and revivals leave stale ring
      // entries behind the head until the ring is compacted; second half: evictions too.
      if (op < 3 && (step >= 20000 || pool.numFree > numBlocks / 2)) {
        // Allocate a full block: free first, else the oldest inactive one is evicted.
        const expected = pool.numFree > 0 ? -2 : lru.length > 0 ? lru[0]! : -1;
        const id = pool.allocate();
        if (expected === -1) {
          assert.equal(id, -1);
          continue;
        }
        if (expected >= 0) {
          assert.equal(id, expected, `step ${step}: eviction takes the oldest inactive block`);
          lru.shift();
          assert.equal(pool.find(0, hashOf.get(id)!), -1);
        }
        const h = nextHash++;
        pool.makeFull(id, 0, h);
        hashOf.set(id, h);
        refs.set(id, 1);
      } else if (op >= 3 && op < 6 && refs.size > 0) {
        // Release a held reference.
        const held = [...refs.keys()];
        const id = held[rnd(held.length)]!;
        const rc = refs.get(id)! - 1;
        pool.release(id);
        if (rc === 0) {
          refs.delete(id);
          lru.push(id);
        } else refs.set(id, rc);
      } else if (op >= 6 && lru.length > 0) {
        // Revive (or share) a resident block found by its hash; mostly inactive ones, from anywhere in the LRU.
        const id = op < 9 ? lru[rnd(lru.length)]! : [...refs.keys()][0] ?? lru[0]!;
        assert.equal(pool.find(0, hashOf.get(id)!), id);
        pool.touch(id);
        const at = lru.indexOf(id);
        if (at >= 0) lru.splice(at, 1);
        refs.set(id, (refs.get(id) ?? 0) + 1);
      }
      if (step % 97 === 0) {
        assert.deepEqual(pool.inactiveOrder(), lru, `step ${step}`);
        pool.checkInvariants();
      }
    }
    assert.deepEqual(pool.inactiveOrder(), lru);
    pool.checkInvariants();
    // Warming reads the oldest blocks' table slots and changes nothing.
    pool.warmEvictions(16);
    assert.deepEqual(pool.inactiveOrder(), lru);
  }
});

test('kv block pool - memory follows use: an idle 16384-block pool holds a few KiB, grows with the ids used, and clear() gives it back', () => {
  const pool = new BlockPool(16384, true, new KvEventRecorder(4));
  const idle = pool.allocatedBytes;
  assert.ok(idle < 8192, `idle pool holds ${idle} bytes`);
  const ids: number[] = [];
  for (let i = 0; i < 1000; i++) {
    const id = pool.allocate();
    pool.makeFull(id, i + 1, 0x9e3779b1 ^ i);
    ids.push(id);
  }
  assert.deepEqual(ids.slice(0, 3), [0, 1, 2], 'ids still handed out lowest first');
  const used = pool.allocatedBytes;
  // 1000 blocks: rows grown to 1024 ids (32 B each + 4 B of free stack) and a table for 1000 entries (≤ 32 B each).
  assert.ok(used > idle && used < 1025 * 36 + 2048 * 16 + 1024, `pool with 1000 full blocks holds ${used} bytes`);
  for (const id of ids) pool.release(id);
  pool.checkInvariants();
  assert.equal(pool.numInactive, 1000);
  assert.equal(pool.find(1, 0x9e3779b1), 0, 'cached blocks stay findable after the table grew');
  pool.clear();
  pool.checkInvariants();
  assert.equal(pool.numFree, 16384);
  assert.ok(pool.table.allocatedBytes <= 64 * 16, 'the hash table shrinks back on clear');
  assert.deepEqual(pool.freeOrder().slice(0, 3), [0, 1, 2]);
});
