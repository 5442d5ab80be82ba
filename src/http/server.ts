/**
 * OpenAI-compatible HTTP frontend over a Backend (node:http, no framework). Endpoints, headers
 * and the error table are in README.md. Request pipeline for the generate endpoints:
 *
 *   route/method (404/405) -> API key (401) -> body size (413) -> JSON (400) -> X-Return-Error
 *   -> validation (400) -> model (404) -> X-Mockfleet-Rank (400) -> tokenize
 *   -> max-model-len and KV capacity (400 context_length_exceeded) -> failure injection
 *   -> Backend.submit (429 overloaded, backend errors) -> 200 JSON or SSE stream
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Backend } from '../cluster/backend.js';
import { WordTokenizer } from '../tokenizer/word-tokenizer.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { HttpApiError, InvalidConfigError, MockfleetError } from '../util/errors.js';
import {
  badRequest, contextLengthExceeded, errorJson, errorReply, forcedError, injectedFailure, invalidApiKey, modelNotFound,
} from './errors.js';
import type { ErrorFormat } from './errors.js';
import { FailureInjector } from './failure-injection.js';
import { ChoiceGroupGeneration, StreamingGeneration } from './generation.js';
import type { ChoiceSpec, GenerationMeta } from './generation.js';
import { planChoice } from './sampling.js';
import type { SamplingParams } from './parse.js';
import { AnthropicDialect, ResponsesDialect, TextApiGeneration, anthropicErrorReply, parseMessagesRequest, parseResponsesRequest } from './text-apis.js';
import { EmbeddingsGeneration, embeddingVector, parseEmbeddingsRequest } from './embeddings.js';
import { Rng } from '../engine/rng.js';
import {
  DEFAULT_COMPLETION_MAX_TOKENS, DEFAULT_EMBEDDING_DIM, DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT, DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_TIMEOUT_KEEP_ALIVE_S, FAILURE_TYPES,
} from './options.js';
import type { FailureType, HttpOptions } from './options.js';
import { parseGenerate, parseJsonObject, parseTokenize } from './parse.js';
import type { GenerateKind } from './parse.js';
import { FlushScheduler } from './sse.js';
import { TokenTextCache } from './token-text-cache.js';
import { acceptsGzip } from '../metrics/accept-encoding.js';
import type { MetricsBody } from '../metrics/fleet-metrics.js';

export interface HttpServer {
  readonly url: string;
  readonly port: number;
  /**
   * Stops accepting connections and closes idle keep-alive sockets at once; in-flight responses
   * may finish for `graceMs` (default 10 s), then every connection is cut (their requests are
   * aborted on the ranks). `close(0)` cuts at once.
   */
  close(graceMs?: number): Promise<void>;
}

/** A body this many times over maxBodyBytes is not drained any further: the connection is cut. */
const BODY_DRAIN_FACTOR = 16;
const DEFAULT_CLOSE_GRACE_MS = 10_000;
const MAX_REQUEST_ID_LENGTH = 256;
const REQUEST_ID_RE = /^[\x21-\x7e]+$/;
const JSON_HEADERS = { 'content-type': 'application/json' } as const;
const gzipAsync = promisify(gzipCallback);
const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

type RouteName = 'completions' | 'chat' | 'responses' | 'messages' | 'embeddings' | 'models' | 'health' | 'ready' | 'metrics' | 'tokenize' | 'detokenize';
const ROUTES: ReadonlyMap<string, { readonly name: RouteName; readonly method: 'GET' | 'POST' }> = new Map([
  ['/v1/completions', { name: 'completions', method: 'POST' }],
  ['/v1/chat/completions', { name: 'chat', method: 'POST' }],
  ['/v1/models', { name: 'models', method: 'GET' }],
  ['/health', { name: 'health', method: 'GET' }],
  ['/health/ready', { name: 'ready', method: 'GET' }],
  ['/metrics', { name: 'metrics', method: 'GET' }],
  ['/v1/responses', { name: 'responses', method: 'POST' }],
  ['/v1/messages', { name: 'messages', method: 'POST' }],
  ['/v1/embeddings', { name: 'embeddings', method: 'POST' }],
  ['/tokenize', { name: 'tokenize', method: 'POST' }],
  ['/detokenize', { name: 'detokenize', method: 'POST' }],
] as const);

