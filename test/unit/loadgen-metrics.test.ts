import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeBenchMetrics, GapCollector } from '../../src/loadgen/metrics.js';
import type { RequestRecord } from '../../src/loadgen/metrics.js';

function rec(p: Partial<RequestRecord>): RequestRecord {
  return {
    sendMs: 0, endMs: 0, firstTokenMs: Number.NaN, secondTokenMs: Number.NaN, lastTokenMs: Number.NaN,
    outputTokens: 0, inputTokens: 100, cachedTokens: Number.NaN, chunks: 0, errorType: null, errorMessage: null, measured: true, ...p,
  };
}

// Timeline (ms), warm-up ends at 1000:
//   W  warm-up request sent at 0, ends 1500          -> excluded
//   A  sent 1000, tokens at 1100, 1120, ..., 5 tokens, last 1180, end 1190
//   B  sent 1200, tokens at 1400, 1450, 3 tokens, last 1500, end 1500
//   C  sent 1300, 1 token at 1350, end 1360           -> no ITL (OSL < 2)
//   F  sent 1400, HTTP 500 at 1410                    -> failed
//   G  sent 1500, connection refused at 1501          -> failed
//   L  sent 1600, stream cut at 3000                  -> failed; ends the measured interval
const records: RequestRecord[] = [
  rec({ sendMs: 0, endMs: 1500, firstTokenMs: 10, secondTokenMs: 20, lastTokenMs: 1400, outputTokens: 99, measured: false }),
  rec({ sendMs: 1000, endMs: 1190, firstTokenMs: 1100, secondTokenMs: 1120, lastTokenMs: 1180, outputTokens: 5, cachedTokens: 64 }),
  rec({ sendMs: 1200, endMs: 1500, firstTokenMs: 1400, secondTokenMs: 1450, lastTokenMs: 1500, outputTokens: 3, cachedTokens: 0 }),
  rec({ sendMs: 1300, endMs: 1360, firstTokenMs: 1350, lastTokenMs: 1350, outputTokens: 1 }),
  rec({ sendMs: 1400, endMs: 1410, errorType: 'http_500', errorMessage: 'HTTP 500: boom' }),
  rec({ sendMs: 1500, endMs: 1501, errorType: 'connection_refused', errorMessage: 'ECONNREFUSED' }),
  rec({ sendMs: 1600, endMs: 3000, firstTokenMs: 1700, outputTokens: 2, errorType: 'stream_cut', errorMessage: 'cut' }),
];

test('loadgen metrics - TTFT, TTST, ITL and e2e follow the AIPerf definitions per request', () => {
  const m = computeBenchMetrics(records, new GapCollector(), { measuredStartMs: 1000 });
  assert.deepEqual([...m.values.time_to_first_token], [100, 200, 50]);
  assert.deepEqual([...m.values.time_to_second_token], [20, 50], 'TTST = second - first token, only with 2+ tokens');
  // ITL = (e2e - TTFT) / (OSL - 1): A (190 - 100) / 4 = 22.5; B (300 - 200) / 2 = 50; C omitted (OSL 1)
  assert.deepEqual([...m.values.inter_token_latency], [22.5, 50]);
  assert.deepEqual([...m.values.request_latency], [190, 300, 60]);
  assert.deepEqual([...m.values.output_token_throughput_per_user], [1000 / 22.5, 1000 / 50]);
  assert.deepEqual([...m.values.output_sequence_length], [5, 3, 1]);
});

test('loadgen metrics - throughput counts completed measured requests over warm-up end .. last measured end', () => {
  const m = computeBenchMetrics(records, new GapCollector(), { measuredStartMs: 1000 });
  assert.equal(m.sent, 6, 'the warm-up request is not counted');
  assert.equal(m.completed, 3);
  assert.equal(m.failed, 3);
  assert.deepEqual(m.failedByType, { http_500: 1, connection_refused: 1, stream_cut: 1 });
  assert.equal(m.errorSamples['http_500'], 'HTTP 500: boom');
  assert.equal(m.durationS, 2, 'interval 1000 .. 3000 ms');
  assert.equal(m.requestThroughput, 1.5);
  assert.equal(m.outputTokenThroughput, 4.5, '(5 + 3 + 1) tokens / 2 s; failed requests contribute none');
  assert.equal(m.totalInputTokens, 300);
  assert.equal(m.totalCachedTokens, 64);
});

test('loadgen metrics - an interrupted run ends at the interruption and cancelled requests are neither completed nor failed', () => {
  const withCancel = [...records, rec({ sendMs: 1700, endMs: 1800, errorType: 'cancelled' })];
  const m = computeBenchMetrics(withCancel, new GapCollector(), { measuredStartMs: 1000, interruptedAtMs: 1800 });
  assert.equal(m.durationS, 0.8);
  assert.equal(m.cancelled, 1);
  assert.equal(m.failed, 3);
  assert.equal(m.requestThroughput, 3 / 0.8);
});

test('loadgen metrics - with no measured request every latency summary is empty, not zero', () => {
  const m = computeBenchMetrics([records[0] as RequestRecord], new GapCollector(), { measuredStartMs: 1000 });
  assert.equal(m.completed, 0);
  assert.equal(m.summaries.time_to_first_token.count, 0);
  assert.ok(Number.isNaN(m.summaries.time_to_first_token.mean));
  assert.ok(Number.isNaN(m.requestThroughput), 'a zero-length interval has no throughput');
});

test('loadgen metrics - the gap collector keeps exact moments when it falls back to a reservoir', () => {
  const g = new GapCollector(100, 7);
  const src = Float64Array.from({ length: 1000 }, (_, i) => i);
  g.addMany(src, 1000);
  const s = g.summary();
  assert.equal(s.count, 1000);
  assert.equal(s.mean, 499.5);
  assert.equal(s.min, 0);
  assert.equal(s.max, 999);
  assert.equal(g.sampled, true);
  assert.equal(g.samples().length, 100);
  assert.ok(Math.abs(s.median - 499.5) < 150, `reservoir median ${s.median} is near the true median`);
});
