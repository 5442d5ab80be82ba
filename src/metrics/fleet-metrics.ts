/**
 * Prometheus exposition over the ranks' shared counters, written by hand: each family reads the
 * Float64Arrays at scrape time, so serving pays nothing for metrics between scrapes. Names,
 * types, labels and buckets follow vLLM (vllm/v1/metrics/loggers.py): labels model_name + engine
 * (dp rank) + worker_id (fleet view only; a per-worker endpoint looks exactly like one vLLM
 * server). Output is the text format prom-client writes (HELP, TYPE, samples; labels in the
 * order given, `le` last), but with each rank's label set and each bucket's `le` suffix
 * rendered once, and each rank's histogram text kept as bytes until that histogram's count or
 * sum moves: at 4096 ranks one scrape is ~1.3 M samples (~140 MiB), which prom-client's
 * object-per-sample path formatted in tens of seconds; an idle fleet now costs a copy of the
 * cached bytes plus the scalar lines (numbers in bench/README.md). prom-client still collects and
 * formats the process's own series (`processMetrics`), which are few.
 */
import type { Coordinator } from '../cluster/coordinator.js';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { Scalar } from '../protocol/rank-counters.js';
import type { HistogramDef } from '../protocol/rank-counters.js';

type Labels = Record<string, string | number>;

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  /** Appends this family's sample lines (text, or bytes kept from an earlier scrape). */
  readonly write: (out: Array<string | Buffer>) => void;
}

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

/** Sample value as prom-client writes it. */
function fmt(v: number): string {
  if (Number.isNaN(v)) return 'Nan';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return `${v}`;
}

/** The family registry of one view (fleet or one worker), in exposition order. */
class Exposition {
  private readonly families: Family[] = [];

  registerMetric(f: Family): void {
    // Counter samples are written under the family name; OpenMetrics needs it to end in _total.
    if (f.type === 'counter' && !f.name.endsWith('_total')) throw new Error(`counter ${f.name} must end in _total`);
    this.families.push(f);
  }

  /**
   * Prometheus text, or OpenMetrics 1.0 (as prom-client writes it: counter families named without
   * `_total` in HELP/TYPE, samples unchanged; the caller ends the document with `# EOF`).
   */
  metrics(openMetrics: boolean): Buffer[] {
    const out: Array<string | Buffer> = [];
    for (const f of this.families) {
      const name = openMetrics && f.type === 'counter' ? f.name.slice(0, -'_total'.length) : f.name;
      out.push(`# HELP ${name} ${escapeHelp(f.help)}\n# TYPE ${name} ${f.type}\n`);
      f.write(out);
    }
    // Runs of text become one Buffer each; cached Buffers go out as they are (no copy of the whole).
    const parts: Buffer[] = [];
    let run: string[] = [];
    for (const p of out) {
      if (typeof p === 'string') run.push(p);
      else {
        if (run.length > 0) parts.push(Buffer.from(run.join(''), 'utf8'));
        run = [];
        parts.push(p);
      }
    }
    if (run.length > 0) parts.push(Buffer.from(run.join(''), 'utf8'));
    return parts;
  }
}

