/**
 * vLLM-native KV events over ZeroMQ, one socket pair per rank, run on the shared publisher
 * thread. Wire exactly as vLLM's ZmqEventPublisher (vllm-project/vllm
 * vllm/distributed/kv_events.py):
 *
 *   PUB     [topic, seq (8 B big-endian, per socket, from 0, +1 per batch), payload]
 *   replay  ROUTER; request [identity, "", start_seq (8 B BE)] -> for every buffered batch with
 *           seq >= start_seq: [identity, "", seq, payload], then [identity, "", -1 (8 B BE,
 *           signed), ""]
 *
 * Differences, on purpose:
 *  - The PUB side is an XPUB with ZMQ_XPUB_NODROP and a zero send timeout: when a subscriber's
 *    queue (hwm) is full the send fails at once instead of libzmq dropping silently, so every
 *    lost batch is counted (mockfleet_publisher_dropped_total{transport="zmq"}). The seq is
 *    spent either way, so subscribers see the gap, and the batch stays in the replay buffer.
 *    A rank never waits for a subscriber.
 *  - The replay buffer holds buffer_steps batches like vLLM's deque, and also at most
 *    `replayBytesPerRank` bytes, so thousands of ranks cannot grow memory without bound.
 *  - Endpoints always bind (vLLM binds `*` and connects otherwise); a simulator owns its ports.
 *
 * zeromq (npm, v6): the maintained libzmq binding; it ships prebuilt binaries for Linux, macOS
 * and Windows inside the package, so it loads even when npm skips its install script.
 */
import { createRequire } from 'node:module';
import type { Router as ZmqRouter, XPublisher as ZmqXPublisher } from 'zeromq';
import type { ZmqPublishPlan } from '../config/kv-events-config.js';
import { InvalidConfigError } from '../util/errors.js';

// zeromq is CommonJS with a native addon; load it lazily so a fleet without ZMQ never maps it.
const requireCjs = createRequire(import.meta.url);
type ZmqModule = typeof import('zeromq');
let zmqModule: ZmqModule | null = null;
function zmq(): ZmqModule {
  zmqModule ??= requireCjs('zeromq') as ZmqModule;
  return zmqModule;
}

const EMPTY = new Uint8Array(0);
/** vLLM's END_SEQ: (-1).to_bytes(8, "big", signed=True). */
const END_SEQ = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
export const DEFAULT_REPLAY_BYTES_TOTAL = 256 << 20;
const MIN_REPLAY_BYTES_PER_RANK = 1 << 20;

export interface ZmqStats {
  published: number;
  dropped: number;
  bytes: number;
}

/** Bounded replay buffer of one rank: a ring of (seq, payload). */
class ReplayBuffer {
  private readonly seqs: Float64Array;
  private readonly payloads: Array<Uint8Array | null>;
  private head = 0;
  private count = 0;
  private bytes = 0;

  constructor(
    private readonly steps: number,
    private readonly maxBytes: number,
  ) {
    this.seqs = new Float64Array(steps);
    this.payloads = new Array<Uint8Array | null>(steps).fill(null);
  }

  add(seq: number, payload: Uint8Array): void {
    while (this.count > 0 && (this.count === this.steps || this.bytes + payload.length > this.maxBytes)) this.dropOldest();
    const at = (this.head + this.count) % this.steps;
    this.seqs[at] = seq;
    this.payloads[at] = payload;
    this.count++;
    this.bytes += payload.length;
  }

  private dropOldest(): void {
    this.bytes -= this.payloads[this.head]!.length;
    this.payloads[this.head] = null;
    this.head = (this.head + 1) % this.steps;
    this.count--;
  }

  /** Snapshot of the buffered batches with seq >= start, oldest first. */
  from(start: bigint): Array<{ seq: number; payload: Uint8Array }> {
    const out: Array<{ seq: number; payload: Uint8Array }> = [];
    for (let i = 0; i < this.count; i++) {
      const at = (this.head + i) % this.steps;
      const seq = this.seqs[at]!;
      if (BigInt(seq) >= start) out.push({ seq, payload: this.payloads[at]! });
    }
    return out;
  }
}

function seqBytes(seq: number): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint32(0, Math.floor(seq / 4294967296));
  v.setUint32(4, seq >>> 0);
  return b;
}

interface RankSockets {
  pub: ZmqXPublisher;
  replay: ZmqRouter | null;
  buffer: ReplayBuffer;
  nextSeq: number;
}

