/**
 * Response writers for one generate request: BufferedGeneration (stream=false) and
 * StreamingGeneration (SSE). Both are the GenerateCallbacks handed to Backend.submit, and both
 * abort the backend request when the client disconnects before the response ended.
 */
import { jsonAscii } from './json-ascii.js';
import type { ServerResponse } from 'node:http';
import type { GenerateCallbacks, GenerateFinish, GenerateHandle } from '../cluster/backend.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { HttpApiError } from '../util/errors.js';
import { errorReply } from './errors.js';
import type { GenerateKind } from './parse.js';
import type { FlushScheduler } from './sse.js';
import { SseStream } from './sse.js';
import type { TokenTextCache } from './token-text-cache.js';

export interface GenerationMeta {
  readonly kind: GenerateKind;
  /** Response id: cmpl-<request id> or chatcmpl-<request id>. */
  readonly id: string;
  /** Unix seconds. */
  readonly created: number;
  readonly model: string;
  readonly includeUsage: boolean;
}

const SSE_DONE = 'data: [DONE]\n\n';

function usageObject(f: GenerateFinish): object {
  return {
    prompt_tokens: f.promptTokens,
    completion_tokens: f.completionTokens,
    total_tokens: f.promptTokens + f.completionTokens,
    prompt_tokens_details: { cached_tokens: f.cachedTokens },
  };
}

/** The error a finish other than 'length' reports to the client. */
function finishError(f: GenerateFinish): unknown {
  if (f.reason === 'error') {
    return f.error ?? new HttpApiError(500, 'server_error', 'internal_error', `rank ${f.rank} failed the request without an error`);
  }
  return new HttpApiError(503, 'server_error', 'request_aborted', 'The request was aborted by the server (shutting down or rank lost).');
}

abstract class Generation implements GenerateCallbacks {
  protected readonly res: ServerResponse;
  protected readonly meta: GenerationMeta;
  /** The response ended or the client left: callbacks write nothing more. */
  protected done: boolean;
  private handle: GenerateHandle | null;
  private clientGone: boolean;

  constructor(res: ServerResponse, meta: GenerationMeta) {
    this.res = res;
    this.meta = meta;
    this.done = false;
    this.handle = null;
    this.clientGone = false;
    res.once('close', () => this.onClose());
  }

  attach(handle: GenerateHandle): void {
    this.handle = handle;
    if (this.clientGone) handle.abort();
  }

  abstract onTokens(tokenIds: Uint32Array, start: number, count: number): void;
  abstract onFinish(finish: GenerateFinish): void;

  protected abstract onClientGone(): void;

  private onClose(): void {
    if (this.res.writableEnded) return;
    this.clientGone = true;
    this.done = true;
    this.onClientGone();
    if (this.handle !== null) this.handle.abort();
  }
}

export class BufferedGeneration extends Generation {
  private readonly tokenizer: Tokenizer;
  private text: string;

  constructor(res: ServerResponse, meta: GenerationMeta, tokenizer: Tokenizer) {
    super(res, meta);
    this.tokenizer = tokenizer;
    this.text = '';
  }

  onTokens(tokenIds: Uint32Array, start: number, count: number): void {
    if (this.done) return;
    const end = start + count;
    for (let i = start; i < end; i++) this.text += this.tokenizer.decodeToken(tokenIds[i] as number);
  }

  onFinish(finish: GenerateFinish): void {
    if (this.done) return;
    this.done = true;
    if (finish.reason !== 'length') {
      const { status, body } = errorReply(finishError(finish));
      this.res.writeHead(status, { 'content-type': 'application/json' }).end(body);
      return;
    }
    const m = this.meta;
    const choice = m.kind === 'chat'
      ? { index: 0, message: { role: 'assistant', content: this.text }, logprobs: null, finish_reason: 'length', stop_reason: null }
      : { index: 0, text: this.text, logprobs: null, finish_reason: 'length', stop_reason: null };
    const body = JSON.stringify({
      id: m.id,
      object: m.kind === 'chat' ? 'chat.completion' : 'text_completion',
      created: m.created,
      model: m.model,
      choices: [choice],
      usage: usageObject(finish),
    });
    this.res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  }

  protected onClientGone(): void {
    this.text = '';
  }
}

/**
 * One SSE event per generated token, built from constant per-response prefix/suffix strings:
 *
 *   data: {"id":…,"object":…,"created":…,"model":…,"choices":[{"index":0,"delta":{"content":  (prefix)
 *   "token text"                                                                             (cached)
 *   },"logprobs":null,"finish_reason":null}]}\n\n                                             (suffix)
 */
export class StreamingGeneration extends Generation {
  private readonly texts: TokenTextCache;
  private readonly stream: SseStream;
  private readonly head: string;
  /** Bytes before the token text in every content chunk of this response. */
  private readonly tokenPrefix: Buffer;
  private readonly chat: boolean;

  constructor(res: ServerResponse, meta: GenerationMeta, texts: TokenTextCache, scheduler: FlushScheduler) {
    super(res, meta);
    this.texts = texts;
    this.stream = new SseStream(res, scheduler);
    const object = meta.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    this.head = `data: {"id":${jsonAscii(meta.id)},"object":"${object}","created":${meta.created},"model":${jsonAscii(meta.model)},`;
    this.chat = meta.kind === 'chat';
    this.tokenPrefix = Buffer.from(this.head + (this.chat ? '"choices":[{"index":0,"delta":{"content":' : '"choices":[{"index":0,"text":'), 'latin1');
  }

  /** Sends the SSE headers; chat streams open with vLLM's role-only chunk (empty content). */
  start(): void {
    this.res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    if (this.meta.kind === 'chat') {
      this.stream.push(this.head + '"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n');
    } else {
      this.res.flushHeaders();
    }
  }

  onTokens(tokenIds: Uint32Array, start: number, count: number): void {
    if (this.done) return;
    const end = start + count;
    for (let i = start; i < end; i++) this.stream.pushToken(this.tokenPrefix, this.texts.tokenTail(tokenIds[i] as number, this.chat));
  }

  onFinish(finish: GenerateFinish): void {
    if (this.done) return;
    this.done = true;
    if (finish.reason !== 'length') {
      this.stream.end(`data: ${jsonAscii(JSON.parse(errorReply(finishError(finish)).body))}\n\n${SSE_DONE}`);
      return;
    }
    let tail = this.meta.kind === 'chat'
      ? this.head + '"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length","stop_reason":null}]}\n\n'
      : this.head + '"choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"length","stop_reason":null}]}\n\n';
    if (this.meta.includeUsage) tail += this.head + `"choices":[],"usage":${jsonAscii(usageObject(finish))}}\n\n`;
    this.stream.end(tail + SSE_DONE);
  }

  protected onClientGone(): void {
    this.stream.close();
  }
}
