/**
 * The dashboard's data model: samples the fleet once per second into History and builds the
 * JSON documents the page consumes. Nothing here touches timers or sockets (see hub.ts and
 * service.ts), so tests drive it with a fake source and a hand-set clock.
 *
 *   init  (once per connection): static facts, thread placement, the whole history, latest tick
 *   tick  (once per tick, shared by every connection): per-rank tiles, live window figures, the
 *         newest history samples (the page de-duplicates them by seq), placement when it changed
 */
import { Scalar } from '../protocol/rank-counters.js';
import type { DashboardSource } from './source.js';
import type { PublisherStats } from '../transport/stats.js';
import { FleetTotals, History, NUM_POINT, POINT_FIELDS, Pt, Tot, round, windowFigures } from './fleet-state.js';
import type { FleetGauges } from './fleet-state.js';

export interface DashboardModelOptions {
  /** Samples kept (one per sampleMs); default 300 = 5 minutes of 1 s samples. */
  readonly historySamples?: number;
  readonly sampleMs?: number;
  /** Window for rates and percentiles, seconds. */
  readonly windowS?: number;
  /** Epoch milliseconds. */
  readonly now?: () => number;
}

export const DEFAULT_HISTORY_SAMPLES = 300;
export const DEFAULT_SAMPLE_MS = 1000;
export const DEFAULT_WINDOW_S = 10;

export interface PlacementDoc {
  readonly ranks: ReadonlyArray<readonly [rank: number, worker: number, dpRank: number, cpu: number | null, tid: number | null]>;
  readonly publisher: { readonly tid: number | null; readonly cpus: string | null } | null;
  readonly pid: number;
}

export class DashboardModel {
  readonly historySamples: number;
  readonly sampleMs: number;
  readonly windowS: number;
  readonly history: History;
  private readonly totals: FleetTotals;
  private readonly now: () => number;
  private readonly gauges: FleetGauges = { running: 0, waiting: 0, kvMean: 0, kvMax: 0 };
  private readonly scratch: Float64Array;
  private readonly point = new Float64Array(NUM_POINT);
  private readonly startedMs: number;
  private placementKey = '';
  private tickSeq = 0;
  /** Time spent in sample() and tick(), for the cost figures. */
  readonly cost = { samples: 0, sampleMs: 0, ticks: 0, tickMs: 0, lastTickBytes: 0 };

  constructor(
    readonly source: DashboardSource,
    opts: DashboardModelOptions = {},
  ) {
    this.historySamples = opts.historySamples ?? DEFAULT_HISTORY_SAMPLES;
    this.sampleMs = opts.sampleMs ?? DEFAULT_SAMPLE_MS;
    this.windowS = opts.windowS ?? DEFAULT_WINDOW_S;
    this.now = opts.now ?? Date.now;
    this.totals = new FleetTotals(source);
    this.history = new History(this.historySamples, this.totals.width);
    this.scratch = new Float64Array(Math.max(source.layout.ttft.buckets.length, source.layout.itl.buckets.length) + 1);
    this.startedMs = this.now();
  }

  /** Take one history sample (the 1 s sampler calls this). */
  sample(): void {
    const t0 = performance.now();
    const tMs = this.now();
    const tot = this.totals.read();
    this.totals.gauges(this.gauges);
    const pastSlot = this.history.slotAtOrBefore(tMs - this.windowS * 1000);
    const slot = this.history.push(tMs, tot);
    if (pastSlot >= 0) {
      const dtS = (tMs - this.history.timeAt(pastSlot)) / 1000;
      windowFigures(this.source.layout, this.totals, tot, 0, this.history.totalsData, pastSlot * this.history.width, dtS, this.gauges, this.scratch, this.point);
    } else {
      this.point.fill(NaN);
      this.point[Pt.running] = this.gauges.running;
      this.point[Pt.waiting] = this.gauges.waiting;
      this.point[Pt.kvMean] = this.gauges.kvMean;
      this.point[Pt.kvMax] = this.gauges.kvMax;
    }
    this.history.setPoint(slot, this.point);
    this.cost.samples++;
    this.cost.sampleMs += performance.now() - t0;
  }

  /** The live figures: current counters against the newest sample at least windowS old. */
  private liveFigures(tMs: number): { tot: Float64Array; dtS: number } {
    const tot = this.totals.read();
    this.totals.gauges(this.gauges);
    const pastSlot = this.history.slotAtOrBefore(tMs - this.windowS * 1000);
    if (pastSlot < 0) {
      this.point.fill(NaN);
      return { tot, dtS: 0 };
    }
    const dtS = (tMs - this.history.timeAt(pastSlot)) / 1000;
    windowFigures(this.source.layout, this.totals, tot, 0, this.history.totalsData, pastSlot * this.history.width, dtS, this.gauges, this.scratch, this.point);
    return { tot, dtS };
  }

  placement(): PlacementDoc {
    const pub = this.source.publisherHandle();
    return {
      ranks: this.source.ranks().map((r) => [r.rank, r.workerIndex, r.dpRank, r.cpu, r.tid] as const),
      publisher: pub === null ? null : { tid: pub.tid, cpus: pub.pinnedCpus },
      pid: process.pid,
    };
  }

