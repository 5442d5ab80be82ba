/**
 * Online replay: send a Mooncake trace to a running OpenAI-compatible server with the trace's
 * timing (Dynamo's online replay, interfaces.md §6), then build the Dynamo replay report (§7).
 *
 * Arrival: timestamps normalized so the earliest request is at 0, divided by
 * arrivalSpeedupRatio. Later turns of a session (sessionId set, delayMs set) are sent delayMs /
 * ratio after the previous turn of that session finished. Prompts: token ids synthesized from
 * hash_ids (synthesizePromptTokens), max_tokens = output_length, ignore_eos, streamed.
 * Times in the report are ms from the replay start; TTFT and e2e count from the scheduled arrival.
 */
import { writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { readMooncakeTrace, synthesizePromptTokens } from '../trace/mooncake.js';
import type { TraceRequest } from '../trace/mooncake.js';
import type { ReplayReport } from '../replay/report.js';
import { assembleReplayReport } from '../replay/report.js';
import { renderHtmlReport } from '../report/html.js';
import { summarize } from '../report/stats.js';
import { InvalidConfigError } from '../util/errors.js';
import { InflightSlot, makeTarget } from './client.js';
import { GapCollector } from './metrics.js';
import { probeModel } from './probe.js';
import { tokenIdsBody } from './workload.js';

export type { ReplayReport } from '../replay/report.js';

export interface OnlineReplayOptions {
  url: string;
  tracePath: string;
  traceBlockSize: number;
  arrivalSpeedupRatio: number;
  model?: string;
  apiKey?: string;
  json?: string;
  html?: string;
  numRequests?: number;
  /** Aborting cancels in-flight requests; the report covers what finished. */
  signal?: AbortSignal;
  /** Per-request timeout, seconds (default 600). */
  timeoutS?: number;
  /** Called with one line per probe decision / error sample (stderr in the CLI). */
  onNote?: (note: string) => void;
  /** Called about 4 times a second while the replay runs (the CLI draws a progress bar). */
  onProgress?: (p: OnlineReplayProgress) => void;
}

export interface OnlineReplayProgress {
  total: number;
  finished: number;
  failed: number;
  inflight: number;
  elapsedS: number;
}

/** Per-request raw measurements of an online replay (ms from replay start; NaN = never happened). */
export interface OnlineReplayRecords {
  arrivalMs: Float64Array;
  sendMs: Float64Array;
  firstTokenMs: Float64Array;
  secondTokenMs: Float64Array;
  lastTokenMs: Float64Array;
  endMs: Float64Array;
  outputTokens: Int32Array;
  promptTokens: Int32Array;
  reusedTokens: Int32Array;
  /** null = completed. */
  errors: Array<string | null>;
  gaps: GapCollector;
  wallTimeMs: number;
  partial: boolean;
}


export interface OnlineReplaySamples {
  ttftMs: Float64Array;
  ttstMs: Float64Array;
  tpotMs: Float64Array;
  e2eMs: Float64Array;
  outputTokPerUser: Float64Array;
}

export function onlineReplaySamples(r: OnlineReplayRecords): OnlineReplaySamples {
  const ttft: number[] = [];
  const ttst: number[] = [];
  const tpot: number[] = [];
  const e2e: number[] = [];
  const perUser: number[] = [];
  for (let i = 0; i < r.arrivalMs.length; i++) {
    if (r.errors[i] !== null) continue;
    const a = r.arrivalMs[i] as number;
    const first = r.firstTokenMs[i] as number;
    const last = r.lastTokenMs[i] as number;
    const n = r.outputTokens[i] as number;
    if (Number.isNaN(first)) continue;
    ttft.push(first - a);
    e2e.push(last - a);
    if (n >= 2 && !Number.isNaN(r.secondTokenMs[i] as number)) {
      ttst.push((r.secondTokenMs[i] as number) - first);
      const t = (last - first) / (n - 1);
      tpot.push(t);
      if (t > 0) perUser.push(1000 / t);
    }
  }
  return { ttftMs: Float64Array.from(ttft), ttstMs: Float64Array.from(ttst), tpotMs: Float64Array.from(tpot), e2eMs: Float64Array.from(e2e), outputTokPerUser: Float64Array.from(perUser) };
}

/** Dynamo replay report fields from online measurements (same shape as the offline replayer's). */
export function buildOnlineReplayReport(r: OnlineReplayRecords, samples: OnlineReplaySamples = onlineReplaySamples(r)): ReplayReport {
  const n = r.arrivalMs.length;
  let completed = 0;
  let totalIn = 0;
  let totalReused = 0;
  let totalOut = 0;
  let duration = 0;
  for (let i = 0; i < n; i++) {
    if (r.errors[i] !== null) continue;
    completed++;
    totalIn += r.promptTokens[i] as number;
    totalReused += r.reusedTokens[i] as number;
    totalOut += r.outputTokens[i] as number;
    const last = r.lastTokenMs[i] as number;
    if (last > duration) duration = last;
  }
  return assembleReplayReport(
    { numRequests: n, completed, totalIn, totalReused, totalOut, durationMs: duration, wallTimeMs: r.wallTimeMs },
    {
      ttft: summarize(samples.ttftMs),
      ttst: summarize(samples.ttstMs),
      tpot: summarize(samples.tpotMs),
      itl: r.gaps.summary(),
      e2e: summarize(samples.e2eMs),
      outputTokPerUser: summarize(samples.outputTokPerUser),
    },
  );
}

function failureCounts(r: OnlineReplayRecords): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of r.errors) if (e !== null) out[e] = (out[e] ?? 0) + 1;
  return out;
}

