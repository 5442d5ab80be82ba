/**
 * Frontend side of a fleet spanning hosts: a Backend (and dashboard source) over the frontend's
 * own ranks (optional local Coordinator) plus every `mockfleet worker` of the fleet, discovered
 * and kept alive with the NATS micro-service framework (@nats-io/services PING), fed with load
 * snapshots (`mockfleet.{fleet}.load.*`, also a heartbeat) and with the KV events every rank
 * publishes (remote-kv-events.ts). Ranks live in "slots": local ranks are slots 0..L-1, each
 * worker that joins takes a contiguous run of free slots and gives them back when it leaves.
 * The router spans all slots; empty slots look infinitely loaded and are never picked.
 */
import { checkGenerateRequest } from './backend.js';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { connect, Empty } from '@nats-io/transport-node';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { Svcm } from '@nats-io/services';
import type { Service, ServiceClient, ServiceIdentity } from '@nats-io/services';
import type { Backend, GenerateCallbacks, GenerateHandle, GenerateRequest, RankInfo } from './backend.js';
import type { Coordinator } from './coordinator.js';
import { computeSequenceHashes } from '../engine/engine.js';
import { createRouter, KvRouter } from '../router/index.js';
import type { RankLoadView, RouteRequest, Router, RouterPolicy } from '../router/types.js';
import { Scalar } from '../protocol/rank-counters.js';
import type { CounterLayout } from '../protocol/rank-counters.js';
import { InvalidConfigError, InvalidRequestError, MockfleetError } from '../util/errors.js';
import { KvEventConsumer } from './remote-kv-events.js';
import { expositionText, mergeExpositions } from './remote-metrics.js';
import type { ExpositionPart } from './remote-metrics.js';
import {
  FinishCode,
  LOAD_HEADER_WORDS,
  LoadFlag,
  OutputKind,
  RequestKind,
  SubmitFlag,
  WordReader,
  WordWriter,
  fleetFrontendServiceName,
  fleetServiceName,
  fleetSubjects,
  lastToken,
  maxBatchBytes,
} from './remote-wire.js';
import { FLEET_PROTOCOL_VERSION } from './remote-worker.js';
import type { WorkerMetadata } from './remote-worker.js';

const gunzipAsync = promisify(gunzip);
const OPENMETRICS_REQUEST = new TextEncoder().encode('openmetrics');
/** Discovery/liveness: PING the fleet's service every POLL_MS, collecting answers for PING_WAIT_MS. */
const POLL_MS = 250;
const PING_WAIT_MS = 200;
const METRICS_TIMEOUT_MS = 1000;
/** A poll round later than this (ms) means our own event loop was busy. */
const LOOP_LAG_MS = 250;
/** On-time PING rounds a worker must miss (besides --fleet-liveness-ms of silence) to be dropped. */
const MISSED_ROUNDS = 3;
const EMPTY_LOAD = 1e9;

export interface FleetFrontendOptions {
  readonly fleet: string;
  readonly natsUrl: string;
  readonly local: Coordinator | null;
  readonly modelName: string;
  readonly router: RouterPolicy;
  readonly kvOverlapScoreWeight: number;
  /** kv router softmax temperature (0 = lowest cost). */
  readonly routerTemperature: number;
  readonly seed: number;
  readonly blockSize: number;
  readonly numGpuBlocks: number;
  readonly maxModelLen: number;
  readonly dataParallelSize: number;
  readonly layout: CounterLayout;
  readonly speedupRatio: number;
  readonly namespace: string;
  readonly component: string;
  /** A worker silent (no PING answer, load, output) for longer than this is dropped. */
  readonly livenessMs: number;
  readonly log: (line: string) => void;
}

/** A worker that stopped responding or lost NATS while requests ran on it. */
export class WorkerLostError extends MockfleetError {
  constructor(message: string) {
    super('MOCKFLEET_ERR_WORKER_LOST', message, { status: 503, type: 'server_error' });
  }
}

class RemoteWorker {
  readonly workerIds: bigint[];
  readonly numRanks: number;
  readonly dp: number;
  readonly numGpuBlocks: number;
  readonly requests = new WordWriter();
  readonly requestSubject: string;
  readonly outputSubject: string;
  slots: number[] = [];
  lastSeen = Date.now();
  missedRounds = 0;
  epoch = 1;
  draining = false;
  flushQueued = false;
  constructor(
    readonly id: string,
    readonly md: WorkerMetadata,
    fleet: string,
    frontendId: string,
  ) {
    this.workerIds = md.worker_ids.split(',').map((s) => BigInt(s));
    this.numRanks = Number(md.ranks);
    this.dp = Number(md.data_parallel_size);
    this.numGpuBlocks = Number(md.num_gpu_blocks);
    this.requestSubject = fleetSubjects.requests(fleet, id);
    this.outputSubject = fleetSubjects.output(fleet, frontendId, id);
  }
  describe(): string {
    return `worker ${this.id} (host ${this.md.host}, pid ${this.md.pid}, worker_id ${this.md.worker_ids})`;
  }
}

