import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, createPolynomialPerfModel, normalizeEngineArgs } from '../../src/engine/engine.js';
import { BlockPool, BlockState } from '../../src/engine/kv/block-pool.js';
import { GroupedBlockHashTable } from '../../src/engine/kv/grouped-hash-table.js';
import { KvEventRecorder } from '../../src/engine/events.js';
import { AddOutcome } from '../../src/engine/types.js';
import type { EngineOptions, KvEventLog, StepResult } from '../../src/engine/types.js';
import { groupBitsFor, groupHashes } from '../../src/replay/trace-hashes.js';
import { xorshift32 } from '../support/xorshift.js';

// Grouped ids (BlockPool with a GroupedBlockHashTable of implicit ids): a full block's id is its
// place in the table. Nothing outside the pool may see a difference: an engine with grouped ids
// must step exactly like one with a plain hash table.

const BS = 4;
/** Engine blocks per trace block: group hashes of 4 blocks, 2 index bits. */
const PER = 4;
const GROUP_BITS = groupBitsFor(PER);

function stepRecord(r: StepResult, log: KvEventLog | null): unknown {
  let hashes = 0;
  if (log !== null) for (let e = 0; e < log.count; e++) hashes += log.hashCount[e] as number;
  return {
    prefillMs: r.prefillMs, decodeMs: r.decodeMs, scheduled: r.numScheduledTokens, preemptions: r.numPreemptions,
    tokenReqs: Array.from(r.tokenRequestIds.subarray(0, r.numTokens)), tokenIds: Array.from(r.tokenIds.subarray(0, r.numTokens)),
    finished: Array.from(r.finishedRequestIds.subarray(0, r.numFinished)), reasons: Array.from(r.finishedReasons.subarray(0, r.numFinished)),
    admitted: Array.from(r.admissionRequestIds.subarray(0, r.numAdmissions)), cached: Array.from(r.admissionCachedTokens.subarray(0, r.numAdmissions)),
    events: log === null ? null : {
      first: log.firstEventId, kinds: Array.from(log.kind.subarray(0, log.count)), counts: Array.from(log.hashCount.subarray(0, log.count)),
      seqHi: Array.from(log.seqHashHi.subarray(0, hashes)), seqLo: Array.from(log.seqHashLo.subarray(0, hashes)),
    },
  };
}

interface RunStats { steps: unknown[]; resident: bigint[][]; preemptions: number; evictions: number; maxRows: number }

/**
 * A replay-like workload on one rank: prompts of trace ids drawn from a few shared prefixes (the
 * group hashes of trace-hashes.ts), a pool small enough to evict and preempt, aborts, and one
 * clearAll halfway. `groupBits` 0: a plain hash table; else grouped ids.
 */
function run(groupBits: number, recordKvEvents: boolean, seed: number): RunStats {
  const args = normalizeEngineArgs({ numGpuBlocks: 48, blockSize: BS, maxNumSeqs: 5, maxNumBatchedTokens: 32, seed });
  const options: EngineOptions = { recordEventTokens: false, recordKvEvents, keepPromptTokens: false, keepGeneratedTokens: false, blockHashGroupBits: groupBits };
  const engine = new Engine(args, createPolynomialPerfModel(), options);
  const next = xorshift32(seed);
  const prefixes = [0, 1, 2, 3].map((p) => Uint32Array.from({ length: 6 }, (_, i) => 1000 * (p + 1) + i));
  const out: RunStats = { steps: [], resident: [], preemptions: 0, evictions: 0, maxRows: 0 };
  const live: number[] = [];
  let id = 0;
  for (let step = 0; step < 900; step++) {
    if (step < 800 && next() % 3 === 0) {
      // 1–8 trace blocks of 16 tokens: a shared prefix of some of them, then fresh ids.
      const numIds = 1 + (next() % 8);
      const shared = next() % (numIds + 1);
      const prefix = prefixes[next() % prefixes.length] as Uint32Array;
      const ids = Uint32Array.from({ length: numIds }, (_, i) => (i < shared && i < prefix.length ? prefix[i] as number : 100_000 + (next() % 50_000)));
      const promptLen = (numIds - 1) * PER * BS + 1 + (next() % (PER * BS));
      const prompt = new Uint32Array(promptLen);
      for (let t = 0; t < promptLen; t++) prompt[t] = ids[Math.floor(t / (PER * BS))] as number;
      const nb = Math.floor(promptLen / BS);
      const hashes = { numBlocks: nb, seqHashHi: new Uint32Array(nb), seqHashLo: new Uint32Array(nb), tokHashHi: new Uint32Array(nb), tokHashLo: new Uint32Array(nb) };
      groupHashes(ids, nb, PER, GROUP_BITS, BS, hashes.seqHashHi, hashes.seqHashLo, hashes.tokHashHi, hashes.tokHashLo);
      if (engine.addRequestWithHashes(id, prompt, 1 + (next() % 24), hashes) === AddOutcome.queued) live.push(id);
      id++;
    }
    if (live.length > 0 && next() % 40 === 0) engine.abortRequest(live.splice(next() % live.length, 1)[0] as number);
    if (step === 450) engine.clearAll();
    const r = engine.step(step);
    engine.checkInvariants();
    out.preemptions += r.numPreemptions;
    for (let k = 0; k < r.numFinished; k++) {
      const at = live.indexOf(r.finishedRequestIds[k] as number);
      if (at >= 0) live.splice(at, 1);
    }
    const log = engine.takeEvents();
    for (let e = 0; e < log.count; e++) if (log.kind[e] === 2) out.evictions += log.hashCount[e] as number;
    out.steps.push(stepRecord(r, recordKvEvents ? log : null));
    if (step % 10 === 0) out.resident.push(engine.residentBlockHashes());
  }
  return out;
}

