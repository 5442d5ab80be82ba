/**
 * The coordinator: main-thread side of the fleet. It starts one piscina thread per rank (one
 * long-lived task each), the shared publisher thread, routes requests into the ranks' inbox
 * rings, and fans each pass's output record out to the requests' callbacks.
 *
 *   HTTP --submit--> router --inbox ring--> rank thread --event ring--> publisher thread --> NATS
 *                                            |
 *   callbacks <--------- output ring -------+   (one record per pass; doorbell wakes main)
 */
import { checkGenerateRequest } from './backend.js';
import { Piscina } from 'piscina';
import type { RankTask, RankTaskResult, ThreadTask } from '../../workers/rank-worker.js';
import type { Backend, GenerateCallbacks, GenerateHandle, GenerateRequest, RankInfo } from './backend.js';
import type { EngineArgs } from '../engine/types.js';
import { FinishReason } from '../engine/types.js';
import { computeSequenceHashes } from '../engine/engine.js';
import type { PerfProfileArrays as ProfileArrays } from '../engine/perf-model.js';
import { SpscRing, Doorbell } from '../protocol/ring.js';
import type { RingMemory } from '../protocol/ring.js';
import {
  CTL_WORDS,
  Ctl,
  INBOX_MARKER_BYTES,
  INBOX_RING_BYTES,
  FaultKind,
  INBOX_ADD_HEADER,
  INBOX_FLAG_SEEDED,
  INBOX_FLAG_STOP,
  INBOX_FLAG_URGENT,
  INBOX_N_MAX,
  INBOX_N_SHIFT,
  INBOX_ABORT_BYTES,
  InboxKind,
  OUTPUT_HEADER,
  OUTPUT_LAZY_MAX_MS,
  OUTPUT_RING_BYTES,
  RankState,
  eventRingBytes,
  largeInboxRingBytes,
  markThreadRank,
  threadWakeBytes,
} from '../protocol/rank-channel.js';
import type { FaultName } from '../protocol/rank-channel.js';
import { Scalar, counterLayout } from '../protocol/rank-counters.js';
import type { CounterLayout } from '../protocol/rank-counters.js';
import { startPublisher } from '../transport/publisher.js';
import type { ZmqPublishPlan } from '../config/kv-events-config.js';
import type { DynamoWire } from '../protocol/topics.js';
import type { PublisherHandle } from '../transport/publisher.js';
import { createRouter } from '../router/index.js';
import type { RankLoadView, RouteRequest, Router, RouterPolicy } from '../router/types.js';
import { InvalidRequestError, MockfleetError, OverloadedError, RankFailedError } from '../util/errors.js';
import { FleetMetrics } from '../metrics/fleet-metrics.js';
import type { MetricsBody } from '../metrics/fleet-metrics.js';

export interface ClusterConfig {
  readonly modelName: string;
  readonly numWorkers: number;
  readonly dataParallelSize: number;
  readonly engineArgs: Readonly<EngineArgs>;
  readonly profile: ProfileArrays | null;
  readonly speedupRatio: number;
  readonly decodeSpeedupRatio: number;
  readonly maxModelLen: number;
  readonly maxWaiting: number;
  readonly router: RouterPolicy;
  readonly kvOverlapScoreWeight: number;
  /** kv router softmax temperature (default 0). */
  readonly routerTemperature?: number;
  readonly seed: number;
  readonly natsUrl: string | null;
  readonly namespace: string;
  readonly component: string;
  readonly kvEventsFormat: 'dynamo' | 'vllm' | 'both';
  readonly vllmEventEncoding: 'array' | 'map';
  /** Dynamo endpoint of endpoint-scoped subjects (default "generate"). */
  readonly endpoint?: string;
  /** Dynamo payloads and subjects (default current). */
  readonly dynamoWire?: DynamoWire;
  /** vLLM KV events over ZMQ, one PUB (+ replay ROUTER) per rank; null = off. */
  readonly zmq?: ZmqPublishPlan | null;
  readonly eventsFile: string | null;
  /** Rank threads are pinned round-robin over these CPUs (one CPU per thread), or null = not pinned. */
  readonly rankCpus: readonly number[] | null;
  /** Ranks multiplexed on one thread (1 = a thread per rank). */
  readonly ranksPerThread: number;
  readonly publisherCpus: readonly number[] | null;
  /** Where the main thread is pinned (reported in placement), or null. */
  readonly frontendCpus: readonly number[] | null;
  readonly heartbeatMs: number;
  /** Max old-generation heap per rank thread, MiB. */
  readonly rankHeapMb: number;
  /** Token ids seeded requests generate (Tokenizer.generationVocabulary()); default: the engine's. */
  readonly generatedVocabulary?: Uint32Array | undefined;
  /** One 64-bit id per worker (fleet mode picks fleet-unique ids); default workerIdFor(seed, i). */
  readonly workerIds?: readonly bigint[] | undefined;
}

