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

test('replay-sketch - addRun leaves the state add() leaves, bit for bit; bad runs change nothing', () => {
  let x = 99;
  const next = (): number => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x / 2 ** 32;
  };
  const one = new LatencySketch(), run = new LatencySketch();
  // The closed-form key is in use (else addRun falls back to add() and this compares add with itself).
  assert.notEqual((run as unknown as { logKey: unknown }).logKey, null);
  const values = new Float64Array(64), weights = new Float64Array(64);
  for (let round = 0; round < 400; round++) {
    const n = 1 + Math.floor(next() * 64);
    // Runs as the replay makes them: gaps that creep within a bin, jumps, exact zeros, tiny
    // values below the sketch's smallest key, and weights of one or many tokens.
    let v = Math.exp(next() * 12 - 2);
    for (let i = 0; i < n; i++) {
      const r = next();
      v = r < 0.05 ? 0 : r < 0.07 ? 1e-320 : r < 0.2 ? Math.exp(next() * 14 - 3) : v * (1 + next() * 0.002);
      values[i] = v;
      weights[i] = next() < 0.5 ? 1 : 1 + Math.floor(next() * 300);
      one.add(v, weights[i] as number);
    }
    run.addRun(values, weights, n);
  }
  const state = (s: LatencySketch): unknown => {
    const dd = (s as unknown as { sketch: { count: number; sum: number; min: number; max: number; zeroCount: number; store: { bins: number[]; offset: number; minKey: number; maxKey: number; count: number } } }).sketch;
    return { count: dd.count, sum: dd.sum, min: dd.min, max: dd.max, zero: dd.zeroCount, bins: [...dd.store.bins], offset: dd.store.offset, minKey: dd.store.minKey, maxKey: dd.store.maxKey, storeCount: dd.store.count };
  };
  assert.deepEqual(state(run), state(one));
  assert.deepEqual(run.summary(), one.summary());
  assert.deepEqual(run.quantileSample(500), one.quantileSample(500));
  // A bad value or weight anywhere in the run throws before anything is added.
  const before = JSON.stringify(run.summary());
  values.set([5, -1]);
  weights.set([1, 1]);
  assert.throws(() => run.addRun(values, weights, 2), RangeError);
  values.set([5, Number.NaN]);
  assert.throws(() => run.addRun(values, weights, 2), RangeError);
  values.set([5, 6]);
  weights.set([1, 0.5]);
  assert.throws(() => run.addRun(values, weights, 2), RangeError);
  weights.set([1, 0]);
  assert.throws(() => run.addRun(values, weights, 2), RangeError);
  assert.equal(JSON.stringify(run.summary()), before);
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
