import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runReplayCommand } from '../../src/cli/commands/replay.js';
import { InvalidConfigError, MockfleetError, TraceFormatError } from '../../src/util/errors.js';
import { exitCodeFor } from '../../src/cli/exit.js';

const TRACE = [
  '{"timestamp": 0, "input_length": 6, "output_length": 3, "hash_ids": [1, 2]}',
  '{"timestamp": 10, "input_length": 4, "output_length": 1, "hash_ids": [5]}',
  '{"timestamp": 100, "input_length": 8, "output_length": 2, "hash_ids": [1, 3]}',
].join('\n');

function args(dir: string, extra: Record<string, unknown> = {}): Parameters<typeof runReplayCommand>[0] {
  return {
    trace: join(dir, 't.jsonl'),
    offline: true,
    numWorkers: 2,
    dataParallelSize: 1,
    router: 'kv_router',
    kvOverlapScoreWeight: 1,
    traceBlockSize: 4,
    arrivalSpeedupRatio: 1,
    blockSize: 4,
    numGpuBlocks: 100,
    ...extra,
  } as Parameters<typeof runReplayCommand>[0];
}

test('replay-cli - offline replay prints the report table and writes the JSON and HTML reports', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mockfleet-replay-'));
  try {
    writeFileSync(join(dir, 't.jsonl'), TRACE);
    let out = '';
    await runReplayCommand(args(dir, { json: join(dir, 'r.json'), html: join(dir, 'r.html') }), (s) => (out += s), () => {});
    assert.match(out, /Time to first token \(ms\)/);
    assert.match(out, /3 \/ 3 completed/);
    // The last line: simulated requests per wall second.
    assert.match(out.trimEnd().split('\n').at(-1) as string, /^simulated 3 requests \(.* s of traffic\) in .* s wall: \d+ simulated requests per wall second$/);
    const rep = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')) as Record<string, unknown>;
    for (const k of ['num_requests', 'completed_requests', 'total_input_tokens', 'total_reused_input_tokens', 'total_output_tokens', 'duration_ms',
      'wall_time_ms', 'request_throughput_rps', 'input_throughput_tok_s', 'output_throughput_tok_s', 'total_throughput_tok_s', 'prefix_cache_reused_ratio',
      'ttft_ms', 'ttst_ms', 'tpot_ms', 'itl_ms', 'e2e_latency_ms', 'output_token_throughput_per_user']) {
      assert.ok(k in rep, `JSON report has ${k}`);
    }
    assert.equal(rep['num_requests'], 3);
    assert.equal(rep['router'], 'kv');
    assert.equal(rep['router_temperature'], 0);
    assert.deepEqual(Object.keys(rep['ttft_ms'] as object), ['mean', 'min', 'max', 'median', 'p75', 'p90', 'p95', 'p99', 'std']);
    assert.match(readFileSync(join(dir, 'r.html'), 'utf8'), /<html/i);
    let first = '';
    await runReplayCommand(args(dir, { numRequests: 1, json: join(dir, 'one.json') }), (s) => (first += s), () => {});
    assert.equal((JSON.parse(readFileSync(join(dir, 'one.json'), 'utf8')) as { num_requests: number }).num_requests, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('replay-cli - bad inputs raise usage errors that map to exit code 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mockfleet-replay-'));
  try {
    writeFileSync(join(dir, 't.jsonl'), TRACE);
    const cases: Array<[Record<string, unknown>, new (...a: never[]) => MockfleetError, RegExp]> = [
      [{ offline: false }, InvalidConfigError, /pass --offline .* or --url URL/],
      [{ url: 'http://127.0.0.1:1' }, InvalidConfigError, /choose one/],
      [{ traceBlockSize: 0 }, InvalidConfigError, /--trace-block-size/],
      [{ numRequests: -2 }, InvalidConfigError, /--num-requests/],
      [{ router: 'fastest' }, InvalidConfigError, /--router/],
      [{ routerTemperature: -1 }, InvalidConfigError, /--router-temperature/],
      [{ speedupRatio: 0 }, InvalidConfigError, /--speedup-ratio/],
      [{ numGpuBlocks: 0 }, InvalidConfigError, /num-gpu-blocks/],
      [{ trace: join(dir, 'missing.jsonl') }, TraceFormatError, /cannot read trace file/],
    ];
    for (const [extra, cls, re] of cases) {
      await assert.rejects(runReplayCommand(args(dir, extra), () => {}, () => {}), (err: unknown) => {
        assert.ok(err instanceof cls, `${JSON.stringify(extra)}: ${String(err)}`);
        assert.match((err as Error).message, re);
        assert.equal(exitCodeFor(err), 2);
        return true;
      });
    }
    writeFileSync(join(dir, 'bad.jsonl'), `${TRACE}\n{"timestamp": 5, "input_length": 4, "output_length": 0, "hash_ids": [1]}\n`);
    await assert.rejects(runReplayCommand(args(dir, { trace: join(dir, 'bad.jsonl') }), () => {}, () => {}), /bad\.jsonl:4: output_length: must be ≥ 1/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