interface Pending {
  readonly id: number;
  readonly cb: GenerateCallbacks;
  readonly rank: number;
  readonly promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** Still in its rank's add backlog on this thread (never written to the inbox). */
  queued: boolean;
}

/** A request admitted while its rank's inbox had no room: written when the rank drains it. */
interface QueuedAdd {
  readonly id: number;
  readonly req: GenerateRequest;
  readonly arrivalMs: number;
}

interface RankThread {
  readonly index: number;
  readonly ranks: readonly number[];
  readonly wakeSab: SharedArrayBuffer;
  readonly wake: Int32Array;
  alive: boolean;
  /** Its ranks reached RankState.running at least once. */
  everRan: boolean;
  /** Requests too big for a rank's own inbox (see largeInboxRingBytes). */
  largeInboxSab: SharedArrayBuffer;
  largeInbox: SpscRing;
}

interface RankSlot {
  readonly rank: number;
  readonly workerIndex: number;
  readonly dpRank: number;
  readonly workerId: bigint;
  readonly ctlSab: SharedArrayBuffer;
  readonly ctl: Int32Array;
  readonly eventsSab: RingMemory;
  inboxSab: RingMemory;
  inbox: SpscRing;
  outputSab: RingMemory;
  output: SpscRing;
  inflight: number;
  restarts: number;
  /** Index of the thread that runs this rank. */
  readonly thread: number;
  /** Abort records that did not fit the inbox yet. */
  pendingAborts: number[];
  /**
   * Admitted requests that did not fit the inbox yet, in arrival order (bounded by
   * --max-waiting, which counts them): a burst larger than the compact inbox waits here instead
   * of being refused.
   */
  pendingAdds: QueuedAdd[];
}

/** Deterministic 64-bit worker ids (splitmix64 of seed and worker index), never 0. */
export function workerIdFor(seed: number, workerIndex: number): bigint {
  const M = (1n << 64n) - 1n;
  let z = (BigInt(seed >>> 0) * 0x9e3779b97f4a7c15n + BigInt(workerIndex + 1) * 0xbf58476d1ce4e5b9n) & M;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
  z = z ^ (z >> 31n);
  return z === 0n ? 1n : z;
}

export class Coordinator implements Backend {
  readonly modelName: string;
  readonly numWorkers: number;
  readonly dataParallelSize: number;
  readonly numRanks: number;
  readonly blockSize: number;
  readonly numGpuBlocks: number;
  readonly maxModelLen: number;
  readonly metricsContentType = 'text/plain; version=0.0.4; charset=utf-8';

