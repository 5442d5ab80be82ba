/**
 * The OpenAI Responses API (/v1/responses) and the Anthropic Messages API (/v1/messages), both
 * served like vLLM serves them: the input is rendered with the chat template and run as one
 * engine request (same ranks, router, metrics as chat completions). One choice, text output.
 *
 * Shapes: OpenAI `Response` / streamed `response.*` events (openai-node
 * src/resources/responses/responses.ts); Anthropic `Message` / streamed message_start …
 * message_stop events and `{"type":"error","error":{type,message}}` errors
 * (anthropic-sdk-typescript src/resources/messages/messages.ts).
 */
import type { ServerResponse } from 'node:http';
import type { GenerateCallbacks, GenerateFinish, GenerateHandle } from '../cluster/backend.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { HttpApiError, MockfleetError } from '../util/errors.js';
import { renderChat } from './chat-template.js';
import type { ChatMessage } from './chat-template.js';
import { badRequest, errorReply } from './errors.js';
import type { ErrorFormat, ErrorReply } from './errors.js';
import { jsonAscii } from './json-ascii.js';
import type { ChoicePlan } from './sampling.js';
import { tokenPiece } from './sampling.js';
import type { FlushScheduler } from './sse.js';
import { SseStream } from './sse.js';

type Body = Record<string, unknown>;

export interface ParsedTextRequest {
  readonly model: string | null;
  readonly promptText: string;
  /** null: up to the context limit. */
  readonly maxTokens: number | null;
  readonly stream: boolean;
  readonly stop: readonly string[];
}

