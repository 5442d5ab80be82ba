/**
 * Dynamo replay report (interfaces.md §7, `lib/mocker/src/replay/collector.rs`) from the raw
 * measurements of a replay: counts, throughputs, and the TTFT / TTST / TPOT / ITL / e2e /
 * per-user output throughput distributions (mean, min, max, median, p75, p90, p95, p99, std;
 * percentile = element at rank round((n − 1) · p / 100); std = population).
 */
import type { Summary } from '../report/stats.js';
import { fmt, renderTable } from '../report/table.js';
import type { HtmlReportInput } from '../report/html.js';
import { InvalidConfigError } from '../util/errors.js';
import { RequestStatus } from './offline.js';
import type { OfflineReplayResult } from './offline.js';

export interface Distribution {
  mean: number | null;
  min: number | null;
  max: number | null;
  median: number | null;
  p75: number | null;
  p90: number | null;
  p95: number | null;
  p99: number | null;
  std: number | null;
}

export interface ReplayReport {
  num_requests: number;
  completed_requests: number;
  total_input_tokens: number;
  total_reused_input_tokens: number;
  total_output_tokens: number;
  duration_ms: number;
  wall_time_ms: number;
  request_throughput_rps: number | null;
  input_throughput_tok_s: number | null;
  output_throughput_tok_s: number | null;
  total_throughput_tok_s: number | null;
  prefix_cache_reused_ratio: number | null;
  ttft_ms: Distribution;
  ttst_ms: Distribution;
  tpot_ms: Distribution;
  itl_ms: Distribution;
  e2e_latency_ms: Distribution;
  output_token_throughput_per_user: Distribution;
}

/** The per-request samples behind each distribution (also used for the HTML report). */
export interface ReplaySamples {
  ttftMs: Float64Array;
  ttstMs: Float64Array;
  tpotMs: Float64Array;
  itlMs: Float64Array;
  e2eMs: Float64Array;
  /** 1000 / TPOT per request with ≥ 2 tokens (tokens/s seen by that user). */
  outputTokPerUser: Float64Array;
}

const finiteOrNull = (v: number): number | null => (Number.isFinite(v) ? v : null);

function dist(s: Summary): Distribution {
  return {
    mean: finiteOrNull(s.mean), min: finiteOrNull(s.min), max: finiteOrNull(s.max), median: finiteOrNull(s.median),
    p75: finiteOrNull(s.p75), p90: finiteOrNull(s.p90), p95: finiteOrNull(s.p95), p99: finiteOrNull(s.p99), std: finiteOrNull(s.std),
  };
}

/** Counts behind a replay report (offline or online). */
export interface ReplayTotals {
  numRequests: number;
  completed: number;
  totalIn: number;
  totalReused: number;
  totalOut: number;
  /** Latest last-token time, ms from the first arrival. */
  durationMs: number;
  wallTimeMs: number;
}

/** Summaries of the per-request (and per-gap, for ITL) distributions. */
export interface ReplaySummaries {
  ttft: Summary;
  ttst: Summary;
  tpot: Summary;
  itl: Summary;
  e2e: Summary;
  outputTokPerUser: Summary;
}

/** Dynamo replay report fields (interfaces.md §7) from totals and distribution summaries. */
export function assembleReplayReport(t: ReplayTotals, d: ReplaySummaries): ReplayReport {
  const secs = t.durationMs / 1000;
  const rate = (v: number): number | null => (secs > 0 ? v / secs : null);
  return {
    num_requests: t.numRequests,
    completed_requests: t.completed,
    total_input_tokens: t.totalIn,
    total_reused_input_tokens: t.totalReused,
    total_output_tokens: t.totalOut,
    duration_ms: t.durationMs,
    wall_time_ms: t.wallTimeMs,
    request_throughput_rps: rate(t.completed),
    input_throughput_tok_s: rate(t.totalIn),
    output_throughput_tok_s: rate(t.totalOut),
    total_throughput_tok_s: rate(t.totalIn + t.totalOut),
    prefix_cache_reused_ratio: t.totalIn > 0 ? t.totalReused / t.totalIn : null,
    ttft_ms: dist(d.ttft),
    ttst_ms: dist(d.ttst),
    tpot_ms: dist(d.tpot),
    itl_ms: dist(d.itl),
    e2e_latency_ms: dist(d.e2e),
    output_token_throughput_per_user: dist(d.outputTokPerUser),
  };
}