export async function runOnlineReplay(opts: OnlineReplayOptions): Promise<ReplayReport> {
  if (!Number.isInteger(opts.traceBlockSize) || opts.traceBlockSize < 1) throw new InvalidConfigError('--trace-block-size', `must be a positive integer, got ${opts.traceBlockSize}`);
  if (!(opts.arrivalSpeedupRatio > 0) || !Number.isFinite(opts.arrivalSpeedupRatio)) throw new InvalidConfigError('--arrival-speedup-ratio', `must be a number > 0, got ${opts.arrivalSpeedupRatio}`);
  if (opts.numRequests !== undefined && (!Number.isInteger(opts.numRequests) || opts.numRequests < 1)) throw new InvalidConfigError('--num-requests', `must be a positive integer, got ${opts.numRequests}`);
  const timeoutS = opts.timeoutS ?? 600;
  if (!(timeoutS > 0)) throw new InvalidConfigError('--timeout', `must be a number > 0, got ${timeoutS}`);
  let reqs = await readMooncakeTrace(opts.tracePath);
  if (opts.numRequests !== undefined) reqs = reqs.slice(0, opts.numRequests);
  const target = makeTarget(opts.url, Infinity, opts.apiKey);
  try {
    let model: string | null = opts.model ?? null;
    if (model === null) {
      const m = await probeModel(target);
      model = m.model;
      opts.onNote?.(m.note);
    }
    const records = await replayTrace(reqs, opts, target, model, timeoutS * 1000);
    const samples = onlineReplaySamples(records);
    const report = buildOnlineReplayReport(records, samples);
    const failures = failureCounts(records);
    for (const [k, v] of Object.entries(failures)) opts.onNote?.(`${v} request(s) failed: ${k}`);
    if (opts.json !== undefined) {
      await writeFile(opts.json, JSON.stringify({ ...report, mode: 'online', url: opts.url, model, trace: opts.tracePath, partial: records.partial, failed_by_type: failures }, null, 2) + '\n');
    }
    if (opts.html !== undefined) await writeFile(opts.html, renderHtmlReport(onlineReplayHtmlInput(report, records, samples, `${opts.tracePath} → ${opts.url} · speedup ${opts.arrivalSpeedupRatio}× · trace block ${opts.traceBlockSize}`)));
    return report;
  } finally {
    target.agent.destroy();
  }
}

