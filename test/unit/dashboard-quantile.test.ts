import { test } from 'node:test';
import assert from 'node:assert/strict';
import { histogramQuantile } from '../../src/dashboard/quantile.js';

const BOUNDS = [0.1, 0.2, 0.4];

test('dashboard - quantile interpolates linearly inside the bucket that holds the rank', () => {
  // 10 observations in (0, 0.1], 10 in (0.1, 0.2]: the median sits at the top of bucket 0.
  const counts = [10, 10, 0, 0];
  assert.equal(histogramQuantile(0.5, BOUNDS, counts), 0.1);
  assert.ok(Math.abs((histogramQuantile(0.75, BOUNDS, counts) as number) - 0.15) < 1e-12, 'p75 is half way through (0.1, 0.2]');
  assert.ok(Math.abs((histogramQuantile(0.25, BOUNDS, counts) as number) - 0.05) < 1e-12, 'first bucket starts at 0');
});

test('dashboard - quantile skips empty buckets and answers the largest finite bound for +Inf', () => {
  assert.ok(Math.abs((histogramQuantile(0.5, BOUNDS, [0, 0, 4, 0]) as number) - 0.3) < 1e-12, 'rank 2 of 4 in (0.2, 0.4]');
  assert.equal(histogramQuantile(0.99, BOUNDS, [0, 0, 0, 5]), 0.4, 'everything above the last bound');
  assert.equal(histogramQuantile(0.9, BOUNDS, [9, 0, 0, 1]), 0.1, 'p90 of 9 fast + 1 slow stays in the first bucket');
  assert.equal(histogramQuantile(0.99, BOUNDS, [9, 0, 0, 1]), 0.4, 'p99 lands in +Inf');
});

test('dashboard - quantile of an empty histogram is null, not zero', () => {
  assert.equal(histogramQuantile(0.5, BOUNDS, [0, 0, 0, 0]), null);
});

test('dashboard - quantile reads counts at an offset inside a larger array', () => {
  const arr = [99, 99, 10, 10, 0, 0, 99];
  assert.equal(histogramQuantile(0.5, BOUNDS, arr, 2), 0.1);
});