interface ResolvedOptions {
  readonly host: string;
  readonly port: number;
  readonly apiKey: string | null;
  readonly maxBodyBytes: number;
  readonly servedModelNames: readonly string[];
  readonly maxModelLen: number;
  readonly tokenizer: Tokenizer;
  readonly failureRate: number;
  readonly failureTypes: readonly FailureType[];
  readonly seed: number;
  readonly workerIndex: number | undefined;
  readonly extraRoutes: ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined;
  readonly errorFormat: ErrorFormat;
  readonly eosProbability: number;
  readonly embeddingDim: number;
  readonly keepAliveTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly connectionsCheckingIntervalMs: number;
}

function positiveMs(value: number | undefined, fallback: number, field: string): number {
  const v = value ?? fallback;
  if (!(Number.isFinite(v) && v > 0)) throw new InvalidConfigError(field, `must be a positive number, got ${v}`);
  return v;
}

function resolveOptions(backend: Backend, o: HttpOptions): ResolvedOptions {
  const port = o.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidConfigError('port', `must be an integer in [0, 65535], got ${port}`);
  const maxBodyBytes = o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 1) throw new InvalidConfigError('maxBodyBytes', `must be a positive integer, got ${maxBodyBytes}`);
  const maxModelLen = o.maxModelLen ?? backend.maxModelLen;
  if (!Number.isSafeInteger(maxModelLen) || maxModelLen < 2) throw new InvalidConfigError('maxModelLen', `must be an integer >= 2, got ${maxModelLen}`);
  const names = o.servedModelNames !== undefined && o.servedModelNames.length > 0 ? o.servedModelNames : [backend.modelName];
  for (const n of names) if (n.length === 0) throw new InvalidConfigError('servedModelNames', 'model names must not be empty');
  const failureRate = o.failureRate ?? 0;
  if (!(failureRate >= 0 && failureRate <= 100)) throw new InvalidConfigError('failureRate', `must be a percentage in [0, 100], got ${failureRate}`);
  const failureTypes = o.failureTypes ?? FAILURE_TYPES;
  for (const t of failureTypes) {
    if (!(FAILURE_TYPES as readonly string[]).includes(t)) throw new InvalidConfigError('failureTypes', `unknown type ${t}; expected one of ${FAILURE_TYPES.join(', ')}`);
  }
  if (failureRate > 0 && failureTypes.length === 0) throw new InvalidConfigError('failureTypes', 'must name at least one type when failureRate > 0');
  const eosProbability = o.eosProbability ?? 0;
  if (!(eosProbability >= 0 && eosProbability <= 1)) throw new InvalidConfigError('eosProbability', `must be a probability in [0, 1], got ${eosProbability}`);
  const embeddingDim = o.embeddingDim ?? DEFAULT_EMBEDDING_DIM;
  if (!Number.isSafeInteger(embeddingDim) || embeddingDim < 1 || embeddingDim > 65536) throw new InvalidConfigError('embeddingDim', `must be an integer in [1, 65536], got ${embeddingDim}`);
  const errorFormat = o.errorFormat ?? 'vllm';
  if (errorFormat !== 'vllm' && errorFormat !== 'openai') throw new InvalidConfigError('errorFormat', `must be vllm or openai, got ${String(errorFormat)}`);
  const keepAliveTimeoutMs = positiveMs(o.timeoutKeepAliveS === undefined ? undefined : o.timeoutKeepAliveS * 1000, DEFAULT_TIMEOUT_KEEP_ALIVE_S * 1000, 'timeoutKeepAliveS');
  const headersTimeoutMs = positiveMs(o.headersTimeoutMs, DEFAULT_HEADERS_TIMEOUT_MS, 'headersTimeoutMs');
  const requestTimeoutMs = positiveMs(o.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS, 'requestTimeoutMs');
  if (requestTimeoutMs < headersTimeoutMs) throw new InvalidConfigError('requestTimeoutMs', `must be at least headersTimeoutMs (${headersTimeoutMs}), got ${requestTimeoutMs}`);
  const wi = o.workerIndex;
  if (wi !== undefined && (!Number.isInteger(wi) || wi < 0 || wi >= backend.numWorkers)) {
    throw new InvalidConfigError('workerIndex', `must be an integer in [0, ${backend.numWorkers}), got ${wi}`);
  }
  return {
    host: o.host ?? DEFAULT_HOST,
    port,
    apiKey: o.apiKey ?? null,
    maxBodyBytes,
    servedModelNames: [...names],
    maxModelLen,
    tokenizer: o.tokenizer ?? new WordTokenizer(),
    failureRate,
    failureTypes,
    seed: o.seed ?? 0,
    workerIndex: wi,
    extraRoutes: o.extraRoutes,
    errorFormat,
    eosProbability,
    embeddingDim,
    keepAliveTimeoutMs,
    headersTimeoutMs,
    requestTimeoutMs,
    // Node checks header/request deadlines on this interval (default 30 s): a fifth of the headers
    // timeout keeps a slow-loris cut-off close to its deadline.
    connectionsCheckingIntervalMs: Math.max(50, Math.min(30_000, Math.floor(headersTimeoutMs / 5))),
  };
}

