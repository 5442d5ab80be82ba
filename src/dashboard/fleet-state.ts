/**
 * Fleet-wide figures for the dashboard, derived from the ranks' shared counters.
 *
 * FleetTotals folds every rank's cumulative counters (finished requests, tokens, preemptions,
 * prefix-cache queries/hits, TTFT and ITL bucket counts) and the publisher's counters into one
 * monotonic vector. A counter that goes backwards (a fresh counter array) counts from zero again,
 * as Prometheus' rate() treats a reset, so window deltas never turn negative.
 *
 * History keeps one such vector per second in a ring (default 300 = 5 minutes) together with
 * the derived chart point, so a page opened late still gets the last minutes. Window figures
 * (rates, percentiles) are deltas between "now" and the newest sample at least `windowS` old,
 * like rate(x[10s]) and histogram_quantile(q, rate(bucket[10s])).
 *
 *   ring slot i:  t[i] | totals[i*width .. (i+1)*width) | point[i*POINT_FIELDS.length ..)
 */
import { Scalar } from '../protocol/rank-counters.js';
import type { CounterLayout } from '../protocol/rank-counters.js';
import type { DashboardSource } from './source.js';
import { histogramQuantile } from './quantile.js';

/** Indices into the totals vector (before the TTFT and ITL buckets). */
export const Tot = {
  finished: 0,
  generationTokens: 1,
  promptTokens: 2,
  preemptions: 3,
  prefixQueries: 4,
  prefixHits: 5,
  passes: 6,
  published: 7,
  dropped: 8,
  bytes: 9,
} as const;
const TOT_FIXED = 10;

/** Per-rank counters summed into Tot slots: [source Scalar index, destination Tot index]. */
const RANK_SCALARS: ReadonlyArray<readonly [number, number]> = [
  [Scalar.successStop, Tot.finished],
  [Scalar.successLength, Tot.finished],
  [Scalar.successAbort, Tot.finished],
  [Scalar.successError, Tot.finished],
  [Scalar.generationTokens, Tot.generationTokens],
  [Scalar.promptTokens, Tot.promptTokens],
  [Scalar.preemptions, Tot.preemptions],
  [Scalar.prefixQueries, Tot.prefixQueries],
  [Scalar.prefixHits, Tot.prefixHits],
  [Scalar.passes, Tot.passes],
];

/** Chart point fields, in order; every history sample carries one value per field (NaN = none). */
export const POINT_FIELDS = [
  'reqRate',
  'tokRate',
  'promptRate',
  'ttftP50',
  'ttftP90',
  'ttftP99',
  'itlP50',
  'itlP90',
  'itlP99',
  'running',
  'waiting',
  'kvMean',
  'kvMax',
  'preemptRate',
  'prefixHit',
  'msgRate',
  'dropRate',
] as const;
export type PointField = (typeof POINT_FIELDS)[number];
export const Pt: { readonly [K in PointField]: number } = Object.fromEntries(POINT_FIELDS.map((f, i) => [f, i])) as {
  readonly [K in PointField]: number;
};
const NUM_POINT = POINT_FIELDS.length;

/**
 * Counters whose values say "this rank did something": the rank thread bumps one of them with
 * every change of the counters the dashboard reads (workers/rank-worker.ts: `passes` in
 * finishPass before recordPass and updateGauges; `successAbort` / `successError` for aborts and
 * rejections taken from the inbox; the coordinator bumps `restarts` when it zeroes a dead rank's
 * gauges). Idle heartbeats touch none of them.
 */
const ACTIVITY = [Scalar.passes, Scalar.successAbort, Scalar.successError, Scalar.restarts] as const;
const NUM_ACTIVITY = ACTIVITY.length;

/**
 * Folds the ranks' counters into monotonic fleet totals and keeps the fleet gauges, visiting only
 * ranks whose activity counters moved: O(changed ranks) per read, plus a 4-float check per rank.
 * A changed rank is folded again at the next read too, so values it wrote after its activity
 * counter (the pass is still being recorded while we read) are picked up; folding an unchanged
 * rank adds nothing, so the totals equal a full fold over every rank.
 */
