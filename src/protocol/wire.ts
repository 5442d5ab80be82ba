/**
 * Hand-rolled MessagePack encoders for the fixed event-plane schemas (reference/node-notes.md §3:
 * ~8x faster than a generic packer and allocation-free). Everything writes into a reusable
 * MsgpackWriter; the bytes are borrowed until the next encode into the same writer.
 *
 * Integer widths: every field that is a u64 upstream (worker ids, event ids, block hashes, the
 * envelope's publisher_id / sequence / published_at, ActiveLoad block counts) is written as
 * uint64 (0xcf) whatever its value, so Rust/Python consumers never see a float or a
 * width-dependent type. Other integers use the smallest msgpack form, as rmp-serde and msgspec
 * do. Floats are float64 (0xcb). u64 values arrive as (hi, lo) u32 halves, or as a JS number
 * below 2^53 for counters.
 *
 * Schemas: see src/protocol/README.md (engine-spec §6, §8, §9, §11; interfaces §2).
 */
import type { FpmSnapshot, KvEventLog } from '../engine/types.js';
import { KvEventKind, emptyFpmSnapshot } from '../engine/types.js';

const TEXT = new TextEncoder();
const TWO32 = 4294967296;

/** Pre-encoded msgpack str (fixstr / str8 / str16) for a constant key or value. */
export function msgpackStr(s: string): Uint8Array {
  const utf8 = TEXT.encode(s);
  const n = utf8.length;
  let head: number[];
  if (n < 32) head = [0xa0 | n];
  else if (n < 256) head = [0xd9, n];
  else if (n < 65536) head = [0xda, n >>> 8, n & 0xff];
  else throw new RangeError(`msgpackStr: constant string of ${n} bytes is too long`);
  const out = new Uint8Array(head.length + n);
  out.set(head, 0);
  out.set(utf8, head.length);
  return out;
}

/** Growable write cursor. `buf` may be replaced by a larger array when it grows. */
export class MsgpackWriter {
  buf: Uint8Array;
  view: DataView;
  pos: number;

  constructor(initialBytes = 4096) {
    this.buf = new Uint8Array(initialBytes);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  /** Makes room for n more bytes (amortised doubling; the only allocation site). */
  ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos), 0);
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** Writes into a caller-owned array from `pos` (e.g. an outbound arena). No growth past its end. */
  useBuffer(buf: Uint8Array, pos: number): void {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = pos;
  }

  u8(b: number): void {
    this.buf[this.pos++] = b;
  }

  raw(bytes: Uint8Array): void {
    const b = this.buf;
    let p = this.pos;
    for (let i = 0; i < bytes.length; i++) b[p++] = bytes[i]!;
    this.pos = p;
  }

  rawRange(src: Uint8Array, start: number, len: number): void {
    if (len > 64) {
      this.buf.set(src.subarray(start, start + len), this.pos);
      this.pos += len;
      return;
    }
    const b = this.buf;
    let p = this.pos;
    for (let i = 0; i < len; i++) b[p++] = src[start + i]!;
    this.pos = p;
  }

  nil(): void {
    this.buf[this.pos++] = 0xc0;
  }

  /** Non-negative integer below 2^53, smallest msgpack form. */
  uint(n: number): void {
    if (!(n >= 0 && Number.isInteger(n) && n <= Number.MAX_SAFE_INTEGER)) {
      throw new RangeError(`msgpack uint: ${n} is not a non-negative safe integer`);
    }
    const b = this.buf;
    if (n < 128) {
      b[this.pos++] = n;
    } else if (n < 256) {
      b[this.pos++] = 0xcc;
      b[this.pos++] = n;
    } else if (n < 65536) {
      b[this.pos++] = 0xcd;
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    } else if (n < TWO32) {
      b[this.pos++] = 0xce;
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    } else {
      this.u64(Math.floor(n / TWO32), n >>> 0);
    }
  }

  /** uint64 (0xcf) from two u32 halves. */
  u64(hi: number, lo: number): void {
    this.buf[this.pos++] = 0xcf;
    this.view.setUint32(this.pos, hi);
    this.view.setUint32(this.pos + 4, lo);
    this.pos += 8;
  }

  /** uint64 (0xcf) from a non-negative safe integer. */
  u64n(n: number): void {
    if (!(n >= 0 && Number.isInteger(n) && n <= Number.MAX_SAFE_INTEGER)) {
      throw new RangeError(`msgpack u64: ${n} is not a non-negative safe integer`);
    }
    this.u64(Math.floor(n / TWO32), n >>> 0);
  }

  f64(x: number): void {
    this.buf[this.pos++] = 0xcb;
    this.view.setFloat64(this.pos, x);
    this.pos += 8;
  }

  mapHeader(n: number): void {
    if (n < 16) {
      this.buf[this.pos++] = 0x80 | n;
    } else {
      this.buf[this.pos++] = 0xde;
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    }
  }

  arrayHeader(n: number): void {
    if (n < 16) {
      this.buf[this.pos++] = 0x90 | n;
    } else if (n < 65536) {
      this.buf[this.pos++] = 0xdc;
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    } else {
      this.buf[this.pos++] = 0xdd;
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    }
  }

  binHeader(n: number): void {
    if (n < 256) {
      this.buf[this.pos++] = 0xc4;
      this.buf[this.pos++] = n;
    } else if (n < 65536) {
      this.buf[this.pos++] = 0xc5;
      this.view.setUint16(this.pos, n);
      this.pos += 2;
    } else {
      this.buf[this.pos++] = 0xc6;
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    }
  }
}

