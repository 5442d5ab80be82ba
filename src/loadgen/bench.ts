/**
 * `mockfleet bench` core: drives an OpenAI-compatible server with a closed loop (--concurrency) or
 * an open-loop arrival process (--request-rate, optionally capped by --concurrency), records one
 * timeline per request and computes AIPerf-style metrics over the measured interval.
 */
import { performance } from 'node:perf_hooks';
import { InvalidConfigError } from '../util/errors.js';
import { ArrivalProcess, ARRIVALS } from './arrival.js';
import type { ArrivalKind } from './arrival.js';
import { ERROR_TYPES, InflightSlot, makeTarget, parseBaseUrl } from './client.js';
import { computeBenchMetrics, GapCollector } from './metrics.js';
import type { BenchMetrics, RequestRecord } from './metrics.js';
import { probeModel, probeTokenIds } from './probe.js';
import type { SseApi } from './sse.js';
import { RequestFactory } from './workload.js';
import type { PromptFormat } from './workload.js';

export interface BenchOptions {
  url: string;
  model?: string | undefined;
  api: SseApi;
  /** Closed-loop concurrency, or the cap on in-flight requests with requestRate. */
  concurrency?: number | undefined;
  /** Open-loop requests per second. */
  requestRate?: number | undefined;
  arrival: ArrivalKind;
  /** Gamma shape for arrival 'gamma'. */
  burstiness: number;
  isl: number;
  islStddev: number;
  osl: number;
  oslStddev: number;
  sharedPrefixRatio: number;
  numPrefixGroups: number;
  warmupS: number;
  durationS?: number | undefined;
  numRequests?: number | undefined;
  seed: number;
  ignoreEos: boolean;
  apiKey?: string | undefined;
  timeoutS: number;
  /** 'auto' probes the server (token ids where accepted, else text). */
  promptFormat: PromptFormat | 'auto';
}

export const DEFAULT_BENCH_OPTIONS = {
  api: 'completions' as SseApi,
  arrival: 'poisson' as ArrivalKind,
  burstiness: 1,
  isl: 1024,
  islStddev: 0,
  osl: 1024,
  oslStddev: 0,
  sharedPrefixRatio: 0,
  numPrefixGroups: 1,
  warmupS: 0,
  seed: 0,
  ignoreEos: false,
  timeoutS: 600,
  promptFormat: 'auto' as PromptFormat | 'auto',
};

export interface BenchProgress {
  phase: 'warmup' | 'measure' | 'drain';
  elapsedS: number;
  /** 0..1 when the run length is known. */
  fraction: number;
  completed: number;
  failed: number;
  inflight: number;
  /** Completed measured requests per second so far. */
  requestRate: number;
}

export interface BenchHooks {
  /** Aborting stops the run; the returned result is partial (in-flight requests are cancelled). */
  signal?: AbortSignal;
  onProgress?: (p: BenchProgress) => void;
  onNote?: (note: string) => void;
  /** Progress/in-flight sampling period; default 250 ms. */
  sampleEveryMs?: number;
}

export interface BenchResult {
  options: BenchOptions;
  model: string | null;
  promptFormat: PromptFormat;
  startedAt: string;
  partial: boolean;
  notes: string[];
  metrics: BenchMetrics;
  /** Requests completed during the warm-up (not in the metrics). */
  warmupRequests: number;
  /** In-flight samples: seconds since measured start, count. */
  inflightSeries: { t: Float64Array; v: Float64Array };
  records: RequestRecord[];
}

/** Throws InvalidConfigError naming the flag. */
export function validateBenchOptions(o: BenchOptions): void {
  const pos = (flag: string, v: number | undefined, integer: boolean): void => {
    if (v === undefined) return;
    if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) throw new InvalidConfigError(flag, `must be a ${integer ? 'positive integer' : 'number > 0'}, got ${v}`);
  };
  const nonneg = (flag: string, v: number): void => {
    if (!Number.isFinite(v) || v < 0) throw new InvalidConfigError(flag, `must be a number ≥ 0, got ${v}`);
  };
  parseBaseUrl(o.url);
  if (o.api !== 'completions' && o.api !== 'chat') throw new InvalidConfigError('--api', `must be completions or chat, got ${String(o.api)}`);
  if (!(ARRIVALS as readonly string[]).includes(o.arrival)) throw new InvalidConfigError('--arrival', `must be one of ${ARRIVALS.join(', ')}, got ${String(o.arrival)}`);
  pos('--concurrency', o.concurrency, true);
  pos('--request-rate', o.requestRate, false);
  pos('--burstiness', o.burstiness, false);
  pos('--isl', o.isl, true);
  pos('--osl', o.osl, true);
  nonneg('--isl-stddev', o.islStddev);
  nonneg('--osl-stddev', o.oslStddev);
  if (!(o.sharedPrefixRatio >= 0 && o.sharedPrefixRatio <= 1)) throw new InvalidConfigError('--shared-prefix-ratio', `must be within [0, 1], got ${o.sharedPrefixRatio}`);
  pos('--num-prefix-groups', o.numPrefixGroups, true);
  nonneg('--warmup', o.warmupS);
  pos('--duration', o.durationS, false);
  pos('--num-requests', o.numRequests, true);
  pos('--timeout', o.timeoutS, false);
  if (!Number.isInteger(o.seed)) throw new InvalidConfigError('--seed', `must be an integer, got ${o.seed}`);
  if (o.durationS !== undefined && o.numRequests !== undefined) throw new InvalidConfigError('--duration', 'give either --duration or --num-requests, not both');
  if (o.durationS === undefined && o.numRequests === undefined) throw new InvalidConfigError('--duration', 'one of --duration or --num-requests is required');
  if (o.promptFormat !== 'auto' && o.promptFormat !== 'token-ids' && o.promptFormat !== 'text') throw new InvalidConfigError('--prompt-format', `must be auto, token-ids or text, got ${String(o.promptFormat)}`);
  if (o.api === 'chat' && o.promptFormat === 'token-ids') throw new InvalidConfigError('--prompt-format', 'token-id prompts need --api completions');
}

