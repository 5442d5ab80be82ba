import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, computeSequenceHashes, createPolynomialPerfModel, normalizeEngineArgs } from '../../src/engine/engine.js';
import { KvEventKind } from '../../src/engine/types.js';
import type { EngineArgs, KvEventLog } from '../../src/engine/types.js';

function makeEngine(over: Partial<EngineArgs>): Engine {
  return new Engine(
    normalizeEngineArgs({ numGpuBlocks: 10, blockSize: 4, maxNumSeqs: 4, maxNumBatchedTokens: 8, ...over }),
    createPolynomialPerfModel(),
  );
}

function range(from: number, n: number): Uint32Array {
  const a = new Uint32Array(n);
  for (let i = 0; i < n; i++) a[i] = from + i;
  return a;
}

const u64 = (hi: number, lo: number): bigint => (BigInt(hi) << 32n) | BigInt(lo);

type Ev =
  | { id: number; kind: 'stored'; parent: bigint | null; hashes: bigint[]; tokenHashes: bigint[]; tokens: number[] }
  | { id: number; kind: 'removed'; hashes: bigint[] }
  | { id: number; kind: 'cleared' };

function decode(log: KvEventLog): Ev[] {
  const out: Ev[] = [];
  for (let i = 0; i < log.count; i++) {
    const id = log.firstEventId + i;
    const start = log.hashStart[i] as number;
    const n = log.hashCount[i] as number;
    const hashes: bigint[] = [];
    for (let j = start; j < start + n; j++) hashes.push(u64(log.seqHashHi[j] as number, log.seqHashLo[j] as number));
    if (log.kind[i] === KvEventKind.stored) {
      const tokenHashes: bigint[] = [];
      for (let j = start; j < start + n; j++) tokenHashes.push(u64(log.tokHashHi[j] as number, log.tokHashLo[j] as number));
      const t0 = log.tokenStart[i] as number;
      out.push({
        id,
        kind: 'stored',
        parent: log.hasParent[i] === 1 ? u64(log.parentHi[i] as number, log.parentLo[i] as number) : null,
        hashes,
        tokenHashes,
        tokens: Array.from(log.tokens.subarray(t0, t0 + n * log.blockSize)),
      });
    } else if (log.kind[i] === KvEventKind.removed) {
      out.push({ id, kind: 'removed', hashes });
    } else {
      assert.equal(log.kind[i], KvEventKind.cleared);
      out.push({ id, kind: 'cleared' });
    }
  }
  return out;
}

function seqHashes(tokens: Uint32Array | number[], blockSize = 4): bigint[] {
  const t = Uint32Array.from(tokens);
  const hi = new Uint32Array(64);
  const lo = new Uint32Array(64);
  const n = computeSequenceHashes(t, t.length, blockSize, hi, lo);
  const out: bigint[] = [];
  for (let b = 0; b < n; b++) out.push(u64(hi[b] as number, lo[b] as number));
  return out;
}

