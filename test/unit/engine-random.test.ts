import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, createPolynomialPerfModel, normalizeEngineArgs } from '../../src/engine/engine.js';
import { AddOutcome, FinishReason, KvEventKind } from '../../src/engine/types.js';
import type { EngineArgs, KvEventLog } from '../../src/engine/types.js';

/** Small deterministic PRNG for the workload itself (independent of the engine's seed). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

const key = (hi: number, lo: number): bigint => (BigInt(hi) << 32n) | BigInt(lo);

/** Consumer-side index rebuilt from the event stream only (the router's view of one rank). */
function applyEvents(index: Set<bigint>, log: KvEventLog, expectId: { next: number }): void {
  assert.equal(log.firstEventId, expectId.next, 'event ids are contiguous');
  expectId.next += log.count;
  for (let i = 0; i < log.count; i++) {
    const start = log.hashStart[i] as number;
    const n = log.hashCount[i] as number;
    if (log.kind[i] === KvEventKind.stored) {
      if (log.hasParent[i] === 1) {
        assert.ok(index.has(key(log.parentHi[i] as number, log.parentLo[i] as number)), 'a stored block\'s parent is known');
      }
      for (let j = start; j < start + n; j++) {
        const k = key(log.seqHashHi[j] as number, log.seqHashLo[j] as number);
        assert.ok(!index.has(k), 'a block is stored only once while resident');
        index.add(k);
      }
    } else if (log.kind[i] === KvEventKind.removed) {
      for (let j = start; j < start + n; j++) {
        const k = key(log.seqHashHi[j] as number, log.seqHashLo[j] as number);
        assert.ok(index.delete(k), 'removed blocks were stored before');
      }
    } else {
      index.clear();
    }
  }
}

function runWorkload(seed: number, over: Partial<EngineArgs>): { completed: number; rejected: number; aborted: number; preemptions: number } {
  const rnd = lcg(seed);
  const args = normalizeEngineArgs({ numGpuBlocks: 24, blockSize: 4, maxNumSeqs: 6, maxNumBatchedTokens: 16, seed, ...over });
  const e = new Engine(args, createPolynomialPerfModel());
  const live = new Set<number>();
  const remainingTokens = new Map<number, number>();
  const index = new Set<bigint>();
  const ids = { next: 0 };
  // A few shared prefixes make prefix hits, shared blocks and promotions onto resident copies likely.
  const prefixes = [0, 1, 2].map((p) => Uint32Array.from({ length: 12 }, (_, i) => 500 + p * 100 + i));
  let nextId = 0;
  let completed = 0;
  let rejected = 0;
  let aborted = 0;
  let preemptions = 0;
  for (let pass = 0; pass < 700; pass++) {
    const arrivals = rnd() < 0.5 ? Math.floor(rnd() * 3) : 0;
    for (let a = 0; a < arrivals && pass < 600; a++) {
      const len = 1 + Math.floor(rnd() * 40);
      const prompt = new Uint32Array(len);
      const prefix = prefixes[Math.floor(rnd() * prefixes.length)] as Uint32Array;
      const shared = rnd() < 0.6 ? Math.min(len, Math.floor(rnd() * 13)) : 0;
      for (let i = 0; i < len; i++) prompt[i] = i < shared ? (prefix[i] as number) : 1 + Math.floor(rnd() * 6);
      const maxTokens = 1 + Math.floor(rnd() * 30);
      const id = nextId++;
      const outcome = e.addRequest(id, prompt, maxTokens);
      if (outcome === AddOutcome.queued) {
        live.add(id);
        remainingTokens.set(id, maxTokens);
      } else {
        assert.ok(Math.ceil((len + 1) / 4) > args.numGpuBlocks || (!args.enableChunkedPrefill && len > args.maxNumBatchedTokens));
      }
    }
    if (live.size > 0 && rnd() < 0.05) {
      const victim = Array.from(live)[Math.floor(rnd() * live.size)] as number;
      assert.equal(e.abortRequest(victim), true);
      live.delete(victim);
      aborted++;
      e.checkInvariants();
    }
    const r = e.step(pass);
    e.checkInvariants();
    preemptions += r.numPreemptions;
    for (let i = 0; i < r.numTokens; i++) {
      const id = r.tokenRequestIds[i] as number;
      assert.ok(live.has(id), 'tokens only for live requests');
      const left = (remainingTokens.get(id) as number) - 1;
      assert.ok(left >= 0, 'never more than max tokens');
      remainingTokens.set(id, left);
    }
    for (let i = 0; i < r.numFinished; i++) {
      const id = r.finishedRequestIds[i] as number;
      assert.ok(live.delete(id), 'finished requests were live');
      if (r.finishedReasons[i] === FinishReason.length) {
        assert.equal(remainingTokens.get(id), 0, 'length finish after exactly max tokens');
        completed++;
      } else {
        assert.equal(r.finishedReasons[i], FinishReason.rejected);
        rejected++;
      }
    }
    assert.ok(r.prefillMs >= 0 && r.decodeMs >= 0);
    if (r.numTokens > 0) assert.ok(r.decodeMs >= 1, 'decode floor');
    assert.equal(e.numRunning + e.numWaiting, live.size);
    applyEvents(index, e.takeEvents(), ids);
    assert.deepEqual(Array.from(index).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), e.residentBlockHashes(), 'event stream reproduces the cache contents');
  }
  // Drain everything that is left, then abort stragglers (e.g. stuck behind a full cache).
  for (let pass = 0; pass < 5000 && e.hasWork(); pass++) {
    const r = e.step(pass);
    for (let i = 0; i < r.numFinished; i++) live.delete(r.finishedRequestIds[i] as number);
    applyEvents(index, e.takeEvents(), ids);
  }
  for (const id of live) e.abortRequest(id);
  e.checkInvariants();
  assert.equal(e.hasWork(), false);
  assert.equal(e.numActiveBlocks, 0, 'no leaked blocks');
  assert.equal(e.numFreeBlocks + e.numInactiveBlocks, args.numGpuBlocks);
  return { completed, rejected, aborted, preemptions };
}

for (const [name, over] of [
  ['lifo, prefix caching, chunked prefill', {}],
  ['fifo', { preemptionMode: 'fifo' }],
  ['prefix caching off', { enablePrefixCaching: false }],
  ['chunked prefill off', { enableChunkedPrefill: false, maxNumBatchedTokens: 48 }],
  ['block size 1', { blockSize: 1, numGpuBlocks: 96 }],
] as Array<[string, Partial<EngineArgs>]>) {
  test(`engine random workload - ${name}: invariants hold every pass and nothing leaks`, () => {
    for (const seed of [1, 2, 3]) {
      const s = runWorkload(seed, over);
      assert.ok(s.completed > 30, `seed ${seed}: requests complete (${s.completed})`);
      assert.ok(s.aborted > 0, `seed ${seed}: aborts exercised`);
      if (name.startsWith('lifo')) assert.ok(s.preemptions > 0, `seed ${seed}: the small cache forces preemptions`);
    }
  });
}