const SLOT_EMPTY = 0;
const SLOT_LOCAL = 1;
const SLOT_REMOTE = 2;

interface Slot {
  kind: number;
  worker: RemoteWorker | null;
  localRank: number;
  dpRank: number;
  workerId: bigint;
}

interface RemotePending {
  readonly cb: GenerateCallbacks;
  readonly slot: number;
  readonly blocks: number;
  readonly worker: RemoteWorker;
  readonly epoch: number;
  readonly promptTokens: number;
  completionTokens: number;
}

export class FleetBackend implements Backend {
  readonly modelName: string;
  readonly blockSize: number;
  readonly numGpuBlocks: number;
  readonly maxModelLen: number;
  readonly dataParallelSize: number;
  readonly layout: CounterLayout;
  readonly metricsContentType = 'text/plain; version=0.0.4; charset=utf-8';
  readonly frontendId = randomBytes(6).toString('hex');
  readonly config: { readonly speedupRatio: number; readonly router: string; readonly natsUrl: string | null };
  /** Called after the slot space grew (the dashboard rebuilds its per-rank state). */
  onCapacityChange: (() => void) | null = null;

  counters: Float64Array[] = [];
  private slots: Slot[] = [];
  private own = new Int32Array(0);
  /** KV blocks of this frontend's in-flight prompts per slot, now and when the last snapshot came. */
  private ownBlocks = new Int32Array(0);
  private ownBlocksAtSnap = new Int32Array(0);
  private router!: Router;
  private readonly workers = new Map<string, RemoteWorker>();
  private readonly refused = new Set<string>();
  private readonly byWorkerId = new Map<bigint, number[]>();
  private readonly pending = new Map<number, RemotePending>();
  private readonly reader = new WordReader();
  private readonly subs: Subscription[] = [];
  private readonly kv: KvEventConsumer;
  private readonly client: ServiceClient;
  /** The route of the current submit() when the router picked its slot (null: pinned or one live rank). */
  private lastRoute: RouteRequest | null = null;
  private hashHi = new Uint32Array(4096);
  private hashLo = new Uint32Array(4096);
  private nextId = 1;
  private connected = true;
  private closing = false;
  private closed = false;
  private pollDone: Promise<void> = Promise.resolve();
  private pollTimer: NodeJS.Timeout | null = null;
  private wakePoll: (() => void) | null = null;
  private service: Service | null = null;
  private lastPollEnd = Date.now();

  private constructor(
    readonly opts: FleetFrontendOptions,
    private readonly nc: NatsConnection,
  ) {
    this.modelName = opts.modelName;
    this.blockSize = opts.blockSize;
    this.numGpuBlocks = opts.numGpuBlocks;
    this.maxModelLen = opts.maxModelLen;
    this.dataParallelSize = opts.dataParallelSize;
    this.layout = opts.layout;
    this.config = { speedupRatio: opts.speedupRatio, router: opts.router, natsUrl: opts.natsUrl };
    const local = opts.local;
    const numLocal = local === null ? 0 : local.numRanks;
    this.resize(Math.max(16, nextPow2(numLocal + 8)));
    if (local !== null) {
      for (const r of local.ranks()) {
        this.slots[r.rank] = { kind: SLOT_LOCAL, worker: null, localRank: r.rank, dpRank: r.dpRank, workerId: r.workerId };
        this.counters[r.rank] = local.counters[r.rank] as Float64Array;
        this.mapWorkerId(r.workerId, r.dpRank, r.rank);
      }
    }
    this.client = new Svcm(nc).client({ strategy: 'timer', maxWait: PING_WAIT_MS } as never);
    this.kv = new KvEventConsumer(nc, opts.namespace, opts.component, {
      onStored: (wid, dp, n, hi, lo) => {
        const s = this.byWorkerId.get(wid)?.[dp];
        if (s !== undefined && n > 0) this.router.onStored(s, n, hi, lo, 0);
      },
      onRemoved: (wid, dp, n, hi, lo) => {
        const s = this.byWorkerId.get(wid)?.[dp];
        if (s !== undefined && n > 0) this.router.onRemoved(s, n, hi, lo, 0);
      },
      onCleared: (wid, dp) => {
        const s = this.byWorkerId.get(wid)?.[dp];
        if (s !== undefined) this.router.onCleared(s);
      },
    }, opts.log);
    this.subs.push(nc.subscribe(fleetSubjects.outputAll(opts.fleet, this.frontendId), { callback: (err, msg) => {
      if (err === null) this.onOutput(msg);
    } }));
    this.subs.push(nc.subscribe(fleetSubjects.loadAll(opts.fleet), { callback: (err, msg) => {
      if (err === null) this.onLoad(msg);
    } }));
  }

