/**
 * What the HTTP frontend (and the dashboard) need from a running fleet. Implemented by the
 * cluster coordinator (src/cluster/coordinator.ts); tests may implement it with a fake.
 */
import type { MockfleetError } from '../util/errors.js';
import { InvalidRequestError } from '../util/errors.js';
import type { MetricsBody } from '../metrics/fleet-metrics.js';

export interface GenerateRequest {
  /** External id (X-Request-Id or generated); used in logs and errors. */
  readonly requestId: string;
  /** Prompt token ids after tokenization. */
  readonly promptTokens: Uint32Array;
  /** Tokens to generate: the engine ends the request after exactly this many (the frontend places stops/EOS by choosing it). */
  readonly maxTokens: number;
  /** Global rank index to pin the request to (tests, external routers); undefined = router decides. */
  readonly pinnedRank?: number | undefined;
  /** Worker index the request must stay on (per-worker endpoints); undefined = any worker. */
  readonly workerIndex?: number | undefined;
  /**
   * int32 seed: the k-th generated token id is generatedTokenId(vocabulary, seed, k) on any rank
   * (src/engine/generated-tokens.ts). undefined = the rank's own unseeded draw.
   */
  readonly seed?: number | undefined;
  /**
   * The request's `n` for vllm:request_params_n: set on the first choice of a group, 0 on the
   * others (vLLM observes it once per parent request). Default 1.
   */
  readonly paramsN?: number | undefined;
  /** The request ends at a stop (string, token id, EOS) after maxTokens: counted as finished_reason "stop". */
  readonly stopAtEnd?: boolean | undefined;
  /**
   * The caller uses onTokens as they come (a streaming response): every pass wakes the main thread.
   * false: tokens are needed only by onFinish (a non-streaming response), so ranks hand them over
   * lazily, batched with later passes. Default true.
   */
  readonly streaming?: boolean | undefined;
}

export type GenerateFinishReason = 'length' | 'abort' | 'error';

export interface GenerateFinish {
  readonly reason: GenerateFinishReason;
  /** Global rank index that served it. */
  readonly rank: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** Prompt tokens served from the prefix cache (usage.prompt_tokens_details.cached_tokens). */
  readonly cachedTokens: number;
  /** Set when reason === 'error'. */
  readonly error?: MockfleetError;
}

export interface GenerateCallbacks {
  /**
   * Tokens produced for this request by one pass, on the main thread. `tokenIds` is borrowed:
   * read [start, start + count) before returning.
   */
  onTokens(tokenIds: Uint32Array, start: number, count: number): void;
  /** Exactly once, after the last onTokens. */
  onFinish(finish: GenerateFinish): void;
}

export interface GenerateHandle {
  readonly rank: number;
  /** Abort on the rank (frees its KV blocks). Idempotent; onFinish('abort') follows unless finished. */
  abort(): void;
}

export interface RankInfo {
  readonly rank: number;
  readonly workerIndex: number;
  readonly dpRank: number;
  readonly workerId: bigint;
  readonly cpu: number | null;
  readonly tid: number | null;
}

export interface Backend {
  readonly modelName: string;
  readonly numWorkers: number;
  readonly dataParallelSize: number;
  readonly numRanks: number;
  readonly blockSize: number;
  readonly numGpuBlocks: number;
  readonly maxModelLen: number;
  /** True once every rank thread is up (health/ready). */
  isReady(): boolean;
  ranks(): readonly RankInfo[];
  /**
   * Queue a request. Throws a MockfleetError synchronously when it cannot be accepted
   * (OverloadedError 429 when the rank's waiting queue is full; InvalidRequestError 400 when the
   * prompt can never fit; 503 when not ready or shutting down).
   */
  submit(req: GenerateRequest, cb: GenerateCallbacks): GenerateHandle;
  /**
   * Prometheus exposition text (OpenMetrics 1.0 when `openMetrics`), or its UTF-8 bytes in
   * consecutive chunks (sent as they are: a 4096-rank exposition is ~150 MiB, mostly kept from
   * earlier scrapes); with workerIndex, only that worker's series, without worker_id.
   */
  metrics(workerIndex?: number, openMetrics?: boolean): Promise<string | readonly Uint8Array[]>;
  /**
   * The same document with its compressed form (src/metrics: cached gzip segments), when the
   * backend keeps one; /metrics then answers `Accept-Encoding: gzip` without compressing it again.
   * `keepText`: the caller will read the text (identity response).
   */
  metricsBody?(workerIndex: number | undefined, openMetrics: boolean, keepText: boolean): Promise<MetricsBody>;
  readonly metricsContentType: string;
}

/**
 * The checks every Backend makes before routing (vLLM's wording and codes); returns the prompt
 * length.
 */
export function checkGenerateRequest(req: GenerateRequest, maxModelLen: number): number {
  const n = req.promptTokens.length;
  if (n === 0) throw new InvalidRequestError('prompt must contain at least one token', 'prompt');
  if (!Number.isInteger(req.maxTokens) || req.maxTokens < 1) throw new InvalidRequestError('max_tokens must be a positive integer', 'max_tokens');
  if (n + req.maxTokens > maxModelLen) {
    throw new InvalidRequestError(
      `This model's maximum context length is ${maxModelLen} tokens. However, you requested ${n + req.maxTokens} tokens (${n} in the messages, ${req.maxTokens} in the completion).`,
      'messages',
      400,
      'context_length_exceeded',
    );
  }
  return n;
}
