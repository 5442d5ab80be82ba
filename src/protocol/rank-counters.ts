/**
 * Per-rank counters in shared memory. The rank thread is the only writer of everything except
 * RESTARTS (written by the coordinator); the main thread reads them at scrape time, so /metrics
 * costs the ranks nothing. Histogram buckets are stored non-cumulative; exposition cumulates.
 *
 *   Float64Array per rank:
 *   [ gauges/counters (SCALAR_COUNT) | hist 0: buckets.., +Inf, sum, count | hist 1: ... ]
 */

export const Scalar = {
  running: 0,
  waiting: 1,
  kvUsage: 2,
  activeBlocks: 3,
  promptTokens: 4,
  generationTokens: 5,
  successLength: 6,
  successAbort: 7,
  successError: 8,
  preemptions: 9,
  prefixQueries: 10,
  prefixHits: 11,
  passes: 12,
  restarts: 13,
  heartbeats: 14,
  eventDrops: 15,
  eventRingHighWater: 16,
  outputRingHighWater: 17,
  inboxRingHighWater: 18,
  tid: 19,
  cpu: 20,
  lastPassEpochMs: 21,
  inflight: 22,
  inactiveBlocks: 23,
  /** vllm:prompt_tokens_by_source{source=local_compute|local_cache_hit}, prompt_tokens_cached/recomputed. */
  promptTokensLocalCompute: 24,
  promptTokensLocalCacheHit: 25,
  promptTokensCached: 26,
  promptTokensRecomputed: 27,
  successStop: 28,
  /** Next KV event id / last FPM counter_id of the rank: kept here so a restart continues them. */
  nextKvEventId: 29,
  fpmCounterId: 30,
} as const;
const SCALAR_COUNT = 31;

const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const REQUEST_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];
const ITERATION_TOKEN_BUCKETS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];
const LATENESS_BUCKETS = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1,
  0.25, 1,
];

/** 1-2-5 series up to maxModelLen, as vLLM builds buckets for token-count histograms. */
export function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let exp = 1; ; exp *= 10) {
    for (const m of [1, 2, 5]) {
      const v = m * exp;
      if (v > max) return out;
      out.push(v);
    }
  }
}

export interface HistogramDef {
  readonly name: string;
  readonly help: string;
  readonly buckets: readonly number[];
  /** Offset of bucket 0 in the per-rank Float64Array. */
  readonly offset: number;
}

export interface CounterLayout {
  readonly floatsPerRank: number;
  readonly ttft: HistogramDef;
  readonly itl: HistogramDef;
  readonly e2e: HistogramDef;
  readonly queue: HistogramDef;
  readonly prefill: HistogramDef;
  readonly decode: HistogramDef;
  readonly inference: HistogramDef;
  readonly iterationTokens: HistogramDef;
  readonly lateness: HistogramDef;
  readonly requestPromptTokens: HistogramDef;
  readonly requestGenerationTokens: HistogramDef;
  readonly requestMaxTokens: HistogramDef;
  readonly tpot: HistogramDef;
  readonly requestMaxNumGenerationTokens: HistogramDef;
  readonly requestParamsN: HistogramDef;
  readonly requestPrefillKvComputed: HistogramDef;
  readonly histograms: readonly HistogramDef[];
}

const layouts = new Map<number, CounterLayout>();

/** Same layout on both sides: derived only from maxModelLen (built once per thread and length). */
export function counterLayout(maxModelLen: number): CounterLayout {
  let l = layouts.get(maxModelLen);
  if (l === undefined) {
    l = buildCounterLayout(maxModelLen);
    layouts.set(maxModelLen, l);
  }
  return l;
}

