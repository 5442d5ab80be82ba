import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Unpackr } from 'msgpackr';
import type { KvEventLog } from '../../src/engine/types.js';
import { KvEventKind } from '../../src/engine/types.js';
import { RankEventWriter } from '../../src/protocol/rank-events.js';
import { SpscRing, TAG_BYTES } from '../../src/protocol/ring.js';
import { TopicCode, buildSubject, endpointScoped } from '../../src/protocol/topics.js';
import {
  MsgpackWriter,
  ZERO_FPM,
  encodeActiveLoad,
  encodeEnvelope,
  encodeFpm,
  encodeRouterEvent,
  encodeVllmBatch,
  dynamoBatchEnd,
  envelopeOverhead,
  envelopeTemplate,
  msgpackStr,
  splitU64,
} from '../../src/protocol/wire.js';
import { InvalidConfigError } from '../../src/util/errors.js';

const unpackr = new Unpackr({ int64AsType: 'bigint', useRecords: false, mapsAsObjects: true });
function decode(bytes: Uint8Array): any {
  return unpackr.unpack(Buffer.from(bytes));
}

/** The msgpack uint64 encoding 0xcf + 8 big-endian bytes of v. */
function u64Bytes(v: bigint): number[] {
  const out = [0xcf];
  for (let s = 56n; s >= 0n; s -= 8n) out.push(Number((v >> s) & 0xffn));
  return out;
}
function contains(hay: Uint8Array, needle: number[]): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}
/** Bytes right after a key: the value's first byte(s). */
function afterKey(hay: Uint8Array, key: string): number {
  const k = [...msgpackStr(key)];
  for (let i = 0; i + k.length <= hay.length; i++) {
    let ok = true;
    for (let j = 0; j < k.length; j++) if (hay[i + j] !== k[j]) ok = false;
    if (ok) return hay[i + k.length]!;
  }
  throw new Error(`key ${key} not found`);
}

interface EvSpec {
  kind: 'stored' | 'removed' | 'cleared';
  parent?: bigint | null;
  blocks?: Array<{ seq: bigint; tok?: bigint }>;
}

/** Builds a KvEventLog the way the engine lays it out (parallel arrays). */
function makeLog(specs: EvSpec[], blockSize: number, firstEventId: number): KvEventLog {
  const n = specs.length;
  const totalBlocks = specs.reduce((a, s) => a + (s.blocks?.length ?? 0), 0);
  const log: KvEventLog = {
    count: n,
    firstEventId,
    blockSize,
    kind: new Uint8Array(n),
    hasParent: new Uint8Array(n),
    parentHi: new Uint32Array(n),
    parentLo: new Uint32Array(n),
    hashStart: new Int32Array(n),
    hashCount: new Int32Array(n),
    tokenStart: new Int32Array(n),
    seqHashHi: new Uint32Array(totalBlocks),
    seqHashLo: new Uint32Array(totalBlocks),
    tokHashHi: new Uint32Array(totalBlocks),
    tokHashLo: new Uint32Array(totalBlocks),
    tokens: new Uint32Array(totalBlocks * blockSize),
  };
  let h = 0;
  let t = 0;
  specs.forEach((s, i) => {
    log.kind[i] = KvEventKind[s.kind];
    if (s.parent !== undefined && s.parent !== null) {
      log.hasParent[i] = 1;
      const p = splitU64(s.parent);
      log.parentHi[i] = p.hi;
      log.parentLo[i] = p.lo;
    }
    log.hashStart[i] = h;
    log.hashCount[i] = s.blocks?.length ?? 0;
    log.tokenStart[i] = t;
    for (const b of s.blocks ?? []) {
      const a = splitU64(b.seq);
      log.seqHashHi[h] = a.hi;
      log.seqHashLo[h] = a.lo;
      const c = splitU64(b.tok ?? 0n);
      log.tokHashHi[h] = c.hi;
      log.tokHashLo[h] = c.lo;
      h++;
      if (s.kind === 'stored') {
        for (let k = 0; k < blockSize; k++) log.tokens[t++] = 1000 + t;
      }
    }
  });
  return log;
}

const WORKER = 0x8000_0000_0000_0001n; // > 2^63: must stay uint64, never int64 or float
const H1 = 0xdead_beef_0000_0001n;
const H2 = 0x0000_0000_0000_0005n; // small: still 0xcf
const T1 = 0x1234_5678_9abc_def0n;
const T2 = 42n;
const PARENT = 0xffff_ffff_ffff_fffen;