/** Splits a u64 bigint into the (hi, lo) u32 halves the encoders take. */
export function splitU64(v: bigint): { hi: number; lo: number } {
  if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`u64 out of range: ${v}`);
  return { hi: Number(v >> 32n), lo: Number(v & 0xffffffffn) };
}

// ---------------------------------------------------------------------------------------------
// Keys and constant values, encoded once.

const K = {
  worker_id: msgpackStr('worker_id'),
  storage_tier: msgpackStr('storage_tier'),
  event: msgpackStr('event'),
  event_id: msgpackStr('event_id'),
  data: msgpackStr('data'),
  dp_rank: msgpackStr('dp_rank'),
  stored: msgpackStr('stored'),
  removed: msgpackStr('removed'),
  parent_hash: msgpackStr('parent_hash'),
  blocks: msgpackStr('blocks'),
  block_hash: msgpackStr('block_hash'),
  tokens_hash: msgpackStr('tokens_hash'),
  mm_extra_info: msgpackStr('mm_extra_info'),
  block_hashes: msgpackStr('block_hashes'),
  version: msgpackStr('version'),
  counter_id: msgpackStr('counter_id'),
  wall_time: msgpackStr('wall_time'),
  scheduled_requests: msgpackStr('scheduled_requests'),
  queued_requests: msgpackStr('queued_requests'),
  num_prefill_requests: msgpackStr('num_prefill_requests'),
  sum_prefill_tokens: msgpackStr('sum_prefill_tokens'),
  var_prefill_length: msgpackStr('var_prefill_length'),
  sum_prefill_kv_tokens: msgpackStr('sum_prefill_kv_tokens'),
  num_decode_requests: msgpackStr('num_decode_requests'),
  sum_decode_kv_tokens: msgpackStr('sum_decode_kv_tokens'),
  var_decode_kv_tokens: msgpackStr('var_decode_kv_tokens'),
  active_decode_blocks: msgpackStr('active_decode_blocks'),
  active_prefill_tokens: msgpackStr('active_prefill_tokens'),
  kv_used_blocks: msgpackStr('kv_used_blocks'),
  topic: msgpackStr('topic'),
  publisher_id: msgpackStr('publisher_id'),
  sequence: msgpackStr('sequence'),
  published_at: msgpackStr('published_at'),
  payload: msgpackStr('payload'),
  type: msgpackStr('type'),
  parent_block_hash: msgpackStr('parent_block_hash'),
  token_ids: msgpackStr('token_ids'),
  block_size: msgpackStr('block_size'),
  lora_id: msgpackStr('lora_id'),
  medium: msgpackStr('medium'),
  lora_name: msgpackStr('lora_name'),
  extra_keys: msgpackStr('extra_keys'),
  group_idx: msgpackStr('group_idx'),
  kv_cache_spec_kind: msgpackStr('kv_cache_spec_kind'),
} as const;

