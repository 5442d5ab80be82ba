/**
 * Streaming HTTP client for OpenAI-compatible servers on node:http (keep-alive Agent). One
 * InflightSlot runs one request at a time and owns a reusable SSE parser, so steady-state load
 * allocates per request, never per token. Every failure ends as an error type string, never a throw.
 */
import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import { InvalidConfigError } from '../util/errors.js';
import { SseStreamParser } from './sse.js';
import type { SseApi } from './sse.js';

/** Error type keys used in reports. HTTP statuses appear as `http_<status>`. */
export const ERROR_TYPES = {
  connectionRefused: 'connection_refused',
  connectionReset: 'connection_reset',
  connectionError: 'connection_error',
  streamCut: 'stream_cut',
  streamError: 'stream_error',
  timeout: 'timeout',
  cancelled: 'cancelled',
} as const;

export interface Target {
  readonly url: URL;
  readonly module: typeof http | typeof https;
  readonly agent: http.Agent;
  readonly hostname: string;
  readonly port: number;
  /** Base path without a trailing slash ('' for the root). */
  readonly basePath: string;
  readonly headers: Record<string, string>;
}

/** Parse a server base URL; InvalidConfigError('--url') unless it is http(s). */
export function parseBaseUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch (err) {
    throw new InvalidConfigError('--url', `not a valid URL: ${url} (${(err as Error).message})`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidConfigError('--url', `protocol must be http or https, got ${u.protocol}`);
  return u;
}

export function makeTarget(url: string, maxSockets: number, apiKey: string | undefined): Target {
  const u = parseBaseUrl(url);
  const mod = u.protocol === 'https:' ? https : http;
  const sockets = Number.isFinite(maxSockets) && maxSockets > 0 ? maxSockets : Infinity;
  const agent = new mod.Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: Number.isFinite(sockets) ? sockets : 1024, scheduling: 'fifo' });
  let basePath = u.pathname.replace(/\/+$/, '');
  // Accept both http://host:port and http://host:port/v1 as the base URL.
  if (basePath.endsWith('/v1')) basePath = basePath.slice(0, -3);
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream' };
  if (apiKey !== undefined && apiKey !== '') headers['authorization'] = `Bearer ${apiKey}`;
  return {
    url: u,
    module: mod,
    agent,
    hostname: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port === '' ? (u.protocol === 'https:' ? 443 : 80) : Number(u.port),
    basePath,
    headers,
  };
}

export function classifySocketError(err: NodeJS.ErrnoException, responseStarted: boolean): string {
  if (responseStarted) return ERROR_TYPES.streamCut;
  switch (err.code) {
    case 'ECONNREFUSED':
      return ERROR_TYPES.connectionRefused;
    case 'ECONNRESET':
    case 'EPIPE':
      return ERROR_TYPES.connectionReset;
    case 'ETIMEDOUT':
      return ERROR_TYPES.timeout;
    default:
      return ERROR_TYPES.connectionError;
  }
}

const ERROR_BODY_LIMIT = 2048;

/** Outcome of one request; times are performance.now() milliseconds. */
export interface RequestOutcome {
  sendMs: number;
  endMs: number;
  /** null on success. */
  errorType: string | null;
  errorMessage: string | null;
}

/**
 * One concurrency slot. `start` sends a request and calls `onDone(slot)` exactly once; read the
 * parser's counters and the outcome fields inside the callback (they are reused by the next start).
 */
export class InflightSlot {
  readonly parser: SseStreamParser;
  readonly outcome: RequestOutcome;
  /** Caller's tag for the current request (measured flag, request index, …). */
  tag: number;
  /** Prompt tokens the current request was built with (reported when the server sends no usage). */
  intendedInputTokens: number;
  busy: boolean;
  private req: http.ClientRequest | null;
  private timer: NodeJS.Timeout | null;
  private finished: boolean;
  private onDone: ((slot: InflightSlot) => void) | null;
  /** Incremented per start(): events of an earlier (aborted) request on this slot are ignored. */
  private gen: number;

  constructor(api: SseApi) {
    this.parser = new SseStreamParser(api);
    this.outcome = { sendMs: 0, endMs: 0, errorType: null, errorMessage: null };
    this.tag = 0;
    this.intendedInputTokens = 0;
    this.busy = false;
    this.req = null;
    this.timer = null;
    this.finished = true;
    this.onDone = null;
    this.gen = 0;
  }