  static async start(opts: FleetFrontendOptions): Promise<FleetBackend> {
    const nc = await connect({
      servers: opts.natsUrl,
      name: `mockfleet-frontend-${opts.fleet}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
      reconnectJitter: 20,
      pingInterval: 10_000,
    }).catch((err: unknown) => {
      throw new InvalidConfigError('--nats', `cannot connect to ${opts.natsUrl}: ${err instanceof Error ? err.message : String(err)}`);
    });
    const f = new FleetBackend(opts, nc);
    try {
      // Registered so workers can tell when this frontend is gone (and abort its requests).
      f.service = await new Svcm(nc).add({
        name: fleetFrontendServiceName(opts.fleet),
        version: FLEET_PROTOCOL_VERSION,
        description: 'mockfleet fleet frontend',
        metadata: { fleet: opts.fleet, frontend_id: f.frontendId },
      });
    } catch (err) {
      await nc.close();
      throw err;
    }
    void f.watchStatus();
    await f.poll();
    f.pollDone = f.pollLoop();
    return f;
  }

  // ------------------------------------------------------------------ slots and routing

  get numRanks(): number {
    return this.slots.length;
  }

  get numWorkers(): number {
    let n = this.opts.local === null ? 0 : this.opts.local.numWorkers;
    for (const w of this.workers.values()) n += w.workerIds.length;
    return n;
  }

  private resize(capacity: number): void {
    const old = this.slots.length;
    for (let s = old; s < capacity; s++) {
      this.slots.push({ kind: SLOT_EMPTY, worker: null, localRank: -1, dpRank: 0, workerId: 0n });
      this.counters.push(new Float64Array(this.layout.floatsPerRank));
    }
    const grow = (a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> => {
      const b = new Int32Array(capacity);
      b.set(a);
      return b;
    };
    this.own = grow(this.own);
    this.ownBlocks = grow(this.ownBlocks);
    this.ownBlocksAtSnap = grow(this.ownBlocksAtSnap);
    const load: RankLoadView = {
      numRanks: capacity,
      running: (r) => (this.routable(r) ? ((this.counters[r] as Float64Array)[Scalar.running] as number) : EMPTY_LOAD),
      waiting: (r) => {
        if (!this.routable(r)) return EMPTY_LOAD;
        const c = this.counters[r] as Float64Array;
        const running = c[Scalar.running] as number;
        return Math.max(0, (c[Scalar.inflight] as number) - running, (this.own[r] as number) - running);
      },
      activeBlocks: (r) => {
        if (!this.routable(r)) return EMPTY_LOAD * EMPTY_LOAD;
        const snap = (this.counters[r] as Float64Array)[Scalar.activeBlocks] as number;
        if ((this.slots[r] as Slot).kind === SLOT_LOCAL) return snap;
        // A remote snapshot is up to 250 ms old: correct it by what this frontend routed (or
        // saw finish) since, so a rank whose request just ended is not still counted busy.
        return Math.max(0, snap - (this.ownBlocksAtSnap[r] as number) + (this.ownBlocks[r] as number));
      },
      totalBlocks: (r) => {
        const s = this.slots[r] as Slot;
        return s.kind === SLOT_LOCAL ? this.numGpuBlocks : s.kind === SLOT_REMOTE ? (s.worker as RemoteWorker).numGpuBlocks : 0;
      },
    };
    this.router = createRouter(this.opts.router, load, {
      seed: this.opts.seed,
      kvOverlapScoreWeight: this.opts.kvOverlapScoreWeight,
      routerTemperature: this.opts.routerTemperature,
      blockSize: this.blockSize,
    });
    if (old > 0) {
      this.opts.log(`mockfleet: fleet grew past ${old} rank slots; now ${capacity}${this.opts.router === 'kv' ? ' (kv router index starts empty again)' : ''}`);
      this.onCapacityChange?.();
    }
  }

  private routable(r: number): boolean {
    const s = this.slots[r];
    if (s === undefined || s.kind === SLOT_EMPTY) return false;
    if (s.kind === SLOT_REMOTE) return this.connected && !(s.worker as RemoteWorker).draining;
    return true;
  }

  private mapWorkerId(id: bigint, dpRank: number, slot: number): void {
    let a = this.byWorkerId.get(id);
    if (a === undefined) {
      a = [];
      this.byWorkerId.set(id, a);
    }
    a[dpRank] = slot;
  }

  private pick(req: GenerateRequest): number {
    this.lastRoute = null;
    if (req.workerIndex !== undefined) throw new InvalidRequestError('per-worker endpoints are not served by a fleet frontend', null);
    if (req.pinnedRank !== undefined) {
      const r = req.pinnedRank;
      if (!Number.isInteger(r) || r < 0 || r >= this.slots.length) throw new InvalidRequestError(`rank ${String(r)} does not exist (0..${this.slots.length - 1})`, 'rank');
      if (!this.routable(r)) throw new MockfleetError('MOCKFLEET_ERR_RANK_UNAVAILABLE', `rank slot ${r} holds no live rank`, { status: 503, type: 'server_error' });
      return r;
    }
    let live = 0, first = -1;
    for (let r = 0; r < this.slots.length; r++) {
      if (!this.routable(r)) continue;
      live++;
      if (first < 0) first = r;
    }
    if (live === 0) {
      throw new MockfleetError(
        'MOCKFLEET_ERR_NO_RANKS',
        this.connected
          ? `fleet "${this.opts.fleet}" has no ranks yet: start \`mockfleet worker --nats URL --fleet ${this.opts.fleet}\``
          : 'the frontend lost its NATS connection and has no local ranks; retry',
        { status: 503, type: 'server_error' },
      );
    }
    if (live === 1) return first;
    let numBlocks = 0;
    if (this.opts.router === 'kv') {
      const maxBlocks = Math.floor(req.promptTokens.length / this.blockSize);
      if (maxBlocks > this.hashHi.length) {
        this.hashHi = new Uint32Array(maxBlocks);
        this.hashLo = new Uint32Array(maxBlocks);
      }
      numBlocks = computeSequenceHashes(req.promptTokens, req.promptTokens.length, this.blockSize, this.hashHi, this.hashLo);
    }
    const rr: RouteRequest = { numBlocks, seqHashHi: this.hashHi, seqHashLo: this.hashLo, promptTokens: req.promptTokens.length, firstRank: 0, numCandidateRanks: this.slots.length };
    this.lastRoute = rr;
    const picked = this.router.pick(rr);
    if (this.routable(picked)) return picked;
    if (this.router instanceof KvRouter) {
      // The kv cost knows nothing of empty slots: the cheapest live one of this pick's costs.
      const cost = this.router.cost;
      let best = first;
      for (let r = 0; r < this.slots.length; r++) if (this.routable(r) && (cost[r] as number) < (cost[best] as number)) best = r;
      return best;
    }
    // round_robin / random land on empty slots now and then: ask again (bounded).
    for (let i = 0; i < 2 * this.slots.length; i++) {
      const r = this.router.pick(rr);
      if (this.routable(r)) return r;
    }
    return first;
  }