function sendJson(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, JSON_HEADERS).end(body);
}

function anthropicStatusBody(err: unknown): [number, string] {
  if (!(err instanceof MockfleetError)) console.error('mockfleet http: request failed:', err);
  const { status, body } = anthropicErrorReply(err);
  return [status, body];
}

/** Answers with the error body (vLLM or OpenAI format) and status of `err` (routes outside this module use it too). */
export function sendError(res: ServerResponse, err: unknown, format: ErrorFormat = 'vllm'): void {
  const { status, body } = errorReply(err, format);
  // A non-MockfleetError is a bug in mockfleet: the client gets a 500 and the operator the stack.
  if (!(err instanceof MockfleetError)) console.error('mockfleet http: request failed:', err);
  if (res.headersSent) {
    // Only reachable when a writer already started the response; the client sees a cut stream.
    res.destroy(err instanceof Error ? err : undefined);
    return;
  }
  sendJson(res, status, body);
}

function headerString(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** Reads the whole body; over `limit` bytes answers 413 after draining (bounded) the rest. */
export function readBody(req: IncomingMessage, res: ServerResponse, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let settled = false;
    const tooLarge = () => new HttpApiError(413, 'invalid_request_error', 'request_too_large',
      `request body exceeds the limit of ${limit} bytes`);
    req.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total <= limit) {
        chunks.push(chunk);
        return;
      }
      chunks.length = 0;
      if (total > limit * BODY_DRAIN_FACTOR && !settled) {
        settled = true;
        res.setHeader('connection', 'close');
        reject(tooLarge());
      }
    });
    req.once('end', () => {
      if (settled) return;
      settled = true;
      if (total > limit) reject(tooLarge());
      else resolve(Buffer.concat(chunks, total));
    });
    req.once('error', (err) => {
      if (settled) return;
      settled = true;
      reject(new HttpApiError(400, 'invalid_request_error', 'invalid_body', `request body could not be read: ${err.message}`));
    });
    req.once('close', () => {
      if (settled) return;
      settled = true;
      reject(new HttpApiError(400, 'invalid_request_error', 'invalid_body', 'the client closed the connection before sending the whole body'));
    });
  });
}

/**
 * Open sockets and how many responses each has in flight, so close() can end every socket that
 * is not serving a request (node's closeIdleConnections skips connections that never sent one)
 * and end the others as soon as their response is done.
 */
class ConnectionTracker {
  private readonly sockets: Set<Socket>;
  private readonly activeBySocket: Map<Socket, number>;
  private closing: boolean;

  constructor() {
    this.sockets = new Set();
    this.activeBySocket = new Map();
    this.closing = false;
  }

  add(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.activeBySocket.delete(socket);
    });
  }

  track(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket;
    this.activeBySocket.set(socket, (this.activeBySocket.get(socket) ?? 0) + 1);
    if (this.closing) res.shouldKeepAlive = false;
    res.once('close', () => {
      const n = (this.activeBySocket.get(socket) ?? 1) - 1;
      if (n > 0) {
        this.activeBySocket.set(socket, n);
        return;
      }
      this.activeBySocket.delete(socket);
      if (this.closing) socket.end();
    });
  }

  /** Ends idle sockets now; busy ones end when their last response closes. */
  beginClose(): void {
    this.closing = true;
    for (const socket of this.sockets) if (!this.activeBySocket.has(socket)) socket.end();
  }
}

class Frontend {
  private readonly backend: Backend;
  private readonly o: ResolvedOptions;
  private readonly texts: TokenTextCache;
  private readonly scheduler: FlushScheduler;
  private readonly failures: FailureInjector;
  private readonly modelsBody: string;
  private readonly readyBody: string;
  private readonly notReadyBody: string;
  private readonly connections: ConnectionTracker;
  /** The tokenizer's generation vocabulary (what the ranks generate from). */
  private readonly vocabulary: Uint32Array;
  /** Seeds of choices whose request has no `seed`. */
  private readonly seeds: Rng;

