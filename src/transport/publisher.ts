/**
 * Main-thread handle of the shared event publisher. The publisher runs on its own worker thread
 * (workers/publisher-worker.ts) so the main thread stays free for HTTP; it drains every rank's
 * event ring and publishes to NATS or to the embedded sink. Statistics live in a
 * SharedArrayBuffer readable here without messages.
 *
 * Shutdown order: stop the ranks (no more writes), then flushAndClose().
 */
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import { Doorbell } from '../protocol/ring.js';
import type { ZmqPublishPlan } from '../config/kv-events-config.js';
import type { RingMemory } from '../protocol/ring.js';
import { buildSubject } from '../protocol/topics.js';
import type { DynamoWire } from '../protocol/topics.js';
import { InvalidConfigError, PublisherError } from '../util/errors.js';
import { DEFAULT_MAX_BUFFERED_BYTES } from './publisher-core.js';
import type { NatsStatusKind } from './publisher-core.js';
import { StatsReader, allocateStats } from './stats.js';
import type { PublisherStats } from './stats.js';

export type { PublisherStats } from './stats.js';

export interface PublisherOptions {
  /** One event ring per rank (SpscRing.allocate), in rank order. */
  rings: RingMemory[];
  /** Doorbell every rank rings after writing (Doorbell.allocate). */
  doorbell: SharedArrayBuffer;
  /** publisher_id per rank (Dynamo worker id); equal ids share sequences. */
  rankWorkerIds: bigint[];
  rankDpRanks: number[];
  /** nats://host:port, or null for the embedded sink. */
  natsUrl: string | null;
  namespace: string;
  component: string;
  /** Dynamo endpoint in endpoint-scoped subjects (default "generate"). */
  endpoint?: string;
  /** current (default): batched kv-events, endpoint-scoped feeds; legacy: pre-July-2026 routers. */
  dynamoWire?: DynamoWire;
  /** vLLM batches to per-rank ZMQ sockets (--kv-events-config), or null. */
  zmq?: ZmqPublishPlan | null;
  /** vLLM batches also to NATS kv-events-vllm (default true). */
  natsVllm?: boolean;
  /** Append one decoded JSON line per published message to this file. */
  eventsFile: string | null;
  /** Pin the publisher thread to these CPUs (taskset). */
  cpus?: number[] | null;
  /** Cap of envelope bytes held while NATS is down; beyond it messages are dropped and counted. */
  maxBufferedBytes?: number;
}

/** workerData of workers/publisher-worker.ts. */
export interface PublisherWorkerData {
  rings: RingMemory[];
  doorbell: SharedArrayBuffer;
  stats: SharedArrayBuffer;
  rankWorkerIds: bigint[];
  natsUrl: string | null;
  namespace: string;
  component: string;
  endpoint: string;
  dynamoWire: DynamoWire;
  zmq: ZmqPublishPlan | null;
  natsVllm: boolean;
  eventsFile: string | null;
  cpus: number[] | null;
  maxBufferedBytes: number;
}

export type PublisherToMain =
  | { type: 'ready'; tid: number | null; pinnedCpus: string | null }
  | { type: 'nats'; status: NatsStatusKind; detail: string }
  | { type: 'warning'; message: string }
  | { type: 'fatal'; code: string; message: string; stack: string }
  | { type: 'closed' };

export type MainToPublisher = { type: 'close'; timeoutMs: number };

export interface PublisherHandle {
  stats(): PublisherStats;
  /** The SAB behind stats() (layout: src/transport/stats.ts), for readers built elsewhere. */
  readonly statsBuffer: SharedArrayBuffer;
  readonly threadId: number;
  /** Linux TID of the publisher thread (null when /proc/thread-self is unavailable). */
  readonly tid: number | null;
  /** CPU list the thread was pinned to, or null. */
  readonly pinnedCpus: string | null;
  /** Drains the rings, publishes what is left, closes NATS and the events file, ends the thread. */
  flushAndClose(timeoutMs: number): Promise<void>;
  on(event: 'error', listener: (err: PublisherError) => void): this;
  on(event: 'warning', listener: (message: string) => void): this;
  on(event: 'nats', listener: (status: NatsStatusKind, detail: string) => void): this;
}

const WORKER_URL = new URL('../../workers/publisher-worker.js', import.meta.url);

class PublisherHandleImpl extends EventEmitter implements PublisherHandle {
  readonly threadId: number;
  readonly statsBuffer: SharedArrayBuffer;
  tid: number | null;
  pinnedCpus: string | null;
  private readonly worker: Worker;
  private readonly reader: StatsReader;
  private readonly bell: Doorbell;
  private closed: Promise<void> | null;
  private exited: boolean;