  readonly layout: CounterLayout;
  readonly countersSab: SharedArrayBuffer[];
  readonly counters: Float64Array[];
  private readonly slots: RankSlot[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly outputBellSab: SharedArrayBuffer;
  private readonly outputBell: Doorbell;
  private readonly publisherBellSab: SharedArrayBuffer;
  /** Ranks whose output ring rang (drain scratch), and ranks holding aborts that did not fit their inbox. */
  private readonly dirtyRanks: Int32Array;
  /** Ranks with queued abort or add records (retried by the drain loop). */
  private readonly inboxBacklog = new Set<RankSlot>();
  private readonly router: Router;
  private readonly fleetMetrics: FleetMetrics;
  private pool: Piscina | null = null;
  private publisher: PublisherHandle | null = null;
  private nextId = 1;
  private ready = false;
  private startupError: MockfleetError | null = null;
  private closing = false;
  private closed = false;
  private drainDone: Promise<void> = Promise.resolve();
  private readonly threads: RankThread[] = [];
  private readonly threadDone: Array<Promise<void>> = [];
  private outScratch = new Uint8Array(OUTPUT_RING_BYTES);
  private outView = new DataView(this.outScratch.buffer);
  private outU32 = new Uint32Array(this.outScratch.buffer);
  private hashHi = new Uint32Array(4096);
  private hashLo = new Uint32Array(4096);
  /** The route of the current submit() when the router picked its rank (null: pinned or one candidate). */
  private lastRoute: RouteRequest | null = null;
  private inboxScratch: Uint8Array;
  /** ClusterConfig.generatedVocabulary in shared memory: one copy for every rank thread. */
  private readonly vocabularySab: SharedArrayBuffer | null;
  private inboxView: DataView;
  private readonly abortBytes = new Uint8Array(INBOX_ABORT_BYTES);
  private readonly abortView = new DataView(this.abortBytes.buffer);

  constructor(readonly config: ClusterConfig) {
    this.modelName = config.modelName;
    this.numWorkers = config.numWorkers;
    this.dataParallelSize = config.dataParallelSize;
    this.numRanks = config.numWorkers * config.dataParallelSize;
    this.blockSize = config.engineArgs.blockSize;
    this.numGpuBlocks = config.engineArgs.numGpuBlocks;
    this.maxModelLen = config.maxModelLen;
    this.layout = counterLayout(config.maxModelLen);
    // Both bells track which rank rang, so a drain visits only those (O(busy ranks), not O(ranks)).
    this.outputBellSab = Doorbell.allocate(this.numRanks);
    this.publisherBellSab = Doorbell.allocate(this.numRanks);
    this.outputBell = new Doorbell(this.outputBellSab);
    this.dirtyRanks = new Int32Array(this.numRanks);
    this.countersSab = [];
    this.counters = [];
    const eventBytes = eventRingBytes(config.engineArgs.maxNumBatchedTokens);
    this.inboxScratch = new Uint8Array(INBOX_ADD_HEADER + 4 * config.maxModelLen + 8);
    const vocab = config.generatedVocabulary;
    this.vocabularySab = vocab === undefined || vocab.length === 0 ? null : new SharedArrayBuffer(vocab.byteLength);
    if (this.vocabularySab !== null && vocab !== undefined) new Uint32Array(this.vocabularySab).set(vocab);
    this.inboxView = new DataView(this.inboxScratch.buffer);
    // The rings of each thread's ranks share one SharedArrayBuffer (mapped lazily: an idle rank's
    // rings cost the pages of their headers). A restarted rank gets rings of its own.
    let rings: RingMemory[] = [];
    for (let r = 0; r < this.numRanks; r++) {
      const workerIndex = Math.floor(r / config.dataParallelSize);
      const ctlSab = new SharedArrayBuffer(CTL_WORDS * 4);
      if (r % config.ranksPerThread === 0) {
        const n = Math.min(config.ranksPerThread, this.numRanks - r);
        const sizes: number[] = [];
        for (let k = 0; k < n; k++) sizes.push(INBOX_RING_BYTES, OUTPUT_RING_BYTES, eventBytes);
        rings = SpscRing.allocateMany(sizes);
      }
      const k = 3 * (r % config.ranksPerThread);
      const inboxSab = rings[k] as RingMemory;
      const outputSab = rings[k + 1] as RingMemory;
      const countersSab = new SharedArrayBuffer(this.layout.floatsPerRank * 8);
      this.countersSab.push(countersSab);
      this.counters.push(new Float64Array(countersSab));
      this.slots.push({
        rank: r,
        workerIndex,
        dpRank: r % config.dataParallelSize,
        workerId: config.workerIds?.[workerIndex] ?? workerIdFor(config.seed, workerIndex),
        ctlSab,
        ctl: new Int32Array(ctlSab),
        eventsSab: rings[k + 2] as RingMemory,
        inboxSab,
        inbox: new SpscRing(inboxSab),
        outputSab,
        output: new SpscRing(outputSab),
        inflight: 0,
        restarts: 0,
        thread: Math.floor(r / config.ranksPerThread),
        pendingAborts: [],
        pendingAdds: [],
      });
    }
    for (let t = 0; t * config.ranksPerThread < this.numRanks; t++) {
      const wakeSab = new SharedArrayBuffer(threadWakeBytes(config.ranksPerThread));
      const ranks: number[] = [];
      for (let r = t * config.ranksPerThread; r < Math.min(this.numRanks, (t + 1) * config.ranksPerThread); r++) ranks.push(r);
      const largeInboxSab = SpscRing.allocate(largeInboxRingBytes(config.maxModelLen));
      this.threads.push({ index: t, ranks, wakeSab, wake: new Int32Array(wakeSab), alive: false, everRan: false, largeInboxSab, largeInbox: new SpscRing(largeInboxSab) });
    }
    const load: RankLoadView = {
      numRanks: this.numRanks,
      running: (r) => (this.counters[r] as Float64Array)[Scalar.running] as number,
      waiting: (r) => Math.max(0, (this.slots[r] as RankSlot).inflight - ((this.counters[r] as Float64Array)[Scalar.running] as number)),
      activeBlocks: (r) => (this.counters[r] as Float64Array)[Scalar.activeBlocks] as number,
      totalBlocks: () => this.numGpuBlocks,
    };
    this.router = createRouter(config.router, load, {
      seed: config.seed,
      kvOverlapScoreWeight: config.kvOverlapScoreWeight,
      ...(config.routerTemperature === undefined ? {} : { routerTemperature: config.routerTemperature }),
      blockSize: this.blockSize,
    });
    this.fleetMetrics = new FleetMetrics(this);
  }

  /** Start the publisher and every rank; resolves when all ranks run. */
  static async start(config: ClusterConfig): Promise<Coordinator> {
    const c = new Coordinator(config);
    await c.startThreads();
    return c;
  }

  private async startThreads(): Promise<void> {
    const cfg = this.config;
    this.publisher = await startPublisher({
      rings: this.slots.map((s) => s.eventsSab),
      doorbell: this.publisherBellSab,
      rankWorkerIds: this.slots.map((s) => s.workerId),
      rankDpRanks: this.slots.map((s) => s.dpRank),
      natsUrl: cfg.natsUrl,
      namespace: cfg.namespace,
      component: cfg.component,
      endpoint: cfg.endpoint ?? 'generate',
      dynamoWire: cfg.dynamoWire ?? 'current',
      zmq: cfg.zmq ?? null,
      natsVllm: cfg.kvEventsFormat !== 'dynamo',
      eventsFile: cfg.eventsFile,
      cpus: cfg.publisherCpus === null ? null : [...cfg.publisherCpus],
    });
    // The publisher's failures never stop serving: ranks count what they cannot hand over.
    this.publisher.on('error', (err) => process.stderr.write(`mockfleet: publisher error: ${err.message}\n`));
    this.publisher.on('warning', (message) => process.stderr.write(`mockfleet: publisher: ${message}\n`));
    this.publisher.on('nats', (status, detail) => process.stderr.write(`mockfleet: NATS ${status}${detail === '' ? '' : ` (${detail})`}\n`));
    this.pool = new Piscina({
      filename: new URL('../../workers/rank-entry.cjs', import.meta.url).href,
      minThreads: this.threads.length,
      maxThreads: this.threads.length,
      concurrentTasksPerWorker: 1,
      idleTimeout: Infinity,
      recordTiming: false,
      atomics: 'disabled',
      resourceLimits: { maxOldGenerationSizeMb: cfg.rankHeapMb, maxYoungGenerationSizeMb: 2 },
    });
    // A pool-level error happens outside any task (a rank's own failure rejects its task instead).
    this.pool.on('error', (err: unknown) => {
      process.stderr.write(`mockfleet: rank pool error: ${String(err)}\n`);
    });
    for (const t of this.threads) this.launchThread(t, false);
    this.drainDone = this.drainLoop();
    try {
      await this.waitForRanks();
    } catch (err) {
      await this.shutdown(0);
      throw err;
    }
    for (const t of this.threads) t.everRan = true;
    this.ready = true;
  }

  /** Resolves when every rank runs; rejects with the first rank's startup failure. */
  private async waitForRanks(): Promise<void> {
    // Ranks come up roughly in order: resume from the first one not seen running (O(ranks) in all).
    let next = 0;
    for (;;) {
      if (this.startupError !== null) throw this.startupError;
      while (next < this.slots.length && Atomics.load((this.slots[next] as RankSlot).ctl, Ctl.state) === RankState.running) next++;
      if (next === this.slots.length) return;
      await new Promise((res) => setTimeout(res, 10));
    }
  }

  private rankTask(slot: RankSlot, restarted: boolean): RankTask {
    const cfg = this.config;
    Atomics.store(slot.ctl, Ctl.stop, 0);
    Atomics.store(slot.ctl, Ctl.fault, FaultKind.none);
    Atomics.store(slot.ctl, Ctl.state, RankState.starting);
    return {
      rank: slot.rank,
      workerIndex: slot.workerIndex,
      dpRank: slot.dpRank,
      workerId: slot.workerId.toString(),
      engineArgs: { ...cfg.engineArgs, seed: cfg.engineArgs.seed + slot.rank },
      profile: cfg.profile,
      speedupRatio: cfg.speedupRatio,
      decodeSpeedupRatio: cfg.decodeSpeedupRatio,
      maxModelLen: cfg.maxModelLen,
      heartbeatMs: cfg.heartbeatMs,
      ctl: slot.ctlSab,
      inbox: slot.inboxSab,
      output: slot.outputSab,
      events: slot.eventsSab,
      counters: this.countersSab[slot.rank] as SharedArrayBuffer,
      outputBell: this.outputBellSab,
      publisherBell: this.publisherBellSab,
      kvEventsFormat: cfg.kvEventsFormat,
      vllmEncoding: cfg.vllmEventEncoding,
      dynamoWire: cfg.dynamoWire ?? 'current',
      vllmBatches: (cfg.zmq ?? null) !== null,
      routerFeed: cfg.router === 'kv',
      restarted,
      generatedVocabulary: this.vocabularySab,
    };
  }

  private launchThread(thread: RankThread, restarted: boolean): void {
    const cfg = this.config;
    const pool = this.pool as Piscina;
    const ranks = thread.ranks.map((r) => this.rankTask(this.slots[r] as RankSlot, restarted));
    const task: ThreadTask = {
      ranks,
      wake: thread.wakeSab,
      largeInbox: thread.largeInboxSab,
      cpu: cfg.rankCpus === null ? null : (cfg.rankCpus[thread.index % cfg.rankCpus.length] as number),
    };
    thread.alive = true;
    const run = pool.run(task) as Promise<RankTaskResult>;
    this.threadDone[thread.index] = run.then(
      () => {
        thread.alive = false;
      },
      (err: unknown) => {
        thread.alive = false;
        this.onThreadDied(thread, err);
      },
    );
  }

  /**
   * A rank thread died (throw, exit, OOM): deliver what its ranks finished, fail the rest of
   * their requests, and start them again with empty caches.
   */
  private onThreadDied(thread: RankThread, err: unknown): void {
    const reason = err instanceof Error ? err.message : String(err);
    if (!this.ready && !thread.everRan) {
      // Failing before it ever ran (bad pinning, engine args): a startup error, not a crash to retry.
      this.startupError ??= err instanceof MockfleetError ? err : new RankFailedError(thread.ranks[0] as number, `failed to start: ${reason}`, err);
      return;
    }
    process.stderr.write(`mockfleet: rank thread ${thread.index} (ranks ${thread.ranks.join(',')}) died: ${reason}\n`);
    for (const r of thread.ranks) {
      const slot = this.slots[r] as RankSlot;
      this.drainRank(slot);
      for (const [id, p] of this.pending) {
        if (p.rank !== slot.rank) continue;
        this.pending.delete(id);
        this.finish(p, 'error', new RankFailedError(slot.rank, `rank thread died (${reason}); request aborted`, err));
      }
      slot.inflight = 0;
      slot.pendingAborts.length = 0;
      slot.pendingAdds.length = 0;
      this.inboxBacklog.delete(slot);
      this.router.onCleared(slot.rank);
      if (this.closing || this.closed) continue;
      slot.restarts++;
      const c = this.counters[slot.rank] as Float64Array;
      c[Scalar.restarts] = slot.restarts;
      c[Scalar.running] = 0;
      c[Scalar.waiting] = 0;
      c[Scalar.activeBlocks] = 0;
      c[Scalar.inactiveBlocks] = 0;
      c[Scalar.kvUsage] = 0;
      slot.inboxSab = SpscRing.allocate(slot.inbox.capacity);
      slot.inbox = new SpscRing(slot.inboxSab);
      slot.outputSab = SpscRing.allocate(OUTPUT_RING_BYTES);
      slot.output = new SpscRing(slot.outputSab);
    }
    if (this.closing || this.closed) return;
    thread.largeInboxSab = SpscRing.allocate(thread.largeInbox.capacity);
    thread.largeInbox = new SpscRing(thread.largeInboxSab);
    this.launchThread(thread, true);
  }

  /** Wake the thread that runs this rank (new inbox record, fault, stop), marking the rank for service. */
  private wake(slot: RankSlot): void {
    const t = this.threads[slot.thread] as RankThread;
    markThreadRank(t.wake, slot.rank - (t.ranks[0] as number));
  }

  isReady(): boolean {
    if (!this.ready || this.closing) return false;
    for (const s of this.slots) if (Atomics.load(s.ctl, Ctl.state) !== RankState.running) return false;
    return true;
  }

  ranks(): readonly RankInfo[] {
    return this.slots.map((s) => {
      const c = this.counters[s.rank] as Float64Array;
      const cpu = c[Scalar.cpu] as number;
      const tid = c[Scalar.tid] as number;
      return {
        rank: s.rank,
        workerIndex: s.workerIndex,
        dpRank: s.dpRank,
        workerId: s.workerId,
        cpu: cpu >= 0 ? cpu : null,
        tid: tid > 0 ? tid : null,
      };
    });
  }

  publisherHandle(): PublisherHandle | null {
    return this.publisher;
  }

  rankRestarts(rank: number): number {
    return (this.slots[rank] as RankSlot).restarts;
  }

  submit(req: GenerateRequest, cb: GenerateCallbacks): GenerateHandle {
    if (this.closing || this.closed) {
      throw new MockfleetError('MOCKFLEET_ERR_SHUTTING_DOWN', 'server is shutting down', { status: 503, type: 'server_error' });
    }
    if (!this.ready) throw new MockfleetError('MOCKFLEET_ERR_NOT_READY', 'ranks are still starting', { status: 503, type: 'server_error' });
    const n = checkGenerateRequest(req, this.maxModelLen);
    const rank = this.pickRank(req);
    const slot = this.slots[rank] as RankSlot;
    if (!(this.threads[slot.thread] as RankThread).alive || Atomics.load(slot.ctl, Ctl.state) !== RankState.running) {
      throw new MockfleetError('MOCKFLEET_ERR_RANK_RESTARTING', `rank ${rank} is restarting`, { status: 503, type: 'server_error' });
    }
    const running = (this.counters[rank] as Float64Array)[Scalar.running] as number;
    if (slot.inflight - running >= this.config.maxWaiting) {
      throw new OverloadedError(`rank ${rank} has ${slot.inflight - running} waiting requests (--max-waiting ${this.config.maxWaiting}); retry later`);
    }
    const id = this.nextId;
    this.nextId = this.nextId >= 0x7ffffff0 ? 1 : this.nextId + 1;
    const arrivalMs = performance.timeOrigin + performance.now();
    // FIFO per rank: once anything waits in the backlog, later requests queue behind it.
    const queued = slot.pendingAdds.length > 0 || !this.writeAdd(slot, id, req, arrivalMs);
    if (queued) {
      // The caller may reuse its prompt array once submit returns; the backlog keeps a copy.
      slot.pendingAdds.push({ id, req: { ...req, promptTokens: req.promptTokens.slice() }, arrivalMs });
      this.inboxBacklog.add(slot);
      this.outputBell.ring();
    } else {
      this.wake(slot);
    }
    slot.inflight++;
    (this.counters[rank] as Float64Array)[Scalar.inflight] = slot.inflight;
    this.pending.set(id, { id, cb, rank, promptTokens: n, completionTokens: 0, cachedTokens: 0, queued });
    // Router-side load bookkeeping (kv: prefill tokens and blocks booked on the rank until done).
    if (this.lastRoute !== null) this.router.onRouted(id, this.lastRoute, rank);
    return { rank, abort: () => this.abort(id) };
  }

  /** Write one add record (or a large-inbox marker) for `req`; false when the rank has no room now. */
  private writeAdd(slot: RankSlot, id: number, req: GenerateRequest, arrivalMs: number): boolean {
    const n = req.promptTokens.length;
    const v = this.inboxView;
    v.setUint32(0, InboxKind.add, true);
    v.setInt32(4, id, true);
    v.setInt32(8, req.maxTokens, true);
    v.setUint32(12, n, true);
    v.setFloat64(16, arrivalMs, true);
    v.setInt32(24, req.seed === undefined ? 0 : req.seed | 0, true);
    const paramsN = Math.min(INBOX_N_MAX, Math.max(0, req.paramsN ?? 1));
    v.setUint32(28, (req.seed === undefined ? 0 : INBOX_FLAG_SEEDED) | (req.stopAtEnd === true ? INBOX_FLAG_STOP : 0)
      | (req.streaming === false ? 0 : INBOX_FLAG_URGENT) | (paramsN << INBOX_N_SHIFT), true);
    new Uint32Array(this.inboxScratch.buffer, INBOX_ADD_HEADER, n).set(req.promptTokens);
    const bytes = INBOX_ADD_HEADER + 4 * n;
    if (bytes <= slot.inbox.maxRecordBytes) {
      if (!slot.inbox.tryWrite(this.inboxScratch, 0, bytes)) return false;
    } else {
      // The record goes to the thread's large inbox, then a marker in order in the rank's own;
      // the marker's room is checked first (only this thread writes either ring).
      const large = (this.threads[slot.thread] as RankThread).largeInbox;
      if (slot.inbox.capacity - slot.inbox.usedBytes() < 4 + INBOX_MARKER_BYTES || !large.tryWrite(this.inboxScratch, 0, bytes)) {
        return false;
      }
      v.setUint32(0, InboxKind.addLarge, true);
      if (!slot.inbox.tryWrite(this.inboxScratch, 0, INBOX_MARKER_BYTES)) throw new MockfleetError('MOCKFLEET_ERR_PROTOCOL', `rank ${slot.rank} inbox lost room for a marker`);
    }
    return true;
  }

  private pickRank(req: GenerateRequest): number {
    this.lastRoute = null;
    if (req.pinnedRank !== undefined) {
      if (!Number.isInteger(req.pinnedRank) || req.pinnedRank < 0 || req.pinnedRank >= this.numRanks) {
        throw new InvalidRequestError(`rank ${String(req.pinnedRank)} does not exist (0..${this.numRanks - 1})`, 'rank');
      }
      if (req.workerIndex !== undefined && Math.floor(req.pinnedRank / this.dataParallelSize) !== req.workerIndex) {
        throw new InvalidRequestError(`rank ${req.pinnedRank} does not belong to worker ${req.workerIndex}`, 'rank');
      }
      return req.pinnedRank;
    }
    const first = req.workerIndex === undefined ? 0 : req.workerIndex * this.dataParallelSize;
    const count = req.workerIndex === undefined ? this.numRanks : this.dataParallelSize;
    if (count === 1) return first;
    let numBlocks = 0;
    if (this.config.router === 'kv') {
      const maxBlocks = Math.floor(req.promptTokens.length / this.blockSize);
      if (maxBlocks > this.hashHi.length) {
        this.hashHi = new Uint32Array(maxBlocks);
        this.hashLo = new Uint32Array(maxBlocks);
      }
      numBlocks = computeSequenceHashes(req.promptTokens, req.promptTokens.length, this.blockSize, this.hashHi, this.hashLo);
    }
    this.lastRoute = {
      numBlocks,
      seqHashHi: this.hashHi,
      seqHashLo: this.hashLo,
      promptTokens: req.promptTokens.length,
      firstRank: first,
      numCandidateRanks: count,
    };
    return this.router.pick(this.lastRoute);
  }

  private abort(id: number): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.pending.delete(id);
    const slot = this.slots[p.rank] as RankSlot;
    if (p.queued) {
      // Never reached the rank: drop it from the backlog, nothing to tell the rank.
      const at = slot.pendingAdds.findIndex((q) => q.id === id);
      if (at >= 0) slot.pendingAdds.splice(at, 1);
    } else if (slot.pendingAborts.length > 0 || !this.writeAbort(slot, id)) {
      slot.pendingAborts.push(id);
      this.inboxBacklog.add(slot);
    }
    this.finish(p, 'abort');
  }

