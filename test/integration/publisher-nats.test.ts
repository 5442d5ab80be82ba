import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { Unpackr } from 'msgpackr';
import { RankEventWriter } from '../../src/protocol/rank-events.js';
import { Doorbell, SpscRing } from '../../src/protocol/ring.js';
import { startPublisher } from '../../src/transport/publisher.js';
import type { PublisherHandle } from '../../src/transport/publisher.js';
import { startNatsServer } from '../support/nats-server.js';
import { FPM, twoEventLog, waitFor } from '../support/publisher-fixtures.js';

/** A plain msgpack decoder (no knowledge of our encoders), 64-bit ints as bigint. */
const plain = new Unpackr({ int64AsType: 'bigint', useRecords: false, mapsAsObjects: true });

interface Received {
  subject: string;
  env: { topic: string; publisher_id: bigint; sequence: bigint; published_at: bigint; payload: Uint8Array };
  payload: any;
}

async function subscribeAll(nc: NatsConnection, subject: string, into: Received[]): Promise<void> {
  const sub = nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err !== null) throw err;
      const env = plain.unpack(Buffer.from(msg.data));
      into.push({ subject: msg.subject, env, payload: plain.unpack(Buffer.from(env.payload)) });
    },
  });
  void sub;
  await nc.flush();
}

/** Per (publisher_id, topic): sequences strictly increasing; returns the per-key lists. */
function sequencesByKey(msgs: Received[]): Map<string, bigint[]> {
  const m = new Map<string, bigint[]>();
  for (const r of msgs) {
    const k = `${r.env.publisher_id}/${r.env.topic}`;
    const list = m.get(k) ?? [];
    list.push(r.env.sequence);
    m.set(k, list);
  }
  return m;
}