const V = {
  device: msgpackStr('device'),
  cleared: msgpackStr('cleared'),
  BlockStored: msgpackStr('BlockStored'),
  BlockRemoved: msgpackStr('BlockRemoved'),
  AllBlocksCleared: msgpackStr('AllBlocksCleared'),
  GPU: msgpackStr('GPU'),
  full_attention: msgpackStr('full_attention'),
} as const;

/** Bytes of fixed overhead (keys, headers) generously covered for one RouterEvent / vLLM event. */
const EVENT_OVERHEAD = 256;

// ---------------------------------------------------------------------------------------------
// Dynamo RouterEvent (engine-spec §6.1)

/**
 * RouterEvent for event i of the log:
 * {worker_id: u64, storage_tier: "device", event: {event_id: u64, data, dp_rank: u32}}, data =
 * {"stored": {parent_hash: u64|nil, blocks: [{block_hash, tokens_hash, mm_extra_info: nil}]}} |
 * {"removed": {block_hashes: [u64]}} | "cleared". Field order follows the Rust structs.
 * event_id = eventIdBase + log.firstEventId + i: the base carries a rank's ids across a restart
 * of its engine (RankEventWriter keeps it in shared memory).
 */
export function encodeRouterEvent(w: MsgpackWriter, workerHi: number, workerLo: number, dpRank: number, log: KvEventLog, i: number, eventIdBase = 0): void {
  const kind = log.kind[i]!;
  const start = log.hashStart[i]!;
  const count = kind === KvEventKind.cleared ? 0 : log.hashCount[i]!;
  w.ensure(EVENT_OVERHEAD + count * 64);
  w.mapHeader(3);
  w.raw(K.worker_id);
  w.u64(workerHi, workerLo);
  w.raw(K.storage_tier);
  w.raw(V.device);
  w.raw(K.event);
  w.mapHeader(3);
  w.raw(K.event_id);
  w.u64n(eventIdBase + log.firstEventId + i);
  w.raw(K.data);
  if (kind === KvEventKind.stored) {
    w.mapHeader(1);
    w.raw(K.stored);
    w.mapHeader(2);
    w.raw(K.parent_hash);
    if (log.hasParent[i] !== 0) w.u64(log.parentHi[i]!, log.parentLo[i]!);
    else w.nil();
    w.raw(K.blocks);
    w.arrayHeader(count);
    for (let j = start; j < start + count; j++) {
      w.mapHeader(3);
      w.raw(K.block_hash);
      w.u64(log.seqHashHi[j]!, log.seqHashLo[j]!);
      w.raw(K.tokens_hash);
      w.u64(log.tokHashHi[j]!, log.tokHashLo[j]!);
      w.raw(K.mm_extra_info);
      w.nil();
    }
  } else if (kind === KvEventKind.removed) {
    w.mapHeader(1);
    w.raw(K.removed);
    w.mapHeader(1);
    w.raw(K.block_hashes);
    w.arrayHeader(count);
    for (let j = start; j < start + count; j++) w.u64(log.seqHashHi[j]!, log.seqHashLo[j]!);
  } else if (kind === KvEventKind.cleared) {
    w.raw(V.cleared);
  } else {
    throw new RangeError(`encodeRouterEvent: unknown KV event kind ${kind} at index ${i}`);
  }
  w.raw(K.dp_rank);
  w.uint(dpRank);
}

/**
 * Current Dynamo (ai-dynamo/dynamo PR #11776, lib/llm/src/kv_router/publisher/sinks.rs
 * `event_plane_event_batches`): a pass's RouterEvents go out as msgpack arrays, cut at event
 * boundaries so that no batch holds more than 128 events or 8192 blocks (stored: blocks,
 * removed: hashes, cleared: 0); a single event above the block cap travels alone, intact.
 */