test('engine grouped ids - an engine with grouped ids steps, evicts and publishes exactly like one with a plain table', { timeout: 60_000 }, () => {
  for (const seed of [1, 2, 3]) {
    const plain = run(0, true, seed);
    const grouped = run(GROUP_BITS, true, seed);
    assert.ok(plain.evictions > 50, `seed ${seed}: evictions exercised (${plain.evictions})`);
    assert.ok(plain.preemptions > 0, `seed ${seed}: preemptions exercised`);
    assert.deepEqual(grouped.steps, plain.steps, `seed ${seed}: same steps and events`);
    assert.deepEqual(grouped.resident, plain.resident, `seed ${seed}: same resident hashes`);
    // Without KV events an eviction reads no hash at all; the steps must not change.
    const quiet = run(GROUP_BITS, false, seed);
    assert.deepEqual(quiet.steps, run(0, false, seed).steps, `seed ${seed}: same steps without events`);
  }
});

test('engine grouped ids - the blocks of a group get neighbouring ids, and a partial block moves to its group\'s place when full', () => {
  const rec = new KvEventRecorder(BS, false, true);
  const pool = new BlockPool(64, true, rec, false, 3);
  assert.equal(pool.groupedIds, true);
  // Eight keys of one group (same hi, low 3 bits 0..7) and one key of another.
  const hi = Uint32Array.from({ length: 9 }, (_, i) => (i < 8 ? 0x1234 : 0x9999));
  const lo = Uint32Array.from({ length: 9 }, (_, i) => (i < 8 ? 0xab00 | i : 0xcd08));
  const ids = new Int32Array(9);
  assert.equal(pool.storeRun(hi, lo, 0, 8, true, ids), 8);
  const row = (ids[0] as number) >>> 3;
  for (let b = 0; b < 8; b++) assert.equal(ids[b], row * 8 + b, `block ${b} sits at index ${b} of its group's row`);
  // A partial block takes a row of its own; made full, it moves to its group's place.
  const partial = pool.allocate();
  assert.equal(partial & 7, 0, 'a partial block starts a row');
  assert.notEqual(partial >>> 3, row);
  const full = pool.makeFull(partial, hi[8] as number, lo[8] as number);
  assert.equal(full & 7, 0xcd08 & 7);
  assert.equal(pool.find(hi[8] as number, lo[8] as number), full);
  assert.equal(pool.stateOf(partial), BlockState.free, 'the partial row is given back');
  assert.equal(pool.hashHiOf(full), 0x9999);
  assert.equal(pool.hashLoOf(full), 0xcd08);
  assert.equal(pool.allocate() >>> 3, partial >>> 3, 'its row is the next taken');
  pool.checkInvariants();
  // Released and evicted: the group's entry goes with its last block, and its row is reused.
  for (let b = 7; b >= 0; b--) pool.release(ids[b] as number);
  pool.release(full);
  assert.deepEqual(pool.inactiveOrder(), [7, 6, 5, 4, 3, 2, 1, 0].map((b) => row * 8 + b).concat([full]));
  pool.checkInvariants();
  assert.deepEqual(pool.freeOrder(), [], 'free blocks have no ids until their content is known');
});

