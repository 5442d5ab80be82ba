/**
 * Options of the OpenAI-compatible HTTP frontend and their defaults.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

/** Failure-injection kinds (llm-d-inference-sim `failure-types`). */
export const FAILURE_TYPES = ['rate_limit', 'invalid_api_key', 'context_length', 'server_error', 'invalid_request', 'model_not_found'] as const;
export type FailureType = (typeof FAILURE_TYPES)[number];

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8000;
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;
/** /v1/completions without max_tokens generates this many tokens (OpenAI's and vLLM's default). */
export const DEFAULT_COMPLETION_MAX_TOKENS = 16;

export interface HttpOptions {
  /** Listen address; default 127.0.0.1. */
  readonly host?: string | undefined;
  /** Listen port; 0 picks a free port. Default 8000. */
  readonly port?: number | undefined;
  /** When set, every /v1/* and /tokenize request needs `Authorization: Bearer <apiKey>`. */
  readonly apiKey?: string | null | undefined;
  /** Request bodies above this answer 413; default 4 MiB. */
  readonly maxBodyBytes?: number | undefined;
  /** Model names clients may ask for; default [backend.modelName]. The first one is reported. */
  readonly servedModelNames?: readonly string[] | undefined;
  /** Prompt + max_tokens limit; default backend.maxModelLen. */
  readonly maxModelLen?: number | undefined;
  /** Default: the word tokenizer (src/tokenizer/word-tokenizer.ts). */
  readonly tokenizer?: Tokenizer | undefined;
  /** Percentage (0-100) of generate requests answered with an injected error. */
  readonly failureRate?: number | undefined;
  /** Kinds to draw injected errors from; default all. */
  readonly failureTypes?: readonly FailureType[] | undefined;
  /** Seed of the failure-injection RNG; default 0. */
  readonly seed?: number | undefined;
  /** This server is worker i's own endpoint: requests stay on worker i, /metrics shows only it. */
  readonly workerIndex?: number | undefined;
  /** Called first for every request; return true when it answered the request (e.g. /dashboard). */
  readonly extraRoutes?: ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined;
}