const PATHS: Record<SseApi, string> = { completions: '/v1/completions', chat: '/v1/chat/completions' };

export async function runBench(opts: BenchOptions, hooks: BenchHooks = {}): Promise<BenchResult> {
  validateBenchOptions(opts);
  const notes: string[] = [];
  const note = (s: string): void => {
    notes.push(s);
    hooks.onNote?.(s);
  };
  const openLoop = opts.requestRate !== undefined;
  const cap = opts.concurrency ?? (openLoop ? Infinity : 1);
  const target = makeTarget(opts.url, cap, opts.apiKey);
  try {
    let model: string | null = opts.model ?? null;
    if (model === null) {
      const m = await probeModel(target);
      model = m.model;
      note(m.note);
    }
    let promptFormat: PromptFormat;
    if (opts.promptFormat !== 'auto') promptFormat = opts.promptFormat;
    else if (opts.api === 'chat') promptFormat = 'text';
    else {
      const t = await probeTokenIds(target, model);
      promptFormat = t.accepted ? 'token-ids' : 'text';
      note(t.note);
    }
    if (hooks.signal?.aborted === true) throw hooks.signal.reason ?? new Error('aborted');
    const factory = new RequestFactory({
      api: opts.api, model, promptFormat, isl: opts.isl, islStddev: opts.islStddev, osl: opts.osl, oslStddev: opts.oslStddev,
      sharedPrefixRatio: opts.sharedPrefixRatio, numPrefixGroups: opts.numPrefixGroups, ignoreEos: opts.ignoreEos, seed: opts.seed,
    });
    const startedAt = new Date().toISOString();
    const run = await drive(opts, hooks, target, factory, cap);
    return { options: opts, model, promptFormat, startedAt, notes, ...run };
  } finally {
    target.agent.destroy();
  }
}

interface DriveResult {
  partial: boolean;
  metrics: BenchMetrics;
  warmupRequests: number;
  inflightSeries: { t: Float64Array; v: Float64Array };
  records: RequestRecord[];
}