  /** `sendMs` is the send time the caller classified the request by (warm-up or measured). */
  start(target: Target, path: string, body: string, timeoutMs: number, onDone: (slot: InflightSlot) => void, sendMs: number = performance.now()): void {
    const gen = ++this.gen;
    const finish = (type: string | null, message: string | null): void => {
      if (gen === this.gen) this.finish(type, message);
    };
    this.parser.reset();
    this.busy = true;
    this.finished = false;
    this.onDone = onDone;
    const o = this.outcome;
    o.errorType = null;
    o.errorMessage = null;
    o.endMs = Number.NaN;
    const payload = Buffer.from(body);
    const headers = { ...target.headers, 'content-length': String(payload.length) };
    let responseStarted = false;
    o.sendMs = sendMs;
    const req = target.module.request({ agent: target.agent, hostname: target.hostname, port: target.port, path: target.basePath + path, method: 'POST', headers });
    this.req = req;
    if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
      this.timer = setTimeout(() => {
        if (gen === this.gen) this.abort(ERROR_TYPES.timeout, `no complete response within ${timeoutMs} ms`);
      }, timeoutMs);
    }
    req.on('error', (err: NodeJS.ErrnoException) => {
      finish(classifySocketError(err, responseStarted), `${err.code ?? err.name}: ${err.message}`);
    });
    req.on('response', (res: http.IncomingMessage) => {
      responseStarted = true;
      const status = res.statusCode ?? 0;
      if (status !== 200) {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (s: string) => {
          if (text.length < ERROR_BODY_LIMIT) text += s;
        });
        res.on('end', () => finish(`http_${status}`, `HTTP ${status}: ${text.slice(0, ERROR_BODY_LIMIT)}`));
        res.on('error', (err: Error) => finish(`http_${status}`, `HTTP ${status} (body cut: ${err.message})`));
        return;
      }
      const parser = this.parser;
      res.on('data', (chunk: Buffer) => {
        if (gen !== this.gen) return;
        parser.push(chunk, performance.now());
        if (parser.streamError !== null) this.abort(ERROR_TYPES.streamError, parser.streamError);
      });
      res.on('end', () => {
        if (parser.done) finish(null, null);
        else finish(ERROR_TYPES.streamCut, `stream ended without data: [DONE] after ${parser.numContent} content events`);
      });
      res.on('error', (err: NodeJS.ErrnoException) => {
        finish(ERROR_TYPES.streamCut, `stream cut after ${parser.numContent} content events: ${err.message}`);
      });
      res.on('close', () => {
        if (!res.complete) {
          finish(ERROR_TYPES.streamCut, `connection closed after ${parser.numContent} content events`);
        }
      });
    });
    req.end(payload);
  }

  /** Stop the current request; it finishes with `type` (e.g. cancelled, timeout). */
  abort(type: string, message: string): void {
    if (this.finished || this.req === null) return;
    const req = this.req;
    // Finish first: destroy() makes node emit 'error'/'close' later, and those must not decide the
    // outcome (finish() ignores them, and so do handlers of a request the slot no longer runs).
    this.finish(type, message);
    req.destroy();
  }

  private finish(type: string | null, message: string | null): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const o = this.outcome;
    o.endMs = performance.now();
    o.errorType = type;
    o.errorMessage = message;
    this.req = null;
    this.busy = false;
    const cb = this.onDone;
    this.onDone = null;
    if (cb !== null) cb(this);
  }
}

/** Non-streaming JSON request used by probes: resolves with status and parsed body (or text). */
export function requestJson(target: Target, method: 'GET' | 'POST', path: string, body: unknown, timeoutMs: number): Promise<{ status: number; json: unknown; text: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { ...target.headers, accept: 'application/json' };
    if (payload !== undefined) headers['content-length'] = String(payload.length);
    else delete headers['content-type'];
    const req = target.module.request({ agent: target.agent, hostname: target.hostname, port: target.port, path: target.basePath + path, method, headers, timeout: timeoutMs });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`${method} ${path}: no response within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => {
        text += s;
      });
      res.on('error', reject);
      res.on('end', () => {
        let json: unknown = null;
        if (res.statusCode === 200 && text.length > 0) {
          try {
            json = JSON.parse(text);
          } catch (err) {
            reject(new Error(`${method} ${path}: response is not JSON (${(err as Error).message})`));
            return;
          }
        }
        resolve({ status: res.statusCode ?? 0, json, text });
      });
    });
    req.end(payload);
  });
}
