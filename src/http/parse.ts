/**
 * Validation of /v1/completions, /v1/chat/completions and /tokenize bodies. Every rejection is a
 * 400 naming the offending parameter (OpenAI answers type errors with 400; vLLM's 422 from
 * FastAPI's own validation is not imitated).
 */
import { renderChat } from './chat-template.js';
import type { ChatMessage } from './chat-template.js';
import { badRequest } from './errors.js';

export type GenerateKind = 'completion' | 'chat';

/** One prompt: text to tokenize, or token ids. */
export interface ParsedPrompt {
  readonly text: string | null;
  readonly ids: Uint32Array | null;
}

/** Sampling parameters that change what the engine generates or what the response carries. */
export interface SamplingParams {
  /** Choices per prompt (vLLM parallel sampling). */
  readonly n: number;
  /** int32 seed (the client's seed mod 2^32), or null: a random seed per choice. */
  readonly seed: number | null;
  readonly stop: readonly string[];
  readonly stopTokenIds: readonly number[];
  readonly includeStopStrInOutput: boolean;
  readonly minTokens: number;
  readonly ignoreEos: boolean;
  /** Top alternatives per token (completions `logprobs`, chat `top_logprobs`), or null: no logprobs. */
  readonly logprobs: number | null;
  /** Completions: the prompt text precedes the output. */
  readonly echo: boolean;
}

export interface ParsedGenerate {
  readonly kind: GenerateKind;
  /** null: not given, the first served name is used. */
  readonly model: string | null;
  /** One entry per prompt (completions accept a list; chat has one). */
  readonly prompts: readonly ParsedPrompt[];
  /** null: not given (default applies). */
  readonly maxTokens: number | null;
  /** `max_tokens: null` given explicitly: up to the context limit (vLLM). */
  readonly maxTokensExplicitNull: boolean;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly sampling: SamplingParams;
}

/** vLLM's default --max-logprobs. */
export const MAX_LOGPROBS = 20;
/** Most choices (prompts x n) one request may ask for. */
export const MAX_CHOICES = 1024;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

const CHAT_ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool', 'function']);
const MAX_TOKEN_ID = 0xffffffff;

type Body = Record<string, unknown>;