  constructor(backend: Backend, o: ResolvedOptions, connections: ConnectionTracker) {
    this.connections = connections;
    this.vocabulary = o.tokenizer.generationVocabulary();
    this.seeds = new Rng(o.seed ^ 0x5eed5eed);
    this.backend = backend;
    this.o = o;
    this.texts = new TokenTextCache(o.tokenizer);
    this.scheduler = new FlushScheduler();
    this.failures = new FailureInjector(o.failureRate, o.failureTypes, o.seed);
    const created = Math.floor(Date.now() / 1000);
    this.modelsBody = JSON.stringify({
      object: 'list',
      data: o.servedModelNames.map((id) => ({
        id, object: 'model', created, owned_by: 'mockfleet', root: backend.modelName, parent: null, max_model_len: o.maxModelLen, permission: [],
      })),
    });
    this.readyBody = JSON.stringify({ status: 'ready' });
    this.notReadyBody = errorJson('the fleet is starting: not every rank is up yet', 'server_error', null, 'not_ready', 503, o.errorFormat);
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    this.connections.track(req, res);
    try {
      if (this.o.extraRoutes !== undefined && this.o.extraRoutes(req, res)) return;
      this.route(req, res);
    } catch (err) {
      this.fail(res, err);
    }
  }

  fail(res: ServerResponse, err: unknown): void {
    sendError(res, err, this.o.errorFormat);
  }

  private route(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const givenId = headerString(req, 'x-request-id');
    const validId = givenId !== undefined && givenId.length > 0 && givenId.length <= MAX_REQUEST_ID_LENGTH && REQUEST_ID_RE.test(givenId);
    const requestId = validId ? givenId : randomUUID();
    res.setHeader('x-request-id', requestId);
    if (givenId !== undefined && !validId) {
      throw badRequest(`X-Request-Id must be 1-${MAX_REQUEST_ID_LENGTH} visible ASCII characters`, 'X-Request-Id');
    }
    const route = ROUTES.get(path);
    if (route === undefined) {
      throw new HttpApiError(404, 'invalid_request_error', 'not_found', `Invalid URL (${req.method ?? ''} ${path})`);
    }
    if (req.method !== route.method) {
      res.setHeader('allow', route.method);
      throw new HttpApiError(405, 'invalid_request_error', 'method_not_allowed', `${path} accepts ${route.method}, not ${req.method ?? ''}`);
    }
    switch (route.name) {
      case 'completions':
      case 'chat':
        this.generate(route.name === 'chat' ? 'chat' : 'completion', requestId, req, res).catch((err: unknown) => this.fail(res, err));
        return;
      case 'responses':
        this.textApi('responses', requestId, req, res).catch((err: unknown) => this.fail(res, err));
        return;
      case 'messages':
        this.textApi('messages', requestId, req, res).catch((err: unknown) => {
          if (res.headersSent) res.destroy();
          else sendJson(res, ...anthropicStatusBody(err));
        });
        return;
      case 'embeddings':
        this.embeddings(requestId, req, res).catch((err: unknown) => this.fail(res, err));
        return;
      case 'tokenize':
        this.tokenize(req, res).catch((err: unknown) => this.fail(res, err));
        return;
      case 'detokenize':
        this.detokenize(req, res).catch((err: unknown) => this.fail(res, err));
        return;
      case 'models':
        this.authorize(req);
        sendJson(res, 200, this.modelsBody);
        return;
      case 'health':
        res.writeHead(200).end();
        return;
      case 'ready':
        if (this.backend.isReady()) sendJson(res, 200, this.readyBody);
        else sendJson(res, 503, this.notReadyBody);
        return;
      case 'metrics': {
        // Like prometheus_client behind vLLM (exposition.py _bake_output): OpenMetrics when the
        // scraper's Accept asks for it, gzip when its Accept-Encoding allows it.
        const openMetrics = /application\/openmetrics-text/i.test(headerString(req, 'accept') ?? '');
        const gzip = acceptsGzip(req.headers['accept-encoding']);
        const contentType = openMetrics ? OPENMETRICS_CONTENT_TYPE : this.backend.metricsContentType;
        const b = this.backend;
        const sent =
          b.metricsBody !== undefined
            ? b.metricsBody(this.o.workerIndex, openMetrics, !gzip).then((body) => sendMetricsBody(res, contentType, body, gzip))
            : b.metrics(this.o.workerIndex, openMetrics).then((body) => sendMetrics(res, contentType, body, gzip));
        sent.catch((err: unknown) => this.fail(res, err));
        return;
      }
    }
  }

  /** vLLM's --api-key guards /v1/* only; /health, /metrics and /tokenize stay open. */
  private authorize(req: IncomingMessage): void {
    if (this.o.apiKey === null) return;
    // Anthropic clients send x-api-key instead of a bearer token.
    if (headerString(req, 'authorization') !== `Bearer ${this.o.apiKey}` && headerString(req, 'x-api-key') !== this.o.apiKey) throw invalidApiKey();
  }

