import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RankEventWriter } from '../../src/protocol/rank-events.js';
import { Doorbell, SpscRing } from '../../src/protocol/ring.js';
import { startPublisher } from '../../src/transport/publisher.js';
import { EmbeddedSink, PublisherCore } from '../../src/transport/publisher-core.js';
import type { PublisherSink } from '../../src/transport/publisher-core.js';
import { STAT_SLOTS, StatsReader } from '../../src/transport/stats.js';
import type { PublisherStats } from '../../src/transport/stats.js';
import type { PublisherHandle } from '../../src/transport/publisher.js';
import { InvalidConfigError } from '../../src/util/errors.js';
import { FPM, twoEventLog, waitFor } from '../support/publisher-fixtures.js';

test('publisher - embedded sink counts every message and the events file holds decoded envelopes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mockfleet-pub-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const eventsFile = join(dir, 'events.jsonl');
  const rings = [SpscRing.allocate(1 << 16), SpscRing.allocate(1 << 16), SpscRing.allocate(1 << 16)];
  const bellSab = Doorbell.allocate();
  const bell = new Doorbell(bellSab);
  // Ranks 0 and 1 are two DP ranks of worker 11 (they share its sequences); rank 2 is worker 2^64-1.
  const ids = [11n, 11n, 0xffff_ffff_ffff_ffffn];
  const pub: PublisherHandle = await startPublisher({
    rings,
    doorbell: bellSab,
    rankWorkerIds: ids,
    rankDpRanks: [0, 1, 0],
    natsUrl: null,
    namespace: 'testns',
    component: 'mocker',
    dynamoWire: 'legacy',
    eventsFile,
  });
  t.after(() => pub.flushAndClose(100));
  assert.ok(typeof pub.threadId === 'number');
  assert.ok(pub.tid === null || pub.tid > 0);
  const writers = rings.map(
    (s, r) => new RankEventWriter(new SpscRing(s), { workerId: ids[r]!, dpRank: r === 1 ? 1 : 0, kvEventsFormat: r === 2 ? 'both' : 'dynamo', vllmEncoding: 'array', dynamoWire: 'legacy', doorbell: bell }),
  );
  writers[0]!.writeKvEvents(twoEventLog(0), 1000);
  writers[0]!.writeFpm(FPM, 0.01);
  writers[1]!.writeFpm(FPM, 0.02);
  writers[1]!.writeHeartbeat();
  writers[2]!.writeKvEvents(twoEventLog(5), 2000);
  writers[2]!.writeLoad(3, 4);
  writers[0]!.writeFpm(FPM, 0.03);
  const total = 2 + 1 + 2 + 2 + 1 + 1 + 1;
  await waitFor('all messages published', () => pub.stats().published === total);
  await pub.flushAndClose(5000);
  const s = pub.stats();
  assert.equal(s.published, total);
  assert.equal(s.dropped, 0);
  assert.deepEqual(s.publishedByTopic, { 'kv-events': 4, 'forward-pass-metrics': 4, kv_metrics: 1, 'kv-events-vllm': 1 });
  assert.equal(s.natsConnected, true, 'the embedded sink is always connected');
  assert.ok(s.bytes > 0);

  const lines = readFileSync(eventsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, total);
  for (const l of lines) {
    const scope = l.topic === 'kv_metrics' ? 'endpoint.generate.' : '';
    assert.equal(l.subject, `namespace.testns.component.mocker.${scope}${l.topic}`);
    assert.deepEqual(Object.keys(l), ['subject', 'topic', 'publisher_id', 'sequence', 'published_at', 'payload']);
    assert.equal(typeof l.sequence, 'string', 'u64 fields are decimal strings');
  }
  const seqs = (pubId: string, topic: string): string[] => lines.filter((l) => l.publisher_id === pubId && l.topic === topic).map((l) => l.sequence);
  assert.deepEqual(seqs('11', 'forward-pass-metrics'), ['0', '1', '2', '3'], 'DP ranks of one worker share its sequence');
  assert.deepEqual(seqs('11', 'kv-events'), ['0', '1']);
  assert.deepEqual(seqs('18446744073709551615', 'kv-events'), ['0', '1'], 'sequences are per publisher');
  assert.deepEqual(seqs('18446744073709551615', 'kv-events-vllm'), ['0']);
  // Order across ranks depends on when the publisher drains; within a rank it is preserved.
  const fpmOf = (dp: number): number[][] =>
    lines.filter((l) => l.topic === 'forward-pass-metrics' && l.payload.dp_rank === dp).map((l) => [l.payload.counter_id, l.payload.wall_time]);
  assert.deepEqual(fpmOf(0), [[1, 0.01], [2, 0.03]], 'counter_id per rank from 1');
  assert.deepEqual(fpmOf(1), [[1, 0.02], [2, 0]], 'the heartbeat continues the counter with wall_time 0');
  const stored = lines.find((l) => l.publisher_id === '11' && l.topic === 'kv-events' && l.sequence === '0');
  assert.deepEqual(stored.payload, {
    worker_id: '11',
    storage_tier: 'device',
    event: { event_id: '0', data: { stored: { parent_hash: null, blocks: [{ block_hash: '18446744069414584321', tokens_hash: '77', mm_extra_info: null }] } }, dp_rank: 0 },
  });
  const vllm = lines.find((l) => l.topic === 'kv-events-vllm');
  assert.equal(vllm.payload[0], 2);
  assert.deepEqual(vllm.payload[1][1], ['BlockRemoved', ['18446744069414584321'], 'GPU', 0]);
  const load = lines.find((l) => l.topic === 'kv_metrics');
  assert.deepEqual(load.payload, { worker_id: '18446744073709551615', dp_rank: 0, active_decode_blocks: '3', active_prefill_tokens: null, kv_used_blocks: '4' });
});