  private writeAbort(slot: RankSlot, id: number): boolean {
    this.abortView.setUint32(0, InboxKind.abort, true);
    this.abortView.setInt32(4, id, true);
    if (!slot.inbox.tryWrite(this.abortBytes, 0, INBOX_ABORT_BYTES)) return false;
    this.wake(slot);
    return true;
  }

  private finish(p: Pending, reason: 'length' | 'abort' | 'error', error?: MockfleetError): void {
    this.router.onRequestFinished(p.id);
    const slot = this.slots[p.rank] as RankSlot;
    if (slot.inflight > 0) slot.inflight--;
    (this.counters[p.rank] as Float64Array)[Scalar.inflight] = slot.inflight;
    const finish = {
      reason,
      rank: p.rank,
      promptTokens: p.promptTokens,
      completionTokens: p.completionTokens,
      cachedTokens: p.cachedTokens,
      ...(error === undefined ? {} : { error }),
    };
    p.cb.onFinish(finish);
  }

  /**
   * Main-thread consumer of the output rings of the ranks that rang. Yields a turn between drains
   * so HTTP writes go out.
   */
  private async drainLoop(): Promise<void> {
    const dirty = this.dirtyRanks;
    while (!this.closed) {
      let got = 0;
      const n = this.outputBell.takeDirty(dirty);
      for (let i = 0; i < n; i++) got += this.drainRank(this.slots[dirty[i] as number] as RankSlot);
      if (this.inboxBacklog.size > 0) this.flushInboxBacklog();
      // With a backlog, look again soon even if no rank rings (room appears as a rank reads).
      // Otherwise the timeout bounds how long lazily marked records wait (OUTPUT_LAZY).
      if (got === 0) await this.outputBell.wait(this.inboxBacklog.size > 0 ? 1 : OUTPUT_LAZY_MAX_MS);
      else await new Promise<void>((res) => setImmediate(res));
    }
  }