export class ZmqKvPublisher {
  private readonly ranks: RankSockets[];
  private readonly topic: Uint8Array;
  private readonly onError: (err: Error) => void;
  private closed = false;
  published = 0;
  dropped = 0;
  bytes = 0;

  private constructor(ranks: RankSockets[], topic: string, onError: (err: Error) => void) {
    this.ranks = ranks;
    this.topic = new TextEncoder().encode(topic);
    this.onError = onError;
  }

  /**
   * Binds every rank's sockets (all or nothing). A bind failure (port in use, bad address) is
   * an InvalidConfigError naming --kv-events-config and the endpoint.
   */
  static async open(plan: ZmqPublishPlan, onError: (err: Error) => void, replayBytesTotal = DEFAULT_REPLAY_BYTES_TOTAL): Promise<ZmqKvPublisher> {
    const z = zmq();
    const perRank = Math.max(MIN_REPLAY_BYTES_PER_RANK, Math.floor(replayBytesTotal / Math.max(1, plan.ranks.length)));
    const opened: RankSockets[] = [];
    const bind = async (sock: { bind(a: string): Promise<void> }, key: string, address: string): Promise<void> => {
      try {
        await sock.bind(address);
      } catch (err) {
        throw new InvalidConfigError('--kv-events-config', `cannot bind ${key} ${address}: ${(err as Error).message}`);
      }
    };
    try {
      for (const r of plan.ranks) {
        const pub = new z.XPublisher({ noDrop: true, sendHighWaterMark: plan.hwm, sendTimeout: 0, linger: 0 });
        const s: RankSockets = { pub, replay: null, buffer: new ReplayBuffer(plan.bufferSteps, perRank), nextSeq: 0 };
        opened.push(s);
        await bind(pub, 'endpoint', r.endpoint);
        if (r.replayEndpoint !== null) {
          // Room for a whole replay: ROUTER drops what does not fit its peer's queue.
          s.replay = new z.Router({ sendHighWaterMark: plan.bufferSteps + 2, linger: 0 });
          await bind(s.replay, 'replay_endpoint', r.replayEndpoint);
        }
      }
    } catch (err) {
      for (const s of opened) {
        s.pub.close();
        s.replay?.close();
      }
      throw err;
    }
    const p = new ZmqKvPublisher(opened, plan.topic, onError);
    for (const s of opened) {
      p.drainSubscriptions(s.pub);
      if (s.replay !== null) p.serveReplay(s);
    }
    return p;
  }

  /** XPUB hands subscription messages up; read them so they never pile up. */
  private drainSubscriptions(pub: ZmqXPublisher): void {
    void (async () => {
      try {
        for await (const _msg of pub) {
          if (this.closed) break;
        }
      } catch (err) {
        if (!this.closed) this.onError(err as Error);
      }
    })();
  }

  private serveReplay(s: RankSockets): void {
    const router = s.replay as ZmqRouter;
    void (async () => {
      try {
        for await (const frames of router) {
          // vLLM ignores anything but [identity, "", start_seq] (and logs it).
          if (frames.length !== 3) continue;
          const [id, , startBytes] = frames as [Buffer, Buffer, Buffer];
          let start = 0n;
          for (const byte of startBytes) start = (start << 8n) | BigInt(byte);
          for (const b of s.buffer.from(start)) await router.send([id, EMPTY, seqBytes(b.seq), b.payload]);
          await router.send([id, EMPTY, END_SEQ, EMPTY]);
        }
      } catch (err) {
        if (!this.closed) this.onError(err as Error);
      }
    })();
  }

  /**
   * One batch of `rank`: copied out of src (the caller's arena is reused), given the next seq,
   * buffered for replay and sent. Never blocks: a full subscriber queue drops and counts.
   */
  publish(rank: number, src: Uint8Array, start: number, len: number): void {
    const s = this.ranks[rank]!;
    const payload = src.slice(start, start + len);
    const seq = s.nextSeq++;
    s.buffer.add(seq, payload);
    s.pub.send([this.topic, seqBytes(seq), payload]).then(
      () => {
        this.published++;
        this.bytes += len;
      },
      (err: unknown) => {
        if ((err as { code?: string }).code === 'EAGAIN') {
          this.dropped++;
        } else if (!this.closed) {
          this.dropped++;
          this.onError(err as Error);
        }
      },
    );
  }

  stats(): ZmqStats {
    return { published: this.published, dropped: this.dropped, bytes: this.bytes };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.ranks) {
      s.pub.close();
      s.replay?.close();
    }
  }
}
