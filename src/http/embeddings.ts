/**
 * /v1/embeddings: vLLM's pooling endpoint. Every input is one engine request that only prefills
 * (max_tokens 1: the rank's pass time is the prefill model's, and the rank's metrics count it),
 * then answers a deterministic unit vector of --embedding-dim floats derived from the input's
 * token ids (same input, same vector, on any rank).
 */
import type { ServerResponse } from 'node:http';
import type { GenerateCallbacks, GenerateFinish, GenerateHandle } from '../cluster/backend.js';
import { generatedHash } from '../engine/generated-tokens.js';
import { HttpApiError } from '../util/errors.js';
import { badRequest, errorReply } from './errors.js';
import type { ErrorFormat } from './errors.js';
import type { ParsedPrompt } from './parse.js';

type Body = Record<string, unknown>;
const MAX_INPUTS = 2048;
const EMBEDDING_SALT = 7;

export interface ParsedEmbeddings {
  readonly model: string | null;
  readonly inputs: readonly ParsedPrompt[];
  readonly base64: boolean;
  readonly dimensions: number | null;
}

function tokenIdList(v: readonly unknown[], param: string): Uint32Array {
  if (v.length === 0) throw badRequest(`${param} must not be empty`, 'input');
  const out = new Uint32Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const x: unknown = v[i];
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 0xffffffff) throw badRequest(`${param}[${i}] must be a token id`, 'input');
    out[i] = x;
  }
  return out;
}

export function parseEmbeddingsRequest(body: Body): ParsedEmbeddings {
  const m = body['model'];
  if (m !== undefined && m !== null && typeof m !== 'string') throw badRequest('model must be a string', 'model');
  const input = body['input'];
  const inputs: ParsedPrompt[] = [];
  if (typeof input === 'string') {
    if (input.length === 0) throw badRequest('input must not be empty', 'input');
    inputs.push({ text: input, ids: null });
  } else if (Array.isArray(input) && input.length > 0) {
    if (typeof input[0] === 'number') {
      inputs.push({ text: null, ids: tokenIdList(input, 'input') });
    } else {
      if (input.length > MAX_INPUTS) throw badRequest(`input holds ${input.length} items; at most ${MAX_INPUTS}`, 'input');
      for (let i = 0; i < input.length; i++) {
        const x: unknown = input[i];
        if (typeof x === 'string' && x.length > 0) inputs.push({ text: x, ids: null });
        else if (Array.isArray(x)) inputs.push({ text: null, ids: tokenIdList(x, `input[${i}]`) });
        else throw badRequest(`input[${i}] must be a non-empty string or an array of token ids`, 'input');
      }
    }
  } else {
    throw badRequest('input must be a string, an array of strings, or token ids', 'input');
  }
  const fmt = body['encoding_format'];
  if (fmt !== undefined && fmt !== null && fmt !== 'float' && fmt !== 'base64') throw badRequest('encoding_format must be "float" or "base64"', 'encoding_format');
  const dim = body['dimensions'];
  if (dim !== undefined && dim !== null && (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 1)) throw badRequest('dimensions must be a positive integer', 'dimensions');
  return { model: typeof m === 'string' ? m : null, inputs, base64: fmt === 'base64', dimensions: typeof dim === 'number' ? dim : null };
}

/** A deterministic unit vector for a token sequence. */
export function embeddingVector(tokens: Uint32Array, dim: number): Float32Array {
  let seed = 0x811c9dc5;
  for (let i = 0; i < tokens.length; i++) seed = Math.imul(seed ^ (tokens[i] as number), 0x01000193);
  const v = new Float32Array(dim);
  let norm = 0;
  for (let i = 0; i < dim; i++) {
    const x = (generatedHash(seed, i, EMBEDDING_SALT) / 4294967296) * 2 - 1;
    v[i] = x;
    norm += x * x;
  }
  const inv = 1 / Math.sqrt(norm);
  for (let i = 0; i < dim; i++) v[i] = (v[i] as number) * inv;
  return v;
}

/** Collects the engine finishes of one embeddings request and answers once all are in. */
export class EmbeddingsGeneration {
  private readonly res: ServerResponse;
  private readonly vectors: Float32Array[];
  private readonly base64: boolean;
  private readonly model: string;
  private readonly errorFormat: ErrorFormat;
  private readonly handles: (GenerateHandle | null)[];
  private promptTokens: number;
  private remaining: number;
  private done: boolean;

  constructor(res: ServerResponse, vectors: Float32Array[], base64: boolean, model: string, errorFormat: ErrorFormat) {
    this.res = res;
    this.vectors = vectors;
    this.base64 = base64;
    this.model = model;
    this.errorFormat = errorFormat;
    this.handles = vectors.map(() => null);
    this.promptTokens = 0;
    this.remaining = vectors.length;
    this.done = false;
    res.once('close', () => {
      if (res.writableEnded) return;
      this.abortAll();
    });
  }

  callbacks(i: number): GenerateCallbacks {
    return {
      onTokens: () => undefined,
      onFinish: (f: GenerateFinish) => this.onFinish(i, f),
    };
  }

  attach(i: number, h: GenerateHandle): void {
    this.handles[i] = h;
    if (this.done) h.abort();
  }

  cancel(): void {
    this.done = true;
    this.abortAll();
  }

  private abortAll(): void {
    this.done = true;
    for (const h of this.handles) h?.abort();
  }

  private onFinish(_i: number, f: GenerateFinish): void {
    if (this.done) return;
    if (f.reason !== 'length') {
      this.abortAll();
      const err = f.reason === 'error' ? f.error ?? new HttpApiError(500, 'server_error', 'internal_error', 'rank failed the request')
        : new HttpApiError(503, 'server_error', 'request_aborted', 'The request was aborted by the server (shutting down or rank lost).');
      const { status, body } = errorReply(err, this.errorFormat);
      this.res.writeHead(status, { 'content-type': 'application/json' }).end(body);
      return;
    }
    this.promptTokens += f.promptTokens;
    if (--this.remaining > 0) return;
    this.done = true;
    const data = this.vectors.map((v, index) => ({
      object: 'embedding',
      embedding: this.base64 ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : Array.from(v),
      index,
    }));
    const body = JSON.stringify({
      id: `embd-${Date.now().toString(36)}`, object: 'list', created: Math.floor(Date.now() / 1000), model: this.model, data,
      usage: { prompt_tokens: this.promptTokens, total_tokens: this.promptTokens, completion_tokens: 0, prompt_tokens_details: null },
    });
    this.res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  }
}
