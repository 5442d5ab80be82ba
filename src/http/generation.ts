/**
 * Response writers for one completions / chat request. Each is the GenerateCallbacks (one per
 * engine request: a choice) handed to Backend.submit, and each aborts its engine requests when
 * the client disconnects before the response ended.
 *
 *  - StreamingGeneration: the hot path (stream, one choice, no stop strings, logprobs or echo):
 *    one SSE event per token built from cached bytes, no per-token strings.
 *  - ChoiceGroupGeneration: everything else — buffered responses, n > 1, batched prompts, stop
 *    strings (text cut where the stop string starts), logprobs, echo — streamed or not.
 */
import type { ServerResponse } from 'node:http';
import type { GenerateCallbacks, GenerateFinish, GenerateHandle } from '../cluster/backend.js';
import { generatedHash, generatedTokenIndex } from '../engine/generated-tokens.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { HttpApiError } from '../util/errors.js';
import { errorReply } from './errors.js';
import type { ErrorFormat } from './errors.js';
import { jsonAscii } from './json-ascii.js';
import type { GenerateKind } from './parse.js';
import type { ChoicePlan } from './sampling.js';
import { tokenPiece } from './sampling.js';
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
  readonly errorFormat: ErrorFormat;
}

/** One choice of a response: which prompt it continues and how it ends. */
export interface ChoiceSpec {
  /** `index` in the response (prompt index x n + sample index). */
  readonly index: number;
  readonly promptIndex: number;
  readonly plan: ChoicePlan;
}

export interface ChoiceGroupOptions {
  readonly stream: boolean;
  /** Top alternatives per token, or null: no logprobs. */
  readonly logprobs: number | null;
  /** Completions echo: each prompt's text, by prompt index; null without echo. */
  readonly echoTexts: readonly string[] | null;
  readonly tokenizer: Tokenizer;
  readonly vocabulary: Uint32Array;
  readonly scheduler: FlushScheduler;
}

const SSE_DONE = 'data: [DONE]\n\n';

/** The error a finish other than 'length' reports to the client. */
function finishError(f: GenerateFinish): unknown {
  if (f.reason === 'error') {
    return f.error ?? new HttpApiError(500, 'server_error', 'internal_error', `rank ${f.rank} failed the request without an error`);
  }
  return new HttpApiError(503, 'server_error', 'request_aborted', 'The request was aborted by the server (shutting down or rank lost).');
}

interface UsageSums {
  prompt: number;
  completion: number;
  cached: number;
}

function usageJson(u: UsageSums): string {
  return jsonAscii({
    prompt_tokens: u.prompt,
    completion_tokens: u.completion,
    total_tokens: u.prompt + u.completion,
    prompt_tokens_details: { cached_tokens: u.cached },
  });
}

/**
 * One SSE event per generated token, built from constant per-response prefix/suffix strings:
 *
 *   data: {"id":…,"object":…,"created":…,"model":…,"choices":[{"index":0,"delta":{"content":  (prefix)
 *   "token text"                                                                             (cached)
 *   },"logprobs":null,"finish_reason":null}]}\n\n                                             (suffix)
 */
export class StreamingGeneration implements GenerateCallbacks {
  private readonly res: ServerResponse;
  private readonly meta: GenerationMeta;
  private readonly plan: ChoicePlan;
  private readonly texts: TokenTextCache;
  private readonly stream: SseStream;
  private readonly head: string;
  /** Bytes before the token text in every content chunk of this response. */
  private readonly tokenPrefix: Buffer;
  private readonly chat: boolean;
  private generated: number;
  private done: boolean;
  private handle: GenerateHandle | null;
  private clientGone: boolean;

  constructor(res: ServerResponse, meta: GenerationMeta, plan: ChoicePlan, texts: TokenTextCache, scheduler: FlushScheduler) {
    this.res = res;
    this.meta = meta;
    this.plan = plan;
    this.texts = texts;
    this.stream = new SseStream(res, scheduler);
    const object = meta.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    this.head = `data: {"id":${jsonAscii(meta.id)},"object":"${object}","created":${meta.created},"model":${jsonAscii(meta.model)},`;
    this.chat = meta.kind === 'chat';
    this.tokenPrefix = Buffer.from(this.head + (this.chat ? '"choices":[{"index":0,"delta":{"content":' : '"choices":[{"index":0,"text":'), 'latin1');
    this.generated = 0;
    this.done = false;
    this.handle = null;
    this.clientGone = false;
    res.once('close', () => this.onClose());
  }

  attach(handle: GenerateHandle): void {
    this.handle = handle;
    if (this.clientGone) handle.abort();
  }