test('engine grouped ids - checkInvariants catches a corrupt grouped pool', () => {
  const pool = new BlockPool(32, true, new KvEventRecorder(BS, false, false), false, 2);
  const hi = new Uint32Array([7, 7, 7]), lo = new Uint32Array([0x40, 0x41, 0x42]);
  const ids = new Int32Array(3);
  pool.storeRun(hi, lo, 0, 3, true, ids);
  pool.checkInvariants();
  const word = pool.state[ids[1] as number] as number;
  pool.state[(ids[1] as number) + 2] = word;
  assert.throws(() => pool.checkInvariants(), /not found in the hash table|active blocks/);
  pool.state[(ids[1] as number) + 2] = 0;
  const partial = pool.allocate();
  pool.state[partial + 1] = pool.state[partial] as number;
  pool.state[partial] = 0;
  assert.throws(() => pool.checkInvariants(), /not at the start of its row/);
});

test('engine grouped ids - a table with implicit ids agrees with a Map: insertKey, discardId, keys by id, rows taken apart, growth and clear', () => {
  const next = xorshift32(9);
  const t = new GroupedBlockHashTable(2048, false, 3, true);
  const ref = new Map<string, number>();
  const byId = new Map<number, [number, number]>();
  const taken = new Set<number>();
  // 40 groups of up to 8 keys; homes collide, so deletions move entries (rowEntry must follow).
  const groups = Array.from({ length: 40 }, () => [next() & 7, (next() & 0xff) << 3] as [number, number]);
  for (let step = 0; step < 40_000; step++) {
    const op = next() % 10;
    if (op < 5) {
      const [hi, base] = groups[next() % groups.length] as [number, number];
      const lo = base | (next() & 7);
      const k = `${hi}:${lo}`;
      if (ref.has(k)) {
        const id = ref.get(k) as number;
        assert.equal(t.find(hi, lo), id);
        assert.equal(t.keyHiOf(id), hi);
        assert.equal(t.keyLoOf(id), lo);
        t.discardId(id);
        ref.delete(k);
        byId.delete(id);
      } else {
        const id = t.insertKey(hi, lo);
        assert.equal(id & 7, lo & 7, 'the index is the key\'s low bits');
        assert.ok(!taken.has(id >>> 3), 'a group never takes a row handed out apart');
        for (const [other, [oh, olo]] of byId) if (other >>> 3 === id >>> 3) assert.ok(oh === hi && (olo & ~7) === (lo & ~7), 'a row holds one group');
        ref.set(k, id);
        byId.set(id, [hi, lo]);
      }
    } else if (op < 7) {
      if (taken.size < 20) {
        const row = t.takeRow();
        for (const id of byId.keys()) assert.notEqual(id >>> 3, row, 'a row taken apart is no group\'s');
        assert.ok(!taken.has(row));
        taken.add(row);
      }
    } else if (op < 8) {
      const row = [...taken][next() % Math.max(1, taken.size)];
      if (row !== undefined) {
        t.freeRow(row);
        taken.delete(row);
      }
    } else {
      const [hi, base] = groups[next() % groups.length] as [number, number];
      const hs = new Uint32Array(8).fill(hi), ls = Uint32Array.from({ length: 8 }, (_, i) => base | i), out = new Int32Array(8).fill(-9);
      let end = 0;
      while (end < 8 && ref.has(`${hi}:${ls[end] as number}`)) end++;
      assert.equal(t.findRun(hs, ls, 0, 8, out), end);
      for (let i = 0; i < end; i++) assert.equal(out[i], ref.get(`${hi}:${ls[i] as number}`));
    }
    if (step === 20_000) {
      t.clear();
      ref.clear();
      byId.clear();
      taken.clear();
    }
  }
  assert.equal(t.size, ref.size);
  assert.ok(t.rowsHandedOut > 40, 'rows were handed out past the first groups');
  assert.throws(() => t.insert(1, 2, 3), RangeError, 'implicit ids are chosen by the table');
  assert.throws(() => t.discardId(0x7ffffff8), RangeError);
  const explicit = new GroupedBlockHashTable(64, false, 3);
  assert.throws(() => explicit.insertKey(1, 2), RangeError);
  assert.throws(() => explicit.takeRow(), RangeError);
});
