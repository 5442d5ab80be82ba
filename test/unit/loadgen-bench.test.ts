import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { runBench, DEFAULT_BENCH_OPTIONS } from '../../src/loadgen/bench.js';
import type { BenchOptions } from '../../src/loadgen/bench.js';
import { benchResultToJson, benchHtmlInput, formatSummary } from '../../src/loadgen/output.js';
import { renderHtmlReport } from '../../src/report/html.js';
import { startSseTestServer } from '../support/sse-test-server.js';

const base = (url: string, p: Partial<BenchOptions>): BenchOptions => ({ ...DEFAULT_BENCH_OPTIONS, url, isl: 37, osl: 5, concurrency: 2, numRequests: 10, ...p });

async function closedPortUrl(): Promise<string> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

test('loadgen bench - token-id prompts of exact length, model from /v1/models, every request completes', async () => {
  const srv = await startSseTestServer({ model: 'probe-me' });
  try {
    const r = await runBench(base(srv.url, { ignoreEos: true }));
    assert.equal(r.promptFormat, 'token-ids');
    assert.equal(r.model, 'probe-me');
    assert.equal(srv.bodies.length, 10);
    for (const b of srv.bodies) {
      assert.equal((b['prompt'] as number[]).length, 37);
      assert.equal(b['model'], 'probe-me');
      assert.equal(b['max_tokens'], 5);
      assert.equal(b['ignore_eos'], true);
    }
    const m = r.metrics;
    assert.equal(m.completed, 10);
    assert.equal(m.failed, 0);
    assert.equal(m.totalOutputTokens, 50);
    assert.equal(m.summaries.input_sequence_length.mean, 37, 'ISL from usage.prompt_tokens');
    assert.equal(m.summaries.time_to_first_token.count, 10);
    assert.equal(m.summaries.inter_chunk_latency.count, 40, '4 gaps per 5-token request');
    assert.equal(r.partial, false);
    const json = benchResultToJson(r) as { request_count: { completed: number }; metrics: Record<string, { unit: string }> };
    assert.equal(json.request_count.completed, 10);
    assert.equal(json.metrics['time_to_first_token']?.unit, 'ms');
    assert.match(formatSummary(r), /Time to first token \(ms\)/);
    assert.match(renderHtmlReport(benchHtmlInput(r)), /<svg /);
  } finally {
    await srv.close();
  }
});

test('loadgen bench - server errors and cut streams are counted by type and the run goes on', async () => {
  const srv = await startSseTestServer({
    behave: (i) => (i % 4 === 1 ? { kind: 'status', status: 500 } : i % 4 === 2 ? { kind: 'cut', afterChunks: 2 } : i % 4 === 3 ? { kind: 'status', status: 429 } : { kind: 'ok' }),
  });
  try {
    const r = await runBench(base(srv.url, { concurrency: 1, numRequests: 12, osl: 8 }));
    assert.equal(r.metrics.completed, 3);
    assert.deepEqual(r.metrics.failedByType, { http_500: 3, stream_cut: 3, http_429: 3 });
    assert.match(r.metrics.errorSamples['http_500'] ?? '', /injected 500/);
    assert.equal(r.metrics.totalOutputTokens, 24, 'only completed requests add output tokens');
  } finally {
    await srv.close();
  }
});

test('loadgen bench - an unreachable URL gives connection_refused for every request, not a crash', async () => {
  const url = await closedPortUrl();
  const r = await runBench(base(url, { numRequests: 5 }));
  assert.equal(r.model, null);
  assert.equal(r.metrics.completed, 0);
  assert.deepEqual(r.metrics.failedByType, { connection_refused: 5 });
});

test('loadgen bench - aborting the signal returns a partial report with in-flight requests cancelled', async () => {
  const srv = await startSseTestServer({ behave: (i) => (i < 4 ? { kind: 'ok' } : { kind: 'hang' }) });
  try {
    const ac = new AbortController();
    const run = runBench(base(srv.url, { concurrency: 3, numRequests: 100 }), { signal: ac.signal });
    await srv.waitForRequests(7);
    ac.abort();
    const r = await run;
    assert.equal(r.partial, true);
    assert.equal(r.metrics.completed, 4);
    assert.equal(r.metrics.cancelled, 3);
    assert.equal(r.metrics.failed, 0);
    assert.ok(Number.isFinite(r.metrics.requestThroughput), 'throughput over the interval up to the interruption');
  } finally {
    await srv.close();
  }
});

test('loadgen bench - a request without a complete response within --timeout fails as timeout', async () => {
  const srv = await startSseTestServer({ behave: (i) => (i === 0 ? { kind: 'hang' } : { kind: 'ok' }) });
  try {
    const r = await runBench(base(srv.url, { concurrency: 1, numRequests: 3, timeoutS: 0.2 }));
    assert.deepEqual(r.metrics.failedByType, { timeout: 1 });
    assert.equal(r.metrics.completed, 2);
  } finally {
    await srv.close();
  }
});

test('loadgen bench - a server rejecting token ids gets text prompts with one word per token', async () => {
  const srv = await startSseTestServer({ tokenIds: false });
  try {
    const r = await runBench(base(srv.url, { numRequests: 3, isl: 25 }));
    assert.equal(r.promptFormat, 'text');
    for (const b of srv.bodies) assert.equal((b['prompt'] as string).split(' ').length, 25);
    assert.equal(r.metrics.completed, 3);
  } finally {
    await srv.close();
  }
});

test('loadgen bench - chat API counts content deltas, not the role chunk', async () => {
  const srv = await startSseTestServer();
  try {
    const r = await runBench(base(srv.url, { api: 'chat', numRequests: 2, osl: 6 }));
    assert.equal(r.promptFormat, 'text');
    assert.ok(Array.isArray(srv.bodies[0]?.['messages']));
    assert.equal(r.metrics.completed, 2);
    assert.deepEqual([...r.metrics.values.output_sequence_length], [6, 6]);
    assert.equal(r.records[0]?.chunks, 6);
  } finally {
    await srv.close();
  }
});

test('loadgen bench - open-loop request rate sends exactly --num-requests measured requests', async () => {
  const srv = await startSseTestServer();
  try {
    const r = await runBench(base(srv.url, { concurrency: undefined, requestRate: 2000, arrival: 'constant', numRequests: 20 }));
    assert.equal(r.metrics.sent, 20);
    assert.equal(r.metrics.completed, 20);
    assert.equal(srv.bodies.length, 20);
  } finally {
    await srv.close();
  }
});

test('loadgen bench - requests sent during the warm-up are excluded from the metrics', async () => {
  const srv = await startSseTestServer();
  try {
    const r = await runBench(base(srv.url, { numRequests: 5, warmupS: 0.15 }));
    assert.ok(r.warmupRequests > 0, 'some requests ran during the warm-up');
    assert.equal(r.metrics.sent, 5);
    assert.equal(r.metrics.completed, 5);
    const measured = r.records.filter((x) => x.measured);
    assert.equal(measured.length, 5);
    assert.ok(measured.every((x) => x.sendMs >= r.metrics.measuredStartMs), 'measured requests were all sent after the warm-up ended');
    assert.ok(r.records.filter((x) => !x.measured).every((x) => x.sendMs < r.metrics.measuredStartMs));
  } finally {
    await srv.close();
  }
});
