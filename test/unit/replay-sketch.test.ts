/**
 * Replay distributions in fixed memory: LatencySketch against exact order statistics, and the
 * offline replay's sketched report against exact samples on the whole conversation trace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { LatencySketch } from '../../src/report/sketch.js';
import { summarize } from '../../src/report/stats.js';
import { runOfflineReplay } from '../../src/replay/offline.js';
import { replayResultsDigest } from '../../src/replay/digest.js';
import { buildReplayReport, collectSamples } from '../../src/replay/report.js';
import type { Distribution } from '../../src/replay/report.js';
import { readMooncakeTrace } from '../../src/trace/mooncake.js';
import { InvalidConfigError } from '../../src/util/errors.js';

const TRACE = fileURLToPath(new URL('../../../data/mooncake/conversation_trace.jsonl', import.meta.url));

function rel(a: number, b: number): number {
  return b === 0 ? Math.abs(a) : Math.abs(a - b) / Math.abs(b);
}

test('replay-sketch - percentiles within 0.5 % of exact; count, mean, min, max, std exact', () => {
  let x = 12345;
  const values: number[] = [];
  const sk = new LatencySketch();
  for (let i = 0; i < 20000; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    // Heavy-tailed, with exact zeros and repeats.
    const v = i % 97 === 0 ? 0 : Math.round(Math.exp((x / 2 ** 32) * 9) * 100) / 100;
    values.push(v);
    sk.add(v);
  }
  const exact = summarize(values), got = sk.summary();
  assert.equal(got.count, exact.count);
  assert.equal(got.min, exact.min);
  assert.equal(got.max, exact.max);
  assert.ok(rel(got.mean, exact.mean) < 1e-9);
  assert.ok(rel(got.std, exact.std) < 1e-9);
  for (const p of ['median', 'p75', 'p90', 'p95', 'p99'] as const) {
    assert.ok(rel(got[p], exact[p]) <= 0.005, `${p}: ${got[p]} vs ${exact[p]}`);
  }
  assert.equal(sk.percentile(0), 0);
  assert.equal(sk.percentile(100), exact.max);
  assert.throws(() => sk.add(-1), RangeError);
  assert.throws(() => sk.percentile(101), RangeError);
  assert.equal(new LatencySketch().summary().count, 0);
  assert.ok(Number.isNaN(new LatencySketch().summary().p90));
});

test('replay-sketch - a weighted add equals repeated adds; merge equals adding both', () => {
  const a = new LatencySketch(), b = new LatencySketch(), c = new LatencySketch(), d = new LatencySketch();
  for (let i = 0; i < 50; i++) a.add(7.5);
  a.add(2);
  b.add(7.5, 50);
  b.add(2);
  assert.deepEqual(a.summary(), b.summary());
  for (let i = 1; i <= 100; i++) (i % 2 === 0 ? c : d).add(i);
  c.merge(d);
  const s = c.summary();
  assert.equal(s.count, 100);
  assert.equal(s.mean, 50.5);
  assert.ok(rel(s.std, Math.sqrt((100 * 100 - 1) / 12)) < 1e-12);
  assert.ok(rel(s.p90, 90) <= 0.005);
  assert.equal(c.quantileSample(10).length, 10);
});

test('replay-sketch - the 12,031-request replay report is within 1 % of exact for every distribution', async () => {
  const reqs = await readMooncakeTrace(TRACE);
  assert.equal(reqs.length, 12031);
  const r = runOfflineReplay(reqs, {
    numWorkers: 16, dataParallelSize: 1, router: 'kv', traceBlockSize: 512, arrivalSpeedupRatio: 1,
    speedupRatio: 1, decodeSpeedupRatio: 1, engineArgs: {}, seed: 0, keepItlSamples: true,
  });
  // The reference replay's per-request results, pinned: a speed-up must leave them bit-identical;
  // a change to the model changes this digest on purpose (and says so).
  assert.equal(replayResultsDigest(r), '38cd0ee27dd434bf');
  assert.equal(r.numPasses, 3899684);
  const sketched = buildReplayReport(r);
  const exact = buildReplayReport(r, collectSamples(r));
  const keys = ['ttft_ms', 'ttst_ms', 'tpot_ms', 'itl_ms', 'e2e_latency_ms', 'output_token_throughput_per_user'] as const;
  assert.ok((r.itlMs?.length ?? 0) > 1_000_000, 'ITL has millions of samples');
  for (const k of keys) {
    const s = sketched[k] as Distribution, e = exact[k] as Distribution;
    for (const f of ['median', 'p75', 'p90', 'p95', 'p99', 'mean', 'min', 'max', 'std'] as const) {
      const sv = s[f], ev = e[f];
      assert.ok(sv !== null && ev !== null, `${k}.${f} present`);
      const tol = f === 'mean' || f === 'std' ? 1e-6 : f === 'min' || f === 'max' ? 0 : 0.01;
      assert.ok(rel(sv, ev) <= tol, `${k}.${f}: sketch ${sv} vs exact ${ev}`);
    }
  }
  // Without keepItlSamples the exact path refuses rather than report an empty ITL.
  const small = runOfflineReplay(reqs.slice(0, 5), {
    numWorkers: 2, dataParallelSize: 1, router: 'kv', traceBlockSize: 512, arrivalSpeedupRatio: 1,
    speedupRatio: 1, decodeSpeedupRatio: 1, engineArgs: {}, seed: 0,
  });
  assert.equal(small.itlMs, null);
  assert.throws(() => collectSamples(small), InvalidConfigError);
});
