import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeServeConfig } from '../../src/config/serve-config.js';
import { parseCpuList, allowedCpus, checkCpusAllowed } from '../../src/util/affinity.js';
import { InvalidConfigError } from '../../src/util/errors.js';
import { counterLayout, observe, buckets125, histogramQuantile } from '../../src/protocol/rank-counters.js';
import { workerIdFor } from '../../src/cluster/coordinator.js';
import { largeInboxRingBytes } from '../../src/protocol/rank-channel.js';
import { autoRanksPerThread } from '../../src/cluster/layout.js';

test('config - defaults give 8 workers x 1 rank, vLLM engine defaults and a whole-cache max-model-len', () => {
  const cfg = normalizeServeConfig({});
  assert.equal(cfg.numWorkers, 8);
  assert.equal(cfg.dataParallelSize, 1);
  assert.equal(cfg.engineArgs.numGpuBlocks, 16384);
  assert.equal(cfg.engineArgs.blockSize, 64);
  assert.equal(cfg.maxModelLen, 16384 * 64);
  assert.equal(cfg.router, 'round_robin');
  assert.equal(cfg.natsUrl, null);
  assert.equal(cfg.namespace, 'dynamo');
  assert.equal(cfg.component, 'backend');
  assert.ok(Object.isFrozen(cfg));
});

test('config - bad values are rejected with a message naming the flag', () => {
  const cases: Array<[Parameters<typeof normalizeServeConfig>[0], RegExp]> = [
    [{ numWorkers: 0 }, /--num-workers/],
    [{ dataParallelSize: 1.5 }, /--data-parallel-size/],
    [{ speedupRatio: -1 }, /--speedup-ratio/],
    [{ router: 'fastest' }, /--router/],
    [{ namespace: 'a.b' }, /--namespace/],
    [{ nats: 'http://x y' }, /--nats/],
    [{ blockSize: 0 }, /block-size/],
    [{ maxModelLen: 16384 * 64 + 1 }, /--max-model-len/],
    [{ cpus: '1-0' }, /--cpus/],
    [{ cpus: 'abc' }, /--cpus/],
    [{ kvEventsFormat: 'zmq' }, /--kv-events-format/],
  ];
  for (const [input, re] of cases) {
    assert.throws(() => normalizeServeConfig(input), (err: unknown) => err instanceof InvalidConfigError && re.test(err.message), JSON.stringify(input));
  }
});

test('config - a CPU outside the allowed set is a clear startup error', () => {
  const allowed = allowedCpus();
  const outside = Math.max(...allowed) + 1;
  assert.throws(() => normalizeServeConfig({ cpus: String(outside) }), /--cpus: CPU \d+ is not in this process's allowed set/);
  checkCpusAllowed(allowed, '--cpus');
});

test('affinity - CPU lists parse like taskset', () => {
  assert.deepEqual(parseCpuList('0-1', 'x'), [0, 1]);
  assert.deepEqual(parseCpuList('2,4-7', 'x'), [2, 4, 5, 6, 7]);
  assert.deepEqual(parseCpuList(' 3 ', 'x'), [3]);
  assert.throws(() => parseCpuList('', '--cpus'), /--cpus: empty/);
});

test('counters - histogram buckets are non-cumulative with sum and count', () => {
  const layout = counterLayout(1024);
  const a = new Float64Array(layout.floatsPerRank);
  observe(a, 0, layout.ttft, 0.0005);
  observe(a, 0, layout.ttft, 0.003);
  observe(a, 0, layout.ttft, 99999);
  const h = layout.ttft;
  assert.equal(a[h.offset + 0], 1, '0.0005 <= 0.001');
  assert.equal(a[h.offset + 1], 1, '0.003 <= 0.005');
  assert.equal(a[h.offset + h.buckets.length], 1, '+Inf bucket');
  assert.equal(a[h.offset + h.buckets.length + 2], 3, 'count');
  assert.ok(Math.abs((a[h.offset + h.buckets.length + 1] as number) - 99999.0035) < 1e-9, 'sum');
  assert.deepEqual(buckets125(1000), [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]);
  const q = histogramQuantile([1, 2, 4], [0, 10, 0, 0], 0.5);
  assert.equal(q, 1.5);
  assert.ok(Number.isNaN(histogramQuantile([1], [0, 0], 0.5)));
});

test('cluster - worker ids are deterministic, distinct and non-zero u64', () => {
  const a = workerIdFor(0, 0);
  const b = workerIdFor(0, 1);
  assert.notEqual(a, b);
  assert.equal(workerIdFor(0, 0), a);
  assert.notEqual(workerIdFor(1, 0), a);
  for (const id of [a, b]) assert.ok(id > 0n && id < 1n << 64n);
  assert.ok(largeInboxRingBytes(16384 * 64) >= 4 * 16384 * 64 + 24);
});

test('config - --ranks-per-thread auto keeps a thread per rank up to 8 threads per core, then spreads the ranks over one thread per core', () => {
  assert.equal(autoRanksPerThread(16, 2), 1);
  assert.equal(autoRanksPerThread(17, 2), 9);
  assert.equal(autoRanksPerThread(256, 2), 128);
  assert.equal(autoRanksPerThread(4096, 2), 2048);
  assert.equal(autoRanksPerThread(4096, 4), 1024);
  assert.equal(autoRanksPerThread(1, 0), 1, 'never below one thread');
  // --cpus decides the core count for auto; an explicit number wins.
  assert.equal(normalizeServeConfig({ numWorkers: 64, cpus: String(allowedCpus()[0]) }).ranksPerThread, 64);
  assert.equal(normalizeServeConfig({ numWorkers: 64, ranksPerThread: '3' }).ranksPerThread, 3);
  assert.equal(normalizeServeConfig({ numWorkers: 64, ranksPerThread: 1 }).ranksPerThread, 1);
  for (const bad of ['0', 'many', '1.5', '5000']) {
    assert.throws(() => normalizeServeConfig({ ranksPerThread: bad }), (e: unknown) => e instanceof InvalidConfigError && /--ranks-per-thread/.test(e.message));
  }
});
