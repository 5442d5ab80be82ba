import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createInterpolatedPerfModel, createPolynomialPerfModel } from '../../src/engine/engine.js';
import type { PerfProfileArrays } from '../../src/engine/engine.js';
import { PerfModelError } from '../../src/util/errors.js';

const close = (a: number, b: number, eps = 1e-9): void => assert.ok(Math.abs(a - b) <= eps, `${a} ≈ ${b}`);

test('perf model - polynomial prefill follows the Dynamo fit in new tokens', () => {
  const m = createPolynomialPerfModel();
  const t = 8192;
  close(m.prefillMs(1, 8192, 0), 4.209989e-7 * t * t + 1.518344e-2 * t + 16.50142);
  assert.ok(Math.abs(m.prefillMs(1, 8192, 0) - 169) < 1, 'spec example: 8192 new tokens ≈ 169 ms');
  close(m.prefillMs(2, 300, 100), m.prefillMs(1, 200, 0), 1e-9);
  // Integer means: count 3, isl 10 → mean 3; prefix 2 → mean 0; T = 3 × 3 = 9.
  close(m.prefillMs(3, 10, 2), 4.209989e-7 * 81 + 1.518344e-2 * 9 + 16.50142);
});

test('perf model - polynomial prefill is 0 without new tokens', () => {
  const m = createPolynomialPerfModel();
  assert.equal(m.prefillMs(0, 0, 0), 0);
  assert.equal(m.prefillMs(2, 64, 64), 0, 'fully cached chunk');
});

test('perf model - polynomial decode follows the KV-usage fit with a 1 ms floor', () => {
  const m = createPolynomialPerfModel();
  close(m.decodeMs(0, 1000, 10), 5.74);
  const p = 0.375;
  close(m.decodeMs(375, 1000, 10), -25.74 * p * p + 54.01 * p + 5.74);
  assert.ok(Math.abs(m.decodeMs(375, 1000, 10) - 22.4) < 0.1, 'spec example: p = 0.375 → 22.4 ms');
  close(m.decodeMs(5, 0, 1), -25.74 + 54.01 + 5.74, 1e-9);
  assert.equal(m.decodeMs(3000, 1000, 1), 1, 'p = 3 drives the fit below 1 ms: floored');
});

function grid(): PerfProfileArrays {
  return {
    prefillIsl: Float64Array.from([100, 200, 400]),
    prefillTtftMs: Float64Array.from([10, 20, 60]),
    decodeActiveKvTokens: Float64Array.from([1000, 2000]),
    decodeContextLength: Float64Array.from([100, 300]),
    // rows = active KV tokens, cols = context length
    decodeItl: Float64Array.from([5, 7, 9, 15]),
  };
}

test('perf model - profile prefill interpolates linearly and extrapolates beyond the grid', () => {
  const m = createInterpolatedPerfModel(grid());
  close(m.prefillMs(1, 150, 0), 15);
  close(m.prefillMs(1, 300, 0), 40);
  close(m.prefillMs(1, 500, 0), 80, 1e-9);
  close(m.prefillMs(1, 50, 0), 5, 1e-9);
  close(m.prefillMs(2, 400, 0), 60, 1e-9); // T = 2 × 200
  assert.equal(m.prefillMs(1, 100, 100), 0, 'no new tokens');
  close(m.prefillMs(1, 1, 0), 0.1, 1e-9);
  const steep = createInterpolatedPerfModel({ ...grid(), prefillIsl: Float64Array.from([100, 200]), prefillTtftMs: Float64Array.from([10, 50]) });
  assert.equal(steep.prefillMs(1, 1, 0), 0, 'extrapolated to -29.6 ms: clamped to 0 like the polynomial');
});

test('perf model - profile decode is bilinear with extrapolation and a 1 ms floor', () => {
  const m = createInterpolatedPerfModel(grid());
  close(m.decodeMs(1000, 0, 100), 5);
  close(m.decodeMs(2000, 0, 300), 15);
  close(m.decodeMs(1500, 0, 200), (5 + 7 + 9 + 15) / 4);
  close(m.decodeMs(3000, 0, 100), 13, 1e-9);
  close(m.decodeMs(1000, 0, 500), 9, 1e-9);
  close(m.decodeMs(0, 0, 0), 2, 1e-9);
  assert.equal(m.decodeMs(-1000, 0, 100), 1, 'extrapolated to -3 ms: floored at 1');
});

test('perf model - bad profile arrays are rejected with PerfModelError', () => {
  const g = grid();
  assert.throws(() => createInterpolatedPerfModel({ ...g, prefillTtftMs: Float64Array.from([1, 2]) }), PerfModelError);
  assert.throws(() => createInterpolatedPerfModel({ ...g, prefillIsl: Float64Array.from([100, 100, 400]) }), /strictly increasing/);
  assert.throws(() => createInterpolatedPerfModel({ ...g, decodeItl: Float64Array.from([1, 2, 3]) }), /decode_itl/);
  assert.throws(() => createInterpolatedPerfModel({ ...g, decodeContextLength: Float64Array.from([1]) }), /at least 2 points/);
  assert.throws(() => createInterpolatedPerfModel({ ...g, decodeItl: Float64Array.from([1, 2, Number.NaN, 4]) }), /finite/);
});

test('perf model - a non-finite query surfaces as PerfModelError, not a free pass', () => {
  const m = createInterpolatedPerfModel(grid());
  assert.throws(() => m.decodeMs(Number.NaN, 0, 100), PerfModelError);
  assert.throws(() => m.prefillMs(1, Number.POSITIVE_INFINITY, 0), PerfModelError);
});
