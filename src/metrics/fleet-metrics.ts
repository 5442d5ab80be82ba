/**
 * Prometheus exposition over the ranks' shared counters. prom-client formats and serves the
 * registry; each metric object reads the Float64Arrays at scrape time, so serving pays nothing
 * for metrics between scrapes. Names, types, labels and buckets follow vLLM
 * (vllm/v1/metrics/loggers.py): labels model_name + engine (dp rank) + worker_id (fleet view
 * only; a per-worker endpoint looks exactly like one vLLM server).
 */
import promClient from 'prom-client';
import type { Coordinator } from '../cluster/coordinator.js';
import { Scalar } from '../protocol/rank-counters.js';
import type { HistogramDef } from '../protocol/rank-counters.js';

type Labels = Record<string, string | number>;
interface Sample {
  value: number;
  labels: Labels;
  metricName?: string;
}
interface MetricSnapshot {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  values: Sample[];
  aggregator: 'sum';
}

/** The minimal shape prom-client's Registry needs from a metric. */
class SabMetric {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
    private readonly collect: (out: Sample[]) => void,
  ) {}
  get(): MetricSnapshot {
    const values: Sample[] = [];
    this.collect(values);
    return { name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' };
  }
  reset(): void {}
}

/** Counter index meaning "always 1" in variants(). */
const ONE = -2;

export class FleetMetrics {
  private readonly registries = new Map<number, promClient.Registry>();

  constructor(private readonly c: Coordinator) {}

  /** Prometheus text, or OpenMetrics 1.0 when `openMetrics` (the scraper's Accept asked for it). */
  render(workerIndex?: number, openMetrics = false): Promise<string> {
    const key = (workerIndex ?? -1) * 2 + (openMetrics ? 1 : 0);
    let reg = this.registries.get(key);
    if (reg === undefined) {
      reg = this.build(workerIndex);
      if (openMetrics) reg.setContentType(promClient.openMetricsContentType as never);
      this.registries.set(key, reg);
    }
    return reg.metrics();
  }

  private build(workerIndex: number | undefined): promClient.Registry {
    const c = this.c;
    const reg = new promClient.Registry();
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

    const scalar = (name: string, help: string, type: 'counter' | 'gauge', idx: number): void => {
      reg.registerMetric(
        new SabMetric(name, help, type, (out) => {
          for (let i = 0; i < ranks.length; i++) out.push({ value: f64(ranks[i] as number)[idx] as number, labels: labels[i] as Labels });
        }) as unknown as promClient.Metric,
      );
    };
    /** One series per rank and per variant: variant label value -> counter index (-1 = always 0). */
    const variants = (name: string, help: string, type: 'counter' | 'gauge', label: string, byValue: ReadonlyArray<readonly [string, number]>): void => {
      const variantLabels = labels.map((base) => byValue.map(([v]) => ({ ...base, [label]: v })));
      reg.registerMetric(
        new SabMetric(name, help, type, (out) => {
          for (let i = 0; i < ranks.length; i++) {
            const a = f64(ranks[i] as number);
            const ls = variantLabels[i] as Labels[];
            for (let k = 0; k < byValue.length; k++) {
              const idx = (byValue[k] as readonly [string, number])[1];
              out.push({ value: idx === ONE ? 1 : idx < 0 ? 0 : (a[idx] as number), labels: ls[k] as Labels });
            }
          }
        }) as unknown as promClient.Metric,
      );
    };
    const histogram = (h: HistogramDef): void => {
      reg.registerMetric(
        new SabMetric(h.name, h.help, 'histogram', (out) => {
          for (let i = 0; i < ranks.length; i++) {
            const a = f64(ranks[i] as number);
            const base = labels[i] as Labels;
            let cum = 0;
            for (let b = 0; b <= h.buckets.length; b++) {
              cum += a[h.offset + b] as number;
              const le = b === h.buckets.length ? '+Inf' : String(h.buckets[b]);
              out.push({ metricName: `${h.name}_bucket`, value: cum, labels: { ...base, le } });
            }
            out.push({ metricName: `${h.name}_sum`, value: a[h.offset + h.buckets.length + 1] as number, labels: base });
            out.push({ metricName: `${h.name}_count`, value: a[h.offset + h.buckets.length + 2] as number, labels: base });
          }
        }) as unknown as promClient.Metric,
      );
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
    reg.registerMetric(
      new SabMetric('vllm:cache_config_info', 'Information of the LLMEngine CacheConfig', 'gauge', (out) => {
        for (let i = 0; i < ranks.length; i++) {
          const l = labels[i] as Labels;
          const own: Labels = { ...cacheInfo, engine: l['engine'] as string };
          if (l['worker_id'] !== undefined) own['worker_id'] = l['worker_id'];
          out.push({ value: 1, labels: own });
        }
      }) as unknown as promClient.Metric,
    );
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
      reg.registerMetric(new SabMetric(name, help, 'counter', (out) => {
        for (let i = 0; i < ranks.length; i++) out.push({ value: 0, labels: labels[i] as Labels });
      }) as unknown as promClient.Metric);
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
    reg.registerMetric(
      new SabMetric('mockfleet_thread_cpu_info', 'Thread placement: 1 per thread, labelled with its Linux TID and pinned CPU (none = not pinned).', 'gauge', (out) => {
        const now = c.ranks();
        for (let i = 0; i < ranks.length; i++) {
          const ri = now[ranks[i] as number];
          out.push({
            value: 1,
            labels: { ...(labels[i] as Labels), thread: `rank${ranks[i] as number}`, tid: String(ri?.tid ?? 'unknown'), cpu: ri?.cpu === null || ri?.cpu === undefined ? 'none' : String(ri.cpu) },
          });
        }
        const pub = c.publisherHandle();
        if (workerIndex === undefined) {
          const fcpus = c.config.frontendCpus;
          out.push({ value: 1, labels: { model_name: c.modelName, thread: 'frontend', tid: String(process.pid), cpu: fcpus === null ? 'none' : fcpus.join(',') } });
        }
        if (workerIndex === undefined && pub !== null) {
          const cpus = c.config.publisherCpus;
          out.push({ value: 1, labels: { model_name: c.modelName, thread: 'publisher', tid: String(pub.tid ?? 'unknown'), cpu: cpus === null ? 'none' : cpus.join(',') } });
        }
      }) as unknown as promClient.Metric,
    );
    if (workerIndex === undefined) {
      const pubCounter = (name: string, help: string, pick: (s: ReturnType<PublisherHandleLike['stats']>) => number, type: 'counter' | 'gauge' = 'counter'): void => {
        reg.registerMetric(
          new SabMetric(name, help, type, (out) => {
            const pub = c.publisherHandle();
            if (pub === null) return;
            out.push({ value: pick(pub.stats()), labels: { model_name: c.modelName } });
          }) as unknown as promClient.Metric,
        );
      };
      // transport="nats": the Dynamo event plane (NATS or the embedded sink); transport="zmq": vLLM
      // KV event batches on the per-rank PUB sockets (--kv-events-config).
      const byTransport = (name: string, help: string, nats: (s: ReturnType<PublisherHandleLike['stats']>) => number, zmq: (s: ReturnType<PublisherHandleLike['stats']>) => number): void => {
        reg.registerMetric(
          new SabMetric(name, help, 'counter', (out) => {
            const pub = c.publisherHandle();
            if (pub === null) return;
            const s = pub.stats();
            out.push({ value: nats(s), labels: { model_name: c.modelName, transport: 'nats' } });
            out.push({ value: zmq(s), labels: { model_name: c.modelName, transport: 'zmq' } });
          }) as unknown as promClient.Metric,
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
