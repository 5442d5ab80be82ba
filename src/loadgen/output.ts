/** Bench result rendering: terminal summary table, JSON report, HTML report. */
import { writeFile } from 'node:fs/promises';
import { renderHtmlReport } from '../report/html.js';
import type { HtmlReportInput } from '../report/html.js';
import { fmt, renderTable } from '../report/table.js';
import type { BenchResult } from './bench.js';
import { benchMetricsToJson, METRIC_UNITS } from './metrics.js';
import type { MetricName } from './metrics.js';

const LABELS: Record<MetricName, string> = {
  time_to_first_token: 'Time to first token',
  time_to_second_token: 'Time to second token',
  inter_token_latency: 'Inter token latency',
  inter_chunk_latency: 'Inter chunk latency',
  request_latency: 'Request latency',
  output_token_throughput_per_user: 'Output token throughput per user',
  input_sequence_length: 'Input sequence length',
  output_sequence_length: 'Output sequence length',
};

function describeLoad(r: BenchResult): string {
  const o = r.options;
  const load = o.requestRate !== undefined
    ? `${o.requestRate} req/s ${o.arrival}${o.arrival === 'gamma' ? ` (burstiness ${o.burstiness})` : ''}${o.concurrency !== undefined ? `, max concurrency ${o.concurrency}` : ''}`
    : `concurrency ${o.concurrency ?? 1}`;
  const len = o.durationS !== undefined ? `${o.durationS} s` : `${o.numRequests} requests`;
  return `${o.url} · ${r.model ?? '(no model)'} · /v1/${o.api === 'chat' ? 'chat/completions' : 'completions'} · ${load} · ISL/OSL ${o.isl}/${o.osl} · ${len}${o.warmupS > 0 ? ` after ${o.warmupS} s warm-up` : ''} · ${r.promptFormat} prompts`;
}

export function formatSummary(r: BenchResult): string {
  const m = r.metrics;
  const rows: Array<Array<string | number>> = [];
  for (const k of Object.keys(LABELS) as MetricName[]) {
    const s = m.summaries[k];
    const digits = k.endsWith('length') ? 0 : 2;
    rows.push([`${LABELS[k]} (${METRIC_UNITS[k]})${k === 'inter_chunk_latency' && m.interChunkSampled ? ' *' : ''}`, fmt(s.mean, digits), fmt(s.min, digits), fmt(s.max, digits), fmt(s.p99, digits), fmt(s.p90, digits), fmt(s.p50, digits), fmt(s.std, digits)]);
  }
  rows.push(['Request throughput (req/s)', fmt(m.requestThroughput), '', '', '', '', '', '']);
  rows.push(['Output token throughput (tokens/s)', fmt(m.outputTokenThroughput), '', '', '', '', '', '']);
  rows.push(['Total token throughput (tokens/s)', fmt(m.totalTokenThroughput), '', '', '', '', '', '']);
  const title = `mockfleet bench${r.partial ? ' (PARTIAL: interrupted)' : ''} — ${describeLoad(r)}`;
  const table = renderTable(['Metric', 'avg', 'min', 'max', 'p99', 'p90', 'p50', 'std'], rows, { title });
  const lines = [table];
  lines.push(`Requests: ${m.completed} completed, ${m.failed} failed${m.cancelled > 0 ? `, ${m.cancelled} cancelled` : ''} (of ${m.sent} measured; ${r.warmupRequests} warm-up) over ${fmt(m.durationS, 3)} s`);
  const types = Object.keys(m.failedByType).sort();
  if (types.length > 0) {
    const errRows = types.map((t) => [t, m.failedByType[t] as number, (m.errorSamples[t] ?? '').slice(0, 100)]);
    lines.push(renderTable(['Error type', 'count', 'example'], errRows, { align: ['left', 'right', 'left'] }));
  }
  if (m.interChunkSampled) lines.push('* inter-chunk percentiles from a uniform sample; count/mean/min/max/std are exact');
  return lines.join('\n');
}