function buildCounterLayout(maxModelLen: number): CounterLayout {
  let offset = SCALAR_COUNT;
  const histograms: HistogramDef[] = [];
  const def = (name: string, help: string, buckets: readonly number[]): HistogramDef => {
    const h = { name, help, buckets, offset };
    offset += buckets.length + 3;
    histograms.push(h);
    return h;
  };
  const tokenBuckets = buckets125(Math.max(1, maxModelLen));
  const layout = {
    ttft: def('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', TTFT_BUCKETS),
    itl: def('vllm:inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', ITL_BUCKETS),
    e2e: def('vllm:e2e_request_latency_seconds', 'Histogram of e2e request latency in seconds.', REQUEST_BUCKETS),
    queue: def('vllm:request_queue_time_seconds', 'Histogram of time spent in WAITING phase for request.', REQUEST_BUCKETS),
    prefill: def('vllm:request_prefill_time_seconds', 'Histogram of time spent in PREFILL phase for request.', REQUEST_BUCKETS),
    decode: def('vllm:request_decode_time_seconds', 'Histogram of time spent in DECODE phase for request.', REQUEST_BUCKETS),
    inference: def('vllm:request_inference_time_seconds', 'Histogram of time spent in RUNNING phase for request.', REQUEST_BUCKETS),
    iterationTokens: def('vllm:iteration_tokens_total', 'Histogram of number of tokens per engine_step.', ITERATION_TOKEN_BUCKETS),
    requestPromptTokens: def('vllm:request_prompt_tokens', 'Number of prefill tokens processed.', tokenBuckets),
    requestGenerationTokens: def('vllm:request_generation_tokens', 'Number of generation tokens processed.', tokenBuckets),
    requestMaxTokens: def('vllm:request_params_max_tokens', 'Histogram of the max_tokens request parameter.', tokenBuckets),
    tpot: def('vllm:request_time_per_output_token_seconds', 'Histogram of time_per_output_token_seconds per request.', ITL_BUCKETS),
    requestMaxNumGenerationTokens: def('vllm:request_max_num_generation_tokens', 'Histogram of maximum number of requested generation tokens.', tokenBuckets),
    requestParamsN: def('vllm:request_params_n', 'Histogram of the n request parameter.', [1, 2, 5, 10, 20]),
    requestPrefillKvComputed: def('vllm:request_prefill_kv_computed_tokens', 'Histogram of new KV tokens computed during prefill (excluding cached tokens).', tokenBuckets),
    lateness: def(
      'mockfleet_pass_lateness_seconds',
      'How late a rank woke up after the modeled end of a forward pass (only passes that slept).',
      LATENESS_BUCKETS,
    ),
  };
  return { ...layout, histograms, floatsPerRank: offset };
}

/** Record one observation. Linear scan: bucket lists are short and mostly hit early. */
export function observe(f64: Float64Array, base: number, h: HistogramDef, value: number): void {
  const b = h.buckets;
  let i = 0;
  while (i < b.length && value > (b[i] as number)) i++;
  const o = base + h.offset;
  f64[o + i] = (f64[o + i] as number) + 1;
  f64[o + b.length + 1] = (f64[o + b.length + 1] as number) + value;
  f64[o + b.length + 2] = (f64[o + b.length + 2] as number) + 1;
}

/**
 * Quantile from non-cumulative bucket counts, interpolating linearly inside the bucket like
 * Prometheus histogram_quantile(). Returns NaN when there are no observations.
 */
export function histogramQuantile(buckets: readonly number[], counts: ArrayLike<number>, q: number): number {
  let total = 0;
  for (let i = 0; i <= buckets.length; i++) total += counts[i] as number;
  if (total === 0) return Number.NaN;
  const rank = q * total;
  let cum = 0;
  for (let i = 0; i <= buckets.length; i++) {
    const c = counts[i] as number;
    if (cum + c >= rank && c > 0) {
      if (i === buckets.length) return buckets[buckets.length - 1] as number;
      const lo = i === 0 ? 0 : (buckets[i - 1] as number);
      const hi = buckets[i] as number;
      return lo + (hi - lo) * ((rank - cum) / c);
    }
    cum += c;
  }
  return buckets[buckets.length - 1] as number;
}
