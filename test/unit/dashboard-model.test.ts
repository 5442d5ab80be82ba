import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scalar } from '../../src/protocol/rank-counters.js';
import { DashboardModel } from '../../src/dashboard/model.js';
import { FakeSource, ManualClock } from './dashboard-fake-source.js';

interface Tick {
  seq: number;
  ranks: { kv: number[]; run: number[]; wait: number[]; blk: number[]; rst: number[] };
  now: {
    running: number;
    waiting: number;
    kvMean: number;
    kvMax: number;
    reqRate: number | null;
    tokRate: number | null;
    ttft: Array<number | null>;
    itl: Array<number | null>;
    preemptions: number;
    preemptRate: number | null;
    prefixHit: number | null;
    publisher: { state: string; msgRate: number | null; dropped: number | null; dropRate: number | null };
  };
  samples: Array<Array<number | null>>;
  placement?: unknown;
}

function setup(workers = 2, dp = 2, windowS = 10): { src: FakeSource; clock: ManualClock; model: DashboardModel } {
  const src = new FakeSource(workers, dp);
  const clock = new ManualClock();
  const model = new DashboardModel(src, { now: clock.now, windowS, historySamples: 300 });
  model.sample();
  return { src, clock, model };
}

/** Advance one second per step, applying `each` before every sample. */
function run(seconds: number, clock: ManualClock, model: DashboardModel, each: () => void): void {
  for (let i = 0; i < seconds; i++) {
    clock.advance(1000);
    each();
    model.sample();
  }
}

test('dashboard - rates are deltas over the window divided by its length', () => {
  const { src, clock, model } = setup();
  run(20, clock, model, () => {
    for (let r = 0; r < src.numRanks; r++) {
      src.add(r, Scalar.generationTokens, 25);
      src.add(r, Scalar.successLength, 1);
    }
    src.pub.published += 7;
  });
  const t = JSON.parse(model.tick(2)) as Tick;
  assert.equal(t.now.tokRate, 100, '4 ranks x 25 tokens each second');
  assert.equal(t.now.reqRate, 4);
  assert.equal(t.now.publisher.msgRate, 7);
  assert.equal(t.now.publisher.dropRate, 0);
});

test('dashboard - rates fall to zero once the counters stop moving for a window', () => {
  const { src, clock, model } = setup();
  run(15, clock, model, () => src.add(0, Scalar.successLength, 3));
  const busy = JSON.parse(model.tick(2)) as Tick;
  assert.equal(busy.now.reqRate, 3);
  run(11, clock, model, () => {});
  const idle = JSON.parse(model.tick(2)) as Tick;
  assert.equal(idle.now.reqRate, 0);
});

test('dashboard - percentiles come from bucket deltas in the window, not from all-time counts', () => {
  const { src, clock, model } = setup();
  const ttft = src.layout.ttft;
  // Long ago: 1000 slow first tokens (0.5 s). In the window: 100 fast ones (15 ms).
  src.observe(0, ttft, 0.5, 1000);
  run(30, clock, model, () => {});
  run(5, clock, model, () => src.observe(1, ttft, 0.015, 20));
  const t = JSON.parse(model.tick(2)) as Tick;
  const [p50, p90, p99] = t.now.ttft as [number, number, number];
  assert.ok(p50 > 10 && p50 <= 20, `p50 ${p50} ms lies in the (10, 20] ms bucket`);
  assert.ok(p99 <= 20, `p99 ${p99} ms ignores the old slow observations`);
  assert.ok(p50 <= p90 && p90 <= p99, 'percentiles are ordered');
  assert.equal(t.now.itl[0], null, 'no ITL observations in the window: null, not 0');
});

test('dashboard - prefix-cache hit rate is hits over queries in the window', () => {
  const { src, clock, model } = setup();
  src.add(0, Scalar.prefixQueries, 1000);
  run(20, clock, model, () => {
    src.add(0, Scalar.prefixQueries, 100);
    src.add(0, Scalar.prefixHits, 25);
  });
  const t = JSON.parse(model.tick(2)) as Tick;
  assert.equal(t.now.prefixHit, 0.25);
});

test('dashboard - a counter that goes backwards counts as a reset, never a negative rate', () => {
  const { src, clock, model } = setup();
  run(12, clock, model, () => src.add(2, Scalar.generationTokens, 50));
  src.set(2, Scalar.generationTokens, 10);
  src.set(2, Scalar.preemptions, 0);
  run(1, clock, model, () => {});
  const t = JSON.parse(model.tick(2)) as Tick;
  assert.ok((t.now.tokRate as number) > 0, `rate ${t.now.tokRate} stays positive across the reset`);
});

test('dashboard - a tick carries per-rank tiles, gauges and restarts', () => {
  const { src, model } = setup(2, 2);
  src.set(1, Scalar.kvUsage, 0.5);
  src.set(3, Scalar.kvUsage, 0.25);
  src.set(1, Scalar.running, 3);
  src.set(2, Scalar.waiting, 4);
  src.set(3, Scalar.activeBlocks, 17);
  src.restarts[3] = 2;
  src.add(0, Scalar.preemptions, 5);
  const t = JSON.parse(model.tick(2)) as Tick;
  assert.deepEqual(t.ranks.kv, [0, 0.5, 0, 0.25]);
  assert.deepEqual(t.ranks.run, [0, 3, 0, 0]);
  assert.deepEqual(t.ranks.wait, [0, 0, 4, 0]);
  assert.deepEqual(t.ranks.blk, [0, 0, 0, 17]);
  assert.deepEqual(t.ranks.rst, [0, 0, 0, 2]);
  assert.equal(t.now.running, 3);
  assert.equal(t.now.waiting, 4);
  assert.equal(t.now.kvMean, 0.1875);
  assert.equal(t.now.kvMax, 0.5);
  assert.equal(t.now.preemptions, 5);
  assert.equal(t.now.publisher.state, 'connected');
});

test('dashboard - placement rides along only when it changed', () => {
  const { model } = setup();
  const first = JSON.parse(model.tick(2)) as Tick;
  const second = JSON.parse(model.tick(2)) as Tick;
  assert.ok(first.placement !== undefined, 'first tick carries placement');
  assert.equal(second.placement, undefined, 'unchanged placement is not repeated');
});

test('dashboard - history keeps the newest samples up to its capacity and init carries them', () => {
  const src = new FakeSource(1, 1);
  const clock = new ManualClock();
  const model = new DashboardModel(src, { now: clock.now, historySamples: 5 });
  for (let i = 0; i < 9; i++) {
    clock.advance(1000);
    model.sample();
  }
  const init = JSON.parse(model.init(model.tick(2), 500)) as { history: number[][]; tick: Tick; fields: string[]; numRanks: number; historyS: number };
  assert.equal(init.history.length, 5);
  assert.deepEqual(init.history.map((r) => r[0]), [5, 6, 7, 8, 9], 'sequence numbers of the five newest samples');
  assert.equal((init.history[0] as number[]).length, 2 + init.fields.length);
  assert.equal(init.tick.samples.length, 2, 'the tick embeds its newest samples');
  assert.equal(init.numRanks, 1);
  assert.equal(init.historyS, 5);
});

test('dashboard - a 256-rank tick stays small and cheap to build', () => {
  const { src, model } = setup(64, 4);
  for (let r = 0; r < src.numRanks; r++) src.set(r, Scalar.kvUsage, (r % 100) / 100 + 0.00123);
  const json = model.tick(2);
  const t = JSON.parse(json) as Tick;
  assert.equal(t.ranks.kv.length, 256);
  assert.ok(json.length < 24_000, `tick is ${json.length} bytes`);
});
