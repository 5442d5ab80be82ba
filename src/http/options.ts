/**
 * Options of the OpenAI-compatible HTTP frontend and their defaults.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { ErrorFormat } from './errors.js';

/** Failure-injection kinds (llm-d-inference-sim `failure-types`). */
export const FAILURE_TYPES = ['rate_limit', 'invalid_api_key', 'context_length', 'server_error', 'invalid_request', 'model_not_found'] as const;
export type FailureType = (typeof FAILURE_TYPES)[number];

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 8000;
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;
/** /v1/completions without max_tokens generates this many tokens (OpenAI's and vLLM's default). */
export const DEFAULT_COMPLETION_MAX_TOKENS = 16;
/**
 * Idle keep-alive connections close after this many seconds. vLLM passes uvicorn's
 * --timeout-keep-alive (default 5 s); a CPU-starved load generator then reuses pooled connections
 * the server is closing and sees resets, so mockfleet defaults to 75 s (pass 5 for vLLM's).
 */
export const DEFAULT_TIMEOUT_KEEP_ALIVE_S = 75;
/** Length of /v1/embeddings vectors. */
export const DEFAULT_EMBEDDING_DIM = 1024;
/** A request's headers must arrive within this (slow-loris bound, Node's default). */
export const DEFAULT_HEADERS_TIMEOUT_MS = 60_000;
/** A whole request (headers and body) must arrive within this (Node's default). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 300_000;

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
  /** Per generated token, the chance the request ends there (EOS) unless `ignore_eos`; default 0. */
  readonly eosProbability?: number | undefined;
  /** Length of /v1/embeddings vectors; default 1024. */
  readonly embeddingDim?: number | undefined;
  /** Error body format: vLLM's (default) or OpenAI's. */
  readonly errorFormat?: ErrorFormat | undefined;
  /** Seconds an idle keep-alive connection stays open (uvicorn --timeout-keep-alive); default 75. */
  readonly timeoutKeepAliveS?: number | undefined;
  /** Headers must arrive within this; default 60 s. */
  readonly headersTimeoutMs?: number | undefined;
  /** A whole request must arrive within this; default 300 s. */
  readonly requestTimeoutMs?: number | undefined;
}