export const DYNAMO_BATCH_MAX_EVENTS = 128;
export const DYNAMO_BATCH_MAX_BLOCKS = 8192;

/** End (exclusive) of the batch that starts at event `start` of the log. */
export function dynamoBatchEnd(log: KvEventLog, start: number): number {
  let end = start;
  let blocks = 0;
  while (end < log.count) {
    const b = log.kind[end] === KvEventKind.cleared ? 0 : log.hashCount[end]!;
    const n = end - start;
    if (n > 0 && (n >= DYNAMO_BATCH_MAX_EVENTS || blocks + b > DYNAMO_BATCH_MAX_BLOCKS)) break;
    blocks += b;
    end++;
  }
  return end;
}

// ---------------------------------------------------------------------------------------------
// Forward-pass metrics v1 (engine-spec §8.1/8.2)

/**
 * FPM v1 named map: {version: 1, worker_id: str, dp_rank, counter_id, wall_time: f64,
 * scheduled_requests{7}, queued_requests{6}}. `workerIdStr` is the pre-encoded msgpack str of
 * the decimal worker id (msgpackStr(String(id))). Counts are integers, variances f64.
 */
export function encodeFpm(w: MsgpackWriter, workerIdStr: Uint8Array, dpRank: number, counterId: number, wallTimeS: number, s: FpmSnapshot): void {
  w.ensure(512 + workerIdStr.length);
  w.mapHeader(7);
  w.raw(K.version);
  w.uint(1);
  w.raw(K.worker_id);
  w.raw(workerIdStr);
  w.raw(K.dp_rank);
  w.uint(dpRank);
  w.raw(K.counter_id);
  w.uint(counterId);
  w.raw(K.wall_time);
  w.f64(wallTimeS);
  w.raw(K.scheduled_requests);
  w.mapHeader(7);
  w.raw(K.num_prefill_requests);
  w.uint(s.numPrefillRequests);
  w.raw(K.sum_prefill_tokens);
  w.uint(s.sumPrefillTokens);
  w.raw(K.var_prefill_length);
  w.f64(s.varPrefillLength);
  w.raw(K.sum_prefill_kv_tokens);
  w.uint(s.sumPrefillKvTokens);
  w.raw(K.num_decode_requests);
  w.uint(s.numDecodeRequests);
  w.raw(K.sum_decode_kv_tokens);
  w.uint(s.sumDecodeKvTokens);
  w.raw(K.var_decode_kv_tokens);
  w.f64(s.varDecodeKvTokens);
  w.raw(K.queued_requests);
  w.mapHeader(6);
  w.raw(K.num_prefill_requests);
  w.uint(s.numQueuedPrefill);
  w.raw(K.sum_prefill_tokens);
  w.uint(s.sumQueuedPrefillTokens);
  w.raw(K.var_prefill_length);
  w.f64(s.varQueuedPrefillLength);
  w.raw(K.num_decode_requests);
  w.uint(s.numQueuedDecode);
  w.raw(K.sum_decode_kv_tokens);
  w.uint(s.sumQueuedDecodeKvTokens);
  w.raw(K.var_decode_kv_tokens);
  w.f64(s.varQueuedDecodeKvTokens);
}

/** The all-zero snapshot an idle rank sends as its FPM heartbeat (with wall_time 0). */
export const ZERO_FPM: Readonly<FpmSnapshot> = Object.freeze(emptyFpmSnapshot());

// ---------------------------------------------------------------------------------------------
// ActiveLoad for kv_metrics (engine-spec §9)

/**
 * {worker_id: u64, dp_rank: u32, active_decode_blocks: u64, active_prefill_tokens: nil,
 * kv_used_blocks: u64} (ActiveLoad in lib/kv-router/src/protocols.rs; all three loads are
 * Option<u64>). Like upstream workers, active_prefill_tokens stays nil: the router's own
 * scheduler publishes that field on the same topic.
 */
