/**
 * GET /dashboard (the page), /dashboard/events (SSE: one `init`, then a shared `tick` per
 * interval), /dashboard/snapshot (the init document as JSON, for curl and scripts) and
 * /dashboard/stats (the dashboard's own cost counters).
 *
 * Two timers, with different lifetimes:
 * - the 1 s history sampler runs from construction to close() (unref'd): it folds the ranks'
 *   counters into one ring slot (~5 µs at 16 ranks, ~60 µs at 256; bench/dashboard.ts), so a
 *   page opened late still shows the last 5 minutes;
 * - the tick timer (default 2 Hz) exists only while at least one event stream is open.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpApiError, InvalidConfigError } from '../util/errors.js';
import { errorReply } from '../http/errors.js';
import type { DashboardSource } from './source.js';
import { DashboardModel } from './model.js';
import type { DashboardModelOptions } from './model.js';
import { NODE_TIMERS, TickHub } from './hub.js';
import type { Subscriber, Timers } from './hub.js';
import { renderDashboardPage } from './page.js';

export const DEFAULT_TICK_HZ = 2;
export const MAX_TICK_HZ = 10;
export const DEFAULT_MAX_SUBSCRIBERS = 32;

export interface DashboardOptions extends DashboardModelOptions {
  /** Tick rate of the event stream, 0 < hz <= 10. */
  readonly tickHz?: number;
  readonly maxSubscribers?: number;
  readonly timers?: Timers;
}

export class DashboardService {
  readonly model: DashboardModel;
  readonly hub: TickHub;
  private readonly samplesPerTick: number;
  private readonly maxSubscribers: number;
  private readonly timers: Timers;
  private readonly sampler: unknown;
  private readonly streams = new Set<ServerResponse>();
  private page: string | null = null;
  private closed = false;

  constructor(source: DashboardSource, opts: DashboardOptions = {}) {
    const hz = opts.tickHz ?? DEFAULT_TICK_HZ;
    if (!(hz > 0 && hz <= MAX_TICK_HZ)) {
      throw new InvalidConfigError('dashboard.tickHz', `must be in (0, ${MAX_TICK_HZ}], got ${hz}`);
    }
    this.model = new DashboardModel(source, opts);
    const tickMs = Math.round(1000 / hz);
    this.timers = opts.timers ?? NODE_TIMERS;
    // Enough samples per tick that a page never misses one, even at the slowest tick rate.
    this.samplesPerTick = Math.ceil(tickMs / this.model.sampleMs) + 1;
    this.hub = new TickHub(() => this.model.tick(this.samplesPerTick), tickMs, this.timers);
    this.maxSubscribers = opts.maxSubscribers ?? DEFAULT_MAX_SUBSCRIBERS;
    this.model.sample();
    this.sampler = this.timers.setInterval(() => this.model.sample(), this.model.sampleMs);
    const s = this.sampler as { unref?: () => void };
    if (typeof s.unref === 'function') s.unref();
  }

  route(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path !== '/dashboard' && !path.startsWith('/dashboard/')) return false;
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        throw new HttpApiError(405, 'invalid_request_error', 'method_not_allowed', `use GET for ${path}`);
      }
      if (this.closed) throw new HttpApiError(503, 'server_error', 'shutting_down', 'server is shutting down');
      if (path === '/dashboard' || path === '/dashboard/') this.sendPage(req, res);
      else if (path === '/dashboard/events') this.openStream(req, res);
      else if (path === '/dashboard/snapshot') this.sendSnapshot(req, res);
      else if (path === '/dashboard/stats') this.sendJson(req, res, JSON.stringify(this.stats()));
      else throw new HttpApiError(404, 'invalid_request_error', 'not_found', `Invalid URL (${req.method} ${path}); try /dashboard`);
    } catch (err) {
      const reply = errorReply(err);
      res.writeHead(reply.status, { 'content-type': 'application/json' });
      res.end(reply.body);
    }
    return true;
  }

  private sendPage(req: IncomingMessage, res: ServerResponse): void {
    if (this.page === null) this.page = renderDashboardPage(this.model.source.modelName);
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-length': Buffer.byteLength(this.page),
    });
    res.end(req.method === 'HEAD' ? undefined : this.page);
  }

  /** What the dashboard itself costs: time spent sampling and building ticks, stream count. */
  stats(): Record<string, number> {
    const c = this.model.cost;
    return {
      subscribers: this.hub.size,
      tickMs: this.hub.tickMs,
      ticks: c.ticks,
      tickBuildMsTotal: c.tickMs,
      ticksSkipped: this.hub.stats.skipped,
      lastTickBytes: c.lastTickBytes,
      samples: c.samples,
      sampleMsTotal: c.sampleMs,
    };
  }

  private sendSnapshot(req: IncomingMessage, res: ServerResponse): void {
    this.sendJson(req, res, this.model.init(this.hub.current(), this.hub.tickMs));
  }

  private sendJson(req: IncomingMessage, res: ServerResponse, body: string): void {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private openStream(req: IncomingMessage, res: ServerResponse): void {
    if (this.hub.size >= this.maxSubscribers) {
      throw new HttpApiError(503, 'server_error', 'too_many_dashboards', `at most ${this.maxSubscribers} dashboard streams may be open`);
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    res.socket?.setNoDelay(true);
    const init = this.model.init(this.hub.current(), this.hub.tickMs);
    const sub: Subscriber = { write: (chunk) => res.write(chunk) };
    const ok = res.write(`retry: 3000\n\nevent: init\ndata: ${init}\n\n`);
    this.hub.add(sub, !ok);
    this.streams.add(res);
    res.on('drain', () => this.hub.drained(sub));
    res.on('close', () => {
      this.streams.delete(res);
      this.hub.remove(sub);
    });
  }

  /** Stop both timers and end every open event stream. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.timers.clearInterval(this.sampler);
    this.hub.clear();
    for (const res of this.streams) res.end();
    this.streams.clear();
  }
}
