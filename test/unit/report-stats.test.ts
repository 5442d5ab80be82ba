import { test } from 'node:test';
import assert from 'node:assert/strict';
import { percentile, summarize, summaryToJson } from '../../src/report/stats.js';
import { fmt, renderTable } from '../../src/report/table.js';

test('report stats - percentile is the element at rank round((n - 1) * p / 100)', () => {
  const v = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
  // n = 10: p50 -> round(4.5) = 5 -> 60; p90 -> round(8.1) = 8 -> 90; p99 -> round(8.91) = 9 -> 100; p25 -> round(2.25) = 2 -> 30
  assert.equal(percentile(v, 50), 60);
  assert.equal(percentile(v, 90), 90);
  assert.equal(percentile(v, 99), 100);
  assert.equal(percentile(v, 25), 30);
  assert.equal(percentile(v, 0), 10);
  assert.equal(percentile(v, 100), 100);
  assert.ok(Number.isNaN(percentile([], 50)));
  assert.throws(() => percentile(v, 101), RangeError);
});

test('report stats - summarize sorts numerically and uses the population std', () => {
  const s = summarize([9, 1, 10, 2, 100]);
  assert.equal(s.count, 5);
  assert.equal(s.min, 1);
  assert.equal(s.max, 100);
  assert.equal(s.median, 9, 'numeric sort: [1, 2, 9, 10, 100]');
  assert.equal(s.p75, 10);
  assert.equal(s.mean, 24.4);
  const varPop = [9, 1, 10, 2, 100].reduce((a, x) => a + (x - 24.4) ** 2, 0) / 5;
  assert.ok(Math.abs(s.std - Math.sqrt(varPop)) < 1e-9);
});

test('report stats - an empty input is count 0 with NaN values, serialized as null', () => {
  const s = summarize([]);
  assert.equal(s.count, 0);
  assert.ok(Number.isNaN(s.mean));
  assert.equal(summaryToJson(s).p99, null);
});

test('report table - columns are aligned and n/a marks missing values', () => {
  const t = renderTable(['Metric', 'value'], [['a', 1], ['longer name', fmt(Number.NaN)]]);
  const lines = t.split('\n');
  const widths = new Set(lines.map((l) => l.length));
  assert.equal(widths.size, 1, 'every line has the same width');
  assert.match(t, /n\/a/);
});