  private resolveModel(model: string | null): string {
    if (model === null) return this.o.servedModelNames[0] as string;
    if (!this.o.servedModelNames.includes(model)) throw modelNotFound(model);
    return model;
  }

  private pinnedRank(req: IncomingMessage): number | undefined {
    const raw = headerString(req, 'x-mockfleet-rank');
    if (raw === undefined) return undefined;
    const rank = /^\d{1,9}$/.test(raw) ? Number(raw) : -1;
    if (rank < 0 || rank >= this.backend.numRanks) {
      throw badRequest(`X-Mockfleet-Rank must be a rank index in [0, ${this.backend.numRanks}), got ${JSON.stringify(raw)}`, 'X-Mockfleet-Rank');
    }
    const wi = this.o.workerIndex;
    if (wi !== undefined) {
      const info = this.backend.ranks()[rank];
      if (info === undefined || info.workerIndex !== wi) {
        throw badRequest(`X-Mockfleet-Rank ${rank} does not belong to worker ${wi}, which this endpoint serves`, 'X-Mockfleet-Rank');
      }
    }
    return rank;
  }

  private forcedError(req: IncomingMessage, model: string): HttpApiError | null {
    const raw = headerString(req, 'x-return-error');
    if (raw === undefined) return null;
    const status = /^\d{3}$/.test(raw) ? Number(raw) : 0;
    if (status < 400 || status > 599) throw badRequest(`X-Return-Error must be an HTTP error status in [400, 599], got ${JSON.stringify(raw)}`, 'X-Return-Error');
    return forcedError(status, model);
  }

  private async generate(kind: GenerateKind, requestId: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.authorize(req);
    const body = parseJsonObject(await readBody(req, res, this.o.maxBodyBytes));
    const forced = this.forcedError(req, this.o.servedModelNames[0] as string);
    if (forced !== null) throw forced;
    const parsed = parseGenerate(kind, body);
    const model = this.resolveModel(parsed.model);
    const pinnedRank = this.pinnedRank(req);
    const promptParam = kind === 'chat' ? 'messages' : 'prompt';
    const prompts: Uint32Array[] = [];
    const maxTokensByPrompt: number[] = [];
    for (const p of parsed.prompts) {
      const promptTokens = p.ids ?? this.o.tokenizer.encode(p.text as string);
      // Omitted: completions 16 (vLLM's CompletionRequest default), chat and an explicit null up to the context limit.
      const toLimit = kind === 'chat' || parsed.maxTokensExplicitNull;
      const maxParam = kind === 'chat' && body['max_completion_tokens'] !== undefined ? 'max_completion_tokens' : 'max_tokens';
      maxTokensByPrompt.push(this.checkPrompt(promptTokens, parsed.maxTokens, toLimit ? null : DEFAULT_COMPLETION_MAX_TOKENS, promptParam, maxParam));
      prompts.push(promptTokens);
    }
    const injected = this.failures.draw();
    if (injected !== null) throw injectedFailure(injected, model);

    const meta: GenerationMeta = {
      kind,
      id: (kind === 'chat' ? 'chatcmpl-' : 'cmpl-') + requestId,
      created: Math.floor(Date.now() / 1000),
      model,
      includeUsage: parsed.includeUsage,
      errorFormat: this.o.errorFormat,
    };
    const sp = parsed.sampling;
    const specs: ChoiceSpec[] = [];
    for (let p = 0; p < prompts.length; p++) {
      for (let i = 0; i < sp.n; i++) {
        // vLLM's parallel sampling seeds child i with seed + i; unseeded choices get a fresh seed.
        const seed = sp.seed === null ? this.nextSeed(null) : (sp.seed + i) | 0;
        const plan = planChoice(this.vocabulary, this.o.tokenizer, sp, seed, maxTokensByPrompt[p] as number, this.o.eosProbability);
        specs.push({ index: p * sp.n + i, promptIndex: p, plan });
      }
    }
    const workerIndex = this.o.workerIndex;
    if (parsed.stream && specs.length === 1 && sp.stop.length === 0 && sp.logprobs === null && !sp.echo) {
      const plan = (specs[0] as ChoiceSpec).plan;
      const gen = new StreamingGeneration(res, meta, plan, this.texts, this.scheduler);
      const handle = this.backend.submit({
        requestId, promptTokens: prompts[0] as Uint32Array, maxTokens: plan.numTokens, pinnedRank, workerIndex, seed: plan.seed, stopAtEnd: plan.finishReason === 'stop',
        streaming: true,
      }, gen);
      gen.start();
      gen.attach(handle);
      return;
    }
    const echoTexts = sp.echo ? parsed.prompts.map((p, j) => p.text ?? this.o.tokenizer.decode(prompts[j] as Uint32Array)) : null;
    const group = new ChoiceGroupGeneration(res, meta, specs, prompts.length, {
      stream: parsed.stream, logprobs: sp.logprobs, echoTexts, tokenizer: this.o.tokenizer, vocabulary: this.vocabulary, scheduler: this.scheduler,
    });
    try {
      // The n choices of a prompt run on one rank, sharing the prompt's cached blocks (vLLM's
      // parallel sampling: n child requests in one engine); different prompts are routed apart.
      let rank: number | undefined = pinnedRank;
      for (let c = 0; c < specs.length; c++) {
        const spec = specs[c] as ChoiceSpec;
        if (spec.index % sp.n === 0) rank = pinnedRank;
        const childId = specs.length === 1 ? requestId : `${requestId}-${spec.index}`;
        const handle = this.backend.submit({
          requestId: childId, promptTokens: prompts[spec.promptIndex] as Uint32Array, maxTokens: spec.plan.numTokens, pinnedRank: rank, workerIndex, seed: spec.plan.seed,
          stopAtEnd: spec.plan.finishReason === 'stop', paramsN: spec.index % sp.n === 0 ? sp.n : 0, streaming: parsed.stream,
        }, group.callbacks(c));
        rank = handle.rank;
        group.attach(c, handle);
      }
    } catch (err) {
      group.cancel();
      throw err;
    }
    group.start();
  }