function drive(opts: BenchOptions, hooks: BenchHooks, target: ReturnType<typeof makeTarget>, factory: RequestFactory, cap: number): Promise<DriveResult> {
  return new Promise((resolve) => {
    const path = PATHS[opts.api];
    const timeoutMs = opts.timeoutS * 1000;
    const t0 = performance.now();
    const warmEnd = t0 + opts.warmupS * 1000;
    const sendEnd = opts.durationS !== undefined ? warmEnd + opts.durationS * 1000 : Infinity;
    const records: RequestRecord[] = [];
    const gaps = new GapCollector(4_000_000, opts.seed + 1);
    const pool: InflightSlot[] = [];
    const busy = new Set<InflightSlot>();
    const arrival = opts.requestRate !== undefined ? new ArrivalProcess(opts.arrival, opts.requestRate, opts.burstiness, opts.seed + 2) : null;
    const inflightT: number[] = [];
    const inflightV: number[] = [];
    let measuredSent = 0;
    let measuredDone = 0;
    let measuredFailed = 0;
    let warmupDone = 0;
    let queued = 0;
    let nextAt = t0;
    let aborted = false;
    let interruptedAt = Number.NaN;
    let settled = false;
    let arrivalTimer: NodeJS.Timeout | null = null;

    const sendingOpen = (now: number): boolean => {
      if (aborted || now >= sendEnd) return false;
      if (opts.numRequests !== undefined && now >= warmEnd && measuredSent >= opts.numRequests) return false;
      return true;
    };

    const onDone = (slot: InflightSlot): void => {
      busy.delete(slot);
      const o = slot.outcome;
      const p = slot.parser;
      const measured = slot.tag === 1;
      const usage = p.usage;
      const ok = o.errorType === null;
      const rec: RequestRecord = {
        sendMs: o.sendMs,
        endMs: o.endMs,
        firstTokenMs: p.firstContentMs,
        secondTokenMs: p.secondContentMs,
        lastTokenMs: p.lastContentMs,
        outputTokens: usage !== null && Number.isFinite(usage.completionTokens) ? usage.completionTokens : p.numContent,
        inputTokens: usage !== null && Number.isFinite(usage.promptTokens) ? usage.promptTokens : slot.intendedInputTokens,
        cachedTokens: usage !== null ? usage.cachedTokens : Number.NaN,
        chunks: p.numContent,
        errorType: o.errorType,
        errorMessage: o.errorMessage,
        measured,
      };
      records.push(rec);
      if (measured) {
        if (ok) {
          measuredDone++;
          gaps.addMany(p.gaps, p.numGaps);
        } else if (o.errorType !== ERROR_TYPES.cancelled) measuredFailed++;
      } else warmupDone++;
      pool.push(slot);
      if (aborted) return;
      const now = performance.now();
      if (arrival === null) {
        if (sendingOpen(now)) send(now);
      } else if (queued > 0) {
        if (sendingOpen(now)) {
          queued--;
          send(now);
        } else queued = 0;
      }
      maybeFinish();
    };

    const send = (_scheduledMs: number): void => {
      // Classify by the actual send time, and record that same time: a request is measured
      // exactly when it was sent after the warm-up ended.
      const sentAt = performance.now();
      const measured = sentAt >= warmEnd;
      if (measured) measuredSent++;
      const slot = pool.pop() ?? new InflightSlot(opts.api);
      const built = factory.next();
      slot.tag = measured ? 1 : 0;
      slot.intendedInputTokens = built.isl;
      busy.add(slot);
      slot.start(target, path, built.body, timeoutMs, onDone, sentAt);
    };

    const arrivalTick = (): void => {
      arrivalTimer = null;
      const now = performance.now();
      while (nextAt <= now && sendingOpen(nextAt)) {
        if (busy.size >= cap) queued++;
        else send(now);
        nextAt += (arrival as ArrivalProcess).nextGapMs();
      }
      if (sendingOpen(nextAt) && !aborted) arrivalTimer = setTimeout(arrivalTick, Math.max(0, nextAt - performance.now()));
      else maybeFinish();
    };

    const sample = (): void => {
      const now = performance.now();
      inflightT.push((now - warmEnd) / 1000);
      inflightV.push(busy.size);
      if (hooks.onProgress !== undefined) {
        const phase = now < warmEnd ? 'warmup' : sendingOpen(now) ? 'measure' : 'drain';
        let fraction = Number.NaN;
        if (opts.durationS !== undefined) fraction = Math.min(1, Math.max(0, (now - t0) / (sendEnd - t0)));
        else if (opts.numRequests !== undefined) fraction = now < warmEnd ? 0 : Math.min(1, (measuredDone + measuredFailed) / opts.numRequests);
        const el = (now - warmEnd) / 1000;
        hooks.onProgress({ phase, elapsedS: (now - t0) / 1000, fraction, completed: measuredDone, failed: measuredFailed, inflight: busy.size, requestRate: el > 0 ? measuredDone / el : 0 });
      }
    };
    const sampler = setInterval(sample, hooks.sampleEveryMs ?? 250);
    // A closed loop whose requests all outlive sendEnd must still notice the end of sending.
    const endTimer = Number.isFinite(sendEnd) ? setTimeout(() => maybeFinish(), Math.max(0, sendEnd - t0)) : null;

    const onAbort = (): void => {
      if (aborted) return;
      aborted = true;
      interruptedAt = performance.now();
      for (const s of [...busy]) s.abort(ERROR_TYPES.cancelled, 'run interrupted');
      maybeFinish();
    };

    function maybeFinish(): void {
      if (settled) return;
      if (busy.size > 0) return;
      const now = performance.now();
      if (!aborted) {
        if (arrival === null && sendingOpen(now)) return;
        if (arrival !== null && (arrivalTimer !== null || queued > 0) && sendingOpen(now)) return;
      }
      settled = true;
      clearInterval(sampler);
      if (endTimer !== null) clearTimeout(endTimer);
      if (arrivalTimer !== null) clearTimeout(arrivalTimer);
      hooks.signal?.removeEventListener('abort', onAbort);
      sample();
      const metrics = computeBenchMetrics(records, gaps, aborted ? { measuredStartMs: warmEnd, interruptedAtMs: interruptedAt } : { measuredStartMs: warmEnd });
      resolve({ partial: aborted, metrics, warmupRequests: warmupDone, inflightSeries: { t: Float64Array.from(inflightT), v: Float64Array.from(inflightV) }, records });
    }

    hooks.signal?.addEventListener('abort', onAbort, { once: true });
    if (arrival === null) {
      const n = Math.min(cap, opts.numRequests !== undefined && opts.warmupS === 0 ? opts.numRequests : cap);
      for (let i = 0; i < n && sendingOpen(performance.now()); i++) send(performance.now());
    } else {
      arrivalTick();
    }
    maybeFinish();
  });
}