  private natsState(stats: PublisherStats | null): 'off' | 'connected' | 'disconnected' | 'no publisher' {
    if (stats === null) return 'no publisher';
    if (this.source.config.natsUrl === null) return 'off';
    return stats.natsConnected ? 'connected' : 'disconnected';
  }

  /** One tick document (JSON). `samplesBack` newest history samples ride along. */
  tick(samplesBack: number): string {
    const t0 = performance.now();
    const tMs = this.now();
    const src = this.source;
    const n = src.numRanks;
    const kv: number[] = new Array<number>(n);
    const run: number[] = new Array<number>(n);
    const wait: number[] = new Array<number>(n);
    const blk: number[] = new Array<number>(n);
    const rst: number[] = new Array<number>(n);
    for (let r = 0; r < n; r++) {
      const c = src.counters[r] as Float64Array;
      kv[r] = Math.round((c[Scalar.kvUsage] as number) * 1000) / 1000;
      run[r] = c[Scalar.running] as number;
      wait[r] = c[Scalar.waiting] as number;
      blk[r] = c[Scalar.activeBlocks] as number;
      rst[r] = src.rankRestarts(r);
    }
    const { tot, dtS } = this.liveFigures(tMs);
    const p = this.point;
    const pub = src.publisherHandle();
    const ps = pub === null ? null : pub.stats();
    const now = {
      running: this.gauges.running,
      waiting: this.gauges.waiting,
      kvMean: round(this.gauges.kvMean),
      kvMax: round(this.gauges.kvMax),
      windowS: round(dtS),
      reqRate: round(p[Pt.reqRate] as number),
      tokRate: round(p[Pt.tokRate] as number),
      promptRate: round(p[Pt.promptRate] as number),
      ttft: [round(p[Pt.ttftP50] as number), round(p[Pt.ttftP90] as number), round(p[Pt.ttftP99] as number)],
      itl: [round(p[Pt.itlP50] as number), round(p[Pt.itlP90] as number), round(p[Pt.itlP99] as number)],
      preemptions: tot[Tot.preemptions],
      preemptRate: round(p[Pt.preemptRate] as number),
      prefixHit: round(p[Pt.prefixHit] as number),
      finished: tot[Tot.finished],
      generationTokens: tot[Tot.generationTokens],
      publisher: {
        state: this.natsState(ps),
        published: ps === null ? null : ps.published,
        msgRate: round(p[Pt.msgRate] as number),
        dropped: ps === null ? null : ps.dropped,
        dropRate: round(p[Pt.dropRate] as number),
        bytes: ps === null ? null : ps.bytes,
        buffered: ps === null ? null : ps.bufferedMessages,
        reconnects: ps === null ? null : ps.reconnects,
      },
    };
    const samples: Array<Array<number | null>> = [];
    const h = this.history;
    for (let i = Math.max(0, h.size - samplesBack); i < h.size; i++) samples.push(h.sampleRow(h.slot(i)));
    const doc: Record<string, unknown> = {
      seq: ++this.tickSeq,
      t: tMs,
      uptimeS: Math.round((tMs - this.startedMs) / 1000),
      ranks: { kv, run, wait, blk, rst },
      now,
      samples,
    };
    const placement = this.placement();
    const key = JSON.stringify(placement);
    if (key !== this.placementKey) {
      this.placementKey = key;
      doc['placement'] = placement;
    }
    const json = JSON.stringify(doc);
    this.cost.ticks++;
    this.cost.tickMs += performance.now() - t0;
    this.cost.lastTickBytes = json.length;
    return json;
  }

  /** The document a new connection starts from; `tickJson` is the latest shared tick. */
  init(tickJson: string, tickMs: number): string {
    const src = this.source;
    const h = this.history;
    const history: Array<Array<number | null>> = [];
    for (let i = 0; i < h.size; i++) history.push(h.sampleRow(h.slot(i)));
    const workers: Array<{ index: number; id: string }> = [];
    for (const r of src.ranks()) {
      if (r.dpRank === 0 || workers.length === 0 || (workers[workers.length - 1] as { index: number }).index !== r.workerIndex) {
        workers.push({ index: r.workerIndex, id: r.workerId.toString(16).padStart(16, '0') });
      }
    }
    const head = JSON.stringify({
      model: src.modelName,
      numRanks: src.numRanks,
      numWorkers: src.numWorkers,
      dataParallelSize: src.dataParallelSize,
      speedupRatio: src.config.speedupRatio,
      router: src.config.router,
      nats: src.config.natsUrl,
      tickMs,
      sampleMs: this.sampleMs,
      windowS: this.windowS,
      historyS: Math.round((this.historySamples * this.sampleMs) / 1000),
      workers,
      placement: this.placement(),
      fields: POINT_FIELDS,
      history,
    });
    return `${head.slice(0, -1)},"tick":${tickJson}}`;
  }
}
