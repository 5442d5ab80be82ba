/**
 * The shared publisher's work, run on its own thread (workers/publisher-worker.ts): drain every
 * rank's event ring in rank order, wrap each payload in the event-plane envelope with the
 * per-publisher sequence, and hand it to a sink (NATS or the embedded counter).
 *
 * Per record:  payload copied straight from the ring into an outbound arena, leaving room in
 *              front; the envelope head (a per (publisher, topic) template with sequence and
 *              published_at patched, then the bin header) is written right before it
 *              -> sink.publish(cachedSubject, arena.subarray(head, end))
 * Arena reuse: nats.js keeps the published Uint8Array only until its flush, which runs in a
 * microtask (or inline past its pending limit) and copies everything into one packed write;
 * while it is disconnected it keeps them until the reconnect discards its outbound buffer. So
 * once the publisher thread has yielded to its event loop, nothing of nats.js points into the
 * arena any more, and recycleArena() rewinds it unless the disconnected buffer holds messages.
 * Otherwise (arena full, big record) a fresh arena is allocated.
 *
 * NATS disconnected: envelopes are held in order up to maxBufferedBytes and published after the
 * reconnect; beyond the cap they are dropped and counted (Stat.dropped). Sequence numbers are
 * assigned before that decision, so a consumer also sees every drop as a gap.
 */
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { Doorbell, SpscRing, TAG_BYTES } from '../protocol/ring.js';
import type { RingMemory } from '../protocol/ring.js';
import { TOPIC_COUNT, TOPIC_NAMES, TopicCode, buildSubject, endpointScoped } from '../protocol/topics.js';
import type { DynamoWire, TopicName } from '../protocol/topics.js';
import { envelopeTemplate, msgpackStr, splitU64 } from '../protocol/wire.js';
import type { EnvelopeTemplate } from '../protocol/wire.js';
import { PublisherError } from '../util/errors.js';
import type { EventsFileWriter } from './events-file.js';
import { STAT_SLOTS, Stat } from './stats.js';
import type { ZmqKvPublisher } from './zmq-publisher.js';

/** Where envelopes go. */
export interface PublisherSink {
  /** publish() delivers now (false while NATS is disconnected or not yet connected). */
  readonly connected: boolean;
  publish(subject: string, data: Uint8Array): void;
  /** Round trip that bounds what is in flight; false when it failed or timed out. */
  flush(timeoutMs: number): Promise<boolean>;
  close(timeoutMs: number): Promise<void>;
}

/** No NATS: messages are counted (and optionally written to the events file) only. */
export class EmbeddedSink implements PublisherSink {
  readonly connected = true;
  publish(_subject: string, _data: Uint8Array): void {}
  async flush(_timeoutMs: number): Promise<boolean> {
    return true;
  }
  async close(_timeoutMs: number): Promise<void> {}
}

export type NatsStatusKind = 'connected' | 'disconnected' | 'reconnected';

function timeout(ms: number): { promise: Promise<false>; cancel: () => void } {
  let t: NodeJS.Timeout | undefined;
  const promise = new Promise<false>((resolve) => {
    t = setTimeout(() => resolve(false), ms);
  });
  return { promise, cancel: () => clearTimeout(t) };
}

/**
 * @nats-io/transport-node connection that retries forever (first connect included), so serving
 * never waits for NATS. Status changes are reported through onStatus.
 */
export class NatsSink implements PublisherSink {
  connected: boolean;
  private nc: NatsConnection | null;
  private closing: boolean;
  private readonly url: string;
  private readonly onStatus: (kind: NatsStatusKind, detail: string) => void;
  private readonly onError: (err: Error) => void;

  constructor(url: string, onStatus: (kind: NatsStatusKind, detail: string) => void, onError: (err: Error) => void) {
    this.url = url;
    this.connected = false;
    this.nc = null;
    this.closing = false;
    this.onStatus = onStatus;
    this.onError = onError;
  }

  start(): void {
    connect({
      servers: this.url,
      name: 'mockfleet-publisher',
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
      reconnectJitter: 20,
      waitOnFirstConnect: true,
      pingInterval: 5000,
      maxPingOut: 3,
    }).then(
      (nc) => {
        if (this.closing) {
          nc.close().catch((err: unknown) => this.onError(new PublisherError('closing a late NATS connection failed', err)));
          return;
        }
        this.nc = nc;
        this.connected = true;
        this.onStatus('connected', this.url);
        this.watch(nc).catch((err: unknown) => this.onError(new PublisherError('NATS status monitor failed', err)));
      },
      (err: unknown) => this.onError(new PublisherError(`cannot connect to NATS at ${this.url}`, err)),
    );
  }