  /** Write queued aborts, then queued adds in arrival order, while each rank's inbox has room. */
  private flushInboxBacklog(): void {
    for (const slot of this.inboxBacklog) {
      while (slot.pendingAborts.length > 0 && this.writeAbort(slot, slot.pendingAborts[0] as number)) slot.pendingAborts.shift();
      let written = 0;
      while (written < slot.pendingAdds.length) {
        const q = slot.pendingAdds[written] as QueuedAdd;
        if (!this.writeAdd(slot, q.id, q.req, q.arrivalMs)) break;
        const p = this.pending.get(q.id);
        if (p !== undefined) p.queued = false;
        written++;
      }
      if (written > 0) {
        slot.pendingAdds.splice(0, written);
        this.wake(slot);
      }
      if (slot.pendingAborts.length === 0 && slot.pendingAdds.length === 0) this.inboxBacklog.delete(slot);
    }
  }

  /** Deliver every complete output record of one rank; returns the number of records. */
  private drainRank(slot: RankSlot): number {
    let records = 0;
    for (;;) {
      const len = slot.output.read(this.outScratch);
      if (len < 0) return records;
      records++;
      this.dispatch(slot.rank, len);
    }
  }

  private dispatch(rank: number, len: number): void {
    const v = this.outView;
    const u32 = this.outU32;
    const numTokens = v.getUint32(0, true);
    const numFinished = v.getUint32(4, true);
    const numAdmissions = v.getUint32(8, true);
    const numStored = v.getUint32(12, true);
    const numRemoved = v.getUint32(16, true);
    const cleared = v.getUint32(20, true) !== 0;
    let o = OUTPUT_HEADER;
    if (cleared) this.router.onCleared(rank);
    // Admissions first: cached tokens must be known before the first token reaches a client.
    let ao = OUTPUT_HEADER + 8 * (numTokens + numFinished);
    for (let i = 0; i < numAdmissions; i++, ao += 8) {
      const p = this.pending.get(v.getInt32(ao, true));
      if (p !== undefined && p.completionTokens === 0) p.cachedTokens = v.getInt32(ao + 4, true);
    }
    for (let i = 0; i < numTokens; i++, o += 8) {
      const p = this.pending.get(v.getInt32(o, true));
      if (p === undefined) continue;
      if (p.completionTokens === 0) this.router.onPrefillDone(p.id);
      p.completionTokens++;
      p.cb.onTokens(u32, (o + 4) >>> 2, 1);
    }
    for (let i = 0; i < numFinished; i++, o += 8) {
      const id = v.getInt32(o, true);
      const p = this.pending.get(id);
      if (p === undefined) continue;
      this.pending.delete(id);
      const reason = v.getUint32(o + 4, true);
      if (reason === FinishReason.length) this.finish(p, 'length');
      else if (reason === FinishReason.rejected) {
        this.finish(p, 'error', new InvalidRequestError(
          `request needs more KV cache than rank ${rank} has (${this.numGpuBlocks} blocks of ${this.blockSize} tokens)`,
          'prompt',
          400,
          'context_length_exceeded',
        ));
      } else this.finish(p, 'abort');
    }
    o = ao;
    if (numStored > 0) o = this.feedRouter(rank, o, numStored, true);
    if (numRemoved > 0) o = this.feedRouter(rank, o, numRemoved, false);
    if (o !== len) throw new MockfleetError('MOCKFLEET_ERR_PROTOCOL', `rank ${rank} output record length ${len} does not match its header (${o})`);
  }

