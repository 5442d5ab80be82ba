import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderHtmlReport, niceTicks, formatNumber } from '../../src/report/html.js';
import { BASE_CSS, PALETTE } from '../../src/report/theme.js';

test('report html - renders one self-contained page with cards, histograms and line charts', () => {
  const values = Float64Array.from({ length: 500 }, (_, i) => 10 + (i % 50) + (i === 499 ? 5000 : 0));
  const html = renderHtmlReport({
    title: 'Run <1>',
    subtitle: 'a & b',
    summary: [['Requests/s', 123.456], ['Model', 'llama']],
    distributions: [{ name: 'TTFT', unit: 'ms', values }, { name: 'Empty', unit: 'ms', values: [] }],
    series: [{ name: 'Throughput', unit: 'req/s', t: [0, 1, 2, 3], v: [5, 7, 6, 8] }],
  });
  const has = (re: RegExp, why: string): void => assert.ok(re.test(html), why);
  has(/^<!doctype html>/, 'starts with a doctype');
  assert.equal((html.match(/<svg /g) ?? []).length, 2, 'one histogram (the empty distribution has none) and one line chart');
  has(/<rect class="mf-bar"/, 'histogram bars');
  has(/<polyline /, 'CDF / line');
  has(/Run &lt;1&gt;/, 'title is escaped');
  has(/a &amp; b/, 'subtitle is escaped');
  has(/mf-card-value">123</, 'summary card value');
  has(/no samples/, 'empty distribution placeholder');
  has(/last bar holds values up to 5059/, 'outliers beyond p99.5 are folded into the last bar and labelled');
  assert.ok(!/<script|https?:\/\//.test(html.replaceAll('http://www.w3.org/2000/svg', '')), 'no scripts, no external resources');
  assert.ok(html.includes(PALETTE.accent) && html.includes(BASE_CSS.slice(0, 40)), 'uses the shared theme');
});

test('report html - long series are reduced to at most 480 points', () => {
  const n = 10000;
  const t = Float64Array.from({ length: n }, (_, i) => i);
  const html = renderHtmlReport({ title: 't', summary: [], distributions: [], series: [{ name: 's', unit: 'u', t, v: t }] });
  const pts = /<polyline points="([^"]+)"/.exec(html)?.[1] ?? '';
  assert.equal(pts.split(' ').length, 480);
});

test('report html - ticks are round numbers covering the range and numbers are compact', () => {
  assert.deepEqual(niceTicks(0, 100, 5), [0, 20, 40, 60, 80, 100]);
  assert.deepEqual(niceTicks(3, 3, 4).length > 0, true);
  assert.equal(formatNumber(1234567), '1.23M');
  assert.equal(formatNumber(12.345), '12.3');
  assert.equal(formatNumber(Number.NaN), 'n/a');
});