function replayTrace(reqs: readonly TraceRequest[], opts: OnlineReplayOptions, target: ReturnType<typeof makeTarget>, model: string | null, timeoutMs: number): Promise<OnlineReplayRecords> {
  return new Promise((resolve) => {
    const n = reqs.length;
    const ratio = opts.arrivalSpeedupRatio;
    const rec: OnlineReplayRecords = {
      arrivalMs: new Float64Array(n).fill(Number.NaN),
      sendMs: new Float64Array(n).fill(Number.NaN),
      firstTokenMs: new Float64Array(n).fill(Number.NaN),
      secondTokenMs: new Float64Array(n).fill(Number.NaN),
      lastTokenMs: new Float64Array(n).fill(Number.NaN),
      endMs: new Float64Array(n).fill(Number.NaN),
      outputTokens: new Int32Array(n),
      promptTokens: new Int32Array(n),
      reusedTokens: new Int32Array(n),
      errors: new Array<string | null>(n).fill('not_sent'),
      gaps: new GapCollector(4_000_000, 1),
      wallTimeMs: 0,
      partial: false,
    };
    // First turns go on the timestamp schedule; later turns of a session chain off their predecessor.
    let t0Trace = Infinity;
    for (const r of reqs) t0Trace = Math.min(t0Trace, r.timestampMs);
    const nextTurn = new Int32Array(n).fill(-1);
    const lastOfSession = new Map<string, number>();
    const scheduled: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = reqs[i] as TraceRequest;
      const prev = r.sessionId === null ? undefined : lastOfSession.get(r.sessionId);
      if (prev !== undefined && r.delayMs !== null) nextTurn[prev] = i;
      else scheduled.push(i);
      if (r.sessionId !== null) lastOfSession.set(r.sessionId, i);
    }
    scheduled.sort((a, b) => (reqs[a] as TraceRequest).timestampMs - (reqs[b] as TraceRequest).timestampMs || a - b);
    const pool: InflightSlot[] = [];
    const busy = new Set<InflightSlot>();
    const pendingTimers = new Set<NodeJS.Timeout>();
    const start = performance.now();
    let cursor = 0;
    let schedTimer: NodeJS.Timeout | null = null;
    let aborted = false;
    let settled = false;
    let outstanding = n;
    let failed = 0;
    const progressTimer = opts.onProgress === undefined ? null : setInterval(() => {
      (opts.onProgress as (p: OnlineReplayProgress) => void)({
        total: n,
        finished: n - outstanding,
        failed,
        inflight: busy.size,
        elapsedS: (performance.now() - start) / 1000,
      });
    }, 250);

    const send = (i: number, arrivalMs: number): void => {
      const r = reqs[i] as TraceRequest;
      rec.arrivalMs[i] = arrivalMs;
      const tokens = synthesizePromptTokens(r, opts.traceBlockSize);
      const slot = pool.pop() ?? new InflightSlot('completions');
      slot.tag = i;
      slot.intendedInputTokens = tokens.length;
      busy.add(slot);
      slot.start(target, '/v1/completions', tokenIdsBody(model, tokens, r.outputLength, true, true), timeoutMs, onDone);
      rec.sendMs[i] = slot.outcome.sendMs - start;
    };

    const onDone = (slot: InflightSlot): void => {
      busy.delete(slot);
      const i = slot.tag;
      const o = slot.outcome;
      const p = slot.parser;
      rec.endMs[i] = o.endMs - start;
      rec.firstTokenMs[i] = p.firstContentMs - start;
      rec.secondTokenMs[i] = p.secondContentMs - start;
      rec.lastTokenMs[i] = p.lastContentMs - start;
      const u = p.usage;
      rec.outputTokens[i] = u !== null && Number.isFinite(u.completionTokens) ? u.completionTokens : p.numContent;
      rec.promptTokens[i] = u !== null && Number.isFinite(u.promptTokens) ? u.promptTokens : slot.intendedInputTokens;
      rec.reusedTokens[i] = u !== null && Number.isFinite(u.cachedTokens) ? u.cachedTokens : 0;
      rec.errors[i] = o.errorType;
      if (o.errorType === null) rec.gaps.addMany(p.gaps, p.numGaps);
      else failed++;
      pool.push(slot);
      outstanding--;
      const nt = nextTurn[i] as number;
      if (nt >= 0 && !aborted) {
        const delay = ((reqs[nt] as TraceRequest).delayMs ?? 0) / ratio;
        const t = setTimeout(() => {
          pendingTimers.delete(t);
          send(nt, performance.now() - start);
        }, delay);
        pendingTimers.add(t);
      }
      maybeFinish();
    };

    const tick = (): void => {
      schedTimer = null;
      const now = performance.now() - start;
      while (cursor < scheduled.length) {
        const i = scheduled[cursor] as number;
        const due = ((reqs[i] as TraceRequest).timestampMs - t0Trace) / ratio;
        if (due > now) break;
        cursor++;
        send(i, due);
      }
      if (cursor < scheduled.length && !aborted) {
        const i = scheduled[cursor] as number;
        const due = ((reqs[i] as TraceRequest).timestampMs - t0Trace) / ratio;
        schedTimer = setTimeout(tick, Math.max(0, due - (performance.now() - start)));
      }
    };

    const onAbort = (): void => {
      if (aborted) return;
      aborted = true;
      rec.partial = true;
      if (schedTimer !== null) clearTimeout(schedTimer);
      schedTimer = null;
      for (const t of pendingTimers) clearTimeout(t);
      pendingTimers.clear();
      cursor = scheduled.length;
      for (const s of [...busy]) s.abort('cancelled', 'replay interrupted');
      // Requests never sent stay 'not_sent'; nothing else is outstanding once in-flight ones are cancelled.
      maybeFinish(true);
    };

    function maybeFinish(force = false): void {
      if (settled) return;
      if (!force && (outstanding > 0 || busy.size > 0)) return;
      if (busy.size > 0) return;
      settled = true;
      if (progressTimer !== null) clearInterval(progressTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      rec.wallTimeMs = performance.now() - start;
      resolve(rec);
    }

    if (opts.signal?.aborted === true) {
      rec.partial = true;
      settled = true;
      resolve(rec);
      return;
    }
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (n === 0) maybeFinish(true);
    else tick();
  });
}