  /** Nothing was submitted (submit threw): write nothing, the caller answers with the error. */
  cancel(): void {
    this.done = true;
    this.stream.close();
  }

  /** Sends the SSE headers; chat streams open with vLLM's role-only chunk (empty content). */
  start(): void {
    this.res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    if (this.chat) {
      this.stream.push(this.head + '"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n');
    } else {
      this.res.flushHeaders();
    }
  }

  onTokens(tokenIds: Uint32Array, start: number, count: number): void {
    if (this.done) return;
    const end = start + count;
    let i = start;
    if (this.generated === 0 && i < end) {
      this.stream.pushToken(this.tokenPrefix, this.texts.firstTokenTail(tokenIds[i] as number, this.chat));
      i++;
    }
    for (; i < end; i++) this.stream.pushToken(this.tokenPrefix, this.texts.tokenTail(tokenIds[i] as number, this.chat));
    this.generated += count;
  }

  onFinish(finish: GenerateFinish): void {
    if (this.done) return;
    this.done = true;
    if (finish.reason !== 'length') {
      this.stream.end(`data: ${jsonAscii(JSON.parse(errorReply(finishError(finish), this.meta.errorFormat).body))}\n\n${SSE_DONE}`);
      return;
    }
    const reason = `"finish_reason":"${this.plan.finishReason}","stop_reason":${jsonAscii(this.plan.stopReason)}`;
    let tail = this.chat
      ? this.head + `"choices":[{"index":0,"delta":{},"logprobs":null,${reason}}]}\n\n`
      : this.head + `"choices":[{"index":0,"text":"","logprobs":null,${reason}}]}\n\n`;
    if (this.meta.includeUsage) {
      tail += this.head + `"choices":[],"usage":${usageJson({ prompt: finish.promptTokens, completion: finish.completionTokens, cached: finish.cachedTokens })}}\n\n`;
    }
    this.stream.end(tail + SSE_DONE);
  }

  private onClose(): void {
    if (this.res.writableEnded) return;
    this.clientGone = true;
    this.done = true;
    this.stream.close();
    if (this.handle !== null) this.handle.abort();
  }
}

/** Per-choice state of a ChoiceGroupGeneration. */
class ChoiceState implements GenerateCallbacks {
  readonly spec: ChoiceSpec;
  private readonly group: ChoiceGroupGeneration;
  handle: GenerateHandle | null;
  finish: GenerateFinish | null;
  /** Tokens received. */
  generated: number;
  /** Characters of generated text produced so far (before the stop-string cut). */
  rawLength: number;
  /** Buffered mode: the visible text and the logprobs entries. */
  text: string;
  readonly lpTokens: string[];
  readonly lpValues: number[];
  readonly lpTop: (readonly TopEntry[])[];
  readonly lpOffsets: number[];

  constructor(spec: ChoiceSpec, group: ChoiceGroupGeneration) {
    this.spec = spec;
    this.group = group;
    this.handle = null;
    this.finish = null;
    this.generated = 0;
    this.rawLength = 0;
    this.text = '';
    this.lpTokens = [];
    this.lpValues = [];
    this.lpTop = [];
    this.lpOffsets = [];
  }

  onTokens(tokenIds: Uint32Array, start: number, count: number): void {
    this.group.onChoiceTokens(this, tokenIds, start, count);
  }

  onFinish(finish: GenerateFinish): void {
    this.group.onChoiceFinish(this, finish);
  }
}

interface TopEntry {
  readonly token: string;
  readonly logprob: number;
}

const LOGPROB_SALT_BASE = 16;

/**
 * Deterministic synthetic logprobs of generated token k: the sampled token first (logprob in
 * (-2, 0]), then `top - 1` other distinct generation-vocabulary tokens with strictly lower
 * logprobs, so the list is sorted and has no duplicates.
 */
function syntheticLogprobs(tokenizer: Tokenizer, vocabulary: Uint32Array, seed: number, k: number, piece: string, top: number): { logprob: number; top: TopEntry[] } {
  const logprob = -2 * (generatedHash(seed, k, LOGPROB_SALT_BASE) / 4294967296);
  const entries: TopEntry[] = [];
  const want = Math.min(top, vocabulary.length);
  if (want === 0) return { logprob, top: entries };
  entries.push({ token: piece, logprob });
  const chosenIdx = generatedTokenIndex(vocabulary.length, seed, k);
  let lp = logprob;
  for (let j = 1; j < want; j++) {
    lp -= 0.05 + 2 * (generatedHash(seed, k, LOGPROB_SALT_BASE + j) / 4294967296);
    const alt = vocabulary[(chosenIdx + j) % vocabulary.length] as number;
    entries.push({ token: tokenizer.decodeToken(alt), logprob: lp });
  }
  return { logprob, top: entries };
}