function encodeOne(fn: (w: MsgpackWriter) => void): Uint8Array {
  const w = new MsgpackWriter(16); // tiny start: exercises growth
  fn(w);
  return w.buf.slice(0, w.pos);
}

test('wire - uint picks the smallest form and u64 always writes 0xcf', () => {
  for (const n of [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
    const b = encodeOne((w) => w.uint(n));
    assert.equal(Number(decode(b)), n, `uint ${n} round-trips`);
    const c = encodeOne((w) => w.u64n(n));
    assert.equal(c[0], 0xcf);
    assert.equal(c.length, 9);
    assert.equal(BigInt(decode(c)), BigInt(n));
  }
  assert.throws(() => encodeOne((w) => w.uint(-1)), RangeError);
  assert.throws(() => encodeOne((w) => w.uint(1.5)), RangeError);
  assert.deepEqual([...encodeOne((w) => w.u64(0xffffffff, 0xffffffff))], u64Bytes(0xffff_ffff_ffff_ffffn));
});

test('wire - RouterEvent stored encodes the Dynamo named map with uint64 hashes', () => {
  const log = makeLog(
    [
      { kind: 'stored', parent: PARENT, blocks: [{ seq: H1, tok: T1 }, { seq: H2, tok: T2 }] },
      { kind: 'stored', parent: null, blocks: [{ seq: H2, tok: T2 }] },
    ],
    4,
    7,
  );
  const { hi, lo } = splitU64(WORKER);
  const b = encodeOne((w) => encodeRouterEvent(w, hi, lo, 3, log, 0));
  const d = decode(b);
  assert.deepEqual(d, {
    worker_id: WORKER,
    storage_tier: 'device',
    event: {
      event_id: 7n,
      data: {
        stored: {
          parent_hash: PARENT,
          blocks: [
            { block_hash: H1, tokens_hash: T1, mm_extra_info: null },
            { block_hash: H2, tokens_hash: T2, mm_extra_info: null },
          ],
        },
      },
      dp_rank: 3,
    },
  });
  assert.deepEqual(Object.keys(d), ['worker_id', 'storage_tier', 'event'], 'field order of RouterEvent');
  assert.deepEqual(Object.keys(d.event), ['event_id', 'data', 'dp_rank'], 'field order of KvCacheEvent');
  for (const v of [WORKER, H1, H2, T1, T2, PARENT, 7n]) assert.ok(contains(b, u64Bytes(v)), `${v} written as uint64`);

  const b2 = encodeOne((w) => encodeRouterEvent(w, hi, lo, 0, log, 1));
  const d2 = decode(b2);
  assert.equal(d2.event.event_id, 8n, 'event_id = firstEventId + index');
  assert.equal(d2.event.data.stored.parent_hash, null, 'no parent => nil');
});

test('wire - RouterEvent removed and cleared use serde external tagging', () => {
  const log = makeLog([{ kind: 'removed', blocks: [{ seq: H1 }, { seq: H2 }] }, { kind: 'cleared' }], 16, 0);
  const b = encodeOne((w) => encodeRouterEvent(w, 0, 9, 1, log, 0));
  assert.deepEqual(decode(b), {
    worker_id: 9n,
    storage_tier: 'device',
    event: { event_id: 0n, data: { removed: { block_hashes: [H1, H2] } }, dp_rank: 1 },
  });
  assert.ok(contains(b, u64Bytes(9n)), 'small worker id still uint64');
  const c = encodeOne((w) => encodeRouterEvent(w, 0, 9, 1, log, 1));
  assert.deepEqual(decode(c).event, { event_id: 1n, data: 'cleared', dp_rank: 1 });
});

test('wire - RouterEvent with many blocks uses array16 and grows the writer', () => {
  const blocks = Array.from({ length: 300 }, (_, i) => ({ seq: BigInt(i) << 40n, tok: BigInt(i) }));
  const log = makeLog([{ kind: 'stored', parent: null, blocks }], 4, 0);
  const d = decode(encodeOne((w) => encodeRouterEvent(w, 0, 1, 0, log, 0)));
  assert.equal(d.event.data.stored.blocks.length, 300);
  assert.equal(d.event.data.stored.blocks[299].block_hash, 299n << 40n);
});

const FPM = {
  numPrefillRequests: 2,
  sumPrefillTokens: 300,
  varPrefillLength: 12.25,
  sumPrefillKvTokens: 64,
  numDecodeRequests: 70000,
  sumDecodeKvTokens: 5_000_000_000,
  varDecodeKvTokens: 0.5,
  numQueuedPrefill: 1,
  sumQueuedPrefillTokens: 128,
  varQueuedPrefillLength: 0,
  numQueuedDecode: 0,
  sumQueuedDecodeKvTokens: 0,
  varQueuedDecodeKvTokens: 0,
};

test('wire - FPM v1 has the exact key names, nesting and float fields', () => {
  const b = encodeOne((w) => encodeFpm(w, msgpackStr(WORKER.toString()), 2, 1, 0.0125, FPM));
  const d = decode(b);
  assert.deepEqual(d, {
    version: 1,
    worker_id: WORKER.toString(),
    dp_rank: 2,
    counter_id: 1,
    wall_time: 0.0125,
    scheduled_requests: {
      num_prefill_requests: 2,
      sum_prefill_tokens: 300,
      var_prefill_length: 12.25,
      sum_prefill_kv_tokens: 64,
      num_decode_requests: 70000,
      sum_decode_kv_tokens: 5_000_000_000n,
      var_decode_kv_tokens: 0.5,
    },
    queued_requests: {
      num_prefill_requests: 1,
      sum_prefill_tokens: 128,
      var_prefill_length: 0,
      num_decode_requests: 0,
      sum_decode_kv_tokens: 0,
      var_decode_kv_tokens: 0,
    },
  });
  assert.deepEqual(Object.keys(d), ['version', 'worker_id', 'dp_rank', 'counter_id', 'wall_time', 'scheduled_requests', 'queued_requests']);
  assert.equal(afterKey(b, 'wall_time'), 0xcb, 'wall_time is float64');
  assert.equal(afterKey(b, 'var_prefill_length'), 0xcb, 'variance is float64 even when integral');
  assert.equal(afterKey(b, 'worker_id') & 0xe0, 0xa0, 'worker_id is a string');
});

test('wire - the FPM heartbeat is a zeroed snapshot with float wall_time 0', () => {
  const b = encodeOne((w) => encodeFpm(w, msgpackStr('5'), 0, 9, 0, ZERO_FPM));
  const d = decode(b);
  assert.equal(d.wall_time, 0);
  assert.equal(afterKey(b, 'wall_time'), 0xcb);
  assert.equal(d.counter_id, 9);
  for (const v of Object.values(d.scheduled_requests)) assert.equal(v, 0);
  for (const v of Object.values(d.queued_requests)) assert.equal(v, 0);
});

test('wire - ActiveLoad carries the worker loads as uint64 and leaves active_prefill_tokens nil', () => {
  const { hi, lo } = splitU64(WORKER);
  const b = encodeOne((w) => encodeActiveLoad(w, hi, lo, 4, 120, 130));
  const d = decode(b);
  assert.deepEqual(d, { worker_id: WORKER, dp_rank: 4, active_decode_blocks: 120n, active_prefill_tokens: null, kv_used_blocks: 130n });
  assert.deepEqual(Object.keys(d), ['worker_id', 'dp_rank', 'active_decode_blocks', 'active_prefill_tokens', 'kv_used_blocks']);
  assert.equal(afterKey(b, 'active_prefill_tokens'), 0xc0, 'nil, like Option::None from rmp-serde');
  assert.ok(contains(b, u64Bytes(120n)) && contains(b, u64Bytes(130n)));
});

test('wire - the envelope is an ordered map with uint64 ids and a bin payload', () => {
  const payload = new Uint8Array(300).map((_, i) => i & 0xff);
  const topic = msgpackStr('kv-events');
  const w = new MsgpackWriter(envelopeOverhead(topic) + payload.length);
  const { hi, lo } = splitU64(WORKER);
  encodeEnvelope(w, topic, hi, lo, 0, 1_764_000_000_123, payload, 0, payload.length);
  assert.ok(w.pos <= envelopeOverhead(topic) + payload.length, 'envelopeOverhead is an upper bound');
  const b = w.buf.slice(0, w.pos);
  const d = decode(b);
  assert.deepEqual(Object.keys(d), ['topic', 'publisher_id', 'sequence', 'published_at', 'payload']);
  assert.equal(d.topic, 'kv-events');
  assert.equal(d.publisher_id, WORKER);
  assert.equal(d.sequence, 0n);
  assert.equal(d.published_at, 1_764_000_000_123n);
  assert.ok(d.payload instanceof Uint8Array, 'payload is msgpack bin');
  assert.deepEqual([...d.payload], [...payload]);
  assert.ok(contains(b, u64Bytes(0n)) && contains(b, u64Bytes(1_764_000_000_123n)));
  assert.equal(afterKey(b, 'payload'), 0xc5, 'bin16 for a 300-byte payload');
});

test('wire - an envelope template patched with sequence and time equals the encoded envelope head', () => {
  const topic = msgpackStr('forward-pass-metrics');
  const { hi, lo } = splitU64(WORKER);
  const seq = 2 ** 40 + 3;
  const now = 1_764_000_000_999;
  const payload = new Uint8Array(10).fill(7);
  const w = new MsgpackWriter(256);
  encodeEnvelope(w, topic, hi, lo, seq, now, payload, 0, payload.length);
  const expected = w.buf.slice(0, w.pos);
  const t = envelopeTemplate(topic, hi, lo);
  const out = new Uint8Array(t.bytes.length + 2 + payload.length);
  out.set(t.bytes, 0);
  const v = new DataView(out.buffer);
  v.setUint32(t.seqOffset, Math.floor(seq / 2 ** 32));
  v.setUint32(t.seqOffset + 4, seq >>> 0);
  v.setUint32(t.publishedAtOffset, Math.floor(now / 2 ** 32));
  v.setUint32(t.publishedAtOffset + 4, now >>> 0);
  out[t.bytes.length] = 0xc4;
  out[t.bytes.length + 1] = payload.length;
  out.set(payload, t.bytes.length + 2);
  assert.deepEqual([...out], [...expected]);
});

const VLOG_SPECS: EvSpec[] = [
  { kind: 'stored', parent: null, blocks: [{ seq: H1 }, { seq: H2 }] },
  { kind: 'stored', parent: H2, blocks: [{ seq: T1 }] },
  { kind: 'removed', blocks: [{ seq: H1 }] },
  { kind: 'cleared' },
];

test('wire - vLLM KVEventBatch array encoding is positional with the tag first', () => {
  const log = makeLog(VLOG_SPECS, 2, 0);
  const b = encodeOne((w) => encodeVllmBatch(w, 'array', 1751234567.25, 3, log));
  const d = decode(b);
  const tokens0 = [...log.tokens.subarray(0, 4)];
  const tokens1 = [...log.tokens.subarray(4, 6)];
  assert.deepEqual(d, [
    1751234567.25,
    [
      ['BlockStored', [H1, H2], null, tokens0, 2, null, 'GPU', null, [null, null], 0, 'full_attention'],
      ['BlockStored', [T1], H2, tokens1, 2, null, 'GPU', null, [null], 0, 'full_attention'],
      ['BlockRemoved', [H1], 'GPU', 0],
      ['AllBlocksCleared'],
    ],
    3,
  ]);
  assert.equal(b[1], 0xcb, 'ts is float64');
  assert.ok(contains(b, u64Bytes(H2)), 'hashes are uint64');
});

test('wire - vLLM >= 0.24 map encoding: positional batch, tagged-map events in declaration order', () => {
  const log = makeLog(VLOG_SPECS, 2, 0);
  const d = decode(encodeOne((w) => encodeVllmBatch(w, 'map', 10.5, 0, log)));
  assert.ok(Array.isArray(d) && d.length === 3, 'EventBatch stays array_like');
  assert.equal(d[0], 10.5);
  assert.equal(d[2], 0);
  const events = d[1];
  assert.deepEqual(Object.keys(events[0]), ['type', 'block_hashes', 'parent_block_hash', 'token_ids', 'block_size', 'lora_id', 'medium', 'lora_name', 'extra_keys', 'group_idx', 'kv_cache_spec_kind']);
  assert.deepEqual(events[0], {
    type: 'BlockStored',
    block_hashes: [H1, H2],
    parent_block_hash: null,
    token_ids: [...log.tokens.subarray(0, 4)],
    block_size: 2,
    lora_id: null,
    medium: 'GPU',
    lora_name: null,
    extra_keys: [null, null],
    group_idx: 0,
    kv_cache_spec_kind: 'full_attention',
  });
  assert.equal(events[1].parent_block_hash, H2);
  assert.deepEqual(events[2], { type: 'BlockRemoved', block_hashes: [H1], medium: 'GPU', group_idx: 0 });
  assert.deepEqual(Object.keys(events[2]), ['type', 'block_hashes', 'medium', 'group_idx']);
  assert.deepEqual(events[3], { type: 'AllBlocksCleared' });
});

test('wire - Dynamo batches split at 128 events or 8192 blocks; a bigger event travels alone', () => {
  const one = (n: number): EvSpec => ({ kind: 'removed', blocks: Array.from({ length: n }, (_, i) => ({ seq: BigInt(i + 1) })) });
  const ends = (specs: EvSpec[]): number[] => {
    const log = makeLog(specs, 1, 0);
    const out: number[] = [];
    for (let i = 0; i < log.count; ) {
      i = dynamoBatchEnd(log, i);
      out.push(i);
    }
    return out;
  };
  assert.deepEqual(ends(Array.from({ length: 300 }, () => ({ kind: 'cleared' }) as EvSpec)), [128, 256, 300]);
  assert.deepEqual(ends([one(8000), one(192), one(1)]), [2, 3], '8000 + 192 = 8192 fits, the next block does not');
  assert.deepEqual(ends([one(5), one(9000), one(5)]), [1, 2, 3], 'an event above the cap is emitted intact, alone');
});

test('topics - endpoint scope: current scopes every feed, legacy only kv_metrics', () => {
  assert.equal(buildSubject('dynamo', 'backend', 'kv-events', 'generate'), 'namespace.dynamo.component.backend.endpoint.generate.kv-events');
  assert.deepEqual(
    (['kv-events', 'forward-pass-metrics', 'kv_metrics'] as const).map((t) => [endpointScoped(t, 'current'), endpointScoped(t, 'legacy')]),
    [[true, false], [true, false], [true, true]],
  );
  assert.throws(() => buildSubject('dynamo', 'backend', 'kv-events', 'gen.erate'), InvalidConfigError);
});

test('topics - subjects follow namespace.{ns}.component.{component}.{topic} and reject bad tokens', () => {
  assert.equal(buildSubject('dynamo', 'mocker', 'forward-pass-metrics'), 'namespace.dynamo.component.mocker.forward-pass-metrics');
  assert.throws(() => buildSubject('a b', 'mocker', 'kv-events'), InvalidConfigError);
  assert.throws(() => buildSubject('dynamo', 'x.y', 'kv-events'), InvalidConfigError);
  assert.throws(() => buildSubject('', 'mocker', 'kv-events'), InvalidConfigError);
  assert.throws(() => buildSubject('dyn', 'mock*', 'kv-events'), InvalidConfigError);
});

function readAll(ring: SpscRing): Array<{ code: number; payload: any }> {
  const dst = new Uint8Array(ring.maxRecordBytes);
  const out: Array<{ code: number; payload: any }> = [];
  for (let n = ring.read(dst); n >= 0; n = ring.read(dst)) out.push({ code: dst[0]!, payload: decode(dst.subarray(TAG_BYTES, n)) });
  return out;
}

test('rank-events - the writer frames records with a topic code and numbers FPM counter_id from 1', () => {
  const ring = new SpscRing(SpscRing.allocate(1 << 16));
  const wr = new RankEventWriter(ring, { workerId: WORKER, dpRank: 1, kvEventsFormat: 'both', vllmEncoding: 'map' });
  const log = makeLog(VLOG_SPECS, 2, 40);
  wr.writeKvEvents(log, 2500);
  wr.writeFpm(FPM, 0.02);
  wr.writeHeartbeat();
  wr.writeLoad(10, 30);
  const recs = readAll(ring);
  assert.deepEqual(recs.map((r) => r.code), [TopicCode.kvEvents, TopicCode.kvEventsVllm, TopicCode.forwardPassMetrics, TopicCode.forwardPassMetrics, TopicCode.kvMetrics]);
  assert.ok(Array.isArray(recs[0]!.payload), 'current Dynamo wire: one array of RouterEvents per pass');
  assert.deepEqual(
    recs[0]!.payload.map((e: any) => e.event.event_id),
    [40n, 41n, 42n, 43n],
    'event ids from the log, in order',
  );
  assert.equal(recs[1]!.payload[0], 2.5, 'vLLM batch ts in seconds');
  assert.equal(recs[1]!.payload[1].length, 4);
  assert.equal(recs[1]!.payload[2], 1, 'data_parallel_rank');
  assert.equal(recs[2]!.payload.counter_id, 1, 'first FPM has counter_id 1');
  assert.equal(recs[2]!.payload.worker_id, WORKER.toString());
  assert.equal(recs[2]!.payload.wall_time, 0.02);
  assert.equal(recs[3]!.payload.counter_id, 2, 'heartbeat continues the counter');
  assert.equal(recs[3]!.payload.wall_time, 0);
  assert.equal(recs[3]!.payload.scheduled_requests.num_decode_requests, 0);
  assert.deepEqual(recs[4]!.payload, { worker_id: WORKER, dp_rank: 1, active_decode_blocks: 10n, active_prefill_tokens: null, kv_used_blocks: 30n });
  assert.equal(wr.droppedRecords, 0);
});

test('rank-events - legacy wire writes one RouterEvent map per engine event', () => {
  const ring = new SpscRing(SpscRing.allocate(1 << 16));
  new RankEventWriter(ring, { workerId: WORKER, dpRank: 0, kvEventsFormat: 'dynamo', vllmEncoding: 'map', dynamoWire: 'legacy' }).writeKvEvents(makeLog(VLOG_SPECS, 2, 7), 0);
  const recs = readAll(ring);
  assert.deepEqual(recs.map((r) => r.payload.event.event_id), [7n, 8n, 9n, 10n]);
});

test('rank-events - ids kept in an id store continue across writers (a restarted rank)', () => {
  const cells = new Float64Array(4);
  const store = { cells, nextEventIdSlot: 2, counterIdSlot: 3 };
  const ring = new SpscRing(SpscRing.allocate(1 << 16));
  const first = new RankEventWriter(ring, { workerId: 1n, dpRank: 0, kvEventsFormat: 'dynamo', vllmEncoding: 'map', idStore: store });
  first.writeKvEvents(makeLog(VLOG_SPECS, 2, 0), 0);
  first.writeFpm(FPM, 0.01);
  first.writeKvEvents(makeLog([{ kind: 'removed', blocks: [{ seq: H1 }] }], 2, 4), 0);
  assert.deepEqual([cells[2], cells[3]], [5, 1]);
  // The engine of a new thread numbers its events from 0 again; the writer continues the ids.
  const second = new RankEventWriter(ring, { workerId: 1n, dpRank: 0, kvEventsFormat: 'dynamo', vllmEncoding: 'map', idStore: store });
  second.writeKvEvents(makeLog([{ kind: 'cleared' }, { kind: 'removed', blocks: [{ seq: H2 }] }], 2, 0), 0);
  second.writeHeartbeat();
  const recs = readAll(ring);
  const ids = recs.filter((r) => r.code === TopicCode.kvEvents).flatMap((r) => r.payload.map((e: any) => Number(e.event.event_id)));
  assert.deepEqual(ids, [0, 1, 2, 3, 4, 5, 6]);
  const counters = recs.filter((r) => r.code === TopicCode.forwardPassMetrics).map((r) => r.payload.counter_id);
  assert.deepEqual(counters, [1, 2]);
  assert.equal(second.nextEventId, 7);
});

test('rank-events - the dynamo format writes no vLLM batch and the vllm format no RouterEvents', () => {
  const log = makeLog(VLOG_SPECS, 2, 0);
  const r1 = new SpscRing(SpscRing.allocate(1 << 14));
  new RankEventWriter(r1, { workerId: 1n, dpRank: 0, kvEventsFormat: 'dynamo', vllmEncoding: 'array' }).writeKvEvents(log, 0);
  assert.deepEqual(readAll(r1).map((r) => r.code), [TopicCode.kvEvents]);
  const r2 = new SpscRing(SpscRing.allocate(1 << 14));
  new RankEventWriter(r2, { workerId: 1n, dpRank: 0, kvEventsFormat: 'vllm', vllmEncoding: 'array' }).writeKvEvents(log, 0);
  const recs = readAll(r2);
  assert.deepEqual(recs.map((r) => r.code), [TopicCode.kvEventsVllm]);
  assert.ok(Array.isArray(recs[0]!.payload), 'array encoding');
});

test('rank-events - a full ring makes the writer drop and count, visible in the ring header', () => {
  const sab = SpscRing.allocate(256);
  const ring = new SpscRing(sab);
  const wr = new RankEventWriter(ring, { workerId: 1n, dpRank: 0, kvEventsFormat: 'dynamo', vllmEncoding: 'array', blockTimeoutMs: 0 });
  let written = 0;
  for (let i = 0; i < 10; i++) {
    wr.writeLoad(i, i);
    written++;
  }
  assert.ok(wr.droppedRecords > 0, 'some loads did not fit');
  assert.equal(new SpscRing(sab).droppedRecords(), wr.droppedRecords);
  assert.equal(readAll(ring).length + wr.droppedRecords, written, 'every record is either in the ring or counted');
});