  private feedRouter(rank: number, o: number, n: number, stored: boolean): number {
    if (n > this.hashHi.length) {
      this.hashHi = new Uint32Array(n);
      this.hashLo = new Uint32Array(n);
    }
    const v = this.outView;
    for (let i = 0; i < n; i++, o += 8) {
      this.hashHi[i] = v.getUint32(o, true);
      this.hashLo[i] = v.getUint32(o + 4, true);
    }
    if (stored) this.router.onStored(rank, n, this.hashHi, this.hashLo, 0);
    else this.router.onRemoved(rank, n, this.hashHi, this.hashLo, 0);
    return o;
  }

  /** Fault injection (--enable-fault-injection): make a rank throw, exit or run out of memory. */
  injectFault(rank: number, kind: FaultName): void {
    const slot = this.slots[rank];
    if (slot === undefined) throw new InvalidRequestError(`rank ${rank} does not exist (0..${this.numRanks - 1})`, 'rank');
    const code = kind === 'throw' ? FaultKind.throw : kind === 'exit' ? FaultKind.exit : FaultKind.oom;
    Atomics.store(slot.ctl, Ctl.fault, code);
    this.wake(slot);
  }

  metrics(workerIndex?: number, openMetrics?: boolean): Promise<Buffer[]> {
    return this.fleetMetrics.render(workerIndex, openMetrics === true);
  }