  /**
   * Checks one prompt against max-model-len and a rank's KV capacity; returns the tokens to
   * generate: `requested`, or when null `fallback` (null: up to the context limit).
   */
  private checkPrompt(promptTokens: Uint32Array, requested: number | null, fallback: number | null, promptParam: string, maxParam: string): number {
    const n = promptTokens.length;
    const L = this.o.maxModelLen;
    if (n === 0) throw badRequest(`${promptParam} has no tokens`, promptParam);
    if (n >= L) {
      throw contextLengthExceeded(`This model's maximum context length is ${L} tokens. However, your request has ${n} input tokens, leaving no room for output. Please reduce the length of the input.`, promptParam);
    }
    const maxTokens = requested ?? (fallback === null ? L - n : Math.min(fallback, L - n));
    if (n + maxTokens > L) {
      throw contextLengthExceeded(`This model's maximum context length is ${L} tokens. However, you requested ${n + maxTokens} tokens (${n} in the ${promptParam}, ${maxTokens} in the completion). Please reduce the length of the ${promptParam} or completion.`, maxParam);
    }
    const capacity = this.backend.numGpuBlocks * this.backend.blockSize;
    if (n + maxTokens > capacity) {
      throw contextLengthExceeded(`This request needs ${n + maxTokens} tokens of KV cache (${n} prompt + ${maxTokens} completion) but a rank holds at most ${capacity} (${this.backend.numGpuBlocks} blocks of ${this.backend.blockSize}); it can never be scheduled.`, promptParam);
    }
    return maxTokens;
  }

  private nextSeed(seed: number | null): number {
    return seed ?? this.seeds.nextI32();
  }

  /** /v1/responses and /v1/messages: one chat-templated prompt, one text output. */
  private async textApi(api: 'responses' | 'messages', requestId: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.authorize(req);
    const body = parseJsonObject(await readBody(req, res, this.o.maxBodyBytes));
    const forced = this.forcedError(req, this.o.servedModelNames[0] as string);
    if (forced !== null) throw forced;
    const parsed = api === 'responses' ? parseResponsesRequest(body) : parseMessagesRequest(body);
    const model = this.resolveModel(parsed.model);
    const pinnedRank = this.pinnedRank(req);
    const promptTokens = this.o.tokenizer.encode(parsed.promptText);
    const maxParam = api === 'responses' ? 'max_output_tokens' : 'max_tokens';
    const maxTokens = this.checkPrompt(promptTokens, parsed.maxTokens, null, api === 'responses' ? 'input' : 'messages', maxParam);
    const injected = this.failures.draw();
    if (injected !== null) throw injectedFailure(injected, model);
    const sampling: SamplingParams = {
      n: 1, seed: null, stop: parsed.stop, stopTokenIds: [], includeStopStrInOutput: false, minTokens: 0, ignoreEos: false, logprobs: null, echo: false,
    };
    const plan = planChoice(this.vocabulary, this.o.tokenizer, sampling, this.nextSeed(null), maxTokens, this.o.eosProbability);
    const instructions = typeof body['instructions'] === 'string' ? body['instructions'] : null;
    const dialect = api === 'responses'
      ? new ResponsesDialect(requestId, model, parsed.maxTokens, instructions, this.o.errorFormat)
      : new AnthropicDialect(requestId, model, promptTokens.length);
    const gen = new TextApiGeneration(res, dialect, plan, this.o.tokenizer, parsed.stream, this.scheduler);
    const handle = this.backend.submit({
      requestId, promptTokens, maxTokens: plan.numTokens, pinnedRank, workerIndex: this.o.workerIndex, seed: plan.seed, stopAtEnd: plan.finishReason === 'stop',
      streaming: parsed.stream,
    }, gen);
    gen.start();
    gen.attach(handle);
  }

