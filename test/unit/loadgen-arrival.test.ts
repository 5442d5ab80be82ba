import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ArrivalProcess } from '../../src/loadgen/arrival.js';
import { RequestFactory, TOKEN_ID_MAX, TOKEN_ID_MIN } from '../../src/loadgen/workload.js';
import type { WorkloadSpec } from '../../src/loadgen/workload.js';

function gaps(p: ArrivalProcess, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(p.nextGapMs());
  return out;
}
const mean = (v: number[]): number => v.reduce((a, b) => a + b, 0) / v.length;
const cv = (v: number[]): number => {
  const m = mean(v);
  return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length) / m;
};

test('loadgen arrival - poisson gaps have mean 1000/rate and coefficient of variation 1', () => {
  const g = gaps(new ArrivalProcess('poisson', 50, 1, 1), 50_000);
  assert.ok(Math.abs(mean(g) - 20) < 0.4, `mean gap ${mean(g)} ≈ 20 ms`);
  assert.ok(Math.abs(cv(g) - 1) < 0.03, `cv ${cv(g)} ≈ 1`);
});

test('loadgen arrival - gamma gaps keep the mean and scale the CV by 1/sqrt(burstiness)', () => {
  const bursty = gaps(new ArrivalProcess('gamma', 10, 0.25, 3), 50_000);
  assert.ok(Math.abs(mean(bursty) - 100) < 3, `mean ${mean(bursty)}`);
  assert.ok(Math.abs(cv(bursty) - 2) < 0.1, `cv ${cv(bursty)} ≈ 2 for shape 0.25`);
  const smooth = gaps(new ArrivalProcess('gamma', 10, 4, 3), 50_000);
  assert.ok(Math.abs(cv(smooth) - 0.5) < 0.03, `cv ${cv(smooth)} ≈ 0.5 for shape 4`);
});

test('loadgen arrival - constant gaps are exact and seeded processes repeat', () => {
  assert.deepEqual(gaps(new ArrivalProcess('constant', 4, 1, 0), 3), [250, 250, 250]);
  assert.deepEqual(gaps(new ArrivalProcess('poisson', 7, 1, 99), 20), gaps(new ArrivalProcess('poisson', 7, 1, 99), 20));
  assert.notDeepEqual(gaps(new ArrivalProcess('poisson', 7, 1, 99), 20), gaps(new ArrivalProcess('poisson', 7, 1, 100), 20));
  assert.throws(() => new ArrivalProcess('poisson', 0, 1, 0), RangeError);
});

const spec = (p: Partial<WorkloadSpec>): WorkloadSpec => ({
  api: 'completions', model: 'm', promptFormat: 'token-ids', isl: 100, islStddev: 0, osl: 10, oslStddev: 0,
  sharedPrefixRatio: 0, numPrefixGroups: 1, ignoreEos: true, seed: 5, ...p,
});

test('loadgen workload - token-id prompts have exactly ISL ids in range and the body asks for a usage chunk', () => {
  const f = new RequestFactory(spec({ isl: 1024, osl: 7 }));
  for (let i = 0; i < 5; i++) {
    const b = f.next();
    const body = JSON.parse(b.body) as { prompt: number[]; max_tokens: number; stream: boolean; stream_options: unknown; ignore_eos: boolean; model: string };
    assert.equal(body.prompt.length, 1024);
    assert.ok(body.prompt.every((t) => Number.isInteger(t) && t >= TOKEN_ID_MIN && t < TOKEN_ID_MAX));
    assert.equal(body.max_tokens, 7);
    assert.equal(body.stream, true);
    assert.deepEqual(body.stream_options, { include_usage: true });
    assert.equal(body.ignore_eos, true);
    assert.equal(body.model, 'm');
  }
});

test('loadgen workload - text prompts have one word per intended token; chat sends messages', () => {
  const t = JSON.parse(new RequestFactory(spec({ promptFormat: 'text', isl: 321 })).next().body) as { prompt: string };
  assert.equal(t.prompt.split(' ').length, 321);
  const c = JSON.parse(new RequestFactory(spec({ api: 'chat', promptFormat: 'text', isl: 50 })).next().body) as { messages: Array<{ role: string; content: string }> };
  assert.equal(c.messages[0]?.role, 'user');
  assert.equal(c.messages[0]?.content.split(' ').length, 50);
});

test('loadgen workload - shared prefixes repeat within a group and lengths follow the std-dev, seeded', () => {
  const f = new RequestFactory(spec({ isl: 200, sharedPrefixRatio: 0.5, numPrefixGroups: 2 }));
  const prefixes = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const p = (JSON.parse(f.next().body) as { prompt: number[] }).prompt;
    assert.equal(p.length, 200);
    prefixes.add(p.slice(0, 100).join(','));
  }
  assert.equal(prefixes.size, 2, 'two groups -> two distinct 100-token prefixes');
  const a = new RequestFactory(spec({ islStddev: 20, oslStddev: 3 }));
  const b = new RequestFactory(spec({ islStddev: 20, oslStddev: 3 }));
  const la = Array.from({ length: 200 }, () => a.next());
  const lb = Array.from({ length: 200 }, () => b.next());
  assert.deepEqual(la.map((x) => x.isl), lb.map((x) => x.isl), 'same seed, same lengths');
  assert.ok(new Set(la.map((x) => x.isl)).size > 20, 'lengths vary');
  assert.ok(la.every((x) => x.isl >= 1 && x.osl >= 1));
  assert.ok(la.every((x) => (JSON.parse(x.body) as { prompt: number[] }).prompt.length === x.isl));
});

test('loadgen workload - prompts diverge within 32 tokens after the shared prefix (no accidental prefix sharing)', () => {
  const f = new RequestFactory(spec({ isl: 300, sharedPrefixRatio: 0.2, numPrefixGroups: 1 }));
  const heads = new Set<string>();
  for (let i = 0; i < 500; i++) {
    const p = (JSON.parse(f.next().body) as { prompt: number[] }).prompt;
    assert.equal(p.length, 300);
    heads.add(p.slice(60, 92).join(','));
  }
  assert.equal(heads.size, 500, 'the 32 tokens after the 60-token shared prefix are unique per request');
});