export function encodeActiveLoad(w: MsgpackWriter, workerHi: number, workerLo: number, dpRank: number, activeDecodeBlocks: number, kvUsedBlocks: number): void {
  w.ensure(160);
  w.mapHeader(5);
  w.raw(K.worker_id);
  w.u64(workerHi, workerLo);
  w.raw(K.dp_rank);
  w.uint(dpRank);
  w.raw(K.active_decode_blocks);
  w.u64n(activeDecodeBlocks);
  w.raw(K.active_prefill_tokens);
  w.nil();
  w.raw(K.kv_used_blocks);
  w.u64n(kvUsedBlocks);
}

// ---------------------------------------------------------------------------------------------
// Event-plane envelope (engine-spec §11)

/** Upper bound of the envelope bytes around a payload, for sizing an outbound buffer. */
export function envelopeOverhead(topicStr: Uint8Array): number {
  // map + 5 keys (46 B) + 3 uint64 (27 B) + bin32 header (5 B), rounded up.
  return 88 + topicStr.length;
}

/**
 * {topic: str, publisher_id: u64, sequence: u64, published_at: u64 ms, payload: bin}, in this
 * order. `topicStr` is pre-encoded (msgpackStr). The payload is copied from src[start, start+len).
 * Does not grow the writer: the caller reserves envelopeOverhead(topicStr) + len bytes.
 */
export function encodeEnvelope(
  w: MsgpackWriter,
  topicStr: Uint8Array,
  publisherHi: number,
  publisherLo: number,
  sequence: number,
  publishedAtMs: number,
  src: Uint8Array,
  start: number,
  len: number,
): void {
  encodeEnvelopeHead(w, topicStr, publisherHi, publisherLo, sequence, publishedAtMs, len);
  w.rawRange(src, start, len);
}

/**
 * Everything of the envelope up to and including the payload's bin header; the caller then
 * places exactly payloadLen payload bytes at w.pos (e.g. straight out of a ring) and advances it.
 */
export function encodeEnvelopeHead(
  w: MsgpackWriter,
  topicStr: Uint8Array,
  publisherHi: number,
  publisherLo: number,
  sequence: number,
  publishedAtMs: number,
  payloadLen: number,
): void {
  w.mapHeader(5);
  w.raw(K.topic);
  w.raw(topicStr);
  w.raw(K.publisher_id);
  w.u64(publisherHi, publisherLo);
  w.raw(K.sequence);
  w.u64n(sequence);
  w.raw(K.published_at);
  w.u64n(publishedAtMs);
  w.raw(K.payload);
  w.binHeader(payloadLen);
}

/**
 * The constant part of every envelope of one (publisher, topic): all bytes up to the payload's
 * bin header, with the sequence and published_at slots at seqOffset / publishedAtOffset (8 bytes
 * each, big-endian) to be patched per message. Copying it and patching two u64s produces the
 * same bytes as encodeEnvelopeHead.
 */
export interface EnvelopeTemplate {
  bytes: Uint8Array;
  seqOffset: number;
  publishedAtOffset: number;
}

export function envelopeTemplate(topicStr: Uint8Array, publisherHi: number, publisherLo: number): EnvelopeTemplate {
  const w = new MsgpackWriter(envelopeOverhead(topicStr));
  w.mapHeader(5);
  w.raw(K.topic);
  w.raw(topicStr);
  w.raw(K.publisher_id);
  w.u64(publisherHi, publisherLo);
  w.raw(K.sequence);
  w.u8(0xcf);
  const seqOffset = w.pos;
  w.pos += 8;
  w.raw(K.published_at);
  w.u8(0xcf);
  const publishedAtOffset = w.pos;
  w.pos += 8;
  w.raw(K.payload);
  return { bytes: w.buf.slice(0, w.pos), seqOffset, publishedAtOffset };
}

// ---------------------------------------------------------------------------------------------
// vLLM-native KVEventBatch (vllm-project/vllm vllm/distributed/kv_events.py)

export type VllmEncoding = 'array' | 'map';