test('publisher - invalid subject tokens are rejected before the thread starts', async () => {
  await assert.rejects(
    startPublisher({
      rings: [SpscRing.allocate(1024)],
      doorbell: Doorbell.allocate(),
      rankWorkerIds: [1n],
      rankDpRanks: [0],
      natsUrl: null,
      namespace: 'bad ns',
      component: 'mocker',
      eventsFile: null,
    }),
    InvalidConfigError,
  );
  await assert.rejects(
    startPublisher({ rings: [SpscRing.allocate(1024)], doorbell: Doorbell.allocate(), rankWorkerIds: [], rankDpRanks: [0], natsUrl: null, namespace: 'n', component: 'c', eventsFile: null }),
    InvalidConfigError,
  );
});

test('publisher - pinning reports the thread id and the CPU list', async (t) => {
  const pub = await startPublisher({
    rings: [SpscRing.allocate(1024)],
    doorbell: Doorbell.allocate(),
    rankWorkerIds: [1n],
    rankDpRanks: [0],
    natsUrl: null,
    namespace: 'n',
    component: 'c',
    eventsFile: null,
    cpus: [0],
  });
  t.after(() => pub.flushAndClose(100));
  assert.ok(pub.tid !== null && pub.tid > 0, 'tid read from /proc/thread-self');
  const status = readFileSync(`/proc/${process.pid}/task/${pub.tid}/status`, 'utf8');
  const allowed = /Cpus_allowed_list:\s*(\S+)/.exec(status)?.[1];
  if (pub.pinnedCpus !== null) {
    assert.equal(pub.pinnedCpus, '0');
    assert.equal(allowed, '0', 'only the publisher thread is pinned');
  }
  await pub.flushAndClose(2000);
});

test('publisher - with nothing reading the envelopes it counts records without copying them, exactly as a real sink sees them', async () => {
  const envelopes: Uint8Array[] = [];
  class CapturingSink implements PublisherSink {
    readonly connected = true;
    publish(_subject: string, data: Uint8Array): void {
      envelopes.push(data.slice());
    }
    async flush(): Promise<boolean> {
      return true;
    }
    async close(): Promise<void> {}
  }
  const ids = [11n, 11n, 0xffff_ffff_ffff_ffffn];
  const run = (sink: PublisherSink): PublisherStats => {
    const rings = ids.map(() => SpscRing.allocate(1 << 16));
    const stats = new SharedArrayBuffer(8 * STAT_SLOTS);
    const core = new PublisherCore({ rings, rankWorkerIds: ids, namespace: 'ns', component: 'c', sink, stats, eventsFile: null, natsVllm: true });
    const writers = rings.map((s, r) => new RankEventWriter(new SpscRing(s), { workerId: ids[r]!, dpRank: r === 1 ? 1 : 0, kvEventsFormat: r === 2 ? 'both' : 'dynamo', vllmEncoding: 'array' }));
    // Payloads of every bin header size: a big KV batch (> 255 B) and small FPM / load records.
    for (let i = 0; i < 40; i++) writers[i % 3]!.writeKvEvents(twoEventLog(10 * i), 1000 + i);
    for (let i = 0; i < 30; i++) writers[i % 3]!.writeFpm(FPM, i / 100);
    writers[2]!.writeLoad(3, 4);
    while (core.drainPass() > 0);
    return new StatsReader(stats, rings).read();
  };
  const counted = run(new EmbeddedSink());
  const copied = run(new CapturingSink());
  assert.equal(copied.published, envelopes.length);
  assert.equal(copied.bytes, envelopes.reduce((n, e) => n + e.length, 0));
  assert.deepEqual(counted, copied, 'same messages, bytes and topics counted');
  assert.equal(counted.published, 40 + 13 + 30 + 1, 'kv-events (rank 2 also vLLM batches), FPM, load');
});