/** Rearrange a[lo..hi] so that a[k] is the k-th smallest of that range (Hoare quickselect). */
function select(a: Float64Array, lo: number, hi: number, k: number): void {
  while (hi > lo) {
    // Median of three as pivot keeps sorted and constant inputs linear.
    const mid = lo + ((hi - lo) >> 1);
    let x = a[lo] as number, y = a[mid] as number, z = a[hi] as number;
    if (x > y) { const t = x; x = y; y = t; }
    if (y > z) { y = z; }
    const pivot = x > y ? x : y;
    let i = lo, j = hi;
    while (i <= j) {
      while ((a[i] as number) < pivot) i++;
      while ((a[j] as number) > pivot) j--;
      if (i <= j) {
        const t = a[i] as number;
        a[i] = a[j] as number;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return;
  }
}

/**
 * Same figures as report/stats.ts summarize() (percentile = element at rank round((n−1)·p/100),
 * population std), but by selection instead of a full sort: the ITL sample of a full trace has
 * millions of values and only five order statistics are needed.
 */
export function summarizeBySelection(values: ArrayLike<number>): Summary {
  const n = values.length;
  if (n === 0) {
    const nan = Number.NaN;
    return { count: 0, mean: nan, min: nan, max: nan, median: nan, p50: nan, p75: nan, p90: nan, p95: nan, p99: nan, std: nan };
  }
  const a = new Float64Array(n);
  let sum = 0;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const v = values[i] as number;
    a[i] = v;
    sum += v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const mean = sum / n;
  let sq = 0;
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - mean;
    sq += d * d;
  }
  const ps = [50, 75, 90, 95, 99];
  const out: number[] = [];
  let lo = 0;
  for (const p of ps) {
    const k = Math.round(((n - 1) * p) / 100);
    select(a, lo, n - 1, k);
    out.push(a[k] as number);
    lo = k;
  }
  const [p50, p75, p90, p95, p99] = out as [number, number, number, number, number];
  return { count: n, mean, min, max, median: p50, p50, p75, p90, p95, p99, std: Math.sqrt(sq / n) };
}

/**
 * Exact distribution samples over completed requests (TTFT also counts unfinished ones that got a
 * first token). Needs a replay run with `keepItlSamples`; the report itself reads the sketches.
 */
export function collectSamples(r: OfflineReplayResult): ReplaySamples {
  if (r.itlMs === null) throw new InvalidConfigError('keepItlSamples', 'exact samples need a replay run with keepItlSamples: true');
  const ttft: number[] = [];
  const ttst: number[] = [];
  const tpot: number[] = [];
  const e2e: number[] = [];
  const perUser: number[] = [];
  for (let i = 0; i < r.numRequests; i++) {
    const n = r.outputTokens[i] as number;
    if (n === 0) continue;
    const arrival = r.arrivalMs[i] as number;
    const first = r.firstTokenMs[i] as number;
    const last = r.lastTokenMs[i] as number;
    ttft.push(first - arrival);
    if (r.status[i] !== RequestStatus.completed) continue;
    e2e.push(last - arrival);
    if (n >= 2) {
      ttst.push((r.secondTokenMs[i] as number) - first);
      const t = (last - first) / (n - 1);
      tpot.push(t);
      if (t > 0) perUser.push(1000 / t);
    }
  }
  return {
    ttftMs: Float64Array.from(ttft),
    ttstMs: Float64Array.from(ttst),
    tpotMs: Float64Array.from(tpot),
    itlMs: r.itlMs,
    e2eMs: Float64Array.from(e2e),
    outputTokPerUser: Float64Array.from(perUser),
  };
}

/**
 * The replay report. Distributions come from the replay's sketches (percentiles within 0.5 %), or
 * are exact when `samples` (collectSamples) are given.
 */
export function buildReplayReport(r: OfflineReplayResult, samples?: ReplaySamples): ReplayReport {
  let completed = 0;
  let totalIn = 0;
  let totalReused = 0;
  let totalOut = 0;
  let duration = 0;
  for (let i = 0; i < r.numRequests; i++) {
    if (r.status[i] === RequestStatus.completed) completed++;
    totalIn += r.promptTokens[i] as number;
    totalReused += r.reusedTokens[i] as number;
    totalOut += r.outputTokens[i] as number;
    const last = r.lastTokenMs[i] as number;
    if (last > duration) duration = last;
  }
  return assembleReplayReport(
    { numRequests: r.numRequests, completed, totalIn, totalReused, totalOut, durationMs: duration, wallTimeMs: r.wallTimeMs },
    samples === undefined
      ? {
          ttft: r.sketches.ttft.summary(),
          ttst: r.sketches.ttst.summary(),
          tpot: r.sketches.tpot.summary(),
          itl: r.sketches.itl.summary(),
          e2e: r.sketches.e2e.summary(),
          outputTokPerUser: r.sketches.outputTokPerUser.summary(),
        }
      : {
          ttft: summarizeBySelection(samples.ttftMs),
          ttst: summarizeBySelection(samples.ttstMs),
          tpot: summarizeBySelection(samples.tpotMs),
          itl: summarizeBySelection(samples.itlMs),
          e2e: summarizeBySelection(samples.e2eMs),
          outputTokPerUser: summarizeBySelection(samples.outputTokPerUser),
        },
  );
}

const n2 = (v: number | null, digits = 2): string => (v === null ? 'n/a' : fmt(v, digits));

/** AIPerf-style terminal summary: one distribution table and one totals table. */
export function renderReplayReport(rep: ReplayReport, title = 'mockfleet offline replay'): string {
  const row = (name: string, d: Distribution): Array<string> => [
    name, n2(d.mean), n2(d.min), n2(d.max), n2(d.median), n2(d.p75), n2(d.p90), n2(d.p95), n2(d.p99), n2(d.std),
  ];
  const dists = renderTable(
    ['Metric', 'avg', 'min', 'max', 'p50', 'p75', 'p90', 'p95', 'p99', 'std'],
    [
      row('Time to first token (ms)', rep.ttft_ms),
      row('Time to second token (ms)', rep.ttst_ms),
      row('Time per output token (ms)', rep.tpot_ms),
      row('Inter-token latency (ms)', rep.itl_ms),
      row('Request latency (ms)', rep.e2e_latency_ms),
      row('Output token throughput per user (tok/s)', rep.output_token_throughput_per_user),
    ],
    { title },
  );
  const totals = renderTable(
    ['Totals', 'value'],
    [
      ['Requests', `${fmt(rep.completed_requests, 0)} / ${fmt(rep.num_requests, 0)} completed`],
      ['Input tokens', fmt(rep.total_input_tokens, 0)],
      ['Reused input tokens (prefix cache)', fmt(rep.total_reused_input_tokens, 0)],
      ['Prefix cache reused ratio', n2(rep.prefix_cache_reused_ratio, 4)],
      ['Output tokens', fmt(rep.total_output_tokens, 0)],
      ['Simulated duration (ms)', fmt(rep.duration_ms, 1)],
      ['Wall time (ms)', fmt(rep.wall_time_ms, 1)],
      ['Request throughput (req/s)', n2(rep.request_throughput_rps, 3)],
      ['Input token throughput (tok/s)', n2(rep.input_throughput_tok_s, 1)],
      ['Output token throughput (tok/s)', n2(rep.output_throughput_tok_s, 1)],
      ['Total token throughput (tok/s)', n2(rep.total_throughput_tok_s, 1)],
    ],
  );
  return `${dists}\n${totals}\n`;
}

/** Fixed-size stand-ins for the samples (2,000 evenly spaced quantiles of each sketch), for the HTML plots. */
export function sketchSamples(r: OfflineReplayResult): ReplaySamples {
  const s = r.sketches;
  return {
    ttftMs: s.ttft.quantileSample(), ttstMs: s.ttst.quantileSample(), tpotMs: s.tpot.quantileSample(),
    itlMs: s.itl.quantileSample(), e2eMs: s.e2e.quantileSample(), outputTokPerUser: s.outputTokPerUser.quantileSample(),
  };
}

/** Input for src/report/html.ts. */
export function replayHtmlInput(rep: ReplayReport, r: OfflineReplayResult, samples: ReplaySamples, subtitle: string): HtmlReportInput {
  const bins = r.binOutputTokens.length;
  const t = new Float64Array(bins);
  for (let b = 0; b < bins; b++) t[b] = b;
  return {
    title: 'mockfleet offline replay',
    subtitle,
    summary: [
      ['Requests completed', `${rep.completed_requests} / ${rep.num_requests}`],
      ['Simulated duration (s)', Number((rep.duration_ms / 1000).toFixed(1))],
      ['Wall time (s)', Number((rep.wall_time_ms / 1000).toFixed(2))],
      ['Prefix cache reused ratio', rep.prefix_cache_reused_ratio === null ? 'n/a' : Number(rep.prefix_cache_reused_ratio.toFixed(4))],
      ['Request throughput (req/s)', rep.request_throughput_rps === null ? 'n/a' : Number(rep.request_throughput_rps.toFixed(3))],
      ['Output throughput (tok/s)', rep.output_throughput_tok_s === null ? 'n/a' : Number(rep.output_throughput_tok_s.toFixed(1))],
      ['TTFT p50 (ms)', rep.ttft_ms.median ?? 'n/a'],
      ['ITL p50 (ms)', rep.itl_ms.median ?? 'n/a'],
    ],
    distributions: [
      { name: 'Time to first token', unit: 'ms', values: samples.ttftMs },
      { name: 'Time to second token', unit: 'ms', values: samples.ttstMs },
      { name: 'Time per output token', unit: 'ms', values: samples.tpotMs },
      { name: 'Inter-token latency', unit: 'ms', values: samples.itlMs },
      { name: 'Request latency', unit: 'ms', values: samples.e2eMs },
      { name: 'Output token throughput per user', unit: 'tok/s', values: samples.outputTokPerUser },
    ],
    series: [
      { name: 'Output tokens per simulated second', unit: 'tok/s', t, v: r.binOutputTokens },
      { name: 'Requests in flight', unit: 'requests', t, v: r.binInFlight },
    ],
  };
}
