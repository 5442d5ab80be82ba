import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runOnlineReplay } from '../../src/loadgen/online-replay.js';
import { startSseTestServer } from '../support/sse-test-server.js';

async function traceFile(lines: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mf-replay-'));
  const p = join(dir, 'trace.jsonl');
  await writeFile(p, lines.join('\n') + '\n');
  return p;
}

test('loadgen online replay - sends synthesized token-id prompts in trace order and reports Dynamo fields', async () => {
  const srv = await startSseTestServer();
  const path = await traceFile([
    // 100 ms apart after the speedup: requests on separate connections 10 ms apart reached the
    // server out of order on a busy machine.
    '{"timestamp": 1000, "input_length": 10, "output_length": 4, "hash_ids": [7, 8]}',
    '{"timestamp": 1400, "input_length": 9, "output_length": 1, "hash_ids": [7, 9]}',
    '{"timestamp": 1800, "input_length": 50, "output_length": 3, "hash_ids": [5]}',
  ]);
  const dir = await mkdtemp(join(tmpdir(), 'mf-replay-out-'));
  try {
    const rep = await runOnlineReplay({ url: srv.url, tracePath: path, traceBlockSize: 8, arrivalSpeedupRatio: 4, json: join(dir, 'r.json'), html: join(dir, 'r.html') });
    assert.deepEqual(srv.bodies.map((b) => b['prompt']), [
      [7, 7, 7, 7, 7, 7, 7, 7, 8, 8],
      [7, 7, 7, 7, 7, 7, 7, 7, 9],
      [5, 5, 5, 5, 5, 5, 5, 5],
    ], 'hash ids repeated trace_block_size times, input clamped to len(hash_ids) × block');
    assert.deepEqual(srv.bodies.map((b) => [b['max_tokens'], b['ignore_eos'], b['stream']]), [[4, true, true], [1, true, true], [3, true, true]]);
    assert.equal(rep.num_requests, 3);
    assert.equal(rep.completed_requests, 3);
    assert.equal(rep.total_input_tokens, 27);
    assert.equal(rep.total_output_tokens, 8);
    assert.ok(rep.duration_ms >= 200, 'the last request arrives 800 / 4 = 200 ms after the first');
    assert.ok(rep.ttft_ms.p99 !== null && rep.ttft_ms.p99 >= 0);
    assert.equal(rep.tpot_ms.mean !== null, true);
    for (const k of ['mean', 'min', 'max', 'median', 'p75', 'p90', 'p95', 'p99', 'std'] as const) assert.ok(k in rep.e2e_latency_ms);
    const json = JSON.parse(await readFile(join(dir, 'r.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(json['completed_requests'], 3);
    assert.equal(json['mode'], 'online');
    assert.match(await readFile(join(dir, 'r.html'), 'utf8'), /<svg /);
  } finally {
    await srv.close();
  }
});

test('loadgen online replay - failures and unsent requests are not completed; abort returns what finished', async () => {
  const srv = await startSseTestServer({ behave: (i) => (i === 0 ? { kind: 'status', status: 503 } : i === 1 ? { kind: 'ok' } : { kind: 'hang' }) });
  const path = await traceFile([
    '{"timestamp": 0, "input_length": 4, "output_length": 2, "hash_ids": [1]}',
    '{"timestamp": 0, "input_length": 4, "output_length": 2, "hash_ids": [2]}',
    '{"timestamp": 0, "input_length": 4, "output_length": 2, "hash_ids": [3]}',
    '{"timestamp": 600000, "input_length": 4, "output_length": 2, "hash_ids": [4]}',
  ]);
  try {
    const ac = new AbortController();
    const run = runOnlineReplay({ url: srv.url, tracePath: path, traceBlockSize: 4, arrivalSpeedupRatio: 1, model: 'm', signal: ac.signal });
    await srv.waitForRequests(3);
    ac.abort();
    const rep = await run;
    assert.equal(rep.num_requests, 4);
    assert.equal(rep.completed_requests, 1);
    assert.equal(srv.bodies.length, 3, 'the request due in 10 minutes was never sent');
  } finally {
    await srv.close();
  }
});

test('loadgen online replay - invalid options name the flag', async () => {
  await assert.rejects(runOnlineReplay({ url: 'http://127.0.0.1:1', tracePath: '/nonexistent', traceBlockSize: 0, arrivalSpeedupRatio: 1 }), /--trace-block-size/);
  await assert.rejects(runOnlineReplay({ url: 'http://127.0.0.1:1', tracePath: '/nonexistent', traceBlockSize: 512, arrivalSpeedupRatio: 0 }), /--arrival-speedup-ratio/);
});