function utf8Bytes(s: string): number[] {
  return Array.from(Buffer.from(s, 'utf8'));
}

/**
 * Several choices (n > 1, batched prompts) and the features that need per-token text: stop
 * strings, logprobs, echo. Streams one event per token per choice (index = its choice), or
 * answers one JSON body once every choice finished.
 */
export class ChoiceGroupGeneration {
  private readonly res: ServerResponse;
  private readonly meta: GenerationMeta;
  private readonly o: ChoiceGroupOptions;
  private readonly choices: ChoiceState[];
  private readonly stream: SseStream | null;
  private readonly head: string;
  private readonly promptTokens: number[];
  private readonly cachedTokens: number[];
  private remaining: number;
  private done: boolean;
  private clientGone: boolean;

  constructor(res: ServerResponse, meta: GenerationMeta, specs: readonly ChoiceSpec[], numPrompts: number, o: ChoiceGroupOptions) {
    this.res = res;
    this.meta = meta;
    this.o = o;
    this.choices = specs.map((s) => new ChoiceState(s, this));
    this.stream = o.stream ? new SseStream(res, o.scheduler) : null;
    const object = meta.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    this.head = `data: {"id":${jsonAscii(meta.id)},"object":"${object}","created":${meta.created},"model":${jsonAscii(meta.model)},`;
    this.promptTokens = new Array<number>(numPrompts).fill(0);
    this.cachedTokens = new Array<number>(numPrompts).fill(-1);
    this.remaining = specs.length;
    this.done = false;
    this.clientGone = false;
    res.once('close', () => this.onClose());
  }

  /** The callbacks of choice i (in spec order). */
  callbacks(i: number): GenerateCallbacks {
    return this.choices[i] as ChoiceState;
  }

  attach(i: number, handle: GenerateHandle): void {
    const c = this.choices[i] as ChoiceState;
    c.handle = handle;
    if (this.clientGone || this.done) handle.abort();
  }

  /** A later submit threw: abort what was submitted and write nothing (the caller answers). */
  cancel(): void {
    this.done = true;
    this.stream?.close();
    this.abortAll();
  }

  start(): void {
    if (this.stream === null) return;
    this.res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    let opening = '';
    for (const c of this.choices) {
      const index = c.spec.index;
      if (this.meta.kind === 'chat') {
        opening += this.head + `"choices":[{"index":${index},"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n`;
      } else if (this.o.echoTexts !== null) {
        // vLLM streams the echoed prompt as each choice's first chunk.
        const text = this.o.echoTexts[c.spec.promptIndex] as string;
        opening += this.head + `"choices":[{"index":${index},"text":${jsonAscii(text)},"logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n`;
      }
    }
    if (opening.length > 0) this.stream.push(opening);
    else this.res.flushHeaders();
  }

  onChoiceTokens(c: ChoiceState, tokenIds: Uint32Array, start: number, count: number): void {
    if (this.done) return;
    const chat = this.meta.kind === 'chat';
    const plan = c.spec.plan;
    let events = '';
    for (let i = start; i < start + count; i++) {
      const id = tokenIds[i] as number;
      const k = c.generated++;
      const piece = tokenPiece(this.o.tokenizer, id, k);
      const rawStart = c.rawLength;
      c.rawLength += piece.length;
      const visible = plan.textLength < 0 ? piece : piece.slice(0, Math.max(0, plan.textLength - rawStart));
      let lp: { logprob: number; top: TopEntry[] } | null = null;
      if (this.o.logprobs !== null) lp = syntheticLogprobs(this.o.tokenizer, this.o.vocabulary, plan.seed, k, piece, chat ? this.o.logprobs : Math.max(1, this.o.logprobs));
      if (this.stream === null) {
        const offset = this.echoLength(c) + c.text.length;
        c.text += visible;
        if (lp !== null) {
          c.lpTokens.push(piece);
          c.lpValues.push(lp.logprob);
          c.lpTop.push(lp.top);
          c.lpOffsets.push(offset);
        }
        continue;
      }
      const index = c.spec.index;
      if (chat) {
        const logprobs = lp === null ? 'null' : jsonAscii({ content: [this.chatLogprob(piece, lp)] });
        events += this.head + `"choices":[{"index":${index},"delta":{"content":${jsonAscii(visible)}},"logprobs":${logprobs},"finish_reason":null}]}\n\n`;
      } else {
        const offset = this.echoLength(c) + rawStart;
        const logprobs = lp === null ? 'null' : jsonAscii({
          text_offset: [offset], token_logprobs: [lp.logprob], tokens: [piece], top_logprobs: [topDict(lp.top)],
        });
        events += this.head + `"choices":[{"index":${index},"text":${jsonAscii(visible)},"logprobs":${logprobs},"finish_reason":null,"stop_reason":null}]}\n\n`;
      }
    }
    if (events.length > 0) this.stream?.push(events);
  }