export function benchResultToJson(r: BenchResult): Record<string, unknown> {
  const o = r.options;
  return {
    schema: 'mockfleet.bench.v1',
    started_at: r.startedAt,
    partial: r.partial,
    config: {
      url: o.url, model: r.model, api: o.api, prompt_format: r.promptFormat, concurrency: o.concurrency ?? null, request_rate: o.requestRate ?? null,
      arrival: o.requestRate !== undefined ? o.arrival : null, burstiness: o.burstiness, isl: o.isl, isl_stddev: o.islStddev, osl: o.osl, osl_stddev: o.oslStddev,
      shared_prefix_ratio: o.sharedPrefixRatio, num_prefix_groups: o.numPrefixGroups, warmup_s: o.warmupS, duration_s: o.durationS ?? null,
      num_requests: o.numRequests ?? null, seed: o.seed, ignore_eos: o.ignoreEos, timeout_s: o.timeoutS,
    },
    notes: r.notes,
    warmup_requests: r.warmupRequests,
    ...benchMetricsToJson(r.metrics),
  };
}

/**
 * Per-second rates over the measured interval from request end times. A last bucket shorter than
 * half a second is dropped (too noisy); a longer partial one is scaled to a rate.
 */
function perSecond(r: BenchResult, pick: (i: number) => number): { t: Float64Array; v: Float64Array } {
  const m = r.metrics;
  const full = Math.floor(m.durationS);
  const n = Math.max(1, m.durationS - full >= 0.5 ? full + 1 : full);
  const v = new Float64Array(n);
  for (let i = 0; i < r.records.length; i++) {
    const rec = r.records[i] as (typeof r.records)[number];
    if (!rec.measured || rec.errorType !== null) continue;
    const b = Math.floor((rec.endMs - m.measuredStartMs) / 1000);
    if (b >= 0 && b < n) v[b] = (v[b] as number) + pick(i);
  }
  const t = new Float64Array(n);
  for (let b = 0; b < n; b++) {
    const width = Math.min(1, m.durationS - b);
    t[b] = b + width / 2;
    if (width > 0 && width < 1) v[b] = (v[b] as number) / width;
  }
  return { t, v };
}

export function benchHtmlInput(r: BenchResult): HtmlReportInput {
  const m = r.metrics;
  const summary: Array<[string, string | number]> = [
    ['Requests/s', m.requestThroughput],
    ['Output tokens/s', m.outputTokenThroughput],
    ['Completed', m.completed],
    ['Failed', m.failed],
    ['TTFT p50 (ms)', m.summaries.time_to_first_token.p50],
    ['TTFT p99 (ms)', m.summaries.time_to_first_token.p99],
    ['ITL p50 (ms)', m.summaries.inter_token_latency.p50],
    ['ITL p99 (ms)', m.summaries.inter_token_latency.p99],
    ['E2E latency p50 (ms)', m.summaries.request_latency.p50],
    ['Measured interval (s)', m.durationS],
  ];
  for (const [t, c] of Object.entries(m.failedByType)) summary.push([`Errors: ${t}`, c]);
  const dist = (k: MetricName): HtmlReportInput['distributions'][number] => ({ name: LABELS[k], unit: METRIC_UNITS[k], values: m.values[k] });
  const measured = r.records.filter((x) => x.measured && x.errorType === null).sort((a, b) => a.sendMs - b.sendMs);
  const ttftT = Float64Array.from(measured, (x) => (x.sendMs - m.measuredStartMs) / 1000);
  const ttftV = Float64Array.from(measured, (x) => x.firstTokenMs - x.sendMs);
  const reqs = perSecond(r, () => 1);
  const toks = perSecond(r, (i) => (r.records[i] as (typeof r.records)[number]).outputTokens);
  return {
    title: `Benchmark${r.partial ? ' (partial)' : ''}`,
    subtitle: `${describeLoad(r)} · started ${r.startedAt}`,
    summary,
    distributions: [
      dist('time_to_first_token'), dist('inter_token_latency'), dist('request_latency'), dist('time_to_second_token'),
      dist('inter_chunk_latency'), dist('output_token_throughput_per_user'),
    ],
    series: [
      { name: 'Completed requests per second', unit: 'req/s', t: reqs.t, v: reqs.v },
      { name: 'Output tokens per second', unit: 'tokens/s', t: toks.t, v: toks.v },
      { name: 'In-flight requests', unit: 'requests', t: r.inflightSeries.t, v: r.inflightSeries.v },
      { name: 'TTFT by send time', unit: 'ms', t: ttftT, v: ttftV },
    ],
  };
}

export async function writeBenchReports(r: BenchResult, files: { json?: string | undefined; html?: string | undefined }): Promise<void> {
  if (files.json !== undefined) await writeFile(files.json, JSON.stringify(benchResultToJson(r), null, 2) + '\n');
  if (files.html !== undefined) await writeFile(files.html, renderHtmlReport(benchHtmlInput(r)));
}