export class FleetTotals {
  readonly width: number;
  readonly ttftStart: number;
  readonly itlStart: number;
  readonly totals: Float64Array;
  /** Ranks folded by the last read() (tests, cost figures). */
  lastVisited = 0;
  private readonly srcIdx: Int32Array;
  private readonly dstIdx: Int32Array;
  private prev: Float64Array;
  private readonly pubPrev = new Float64Array(3);
  /** Per rank: activity counters at the last fold, NaN = never folded. */
  private activity: Float64Array;
  /** Per rank: 1 = fold again at the next read. */
  private again: Uint8Array;
  /** Per rank: the counter array folded last (a replaced array counts as a change). */
  private arrays: Array<Float64Array | undefined> = [];
  /** Per rank gauges as of its last fold; sums of running and waiting (integers: exact). */
  private running: Float64Array;
  private waiting: Float64Array;
  private kv: Float64Array;
  private runningSum = 0;
  private waitingSum = 0;
  private kvSum = 0;
  private kvMax = 0;
  /** A rank's KV usage moved: sum and max are taken again from the (contiguous) copies. */
  private kvMoved = false;

  constructor(private readonly source: DashboardSource) {
    const layout: CounterLayout = source.layout;
    const ttftN = layout.ttft.buckets.length + 1;
    const itlN = layout.itl.buckets.length + 1;
    this.ttftStart = TOT_FIXED;
    this.itlStart = TOT_FIXED + ttftN;
    this.width = TOT_FIXED + ttftN + itlN;
    this.totals = new Float64Array(this.width);
    const src: number[] = [];
    const dst: number[] = [];
    for (const [s, d] of RANK_SCALARS) {
      src.push(s);
      dst.push(d);
    }
    for (let i = 0; i < ttftN; i++) {
      src.push(layout.ttft.offset + i);
      dst.push(this.ttftStart + i);
    }
    for (let i = 0; i < itlN; i++) {
      src.push(layout.itl.offset + i);
      dst.push(this.itlStart + i);
    }
    this.srcIdx = Int32Array.from(src);
    this.dstIdx = Int32Array.from(dst);
    const n = source.numRanks;
    this.prev = new Float64Array(n * src.length);
    this.activity = new Float64Array(n * NUM_ACTIVITY).fill(NaN);
    this.again = new Uint8Array(n);
    this.running = new Float64Array(n);
    this.waiting = new Float64Array(n);
    this.kv = new Float64Array(n);
  }

  /** Fold the live counters into the monotonic totals and return them (owned; copy to keep). */
  read(): Float64Array {
    const counters = this.source.counters;
    if (counters.length > this.again.length) this.grow(counters.length);
    const act = this.activity;
    let visited = 0;
    for (let r = 0; r < counters.length; r++) {
      const c = counters[r] as Float64Array;
      const base = r * NUM_ACTIVITY;
      let moved = c !== this.arrays[r];
      for (let j = 0; j < NUM_ACTIVITY; j++) {
        const v = c[ACTIVITY[j] as number] as number;
        if (act[base + j] !== v) {
          act[base + j] = v;
          moved = true;
        }
      }
      if (!moved && this.again[r] === 0) continue;
      this.again[r] = moved ? 1 : 0;
      this.arrays[r] = c;
      this.fold(r, c);
      visited++;
    }
    this.lastVisited = visited;
    const pub = this.source.publisherHandle();
    if (pub !== null) {
      const s = pub.stats();
      this.foldPublisher(0, s.published, Tot.published);
      this.foldPublisher(1, s.dropped, Tot.dropped);
      this.foldPublisher(2, s.bytes, Tot.bytes);
    }
    return this.totals;
  }

  /** Fleet gauges as of the last read(). */
  gauges(out: FleetGauges): FleetGauges {
    const n = this.source.counters.length;
    if (this.kvMoved) {
      // Summed in rank order like a full pass, so the mean is bit-identical to readGauges().
      let sum = 0;
      let max = 0;
      for (let r = 0; r < n; r++) {
        const kv = this.kv[r] as number;
        sum += kv;
        if (kv > max) max = kv;
      }
      this.kvSum = sum;
      this.kvMax = max;
      this.kvMoved = false;
    }
    out.running = this.runningSum;
    out.waiting = this.waitingSum;
    out.kvMean = n === 0 ? 0 : this.kvSum / n;
    out.kvMax = this.kvMax;
    return out;
  }