  onChoiceFinish(c: ChoiceState, finish: GenerateFinish): void {
    if (this.done) return;
    if (finish.reason !== 'length') {
      this.fail(finish);
      return;
    }
    c.finish = finish;
    const p = c.spec.promptIndex;
    this.promptTokens[p] = finish.promptTokens;
    if (this.cachedTokens[p] === -1) this.cachedTokens[p] = finish.cachedTokens;
    if (this.stream !== null) {
      const plan = c.spec.plan;
      const reason = `"finish_reason":"${plan.finishReason}","stop_reason":${jsonAscii(plan.stopReason)}`;
      this.stream.push(this.meta.kind === 'chat'
        ? this.head + `"choices":[{"index":${c.spec.index},"delta":{},"logprobs":null,${reason}}]}\n\n`
        : this.head + `"choices":[{"index":${c.spec.index},"text":"","logprobs":null,${reason}}]}\n\n`);
    }
    if (--this.remaining === 0) this.complete();
  }

  private usage(): UsageSums {
    let prompt = 0;
    let cached = 0;
    for (let p = 0; p < this.promptTokens.length; p++) {
      prompt += this.promptTokens[p] as number;
      cached += Math.max(0, this.cachedTokens[p] as number);
    }
    let completion = 0;
    for (const c of this.choices) completion += (c.finish as GenerateFinish).completionTokens;
    return { prompt, completion, cached };
  }

  private complete(): void {
    this.done = true;
    const usage = this.usage();
    if (this.stream !== null) {
      const tail = this.meta.includeUsage ? this.head + `"choices":[],"usage":${usageJson(usage)}}\n\n` : '';
      this.stream.end(tail + SSE_DONE);
      return;
    }
    const chat = this.meta.kind === 'chat';
    const choices = this.choices.slice().sort((a, b) => a.spec.index - b.spec.index).map((c) => {
      const plan = c.spec.plan;
      if (chat) {
        const logprobs = this.o.logprobs === null ? null : {
          content: c.lpTokens.map((token, i) => this.chatLogprob(token, { logprob: c.lpValues[i] as number, top: c.lpTop[i] as TopEntry[] })),
        };
        return { index: c.spec.index, message: { role: 'assistant', content: c.text }, logprobs, finish_reason: plan.finishReason, stop_reason: plan.stopReason };
      }
      const logprobs = this.o.logprobs === null ? null : {
        text_offset: c.lpOffsets, token_logprobs: c.lpValues, tokens: c.lpTokens, top_logprobs: c.lpTop.map(topDict),
      };
      const echo = this.o.echoTexts === null ? '' : this.o.echoTexts[c.spec.promptIndex] as string;
      return { index: c.spec.index, text: echo + c.text, logprobs, finish_reason: plan.finishReason, stop_reason: plan.stopReason };
    });
    const body = JSON.stringify({
      id: this.meta.id,
      object: chat ? 'chat.completion' : 'text_completion',
      created: this.meta.created,
      model: this.meta.model,
      choices,
      usage: JSON.parse(usageJson(usage)) as unknown,
    });
    this.res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  }

  private chatLogprob(token: string, lp: { logprob: number; top: readonly TopEntry[] }): object {
    return {
      token,
      logprob: lp.logprob,
      bytes: utf8Bytes(token),
      top_logprobs: lp.top.map((e) => ({ token: e.token, logprob: e.logprob, bytes: utf8Bytes(e.token) })),
    };
  }

  private echoLength(c: ChoiceState): number {
    return this.o.echoTexts === null ? 0 : (this.o.echoTexts[c.spec.promptIndex] as string).length;
  }

  private fail(finish: GenerateFinish): void {
    this.done = true;
    this.abortAll();
    const { status, body } = errorReply(finishError(finish), this.meta.errorFormat);
    if (this.stream !== null) this.stream.end(`data: ${jsonAscii(JSON.parse(body))}\n\n${SSE_DONE}`);
    else this.res.writeHead(status, { 'content-type': 'application/json' }).end(body);
  }

  private abortAll(): void {
    for (const c of this.choices) if (c.handle !== null && c.finish === null) c.handle.abort();
  }

  private onClose(): void {
    if (this.res.writableEnded) return;
    this.clientGone = true;
    this.done = true;
    this.stream?.close();
    this.abortAll();
  }
}

function topDict(entries: readonly TopEntry[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of entries) if (!(e.token in out)) out[e.token] = e.logprob;
  return out;
}
