/**
 * Worker side of a fleet spanning hosts: exposes a local Coordinator's ranks to the fleet's
 * frontends over NATS. Registration, discovery and liveness use the NATS micro-service framework
 * (@nats-io/services: `$SRV.PING/INFO.mockfleet-{fleet}`); requests, token output and load use
 * the subjects of remote-wire.ts. Token output is batched per frontend and per drain turn of the
 * coordinator (every pass of every rank since the previous batch), never sent per token.
 */
import { hostname } from 'node:os';
import { connect } from '@nats-io/transport-node';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { Svcm } from '@nats-io/services';
import type { Service } from '@nats-io/services';
import type { Coordinator } from './coordinator.js';
import type { GenerateCallbacks, GenerateFinish, GenerateHandle, GenerateRequest } from './backend.js';
import {
  FinishCode,
  OutputKind,
  maxBatchBytes,
  LOAD_CHUNK_BYTES,
  LOAD_HEADER_WORDS,
  LOAD_INTERVAL_MS,
  LoadFlag,
  RequestKind,
  SubmitFlag,
  WordReader,
  WordWriter,
  fleetFrontendServiceName,
  fleetServiceName,
  fleetSubjects,
  frontendOfOutput,
} from './remote-wire.js';
import { InvalidConfigError, MockfleetError, OverloadedError } from '../util/errors.js';

export const FLEET_PROTOCOL_VERSION = '1.0.0';
/** How long registration listens for the fleet's existing workers before registering. */
const DUPLICATE_CHECK_MS = 300;
/** While requests run: how often to PING the fleet's frontends, how long one may stay silent. */
const FRONTEND_CHECK_MS = 1000;
const PING_WAIT_MS = 300;
const FRONTEND_GONE_MS = 3000;
/** How long an overloaded submit (--max-waiting) may wait for room before it fails with the 429. */
const BACKLOG_MS = 2000;

export interface FleetWorkerOptions {
  readonly fleet: string;
  readonly natsUrl: string;
  readonly coordinator: Coordinator;
  /** The worker's own HTTP endpoint (/metrics, /health), advertised in its metadata. */
  readonly httpUrl: string;
  readonly log: (line: string) => void;
}

/** Metadata every worker registers; frontends refuse workers whose engine shape differs. */
export interface WorkerMetadata {
  fleet: string;
  worker_ids: string;
  data_parallel_size: string;
  ranks: string;
  model: string;
  block_size: string;
  num_gpu_blocks: string;
  max_model_len: string;
  floats_per_rank: string;
  url: string;
  host: string;
  pid: string;
}

/** One frontend this worker serves: its output subject, pending batch and requests. */
class FrontendLink {
  readonly batch = new WordWriter();
  readonly requests = new Map<number, RemoteRequest>();
  /** Word index of the count of the open TOKEN_PAIRS record, or -1. */
  pairsAt = -1;
  /** In the worker's list of links to flush this turn. */
  queued = false;
  /** When its frontend last answered a PING (or sent requests). */
  lastSeen = Date.now();
  readonly frontendId: string;
  constructor(readonly subject: string) {
    this.frontendId = frontendOfOutput(subject);
  }
}

class RemoteRequest implements GenerateCallbacks {
  handle: GenerateHandle | null = null;
  /** Aborted while still held back (no handle yet). */
  cancelled = false;
  /** Set when the worker lost NATS while the request ran: it ends as an error naming that. */
  lostReason: string | null = null;
  constructor(
    private readonly worker: FleetWorker,
    readonly link: FrontendLink,
    readonly id: number,
  ) {}

  onTokens(tokenIds: Uint32Array, start: number, count: number): void {
    const link = this.link;
    const b = link.batch;
    if (b.length === 0) b.u32(this.worker.epoch);
    if (count === 1) {
      // The coordinator hands over one token per request per pass: (id, token) pairs.
      if (link.pairsAt < 0) {
        b.u32(OutputKind.tokenPairs);
        link.pairsAt = b.length;
        b.u32(0);
      }
      b.u32x2(this.id, tokenIds[start] as number);
      b.bump(link.pairsAt);
    } else {
      link.pairsAt = -1;
      b.u32(OutputKind.tokens);
      b.u32x2(this.id, count);
      b.array(tokenIds, start, count);
    }
    this.worker.scheduleFlush(link);
  }

