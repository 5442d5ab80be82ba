/**
 * Validation of /v1/completions, /v1/chat/completions and /tokenize bodies. Every rejection is a
 * 400 naming the offending parameter (OpenAI answers type errors with 400; vLLM's 422 from
 * FastAPI's own validation is not imitated).
 */
import { renderChat } from './chat-template.js';
import type { ChatMessage } from './chat-template.js';
import { badRequest } from './errors.js';

export type GenerateKind = 'completion' | 'chat';

export interface ParsedGenerate {
  readonly kind: GenerateKind;
  /** null: not given, the first served name is used. */
  readonly model: string | null;
  /** Text to tokenize, or null when the prompt is given as token ids. */
  readonly promptText: string | null;
  readonly promptIds: Uint32Array | null;
  /** null: not given (default applies). */
  readonly maxTokens: number | null;
  readonly stream: boolean;
  readonly includeUsage: boolean;
}

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

/** prompt: string | token ids | [string] | [token ids]. Batches of several prompts are refused. */
function parsePrompt(body: Body): { text: string | null; ids: Uint32Array | null } {
  const p = body['prompt'];
  if (p === undefined || p === null) throw badRequest('prompt is required', 'prompt');
  if (typeof p === 'string') {
    if (p.length === 0) throw badRequest('prompt must not be empty', 'prompt');
    return { text: p, ids: null };
  }
  if (!Array.isArray(p)) throw badRequest('prompt must be a string, an array of token ids, or an array with one of those', 'prompt');
  if (p.length === 0) throw badRequest('prompt must not be empty', 'prompt');
  const first: unknown = p[0];
  if (typeof first === 'number') return { text: null, ids: tokenIds(p, 'prompt') };
  if (p.length > 1) throw badRequest(`batched prompts are not supported: send one prompt per request (got ${p.length})`, 'prompt');
  if (typeof first === 'string') {
    if (first.length === 0) throw badRequest('prompt must not be empty', 'prompt');
    return { text: first, ids: null };
  }
  if (Array.isArray(first)) return { text: null, ids: tokenIds(first, 'prompt') };
  throw badRequest('prompt must be a string, an array of token ids, or an array with one of those', 'prompt');
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

function parseStreamOptions(body: Body): boolean {
  const so = body['stream_options'];
  if (so === undefined || so === null) return false;
  if (typeof so !== 'object' || Array.isArray(so)) throw badRequest('stream_options must be an object', 'stream_options');
  const v = (so as Body)['include_usage'];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw badRequest('stream_options.include_usage must be a boolean', 'stream_options.include_usage');
  return v;
}

function rejectMultipleChoices(body: Body): void {
  const n = optionalInteger(body, 'n', 1);
  if (n !== null && n !== 1) throw badRequest(`n must be 1: mockfleet generates one choice per request (got ${n})`, 'n');
  const bestOf = optionalInteger(body, 'best_of', 1);
  if (bestOf !== null && bestOf !== 1) throw badRequest(`best_of must be 1 (got ${bestOf})`, 'best_of');
}

export function parseGenerate(kind: GenerateKind, body: Body): ParsedGenerate {
  const model = optionalModel(body);
  rejectMultipleChoices(body);
  const stream = optionalBoolean(body, 'stream') ?? false;
  const includeUsage = parseStreamOptions(body);
  optionalBoolean(body, 'ignore_eos');
  const maxTokensField = optionalInteger(body, 'max_tokens', 1);
  let maxTokens = maxTokensField;
  if (kind === 'chat') maxTokens = optionalInteger(body, 'max_completion_tokens', 1) ?? maxTokensField;
  if (kind === 'completion') {
    if (optionalBoolean(body, 'echo') === true) throw badRequest('echo is not supported', 'echo');
    const { text, ids } = parsePrompt(body);
    return { kind, model, promptText: text, promptIds: ids, maxTokens, stream, includeUsage };
  }
  return { kind, model, promptText: parseMessages(body), promptIds: null, maxTokens, stream, includeUsage };
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
  const { text, ids } = parsePrompt(body);
  return { model, promptText: text, promptIds: ids };
}