  private async watch(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        this.connected = false;
        this.onStatus('disconnected', s.server);
      } else if (s.type === 'reconnect') {
        this.connected = true;
        this.onStatus('reconnected', s.server);
      }
    }
  }

  publish(subject: string, data: Uint8Array): void {
    if (this.nc === null) throw new PublisherError('NATS publish before the connection exists');
    this.nc.publish(subject, data);
  }

  async flush(timeoutMs: number): Promise<boolean> {
    const nc = this.nc;
    if (nc === null || !this.connected) return false;
    const t = timeout(timeoutMs);
    try {
      return await Promise.race([nc.flush().then(() => true as const), t.promise]);
    } catch (err) {
      // A flush racing a disconnect rejects ("connection disconnected"); the caller counts the
      // failure, the status monitor reports the disconnect itself.
      if (!(err instanceof Error)) throw err;
      return false;
    } finally {
      t.cancel();
    }
  }

  async close(timeoutMs: number): Promise<void> {
    this.closing = true;
    const nc = this.nc;
    if (nc === null) return;
    if (this.connected) await this.flush(timeoutMs);
    const t = timeout(timeoutMs);
    try {
      // close() waits for the socket; a dead server must not hold shutdown beyond the deadline.
      await Promise.race([nc.close(), t.promise]);
    } finally {
      t.cancel();
    }
    this.connected = false;
  }
}

export interface PublisherCoreOptions {
  rings: readonly RingMemory[];
  /** The ranks' doorbell: when it tracks producers, a drain visits only the rings that rang. */
  doorbell?: SharedArrayBuffer | undefined;
  /** publisher_id per rank; ranks sharing a worker id share its sequences. */
  rankWorkerIds: readonly bigint[];
  namespace: string;
  component: string;
  /** Dynamo endpoint of endpoint-scoped subjects (default "generate"). */
  endpoint?: string;
  /** Subject scope of the Dynamo feeds (default current; see src/protocol/topics.ts). */
  dynamoWire?: DynamoWire;
  /** vLLM batch records go to these per-rank ZMQ sockets (--kv-events-config). */
  zmq?: ZmqKvPublisher | null;
  /** vLLM batch records also go to NATS (kv-events-vllm; --kv-events-format vllm|both). */
  natsVllm?: boolean;
  sink: PublisherSink;
  stats: SharedArrayBuffer;
  eventsFile: EventsFileWriter | null;
  /** Cap of envelope bytes held while NATS is disconnected (default 8 MiB). */
  maxBufferedBytes?: number;
  /** Clock for published_at (ms since the epoch). */
  nowMs?: () => number;
  /** Non-fatal publish failures (the message is counted as dropped). */
  onPublishError?: (err: unknown) => void;
}

export const DEFAULT_MAX_BUFFERED_BYTES = 8 << 20;
/** Rewound after every yield (recycleArena), so one arena is normally reused; ~400 messages fit. */
const ARENA_BYTES = 64 << 10;
/** Records taken from one ring before moving to the next, so one busy rank cannot starve others. */
const PER_RING_BATCH = 256;
const SEQ_STRIDE = TOPIC_COUNT + 1;
const TWO32 = 4294967296;

export class PublisherCore {
  private readonly rings: SpscRing[];
  private readonly bell: Doorbell | null;
  /** Rings that rang since the last drain (when the doorbell tracks producers). */
  private readonly dirty: Int32Array;
  private readonly rankPublisher: Int32Array;
  private readonly pubHi: Uint32Array;
  private readonly pubLo: Uint32Array;
  /** Next sequence per (publisher, topic code): index publisher * SEQ_STRIDE + code. */
  private readonly seq: Float64Array;
  private readonly subjects: string[];
  /** Envelope head template per (publisher, topic code), same indexing as seq. */
  private readonly templates: EnvelopeTemplate[];
  /** Room left in front of each payload: the longest template + a bin32 header. */
  private readonly headRoom: number;
  private arena: Uint8Array;
  private arenaView: DataView;
  private arenaPos: number;
  private readonly sink: PublisherSink;
  private readonly cells: BigInt64Array;
  private readonly eventsFile: EventsFileWriter | null;
  private readonly maxBufferedBytes: number;
  private readonly nowMs: () => number;
  private readonly onPublishError: (err: unknown) => void;
  private readonly zmq: ZmqKvPublisher | null;
  private readonly natsVllm: boolean;
  /**
   * Nothing reads the envelopes (embedded sink, no events file, no ZMQ): records are counted
   * (messages, envelope bytes, per topic, sequences) without being copied or wrapped.
   */
  readonly countOnly: boolean;

