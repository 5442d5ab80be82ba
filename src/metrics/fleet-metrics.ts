/**
 * Prometheus exposition over the ranks' shared counters, written by hand and kept compressed.
 * Names, types, labels and buckets follow vLLM (vllm/v1/metrics/loggers.py): labels model_name +
 * engine (dp rank) + worker_id (fleet view only; a per-worker endpoint looks exactly like one vLLM
 * server). Output is the text format prom-client writes (HELP, TYPE, samples; labels in the order
 * given, `le` last).
 *
 * At 4096 ranks one scrape is ~1.5 M samples (~190 MiB of text), nearly all of it per-rank
 * histogram lines that do not move between scrapes. So the unit of work is a chunk: one family's
 * lines for a group of `ranksPerChunk` consecutive ranks (a family's lines stay contiguous, as
 * the text format requires). Each chunk is kept only as a compressed segment (gzip-segments.ts)
 * together with the counter values it was rendered from; a scrape re-renders and recompresses
 * only the chunks whose values changed (yielding to the event loop every few ms), and answers
 * gzip with the cached segments stitched into one member (one writev) or identity by inflating
 * them. HELP/TYPE lines are compressed once per format; the process-level series and the
 * publisher's counters are small and compressed every scrape. Figures are in README.md.
 */
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { Scalar } from '../protocol/rank-counters.js';
import type { HistogramDef } from '../protocol/rank-counters.js';
import { deflateSegmentSync, gzipMember, inflateSegmentSync } from './gzip-segments.js';
import type { Segment } from './gzip-segments.js';
import { TextWriter, fmt } from '../util/text-writer.js';

type Labels = Record<string, string | number>;

interface PublisherStatsLike {
  readonly published: number;
  readonly dropped: number;
  readonly bytes: number;
  readonly natsConnected: boolean;
  readonly zmq: { readonly published: number; readonly dropped: number; readonly bytes: number };
}

/** What the exposition reads (Coordinator satisfies it; tests pass a fake). */
export interface MetricsSource {
  readonly numRanks: number;
  readonly dataParallelSize: number;
  readonly modelName: string;
  readonly counters: readonly Float64Array[];
  readonly layout: { readonly histograms: readonly HistogramDef[] };
  readonly config: {
    readonly engineArgs: { readonly blockSize: number; readonly enablePrefixCaching: boolean; readonly numGpuBlocks: number };
    readonly frontendCpus: readonly number[] | null;
    readonly publisherCpus: readonly number[] | null;
  };
  ranks(): ReadonlyArray<{ readonly dpRank: number; readonly workerId: bigint }>;
  publisherHandle(): { stats(): PublisherStatsLike; readonly tid: number | null } | null;
}

/**
 * Sample lines per chunk: a family's chunk holds floor(this / its lines per rank) ranks (64 ranks
 * of a 25-bucket histogram, 1600 ranks of a gauge). Chosen by measurement (bench:metrics, README).
 */
export const DEFAULT_LINES_PER_CHUNK = 1600;
/** Longest stretch of rendering before the scrape yields to the event loop, ms. */
const SLICE_MS = 8;

export interface FleetMetricsOptions {
  readonly linesPerChunk?: number;
}

/** What the last scrapes cost, for tests, benchmarks and the mockfleet_metrics_* series. */
export interface ChunkStats {
  /** Chunks per scrape (all families, all groups). */
  chunks: number;
  /** Chunks rendered and compressed again, since start. */
  recompressed: number;
  /** ... in the last scrape. */
  lastRecompressed: number;
  /** Compressed bytes held by the cache (as of the end of the last scrape). */
  cacheBytes: number;
  scrapes: number;
}

type MetricType = 'counter' | 'gauge' | 'histogram';

/** A family with one block of lines per rank, cached per chunk of ranks. */
interface RankFamily {
  readonly kind: 'ranks';
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  /** Counter indices that decide a rank's lines; [] = the lines never change. */
  readonly deps: readonly number[];
  /** Sample lines per rank (sizes the chunks). */
  readonly linesPerRank: number;
  /** Writes the lines of the view's i-th rank, from its counters `a`. */
  readonly renderRank: (w: TextWriter, i: number, a: Float64Array) => void;
  /** Lines after the ranks' (process-level series), rendered every scrape. */
  readonly extra?: () => string;
}

