/**
 * The offline kv router's view of the ranks' caches (src/replay/README.md, "Router view"): reading
 * the engines' prefix caches directly must give bit-identical results to feeding the router's
 * index with the engines' KV events, as live serving does — across overlap weights, temperature
 * sampling, data-parallel ranks, a pool small enough to evict and preempt, and sessions. The same
 * holds for the router's active-block bookkeeping kept by chains (the replay's default) or in an index.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, createPolynomialPerfModel, normalizeEngineArgs } from '../../src/engine/engine.js';
import { runOfflineReplay } from '../../src/replay/offline.js';
import type { OfflineReplayOptions, OfflineReplayResult } from '../../src/replay/offline.js';
import { KvRouter } from '../../src/router/index.js';
import { InvalidConfigError } from '../../src/util/errors.js';
import { REPLAY_BASE, bytesOf, conversationSlice } from '../support/replay-fixtures.js';

const SLICE = await conversationSlice(500);

function assertSame(a: OfflineReplayResult, b: OfflineReplayResult, what: string): void {
  for (const key of ['arrivalMs', 'firstTokenMs', 'secondTokenMs', 'lastTokenMs', 'outputTokens', 'reusedTokens', 'status', 'rank', 'binOutputTokens', 'binInFlight'] as const) {
    assert.ok(bytesOf(a[key]).equals(bytesOf(b[key])), `${what}: ${key} differs`);
  }
  assert.ok(bytesOf(a.itlMs as Float64Array).equals(bytesOf(b.itlMs as Float64Array)), `${what}: ITL samples differ`);
  assert.equal(a.numPasses, b.numPasses);
  assert.equal(a.numPreemptions, b.numPreemptions);
}

/**
 * The default (engine caches read directly, active blocks by chains) against the live path (KV
 * events into the index, active blocks in the refCounted index) and against each change alone.
 */
function compare(opts: OfflineReplayOptions, reqs = SLICE): OfflineReplayResult {
  const direct = runOfflineReplay(reqs, { ...opts, kvRouterView: 'engines' });
  assertSame(direct, runOfflineReplay(reqs, { ...opts, kvRouterView: 'kv-events', routerActiveBlocks: 'index' }), 'kv-events + index');
  assertSame(direct, runOfflineReplay(reqs, { ...opts, kvRouterView: 'kv-events' }), 'kv-events');
  assertSame(direct, runOfflineReplay(reqs, { ...opts, routerActiveBlocks: 'index' }), 'index');
  return direct;
}

test('replay-router-view - kv router, default engine: engine caches = KV events', { timeout: 60_000 }, () => {
  const r = compare(REPLAY_BASE);
  // Not a vacuous comparison: the router spread the requests and the caches served prefixes.
  assert.equal(new Set(r.rank).size, 4);
  assert.ok(r.reusedTokens.reduce((a, b) => a + b, 0) > 100_000);
});

test('replay-router-view - temperature, overlap weight, data parallel, small pool (evictions, preemptions), sessions', { timeout: 60_000 }, () => {
  const r = compare({ ...REPLAY_BASE, numWorkers: 2, dataParallelSize: 3, routerTemperature: 0.6, kvOverlapScoreWeight: 2.5, seed: 5, engineArgs: { numGpuBlocks: 1200, blockSize: 32, maxNumSeqs: 12 } });
  assert.ok(r.numPreemptions > 0, 'the small pool preempts');
  const sessions = SLICE.slice(0, 300).map((q, i) => ({ ...q, sessionId: `s${Math.floor(i / 3)}`, delayMs: i % 3 === 0 ? null : 150 + (i % 4) * 50 }));
  compare({ ...REPLAY_BASE, numWorkers: 3, arrivalSpeedupRatio: 0.4, engineArgs: { numGpuBlocks: 3000 } }, sessions);
  // Prefix caching off: nothing is cached either way.
  compare({ ...REPLAY_BASE, engineArgs: { enablePrefixCaching: false } }, SLICE.slice(0, 150));
});

test('replay-router-view - a router reading engine caches refuses KV events; an unknown view is a config error', () => {
  const args = normalizeEngineArgs({ numGpuBlocks: 64, blockSize: 4 });
  const engine = new Engine(args, createPolynomialPerfModel());
  const load = { numRanks: 1, running: () => 0, waiting: () => 0, activeBlocks: () => 0, totalBlocks: () => 64 };
  const router = new KvRouter(load, { weight: 1, temperature: 0, blockSize: 4, seed: 0, cachedBlocks: { matchDepths: (nb, hi, lo, first, _n, depth) => { depth[first] = engine.cachedPrefixBlocks(nb, hi, lo); } } });
  assert.equal(router.index, null);
  assert.throws(() => router.onStored(0, 1, new Uint32Array(1), new Uint32Array(1), 0), /takes no KV events/);
  assert.throws(() => runOfflineReplay(SLICE.slice(0, 3), { ...REPLAY_BASE, kvRouterView: 'events' as never }), (e: unknown) => e instanceof InvalidConfigError && e.field === 'kvRouterView');
  assert.throws(() => runOfflineReplay(SLICE.slice(0, 3), { ...REPLAY_BASE, routerActiveBlocks: 'tree' as never }), (e: unknown) => e instanceof InvalidConfigError && e.field === 'routerActiveBlocks');
});

test('replay-router-view - Engine.cachedPrefixBlocks counts the leading cached blocks of a sequence', () => {
  const args = normalizeEngineArgs({ numGpuBlocks: 64, blockSize: 4, maxNumBatchedTokens: 64 });
  const engine = new Engine(args, createPolynomialPerfModel());
  const prompt = Uint32Array.from({ length: 16 }, (_, i) => 100 + i);
  assert.equal(engine.addRequest(1, prompt, 1), 0);
  for (let t = 0; engine.hasWork(); t += 10) engine.step(t);
  const log = engine.takeEvents();
  // The four full prompt blocks were stored; a sequence sharing the first two blocks matches 2.
  const hi = log.seqHashHi.slice(0, 4), lo = log.seqHashLo.slice(0, 4);
  assert.equal(engine.cachedPrefixBlocks(4, hi, lo), 4);
  assert.equal(engine.cachedPrefixBlocks(3, hi, lo), 3);
  lo[2] = (lo[2] as number) ^ 1;
  assert.equal(engine.cachedPrefixBlocks(4, hi, lo), 2);
  assert.equal(engine.cachedPrefixBlocks(0, hi, lo), 0);
});