  // ------------------------------------------------------------------ Backend

  isReady(): boolean {
    if (this.closing) return false;
    if (this.opts.local !== null && !this.opts.local.isReady()) return false;
    for (let r = 0; r < this.slots.length; r++) if (this.routable(r)) return true;
    return false;
  }

  ranks(): readonly RankInfo[] {
    const local = this.opts.local?.ranks();
    return this.slots.map((s, r) => {
      const li = s.kind === SLOT_LOCAL ? local?.[s.localRank] : undefined;
      return { rank: r, workerIndex: Math.floor(r / this.dataParallelSize), dpRank: s.dpRank, workerId: s.workerId, cpu: li?.cpu ?? null, tid: li?.tid ?? null };
    });
  }

  rankRestarts(rank: number): number {
    return ((this.counters[rank] as Float64Array)[Scalar.restarts] as number) ?? 0;
  }

  publisherHandle(): ReturnType<Coordinator['publisherHandle']> {
    return this.opts.local?.publisherHandle() ?? null;
  }

  submit(req: GenerateRequest, cb: GenerateCallbacks): GenerateHandle {
    if (this.closing) throw new MockfleetError('MOCKFLEET_ERR_SHUTTING_DOWN', 'server is shutting down', { status: 503, type: 'server_error' });
    const n = checkGenerateRequest(req, this.maxModelLen);
    const r = this.pick(req);
    const slot = this.slots[r] as Slot;
    const route = this.lastRoute;
    if (slot.kind === SLOT_LOCAL) {
      // The fleet router books local requests too (kv: router-side load), under a fleet id.
      const fid = this.takeId();
      const router = this.router;
      let prefilled = false;
      const h = (this.opts.local as Coordinator).submit({ ...req, pinnedRank: slot.localRank, workerIndex: undefined }, {
        onTokens: (ids, start, count) => {
          if (!prefilled) {
            prefilled = true;
            router.onPrefillDone(fid);
          }
          cb.onTokens(ids, start, count);
        },
        onFinish: (f) => {
          router.onRequestFinished(fid);
          cb.onFinish(f);
        },
      });
      if (route !== null) router.onRouted(fid, route, r);
      return h;
    }
    const w = slot.worker as RemoteWorker;
    const limit = maxBatchBytes(this.nc);
    if (32 + 4 * n > limit) {
      throw new InvalidRequestError(`a prompt of ${n} tokens does not fit one NATS message of the fleet's request plane (${limit} bytes; raise the server's max_payload)`, 'prompt', 413);
    }
    const id = this.takeId();
    const b = w.requests;
    b.u32x2(RequestKind.submit, id);
    b.u32x2(slot.localRank, req.maxTokens);
    b.u32x2((req.seed === undefined ? 0 : SubmitFlag.seeded) | (req.stopAtEnd === true ? SubmitFlag.stopAtEnd : 0), req.seed ?? 0);
    b.u32x2(req.paramsN ?? 1, n);
    b.array(req.promptTokens, 0, n);
    if (b.length * 4 >= limit) this.publishRequests(w);
    else this.queueRequests(w);
    const blocks = Math.ceil(n / this.blockSize);
    this.pending.set(id, { cb, slot: r, blocks, worker: w, epoch: w.epoch, promptTokens: n, completionTokens: 0 });
    this.own[r]!++;
    this.ownBlocks[r]! += blocks;
    if (route !== null) this.router.onRouted(id, route, r);
    return { rank: r, abort: () => this.abortRemote(id) };
  }