/** A small family rendered every scrape (publisher counters). */
interface SampledFamily {
  readonly kind: 'sampled';
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly render: () => string;
}

type Family = RankFamily | SampledFamily;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** `k="v",k2="v2"` for a label object, in key order. */
function labelText(l: Labels): string {
  let s = '';
  for (const k of Object.keys(l)) s += `${s === '' ? '' : ','}${k}="${escapeLabel(String(l[k]))}"`;
  return s;
}

/**
 * HELP and TYPE lines. OpenMetrics 1.0 as prom-client writes it: counter families named without
 * `_total` in HELP/TYPE, samples unchanged (the document ends with prom-client's `# EOF`).
 */
function headerText(f: Family, openMetrics: boolean): string {
  const name = openMetrics && f.type === 'counter' ? f.name.slice(0, -'_total'.length) : f.name;
  return `# HELP ${name} ${escapeHelp(f.help)}\n# TYPE ${name} ${f.type}\n`;
}

/**
 * The serving process's own series (`process_*` CPU, memory, file descriptors and start time,
 * `nodejs_*` heap, event-loop lag and GC), which vLLM's /metrics carries too (prometheus_client's
 * default process collector) and which dashboards use for the server itself. prom-client collects
 * and formats them at scrape time; they are few, so its object-per-sample path costs nothing here.
 * One registry per format: OpenMetrics ends its document with `# EOF`, which is also the end of
 * ours.
 */
let processRegistries: { text: Registry; openMetrics: Registry<typeof Registry.OPENMETRICS_CONTENT_TYPE> } | null = null;

function processMetrics(openMetrics: boolean): Promise<string> {
  if (processRegistries === null) {
    const text = new Registry();
    const om = new Registry<typeof Registry.OPENMETRICS_CONTENT_TYPE>();
    om.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    for (const r of [text, om]) {
      collectDefaultMetrics({ register: r });
      // Gauges named `*_total` (promtool: "non-counter metrics should not have _total suffix"); the
      // per-type nodejs_active_{handles,requests,resources} gauges beside them carry the same counts.
      for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) r.removeSingleMetric(name);
    }
    processRegistries = { text, openMetrics: om };
  }
  return openMetrics ? processRegistries.openMetrics.metrics() : processRegistries.text.metrics();
}

/** One piece of a response: its compressed segment, and its text when the scrape kept it. */
interface Piece {
  readonly seg: Segment;
  readonly text: Buffer | null;
}

/**
 * One scrape's document: the cached and fresh segments in order. Immutable: a later scrape
 * replaces the cache's segments, never changes these.
 */
export class MetricsBody {
  /** Uncompressed length, bytes. */
  readonly bytes: number;

  constructor(private readonly pieces: readonly Piece[]) {
    let n = 0;
    for (const p of pieces) n += p.seg.bytes;
    this.bytes = n;
  }

  /** The gzip member (Content-Encoding: gzip), as buffers to write in order. */
  gzip(): Buffer[] {
    return gzipMember(this.pieces.map((p) => p.seg));
  }

  /** The text, piece by piece; cached pieces are inflated as they are reached. */
  *identity(): Generator<Buffer> {
    for (const p of this.pieces) {
      const text = p.text ?? inflateSegmentSync(p.seg);
      if (text.length > 0) yield text;
    }
  }

  /** The whole text (tests, the fleet merge). */
  text(): Buffer[] {
    return [...this.identity()];
  }
}

/** The chunk cache of one rank family. */
class FamilyChunks {
  readonly segments: Array<Segment | null>;
  /** deps values each chunk was rendered from: [rank within view][dep]. */
  readonly snapshot: Float64Array;

  readonly ranksPerChunk: number;