  private readonly pendingSubjects: string[];
  private readonly pendingData: Uint8Array[];
  private readonly pendingCodes: number[];
  private pendingHead: number;
  private pendingBytes: number;

  private published: number;
  private dropped: number;
  private bytes: number;
  private readonly byTopic: Float64Array;
  private bytesSinceFlush: number;
  /** The last drainPass left records behind (a ring stopped at PER_RING_BATCH). */
  moreWaiting: boolean;

  constructor(opts: PublisherCoreOptions) {
    if (opts.rings.length !== opts.rankWorkerIds.length) {
      throw new PublisherError(`${opts.rings.length} rings but ${opts.rankWorkerIds.length} worker ids`);
    }
    this.rings = opts.rings.map((s) => new SpscRing(s));
    const bell = opts.doorbell === undefined ? null : new Doorbell(opts.doorbell);
    this.bell = bell !== null && bell.tracksProducers ? bell : null;
    this.dirty = new Int32Array(this.bell === null ? 0 : this.rings.length);
    const ids: bigint[] = [];
    this.rankPublisher = new Int32Array(opts.rankWorkerIds.length);
    for (let r = 0; r < opts.rankWorkerIds.length; r++) {
      const id = opts.rankWorkerIds[r]!;
      let p = ids.indexOf(id);
      if (p < 0) p = ids.push(id) - 1;
      this.rankPublisher[r] = p;
    }
    this.pubHi = new Uint32Array(ids.length);
    this.pubLo = new Uint32Array(ids.length);
    for (let p = 0; p < ids.length; p++) {
      const { hi, lo } = splitU64(ids[p]!);
      this.pubHi[p] = hi;
      this.pubLo[p] = lo;
    }
    this.seq = new Float64Array(ids.length * SEQ_STRIDE);
    this.subjects = [''];
    const topicStrs: Uint8Array[] = [new Uint8Array(0)];
    const wire = opts.dynamoWire ?? 'current';
    const endpoint = opts.endpoint ?? 'generate';
    for (let code = 1; code <= TOPIC_COUNT; code++) {
      const name = TOPIC_NAMES[code] as TopicName;
      this.subjects.push(buildSubject(opts.namespace, opts.component, name, endpointScoped(name, wire) ? endpoint : null));
      topicStrs.push(msgpackStr(name));
    }
    this.templates = [];
    let longest = 0;
    for (let p = 0; p < ids.length; p++) {
      for (let code = 0; code <= TOPIC_COUNT; code++) {
        const t = envelopeTemplate(topicStrs[code]!, this.pubHi[p]!, this.pubLo[p]!);
        this.templates.push(t);
        longest = Math.max(longest, t.bytes.length);
      }
    }
    this.headRoom = longest + 5;
    this.arena = new Uint8Array(ARENA_BYTES);
    this.arenaView = new DataView(this.arena.buffer);
    this.arenaPos = 0;
    this.sink = opts.sink;
    this.cells = new BigInt64Array(opts.stats, 0, STAT_SLOTS);
    this.eventsFile = opts.eventsFile;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.nowMs = opts.nowMs ?? Date.now;
    this.onPublishError = opts.onPublishError ?? ((err: unknown) => {
      throw err;
    });
    this.zmq = opts.zmq ?? null;
    this.natsVllm = opts.natsVllm ?? true;
    this.countOnly = opts.sink instanceof EmbeddedSink && opts.eventsFile === null && this.zmq === null;
    this.pendingSubjects = [];
    this.pendingData = [];
    this.pendingCodes = [];
    this.pendingHead = 0;
    this.pendingBytes = 0;
    this.published = 0;
    this.dropped = 0;
    this.bytes = 0;
    this.byTopic = new Float64Array(SEQ_STRIDE);
    this.bytesSinceFlush = 0;
    this.moreWaiting = false;
  }