  private takeId(): number {
    const id = this.nextId;
    this.nextId = this.nextId >= 0x7ffffff0 ? 1 : this.nextId + 1;
    return id;
  }

  private abortRemote(id: number): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.sendAbort(p.worker, id);
    this.finishRemote(id, p, 'abort');
  }

  private sendAbort(w: RemoteWorker, id: number): void {
    if (!this.workers.has(w.id)) return;
    w.requests.u32x2(RequestKind.abort, id);
    this.queueRequests(w);
  }

  /** Submits and aborts to one worker go out once per event-loop turn, as one message. */
  private queueRequests(w: RemoteWorker): void {
    if (w.flushQueued) return;
    w.flushQueued = true;
    setImmediate(() => {
      w.flushQueued = false;
      this.publishRequests(w);
    });
  }

  private publishRequests(w: RemoteWorker): void {
    if (w.requests.length === 0) return;
    const data = w.requests.take();
    w.requests.reset();
    if (this.nc.isClosed()) return;
    try {
      this.nc.publish(w.requestSubject, data, { reply: w.outputSubject });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      this.opts.log(`mockfleet: requests to ${w.describe()} not sent: ${why}`);
      this.failWorkerRequests(w, `requests to ${w.describe()} could not be sent over NATS (${why})`);
    }
  }

  private finishRemote(id: number, p: RemotePending, reason: 'length' | 'abort' | 'error', cached = 0, error?: MockfleetError, promptTokens = p.promptTokens): void {
    this.pending.delete(id);
    this.router.onRequestFinished(id);
    if (this.own[p.slot]! > 0) this.own[p.slot]!--;
    this.ownBlocks[p.slot] = Math.max(0, (this.ownBlocks[p.slot] as number) - p.blocks);
    p.cb.onFinish({ reason, rank: p.slot, promptTokens, completionTokens: p.completionTokens, cachedTokens: cached, ...(error === undefined ? {} : { error }) });
  }

  private failWorkerRequests(w: RemoteWorker | null, message: string, olderThanEpoch = Infinity): void {
    for (const [id, p] of [...this.pending]) {
      if ((w === null || p.worker === w) && p.epoch < olderThanEpoch) {
        this.finishRemote(id, p, 'error', 0, new WorkerLostError(message));
        if (w !== null && this.workers.has(w.id)) this.sendAbort(w, id);
      }
    }
  }

  // ------------------------------------------------------------------ messages from workers

  private onOutput(msg: Msg): void {
    const w = this.workers.get(lastToken(msg.subject));
    if (w === undefined) return;
    w.lastSeen = Date.now();
    const r = this.reader;
    r.load(msg.data);
    const u = r.u32;
    this.checkEpoch(w, u[0] as number);
    let o = 1;
    while (o < r.length) {
      const kind = u[o] as number;
      const id = u[o + 1] as number;
      if (kind === OutputKind.tokenPairs) {
        const n = id;
        const end = o + 2 + 2 * n;
        for (let q = o + 2; q < end; q += 2) {
          const p = this.pending.get(u[q] as number);
          if (p === undefined) continue;
          if (p.completionTokens === 0) this.router.onPrefillDone(u[q] as number);
          p.completionTokens++;
          p.cb.onTokens(u, q + 1, 1);
        }
        o = end;
      } else if (kind === OutputKind.tokens) {
        const count = u[o + 2] as number;
        const p = this.pending.get(id);
        if (p !== undefined) {
          if (p.completionTokens === 0) this.router.onPrefillDone(id);
          p.completionTokens += count;
          p.cb.onTokens(u, o + 3, count);
        }
        o += 3 + count;
      } else if (kind === OutputKind.finish) {
        const code = u[o + 2] as number, promptTokens = u[o + 3] as number, completion = u[o + 4] as number, cached = u[o + 5] as number;
        const [json, next] = r.string(o + 6);
        o = next;
        const p = this.pending.get(id);
        if (p === undefined) continue;
        p.completionTokens = completion;
        if (code === FinishCode.length) this.finishRemote(id, p, 'length', cached, undefined, promptTokens);
        else if (code === FinishCode.abort) this.finishRemote(id, p, 'abort', cached, undefined, promptTokens);
        else this.finishRemote(id, p, 'error', cached, remoteError(json, w), promptTokens);
      } else {
        this.opts.log(`mockfleet: output from ${w.describe()} has unknown record kind ${kind}; rest ignored`);
        return;
      }
    }
  }

  private checkEpoch(w: RemoteWorker, epoch: number): void {
    if (epoch <= w.epoch) return;
    w.epoch = epoch;
    this.failWorkerRequests(w, `${w.describe()} lost its NATS connection and reconnected; requests in flight on it were lost`, epoch);
  }

  private onLoad(msg: Msg): void {
    const w = this.workers.get(lastToken(msg.subject));
    if (w === undefined) return;
    w.lastSeen = Date.now();
    const r = this.reader;
    r.load(msg.data);
    const h = r.u32;
    this.checkEpoch(w, h[0] as number);
    const flags = h[1] as number;
    if ((flags & LoadFlag.gone) !== 0) {
      this.removeWorker(w, 'left the fleet');
      return;
    }
    w.draining = (flags & LoadFlag.draining) !== 0;
    const first = h[2] as number, n = h[3] as number, fpr = h[4] as number;
    if (fpr !== this.layout.floatsPerRank) return;
    const f = r.f64(LOAD_HEADER_WORDS, n * fpr);
    for (let i = 0; i < n; i++) {
      const slot = w.slots[first + i];
      if (slot === undefined) continue;
      (this.counters[slot] as Float64Array).set(f.subarray(i * fpr, (i + 1) * fpr));
      this.ownBlocksAtSnap[slot] = this.ownBlocks[slot] as number;
    }
  }

  // ------------------------------------------------------------------ discovery and liveness

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      const server = 'server' in s ? String(s.server) : '';
      if (s.type === 'disconnect') {
        this.connected = false;
        this.opts.log(`mockfleet: frontend lost its NATS connection (${server}); failing ${this.pending.size} remote requests`);
        this.failWorkerRequests(null, `the frontend lost its NATS connection (${server}); request aborted`);
      } else if (s.type === 'reconnect') {
        this.connected = true;
        const now = Date.now();
        for (const w of this.workers.values()) w.lastSeen = now;
        this.opts.log(`mockfleet: frontend reconnected to NATS (${server})`);
      }
    }
  }

  private async pollLoop(): Promise<void> {
    while (!this.closed) {
      await new Promise<void>((res) => {
        this.wakePoll = res;
        this.pollTimer = setTimeout(res, POLL_MS - PING_WAIT_MS);
      });
      if (this.closed) return;
      await this.poll();
    }
  }

  private async poll(): Promise<void> {
    const started = Date.now();
    const lateStart = started - this.lastPollEnd > POLL_MS - PING_WAIT_MS + LOOP_LAG_MS;
    if (this.connected && !this.nc.isClosed()) {
      try {
        const it = await this.client.ping(fleetServiceName(this.opts.fleet));
        for await (const p of it) this.onPing(p);
      } catch {
        // No responders (no worker yet) or a disconnect mid-ping: liveness below decides.
      }
    }
    const now = Date.now();
    this.lastPollEnd = now;
    if (!this.connected) return;
    // A round during which this process's own event loop was stalled (timers late) says
    // nothing about the workers: their answers may sit unread in the socket. Only rounds that
    // ran on time count as missed, and a worker must miss several besides being silent.
    const onTime = !lateStart && now - started < PING_WAIT_MS + LOOP_LAG_MS;
    for (const w of [...this.workers.values()]) {
      if (w.lastSeen >= started) w.missedRounds = 0;
      else if (onTime) w.missedRounds++;
      if (w.missedRounds >= MISSED_ROUNDS && now - w.lastSeen > this.opts.livenessMs) {
        this.removeWorker(w, `stopped responding (nothing for ${now - w.lastSeen} ms)`);
      }
    }
  }

  private onPing(p: ServiceIdentity): void {
    const w = this.workers.get(p.id);
    if (w !== undefined) {
      w.lastSeen = Date.now();
      return;
    }
    if (this.refused.has(p.id) || this.closing) return;
    const md = (p.metadata ?? {}) as Partial<WorkerMetadata>;
    const why = this.incompatibility(md);
    if (why !== null) {
      this.refused.add(p.id);
      this.opts.log(`mockfleet: refusing worker ${p.id} (host ${md.host ?? '?'}, pid ${md.pid ?? '?'}): ${why}`);
      return;
    }
    this.addWorker(new RemoteWorker(p.id, md as WorkerMetadata, this.opts.fleet, this.frontendId));
  }

  private incompatibility(md: Partial<WorkerMetadata>): string | null {
    if (md.fleet !== this.opts.fleet || md.worker_ids === undefined || md.ranks === undefined) return 'its registration metadata is not a mockfleet worker\'s';
    if (md.model !== this.modelName) return `it serves model "${md.model}", this frontend "${this.modelName}" (use the same --model)`;
    if (md.block_size !== String(this.blockSize)) return `its --block-size is ${md.block_size}, this frontend's ${this.blockSize} (KV routing needs the same)`;
    if (md.floats_per_rank !== String(this.layout.floatsPerRank)) {
      return `its metric layout differs (max-model-len ${md.max_model_len} vs ${this.maxModelLen}); start the frontend with the workers' --max-model-len / --num-gpu-blocks / --block-size`;
    }
    for (const id of md.worker_ids.split(',')) {
      let v: bigint;
      try {
        v = BigInt(id);
      } catch {
        return `worker id "${id}" is not a number`;
      }
      if (this.byWorkerId.has(v)) return `duplicate worker id ${id}: another worker of fleet "${this.opts.fleet}" already registered it`;
    }
    return null;
  }

  private addWorker(w: RemoteWorker): void {
    let start = this.findFree(w.numRanks);
    while (start < 0) {
      this.resize(this.slots.length * 2);
      start = this.findFree(w.numRanks);
    }
    for (let i = 0; i < w.numRanks; i++) {
      const s = start + i;
      const dpRank = i % w.dp;
      const workerId = w.workerIds[Math.floor(i / w.dp)] as bigint;
      this.slots[s] = { kind: SLOT_REMOTE, worker: w, localRank: i, dpRank, workerId };
      this.counters[s] = new Float64Array(this.layout.floatsPerRank);
      this.own[s] = 0;
      this.ownBlocks[s] = 0;
      this.ownBlocksAtSnap[s] = 0;
      this.mapWorkerId(workerId, dpRank, s);
      w.slots.push(s);
    }
    this.workers.set(w.id, w);
    this.opts.log(`mockfleet: ${w.describe()} joined with ${w.numRanks} ranks (slots ${start}..${start + w.numRanks - 1})`);
  }

  private findFree(n: number): number {
    let run = 0;
    for (let s = 0; s < this.slots.length; s++) {
      run = (this.slots[s] as Slot).kind === SLOT_EMPTY ? run + 1 : 0;
      if (run === n) return s - n + 1;
    }
    return -1;
  }

  private removeWorker(w: RemoteWorker, reason: string): void {
    if (!this.workers.has(w.id)) return;
    this.workers.delete(w.id);
    const lost = [...this.pending.values()].filter((p) => p.worker === w).length;
    this.opts.log(`mockfleet: ${w.describe()} ${reason}; ${lost} requests in flight fail, its ${w.numRanks} ranks leave routing`);
    this.failWorkerRequests(w, `${w.describe()} ${reason}; request aborted`);
    for (const id of w.workerIds) this.byWorkerId.delete(id);
    for (const s of w.slots) {
      this.router.onCleared(s);
      this.slots[s] = { kind: SLOT_EMPTY, worker: null, localRank: -1, dpRank: 0, workerId: 0n };
      this.counters[s] = new Float64Array(this.layout.floatsPerRank);
      this.own[s] = 0;
      this.ownBlocks[s] = 0;
      this.ownBlocksAtSnap[s] = 0;
    }
    w.slots = [];
  }

  // ------------------------------------------------------------------ metrics, fleet view, shutdown

  async metrics(workerIndex?: number, openMetrics = false): Promise<string> {
    if (workerIndex !== undefined) throw new InvalidRequestError('per-worker metrics are not served by a fleet frontend');
    const ask = openMetrics ? OPENMETRICS_REQUEST : Empty;
    const workers = [...this.workers.values()];
    const remote = await Promise.all(workers.map(async (w): Promise<string | null> => {
      try {
        const m = await this.nc.request(fleetSubjects.metrics(this.opts.fleet, w.id), ask, { timeout: METRICS_TIMEOUT_MS });
        return (await gunzipAsync(m.data)).toString('utf8');
      } catch {
        return null;
      }
    }));
    const parts: ExpositionPart[] = [];
    if (this.opts.local !== null) parts.push({ text: expositionText(await this.opts.local.metrics(undefined, openMetrics)), fleetWorker: null });
    const esc = (s: string): string => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
    let own = '# HELP mockfleet_fleet_workers Remote workers this frontend routes to.\n# TYPE mockfleet_fleet_workers gauge\n';
    own += `mockfleet_fleet_workers{model_name="${esc(this.modelName)}",fleet="${esc(this.opts.fleet)}"} ${workers.length}\n`;
    own += '# HELP mockfleet_fleet_worker_up 1 when the remote worker answered this scrape over NATS.\n# TYPE mockfleet_fleet_worker_up gauge\n';
    workers.forEach((w, i) => {
      own += `mockfleet_fleet_worker_up{fleet_worker="${w.id}",host="${esc(w.md.host)}",worker_ids="${w.md.worker_ids}"} ${remote[i] === null ? 0 : 1}\n`;
    });
    own += '# HELP mockfleet_fleet_remote_requests Requests this frontend has in flight on remote ranks.\n# TYPE mockfleet_fleet_remote_requests gauge\n';
    own += `mockfleet_fleet_remote_requests{model_name="${esc(this.modelName)}"} ${this.pending.size}\n`;
    parts.push({ text: own, fleetWorker: null });
    workers.forEach((w, i) => {
      const text = remote[i];
      if (text !== null && text !== undefined) parts.push({ text, fleetWorker: w.id });
    });
    return mergeExpositions(parts, openMetrics);
  }

  /** GET /fleet: who is in the fleet as this frontend sees it. */
  fleetView(): object {
    const index = this.router instanceof KvRouter ? this.router.index : null;
    const now = Date.now();
    return {
      fleet: this.opts.fleet,
      frontend_id: this.frontendId,
      nats_connected: this.connected,
      rank_slots: this.slots.length,
      local_ranks: this.opts.local?.numRanks ?? 0,
      remote_requests: this.pending.size,
      workers: [...this.workers.values()].map((w) => ({
        instance: w.id,
        host: w.md.host,
        pid: Number(w.md.pid),
        url: w.md.url,
        worker_ids: w.md.worker_ids.split(','),
        ranks: w.numRanks,
        slots: w.slots,
        draining: w.draining,
        epoch: w.epoch,
        last_seen_ms: now - w.lastSeen,
        kv_blocks: index === null ? null : w.slots.reduce((a, s) => a + index.blocksOnRank(s), 0),
      })),
    };
  }

  /** Stop routing, let requests finish for up to drainMs, fail the rest, leave NATS. */
  async shutdown(drainMs: number): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    const deadline = Date.now() + drainMs;
    while (this.pending.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const [id] of [...this.pending]) this.abortRemote(id);
    await new Promise((r) => setImmediate(r));
    this.closed = true;
    if (this.pollTimer !== null) clearTimeout(this.pollTimer);
    this.wakePoll?.();
    await this.pollDone;
    this.kv.close();
    for (const s of this.subs) s.unsubscribe();
    await this.service?.stop().catch(() => null);
    if (this.opts.local !== null) await this.opts.local.shutdown(Math.max(0, deadline - Date.now()));
    try {
      await this.nc.drain();
    } catch {
      await this.nc.close();
    }
  }
}

function remoteError(json: string, w: RemoteWorker): MockfleetError {
  try {
    const e = JSON.parse(json) as { code: string; message: string; status: number; type: string; param: string | null };
    return new MockfleetError(e.code, e.message, { status: e.status, type: e.type, param: e.param });
  } catch {
    return new WorkerLostError(`${w.describe()} failed the request without a readable error`);
  }
}

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
