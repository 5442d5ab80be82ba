/**
 * EngineCaches (src/replay/engine-caches.ts) remembers what it found in each rank's cache and skips
 * lookups while the cache cannot have changed them. Its depths must equal a full walk of every
 * rank's cache after any history: prefills, decode, evictions, clearAll(), chains that share more
 * or less with the last one, and calls for a subset of the ranks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, computeSequenceHashes, createPolynomialPerfModel, normalizeEngineArgs } from '../../src/engine/engine.js';
import { EngineCaches } from '../../src/replay/engine-caches.js';
import { WalkSpyEngine } from '../support/walk-spy.js';

const BS = 4;

/** A deterministic generator (xorshift32). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

test('replay-engine-caches - depths equal a full walk through evictions, clears, decode and subset calls', { timeout: 60_000 }, () => {
  const rand = rng(7);
  const args = normalizeEngineArgs({ numGpuBlocks: 48, blockSize: BS, maxNumSeqs: 4, maxNumBatchedTokens: 64 });
  const engines = [0, 1, 2, 3].map(() => new WalkSpyEngine(args, createPolynomialPerfModel(), { recordKvEvents: false }));
  const caches = new EngineCaches(engines);
  // Prompts are drawn from a few shared prefixes (a "system prompt" and turns) plus random tails.
  const prefixes = [0, 1, 2].map((p) => Uint32Array.from({ length: 40 }, (_, i) => 1000 * (p + 1) + i));
  const chain = (): Uint32Array => {
    const base = prefixes[Math.floor(rand() * prefixes.length)] as Uint32Array;
    const keep = Math.floor(rand() * base.length);
    const tail = Math.floor(rand() * 12);
    return Uint32Array.from([...base.subarray(0, keep), ...Array.from({ length: tail }, () => 50_000 + Math.floor(rand() * 8))]);
  };
  const hi = new Uint32Array(64), lo = new Uint32Array(64);
  const depth = new Int32Array(engines.length);
  let nowMs = 0, id = 0, queries = 0, walked = 0, asked = 0;
  let evictions = 0, clears = 0, subsetCalls = 0;
  let lastAsked = chain();
  for (let round = 0; round < 3000; round++) {
    const action = rand();
    if (action < 0.12) {
      const prompt = chain();
      if (prompt.length > 0) (engines[Math.floor(rand() * engines.length)] as Engine).addRequest(id++, prompt, 1 + Math.floor(rand() * 9));
    } else if (action < 0.4) {
      for (const e of engines) if (e.hasWork()) e.step(nowMs);
      nowMs += 5;
    } else if (action < 0.403) {
      (engines[Math.floor(rand() * engines.length)] as Engine).clearAll();
      clears++;
    }
    // Ask about a chain: half the time the last one again or a variation of it (as consecutive
    // requests sharing a system prompt), sometimes for a subset of the ranks.
    const prompt = rand() < 0.5 ? Uint32Array.from([...lastAsked.subarray(0, lastAsked.length - Math.floor(rand() * 6)), ...(rand() < 0.5 ? [] : [60_000 + round])]) : chain();
    lastAsked = prompt;
    const nb = computeSequenceHashes(prompt, prompt.length, BS, hi, lo);
    let first = 0, n = engines.length;
    if (rand() < 0.15) {
      first = Math.floor(rand() * engines.length);
      n = 1 + Math.floor(rand() * (engines.length - first));
      subsetCalls++;
    }
    depth.fill(-1);
    caches.matchDepths(nb, hi, lo, first, n, depth);
    for (let r = 0; r < engines.length; r++) {
      const e = engines[r] as WalkSpyEngine;
      if (r < first || r >= first + n) {
        assert.equal(depth[r], -1, 'ranks not asked are not written');
        continue;
      }
      // The truth: a full walk through the engine (not counted: it does not pass the wrapper).
      const full = e.cachedPrefixBlocks(nb, hi, lo);
      asked++;
      assert.equal(depth[r], full, `round ${round}: rank ${r} depth`);
      walked += Math.min(full + 1, nb);
    }
    queries++;
  }
  for (const e of engines) evictions += e.cacheRemovals;
  const lookedUp = engines.reduce((a, e) => a + e.lookedUp, 0);
  const calls = engines.reduce((a, e) => a + e.calls, 0);
  // The history exercised every path: evictions, clears, subset calls; and lookups were skipped.
  assert.ok(evictions > 200, `evictions ${evictions}`);
  assert.ok(clears > 0 && subsetCalls > 100, `clears ${clears}, subset calls ${subsetCalls}`);
  // Both shortcuts were taken: walks that start past the shared prefix, and no walk at all.
  assert.ok(lookedUp < walked * 0.7, `looked up ${lookedUp} of ${walked} blocks`);
  assert.ok(calls < asked * 0.85, `walked ${calls} of ${asked} rank caches`);
  assert.ok(queries === 3000);
});

test('replay-engine-caches - a block stored or evicted between two identical questions changes the answer', () => {
  const args = normalizeEngineArgs({ numGpuBlocks: 6, blockSize: BS, maxNumSeqs: 2, maxNumBatchedTokens: 64 });
  const engine = new Engine(args, createPolynomialPerfModel(), { recordKvEvents: false });
  const caches = new EngineCaches([engine]);
  const a = Uint32Array.from({ length: 16 }, (_, i) => 10 + i);
  const hi = new Uint32Array(8), lo = new Uint32Array(8);
  const nb = computeSequenceHashes(a, a.length, BS, hi, lo);
  const depth = new Int32Array(1);
  caches.matchDepths(nb, hi, lo, 0, 1, depth);
  assert.equal(depth[0], 0);
  // Stored: the same question now finds the four blocks (an insertion, no removal).
  engine.addRequest(1, a, 1);
  for (let t = 0; engine.hasWork(); t += 10) engine.step(t);
  caches.matchDepths(nb, hi, lo, 0, 1, depth);
  assert.equal(depth[0], 4);
  // Evicted: another prompt needs five of the six blocks, so a's first blocks go (removals only).
  const b = Uint32Array.from({ length: 20 }, (_, i) => 900 + i);
  engine.addRequest(2, b, 1);
  for (let t = 100; engine.hasWork(); t += 10) engine.step(t);
  caches.matchDepths(nb, hi, lo, 0, 1, depth);
  assert.equal(depth[0], engine.cachedPrefixBlocks(nb, hi, lo, 0));
  assert.ok((depth[0] as number) < 4, `a lost blocks to b (depth ${depth[0]})`);
});