/** A family whose samples are (labels, value) pairs computed at scrape time (info and publisher series). */
function sampled(name: string, help: string, type: 'counter' | 'gauge', collect: (push: (value: number, labels: Labels) => void) => void): Family {
  return {
    name,
    help,
    type,
    write: (out) => collect((value, labels) => out.push(`${name}{${labelText(labels)}} ${fmt(value)}\n`)),
  };
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

/** Counter index meaning "always 1" in variants(). */
const ONE = -2;

export class FleetMetrics {
  private readonly registries = new Map<number, Exposition>();

  constructor(private readonly c: Coordinator) {}

  /** Prometheus text, or OpenMetrics 1.0 when `openMetrics` (the scraper's Accept asked for it). */
  async render(workerIndex?: number, openMetrics = false): Promise<Buffer[]> {
    const key = workerIndex ?? -1;
    let reg = this.registries.get(key);
    if (reg === undefined) {
      reg = this.build(workerIndex);
      this.registries.set(key, reg);
    }
    const parts = reg.metrics(openMetrics);
    parts.push(Buffer.from(await processMetrics(openMetrics), 'utf8'));
    return parts;
  }

  private build(workerIndex: number | undefined): Exposition {
    const c = this.c;
    const reg = new Exposition();
    const ranks: number[] = [];
    for (let r = 0; r < c.numRanks; r++) {
      if (workerIndex === undefined || Math.floor(r / c.dataParallelSize) === workerIndex) ranks.push(r);
    }
    const info = c.ranks();
    const labels: Labels[] = ranks.map((r) => {
      const ri = info[r];
      const l: Labels = { model_name: c.modelName, engine: String(ri?.dpRank ?? 0) };
      if (workerIndex === undefined) l['worker_id'] = String(ri?.workerId ?? 0n);
      return l;
    });
    const f64 = (r: number): Float64Array => c.counters[r] as Float64Array;
    /** `{labels}` of each rank, rendered once. */
    const braced = labels.map((l) => `{${labelText(l)}}`);

    const scalar = (name: string, help: string, type: 'counter' | 'gauge', idx: number): void => {
      const prefixes = braced.map((b) => `${name}${b} `);
      reg.registerMetric({
        name,
        help,
        type,
        write: (out) => {
          for (let i = 0; i < ranks.length; i++) out.push(`${prefixes[i] as string}${fmt(f64(ranks[i] as number)[idx] as number)}\n`);
        },
      });
    };
    /** One series per rank and per variant: variant label value -> counter index (-1 = always 0). */
    const variants = (name: string, help: string, type: 'counter' | 'gauge', label: string, byValue: ReadonlyArray<readonly [string, number]>): void => {
      const prefixes = labels.map((base) => byValue.map(([v]) => `${name}{${labelText({ ...base, [label]: v })}} `));
      reg.registerMetric({
        name,
        help,
        type,
        write: (out) => {
          for (let i = 0; i < ranks.length; i++) {
            const a = f64(ranks[i] as number);
            const ps = prefixes[i] as string[];
            for (let k = 0; k < byValue.length; k++) {
              const idx = (byValue[k] as readonly [string, number])[1];
              out.push(`${ps[k] as string}${fmt(idx === ONE ? 1 : idx < 0 ? 0 : (a[idx] as number))}\n`);
            }
          }
        },
      });
    };
    const histogram = (h: HistogramDef): void => {
      const nb = h.buckets.length;
      // Per rank: `name_bucket{labels,le="` once; per bucket: `x"} `.
      const bucketPrefix = labels.map((l) => `${h.name}_bucket{${labelText(l)},le="`);
      const leSuffix = [...h.buckets.map((b) => `${String(b)}"} `), '+Inf"} '];
      const sumPrefix = braced.map((b) => `${h.name}_sum${b} `);
      const countPrefix = braced.map((b) => `${h.name}_count${b} `);
      // Every observation bumps count and sum, so unchanged (count, sum) = unchanged buckets.
      const cached: Array<Buffer | null> = ranks.map(() => null);
      const cachedCount = new Float64Array(ranks.length);
      const cachedSum = new Float64Array(ranks.length);
      reg.registerMetric({
        name: h.name,
        help: h.help,
        type: 'histogram',
        write: (out) => {
          for (let i = 0; i < ranks.length; i++) {
            const a = f64(ranks[i] as number);
            const sum = a[h.offset + nb + 1] as number;
            const count = a[h.offset + nb + 2] as number;
            const hit = cached[i];
            if (hit !== null && hit !== undefined && cachedCount[i] === count && cachedSum[i] === sum) {
              out.push(hit);
              continue;
            }
            const bp = bucketPrefix[i] as string;
            let cum = 0;
            let text = '';
            for (let b = 0; b <= nb; b++) {
              cum += a[h.offset + b] as number;
              text += `${bp}${leSuffix[b] as string}${fmt(cum)}\n`;
            }
            const bytes = Buffer.from(`${text}${sumPrefix[i] as string}${fmt(sum)}\n${countPrefix[i] as string}${fmt(count)}\n`, 'utf8');
            cached[i] = bytes;
            cachedCount[i] = count;
            cachedSum[i] = sum;
            out.push(bytes);
          }
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
    // Static: rendered once (18 labels × thousands of ranks was a large part of a scrape).
    const cacheInfoLines = labels
      .map((l) => {
        const own: Labels = { ...cacheInfo, engine: l['engine'] as string };
        if (l['worker_id'] !== undefined) own['worker_id'] = l['worker_id'];
        return `vllm:cache_config_info{${labelText(own)}} 1\n`;
      })
      .join('');
    reg.registerMetric({ name: 'vllm:cache_config_info', help: 'Information of the LLMEngine CacheConfig', type: 'gauge', write: (out) => out.push(cacheInfoLines) });
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
      const zeros = braced.map((b) => `${name}${b} 0\n`).join('');
      reg.registerMetric({ name, help, type: 'counter', write: (out) => out.push(zeros) });
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
    const placementLine: Array<string | undefined> = ranks.map(() => undefined);
    const placementTid = new Float64Array(ranks.length);
    const placementCpu = new Float64Array(ranks.length);
    const threadInfo = 'mockfleet_thread_cpu_info';
    reg.registerMetric({
      name: threadInfo,
      help: 'Thread placement: 1 per thread, labelled with its Linux TID and pinned CPU (none = not pinned).',
      type: 'gauge',
      write: (out) => {
        // A rank's line changes only when its thread is replaced (new TID) or pinned elsewhere.
        for (let i = 0; i < ranks.length; i++) {
          const a = f64(ranks[i] as number);
          const tid = a[Scalar.tid] as number;
          const cpu = a[Scalar.cpu] as number;
          if (placementLine[i] === undefined || placementTid[i] !== tid || placementCpu[i] !== cpu) {
            placementTid[i] = tid;
            placementCpu[i] = cpu;
            placementLine[i] = `mockfleet_thread_cpu_info{${labelText({ ...(labels[i] as Labels), thread: `rank${ranks[i] as number}`, tid: tid > 0 ? String(tid) : 'unknown', cpu: cpu >= 0 ? String(cpu) : 'none' })}} 1\n`;
          }
          out.push(placementLine[i] as string);
        }
        const pub = c.publisherHandle();
        if (workerIndex === undefined) {
          const fcpus = c.config.frontendCpus;
          out.push(`${threadInfo}{${labelText({ model_name: c.modelName, thread: 'frontend', tid: String(process.pid), cpu: fcpus === null ? 'none' : fcpus.join(',') })}} 1\n`);
        }
        if (workerIndex === undefined && pub !== null) {
          const cpus = c.config.publisherCpus;
          out.push(`${threadInfo}{${labelText({ model_name: c.modelName, thread: 'publisher', tid: String(pub.tid ?? 'unknown'), cpu: cpus === null ? 'none' : cpus.join(',') })}} 1\n`);
        }
      },
    });
    if (workerIndex === undefined) {
      const pubCounter = (name: string, help: string, pick: (s: ReturnType<PublisherHandleLike['stats']>) => number, type: 'counter' | 'gauge' = 'counter'): void => {
        reg.registerMetric(
          sampled(name, help, type, (push) => {
            const pub = c.publisherHandle();
            if (pub === null) return;
            push(pick(pub.stats()), { model_name: c.modelName });
          }),
        );
      };
      // transport="nats": the Dynamo event plane (NATS or the embedded sink); transport="zmq": vLLM
      // KV event batches on the per-rank PUB sockets (--kv-events-config).
      const byTransport = (name: string, help: string, nats: (s: ReturnType<PublisherHandleLike['stats']>) => number, zmq: (s: ReturnType<PublisherHandleLike['stats']>) => number): void => {
        reg.registerMetric(
          sampled(name, help, 'counter', (push) => {
            const pub = c.publisherHandle();
            if (pub === null) return;
            const s = pub.stats();
            push(nats(s), { model_name: c.modelName, transport: 'nats' });
            push(zmq(s), { model_name: c.modelName, transport: 'zmq' });
          }),
        );
      };
      byTransport('mockfleet_publisher_published_total', 'Messages the shared publisher sent.', (s) => s.published, (s) => s.zmq.published);
      byTransport('mockfleet_publisher_dropped_total', 'Messages the shared publisher could not deliver (counted, never silent).', (s) => s.dropped, (s) => s.zmq.dropped);
      byTransport('mockfleet_publisher_bytes_total', 'Payload bytes the shared publisher sent.', (s) => s.bytes, (s) => s.zmq.bytes);
      pubCounter('mockfleet_publisher_nats_connected', '1 when the publisher is connected to NATS.', (s) => (s.natsConnected ? 1 : 0), 'gauge');
    }
    return reg;
  }
}

interface PublisherHandleLike {
  stats(): { published: number; dropped: number; bytes: number; natsConnected: boolean; zmq: { published: number; dropped: number; bytes: number } };
}
