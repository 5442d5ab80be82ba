/**
 * Coasting (src/replay/README.md): an offline replay that fast-forwards plain decode passes must
 * give bit-identical results to one that runs every pass through Engine.step(), for every router,
 * with prefix caching on and off, a pool small enough to preempt and evict, speedups ≠ 1,
 * a decode time that depends on the context length, and multi-turn sessions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createInterpolatedPerfModel } from '../../src/engine/engine.js';
import { runOfflineReplay } from '../../src/replay/offline.js';
import type { OfflineReplayOptions, OfflineReplayResult } from '../../src/replay/offline.js';
import { buildReplayReport } from '../../src/replay/report.js';
import type { TraceRequest } from '../../src/trace/mooncake.js';
import { REPLAY_BASE, bytesOf, conversationSlice } from '../support/replay-fixtures.js';

const SLICE = await conversationSlice(450);

function assertSame(on: OfflineReplayResult, off: OfflineReplayResult): void {
  for (const key of ['arrivalMs', 'firstTokenMs', 'secondTokenMs', 'lastTokenMs', 'outputTokens', 'promptTokens', 'reusedTokens', 'status', 'rank', 'binOutputTokens', 'binInFlight'] as const) {
    assert.ok(bytesOf(on[key]).equals(bytesOf(off[key])), `${key} differs`);
  }
  assert.equal(on.numPasses, off.numPasses, 'passes');
  assert.equal(on.numPreemptions, off.numPreemptions, 'preemptions');
  // The ITL samples are the same multiset (coasted runs are stamped later, so in another order).
  const sorted = (r: OfflineReplayResult): Float64Array => Float64Array.from(r.itlMs as Float64Array).sort();
  assert.ok(bytesOf(sorted(on)).equals(bytesOf(sorted(off))), 'ITL samples differ');
  for (const name of ['ttft', 'ttst', 'tpot', 'itl', 'e2e', 'outputTokPerUser'] as const) {
    const a = on.sketches[name], b = off.sketches[name];
    assert.equal(a.count, b.count, `${name} count`);
    for (const p of [0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100]) assert.equal(a.percentile(p), b.percentile(p), `${name} p${p}`);
  }
  const ra = buildReplayReport(on), rb = buildReplayReport(off);
  assert.equal(ra.ttft_ms.p90, rb.ttft_ms.p90);
  assert.equal(ra.itl_ms.p99, rb.itl_ms.p99);
  assert.equal(ra.prefix_cache_reused_ratio, rb.prefix_cache_reused_ratio);
}

function compare(reqs: readonly TraceRequest[], opts: OfflineReplayOptions, expect: { preemptions?: boolean } = {}): void {
  const on = runOfflineReplay(reqs, opts);
  const off = runOfflineReplay(reqs, { ...opts, coastDecodeRuns: false });
  assert.equal(off.numCoastedPasses, 0);
  assert.equal(off.numEngineSteps, off.numPasses);
  assert.ok(on.numCoastedPasses > on.numPasses / 4, `coasting happened: ${on.numCoastedPasses} of ${on.numPasses} passes`);
  assert.equal(on.numEngineSteps + on.numCoastedPasses, on.numPasses);
  if (expect.preemptions === true) assert.ok(off.numPreemptions > 0, 'the small pool preempts');
  assertSame(on, off);
}

test('replay-coast - kv router, default engine: coasting on = off', { timeout: 60_000 }, () => {
  compare(SLICE.slice(0, 350), REPLAY_BASE);
});

test('replay-coast - round robin, prefix caching off, small chunks, speedups', { timeout: 60_000 }, () => {
  compare(SLICE, {
    ...REPLAY_BASE, router: 'round_robin', speedupRatio: 2.5, decodeSpeedupRatio: 1.7, arrivalSpeedupRatio: 3,
    engineArgs: { enablePrefixCaching: false, maxNumBatchedTokens: 1024, blockSize: 32 },
  });
});

test('replay-coast - random router, small pool (preemption, eviction), decode time by context length', { timeout: 60_000 }, () => {
  const perfModel = createInterpolatedPerfModel({
    prefillIsl: Float64Array.from([1, 4096, 32768]),
    prefillTtftMs: Float64Array.from([8, 300, 3000]),
    decodeActiveKvTokens: Float64Array.from([0, 8192, 65536]),
    decodeContextLength: Float64Array.from([1, 4096, 32768]),
    decodeItl: Float64Array.from([4, 6.5, 12, 5, 8, 15, 9, 13, 25]),
  });
  compare(SLICE.slice(0, 300), {
    ...REPLAY_BASE, router: 'random', numWorkers: 3, arrivalSpeedupRatio: 0.1, perfModel,
    engineArgs: { numGpuBlocks: 800, blockSize: 32, maxNumSeqs: 16, preemptionMode: 'fifo' },
  }, { preemptions: true });
});

test('replay-coast - kv router, multi-turn sessions with delays', { timeout: 60_000 }, () => {
  const sessions = SLICE.slice(0, 450).map((r, i) => ({ ...r, sessionId: `s${Math.floor(i / 3)}`, delayMs: i % 3 === 0 ? null : 250 + (i % 7) * 40 }));
  compare(sessions, { ...REPLAY_BASE, numWorkers: 3, arrivalSpeedupRatio: 0.3, engineArgs: { numGpuBlocks: 2000 }, kvOverlapScoreWeight: 0.5 });
});

test('replay-coast - an arrival exactly at a coasted pass start joins that pass (integer pass times, ties across ranks)', { timeout: 10_000 }, () => {
  // Prefill 10 ms, decode 10 ms whatever the batch: pass ends fall on multiples of 10 ms.
  const perfModel = createInterpolatedPerfModel({
    prefillIsl: Float64Array.from([1, 100000]),
    prefillTtftMs: Float64Array.from([10, 10]),
    decodeActiveKvTokens: Float64Array.from([0, 1e6]),
    decodeContextLength: Float64Array.from([1, 1e6]),
    decodeItl: Float64Array.from([10, 10, 10, 10]),
  });
  const tr = (ts: number, hashIds: number[], out: number, sessionId: string | null = null, delayMs: number | null = null): TraceRequest =>
    ({ timestampMs: ts, inputLength: hashIds.length * 4, outputLength: out, hashIds: Uint32Array.from(hashIds), sessionId, delayMs, line: 0 });
  const reqs = [
    tr(0, [1], 40, 'a'), tr(0, [2], 40, 'b'), // rank 0 and rank 1, same pass times
    tr(40, [3], 5), tr(40, [4], 5), // exactly at the start of the 4th pass of both ranks
    tr(0, [1, 5], 6, 'a', 30), tr(0, [2, 6], 6, 'b', 30), // second turns, released at the same instant
    tr(130, [7], 3),
  ];
  const opts: OfflineReplayOptions = {
    ...REPLAY_BASE, router: 'round_robin', numWorkers: 2, traceBlockSize: 4, perfModel,
    engineArgs: { blockSize: 16, numGpuBlocks: 64, maxNumSeqs: 8, maxNumBatchedTokens: 64 },
  };
  const on = runOfflineReplay(reqs, opts);
  const off = runOfflineReplay(reqs, { ...opts, coastDecodeRuns: false });
  assert.ok(on.numCoastedPasses > 0);
  assertSame(on, off);
  // The request arriving at 40 ms is prefilled by the pass starting at 40 ms: first token at 60 ms.
  assert.equal(on.firstTokenMs[2], 60);
  assert.equal(on.firstTokenMs[3], 60);
});