  metricsBody(workerIndex: number | undefined, openMetrics: boolean, keepText: boolean): Promise<MetricsBody> {
    return this.fleetMetrics.body(workerIndex, openMetrics, keepText);
  }

  /** Rank threads (ranks / --ranks-per-thread, rounded up). */
  get numThreads(): number {
    return this.threads.length;
  }

  /** Requests in flight (submitted, not finished). */
  get numPending(): number {
    return this.pending.size;
  }

  /**
   * Graceful stop: refuse new work, let in-flight requests finish for up to drainMs, abort the
   * rest, stop the ranks and flush the publisher.
   */
  async shutdown(drainMs: number): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    const deadline = Date.now() + drainMs;
    while (this.pending.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const id of [...this.pending.keys()]) this.abort(id);
    // Let the ranks process the aborts (their blocks are freed, events published) before stopping.
    await new Promise((r) => setTimeout(r, 20));
    for (const slot of this.slots) {
      Atomics.store(slot.ctl, Ctl.stop, 1);
      this.wake(slot);
    }
    await Promise.all(this.threadDone);
    this.closed = true;
    this.outputBell.ring();
    await this.drainDone;
    if (this.pool !== null) await this.pool.destroy();
    if (this.publisher !== null) await this.publisher.flushAndClose(Math.max(1000, deadline - Date.now()));
  }
}