  constructor(
    readonly family: RankFamily,
    numRanks: number,
    linesPerChunk: number,
  ) {
    const ranksPerChunk = Math.max(1, Math.floor(linesPerChunk / family.linesPerRank));
    this.ranksPerChunk = ranksPerChunk;
    this.segments = new Array<Segment | null>(Math.ceil(numRanks / ranksPerChunk)).fill(null);
    this.snapshot = new Float64Array(numRanks * family.deps.length);
  }
}

/** The families and chunk caches of one view (the fleet, or one worker). */
class View {
  readonly chunks = new Map<RankFamily, FamilyChunks>();
  /** HELP/TYPE of each rank family, compressed once per format: [text, OpenMetrics]. */
  readonly headers = new Map<RankFamily, [Piece | null, Piece | null]>();
  /** Scrapes of this view run one after another (they share the cache). */
  queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly families: readonly Family[],
    readonly ranks: readonly number[],
    linesPerChunk: number,
  ) {
    for (const f of families) {
      if (f.kind !== 'ranks') continue;
      this.chunks.set(f, new FamilyChunks(f, ranks.length, linesPerChunk));
      this.headers.set(f, [null, null]);
    }
  }

  header(f: RankFamily, openMetrics: boolean): Piece {
    const both = this.headers.get(f) as [Piece | null, Piece | null];
    const i = openMetrics ? 1 : 0;
    let p = both[i];
    if (p === null || p === undefined) {
      const text = Buffer.from(headerText(f, openMetrics), 'utf8');
      p = { seg: deflateSegmentSync(text), text };
      both[i] = p;
    }
    return p;
  }
}

/** Counter index meaning "always 1" in variants(). */
const ONE = -2;

export class FleetMetrics {
  private readonly views = new Map<number, View>();
  private readonly linesPerChunk: number;
  readonly stats: ChunkStats = { chunks: 0, recompressed: 0, lastRecompressed: 0, cacheBytes: 0, scrapes: 0 };
  private cacheBytes = 0;
  private readonly writer = new TextWriter();