  constructor(worker: Worker, statsBuffer: SharedArrayBuffer, reader: StatsReader, bell: Doorbell) {
    super();
    this.worker = worker;
    this.statsBuffer = statsBuffer;
    this.threadId = worker.threadId;
    this.reader = reader;
    this.bell = bell;
    this.tid = null;
    this.pinnedCpus = null;
    this.closed = null;
    this.exited = false;
  }

  stats(): PublisherStats {
    return this.reader.read();
  }

  markExited(): void {
    this.exited = true;
  }

  flushAndClose(timeoutMs: number): Promise<void> {
    if (this.closed !== null) return this.closed;
    if (this.exited) {
      this.closed = Promise.resolve();
      return this.closed;
    }
    const worker = this.worker;
    this.closed = new Promise<void>((resolve) => {
      let guard: NodeJS.Timeout | undefined;
      const finish = (): void => {
        clearTimeout(guard);
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        resolve();
      };
      const onMessage = (m: PublisherToMain): void => {
        if (m.type === 'closed') worker.terminate().then(finish, finish);
      };
      const onExit = (): void => finish();
      // Hang guard: the worker itself honours timeoutMs; this only catches a stuck thread.
      guard = setTimeout(() => {
        this.emit('warning', `publisher thread did not close within ${timeoutMs + 1000} ms; terminating it`);
        worker.terminate().then(finish, finish);
      }, timeoutMs + 1000);
      worker.on('message', onMessage);
      worker.on('exit', onExit);
      const msg: MainToPublisher = { type: 'close', timeoutMs };
      worker.postMessage(msg);
      this.bell.ring();
    });
    return this.closed;
  }
}

/** Starts the publisher thread; resolves once it runs (it never waits for NATS). */
export async function startPublisher(opts: PublisherOptions): Promise<PublisherHandle> {
  const n = opts.rings.length;
  if (n === 0) throw new InvalidConfigError('rings', 'the publisher needs at least one rank ring');
  if (opts.rankWorkerIds.length !== n) throw new InvalidConfigError('rankWorkerIds', `expected ${n} worker ids, got ${opts.rankWorkerIds.length}`);
  if (opts.rankDpRanks.length !== n) throw new InvalidConfigError('rankDpRanks', `expected ${n} dp ranks, got ${opts.rankDpRanks.length}`);
  // Validate the subject tokens here so a bad namespace fails in the caller's thread.
  buildSubject(opts.namespace, opts.component, 'kv-events', opts.endpoint ?? 'generate');
  const maxBufferedBytes = opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
  if (!(maxBufferedBytes >= 0)) throw new InvalidConfigError('maxBufferedBytes', `must be >= 0, got ${maxBufferedBytes}`);

  const stats = allocateStats();
  const data: PublisherWorkerData = {
    rings: opts.rings,
    doorbell: opts.doorbell,
    stats,
    rankWorkerIds: opts.rankWorkerIds,
    natsUrl: opts.natsUrl,
    namespace: opts.namespace,
    component: opts.component,
    endpoint: opts.endpoint ?? 'generate',
    dynamoWire: opts.dynamoWire ?? 'current',
    zmq: opts.zmq ?? null,
    natsVllm: opts.natsVllm ?? true,
    eventsFile: opts.eventsFile,
    cpus: opts.cpus ?? null,
    maxBufferedBytes,
  };
  const worker = new Worker(WORKER_URL, { workerData: data, name: 'mockfleet-publisher' });
  const handle = new PublisherHandleImpl(worker, stats, new StatsReader(stats, opts.rings), new Doorbell(opts.doorbell));

  await new Promise<void>((resolve, reject) => {
    let ready = false;
    worker.on('message', (m: PublisherToMain) => {
      switch (m.type) {
        case 'ready':
          handle.tid = m.tid;
          handle.pinnedCpus = m.pinnedCpus;
          ready = true;
          resolve();
          break;
        case 'nats':
          handle.emit('nats', m.status, m.detail);
          break;
        case 'warning':
          handle.emit('warning', m.message);
          break;
        case 'fatal': {
          if (!ready && m.code === 'MOCKFLEET_ERR_INVALID_CONFIG') {
            // A ZMQ endpoint that cannot be bound: a usage error naming the flag (exit 2).
            const sep = m.message.indexOf(': ');
            reject(new InvalidConfigError(m.message.slice(0, sep), m.message.slice(sep + 2)));
            break;
          }
          const err = new PublisherError(`publisher thread failed: ${m.code}: ${m.message}`);
          err.stack = m.stack;
          if (ready) handle.emit('error', err);
          else reject(err);
          break;
        }
        case 'closed':
          break;
      }
    });
    worker.on('error', (err: Error) => {
      const e = new PublisherError(`publisher thread crashed: ${err.message}`, err);
      if (ready) handle.emit('error', e);
      else reject(e);
    });
    worker.on('exit', (code) => {
      handle.markExited();
      if (!ready) reject(new PublisherError(`publisher thread exited with code ${code} before it was ready`));
    });
  });
  return handle;
}