test('publisher-nats - envelopes on cached subjects decode with a plain decoder, sequences from 0, FPM counter from 1', async (t) => {
  const server = await startNatsServer();
  t.after(() => server.stop(true));
  const sub = await connect({ servers: server.url });
  t.after(() => sub.close());
  const got: Received[] = [];
  await subscribeAll(sub, 'namespace.itest.component.mocker.>', got);

  const rings = [SpscRing.allocate(1 << 16), SpscRing.allocate(1 << 16)];
  const bellSab = Doorbell.allocate();
  const bell = new Doorbell(bellSab);
  const ids = [1001n, 0x9000_0000_0000_0000n];
  const pub = await startPublisher({ rings, doorbell: bellSab, rankWorkerIds: ids, rankDpRanks: [0, 0], natsUrl: server.url, namespace: 'itest', component: 'mocker', dynamoWire: 'legacy', eventsFile: null });
  t.after(() => pub.flushAndClose(100));
  await waitFor('NATS connected', () => pub.stats().natsConnected);
  const w = rings.map((s, r) => new RankEventWriter(new SpscRing(s), { workerId: ids[r]!, dpRank: 0, kvEventsFormat: 'dynamo', vllmEncoding: 'array', dynamoWire: 'legacy', doorbell: bell }));
  for (let i = 0; i < 50; i++) {
    w[0]!.writeKvEvents(twoEventLog(i * 2), i);
    w[1]!.writeFpm(FPM, 0.001 * (i + 1));
  }
  w[1]!.writeHeartbeat();
  w[0]!.writeLoad(7, 9);
  const total = 100 + 50 + 1 + 1;
  await waitFor('all messages received', () => got.length === total);
  await pub.flushAndClose(5000);
  assert.equal(pub.stats().published, total);
  assert.equal(pub.stats().dropped, 0);

  for (const r of got) {
    // legacy wire: component scope, except kv_metrics (endpoint-scoped in every Dynamo version)
    const scope = r.env.topic === 'kv_metrics' ? 'endpoint.generate.' : '';
    assert.equal(r.subject, `namespace.itest.component.mocker.${scope}${r.env.topic}`);
    assert.deepEqual(Object.keys(r.env), ['topic', 'publisher_id', 'sequence', 'published_at', 'payload']);
    assert.equal(typeof r.env.sequence, 'bigint', 'sequence is a 64-bit integer, not a float');
    assert.equal(typeof r.env.published_at, 'bigint');
    assert.ok(Number(r.env.published_at) > 1.6e12, 'published_at is ms since the epoch');
  }
  const seqs = sequencesByKey(got);
  const expectRange = (n: number): bigint[] => Array.from({ length: n }, (_, i) => BigInt(i));
  assert.deepEqual(seqs.get('1001/kv-events'), expectRange(100));
  assert.deepEqual(seqs.get('1001/kv_metrics'), [0n]);
  assert.deepEqual(seqs.get(`${ids[1]}/forward-pass-metrics`), expectRange(51));

  const kv = got.filter((r) => r.env.topic === 'kv-events').map((r) => r.payload.event.event_id);
  assert.deepEqual(kv, expectRange(100), 'event ids in order');
  const fpm = got.filter((r) => r.env.topic === 'forward-pass-metrics').map((r) => r.payload);
  assert.deepEqual(fpm.map((p) => p.counter_id), Array.from({ length: 51 }, (_, i) => i + 1), 'counter_id from 1');
  assert.equal(fpm[0].worker_id, ids[1]!.toString());
  const hb = fpm[50];
  assert.equal(hb.wall_time, 0, 'heartbeat: wall_time 0');
  assert.deepEqual(Object.values(hb.scheduled_requests), [0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(Object.values(hb.queued_requests), [0, 0, 0, 0, 0, 0]);
  const load = got.find((r) => r.env.topic === 'kv_metrics')!.payload;
  assert.deepEqual(load, { worker_id: 1001n, dp_rank: 0, active_decode_blocks: 7n, active_prefill_tokens: null, kv_used_blocks: 9n });
});

test('publisher-nats - NATS killed and restarted while publishing: publishing resumes and every loss is counted', async (t) => {
  const server = await startNatsServer();
  t.after(() => server.stop(true));
  const rings = [SpscRing.allocate(1 << 16), SpscRing.allocate(1 << 16)];
  const bellSab = Doorbell.allocate();
  const bell = new Doorbell(bellSab);
  const ids = [1n, 2n];
  const pub: PublisherHandle = await startPublisher({
    rings,
    doorbell: bellSab,
    rankWorkerIds: ids,
    rankDpRanks: [0, 0],
    natsUrl: server.url,
    namespace: 'itest',
    component: 'mocker',
    dynamoWire: 'legacy',
    eventsFile: null,
    maxBufferedBytes: 16 * 1024,
  });
  t.after(() => pub.flushAndClose(100));
  const statuses: string[] = [];
  pub.on('nats', (s) => statuses.push(s));
  await waitFor('NATS connected', () => pub.stats().natsConnected);
  const sub = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 50 });
  t.after(() => sub.close());
  const got: Received[] = [];
  await subscribeAll(sub, 'namespace.itest.component.mocker.forward-pass-metrics', got);

  const writers = rings.map((s, r) => new RankEventWriter(new SpscRing(s), { workerId: ids[r]!, dpRank: 0, kvEventsFormat: 'dynamo', vllmEncoding: 'array', dynamoWire: 'legacy', doorbell: bell, blockTimeoutMs: 5 }));
  let attempts = 0;
  let writing = true;
  const writer = (async () => {
    while (writing) {
      for (let i = 0; i < 20; i++) {
        writers[0]!.writeFpm(FPM, 0.001);
        writers[1]!.writeFpm(FPM, 0.001);
        attempts += 2;
      }
      await new Promise((r) => setTimeout(r, 1));
    }
  })();

  await waitFor('traffic before the outage', () => got.length > 500);
  await server.stop(true);
  await waitFor('publisher noticed the disconnect', () => !pub.stats().natsConnected);
  await waitFor('drops counted while disconnected', () => pub.stats().droppedByPublisher > 0);
  const beforeRestart = got.length;
  await server.restart();
  await waitFor('publisher reconnected', () => pub.stats().natsConnected && pub.stats().reconnects >= 1);
  await waitFor('subscriber receives again after the restart', () => got.length > beforeRestart + 500);
  writing = false;
  await writer;
  await pub.flushAndClose(5000);

  const s = pub.stats();
  assert.ok(statuses.includes('disconnected') && statuses.includes('reconnected'), `statuses seen: ${statuses.join(',')}`);
  assert.equal(s.published + s.dropped, attempts, 'every record written is either published or counted as dropped');
  assert.ok(s.disconnects >= 1);
  assert.equal(s.bufferedMessages, 0);
  for (const [key, list] of sequencesByKey(got)) {
    for (let i = 1; i < list.length; i++) assert.ok(list[i]! > list[i - 1]!, `${key}: sequence strictly increasing`);
  }
  // Payloads survived buffering and arena reuse intact: counter_id (rank side, from 1) and
  // sequence (publisher side, from 0) count the same FPM messages; they differ only by records
  // the rank dropped before the publisher saw them.
  const lastCounter = new Map<bigint, number>();
  for (const r of got) {
    const gap = BigInt(r.payload.counter_id) - (r.env.sequence + 1n);
    assert.ok(gap >= 0n && gap <= BigInt(s.droppedByRanks), `counter_id ${r.payload.counter_id} vs sequence ${r.env.sequence}`);
    assert.ok(r.payload.counter_id > (lastCounter.get(r.env.publisher_id) ?? 0), 'counter_id increases per rank');
    lastCounter.set(r.env.publisher_id, r.payload.counter_id);
  }
  const last = got.at(-1)!;
  assert.ok(last.env.sequence > BigInt(Math.floor(beforeRestart / 2)), 'sequences continued across the outage');
});