  private async embeddings(requestId: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.authorize(req);
    const body = parseJsonObject(await readBody(req, res, this.o.maxBodyBytes));
    const forced = this.forcedError(req, this.o.servedModelNames[0] as string);
    if (forced !== null) throw forced;
    const parsed = parseEmbeddingsRequest(body);
    const model = this.resolveModel(parsed.model);
    const dim = parsed.dimensions ?? this.o.embeddingDim;
    if (dim > this.o.embeddingDim) throw badRequest(`dimensions must be at most the model's ${this.o.embeddingDim}, got ${dim}`, 'dimensions');
    const pinnedRank = this.pinnedRank(req);
    const prompts = parsed.inputs.map((p) => p.ids ?? this.o.tokenizer.encode(p.text as string));
    for (const p of prompts) this.checkPrompt(p, 1, null, 'input', 'input');
    const injected = this.failures.draw();
    if (injected !== null) throw injectedFailure(injected, model);
    const gen = new EmbeddingsGeneration(res, prompts.map((p) => embeddingVector(p, dim)), parsed.base64, model, this.o.errorFormat);
    try {
      for (let i = 0; i < prompts.length; i++) {
        const id = prompts.length === 1 ? requestId : `${requestId}-${i}`;
        gen.attach(i, this.backend.submit({ requestId: id, promptTokens: prompts[i] as Uint32Array, maxTokens: 1, pinnedRank, workerIndex: this.o.workerIndex, seed: this.nextSeed(null), streaming: false }, gen.callbacks(i)));
      }
    } catch (err) {
      gen.cancel();
      throw err;
    }
  }

  /** vLLM's /detokenize: {tokens} -> {prompt}. */
  private async detokenize(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = parseJsonObject(await readBody(req, res, this.o.maxBodyBytes));
    const m = body['model'];
    if (m !== undefined && m !== null) {
      if (typeof m !== 'string') throw badRequest('model must be a string', 'model');
      this.resolveModel(m);
    }
    const tokens = body['tokens'];
    if (!Array.isArray(tokens)) throw badRequest('tokens must be an array of token ids', 'tokens');
    const ids = new Uint32Array(tokens.length);
    for (let i = 0; i < tokens.length; i++) {
      const t: unknown = tokens[i];
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > 0xffffffff) throw badRequest(`tokens[${i}] must be a token id`, 'tokens');
      ids[i] = t;
    }
    sendJson(res, 200, JSON.stringify({ prompt: this.o.tokenizer.decode(ids) }));
  }

  private async tokenize(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = parseJsonObject(await readBody(req, res, this.o.maxBodyBytes));
    const parsed = parseTokenize(body);
    if (parsed.model !== null) this.resolveModel(parsed.model);
    const tokens = parsed.promptIds ?? this.o.tokenizer.encode(parsed.promptText as string);
    sendJson(res, 200, JSON.stringify({ count: tokens.length, max_model_len: this.o.maxModelLen, tokens: Array.from(tokens), token_strs: null }));
  }
}