/**
 * KVEventBatch(ts, events, data_parallel_rank) for all events of the log. The batch is
 * positional in every vLLM (EventBatch keeps array_like=True); the events are
 *   map   (vLLM >= 0.24, PR #42892 dropped array_like from the event structs): msgspec tagged
 *         maps, tag first, then the fields in declaration order, omit_defaults=True —
 *         {type: "BlockStored", block_hashes, parent_block_hash, token_ids, block_size,
 *          lora_id: nil, medium: "GPU", lora_name: nil, extra_keys: [nil per block],
 *          group_idx: 0, kv_cache_spec_kind: "full_attention"}
 *       | {type: "BlockRemoved", block_hashes, medium: "GPU", group_idx: 0}
 *       | {type: "AllBlocksCleared"}
 *         (kv_cache_spec_sliding_window and locality default to None and are omitted, as vLLM
 *         omits them for a full-attention group)
 *   array (vLLM <= 0.23): the same values positionally, tag first.
 * Block hashes and parents are the sequence hashes; the stored event carries the token ids of
 * its blocks (n_blocks x block_size).
 */
export function encodeVllmBatch(w: MsgpackWriter, encoding: VllmEncoding, tsS: number, dpRank: number, log: KvEventLog): void {
  const n = log.count;
  const asMap = encoding === 'map';
  let bound = 64;
  for (let i = 0; i < n; i++) {
    const c = log.kind[i] === KvEventKind.cleared ? 0 : log.hashCount[i]!;
    bound += EVENT_OVERHEAD + c * 10 + (log.kind[i] === KvEventKind.stored ? c * log.blockSize * 5 : 0);
  }
  w.ensure(bound);
  w.arrayHeader(3);
  w.f64(tsS);
  w.arrayHeader(n);
  for (let i = 0; i < n; i++) {
    const kind = log.kind[i]!;
    const start = log.hashStart[i]!;
    if (kind === KvEventKind.stored) {
      const count = log.hashCount[i]!;
      if (asMap) {
        w.mapHeader(11);
        w.raw(K.type);
      } else {
        w.arrayHeader(11);
      }
      w.raw(V.BlockStored);
      if (asMap) w.raw(K.block_hashes);
      w.arrayHeader(count);
      for (let j = start; j < start + count; j++) w.u64(log.seqHashHi[j]!, log.seqHashLo[j]!);
      if (asMap) w.raw(K.parent_block_hash);
      if (log.hasParent[i] !== 0) w.u64(log.parentHi[i]!, log.parentLo[i]!);
      else w.nil();
      if (asMap) w.raw(K.token_ids);
      const t0 = log.tokenStart[i]!;
      const nt = count * log.blockSize;
      w.arrayHeader(nt);
      for (let t = t0; t < t0 + nt; t++) w.uint(log.tokens[t]!);
      if (asMap) w.raw(K.block_size);
      w.uint(log.blockSize);
      if (asMap) w.raw(K.lora_id);
      w.nil();
      if (asMap) w.raw(K.medium);
      w.raw(V.GPU);
      if (asMap) w.raw(K.lora_name);
      w.nil();
      if (asMap) w.raw(K.extra_keys);
      w.arrayHeader(count);
      for (let j = 0; j < count; j++) w.nil();
      if (asMap) w.raw(K.group_idx);
      w.uint(0);
      if (asMap) w.raw(K.kv_cache_spec_kind);
      w.raw(V.full_attention);
    } else if (kind === KvEventKind.removed) {
      const count = log.hashCount[i]!;
      if (asMap) {
        w.mapHeader(4);
        w.raw(K.type);
      } else {
        w.arrayHeader(4);
      }
      w.raw(V.BlockRemoved);
      if (asMap) w.raw(K.block_hashes);
      w.arrayHeader(count);
      for (let j = start; j < start + count; j++) w.u64(log.seqHashHi[j]!, log.seqHashLo[j]!);
      if (asMap) w.raw(K.medium);
      w.raw(V.GPU);
      if (asMap) w.raw(K.group_idx);
      w.uint(0);
    } else if (kind === KvEventKind.cleared) {
      if (asMap) {
        w.mapHeader(1);
        w.raw(K.type);
      } else {
        w.arrayHeader(1);
      }
      w.raw(V.AllBlocksCleared);
    } else {
      throw new RangeError(`encodeVllmBatch: unknown KV event kind ${kind} at index ${i}`);
    }
  }
  w.uint(dpRank);
}
