/**
 * RoutedIds (src/replay/routed-ids.ts): per-rank bounds of a prompt's match from the ranks each
 * trace hash id was routed to, and EngineCaches' walks stopping at them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeSequenceHashes, createPolynomialPerfModel, normalizeEngineArgs } from '../../src/engine/engine.js';
import { EngineCaches } from '../../src/replay/engine-caches.js';
import { RoutedIds } from '../../src/replay/routed-ids.js';
import { ActiveSequences } from '../../src/router/active-sequences.js';
import type { TraceRequest } from '../../src/trace/mooncake.js';
import { WalkSpyEngine } from '../support/walk-spy.js';

function traceRequest(ids: number[]): TraceRequest {
  return { timestampMs: 0, inputLength: ids.length * 4, outputLength: 1, hashIds: Uint32Array.from(ids), sessionId: null, delayMs: null, line: 1 };
}

test('replay-routed-ids - bounds: first id never routed to each rank, in engine blocks, capped at the prompt', { timeout: 10_000 }, () => {
  // 40 ranks: two words of rank bits, the second one partial.
  const ids = RoutedIds.create([traceRequest([1, 2, 3, 7, 9])], 40);
  assert.ok(ids !== null);
  const bounds = new Int32Array(40).fill(-1);
  // Nothing routed yet: no rank holds anything.
  assert.equal(ids.bounds(Uint32Array.from([1, 2, 3, 9]), 8, 4, 2, bounds), 0);
  assert.deepEqual([...bounds], new Array(40).fill(0));
  ids.noteRouted(3, Uint32Array.from([1, 2, 3]));
  ids.noteRouted(35, Uint32Array.from([1, 2, 7]));
  ids.noteRouted(39, Uint32Array.from([1]));
  // Trace blocks of 4 tokens, engine blocks of 2: id t's first token is in engine block 2t.
  assert.equal(ids.bounds(Uint32Array.from([1, 2, 3, 9]), 8, 4, 2, bounds), 6);
  assert.equal(bounds[3], 6);
  assert.equal(bounds[35], 4);
  assert.equal(bounds[39], 2);
  assert.equal(bounds[0], 0);
  assert.equal(bounds[34], 0);
  // A rank that had every id reaches the prompt's last full block.
  assert.equal(ids.bounds(Uint32Array.from([1, 2, 3]), 5, 4, 2, bounds), 5);
  assert.equal(bounds[3], 5);
  assert.equal(bounds[35], 4);
  // Unaligned sizes: id t's first token (3t) lies in engine block ⌊3t / 2⌋.
  assert.equal(ids.bounds(Uint32Array.from([1, 2, 9]), 4, 3, 2, bounds), 3);
  assert.equal(bounds[3], 3);
  assert.equal(bounds[39], 1);
  // An empty prompt matches nowhere.
  assert.equal(ids.bounds(Uint32Array.from([1]), 0, 4, 2, bounds), 0);
  assert.equal(bounds[3], 0);
});

test('replay-routed-ids - ids beyond the memory budget turn the bounds off', () => {
  // 65,536 ranks take 8 KiB per id: 256 MiB hold 32,768 ids.
  assert.equal(RoutedIds.create([traceRequest([0, 40_000])], 65_536), null);
  assert.notEqual(RoutedIds.create([traceRequest([0, 30_000])], 65_536), null);
  // One rank: 4 bytes per id, so ids up to 4·10⁹ would take 16 GB.
  assert.equal(RoutedIds.create([traceRequest([4_000_000_000])], 1), null);
});

test('replay-routed-ids - EngineCaches stops a walk at its bound, for the next call only', () => {
  const BS = 4;
  const args = normalizeEngineArgs({ numGpuBlocks: 16, blockSize: BS, maxNumSeqs: 2, maxNumBatchedTokens: 64 });
  const engine = new WalkSpyEngine(args, createPolynomialPerfModel(), { recordKvEvents: false });
  const caches = new EngineCaches([engine]);
  const cached = Uint32Array.from({ length: 16 }, (_, i) => 10 + i);
  engine.addRequest(1, cached, 1);
  for (let t = 0; engine.hasWork(); t += 10) engine.step(t);
  // A prompt of 6 blocks whose first 4 are cached; the rank never had the rest (bound 4).
  const longer = Uint32Array.from({ length: 24 }, (_, i) => 10 + i);
  const hi = new Uint32Array(8), lo = new Uint32Array(8);
  const nb = computeSequenceHashes(longer, longer.length, BS, hi, lo);
  const depth = new Int32Array(1);
  caches.boundNextWalks(Int32Array.from([4]));
  caches.matchDepths(nb, hi, lo, 0, 1, depth);
  assert.equal(depth[0], 4);
  assert.deepEqual(engine.walks, [[0, 4]], 'the walk stopped at the bound: block 4 was not looked up');
  // The next call walks to the chain's end again.
  const other = Uint32Array.from({ length: 12 }, (_, i) => 500 + i);
  const nbOther = computeSequenceHashes(other, other.length, BS, hi, lo);
  caches.matchDepths(nbOther, hi, lo, 0, 1, depth);
  assert.equal(depth[0], 0);
  assert.deepEqual(engine.walks[1], [0, nbOther]);
  // numSeenBlocks bounds every rank's walk the same way.
  computeSequenceHashes(longer, longer.length, BS, hi, lo);
  const fresh = new EngineCaches([engine]);
  engine.walks.length = 0;
  fresh.matchDepths(nb, hi, lo, 0, 1, depth, 4);
  assert.equal(depth[0], 4);
  assert.deepEqual(engine.walks, [[0, 4]]);
});

test('replay-routed-ids - a rank bounded at block 0 is not read, and what it knew still answers right later', () => {
  const BS = 4;
  const args = normalizeEngineArgs({ numGpuBlocks: 16, blockSize: BS, maxNumSeqs: 2, maxNumBatchedTokens: 64 });
  const engine = new WalkSpyEngine(args, createPolynomialPerfModel(), { recordKvEvents: false });
  const caches = new EngineCaches([engine]);
  engine.addRequest(1, Uint32Array.from({ length: 8 }, (_, i) => 10 + i), 1);
  for (let t = 0; engine.hasWork(); t += 10) engine.step(t);
  const fresh = Uint32Array.from({ length: 12 }, (_, i) => 900 + i);
  const hi = new Uint32Array(8), lo = new Uint32Array(8);
  const nb = computeSequenceHashes(fresh, fresh.length, BS, hi, lo);
  const depth = new Int32Array(1);
  caches.matchDepths(nb, hi, lo, 0, 1, depth); // a first lookup: 0, a miss, the counts seen
  assert.equal(depth[0], 0);
  const reads = engine.countReads, walks = engine.walks.length;
  caches.boundNextWalks(Int32Array.from([0]));
  caches.matchDepths(nb, hi, lo, 0, 1, depth);
  assert.equal(depth[0], 0);
  assert.equal(engine.countReads, reads, 'bound 0: the table was not read');
  assert.equal(engine.walks.length, walks);
  caches.matchDepths(nb, hi, lo, 0, 1, depth);
  assert.equal(depth[0], 0, 'unchanged cache: still 0');
  // The rank now caches the chain's first blocks: the next answer must see them.
  engine.addRequest(2, fresh, 1);
  for (let t = 100; engine.hasWork(); t += 10) engine.step(t);
  caches.boundNextWalks(Int32Array.from([0]));
  caches.matchDepths(nb, hi, lo, 0, 1, depth);
  assert.equal(depth[0], 0, 'a bound is taken on the caller\'s word');
  caches.matchDepths(nb, hi, lo, 0, 1, depth);
  assert.equal(depth[0], nb);
});

test('replay-routed-ids - the router\'s active-block walk stops at its bound, for the next call only', () => {
  const active = new ActiveSequences(2, 'chains');
  const hi = Uint32Array.from([1, 2, 3, 4, 5, 6]), lo = Uint32Array.from([11, 12, 13, 14, 15, 16]);
  active.add(7, 0, 64, 6, hi, lo);
  const depth = new Int32Array(2);
  active.boundNextWalks(Int32Array.from([4, 0]));
  active.matchDepths(6, hi, lo, 0, 2, depth);
  assert.deepEqual([...depth], [4, 0]);
  active.matchDepths(6, hi, lo, 0, 2, depth);
  assert.deepEqual([...depth], [6, 0]);
});