test('events - a prefill chunk stores its full blocks in one event and promotion stores one block with its parent', () => {
  const e = makeEngine({});
  e.addRequest(1, range(1, 10), 3);
  e.step(0);
  const first = decode(e.takeEvents());
  const h = seqHashes(range(1, 8));
  assert.equal(first.length, 1);
  const s0 = first[0];
  assert.ok(s0 !== undefined && s0.kind === 'stored');
  assert.equal(s0.id, 0, 'event ids start at 0');
  assert.equal(s0.parent, null, 'first block of a sequence has no parent');
  assert.deepEqual(s0.hashes, h);
  assert.deepEqual(s0.tokens, [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(s0.tokenHashes[0], h[0], 'tokens hash of block 0 equals its sequence hash');

  e.step(1);
  e.step(2);
  assert.equal(e.takeEvents().count, 0, 'the partial block is never published');
  e.step(3);
  const promoted = decode(e.takeEvents());
  assert.equal(promoted.length, 1);
  const s1 = promoted[0];
  assert.ok(s1 !== undefined && s1.kind === 'stored');
  assert.equal(s1.id, 1, 'event ids continue across takeEvents()');
  assert.equal(s1.parent, h[1], 'parent is the previous full block');
  assert.equal(s1.tokens.length, 4);
  assert.deepEqual(s1.tokens.slice(0, 2), [9, 10]);
  assert.deepEqual(s1.hashes, seqHashes([1, 2, 3, 4, 5, 6, 7, 8, ...s1.tokens]).slice(2));
});

test('events - eviction publishes Removed for the oldest inactive block before the Stored that needed the room', () => {
  const e = makeEngine({ numGpuBlocks: 4 });
  e.addRequest(1, range(1, 8), 1);
  e.step(0);
  e.checkInvariants();
  const hOld = seqHashes(range(1, 8));
  assert.deepEqual(e.inactiveBlockOrder(), [1, 0]);
  e.takeEvents();

  const prompt2 = range(11, 12);
  e.addRequest(2, prompt2, 2);
  e.step(1);
  e.checkInvariants();
  const pass1 = decode(e.takeEvents());
  const h2 = seqHashes(prompt2);
  assert.deepEqual(pass1.map((x) => x.kind), ['stored'], 'blocks 2 and 3 were free: nothing evicted');
  e.step(2);
  e.checkInvariants();
  const pass2 = decode(e.takeEvents());
  assert.deepEqual(pass2.map((x) => x.kind), ['removed', 'stored', 'removed']);
  const [rm, st, rm2] = pass2;
  assert.ok(rm !== undefined && rm.kind === 'removed');
  assert.deepEqual(rm.hashes, [hOld[1]], 'leaf of request 1 is evicted first');
  assert.ok(st !== undefined && st.kind === 'stored');
  assert.equal(st.parent, h2[1]);
  assert.deepEqual(st.hashes, [h2[2]]);
  assert.ok(rm2 !== undefined && rm2.kind === 'removed');
  assert.deepEqual(rm2.hashes, [hOld[0]], 'the first output token\'s block evicts the root');
  assert.deepEqual(e.requestBlockIds(2), [2, 3, 1, 0]);
});

test('events - a prefill publishes its stored run after the eviction its partial last block needed', () => {
  const e = makeEngine({ numGpuBlocks: 4, maxNumBatchedTokens: 64 });
  e.addRequest(1, range(1, 12), 1); // 3 full blocks, the first token opens a 4th (partial) block
  e.step(0);
  e.checkInvariants();
  const hOld = seqHashes(range(1, 12));
  assert.deepEqual(e.inactiveBlockOrder(), [2, 1, 0], 'finished: the partial block freed, the full ones cached leaf first');
  e.takeEvents();
  const prompt2 = range(21, 10); // 2 full blocks and a partial one
  e.addRequest(2, prompt2, 2);
  e.step(1);
  e.checkInvariants();
  const evs = decode(e.takeEvents());
  // Block 0 takes the free block; block 1 evicts the oldest cached block, the partial block the next.
  assert.deepEqual(evs.map((x) => x.kind), ['removed', 'removed', 'stored']);
  const [rm1, rm2, st] = evs;
  assert.ok(rm1 !== undefined && rm1.kind === 'removed' && rm2 !== undefined && rm2.kind === 'removed');
  assert.deepEqual([rm1.hashes, rm2.hashes], [[hOld[2]], [hOld[1]]]);
  assert.ok(st !== undefined && st.kind === 'stored');
  assert.equal(st.parent, null);
  assert.deepEqual(st.hashes, seqHashes(prompt2));
  assert.deepEqual(e.requestBlockIds(2), [3, 2, 1]);
});

test('events - blocks stored after a cached prefix name the last cached block as parent', () => {
  const e = makeEngine({ maxNumBatchedTokens: 64 });
  // Request 1 caches blocks A B; request 3 = A B C D + 1 token: A B hit, C D are new and stored
  // in one event with parent B; the partial fifth block is not published.
  e.addRequest(1, range(1, 8), 1);
  e.step(0);
  e.takeEvents();
  e.addRequest(3, range(1, 17), 1);
  e.step(1);
  const ev = decode(e.takeEvents());
  const h = seqHashes(range(1, 16));
  assert.equal(ev.length, 1);
  const s = ev[0];
  assert.ok(s !== undefined && s.kind === 'stored');
  assert.equal(s.parent, h[1]);
  assert.deepEqual(s.hashes, [h[2], h[3]]);
  assert.deepEqual(s.tokens, Array.from(range(9, 8)));
});

test('events - clearAll records one AllBlocksCleared event and later ids continue', () => {
  const e = makeEngine({});
  e.addRequest(1, range(1, 8), 2);
  e.step(0);
  e.clearAll();
  const ev = decode(e.takeEvents());
  assert.deepEqual(ev.map((x) => x.kind), ['stored', 'cleared']);
  assert.equal(ev[1]?.id, 1);
  e.addRequest(1, range(1, 8), 2);
  e.step(1);
  const again = decode(e.takeEvents());
  assert.equal(again[0]?.id, 2);
  assert.equal(again[0]?.kind, 'stored', 'after clearing, the same blocks are stored again');
});

test('events - the returned log stays valid until the next takeEvents()', () => {
  const e = makeEngine({});
  e.addRequest(1, range(1, 8), 5);
  e.step(0);
  const log = e.takeEvents();
  const before = decode(log);
  e.addRequest(2, range(100, 8), 5);
  e.step(1);
  assert.deepEqual(decode(log), before, 'stepping does not write into the handed-out log');
  const next = e.takeEvents();
  assert.notEqual(next, log);
  assert.equal(next.firstEventId, 1);
});