function optionalString(body: Body, key: string): string | null {
  const v = body[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw badRequest(`${key} must be a string`, key);
  return v;
}

function optionalBool(body: Body, key: string): boolean {
  const v = body[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw badRequest(`${key} must be a boolean`, key);
  return v;
}

function optionalPositiveInt(body: Body, key: string): number | null {
  const v = body[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw badRequest(`${key} must be an integer`, key);
  if (v < 1) throw badRequest(`${key} must be at least 1, got ${v}`, key);
  return v;
}

function checkNumber(body: Body, key: string, min: number, max: number): void {
  const v = body[key];
  if (v === undefined || v === null) return;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw badRequest(`${key} must be a number in [${min}, ${max}]`, key);
}

/** Text of `content`: a string or a list of text blocks whose type is one of `types`. */
function blocksText(content: unknown, param: string, types: readonly string[]): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw badRequest(`${param} must be a string or an array of content blocks`, param);
  const parts: string[] = [];
  for (let i = 0; i < content.length; i++) {
    const b: unknown = content[i];
    const p = `${param}[${i}]`;
    if (typeof b !== 'object' || b === null || Array.isArray(b)) throw badRequest(`${p} must be an object`, p);
    const type = (b as Body)['type'];
    if (typeof type !== 'string' || !types.includes(type)) throw badRequest(`${p}.type ${JSON.stringify(type)} is not supported; use ${types.join(' or ')}`, `${p}.type`);
    const text = (b as Body)['text'];
    if (typeof text !== 'string') throw badRequest(`${p}.text must be a string`, `${p}.text`);
    parts.push(text);
  }
  return parts.join('\n');
}

const RESPONSES_ROLES = new Set(['user', 'assistant', 'system', 'developer']);

/** POST /v1/responses body: input (string or message items), instructions, max_output_tokens, stream. */
export function parseResponsesRequest(body: Body): ParsedTextRequest {
  const model = optionalString(body, 'model');
  const messages: ChatMessage[] = [];
  const instructions = optionalString(body, 'instructions');
  if (instructions !== null) messages.push({ role: 'system', content: instructions });
  const input = body['input'];
  if (typeof input === 'string') {
    if (input.length === 0) throw badRequest('input must not be empty', 'input');
    messages.push({ role: 'user', content: input });
  } else if (Array.isArray(input)) {
    if (input.length === 0) throw badRequest('input must not be empty', 'input');
    for (let i = 0; i < input.length; i++) {
      const item: unknown = input[i];
      const p = `input[${i}]`;
      if (typeof item !== 'object' || item === null || Array.isArray(item)) throw badRequest(`${p} must be an object`, p);
      const type = (item as Body)['type'];
      if (type !== undefined && type !== 'message') throw badRequest(`${p}.type ${JSON.stringify(type)} is not supported; only message items are`, `${p}.type`);
      const role = (item as Body)['role'];
      if (typeof role !== 'string' || !RESPONSES_ROLES.has(role)) throw badRequest(`${p}.role must be one of ${[...RESPONSES_ROLES].join(', ')}`, `${p}.role`);
      messages.push({ role, content: blocksText((item as Body)['content'], `${p}.content`, ['input_text', 'output_text', 'text']) });
    }
  } else {
    throw badRequest('input must be a string or an array of message items', 'input');
  }
  if (body['previous_response_id'] !== undefined && body['previous_response_id'] !== null) {
    throw badRequest('previous_response_id is not supported: mockfleet stores no responses', 'previous_response_id');
  }
  checkNumber(body, 'temperature', 0, 2);
  checkNumber(body, 'top_p', 0, 1);
  return { model, promptText: renderChat(messages), maxTokens: optionalPositiveInt(body, 'max_output_tokens'), stream: optionalBool(body, 'stream'), stop: [] };
}

/** POST /v1/messages body (Anthropic): model, max_tokens (required), messages, system, stop_sequences, stream. */
export function parseMessagesRequest(body: Body): ParsedTextRequest {
  const model = optionalString(body, 'model');
  const maxTokens = optionalPositiveInt(body, 'max_tokens');
  if (maxTokens === null) throw badRequest('max_tokens: Field required', 'max_tokens');
  const messages: ChatMessage[] = [];
  const system = body['system'];
  if (system !== undefined && system !== null) messages.push({ role: 'system', content: blocksText(system, 'system', ['text']) });
  const raw = body['messages'];
  if (!Array.isArray(raw) || raw.length === 0) throw badRequest('messages must be a non-empty array', 'messages');
  for (let i = 0; i < raw.length; i++) {
    const m: unknown = raw[i];
    const p = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw badRequest(`${p} must be an object`, p);
    const role = (m as Body)['role'];
    if (role !== 'user' && role !== 'assistant') throw badRequest(`${p}.role must be user or assistant`, `${p}.role`);
    messages.push({ role, content: blocksText((m as Body)['content'], `${p}.content`, ['text']) });
  }
  const stopRaw = body['stop_sequences'];
  const stop: string[] = [];
  if (stopRaw !== undefined && stopRaw !== null) {
    if (!Array.isArray(stopRaw)) throw badRequest('stop_sequences must be an array of strings', 'stop_sequences');
    for (const s of stopRaw) {
      if (typeof s !== 'string' || s.length === 0) throw badRequest('stop_sequences must hold non-empty strings', 'stop_sequences');
      stop.push(s);
    }
  }
  checkNumber(body, 'temperature', 0, 1);
  checkNumber(body, 'top_p', 0, 1);
  const topK = body['top_k'];
  if (topK !== undefined && topK !== null && (typeof topK !== 'number' || !Number.isSafeInteger(topK) || topK < 0)) throw badRequest('top_k must be a non-negative integer', 'top_k');
  return { model, promptText: renderChat(messages), maxTokens, stream: optionalBool(body, 'stream'), stop };
}

/** Anthropic's error body: {"type":"error","error":{"type","message"}} with its error types per status. */
export function anthropicErrorReply(err: unknown): ErrorReply {
  const status = err instanceof MockfleetError ? err.status : 500;
  const message = err instanceof Error ? err.message : String(err);
  const type = status === 400 ? 'invalid_request_error'
    : status === 401 ? 'authentication_error'
      : status === 403 ? 'permission_error'
        : status === 404 ? 'not_found_error'
          : status === 413 ? 'request_too_large'
            : status === 429 ? 'rate_limit_error'
              : status === 503 || status === 529 ? 'overloaded_error'
                : status >= 500 ? 'api_error' : 'invalid_request_error';
  return { status, body: JSON.stringify({ type: 'error', error: { type, message } }) };
}

export interface TextUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly cachedTokens: number;
}

/** How one API renders a text response (streamed events and the final body). */
export interface TextDialect {
  /** Events that open a stream. */
  start(): string;
  /** Events for one piece of generated text. */
  delta(text: string): string;
  /** Events that end a stream. */
  end(text: string, plan: ChoicePlan, usage: TextUsage): string;
  /** The non-streaming body. */
  body(text: string, plan: ChoicePlan, usage: TextUsage): string;
  errorReply(err: unknown): ErrorReply;
}

function sse(event: string, data: string): string {
  return `event: ${event}\ndata: ${data}\n\n`;
}

export class ResponsesDialect implements TextDialect {
  private readonly id: string;
  private readonly itemId: string;
  private readonly model: string;
  private readonly createdAt: number;
  private readonly maxOutputTokens: number | null;
  private readonly instructions: string | null;
  private readonly errorFormat: ErrorFormat;
  private seq: number;

  constructor(requestId: string, model: string, maxOutputTokens: number | null, instructions: string | null, errorFormat: ErrorFormat) {
    this.id = `resp_${requestId}`;
    this.itemId = `msg_${requestId}`;
    this.model = model;
    this.createdAt = Math.floor(Date.now() / 1000);
    this.maxOutputTokens = maxOutputTokens;
    this.instructions = instructions;
    this.errorFormat = errorFormat;
    this.seq = 0;
  }

  private event(type: string, fields: Record<string, unknown>): string {
    return sse(type, jsonAscii({ type, sequence_number: this.seq++, ...fields }));
  }

  private part(text: string): object {
    return { type: 'output_text', text, annotations: [], logprobs: [] };
  }

  private item(status: string, content: object[]): object {
    return { id: this.itemId, type: 'message', status, role: 'assistant', content };
  }

  private response(status: string, output: object[], plan: ChoicePlan | null, usage: TextUsage | null): object {
    return {
      id: this.id,
      object: 'response',
      created_at: this.createdAt,
      status,
      error: null,
      incomplete_details: plan !== null && plan.finishReason === 'length' ? { reason: 'max_output_tokens' } : null,
      instructions: this.instructions,
      max_output_tokens: this.maxOutputTokens,
      model: this.model,
      output,
      parallel_tool_calls: true,
      previous_response_id: null,
      reasoning: { effort: null, summary: null },
      store: false,
      temperature: 1,
      text: { format: { type: 'text' } },
      tool_choice: 'auto',
      tools: [],
      top_p: 1,
      truncation: 'disabled',
      usage: usage === null ? null : {
        input_tokens: usage.promptTokens,
        input_tokens_details: { cached_tokens: usage.cachedTokens },
        output_tokens: usage.completionTokens,
        output_tokens_details: { reasoning_tokens: 0 },
        total_tokens: usage.promptTokens + usage.completionTokens,
      },
      metadata: {},
    };
  }

  start(): string {
    const r = this.response('in_progress', [], null, null);
    return this.event('response.created', { response: r }) + this.event('response.in_progress', { response: r }) +
      this.event('response.output_item.added', { output_index: 0, item: this.item('in_progress', []) }) +
      this.event('response.content_part.added', { item_id: this.itemId, output_index: 0, content_index: 0, part: this.part('') });
  }

  delta(text: string): string {
    return this.event('response.output_text.delta', { item_id: this.itemId, output_index: 0, content_index: 0, delta: text, logprobs: [] });
  }

  end(text: string, plan: ChoicePlan, usage: TextUsage): string {
    const done = this.item('completed', [this.part(text)]);
    const status = plan.finishReason === 'length' ? 'incomplete' : 'completed';
    return this.event('response.output_text.done', { item_id: this.itemId, output_index: 0, content_index: 0, text, logprobs: [] }) +
      this.event('response.content_part.done', { item_id: this.itemId, output_index: 0, content_index: 0, part: this.part(text) }) +
      this.event('response.output_item.done', { output_index: 0, item: done }) +
      this.event('response.completed', { response: this.response(status, [done], plan, usage) });
  }

  body(text: string, plan: ChoicePlan, usage: TextUsage): string {
    const status = plan.finishReason === 'length' ? 'incomplete' : 'completed';
    return JSON.stringify(this.response(status, [this.item('completed', [this.part(text)])], plan, usage));
  }

  errorReply(err: unknown): ErrorReply {
    return errorReply(err, this.errorFormat);
  }
}

export class AnthropicDialect implements TextDialect {
  private readonly id: string;
  private readonly model: string;
  private readonly promptTokens: number;

  constructor(requestId: string, model: string, promptTokens: number) {
    this.id = `msg_${requestId}`;
    this.model = model;
    this.promptTokens = promptTokens;
  }

  private stopReason(plan: ChoicePlan): string {
    if (plan.finishReason === 'length') return 'max_tokens';
    return typeof plan.stopReason === 'string' ? 'stop_sequence' : 'end_turn';
  }

  private message(content: object[], plan: ChoicePlan | null, usage: TextUsage | null): object {
    return {
      id: this.id,
      type: 'message',
      role: 'assistant',
      model: this.model,
      content,
      stop_reason: plan === null ? null : this.stopReason(plan),
      stop_sequence: plan !== null && typeof plan.stopReason === 'string' ? plan.stopReason : null,
      usage: {
        input_tokens: usage === null ? this.promptTokens : usage.promptTokens - usage.cachedTokens,
        output_tokens: usage === null ? 0 : usage.completionTokens,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: usage === null ? 0 : usage.cachedTokens,
      },
    };
  }

  start(): string {
    return sse('message_start', jsonAscii({ type: 'message_start', message: this.message([], null, null) })) +
      sse('content_block_start', '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}') +
      sse('ping', '{"type":"ping"}');
  }

  delta(text: string): string {
    return sse('content_block_delta', `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":${jsonAscii(text)}}}`);
  }

  end(_text: string, plan: ChoicePlan, usage: TextUsage): string {
    const stopSequence = typeof plan.stopReason === 'string' ? plan.stopReason : null;
    return sse('content_block_stop', '{"type":"content_block_stop","index":0}') +
      sse('message_delta', jsonAscii({
        type: 'message_delta',
        delta: { stop_reason: this.stopReason(plan), stop_sequence: stopSequence },
        usage: { output_tokens: usage.completionTokens },
      })) +
      sse('message_stop', '{"type":"message_stop"}');
  }

  body(text: string, plan: ChoicePlan, usage: TextUsage): string {
    return JSON.stringify(this.message([{ type: 'text', text }], plan, usage));
  }

  errorReply(err: unknown): ErrorReply {
    return anthropicErrorReply(err);
  }
}

/** The GenerateCallbacks of one /v1/responses or /v1/messages request. */
export class TextApiGeneration implements GenerateCallbacks {
  private readonly res: ServerResponse;
  private readonly dialect: TextDialect;
  private readonly plan: ChoicePlan;
  private readonly tokenizer: Tokenizer;
  private readonly stream: SseStream | null;
  private text: string;
  private rawLength: number;
  private generated: number;
  private done: boolean;
  private handle: GenerateHandle | null;
  private clientGone: boolean;

  constructor(res: ServerResponse, dialect: TextDialect, plan: ChoicePlan, tokenizer: Tokenizer, stream: boolean, scheduler: FlushScheduler) {
    this.res = res;
    this.dialect = dialect;
    this.plan = plan;
    this.tokenizer = tokenizer;
    this.stream = stream ? new SseStream(res, scheduler) : null;
    this.text = '';
    this.rawLength = 0;
    this.generated = 0;
    this.done = false;
    this.handle = null;
    this.clientGone = false;
    res.once('close', () => {
      if (res.writableEnded) return;
      this.clientGone = true;
      this.done = true;
      this.stream?.close();
      this.handle?.abort();
    });
  }

  attach(handle: GenerateHandle): void {
    this.handle = handle;
    if (this.clientGone) handle.abort();
  }

  start(): void {
    if (this.stream === null) return;
    this.res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
    this.stream.push(this.dialect.start());
  }

  onTokens(tokenIds: Uint32Array, start: number, count: number): void {
    if (this.done) return;
    let events = '';
    for (let i = start; i < start + count; i++) {
      const piece = tokenPiece(this.tokenizer, tokenIds[i] as number, this.generated++);
      const rawStart = this.rawLength;
      this.rawLength += piece.length;
      const visible = this.plan.textLength < 0 ? piece : piece.slice(0, Math.max(0, this.plan.textLength - rawStart));
      this.text += visible;
      if (this.stream !== null && visible.length > 0) events += this.dialect.delta(visible);
    }
    if (events.length > 0) this.stream?.push(events);
  }

  onFinish(finish: GenerateFinish): void {
    if (this.done) return;
    this.done = true;
    if (finish.reason !== 'length') {
      const err = finish.reason === 'error'
        ? finish.error ?? new HttpApiError(500, 'server_error', 'internal_error', `rank ${finish.rank} failed the request without an error`)
        : new HttpApiError(503, 'server_error', 'request_aborted', 'The request was aborted by the server (shutting down or rank lost).');
      const reply = this.dialect.errorReply(err);
      if (this.stream !== null) this.stream.end(`event: error\ndata: ${jsonAscii(JSON.parse(reply.body))}\n\n`);
      else this.res.writeHead(reply.status, { 'content-type': 'application/json' }).end(reply.body);
      return;
    }
    const usage: TextUsage = { promptTokens: finish.promptTokens, completionTokens: finish.completionTokens, cachedTokens: finish.cachedTokens };
    if (this.stream !== null) this.stream.end(this.dialect.end(this.text, this.plan, usage));
    else this.res.writeHead(200, { 'content-type': 'application/json' }).end(this.dialect.body(this.text, this.plan, usage));
  }
}