  abort(): void {
    if (this.handle !== null) this.handle.abort();
    else this.cancelled = true;
  }

  onFinish(f: GenerateFinish): void {
    this.link.requests.delete(this.id);
    this.worker.writeFinish(this.link, this.id, f, this.lostReason);
  }
}

export class FleetWorker {
  readonly instanceId: string;
  epoch = 1;
  private readonly links = new Map<string, FrontendLink>();
  private readonly dirty: FrontendLink[] = [];
  private flushQueued = false;
  private readonly reader = new WordReader();
  private loadTimer: NodeJS.Timeout | null = null;
  private readonly backlog: Array<{ req: RemoteRequest; gen: GenerateRequest }> = [];
  private readonly backlogDeadline = new Map<RemoteRequest, number>();
  private backlogTimer: NodeJS.Timeout | null = null;
  private frontendTimer: NodeJS.Timeout | null = null;
  private checkingFrontends = false;
  private draining = false;
  private closed = false;
  private readonly batchLimitBytes: number;

  private constructor(
    private readonly opts: FleetWorkerOptions,
    private readonly nc: NatsConnection,
    private readonly service: Service,
  ) {
    this.instanceId = service.info().id;
    this.batchLimitBytes = maxBatchBytes(nc);
  }

  /** Connect, refuse duplicate worker ids, register the service and start serving. */
  static async start(opts: FleetWorkerOptions): Promise<FleetWorker> {
    const nc = await connect({
      servers: opts.natsUrl,
      name: `mockfleet-worker-${opts.fleet}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
      reconnectJitter: 20,
      pingInterval: 10_000,
    }).catch((err: unknown) => {
      throw new InvalidConfigError('--nats', `cannot connect to ${opts.natsUrl}: ${err instanceof Error ? err.message : String(err)}`);
    });
    try {
      const svcm = new Svcm(nc);
      const c = opts.coordinator;
      const ids = [...new Set(c.ranks().map((r) => r.workerId.toString()))];
      await refuseDuplicates(svcm, opts.fleet, ids);
      const metadata: WorkerMetadata = {
        fleet: opts.fleet,
        worker_ids: ids.join(','),
        data_parallel_size: String(c.dataParallelSize),
        ranks: String(c.numRanks),
        model: c.modelName,
        block_size: String(c.blockSize),
        num_gpu_blocks: String(c.numGpuBlocks),
        max_model_len: String(c.maxModelLen),
        floats_per_rank: String(c.layout.floatsPerRank),
        url: opts.httpUrl,
        host: hostname(),
        pid: String(process.pid),
      };
      const service = await svcm.add({
        name: fleetServiceName(opts.fleet),
        version: FLEET_PROTOCOL_VERSION,
        description: `mockfleet worker (${c.numRanks} ranks)`,
        metadata: metadata as unknown as Record<string, string>,
      });
      const w = new FleetWorker(opts, nc, service);
      w.listen();
      return w;
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  private listen(): void {
    const { fleet } = this.opts;
    this.service.addEndpoint('requests', {
      subject: fleetSubjects.requests(fleet, this.instanceId),
      handler: (err, msg) => {
        if (err !== null) {
          this.opts.log(`mockfleet: fleet request subscription failed: ${err.message}`);
          return;
        }
        this.onRequests(msg);
      },
    });
    this.service.addEndpoint('metrics', {
      subject: fleetSubjects.metrics(fleet, this.instanceId),
      handler: (err, msg) => {
        if (err !== null) return;
        const openMetrics = msg.data.length > 0 && new TextDecoder().decode(msg.data) === 'openmetrics';
        // The exposition's cached gzip segments, stitched into one member (src/metrics/README.md).
        this.opts.coordinator.metricsBody(undefined, openMetrics, false).then(
          (body) => Buffer.concat(body.gzip()),
          (e: unknown) => {
            throw e;
          },
        ).then(
          (gz) => msg.respond(gz),
          (e: unknown) => this.opts.log(`mockfleet: metrics for a frontend failed: ${e instanceof Error ? e.message : String(e)}`),
        );
      },
    });
    this.loadTimer = setInterval(() => this.publishLoad(0), LOAD_INTERVAL_MS);
    this.loadTimer.unref();
    this.frontendTimer = setInterval(() => void this.checkFrontends(), FRONTEND_CHECK_MS);
    this.frontendTimer.unref();
    this.publishLoad(0);
    void this.watchStatus();
  }

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect') {
        // Anything sent to us from now until we are back may be lost: give up the requests in
        // flight (their error finishes go out after the reconnect) and start a new epoch so
        // frontends fail what they sent meanwhile.
        this.epoch++;
        const reason = `worker ${this.instanceId} lost its NATS connection (${'server' in s ? String(s.server) : 'server'}); request aborted`;
        this.opts.log(`mockfleet: NATS disconnected; aborting ${this.inflight()} fleet requests (epoch ${this.epoch})`);
        for (const link of this.links.values()) {
          link.batch.reset();
          link.pairsAt = -1;
          for (const r of [...link.requests.values()]) {
            r.lostReason = reason;
            r.abort();
          }
        }
      } else if (s.type === 'reconnect') {
        this.opts.log(`mockfleet: NATS reconnected (${'server' in s ? String(s.server) : ''})`);
        this.publishLoad(0);
      }
    }
  }

  /**
   * Requests of a frontend that is gone (process killed) would run to max_tokens for nobody:
   * while requests are in flight, PING the fleet's frontends and abort those of one that has not
   * answered for FRONTEND_GONE_MS.
   */
  private async checkFrontends(): Promise<void> {
    if (this.checkingFrontends || this.closed || this.nc.isClosed()) return;
    let busy = false;
    for (const l of this.links.values()) if (l.requests.size > 0) busy = true;
    if (!busy) return;
    this.checkingFrontends = true;
    const seen = new Set<string>();
    try {
      const client = new Svcm(this.nc).client({ strategy: 'timer', maxWait: PING_WAIT_MS } as never);
      for await (const p of await client.ping(fleetFrontendServiceName(this.opts.fleet))) seen.add(String(p.metadata?.['frontend_id'] ?? ''));
    } catch {
      // No frontend answered at all: handled below like any silent frontend.
    } finally {
      this.checkingFrontends = false;
    }
    if (this.nc.isClosed() || this.closed) return;
    const now = Date.now();
    for (const link of this.links.values()) {
      if (seen.has(link.frontendId)) link.lastSeen = now;
      else if (link.requests.size > 0 && now - link.lastSeen > FRONTEND_GONE_MS) {
        this.opts.log(`mockfleet: frontend ${link.frontendId} has not answered for ${now - link.lastSeen} ms; aborting its ${link.requests.size} requests`);
        for (const r of [...link.requests.values()]) r.abort();
      }
    }
  }

  inflight(): number {
    let n = 0;
    for (const l of this.links.values()) n += l.requests.size;
    return n;
  }

  private onRequests(msg: Msg): void {
    const reply = msg.reply;
    if (reply === undefined || reply === '') return;
    let link = this.links.get(reply);
    if (link === undefined) {
      link = new FrontendLink(reply);
      this.links.set(reply, link);
    }
    link.lastSeen = Date.now();
    const r = this.reader;
    r.load(msg.data);
    const w = r.u32;
    let o = 0;
    while (o < r.length) {
      const kind = w[o] as number;
      if (kind === RequestKind.submit) {
        const id = w[o + 1] as number, rank = w[o + 2] as number, maxTokens = w[o + 3] as number, flags = w[o + 4] as number;
        const seed = (flags & SubmitFlag.seeded) !== 0 ? (w[o + 5] as number) | 0 : undefined;
        const paramsN = w[o + 6] as number, n = w[o + 7] as number;
        // The coordinator copies the prompt into the rank's inbox, so a view is enough.
        this.submit(link, id, {
          requestId: `fleet-${id}`,
          promptTokens: w.subarray(o + 8, o + 8 + n),
          maxTokens,
          pinnedRank: rank,
          seed,
          paramsN,
          stopAtEnd: (flags & SubmitFlag.stopAtEnd) !== 0,
        });
        o += 8 + n;
      } else if (kind === RequestKind.abort) {
        link.requests.get(w[o + 1] as number)?.abort();
        o += 2;
      } else {
        this.opts.log(`mockfleet: fleet request message with unknown record kind ${kind} from ${reply}; rest ignored`);
        return;
      }
    }
  }

  private submit(link: FrontendLink, id: number, gen: GenerateRequest): void {
    const prompt = gen.promptTokens;
    const req = new RemoteRequest(this, link, id);
    if (this.draining || this.closed) {
      this.writeError(link, id, prompt.length, new MockfleetError('MOCKFLEET_ERR_SHUTTING_DOWN', `worker ${this.instanceId} is shutting down`, { status: 503, type: 'server_error' }));
      return;
    }
    link.requests.set(id, req);
    if (this.backlog.length > 0) {
      this.defer(req, gen);
      return;
    }
    this.trySubmit(req, gen, false);
  }

  /** Submit to the coordinator; false when it was deferred again (rank momentarily over --max-waiting). */
  private trySubmit(req: RemoteRequest, gen: GenerateRequest, deferred: boolean): boolean {
    try {
      req.handle = this.opts.coordinator.submit(gen, req);
      return true;
    } catch (err) {
      // The coordinator queues a burst that overfills a rank's inbox itself; what still throws
      // here is --max-waiting. The frontend's stream has already begun, so a 429 would reach the
      // client as a stream error: hold such submits (in order) for up to BACKLOG_MS instead.
      if (err instanceof OverloadedError && (!deferred || Date.now() < (this.backlogDeadline.get(req) ?? 0))) {
        if (!deferred) this.defer(req, { ...gen, promptTokens: gen.promptTokens.slice() });
        return false;
      }
      req.link.requests.delete(req.id);
      const e = err instanceof MockfleetError ? err : new MockfleetError('MOCKFLEET_ERR_INTERNAL', err instanceof Error ? err.message : String(err));
      this.writeError(req.link, req.id, gen.promptTokens.length, e);
      return true;
    }
  }

  private defer(req: RemoteRequest, gen: GenerateRequest): void {
    // The prompt view points into the reused message buffer: keep a copy.
    const own = gen.promptTokens.buffer === this.reader.u32.buffer ? { ...gen, promptTokens: gen.promptTokens.slice() } : gen;
    this.backlog.push({ req, gen: own });
    this.backlogDeadline.set(req, Date.now() + BACKLOG_MS);
    if (this.backlogTimer === null) this.backlogTimer = setTimeout(() => this.drainBacklog(), 1);
  }

  private drainBacklog(): void {
    this.backlogTimer = null;
    while (this.backlog.length > 0) {
      const d = this.backlog[0] as { req: RemoteRequest; gen: GenerateRequest };
      if (d.req.cancelled) {
        d.req.link.requests.delete(d.req.id);
        d.req.onFinish({ reason: 'abort', rank: -1, promptTokens: d.gen.promptTokens.length, completionTokens: 0, cachedTokens: 0 });
      } else if (!this.trySubmit(d.req, d.gen, true)) break;
      this.backlog.shift();
      this.backlogDeadline.delete(d.req);
    }
    if (this.backlog.length > 0) this.backlogTimer = setTimeout(() => this.drainBacklog(), 1);
  }

  private writeError(link: FrontendLink, id: number, promptTokens: number, e: MockfleetError): void {
    this.writeFinish(link, id, { reason: 'error', rank: -1, promptTokens, completionTokens: 0, cachedTokens: 0, error: e }, null);
  }

  writeFinish(link: FrontendLink, id: number, f: GenerateFinish, lostReason: string | null): void {
    const b = link.batch;
    if (b.length === 0) b.u32(this.epoch);
    let code: number = f.reason === 'length' ? FinishCode.length : f.reason === 'abort' ? FinishCode.abort : FinishCode.error;
    let err: MockfleetError | undefined = f.error;
    if (lostReason !== null && f.reason !== 'length') {
      code = FinishCode.error;
      err = new MockfleetError('MOCKFLEET_ERR_WORKER_LOST', lostReason, { status: 503, type: 'server_error' });
    }
    link.pairsAt = -1;
    b.u32x2(OutputKind.finish, id);
    b.u32x2(code, f.promptTokens);
    b.u32x2(f.completionTokens, f.cachedTokens);
    const json = err === undefined ? '' : JSON.stringify({ code: err.code, message: err.message, status: err.status, type: err.type, param: err.param });
    b.bytes(Buffer.from(json, 'utf8'));
    this.scheduleFlush(link);
  }

  scheduleFlush(link: FrontendLink): void {
    // Stay well under the server's max_payload: a big turn goes out as several messages.
    if (link.batch.length * 4 >= this.batchLimitBytes) {
      this.publishBatch(link);
      return;
    }
    if (!link.queued) {
      link.queued = true;
      this.dirty.push(link);
    }
    if (this.flushQueued) return;
    this.flushQueued = true;
    // The coordinator dispatches every rank's records in one synchronous sweep: a microtask
    // runs after the sweep, so one message carries all of this turn's passes.
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.flushQueued = false;
    for (const link of this.dirty) {
      link.queued = false;
      this.publishBatch(link);
    }
    this.dirty.length = 0;
  }

  private publishBatch(link: FrontendLink): void {
    if (link.batch.length === 0) return;
    const data = link.batch.take();
    link.batch.reset();
    link.pairsAt = -1;
    try {
      this.nc.publish(link.subject, data);
    } catch (err) {
      // Closed connection or an oversized message: the frontend's liveness/epoch checks fail
      // those requests; never let a publish error end the worker.
      this.opts.log(`mockfleet: fleet output to ${link.subject} not sent: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private publishLoad(flags: number): void {
    if (this.nc.isClosed()) return;
    const c = this.opts.coordinator;
    const fpr = c.layout.floatsPerRank;
    const perChunk = Math.max(1, Math.floor(LOAD_CHUNK_BYTES / (fpr * 8)));
    for (let first = 0; first < c.numRanks; first += perChunk) {
      const n = Math.min(perChunk, c.numRanks - first);
      const buf = new ArrayBuffer(LOAD_HEADER_WORDS * 4 + n * fpr * 8);
      const h = new Uint32Array(buf, 0, LOAD_HEADER_WORDS);
      h[0] = this.epoch;
      h[1] = flags | (this.draining ? LoadFlag.draining : 0);
      h[2] = first;
      h[3] = n;
      h[4] = fpr;
      const f = new Float64Array(buf, LOAD_HEADER_WORDS * 4, n * fpr);
      for (let i = 0; i < n; i++) f.set(c.counters[first + i] as Float64Array, i * fpr);
      try {
        this.nc.publish(fleetSubjects.load(this.opts.fleet, this.instanceId), new Uint8Array(buf));
      } catch (err) {
        this.opts.log(`mockfleet: fleet load message not sent: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
    }
  }

  /** Stop taking requests (frontends stop routing here) while the ones in flight finish. */
  beginDrain(): void {
    this.draining = true;
    this.publishLoad(0);
  }

  /** Deregister and disconnect; call after the coordinator finished its requests. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.loadTimer !== null) clearInterval(this.loadTimer);
    if (this.frontendTimer !== null) clearInterval(this.frontendTimer);
    if (this.backlogTimer !== null) clearTimeout(this.backlogTimer);
    this.flush();
    try {
      this.publishLoad(LoadFlag.gone);
      await this.service.stop();
      await this.nc.drain();
    } catch {
      // Already disconnected: nothing left to tell the fleet (its frontends time us out).
      await this.nc.close();
    }
  }
}

/** Ask the fleet who is registered; refuse any worker id already in use (clear error, exit 2). */
async function refuseDuplicates(svcm: Svcm, fleet: string, ids: readonly string[]): Promise<void> {
  const mine = new Set(ids);
  const client = svcm.client({ strategy: 'timer', maxWait: DUPLICATE_CHECK_MS } as never);
  const seen: Array<{ id: string; md: Partial<WorkerMetadata> }> = [];
  try {
    for await (const p of await client.ping(fleetServiceName(fleet))) seen.push({ id: p.id, md: (p.metadata ?? {}) as Partial<WorkerMetadata> });
  } catch (err) {
    // "no responders" = nobody registered yet; anything else is a real failure.
    if (!(err instanceof Error) || !/no responders/i.test(err.message)) throw err;
  }
  for (const { id: instance, md } of seen) {
    for (const id of (md.worker_ids ?? '').split(',')) {
      if (id !== '' && mine.has(id)) {
        throw new InvalidConfigError(
          '--worker-id',
          `worker id ${id} is already registered in fleet "${fleet}" by worker ${instance} (host ${md.host ?? '?'}, pid ${md.pid ?? '?'}); ` +
            'leave --worker-id out to get fleet-unique ids, or pick another',
        );
      }
    }
  }
}