export function onlineReplayHtmlInput(rep: ReplayReport, r: OnlineReplayRecords, s: OnlineReplaySamples, subtitle: string): Parameters<typeof renderHtmlReport>[0] {
  const bins = Math.max(1, Math.ceil(rep.duration_ms / 1000));
  const outTok = new Float64Array(bins);
  const inflight = new Float64Array(bins);
  for (let i = 0; i < r.arrivalMs.length; i++) {
    if (r.errors[i] === null) {
      const b = Math.floor((r.lastTokenMs[i] as number) / 1000);
      if (b >= 0 && b < bins) outTok[b] = (outTok[b] as number) + (r.outputTokens[i] as number);
    }
    const a = r.sendMs[i] as number;
    const e = r.endMs[i] as number;
    if (Number.isNaN(a) || Number.isNaN(e)) continue;
    for (let b = Math.max(0, Math.floor(a / 1000)); b < Math.min(bins, Math.ceil(e / 1000)); b++) inflight[b] = (inflight[b] as number) + 1;
  }
  const t = new Float64Array(bins);
  for (let b = 0; b < bins; b++) t[b] = b;
  const failed = rep.num_requests - rep.completed_requests;
  return {
    title: `mockfleet online replay${r.partial ? ' (partial)' : ''}`,
    subtitle,
    summary: [
      ['Requests completed', `${rep.completed_requests} / ${rep.num_requests}`],
      ['Failed or not sent', failed],
      ['Duration (s)', rep.duration_ms / 1000],
      ['Prefix cache reused ratio', rep.prefix_cache_reused_ratio ?? 'n/a'],
      ['Requests/s', rep.request_throughput_rps ?? 'n/a'],
      ['Output tokens/s', rep.output_throughput_tok_s ?? 'n/a'],
      ['TTFT p50 (ms)', rep.ttft_ms.median ?? 'n/a'],
      ['ITL p50 (ms)', rep.itl_ms.median ?? 'n/a'],
    ],
    distributions: [
      { name: 'Time to first token', unit: 'ms', values: s.ttftMs },
      { name: 'Time per output token', unit: 'ms', values: s.tpotMs },
      { name: 'Request latency', unit: 'ms', values: s.e2eMs },
      { name: 'Time to second token', unit: 'ms', values: s.ttstMs },
      { name: 'Inter-token latency', unit: 'ms', values: r.gaps.samples() },
      { name: 'Output token throughput per user', unit: 'tok/s', values: s.outputTokPerUser },
    ],
    series: [
      { name: 'Output tokens per second', unit: 'tok/s', t, v: outTok },
      { name: 'Requests in flight (touching each second)', unit: 'requests', t, v: inflight },
    ],
  };
}
