/**
 * Rank-side event writer: encodes KV events, forward-pass metrics and load metrics into the
 * rank's SPSC ring for the shared publisher thread. Runs on the rank worker thread.
 *
 *   ring record = [topic code (1 B) | 3 zero bytes | msgpack payload]   (TAG_BYTES header: the
 *                 payload stays 4-byte aligned, so the publisher copies it out as words)
 *
 * The publisher adds the envelope, the per-publisher sequence and the subject; the rank only
 * stamps what upstream stamps per rank: event ids, the FPM counter_id (per rank, first message 1)
 * and dp_rank.
 *
 * Ids outlive the rank thread: the next event id and the last counter_id live in `idStore`
 * (a Float64Array over the coordinator's per-rank counters SAB), updated before a record is
 * written. A restarted rank's writer continues from there, so its AllBlocksCleared and
 * everything after carry ids above every id the crashed thread used — Dynamo's router
 * (RankState::observe_live_event) drops a Cleared whose id is not above the last applied one.
 *
 * Ring full: the writer sleeps up to `blockTimeoutMs` for the publisher to free space, then
 * drops the record and counts it (here and in the ring header, which the publisher reports as
 * mockfleet_publisher_dropped_total). Nothing is lost silently.
 */
import type { FpmSnapshot, KvEventLog } from '../engine/types.js';
import { TAG_BYTES } from './ring.js';
import type { Doorbell, SpscRing } from './ring.js';
import { TopicCode } from './topics.js';
import type { DynamoWire } from './topics.js';
import type { VllmEncoding } from './wire.js';
import { MsgpackWriter, ZERO_FPM, dynamoBatchEnd, encodeActiveLoad, encodeFpm, encodeRouterEvent, encodeVllmBatch, msgpackStr, splitU64 } from './wire.js';

export type KvEventsFormat = 'dynamo' | 'vllm' | 'both';

/** Where a rank's id counters live (see the file comment). */
export interface RankIdStore {
  cells: Float64Array;
  /** Slot of the next KV event id (0 before the first event). */
  nextEventIdSlot: number;
  /** Slot of the last FPM counter_id (0 before the first FPM). */
  counterIdSlot: number;
}

export interface RankEventWriterOptions {
  workerId: bigint;
  dpRank: number;
  kvEventsFormat: KvEventsFormat;
  vllmEncoding: VllmEncoding;
  /** Dynamo payload layout: current = array of RouterEvents per pass, legacy = one per message. */
  dynamoWire?: DynamoWire;
  /** Also write vLLM KVEventBatch records (ZMQ publishing) whatever kvEventsFormat says. */
  vllmBatches?: boolean;
  /** Id counters that survive the rank thread; omit for private ones starting at 0. */
  idStore?: RankIdStore | null;
  /** Rung once per write*() call that wrote something. Omit to ring it yourself. */
  doorbell?: Doorbell | null;
  /**
   * With a doorbell: write*() only marks it and sets `pending`; the owner signals the bell once
   * for many writes (a rank thread, once per service round). A full ring still rings at once.
   */
  deferredSignal?: PendingSignal | null;
  /** Longest a write waits for ring space before dropping (default 20 ms). */
  blockTimeoutMs?: number;
  /** Encoder to share with other writers used by the same thread one at a time (saves 8 KiB each). */
  encoder?: MsgpackWriter;
}

export const DEFAULT_BLOCK_TIMEOUT_MS = 20;

/** Set by writers that marked a doorbell without signalling it (RankEventWriterOptions.deferredSignal). */
export interface PendingSignal {
  pending: boolean;
}

export class RankEventWriter {
  private readonly ring: SpscRing;
  private readonly bell: Doorbell | null;
  private readonly deferred: PendingSignal | null;
  private readonly w: MsgpackWriter;
  private readonly workerHi: number;
  private readonly workerLo: number;
  private readonly workerIdStr: Uint8Array;
  private readonly dpRank: number;
  private readonly dynamo: boolean;
  private readonly vllm: boolean;
  private readonly vllmEncoding: VllmEncoding;
  private readonly batched: boolean;
  private readonly blockTimeoutMs: number;
  private readonly ids: Float64Array;
  private readonly nextIdSlot: number;
  private readonly counterSlot: number;
  /** Added to the engine's event ids: the next id when this writer was created. */
  private readonly eventIdBase: number;
  private dropped: number;

  constructor(ring: SpscRing, opts: RankEventWriterOptions) {
    if (!Number.isInteger(opts.dpRank) || opts.dpRank < 0 || opts.dpRank > 0xffffffff) {
      throw new RangeError(`RankEventWriter: dpRank must be a u32, got ${opts.dpRank}`);
    }
    this.ring = ring;
    this.bell = opts.doorbell ?? null;
    this.deferred = opts.deferredSignal ?? null;
    this.w = opts.encoder ?? new MsgpackWriter(8192);
    const { hi, lo } = splitU64(opts.workerId);
    this.workerHi = hi;
    this.workerLo = lo;
    this.workerIdStr = msgpackStr(opts.workerId.toString(10));
    this.dpRank = opts.dpRank;
    this.dynamo = opts.kvEventsFormat === 'dynamo' || opts.kvEventsFormat === 'both';
    this.vllm = opts.kvEventsFormat === 'vllm' || opts.kvEventsFormat === 'both' || opts.vllmBatches === true;
    this.vllmEncoding = opts.vllmEncoding;
    this.batched = (opts.dynamoWire ?? 'current') === 'current';
    this.blockTimeoutMs = opts.blockTimeoutMs ?? DEFAULT_BLOCK_TIMEOUT_MS;
    const store = opts.idStore ?? null;
    this.ids = store === null ? new Float64Array(2) : store.cells;
    this.nextIdSlot = store === null ? 0 : store.nextEventIdSlot;
    this.counterSlot = store === null ? 1 : store.counterIdSlot;
    this.eventIdBase = this.ids[this.nextIdSlot]!;
    this.dropped = 0;
  }

