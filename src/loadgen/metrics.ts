/**
 * Benchmark metrics with AIPerf definitions (interfaces.md §5.1), computed from per-request
 * timelines. Pure: no clock, no I/O, so hand-made timelines test it exactly.
 *
 *   send ─── first content ── second content ─ … ── last content ── end
 *   TTFT   = first − send                TTST = second − first
 *   request_latency (e2e) = end − send    ITL  = (e2e − TTFT) / (OSL − 1), OSL ≥ 2 only
 *   inter_chunk_latency = every gap between consecutive content events
 *   output_token_throughput_per_user = 1000 / ITL (tokens/s)
 *
 * Only measured requests count (sent after warm-up ended). The measured interval runs from the
 * warm-up end to the end of the last measured request (or the interruption time of a partial run);
 * request_throughput = completed / interval, output_token_throughput = Σ OSL of completed / interval.
 */
import { Rng } from './rng.js';
import { summarize, summaryToJson } from '../report/stats.js';
import type { Summary } from '../report/stats.js';

export interface RequestRecord {
  /** Milliseconds, any common origin. */
  sendMs: number;
  endMs: number;
  /** NaN when no content arrived. */
  firstTokenMs: number;
  secondTokenMs: number;
  lastTokenMs: number;
  /** usage.completion_tokens when reported, else the number of content events. */
  outputTokens: number;
  /** usage.prompt_tokens when reported, else the intended prompt length. */
  inputTokens: number;
  /** usage.prompt_tokens_details.cached_tokens, NaN when not reported. */
  cachedTokens: number;
  /** Content events received. */
  chunks: number;
  /** null = success; else an error type (http_500, connection_refused, stream_cut, timeout, cancelled, …). */
  errorType: string | null;
  errorMessage: string | null;
  /** Sent after the warm-up ended. */
  measured: boolean;
}

/**
 * Inter-chunk gaps of measured, successful requests: exact count/mean/min/max/std, percentiles from
 * a seeded uniform reservoir once more than `capacity` gaps were seen (bounded memory on long runs).
 */
export class GapCollector {
  private values: Float64Array;
  private size: number;
  private readonly capacity: number;
  private readonly rng: Rng;
  count: number;
  sum: number;
  sumSq: number;
  min: number;
  max: number;

  constructor(capacity = 4_000_000, seed = 1) {
    this.capacity = capacity;
    this.values = new Float64Array(Math.min(capacity, 65536));
    this.size = 0;
    this.rng = new Rng(seed);
    this.count = 0;
    this.sum = 0;
    this.sumSq = 0;
    this.min = Infinity;
    this.max = -Infinity;
  }

  addMany(src: Float64Array, n: number): void {
    for (let i = 0; i < n; i++) this.add(src[i] as number);
  }

  add(v: number): void {
    this.count++;
    this.sum += v;
    this.sumSq += v * v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
    if (this.size < this.capacity) {
      if (this.size === this.values.length) {
        const grown = new Float64Array(Math.min(this.capacity, this.values.length * 2));
        grown.set(this.values);
        this.values = grown;
      }
      this.values[this.size++] = v;
    } else {
      const j = Math.floor(this.rng.next() * this.count);
      if (j < this.capacity) this.values[j] = v;
    }
  }

  /** True when percentiles come from a sample rather than every gap. */
  get sampled(): boolean {
    return this.count > this.size;
  }

  summary(): Summary {
    const s = summarize(this.values.subarray(0, this.size));
    if (this.count === 0) return s;
    const mean = this.sum / this.count;
    return { ...s, count: this.count, mean, min: this.min, max: this.max, std: Math.sqrt(Math.max(0, this.sumSq / this.count - mean * mean)) };
  }

  samples(): Float64Array {
    return this.values.subarray(0, this.size);
  }
}

export interface BenchWindow {
  /** Warm-up end (= start of the measured interval), same origin as the records. */
  measuredStartMs: number;
  /** Interruption time for a partial run; undefined = end of the last measured request. */
  interruptedAtMs?: number;
}

export type MetricName =
  | 'time_to_first_token'
  | 'time_to_second_token'
  | 'inter_token_latency'
  | 'inter_chunk_latency'
  | 'request_latency'
  | 'output_token_throughput_per_user'
  | 'input_sequence_length'
  | 'output_sequence_length';

export const METRIC_UNITS: Record<MetricName, string> = {
  time_to_first_token: 'ms',
  time_to_second_token: 'ms',
  inter_token_latency: 'ms',
  inter_chunk_latency: 'ms',
  request_latency: 'ms',
  output_token_throughput_per_user: 'tokens/s/user',
  input_sequence_length: 'tokens',
  output_sequence_length: 'tokens',
};

export interface BenchMetrics {
  measuredStartMs: number;
  measuredEndMs: number;
  durationS: number;
  sent: number;
  completed: number;
  failed: number;
  cancelled: number;
  failedByType: Record<string, number>;
  errorSamples: Record<string, string>;
  totalInputTokens: number;
  totalOutputTokens: number;
  /** Σ cached_tokens over completed requests that reported it; NaN when none did. */
  totalCachedTokens: number;
  requestThroughput: number;
  outputTokenThroughput: number;
  inputTokenThroughput: number;
  totalTokenThroughput: number;
  summaries: Record<MetricName, Summary>;
  /** Raw per-metric values for plots (inter_chunk_latency may be a reservoir sample). */
  values: Record<MetricName, Float64Array>;
  interChunkSampled: boolean;
}