  /** Subject for a topic, as built once at construction. */
  subjectOf(topic: TopicName): string {
    return this.subjects[TOPIC_NAMES.indexOf(topic)]!;
  }

  /** Messages waiting for NATS to come back. */
  get bufferedMessages(): number {
    return this.pendingData.length - this.pendingHead;
  }

  /** Envelope bytes published since the last call (for flush pacing); resets the count. */
  takeBytesSinceFlush(): number {
    const b = this.bytesSinceFlush;
    this.bytesSinceFlush = 0;
    return b;
  }

  /**
   * One pass over all rings (up to PER_RING_BATCH records each, rank order). Returns the number
   * of records taken. Updates the shared stats.
   */
  drainPass(): number {
    if (this.sink.connected && this.bufferedMessages > 0) this.flushPending();
    const now = this.nowMs();
    const nowHi = Math.floor(now / TWO32);
    const nowLo = now >>> 0;
    const headRoom = this.headRoom;
    let taken = 0;
    this.moreWaiting = false;
    const bell = this.bell;
    const visits = bell === null ? this.rings.length : bell.takeDirty(this.dirty);
    for (let v = 0; v < visits; v++) {
      const r = bell === null ? v : this.dirty[v]!;
      const ring = this.rings[r]!;
      const pub = this.rankPublisher[r]!;
      let k = 0;
      if (this.countOnly) {
        for (; k < PER_RING_BATCH; k++) {
          const code = ring.skipTagged();
          if (code === -1) break;
          taken++;
          this.countRecord(r, pub, code, ring.lastLength - TAG_BYTES);
        }
      }
      for (; k < PER_RING_BATCH && !this.countOnly; k++) {
        // 4-byte aligned, so the ring copies the payload as words.
        let payloadAt = (this.arenaPos + headRoom + 3) & ~3;
        let code = ring.readTagged(this.arena, payloadAt);
        if (code === -1) break;
        if (code === -2) {
          this.newArena(headRoom + 3 + ring.lastLength);
          payloadAt = (headRoom + 3) & ~3;
          code = ring.readTagged(this.arena, payloadAt);
        }
        taken++;
        if (code < 1 || code > TOPIC_COUNT) {
          throw new PublisherError(`rank ${r}: corrupt event ring record (topic code ${code}, ${ring.lastLength} bytes)`);
        }
        const payloadLen = ring.lastLength - TAG_BYTES;
        if (code === TopicCode.kvEventsVllm) {
          if (this.zmq !== null) this.zmq.publish(r, this.arena, payloadAt, payloadLen);
          if (!this.natsVllm) continue;
        }
        const end = payloadAt + payloadLen;
        const si = pub * SEQ_STRIDE + code;
        const sequence = this.seq[si]!;
        this.seq[si] = sequence + 1;
        // bin header right before the payload, the template before that
        const arena = this.arena;
        const view = this.arenaView;
        let h: number;
        if (payloadLen < 256) {
          h = payloadAt - 2;
          arena[h] = 0xc4;
          arena[h + 1] = payloadLen;
        } else if (payloadLen < 65536) {
          h = payloadAt - 3;
          arena[h] = 0xc5;
          view.setUint16(h + 1, payloadLen);
        } else {
          h = payloadAt - 5;
          arena[h] = 0xc6;
          view.setUint32(h + 1, payloadLen);
        }
        const t = this.templates[si]!;
        const start = h - t.bytes.length;
        arena.set(t.bytes, start);
        view.setUint32(start + t.seqOffset, Math.floor(sequence / TWO32));
        view.setUint32(start + t.seqOffset + 4, sequence >>> 0);
        view.setUint32(start + t.publishedAtOffset, nowHi);
        view.setUint32(start + t.publishedAtOffset + 4, nowLo);
        this.arenaPos = end;
        this.emit(code, arena.subarray(start, end));
      }
      // Stopped at the batch limit: visit this ring again next pass.
      if (k === PER_RING_BATCH) {
        this.moreWaiting = true;
        if (bell !== null) bell.markDirty(r);
      }
      ring.commitReads();
    }
    if (this.eventsFile !== null) this.eventsFile.flush();
    this.storeStats();
    return taken;
  }

  /**
   * Call only after the thread yielded to its event loop since the last drainPass (see the file
   * comment): rewinds the outbound arena when no held message points into it.
   */
  recycleArena(): void {
    if (this.bufferedMessages === 0) this.arenaPos = 0;
  }