  private fold(r: number, c: Float64Array): void {
    const t = this.totals;
    const src = this.srcIdx;
    const dst = this.dstIdx;
    const k = src.length;
    const base = r * k;
    for (let j = 0; j < k; j++) {
      const v = c[src[j] as number] as number;
      const p = this.prev[base + j] as number;
      const d = v >= p ? v - p : v;
      this.prev[base + j] = v;
      t[dst[j] as number] = (t[dst[j] as number] as number) + d;
    }
    const running = c[Scalar.running] as number;
    const waiting = c[Scalar.waiting] as number;
    const kv = c[Scalar.kvUsage] as number;
    this.runningSum += running - (this.running[r] as number);
    this.waitingSum += waiting - (this.waiting[r] as number);
    if (kv !== this.kv[r]) this.kvMoved = true;
    this.running[r] = running;
    this.waiting[r] = waiting;
    this.kv[r] = kv;
  }

  /** More ranks than at construction (a fleet that grew): extend the per-rank state. */
  private grow(n: number): void {
    const k = this.srcIdx.length;
    const extend = (a: Float64Array, per: number, fill = 0): Float64Array => {
      const b = new Float64Array(n * per).fill(fill);
      b.set(a);
      return b;
    };
    this.prev = extend(this.prev, k);
    this.activity = extend(this.activity, NUM_ACTIVITY, NaN);
    this.running = extend(this.running, 1);
    this.waiting = extend(this.waiting, 1);
    this.kv = extend(this.kv, 1);
    const again = new Uint8Array(n);
    again.set(this.again);
    this.again = again;
  }

  private foldPublisher(i: number, v: number, slot: number): void {
    const p = this.pubPrev[i] as number;
    this.totals[slot] = (this.totals[slot] as number) + (v >= p ? v - p : v);
    this.pubPrev[i] = v;
  }
}

/** Instant gauges summed over ranks. */
export interface FleetGauges {
  running: number;
  waiting: number;
  kvMean: number;
  kvMax: number;
}

/** The gauges by a full pass over every rank (the reference FleetTotals.gauges() must equal). */
export function readGauges(source: DashboardSource, out: FleetGauges): FleetGauges {
  let running = 0;
  let waiting = 0;
  let kvSum = 0;
  let kvMax = 0;
  const counters = source.counters;
  for (let r = 0; r < counters.length; r++) {
    const c = counters[r] as Float64Array;
    running += c[Scalar.running] as number;
    waiting += c[Scalar.waiting] as number;
    const kv = c[Scalar.kvUsage] as number;
    kvSum += kv;
    if (kv > kvMax) kvMax = kv;
  }
  out.running = running;
  out.waiting = waiting;
  out.kvMean = counters.length === 0 ? 0 : kvSum / counters.length;
  out.kvMax = kvMax;
  return out;
}

/**
 * Window figures between two totals vectors taken dtS seconds apart, written into `out`
 * (NUM_POINT slots, NaN where undefined: no time elapsed, no observations, no queries).
 */