export function computeBenchMetrics(records: readonly RequestRecord[], gaps: GapCollector, window: BenchWindow): BenchMetrics {
  const ttft: number[] = [];
  const ttst: number[] = [];
  const itl: number[] = [];
  const e2e: number[] = [];
  const tpu: number[] = [];
  const isl: number[] = [];
  const osl: number[] = [];
  const failedByType: Record<string, number> = {};
  const errorSamples: Record<string, string> = {};
  let sent = 0;
  let completed = 0;
  let failed = 0;
  let cancelled = 0;
  let inTok = 0;
  let outTok = 0;
  let cachedTok = 0;
  let cachedSeen = false;
  let lastEnd = window.measuredStartMs;
  for (const r of records) {
    if (!r.measured) continue;
    sent++;
    if (r.errorType === 'cancelled') {
      cancelled++;
      continue;
    }
    if (r.endMs > lastEnd) lastEnd = r.endMs;
    if (r.errorType !== null) {
      failed++;
      failedByType[r.errorType] = (failedByType[r.errorType] ?? 0) + 1;
      if (errorSamples[r.errorType] === undefined && r.errorMessage !== null) errorSamples[r.errorType] = r.errorMessage;
      continue;
    }
    completed++;
    inTok += r.inputTokens;
    outTok += r.outputTokens;
    if (!Number.isNaN(r.cachedTokens)) {
      cachedTok += r.cachedTokens;
      cachedSeen = true;
    }
    isl.push(r.inputTokens);
    osl.push(r.outputTokens);
    const e = r.endMs - r.sendMs;
    e2e.push(e);
    if (!Number.isNaN(r.firstTokenMs)) {
      const t = r.firstTokenMs - r.sendMs;
      ttft.push(t);
      if (!Number.isNaN(r.secondTokenMs)) ttst.push(r.secondTokenMs - r.firstTokenMs);
      if (r.outputTokens >= 2) {
        const l = (e - t) / (r.outputTokens - 1);
        itl.push(l);
        if (l > 0) tpu.push(1000 / l);
      }
    }
  }
  const end = window.interruptedAtMs ?? lastEnd;
  const durationS = Math.max(0, end - window.measuredStartMs) / 1000;
  const per = (x: number): number => (durationS > 0 ? x / durationS : Number.NaN);
  const values: Record<MetricName, Float64Array> = {
    time_to_first_token: Float64Array.from(ttft),
    time_to_second_token: Float64Array.from(ttst),
    inter_token_latency: Float64Array.from(itl),
    inter_chunk_latency: gaps.samples(),
    request_latency: Float64Array.from(e2e),
    output_token_throughput_per_user: Float64Array.from(tpu),
    input_sequence_length: Float64Array.from(isl),
    output_sequence_length: Float64Array.from(osl),
  };
  const summaries = {} as Record<MetricName, Summary>;
  for (const k of Object.keys(values) as MetricName[]) summaries[k] = k === 'inter_chunk_latency' ? gaps.summary() : summarize(values[k]);
  return {
    measuredStartMs: window.measuredStartMs,
    measuredEndMs: end,
    durationS,
    sent,
    completed,
    failed,
    cancelled,
    failedByType,
    errorSamples,
    totalInputTokens: inTok,
    totalOutputTokens: outTok,
    totalCachedTokens: cachedSeen ? cachedTok : Number.NaN,
    requestThroughput: per(completed),
    outputTokenThroughput: per(outTok),
    inputTokenThroughput: per(inTok),
    totalTokenThroughput: per(inTok + outTok),
    summaries,
    values,
    interChunkSampled: gaps.sampled,
  };
}

/** JSON-friendly form (NaN -> null) of the metrics, without raw values. */
export function benchMetricsToJson(m: BenchMetrics): Record<string, unknown> {
  const f = (v: number): number | null => (Number.isFinite(v) ? v : null);
  const metrics: Record<string, unknown> = {};
  for (const k of Object.keys(m.summaries) as MetricName[]) metrics[k] = { unit: METRIC_UNITS[k], ...summaryToJson(m.summaries[k]) };
  return {
    measured_interval: { start_ms: m.measuredStartMs, end_ms: m.measuredEndMs, duration_s: m.durationS },
    request_count: { sent: m.sent, completed: m.completed, failed: m.failed, cancelled: m.cancelled, failed_by_type: m.failedByType },
    error_samples: m.errorSamples,
    request_throughput: f(m.requestThroughput),
    output_token_throughput: f(m.outputTokenThroughput),
    input_token_throughput: f(m.inputTokenThroughput),
    total_token_throughput: f(m.totalTokenThroughput),
    total_input_tokens: m.totalInputTokens,
    total_output_tokens: m.totalOutputTokens,
    total_cached_tokens: f(m.totalCachedTokens),
    inter_chunk_latency_sampled: m.interChunkSampled,
    metrics,
  };
}