export function parseJsonObject(raw: Buffer): Body {
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw badRequest(`request body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw badRequest('request body must be a JSON object');
  }
  return value as Body;
}

function optionalBoolean(body: Body, key: string): boolean | null {
  const v = body[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'boolean') throw badRequest(`${key} must be a boolean`, key);
  return v;
}

function optionalInteger(body: Body, key: string, min: number): number | null {
  const v = body[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw badRequest(`${key} must be an integer`, key);
  if (v < min) throw badRequest(`${key} must be at least ${min}, got ${v}`, key);
  return v;
}

function optionalModel(body: Body): string | null {
  const v = body['model'];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw badRequest('model must be a string', 'model');
  return v;
}

function isTokenId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_TOKEN_ID;
}

function tokenIds(arr: readonly unknown[], param: string): Uint32Array {
  if (arr.length === 0) throw badRequest(`${param} must not be empty`, param);
  const ids = new Uint32Array(arr.length);
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i];
    if (!isTokenId(v)) throw badRequest(`${param}[${i}] must be a token id (integer in [0, ${MAX_TOKEN_ID}])`, param);
    ids[i] = v;
  }
  return ids;
}

function promptEntry(v: unknown, param: string): ParsedPrompt {
  if (typeof v === 'string') {
    if (v.length === 0) throw badRequest(`${param} must not be empty`, 'prompt');
    return { text: v, ids: null };
  }
  if (Array.isArray(v)) return { text: null, ids: tokenIds(v, 'prompt') };
  throw badRequest(`${param} must be a string or an array of token ids`, 'prompt');
}

/** prompt: string | token ids | list of strings | list of token-id lists (one choice set per prompt). */
function parsePrompts(body: Body): ParsedPrompt[] {
  const p = body['prompt'];
  if (p === undefined || p === null) throw badRequest('prompt is required', 'prompt');
  if (typeof p === 'string') return [promptEntry(p, 'prompt')];
  if (!Array.isArray(p)) throw badRequest('prompt must be a string, an array of token ids, or a list of those', 'prompt');
  if (p.length === 0) throw badRequest('prompt must not be empty', 'prompt');
  if (typeof p[0] === 'number') return [{ text: null, ids: tokenIds(p, 'prompt') }];
  if (p.length > MAX_CHOICES) throw badRequest(`prompt holds ${p.length} prompts; at most ${MAX_CHOICES} per request`, 'prompt');
  const out: ParsedPrompt[] = [];
  for (let i = 0; i < p.length; i++) out.push(promptEntry(p[i], `prompt[${i}]`));
  return out;
}

function parseContent(content: unknown, param: string): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw badRequest(`${param} must be a string or an array of text parts`, param);
  let text = '';
  for (let j = 0; j < content.length; j++) {
    const part: unknown = content[j];
    const partParam = `${param}[${j}]`;
    if (typeof part !== 'object' || part === null || Array.isArray(part)) throw badRequest(`${partParam} must be an object`, partParam);
    const type = (part as Body)['type'];
    if (type !== 'text') throw badRequest(`${partParam}.type ${JSON.stringify(type)} is not supported; only "text" parts are`, `${partParam}.type`);
    const t = (part as Body)['text'];
    if (typeof t !== 'string') throw badRequest(`${partParam}.text must be a string`, `${partParam}.text`);
    text = j === 0 ? t : text + '\n' + t;
  }
  return text;
}

export function parseMessages(body: Body): string {
  const raw = body['messages'];
  if (raw === undefined || raw === null) throw badRequest('messages is required', 'messages');
  if (!Array.isArray(raw)) throw badRequest('messages must be an array', 'messages');
  if (raw.length === 0) throw badRequest('messages must not be empty', 'messages');
  const messages: ChatMessage[] = [];
  for (let i = 0; i < raw.length; i++) {
    const m: unknown = raw[i];
    const param = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw badRequest(`${param} must be an object`, param);
    const role = (m as Body)['role'];
    if (typeof role !== 'string') throw badRequest(`${param}.role must be a string`, `${param}.role`);
    if (!CHAT_ROLES.has(role)) throw badRequest(`${param}.role ${JSON.stringify(role)} is not one of ${[...CHAT_ROLES].join(', ')}`, `${param}.role`);
    messages.push({ role, content: parseContent((m as Body)['content'], `${param}.content`) });
  }
  return renderChat(messages);
}

function parseStreamOptions(body: Body, stream: boolean): boolean {
  const so = body['stream_options'];
  if (so === undefined || so === null) return false;
  if (typeof so !== 'object' || Array.isArray(so)) throw badRequest('stream_options must be an object', 'stream_options');
  const v = (so as Body)['include_usage'];
  if (v !== undefined && v !== null && typeof v !== 'boolean') throw badRequest('stream_options.include_usage must be a boolean', 'stream_options.include_usage');
  // vLLM's validate_stream_options: a non-empty stream_options needs stream=true.
  if (!stream && Object.keys(so).length > 0) throw badRequest('Stream options can only be defined when `stream=True`.', 'stream_options');
  return v === true;
}

function optionalNumber(body: Body, key: string, min: number, max: number): number | null {
  const v = body[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw badRequest(`${key} must be a number`, key);
  if (v < min || v > max) throw badRequest(`${key} must be in [${min}, ${max}], got ${v}`, key);
  return v;
}

/** Sampling knobs with no effect on a simulated model: type-checked like vLLM, then ignored. */
function checkIgnoredSampling(body: Body): void {
  optionalNumber(body, 'temperature', 0, 1e6);
  optionalNumber(body, 'top_p', 0, 1);
  optionalNumber(body, 'min_p', 0, 1);
  optionalNumber(body, 'presence_penalty', -2, 2);
  optionalNumber(body, 'frequency_penalty', -2, 2);
  optionalNumber(body, 'repetition_penalty', 1e-9, 1e6);
  optionalInteger(body, 'top_k', -1);
}

/** Client seed (vLLM: any int64) -> the int32 the engine uses. */
function parseSeed(body: Body): number | null {
  const v = body['seed'];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw badRequest('seed must be an integer', 'seed');
  const big = BigInt(v);
  if (big < INT64_MIN || big > INT64_MAX) throw badRequest(`seed must be in [${INT64_MIN}, ${INT64_MAX}]`, 'seed');
  return Number(BigInt.asIntN(32, big));
}

function parseStop(body: Body): string[] {
  const v = body['stop'];
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list)) throw badRequest('stop must be a string or an array of strings', 'stop');
  const out: string[] = [];
  for (let i = 0; i < list.length; i++) {
    const s: unknown = list[i];
    if (typeof s !== 'string') throw badRequest(`stop[${i}] must be a string`, 'stop');
    if (s.length === 0) throw badRequest('stop cannot contain an empty string', 'stop');
    out.push(s);
  }
  return out;
}

function parseStopTokenIds(body: Body): number[] {
  const v = body['stop_token_ids'];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw badRequest('stop_token_ids must be an array of token ids', 'stop_token_ids');
  const out: number[] = [];
  for (let i = 0; i < v.length; i++) {
    const id: unknown = v[i];
    if (!isTokenId(id)) throw badRequest(`stop_token_ids[${i}] must be a token id (integer in [0, ${MAX_TOKEN_ID}])`, 'stop_token_ids');
    out.push(id);
  }
  return out;
}

function parseLogprobs(kind: GenerateKind, body: Body): number | null {
  if (kind === 'completion') {
    const v = body['logprobs'];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw badRequest('logprobs must be an integer', 'logprobs');
    if (v < 0) throw badRequest('`logprobs` must be a positive value.', 'logprobs');
    if (v > MAX_LOGPROBS) throw badRequest(`Requested sample logprobs of ${v}, which is greater than max allowed: ${MAX_LOGPROBS}`, 'logprobs');
    return v;
  }
  const on = optionalBoolean(body, 'logprobs') ?? false;
  const top = optionalInteger(body, 'top_logprobs', 0);
  if (top !== null && top > MAX_LOGPROBS) throw badRequest(`Requested top_logprobs of ${top}, which is greater than max allowed: ${MAX_LOGPROBS}`, 'top_logprobs');
  if (top !== null && top > 0 && !on) throw badRequest('when using `top_logprobs`, `logprobs` must be set to true.', 'top_logprobs');
  return on ? top ?? 0 : null;
}

export function parseGenerate(kind: GenerateKind, body: Body): ParsedGenerate {
  const model = optionalModel(body);
  const n = optionalInteger(body, 'n', 1) ?? 1;
  if (n > MAX_CHOICES) throw badRequest(`n must be at most ${MAX_CHOICES}, got ${n}`, 'n');
  const bestOf = optionalInteger(body, 'best_of', 1);
  if (bestOf !== null && bestOf !== 1) throw badRequest(`best_of is not supported (got ${bestOf}); use n`, 'best_of');
  if (body['suffix'] !== undefined && body['suffix'] !== null) throw badRequest('suffix is not currently supported', 'suffix');
  const stream = optionalBoolean(body, 'stream') ?? false;
  const includeUsage = parseStreamOptions(body, stream);
  checkIgnoredSampling(body);
  const ignoreEos = optionalBoolean(body, 'ignore_eos') ?? false;
  const maxTokensField = optionalInteger(body, 'max_tokens', 1);
  let maxTokens = maxTokensField;
  if (kind === 'chat') maxTokens = optionalInteger(body, 'max_completion_tokens', 1) ?? maxTokensField;
  const minTokens = optionalInteger(body, 'min_tokens', 0) ?? 0;
  if (maxTokens !== null && minTokens > maxTokens) {
    throw badRequest(`min_tokens must be less than or equal to max_tokens=${maxTokens}, got ${minTokens}.`, 'min_tokens');
  }
  const sampling: SamplingParams = {
    n,
    seed: parseSeed(body),
    stop: parseStop(body),
    stopTokenIds: parseStopTokenIds(body),
    includeStopStrInOutput: optionalBoolean(body, 'include_stop_str_in_output') ?? false,
    minTokens,
    ignoreEos,
    logprobs: parseLogprobs(kind, body),
    echo: kind === 'completion' ? optionalBoolean(body, 'echo') ?? false : false,
  };
  const maxTokensExplicitNull = kind === 'completion' && body['max_tokens'] === null;
  const prompts = kind === 'completion' ? parsePrompts(body) : [{ text: parseMessages(body), ids: null }];
  if (prompts.length * n > MAX_CHOICES) {
    throw badRequest(`${prompts.length} prompts x n=${n} asks for ${prompts.length * n} choices; at most ${MAX_CHOICES} per request`, 'n');
  }
  return { kind, model, prompts, maxTokens, maxTokensExplicitNull, stream, includeUsage, sampling };
}

export interface ParsedTokenize {
  readonly model: string | null;
  readonly promptText: string | null;
  readonly promptIds: Uint32Array | null;
}

/** /tokenize takes {prompt} (text) or {messages} (rendered with the chat template). */
export function parseTokenize(body: Body): ParsedTokenize {
  const model = optionalModel(body);
  if (body['messages'] !== undefined && body['messages'] !== null) return { model, promptText: parseMessages(body), promptIds: null };
  const prompts = parsePrompts(body);
  if (prompts.length !== 1) throw badRequest('/tokenize takes one prompt', 'prompt');
  const { text, ids } = prompts[0] as ParsedPrompt;
  return { model, promptText: text, promptIds: ids };
}