  constructor(
    private readonly c: MetricsSource,
    opts: FleetMetricsOptions = {},
  ) {
    const n = opts.linesPerChunk ?? DEFAULT_LINES_PER_CHUNK;
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`linesPerChunk must be a positive integer, got ${n}`);
    this.linesPerChunk = n;
  }

  /**
   * One scrape: brings the chunk cache up to date and returns the document. `keepText` keeps the
   * text of what was rendered in this scrape (an identity response needs it; gzip does not).
   */
  body(workerIndex?: number, openMetrics = false, keepText = false): Promise<MetricsBody> {
    const key = workerIndex ?? -1;
    let view = this.views.get(key);
    if (view === undefined) {
      view = new View(this.build(workerIndex), this.viewRanks(workerIndex), this.linesPerChunk);
      this.views.set(key, view);
    }
    const v = view;
    const run = v.queue.then(() => this.scrape(v, openMetrics, keepText));
    v.queue = run.catch(() => undefined);
    return run;
  }

  /** Prometheus text (OpenMetrics 1.0 when `openMetrics`), as consecutive UTF-8 chunks. */
  async render(workerIndex?: number, openMetrics = false): Promise<Buffer[]> {
    return (await this.body(workerIndex, openMetrics, true)).text();
  }

  private async scrape(view: View, openMetrics: boolean, keepText: boolean): Promise<MetricsBody> {
    const pieces: Piece[] = [];
    let pending = '';
    let recompressed = 0;
    let chunks = 0;
    let sliceStart = performance.now();
    const flushPending = (): void => {
      if (pending === '') return;
      const text = Buffer.from(pending, 'utf8');
      pending = '';
      pieces.push({ seg: deflateSegmentSync(text), text: keepText ? text : null });
    };
    const counters = this.c.counters;
    for (const f of view.families) {
      if (f.kind === 'sampled') {
        pending += headerText(f, openMetrics) + f.render();
        continue;
      }
      const fc = view.chunks.get(f) as FamilyChunks;
      const deps = f.deps;
      const nd = deps.length;
      const snap = fc.snapshot;
      const per = fc.ranksPerChunk;
      flushPending();
      const header = view.header(f, openMetrics);
      pieces.push(keepText ? header : { seg: header.seg, text: null });
      for (let g = 0; g < fc.segments.length; g++) {
        chunks++;
        const lo = g * per;
        const hi = Math.min(view.ranks.length, lo + per);
        // Record the values first, render after: a value that moves in between makes the text
        // newer than the snapshot, so the chunk is simply rendered again next time.
        let dirty = fc.segments[g] === null;
        for (let i = lo; i < hi; i++) {
          const a = counters[view.ranks[i] as number] as Float64Array;
          for (let d = 0, k = i * nd; d < nd; d++, k++) {
            const v = a[deps[d] as number] as number;
            if (snap[k] !== v) {
              snap[k] = v;
              dirty = true;
            }
          }
        }
        const cached = fc.segments[g];
        if (!dirty && cached !== null && cached !== undefined) {
          pieces.push({ seg: cached, text: null });
          continue;
        }
        const w = this.writer;
        w.reset(cached?.bytes ?? 0);
        for (let i = lo; i < hi; i++) f.renderRank(w, i, counters[view.ranks[i] as number] as Float64Array);
        recompressed++;
        this.stats.recompressed++;
        const seg = deflateSegmentSync(w.view());
        fc.segments[g] = seg;
        this.cacheBytes += seg.deflated.length - (cached?.deflated.length ?? 0);
        pieces.push({ seg, text: keepText ? w.copy() : null });
        if (performance.now() - sliceStart > SLICE_MS) {
          await yieldTurn();
          sliceStart = performance.now();
        }
      }
      if (f.extra !== undefined) pending += f.extra();
    }
    pending += await processMetrics(openMetrics);
    flushPending();
    const body = new MetricsBody(pieces);
    this.stats.chunks = chunks;
    this.stats.lastRecompressed = recompressed;
    this.stats.cacheBytes = this.cacheBytes;
    this.stats.scrapes++;
    return body;
  }

  private viewRanks(workerIndex: number | undefined): number[] {
    const ranks: number[] = [];
    for (let r = 0; r < this.c.numRanks; r++) {
      if (workerIndex === undefined || Math.floor(r / this.c.dataParallelSize) === workerIndex) ranks.push(r);
    }
    return ranks;
  }

  private build(workerIndex: number | undefined): Family[] {
    const c = this.c;
    const families: Family[] = [];
    const add = (f: Family): void => {
      // Counter samples are written under the family name; OpenMetrics needs it to end in _total.
      if (f.type === 'counter' && !f.name.endsWith('_total')) throw new Error(`counter ${f.name} must end in _total`);
      families.push(f);
    };
    const ranks = this.viewRanks(workerIndex);
    const info = c.ranks();
    const labels: Labels[] = ranks.map((r) => {
      const ri = info[r];
      const l: Labels = { model_name: c.modelName, engine: String(ri?.dpRank ?? 0) };
      if (workerIndex === undefined) l['worker_id'] = String(ri?.workerId ?? 0n);
      return l;
    });
    /** `{labels}` of each rank, rendered once. */
    const braced = labels.map((l) => `{${labelText(l)}}`);
    /** The same inside the braces, as bytes: copied into every line of the rank. */
    const labelBytes = labels.map((l) => Buffer.from(labelText(l), 'utf8'));
    const enc = (s: string): Buffer => Buffer.from(s, 'utf8');
    const CLOSE = enc('} ');

    const scalar = (name: string, help: string, type: 'counter' | 'gauge', idx: number): void => {
      const open = enc(`${name}{`);
      add({
        kind: 'ranks',
        name,
        help,
        type,
        deps: [idx],
        linesPerRank: 1,
        renderRank: (w, i, a) => {
          w.bytes(open);
          w.bytes(labelBytes[i] as Buffer);
          w.bytes(CLOSE);
          w.value(a[idx] as number);
        },
      });
    };
    /** One series per rank and per variant: variant label value -> counter index (-1 = always 0, ONE = always 1). */
    const variants = (name: string, help: string, type: 'counter' | 'gauge', label: string, byValue: ReadonlyArray<readonly [string, number]>): void => {
      const open = enc(`${name}{`);
      const closes = byValue.map(([v]) => enc(`,${label}="${escapeLabel(v)}"} `));
      const idxs = byValue.map(([, idx]) => idx);
      add({
        kind: 'ranks',
        name,
        help,
        type,
        deps: idxs.filter((idx) => idx >= 0),
        linesPerRank: idxs.length,
        renderRank: (w, i, a) => {
          const lb = labelBytes[i] as Buffer;
          for (let k = 0; k < idxs.length; k++) {
            const idx = idxs[k] as number;
            w.bytes(open);
            w.bytes(lb);
            w.bytes(closes[k] as Buffer);
            w.value(idx === ONE ? 1 : idx < 0 ? 0 : (a[idx] as number));
          }
        },
      });
    };
    /** Lines that never change (info series, families that count nothing here): rendered once. */
    const fixed = (name: string, help: string, type: 'counter' | 'gauge', line: (i: number) => string): void => {
      add({ kind: 'ranks', name, help, type, deps: [], linesPerRank: 1, renderRank: (w, i) => w.str(line(i)) });
    };
    const histogram = (h: HistogramDef): void => {
      const nb = h.buckets.length;
      const bucketOpen = enc(`${h.name}_bucket{`);
      const leClose = [...h.buckets.map((b) => enc(`,le="${String(b)}"} `)), enc(',le="+Inf"} ')];
      const sumOpen = enc(`${h.name}_sum{`);
      const countOpen = enc(`${h.name}_count{`);
      const sumIdx = h.offset + nb + 1;
      const countIdx = h.offset + nb + 2;
      add({
        kind: 'ranks',
        name: h.name,
        help: h.help,
        type: 'histogram',
        // Every observation bumps count and sum, so unchanged (count, sum) = unchanged buckets.
        deps: [sumIdx, countIdx],
        linesPerRank: nb + 3,
        renderRank: (w, i, a) => {
          const lb = labelBytes[i] as Buffer;
          let cum = 0;
          for (let b = 0; b <= nb; b++) {
            cum += a[h.offset + b] as number;
            w.bytes(bucketOpen);
            w.bytes(lb);
            w.bytes(leClose[b] as Buffer);
            w.value(cum);
          }
          w.bytes(sumOpen);
          w.bytes(lb);
          w.bytes(CLOSE);
          w.value(a[sumIdx] as number);
          w.bytes(countOpen);
          w.bytes(lb);
          w.bytes(CLOSE);
          w.value(a[countIdx] as number);
        },
      });
    };

    scalar('vllm:num_requests_running', 'Number of requests in model execution batches.', 'gauge', Scalar.running);
    scalar('vllm:num_requests_waiting', 'Number of requests waiting to be processed.', 'gauge', Scalar.waiting);
    scalar('vllm:kv_cache_usage_perc', 'KV-cache usage. 1 means 100 percent usage.', 'gauge', Scalar.kvUsage);
    const args = c.config.engineArgs;
    // vLLM labels this info gauge with every CacheConfig field (CacheConfig.metrics_info()) plus
    // engine, and no model_name; kv_cache_size_tokens is the capacity newer consumers read.
    const cacheInfo: Labels = {
      block_size: String(args.blockSize),
      cache_dtype: 'auto',
      calculate_kv_scales: 'False',
      cpu_offload_gb: '0',
      enable_prefix_caching: args.enablePrefixCaching ? 'True' : 'False',
      gpu_memory_utilization: '0.9',
      is_attention_free: 'False',
      kv_cache_memory_bytes: 'None',
      kv_cache_size_tokens: String(args.numGpuBlocks * args.blockSize),
      kv_sharing_fast_prefill: 'False',
      mamba_cache_dtype: 'auto',
      mamba_page_size_padded: 'None',
      mamba_ssm_cache_dtype: 'auto',
      num_cpu_blocks: 'None',
      num_gpu_blocks: String(args.numGpuBlocks),
      num_gpu_blocks_override: String(args.numGpuBlocks),
      prefix_caching_hash_algo: 'xxhash',
      sliding_window: 'None',
    };
    fixed('vllm:cache_config_info', 'Information of the LLMEngine CacheConfig', 'gauge', (i) => {
      const l = labels[i] as Labels;
      const own: Labels = { ...cacheInfo, engine: l['engine'] as string };
      if (l['worker_id'] !== undefined) own['worker_id'] = l['worker_id'];
      return `vllm:cache_config_info{${labelText(own)}} 1\n`;
    });
    scalar('vllm:prompt_tokens_total', 'Number of prefill tokens processed.', 'counter', Scalar.promptTokens);
    scalar('vllm:generation_tokens_total', 'Number of generation tokens processed.', 'counter', Scalar.generationTokens);
    scalar('vllm:num_preemptions_total', 'Cumulative number of preemption from the engine.', 'counter', Scalar.preemptions);
    scalar('vllm:prefix_cache_queries_total', 'Prefix cache queries, in terms of number of queried tokens.', 'counter', Scalar.prefixQueries);
    scalar('vllm:prefix_cache_hits_total', 'Prefix cache hits, in terms of number of cached tokens.', 'counter', Scalar.prefixHits);
    variants('vllm:request_success_total', 'Count of successfully processed requests.', 'counter', 'finished_reason', [
      ['stop', Scalar.successStop],
      ['length', Scalar.successLength],
      ['abort', Scalar.successAbort],
      ['error', Scalar.successError],
    ]);
    // No KV connector transfers in mockfleet: external_kv_transfer stays 0 (as in vLLM without one).
    variants('vllm:prompt_tokens_by_source_total', 'Number of prompt tokens by source.', 'counter', 'source', [
      ['local_compute', Scalar.promptTokensLocalCompute],
      ['local_cache_hit', Scalar.promptTokensLocalCacheHit],
      ['external_kv_transfer', -1],
    ]);
    scalar('vllm:prompt_tokens_cached_total', 'Number of cached prompt tokens (local + external).', 'counter', Scalar.promptTokensCached);
    scalar('vllm:prompt_tokens_recomputed_total', 'Number of cached tokens recomputed for forward pass.', 'counter', Scalar.promptTokensRecomputed);
    // Ranks never sleep (no /sleep endpoint); the family exists as in every vLLM.
    variants('vllm:engine_sleep_state', 'Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.', 'gauge', 'sleep_state', [
      ['awake', ONE],
      ['weights_offloaded', -1],
      ['discard_all', -1],
    ]);
    // No KV connector and no multi-modal inputs: these count nothing, like vLLM without them.
    for (const [name, help] of [
      ['vllm:external_prefix_cache_queries_total', 'External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.'],
      ['vllm:external_prefix_cache_hits_total', 'External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.'],
      ['vllm:mm_cache_queries_total', 'Multi-modal cache queries, in terms of number of queried items.'],
      ['vllm:mm_cache_hits_total', 'Multi-modal cache hits, in terms of number of cached items.'],
    ] as const) {
      fixed(name, help, 'counter', (i) => `${name}${braced[i] as string} 0\n`);
    }
    for (const h of c.layout.histograms) histogram(h);

    scalar('mockfleet_passes_total', 'Forward passes run by the rank.', 'counter', Scalar.passes);
    scalar('mockfleet_rank_restarts_total', 'Times the rank thread died and was started again.', 'counter', Scalar.restarts);
    scalar('mockfleet_fpm_heartbeats_total', 'Zeroed forward-pass-metrics heartbeats sent while idle.', 'counter', Scalar.heartbeats);
    scalar('mockfleet_rank_event_drops_total', 'Event records the rank could not put in its event ring.', 'counter', Scalar.eventDrops);
    scalar('mockfleet_kv_active_blocks', 'KV blocks referenced by running requests.', 'gauge', Scalar.activeBlocks);
    scalar('mockfleet_kv_inactive_blocks', 'Cached KV blocks no request uses (reusable, evicted oldest first).', 'gauge', Scalar.inactiveBlocks);
    variants('mockfleet_ring_high_water_bytes', 'Highest fill of each rank ring, bytes.', 'gauge', 'ring', [
      ['inbox', Scalar.inboxRingHighWater],
      ['output', Scalar.outputRingHighWater],
      ['events', Scalar.eventRingHighWater],
    ]);
    const threadInfo = 'mockfleet_thread_cpu_info';
    add({
      kind: 'ranks',
      name: threadInfo,
      help: 'Thread placement: 1 per thread, labelled with its Linux TID and pinned CPU (none = not pinned).',
      type: 'gauge',
      // A rank's line changes only when its thread is replaced (new TID) or pinned elsewhere.
      deps: [Scalar.tid, Scalar.cpu],
      linesPerRank: 1,
      renderRank: (w, i, a) => {
        const tid = a[Scalar.tid] as number;
        const cpu = a[Scalar.cpu] as number;
        w.str(`${threadInfo}{${labelText({ ...(labels[i] as Labels), thread: `rank${ranks[i] as number}`, tid: tid > 0 ? String(tid) : 'unknown', cpu: cpu >= 0 ? String(cpu) : 'none' })}} 1\n`);
      },
      extra: () => {
        if (workerIndex !== undefined) return '';
        const fcpus = c.config.frontendCpus;
        let s = `${threadInfo}{${labelText({ model_name: c.modelName, thread: 'frontend', tid: String(process.pid), cpu: fcpus === null ? 'none' : fcpus.join(',') })}} 1\n`;
        const pub = c.publisherHandle();
        if (pub !== null) {
          const cpus = c.config.publisherCpus;
          s += `${threadInfo}{${labelText({ model_name: c.modelName, thread: 'publisher', tid: String(pub.tid ?? 'unknown'), cpu: cpus === null ? 'none' : cpus.join(',') })}} 1\n`;
        }
        return s;
      },
    });
    if (workerIndex === undefined) {
      const sampled = (name: string, help: string, type: 'counter' | 'gauge', lines: (s: PublisherStatsLike) => ReadonlyArray<readonly [Labels, number]>): void => {
        add({
          kind: 'sampled',
          name,
          help,
          type,
          render: () => {
            const pub = c.publisherHandle();
            if (pub === null) return '';
            let s = '';
            for (const [l, v] of lines(pub.stats())) s += `${name}{${labelText(l)}} ${fmt(v)}\n`;
            return s;
          },
        });
      };
      // transport="nats": the Dynamo event plane (NATS or the embedded sink); transport="zmq": vLLM
      // KV event batches on the per-rank PUB sockets (--kv-events-config).
      const nats = { model_name: c.modelName, transport: 'nats' };
      const zmq = { model_name: c.modelName, transport: 'zmq' };
      sampled('mockfleet_publisher_published_total', 'Messages the shared publisher sent.', 'counter', (s) => [[nats, s.published], [zmq, s.zmq.published]]);
      sampled('mockfleet_publisher_dropped_total', 'Messages the shared publisher could not deliver (counted, never silent).', 'counter', (s) => [[nats, s.dropped], [zmq, s.zmq.dropped]]);
      sampled('mockfleet_publisher_bytes_total', 'Payload bytes the shared publisher sent.', 'counter', (s) => [[nats, s.bytes], [zmq, s.zmq.bytes]]);
      sampled('mockfleet_publisher_nats_connected', '1 when the publisher is connected to NATS.', 'gauge', (s) => [[{ model_name: c.modelName }, s.natsConnected ? 1 : 0]]);
      // The exposition's own cost: chunks recompressed up to this scrape (every rank family comes
      // before these lines), cache size as of the previous scrape.
      const own = (name: string, help: string, type: 'counter' | 'gauge', value: () => number): void => {
        add({ kind: 'sampled', name, help, type, render: () => `${name}{${labelText({ model_name: c.modelName })}} ${fmt(value())}\n` });
      };
      own('mockfleet_metrics_chunks_recompressed_total', 'Chunks of /metrics (one family, a group of ranks) rendered and compressed again because their ranks changed.', 'counter', () => this.stats.recompressed);
      own('mockfleet_metrics_cache_bytes', 'Compressed /metrics chunks kept between scrapes, bytes.', 'gauge', () => this.stats.cacheBytes);
    }
    return families;
  }
}