export function windowFigures(
  layout: CounterLayout,
  ft: FleetTotals,
  cur: ArrayLike<number>,
  curOff: number,
  past: ArrayLike<number>,
  pastOff: number,
  dtS: number,
  gauges: FleetGauges,
  scratch: Float64Array,
  out: Float64Array,
): void {
  const d = (i: number): number => (cur[curOff + i] as number) - (past[pastOff + i] as number);
  const rate = (i: number): number => (dtS > 0 ? d(i) / dtS : NaN);
  out[Pt.reqRate] = rate(Tot.finished);
  out[Pt.tokRate] = rate(Tot.generationTokens);
  out[Pt.promptRate] = rate(Tot.promptTokens);
  out[Pt.preemptRate] = rate(Tot.preemptions);
  out[Pt.msgRate] = rate(Tot.published);
  out[Pt.dropRate] = rate(Tot.dropped);
  const q = d(Tot.prefixQueries);
  out[Pt.prefixHit] = q > 0 ? d(Tot.prefixHits) / q : NaN;
  const ttftN = layout.ttft.buckets.length + 1;
  for (let i = 0; i < ttftN; i++) scratch[i] = d(ft.ttftStart + i);
  out[Pt.ttftP50] = ms(histogramQuantile(0.5, layout.ttft.buckets, scratch));
  out[Pt.ttftP90] = ms(histogramQuantile(0.9, layout.ttft.buckets, scratch));
  out[Pt.ttftP99] = ms(histogramQuantile(0.99, layout.ttft.buckets, scratch));
  const itlN = layout.itl.buckets.length + 1;
  for (let i = 0; i < itlN; i++) scratch[i] = d(ft.itlStart + i);
  out[Pt.itlP50] = ms(histogramQuantile(0.5, layout.itl.buckets, scratch));
  out[Pt.itlP90] = ms(histogramQuantile(0.9, layout.itl.buckets, scratch));
  out[Pt.itlP99] = ms(histogramQuantile(0.99, layout.itl.buckets, scratch));
  out[Pt.running] = gauges.running;
  out[Pt.waiting] = gauges.waiting;
  out[Pt.kvMean] = gauges.kvMean;
  out[Pt.kvMax] = gauges.kvMax;
}

function ms(seconds: number | null): number {
  return seconds === null ? NaN : seconds * 1000;
}

/** Ring of 1 s samples: totals (for window deltas) and the derived chart point. */
export class History {
  readonly capacity: number;
  private readonly t: Float64Array;
  private readonly seqs: Float64Array;
  private readonly data: Float64Array;
  private readonly points: Float64Array;
  private count = 0;
  private head = 0;
  private nextSeq = 1;

  constructor(capacity: number, readonly width: number) {
    this.capacity = capacity;
    this.t = new Float64Array(capacity);
    this.seqs = new Float64Array(capacity);
    this.data = new Float64Array(capacity * width);
    this.points = new Float64Array(capacity * NUM_POINT);
  }

  get size(): number {
    return this.count;
  }

  /** Slot of the i-th oldest sample. */
  slot(i: number): number {
    return (this.head - this.count + i + this.capacity) % this.capacity;
  }

  /** Slot of the newest sample taken at or before tMs, else the oldest one; -1 when empty. */
  slotAtOrBefore(tMs: number): number {
    if (this.count === 0) return -1;
    for (let i = this.count - 1; i >= 0; i--) {
      const s = this.slot(i);
      if ((this.t[s] as number) <= tMs) return s;
    }
    return this.slot(0);
  }

  timeAt(slot: number): number {
    return this.t[slot] as number;
  }

  seqAt(slot: number): number {
    return this.seqs[slot] as number;
  }

  get totalsData(): Float64Array {
    return this.data;
  }

  pointAt(slot: number, field: number): number {
    return this.points[slot * NUM_POINT + field] as number;
  }

  /** Append a sample; the caller fills its point through the returned slot. */
  push(tMs: number, totals: Float64Array): number {
    const s = this.head;
    this.t[s] = tMs;
    this.seqs[s] = this.nextSeq++;
    this.data.set(totals, s * this.width);
    this.points.fill(NaN, s * NUM_POINT, (s + 1) * NUM_POINT);
    this.head = (this.head + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
    return s;
  }

  setPoint(slot: number, point: Float64Array): void {
    this.points.set(point.subarray(0, NUM_POINT), slot * NUM_POINT);
  }

  /** [seq, tMs, ...point] with NaN as null, for JSON. */
  sampleRow(slot: number): Array<number | null> {
    const row: Array<number | null> = [this.seqs[slot] as number, this.t[slot] as number];
    for (let f = 0; f < NUM_POINT; f++) row.push(round(this.points[slot * NUM_POINT + f] as number));
    return row;
  }
}

/** JSON-friendly rounding: 4 significant digits is plenty for a chart; NaN becomes null. */
export function round(v: number): number | null {
  if (!Number.isFinite(v)) return null;
  if (v === 0) return 0;
  return Number(v.toPrecision(4));
}

export { NUM_POINT };