  /** A fresh arena (the old one may still be referenced by nats.js or the disconnected buffer). */
  private newArena(minBytes: number): void {
    this.arena = new Uint8Array(Math.max(ARENA_BYTES, minBytes));
    this.arenaView = new DataView(this.arena.buffer);
    this.arenaPos = 0;
  }

  /** At shutdown: whatever is still held for a disconnected NATS is counted as dropped. */
  dropBuffered(): void {
    const n = this.bufferedMessages;
    if (n > 0) {
      this.dropped += n;
      this.pendingSubjects.length = 0;
      this.pendingData.length = 0;
      this.pendingCodes.length = 0;
      this.pendingHead = 0;
      this.pendingBytes = 0;
    }
    this.storeStats();
  }

  storeStats(): void {
    const c = this.cells;
    Atomics.store(c, Stat.published, BigInt(this.published));
    Atomics.store(c, Stat.dropped, BigInt(this.dropped));
    Atomics.store(c, Stat.bytes, BigInt(this.bytes));
    for (let code = 1; code <= TOPIC_COUNT; code++) Atomics.store(c, Stat.publishedByTopic + code - 1, BigInt(this.byTopic[code]!));
    Atomics.store(c, Stat.natsConnected, this.sink.connected ? 1n : 0n);
    Atomics.store(c, Stat.bufferedMessages, BigInt(this.bufferedMessages));
    Atomics.store(c, Stat.bufferedBytes, BigInt(this.pendingBytes));
    const z = this.zmq;
    if (z !== null) {
      Atomics.store(c, Stat.zmqPublished, BigInt(z.published));
      Atomics.store(c, Stat.zmqDropped, BigInt(z.dropped));
      Atomics.store(c, Stat.zmqBytes, BigInt(z.bytes));
    }
  }

  /** Adds to a counter the sink side owns (reconnects, disconnects, flush failures). */
  bumpStat(index: number): void {
    Atomics.add(this.cells, index, 1n);
  }

  /** countOnly: what send() would count for this record's envelope. */
  private countRecord(r: number, pub: number, code: number, payloadLen: number): void {
    if (code < 1 || code > TOPIC_COUNT) {
      throw new PublisherError(`rank ${r}: corrupt event ring record (topic code ${code}, ${payloadLen + TAG_BYTES} bytes)`);
    }
    if (code === TopicCode.kvEventsVllm && !this.natsVllm) return;
    const si = pub * SEQ_STRIDE + code;
    this.seq[si] = this.seq[si]! + 1;
    const bytes = this.templates[si]!.bytes.length + (payloadLen < 256 ? 2 : payloadLen < 65536 ? 3 : 5) + payloadLen;
    this.published++;
    this.bytes += bytes;
    this.bytesSinceFlush += bytes;
    this.byTopic[code] = this.byTopic[code]! + 1;
  }

  private emit(code: number, msg: Uint8Array): void {
    if (this.sink.connected) {
      this.send(this.subjects[code]!, code, msg);
    } else if (this.pendingBytes + msg.length <= this.maxBufferedBytes) {
      this.pendingSubjects.push(this.subjects[code]!);
      this.pendingData.push(msg);
      this.pendingCodes.push(code);
      this.pendingBytes += msg.length;
    } else {
      this.dropped++;
    }
  }

  private send(subject: string, code: number, msg: Uint8Array): void {
    try {
      this.sink.publish(subject, msg);
    } catch (err) {
      this.dropped++;
      this.onPublishError(err);
      return;
    }
    this.published++;
    this.bytes += msg.length;
    this.bytesSinceFlush += msg.length;
    this.byTopic[code] = this.byTopic[code]! + 1;
    if (this.eventsFile !== null) this.eventsFile.add(subject, msg);
  }

  private flushPending(): void {
    const n = this.pendingData.length;
    let i = this.pendingHead;
    for (; i < n && this.sink.connected; i++) {
      this.send(this.pendingSubjects[i]!, this.pendingCodes[i]!, this.pendingData[i]!);
      this.pendingBytes -= this.pendingData[i]!.length;
    }
    if (i >= n) {
      this.pendingSubjects.length = 0;
      this.pendingData.length = 0;
      this.pendingCodes.length = 0;
      this.pendingHead = 0;
      this.pendingBytes = 0;
    } else {
      this.pendingHead = i;
    }
  }
}