test('publisher-nats - with NATS unreachable the ranks keep writing and close counts what was held', async (t) => {
  // A port nobody listens on: start a server, note its port, stop it.
  const server = await startNatsServer();
  const url = server.url;
  await server.stop(true);
  const rings = [SpscRing.allocate(1 << 16)];
  const bellSab = Doorbell.allocate();
  const pub = await startPublisher({ rings, doorbell: bellSab, rankWorkerIds: [3n], rankDpRanks: [0], natsUrl: url, namespace: 'itest', component: 'mocker', dynamoWire: 'legacy', eventsFile: null, maxBufferedBytes: 4096 });
  t.after(() => pub.flushAndClose(100));
  const w = new RankEventWriter(new SpscRing(rings[0]!), { workerId: 3n, dpRank: 0, kvEventsFormat: 'dynamo', vllmEncoding: 'array', dynamoWire: 'legacy', doorbell: new Doorbell(bellSab), blockTimeoutMs: 0 });
  for (let i = 0; i < 200; i++) w.writeFpm(FPM, 0.001);
  const accounted = (): number => pub.stats().dropped + pub.stats().bufferedMessages;
  await waitFor('every record held or counted', () => accounted() === 200);
  const held = pub.stats().bufferedMessages;
  assert.ok(held > 0 && held < 200, `some messages held up to the 4 KiB cap (held ${held})`);
  assert.equal(pub.stats().natsConnected, false);
  const started = performance.now();
  await pub.flushAndClose(300);
  assert.ok(performance.now() - started < 5000, 'close does not hang on a dead NATS');
  const s = pub.stats();
  assert.equal(s.published, 0);
  assert.equal(s.dropped, 200, 'everything not published is counted as dropped');
  assert.equal(s.bufferedMessages, 0);
});

test('nats-server support - a missing binary fails with a clear message', async () => {
  const savedPath = process.env['PATH'];
  process.env['PATH'] = '/nonexistent';
  try {
    await assert.rejects(startNatsServer(), /nats-server is not installed/);
  } finally {
    process.env['PATH'] = savedPath;
  }
});
