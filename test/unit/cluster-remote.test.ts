/**
 * Pieces of the fleet request plane without processes: u32 word records, the Prometheus
 * exposition merge, and the KV-event consumer on the agreed current-Dynamo layout (batched
 * RouterEvent arrays in the envelope) and the older one-event-per-message layout.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { WordReader, WordWriter, checkFleetName, lastToken, fleetSubjects } from '../../src/cluster/remote-wire.js';
import { mergeExpositions } from '../../src/cluster/remote-metrics.js';
import { KvEventConsumer, kvEventSubjects } from '../../src/cluster/remote-kv-events.js';
import type { KvEventSink } from '../../src/cluster/remote-kv-events.js';
import { InvalidConfigError } from '../../src/util/errors.js';

test('word records round-trip through an aligned reader, strings padded to a word', () => {
  const w = new WordWriter(2);
  w.u32(7);
  w.u32x2(1, 0xffffffff);
  w.array(new Uint32Array([9, 8, 7, 6]), 1, 2);
  w.bytes(Buffer.from('héllo', 'utf8'));
  w.u32(42);
  const bytes = w.take();
  assert.equal(bytes.length % 4, 0);
  // An unaligned source buffer (as a NATS message may be) reads the same.
  const unaligned = new Uint8Array(bytes.length + 1).subarray(1);
  unaligned.set(bytes);
  const r = new WordReader();
  r.load(unaligned);
  assert.deepEqual([...r.u32.subarray(0, 5)], [7, 1, 0xffffffff, 8, 7]);
  const [s, next] = r.string(5);
  assert.equal(s, 'héllo');
  assert.equal(r.u32[next], 42);
  assert.equal(next + 1, r.length);
  assert.throws(() => r.load(new Uint8Array(5)), /whole number of u32 words/);
});

test('fleet names and subjects', () => {
  assert.equal(checkFleetName('prod-1_a'), 'prod-1_a');
  for (const bad of ['', 'a.b', 'a b', '*', 'x'.repeat(65), undefined]) assert.throws(() => checkFleetName(bad), InvalidConfigError);
  assert.equal(lastToken(fleetSubjects.output('f', 'fe1', 'INST')), 'INST');
  assert.equal(lastToken(fleetSubjects.load('f', 'INST2')), 'INST2');
});

test('expositions merge into one block per family; remote process series get fleet_worker', () => {
  const local = [
    '# HELP vllm:num_requests_running Running.',
    '# TYPE vllm:num_requests_running gauge',
    'vllm:num_requests_running{model_name="m",engine="0",worker_id="1"} 2',
    '# HELP mockfleet_publisher_published_total Sent.',
    '# TYPE mockfleet_publisher_published_total counter',
    'mockfleet_publisher_published_total{model_name="m"} 5',
  ].join('\n');
  const remote = [
    '# HELP vllm:num_requests_running Running.',
    '# TYPE vllm:num_requests_running gauge',
    'vllm:num_requests_running{model_name="m",engine="0",worker_id="2"} 3',
    '# HELP mockfleet_publisher_published_total Sent.',
    '# TYPE mockfleet_publisher_published_total counter',
    'mockfleet_publisher_published_total{model_name="m"} 7',
    'bare_metric 1',
    '',
  ].join('\n');
  const out = mergeExpositions([{ text: local, fleetWorker: null }, { text: remote, fleetWorker: 'W2' }]);
  assert.equal(
    out,
    [
      '# HELP vllm:num_requests_running Running.',
      '# TYPE vllm:num_requests_running gauge',
      'vllm:num_requests_running{model_name="m",engine="0",worker_id="1"} 2',
      'vllm:num_requests_running{model_name="m",engine="0",worker_id="2"} 3',
      '# HELP mockfleet_publisher_published_total Sent.',
      '# TYPE mockfleet_publisher_published_total counter',
      'mockfleet_publisher_published_total{model_name="m"} 5',
      'mockfleet_publisher_published_total{fleet_worker="W2",model_name="m"} 7',
      'bare_metric{fleet_worker="W2"} 1',
      '',
    ].join('\n'),
  );
});

/** A NatsConnection stand-in that records subscriptions and lets the test deliver messages. */
function fakeNc(): { nc: never; deliver(subject: string, data: Uint8Array): void } {
  const subs = new Map<string, (err: Error | null, msg: { data: Uint8Array }) => void>();
  return {
    nc: {
      subscribe(subject: string, opts: { callback: (err: Error | null, msg: { data: Uint8Array }) => void }) {
        subs.set(subject, opts.callback);
        return { unsubscribe: () => subs.delete(subject) };
      },
    } as never,
    deliver(subject, data) {
      subs.get(subject)?.(null, { data });
    },
  };
}

test('KV events: agreed current-Dynamo batches and legacy single events reach the sink with split u64 hashes', () => {
  const packr = new Packr({ useRecords: false, useBigIntExtension: false, largeBigIntToFloat: false });
  const got: string[] = [];
  const sink: KvEventSink = {
    onStored: (w, dp, n, hi, lo) => got.push(`stored ${w} dp${dp} ${Array.from({ length: n }, (_, i) => `${(hi[i] as number).toString(16)}:${(lo[i] as number).toString(16)}`).join(',')}`),
    onRemoved: (w, dp, n, hi, lo) => got.push(`removed ${w} dp${dp} ${Array.from({ length: n }, (_, i) => `${(hi[i] as number).toString(16)}:${(lo[i] as number).toString(16)}`).join(',')}`),
    onCleared: (w, dp) => got.push(`cleared ${w} dp${dp}`),
  };
  const f = fakeNc();
  const logs: string[] = [];
  const c = new KvEventConsumer(f.nc, 'dynamo', 'backend', sink, (l) => logs.push(l));
  const [current, legacy] = kvEventSubjects('dynamo', 'backend') as [string, string];
  assert.equal(current, 'namespace.dynamo.component.backend.endpoint.*.kv-events');
  const envelope = (payload: unknown): Uint8Array =>
    packr.pack({ topic: 'kv-events', publisher_id: 7n, sequence: 1n, published_at: 2n, payload: packr.pack(payload) });
  const big = 0xfedcba9876543210n;
  f.deliver(current, envelope([
    { worker_id: 12345678901234567890n, event: { event_id: 1n, data: { stored: { parent_hash: null, blocks: [{ block_hash: big, tokens_hash: 1n, mm_extra_info: null }, { block_hash: 5, tokens_hash: 2n }] } }, dp_rank: 1 } },
    { worker_id: 12345678901234567890n, event: { event_id: 2n, data: { removed: { block_hashes: [big] } }, dp_rank: 1 } },
  ]));
  f.deliver(legacy, envelope({ worker_id: 3, event: { event_id: 3, data: 'cleared', dp_rank: 0 } }));
  f.deliver(legacy, packr.pack({ not: 'an envelope' }));
  assert.deepEqual(got, [
    'stored 12345678901234567890 dp1 fedcba98:76543210,0:5',
    'removed 12345678901234567890 dp1 fedcba98:76543210',
    'cleared 3 dp0',
  ]);
  assert.equal(c.events, 3);
  assert.equal(c.malformed, 1);
  assert.equal(logs.length, 1);
  c.close();
});