  /** Records this writer dropped because the ring stayed full (or a record exceeded it). */
  get droppedRecords(): number {
    return this.dropped;
  }

  /** counter_id of the last FPM written (0 before the first). */
  get lastCounterId(): number {
    return this.ids[this.counterSlot]!;
  }

  /** Event id the next KV event gets. */
  get nextEventId(): number {
    return this.ids[this.nextIdSlot]!;
  }

  /**
   * Dynamo current: one record per batch of RouterEvents (split like upstream, see
   * dynamoBatchEnd); legacy: one record per RouterEvent. vLLM: one KVEventBatch record for the log.
   */
  writeKvEvents(log: KvEventLog, nowMs: number): void {
    if (log.count === 0) return;
    const w = this.w;
    const base = this.eventIdBase;
    // Reserve the ids before writing: whatever happens next, they are never handed out again.
    this.ids[this.nextIdSlot] = base + log.firstEventId + log.count;
    if (this.dynamo) {
      if (this.batched) {
        for (let i = 0; i < log.count; ) {
          const end = dynamoBatchEnd(log, i);
          w.pos = 0;
          w.ensure(TAG_BYTES + 5);
          this.tag(TopicCode.kvEvents);
          w.arrayHeader(end - i);
          for (let k = i; k < end; k++) encodeRouterEvent(w, this.workerHi, this.workerLo, this.dpRank, log, k, base);
          this.push();
          i = end;
        }
      } else {
        for (let i = 0; i < log.count; i++) {
          w.pos = 0;
          w.ensure(TAG_BYTES);
          this.tag(TopicCode.kvEvents);
          encodeRouterEvent(w, this.workerHi, this.workerLo, this.dpRank, log, i, base);
          this.push();
        }
      }
    }
    if (this.vllm) {
      w.pos = 0;
      w.ensure(TAG_BYTES);
      this.tag(TopicCode.kvEventsVllm);
      encodeVllmBatch(w, this.vllmEncoding, nowMs / 1000, this.dpRank, log);
      this.push();
    }
    this.rang();
  }

  /** One FPM v1 message; counter_id increments before each message (first = 1). */
  writeFpm(fpm: FpmSnapshot, wallTimeS: number): void {
    const counterId = this.ids[this.counterSlot]! + 1;
    this.ids[this.counterSlot] = counterId;
    const w = this.w;
    w.pos = 0;
    w.ensure(TAG_BYTES);
    this.tag(TopicCode.forwardPassMetrics);
    encodeFpm(w, this.workerIdStr, this.dpRank, counterId, wallTimeS, fpm);
    this.push();
    this.rang();
  }

  /** Idle heartbeat: a zeroed snapshot with wall_time 0, on the same counter sequence. */
  writeHeartbeat(): void {
    this.writeFpm(ZERO_FPM, 0);
  }

  /** ActiveLoad on kv_metrics (active_prefill_tokens nil, like upstream workers). */
  writeLoad(activeDecodeBlocks: number, kvUsedBlocks: number): void {
    const w = this.w;
    w.pos = 0;
    w.ensure(TAG_BYTES);
    this.tag(TopicCode.kvMetrics);
    encodeActiveLoad(w, this.workerHi, this.workerLo, this.dpRank, activeDecodeBlocks, kvUsedBlocks);
    this.push();
    this.rang();
  }

  /** The ring record's frame header (TAG_BYTES): topic code, zero padding. The caller ensured room. */
  private tag(code: number): void {
    const w = this.w;
    w.u8(code);
    for (let i = 1; i < TAG_BYTES; i++) w.u8(0);
  }

  private rang(): void {
    const bell = this.bell;
    if (bell === null) return;
    if (this.deferred === null) {
      bell.ring();
    } else {
      bell.mark();
      this.deferred.pending = true;
    }
  }

  private push(): void {
    const len = this.w.pos;
    const ring = this.ring;
    if (len > ring.maxRecordBytes) {
      this.drop();
      return;
    }
    if (ring.tryWrite(this.w.buf, 0, len)) return;
    // The publisher drains after a ring; make sure it is awake before we sleep on the ring.
    if (this.bell !== null) this.bell.ringUrgent();
    if (!ring.writeBlocking(this.w.buf, 0, len, this.blockTimeoutMs)) this.drop();
  }

  private drop(): void {
    this.dropped++;
    this.ring.countDrop();
  }
}
