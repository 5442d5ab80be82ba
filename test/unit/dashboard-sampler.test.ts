/**
 * The dashboard's samplers visit only ranks whose activity counters moved (FleetTotals), and
 * their totals and gauges equal a full pass over every rank.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scalar } from '../../src/protocol/rank-counters.js';
import { FleetTotals, Tot, readGauges } from '../../src/dashboard/fleet-state.js';
import type { FleetGauges } from '../../src/dashboard/fleet-state.js';
import { FakeSource } from './dashboard-fake-source.js';

const gauges = (): FleetGauges => ({ running: 0, waiting: 0, kvMean: 0, kvMax: 0 });

/** Σ over ranks of a monotonic counter: what the totals must hold when nothing was reset. */
function sum(src: FakeSource, idx: number): number {
  let s = 0;
  for (const c of src.counters) s += c[idx] as number;
  return s;
}

test('dashboard sampler - an idle fleet costs no rank visits; a change costs its rank, twice', () => {
  const src = new FakeSource(512, 1);
  const ft = new FleetTotals(src);
  ft.read();
  assert.equal(ft.lastVisited, 512, 'first read folds every rank');
  ft.read();
  ft.read();
  assert.equal(ft.lastVisited, 0, 'nothing moved');
  // Idle heartbeats and ring high-water marks change without a pass: not the dashboard's business.
  for (let r = 0; r < 512; r++) (src.counters[r] as Float64Array)[Scalar.heartbeats] = 7;
  ft.read();
  assert.equal(ft.lastVisited, 0, 'heartbeats alone visit nothing');
  src.add(3, Scalar.generationTokens, 10);
  src.add(300, Scalar.successLength, 1);
  src.observe(511, src.layout.ttft, 0.2);
  ft.read();
  assert.equal(ft.lastVisited, 3);
  ft.read();
  assert.equal(ft.lastVisited, 3, 'a changed rank is folded once more (the rest of its pass)');
  ft.read();
  assert.equal(ft.lastVisited, 0);
  assert.equal(ft.totals[Tot.generationTokens], 10);
  assert.equal(ft.totals[Tot.finished], 1);
});

test('dashboard sampler - counters written after the pass counter, between two reads, are not lost', () => {
  const src = new FakeSource(64, 1);
  const ft = new FleetTotals(src);
  ft.read();
  ft.read();
  const c = src.counters[5] as Float64Array;
  // The rank thread bumps passes first, then records the pass (rank-worker.ts finishPass).
  c[Scalar.passes] = (c[Scalar.passes] as number) + 1;
  ft.read();
  c[Scalar.generationTokens] = (c[Scalar.generationTokens] as number) + 42;
  c[Scalar.running] = 2;
  c[Scalar.kvUsage] = 0.5;
  ft.read();
  assert.equal(ft.totals[Tot.generationTokens], 42);
  assert.deepEqual(ft.gauges(gauges()), readGauges(src, gauges()));
});

test('dashboard sampler - random activity on a few ranks: totals and gauges equal a full pass', () => {
  const src = new FakeSource(256, 4);
  const ft = new FleetTotals(src);
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  let visits = 0;
  for (let step = 0; step < 200; step++) {
    for (let k = 0; k < 8; k++) {
      const r = rnd(src.numRanks);
      switch (rnd(6)) {
        case 0:
          src.add(r, Scalar.generationTokens, 1 + rnd(50));
          break;
        case 1:
          src.observe(r, src.layout.itl, rnd(100) / 1000, 1 + rnd(3));
          break;
        case 2:
          src.observe(r, src.layout.ttft, rnd(2000) / 1000);
          src.add(r, Scalar.successStop, 1);
          break;
        case 3:
          src.set(r, Scalar.kvUsage, rnd(1000) / 1000);
          src.set(r, Scalar.running, rnd(8));
          break;
        case 4:
          src.set(r, Scalar.waiting, rnd(5));
          src.add(r, Scalar.prefixQueries, 64);
          src.add(r, Scalar.prefixHits, rnd(64));
          break;
        default:
          src.add(r, Scalar.successAbort, 1);
      }
    }
    ft.read();
    if (step > 0) visits += ft.lastVisited;
    assert.deepEqual(ft.gauges(gauges()), readGauges(src, gauges()), `gauges at step ${step}`);
    assert.equal(ft.totals[Tot.generationTokens], sum(src, Scalar.generationTokens));
    assert.equal(ft.totals[Tot.prefixQueries], sum(src, Scalar.prefixQueries));
    assert.equal(ft.totals[Tot.prefixHits], sum(src, Scalar.prefixHits));
    assert.equal(
      ft.totals[Tot.finished],
      sum(src, Scalar.successStop) + sum(src, Scalar.successLength) + sum(src, Scalar.successAbort) + sum(src, Scalar.successError),
      'requests finished by stop, length, abort or error',
    );
    const h = src.layout.itl;
    for (let b = 0; b <= h.buckets.length; b++) assert.equal(ft.totals[ft.itlStart + b], sum(src, h.offset + b));
  }
  // At most 8 changed ranks per step, each folded twice: far below 1024 ranks per read.
  assert.ok(visits / 199 <= 16, `visited ${visits / 199} ranks per read`);
});