/** Answers requests node:http could not parse (bad Content-Length, broken framing, huge headers). */
function onClientError(format: ErrorFormat, err: NodeJS.ErrnoException, socket: Socket): void {
  const pending = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || (pending !== undefined && pending !== null && pending.headersSent === true)) {
    socket.destroy();
    return;
  }
  const kind = err.code === 'HPE_HEADER_OVERFLOW' ? 'headers' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'timeout' : 'malformed';
  const status = kind === 'headers' ? 431 : kind === 'timeout' ? 408 : 400;
  const reason = kind === 'headers' ? 'Request Header Fields Too Large' : kind === 'timeout' ? 'Request Timeout' : 'Bad Request';
  const body = kind === 'headers'
    ? errorJson('request headers too large', 'invalid_request_error', null, 'headers_too_large', status, format)
    : kind === 'timeout'
      ? errorJson('the request was not received in time', 'invalid_request_error', null, 'request_timeout', status, format)
      : errorJson(`malformed HTTP request: ${err.code ?? err.message}`, 'invalid_request_error', null, 'malformed_request', status, format);
  socket.end(`HTTP/1.1 ${status} ${reason}\r\n` +
    `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

export async function startHttpServer(backend: Backend, opts: HttpOptions): Promise<HttpServer> {
  const o = resolveOptions(backend, opts);
  const connections = new ConnectionTracker();
  const frontend = new Frontend(backend, o, connections);
  const server = createServer({
    // uvicorn's --timeout-keep-alive: how long an idle keep-alive connection stays open. Node
    // announces it in `Keep-Alive: timeout=N`, so pooling clients retire sockets before the close.
    keepAliveTimeout: o.keepAliveTimeoutMs,
    // Slow-loris bounds, independent of keep-alive: headers (and a whole request) must arrive in time.
    headersTimeout: o.headersTimeoutMs,
    requestTimeout: o.requestTimeoutMs,
    connectionsCheckingInterval: o.connectionsCheckingIntervalMs,
  }, (req, res) => frontend.handle(req, res));
  server.on('connection', (socket: Socket) => connections.add(socket));
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => onClientError(o.errorFormat, err, socket));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const hostForUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${hostForUrl}:${port}`,
    port,
    close(graceMs = DEFAULT_CLOSE_GRACE_MS): Promise<void> {
      if (closing !== null) return closing;
      closing = new Promise<void>((resolve, reject) => {
        const timer = graceMs > 0 ? setTimeout(() => server.closeAllConnections(), graceMs) : null;
        server.close((err) => {
          if (timer !== null) clearTimeout(timer);
          if (err === undefined) resolve();
          else reject(err);
        });
        if (timer === null) server.closeAllConnections();
        else connections.beginClose();
      });
      return closing;
    },
  };
}

/** The exposition as one write, or its chunks corked into one writev. */
const METRICS_GZIP_HEADERS = { 'content-encoding': 'gzip', vary: 'Accept-Encoding' } as const;

/** A backend's text (or its UTF-8 chunks); gzip compresses it here, as one member. */
async function sendMetrics(res: ServerResponse, contentType: string, body: string | readonly Uint8Array[], gzip: boolean): Promise<void> {
  const chunks = typeof body === 'string' ? [Buffer.from(body, 'utf8')] : body;
  if (gzip) {
    const gz = await gzipAsync(chunks.length === 1 ? (chunks[0] as Uint8Array) : Buffer.concat(chunks as Uint8Array[]));
    if (res.destroyed) return;
    res.writeHead(200, { 'content-type': contentType, 'content-length': gz.length, ...METRICS_GZIP_HEADERS }).end(gz);
    return;
  }
  writeAll(res, { 'content-type': contentType, vary: 'Accept-Encoding' }, chunks);
}

/** Headers, then every chunk in one writev (cork/uncork). */
function writeAll(res: ServerResponse, headers: Record<string, string>, chunks: readonly Uint8Array[]): void {
  let length = 0;
  for (const chunk of chunks) length += chunk.byteLength;
  res.writeHead(200, { ...headers, 'content-length': length });
  res.cork();
  for (const chunk of chunks) res.write(chunk);
  res.end();
}

/**
 * A cached exposition (src/metrics/fleet-metrics.ts): gzip = its cached segments stitched into one
 * member, in one writev; identity = its text, inflated piece by piece and written as the socket
 * drains (a 4096-rank text is ~190 MiB; it is never held whole). A client that leaves stops the
 * writing; the cache was complete before the first byte, so the next scrape is unaffected.
 */
async function sendMetricsBody(res: ServerResponse, contentType: string, body: MetricsBody, gzip: boolean): Promise<void> {
  if (res.destroyed) return;
  if (gzip) {
    writeAll(res, { 'content-type': contentType, ...METRICS_GZIP_HEADERS }, body.gzip());
    return;
  }
  res.writeHead(200, { 'content-type': contentType, vary: 'Accept-Encoding', 'content-length': body.bytes });
  for await (const text of body.identity()) {
    if (res.destroyed) return;
    if (!res.write(text)) await drainedOrClosed(res);
  }
  if (!res.destroyed) res.end();
}

function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
