/**
 * Offline trace replay (interfaces.md §6/§7): W × D engines and one router in a single
 * discrete-event loop on a virtual clock — no threads, no timers, no sleeping.
 *
 * Timeline per engine (engine-spec §2): a pass starts when the engine has work; step(now) decides
 * the batch from the requests present at that instant; the pass lasts
 * prefillMs / speedup + decodeMs / (speedup × decodeSpeedup); its tokens and completions are
 * stamped at the pass end, where the next pass starts if work remains. Requests that arrive while
 * a pass runs are queued and considered at the next pass start; an arrival at exactly the pass
 * start is queued first ("drain all, then step"). KV events of a pass reach the router at the
 * pass start (vLLM flavour: visible before the pass ends).
 *
 * Multi-turn sessions: a later turn arrives delayMs (scaled by the arrival speedup) after the
 * previous turn's last token (or its rejection).
 */
import { AddOutcome, FinishReason, KvEventKind } from '../engine/types.js';
import type { EngineArgs, KvEventLog, PerfModel, PromptBlockHashes } from '../engine/types.js';
import { Engine, createPolynomialPerfModel, normalizeEngineArgs } from '../engine/engine.js';
import { KvRouter, createRouter } from '../router/index.js';
import type { PrefixIndex } from '../router/index.js';
import type { ActiveBlocksMode, ActiveSequences } from '../router/active-sequences.js';
import type { RankLoadView, RouteRequest, Router, RouterPolicy } from '../router/types.js';
import { effectiveInputLength, synthesizePromptTokensInto } from '../trace/mooncake.js';
import type { TraceRequest } from '../trace/mooncake.js';
import { InvalidConfigError } from '../util/errors.js';
import { LatencySketch } from '../report/sketch.js';
import { TraceHashes } from './trace-hashes.js';
import { EngineCaches } from './engine-caches.js';
import { RoutedIds } from './routed-ids.js';

export interface OfflineReplayOptions {
  numWorkers: number;
  dataParallelSize: number;
  router: RouterPolicy;
  kvOverlapScoreWeight?: number;
  /** kv router: 0 = lowest cost, > 0 = softmax sampling (seeded by `seed`). */
  routerTemperature?: number;
  traceBlockSize: number;
  arrivalSpeedupRatio: number;
  speedupRatio: number;
  decodeSpeedupRatio: number;
  /** Engine arguments shared by every rank (defaults filled by normalizeEngineArgs); rank r uses seed + r. */
  engineArgs: Partial<EngineArgs>;
  /** Defaults to the polynomial model. */
  perfModel?: PerfModel;
  /** Router seed (the random policy). */
  seed: number;
  /**
   * Also keep every inter-token gap (8 bytes per output token) in `itlMs`, for exact figures in
   * tests; the report reads the sketches either way.
   */
  keepItlSamples?: boolean;
  /**
   * Fast-forward plain decode passes (default true): a rank whose next passes can only decode
   * "coasts" through them (src/replay/README.md, "Coasting"). Results are bit-identical either
   * way; false runs every pass through Engine.step() (tests compare the two).
   */
  coastDecodeRuns?: boolean;
  /**
   * Where the kv router learns what each rank caches (src/replay/README.md, "Router view"):
   * 'engines' (default) reads the engines' prefix caches directly, 'kv-events' feeds the router's
   * index with the engines' KV events as live serving does. Events reach the router at the pass
   * start in virtual time, when the caches change, so both give the same results (a test compares
   * them); the direct read skips maintaining a second copy of every cache.
   */
  kvRouterView?: 'engines' | 'kv-events';
  /**
   * How the kv router keeps each rank's active blocks (RouterOptions.activeBlocks): 'chains'
   * (default here: a replay has few requests in flight per rank) or 'index' (live serving's
   * default). Same results; a test compares them.
   */
  routerActiveBlocks?: ActiveBlocksMode;
  /** Called every 65,536 events with the virtual time reached and the arrivals so far (a progress bar). */
  onProgress?: (simulatedMs: number, arrived: number, total: number) => void;
}

/** Raw per-request and per-token measurements of one replay, in virtual ms from the first arrival. */
export interface OfflineReplayResult {
  numRanks: number;
  engineArgs: Readonly<EngineArgs>;
  numRequests: number;
  /** Per request (trace order after --num-requests): arrival, token times, counts. NaN = never happened. */
  arrivalMs: Float64Array;
  firstTokenMs: Float64Array;
  secondTokenMs: Float64Array;
  lastTokenMs: Float64Array;
  outputTokens: Int32Array;
  promptTokens: Int32Array;
  /** Prefix-cache hit tokens at the request's first admission. */
  reusedTokens: Int32Array;
  /** 1 = completed (reached its output length), 2 = rejected (can never fit a rank), 0 = unfinished. */
  status: Uint8Array;
  rank: Int32Array;
  /** Every consecutive token gap of every request, when `keepItlSamples` was set; else null. */
  itlMs: Float64Array | null;
  /** The report's distributions in fixed memory (src/report/sketch.ts). */
  sketches: ReplaySketches;
  /** Engine passes simulated: numEngineSteps through Engine.step(), numCoastedPasses fast-forwarded. */
  numPasses: number;
  numEngineSteps: number;
  numCoastedPasses: number;
  numPreemptions: number;
  wallTimeMs: number;
  /** One-second virtual-time bins: output tokens emitted, requests in flight at the bin's end. */
  binOutputTokens: Float64Array;
  binInFlight: Float64Array;
}

/** Latency distributions of a replay (definitions in src/replay/README.md, "Report"). */
export interface ReplaySketches {
  ttft: LatencySketch;
  ttst: LatencySketch;
  tpot: LatencySketch;
  itl: LatencySketch;
  e2e: LatencySketch;
  outputTokPerUser: LatencySketch;
}

export const RequestStatus = { unfinished: 0, completed: 1, rejected: 2 } as const;

function positive(field: string, v: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new InvalidConfigError(field, `must be a number > 0, got ${String(v)}`);
  return v;
}

function positiveInt(field: string, v: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new InvalidConfigError(field, `must be a positive integer, got ${String(v)}`);
  return v;
}

/** Growable Float64Array with amortized doubling. */
class F64List {
  data = new Float64Array(1024);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  view(): Float64Array {
    return this.data.subarray(0, this.length);
  }
}

/** Min-heap of (time, seq) pairs addressed by an int payload; ties pop in insertion order. */
class EventHeap {
  private time = new Float64Array(64);
  private seq = new Float64Array(64);
  private payload = new Int32Array(64);
  private n = 0;
  private counter = 0;
  get size(): number {
    return this.n;
  }
  peekTime(): number {
    return this.n === 0 ? Number.POSITIVE_INFINITY : (this.time[0] as number);
  }
  push(t: number, payload: number): void {
    if (this.n === this.time.length) this.grow();
    let i = this.n++;
    const s = this.counter++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pt = this.time[p] as number;
      if (pt < t || (pt === t && (this.seq[p] as number) < s)) break;
      this.time[i] = pt;
      this.seq[i] = this.seq[p] as number;
      this.payload[i] = this.payload[p] as number;
      i = p;
    }
    this.time[i] = t;
    this.seq[i] = s;
    this.payload[i] = payload;
  }
  /** Remove the minimum; returns its payload. */
  pop(): number {
    const top = this.payload[0] as number;
    const n = --this.n;
    if (n > 0) {
      const t = this.time[n] as number, s = this.seq[n] as number, pl = this.payload[n] as number;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let c = l;
        if (r < n) {
          const lt = this.time[l] as number, rt = this.time[r] as number;
          if (rt < lt || (rt === lt && (this.seq[r] as number) < (this.seq[l] as number))) c = r;
        }
        const ct = this.time[c] as number;
        if (t < ct || (t === ct && s < (this.seq[c] as number))) break;
        this.time[i] = ct;
        this.seq[i] = this.seq[c] as number;
        this.payload[i] = this.payload[c] as number;
        i = c;
      }
      this.time[i] = t;
      this.seq[i] = s;
      this.payload[i] = pl;
    }
    return top;
  }
  private grow(): void {
    const cap = this.time.length * 2;
    const t = new Float64Array(cap); t.set(this.time); this.time = t;
    const s = new Float64Array(cap); s.set(this.seq); this.seq = s;
    const p = new Int32Array(cap); p.set(this.payload); this.payload = p;
  }
}

/**
 * Min-heap of ranks keyed by their next pass start, at most one entry per rank, with the key of
 * a queued rank changeable in place. Equal times pop lowest rank first: the order depends only on
 * the keys, not on when they were set, so coasting (which sets a rank's key at another moment
 * than per-pass stepping would) pops visible passes in the same order.
 */
class RankHeap {
  private readonly time: Float64Array;
  private readonly rank: Int32Array;
  /** Heap index of each rank, -1 when absent. */
  private readonly pos: Int32Array;
  private n = 0;
  /** Each rank's key, set by the caller before set(rank) (a double passed to a call is boxed). */
  private readonly keys: Float64Array;
  constructor(keys: Float64Array) {
    const numRanks = keys.length;
    this.keys = keys;
    this.time = new Float64Array(numRanks);
    this.rank = new Int32Array(numRanks);
    this.pos = new Int32Array(numRanks).fill(-1);
  }
  peekTime(): number {
    return this.n === 0 ? Number.POSITIVE_INFINITY : (this.time[0] as number);
  }
  /** Queue `rank` at its key (keys[rank]), or move it there if queued. */
  set(rank: number): void {
    const t = this.keys[rank] as number;
    let i = this.pos[rank] as number;
    if (i < 0) {
      i = this.n++;
      this.up(i, t, rank);
    } else if (t < (this.time[i] as number)) this.up(i, t, rank);
    else this.down(i, t, rank);
  }
  /** Remove the earliest rank and return it. */
  pop(): number {
    const top = this.rank[0] as number;
    this.pos[top] = -1;
    const n = --this.n;
    if (n > 0) this.down(0, this.time[n] as number, this.rank[n] as number);
    return top;
  }
  private up(i: number, t: number, r: number): void {
    const time = this.time, rank = this.rank, pos = this.pos;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pt = time[p] as number;
      if (pt < t || (pt === t && (rank[p] as number) < r)) break;
      time[i] = pt;
      const pr = rank[p] as number;
      rank[i] = pr;
      pos[pr] = i;
      i = p;
    }
    time[i] = t;
    rank[i] = r;
    pos[r] = i;
  }
  private down(i: number, t: number, r: number): void {
    const time = this.time, rank = this.rank, pos = this.pos, n = this.n;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      let c = l;
      let ct = time[l] as number;
      const rr = l + 1;
      if (rr < n) {
        const rt = time[rr] as number;
        if (rt < ct || (rt === ct && (rank[rr] as number) < (rank[l] as number))) {
          c = rr;
          ct = rt;
        }
      }
      if (t < ct || (t === ct && r < (rank[c] as number))) break;
      time[i] = ct;
      const cr = rank[c] as number;
      rank[i] = cr;
      pos[cr] = i;
      i = c;
    }
    time[i] = t;
    rank[i] = r;
    pos[r] = i;
  }
}

/** Blocks of all ranks together up to which the engines reserve their pools (≤ 480 MiB). */
const RESERVE_MAX_BLOCKS = 1 << 23;

/** Longest decode run coasted at once (runs end at block boundaries, so this only caps huge blocks). */
const MAX_COAST_PASSES = 4096;

/** Validate options and build the ranks' engine arguments (throws InvalidConfigError). */
export function checkOfflineReplayOptions(opts: OfflineReplayOptions): Readonly<EngineArgs> {
  positiveInt('--num-workers', opts.numWorkers);
  positiveInt('--data-parallel-size', opts.dataParallelSize);
  positiveInt('--trace-block-size', opts.traceBlockSize);
  positive('--arrival-speedup-ratio', opts.arrivalSpeedupRatio);
  // A ratio of 0 means "never sleep" live; on a virtual clock it would collapse every pass to one instant.
  positive('--speedup-ratio', opts.speedupRatio);
  positive('--decode-speedup-ratio', opts.decodeSpeedupRatio);
  if (!Number.isInteger(opts.seed)) throw new InvalidConfigError('--seed', `must be an integer, got ${String(opts.seed)}`);
  if (opts.numWorkers * opts.dataParallelSize > 65536) {
    throw new InvalidConfigError('--num-workers', `num-workers × data-parallel-size must be at most 65536, got ${opts.numWorkers * opts.dataParallelSize}`);
  }
  return normalizeEngineArgs(opts.engineArgs);
}

/** Replay `reqs` (in trace order) offline. Deterministic for given inputs and options. */
export function runOfflineReplay(reqs: readonly TraceRequest[], opts: OfflineReplayOptions): OfflineReplayResult {
  const wallStart = performance.now();
  const sim = new OfflineSim(reqs, opts);
  sim.run(opts.onProgress);
  return sim.result(performance.now() - wallStart);
}

/** The event loop's state; arrive() and pass() are the two event handlers. */
class OfflineSim {
  private readonly reqs: readonly TraceRequest[];
  private readonly args: Readonly<EngineArgs>;
  private readonly numRanks: number;
  private readonly engines: Engine[];
  private readonly router: Router;
  private readonly useKv: boolean;
  private readonly tbs: number;
  private readonly arrivalRatio: number;
  private readonly speed: number;
  private readonly decodeSpeed: number;

  private readonly arrivalMs: Float64Array;
  private readonly firstTokenMs: Float64Array;
  private readonly secondTokenMs: Float64Array;
  private readonly lastTokenMs: Float64Array;
  private readonly outputTokens: Int32Array;
  private readonly promptTokens: Int32Array;
  private readonly reusedTokens: Int32Array;
  private readonly admitted: Uint8Array;
  private readonly status: Uint8Array;
  private readonly rankOf: Int32Array;
  private readonly itl: F64List | null;
  private readonly sketches: ReplaySketches = {
    ttft: new LatencySketch(), ttst: new LatencySketch(), tpot: new LatencySketch(),
    itl: new LatencySketch(), e2e: new LatencySketch(), outputTokPerUser: new LatencySketch(),
  };
  private readonly binOut = new F64List();
  /** Change of the in-flight count per bin (+1 queued, −1 finished); binInFlight is its prefix sum. */
  private readonly binInFlightDelta = new F64List();
  private numPasses = 0;
  private numEngineSteps = 0;
  private numCoastedPasses = 0;
  private numPreemptions = 0;

  /** Index of each request's next session turn (-1 = none). */
  private readonly nextTurn: Int32Array;
  private readonly arrivals = new EventHeap();
  /**
   * Ranks with a scheduled pass, keyed by its start time; a coasting rank by the start of the
   * first pass after its run.
   */
  private readonly passes: RankHeap;
  /** Next (visible) pass start per rank; Infinity = idle (or stalled until its next arrival). */
  private readonly nextPassAt: Float64Array;
  /** Coasting: the pending run of plain decode passes of each rank (runLen 0 = none) and its first pass start. */
  private readonly coast: boolean;
  private readonly runLen: Int32Array;
  private readonly runStartMs: Float64Array;
  /** Modeled decode ms of the passes of one run (scratch). */
  private readonly runMs = new Float64Array(MAX_COAST_PASSES);
  /** Inter-token gaps and their counts on their way to the ITL sketch (scratch, one run or pass). */
  private readonly itlGaps = new Float64Array(MAX_COAST_PASSES);
  private readonly itlWeights = new Float64Array(MAX_COAST_PASSES);
  /** The end of the pass whose tokens recordTokens() stamps. */
  private readonly tokensEndMs = new Float64Array(1);

  private readonly traceHashes: TraceHashes;
  /** The kv router's index (prefetched before a batch of KV events), or null for other policies. */
  private readonly kvIndex: PrefixIndex | null;
  /** Keeps the prefetch reads observable (see PrefixIndex.warm). */
  private warmSink = 0;
  /** The kv router takes the engines' KV events (kvRouterView 'kv-events'). */
  private readonly feedKvEvents: boolean;
  private promptBuf = new Uint32Array(1 << 16);
  private readonly route: { -readonly [K in keyof RouteRequest]: RouteRequest[K] };
  /** The prompt's block hashes (route.seqHash* are the sequence hashes), for addRequestWithHashes. */
  private readonly promptHashes: { -readonly [K in keyof PromptBlockHashes]: PromptBlockHashes[K] };
  /** Prompt hashes are needed by the kv router and by engines with prefix caching. */
  private readonly needHashes: boolean;
  /**
   * kv router: the ranks each trace hash id was routed to, which bound every rank's match
   * (src/replay/routed-ids.ts); null for other policies, or when the ids need too much memory.
   */
  private readonly routedIds: RoutedIds | null;
  /** The kv router's direct view of the engines' caches (kvRouterView 'engines'), else null. */
  private readonly engineCaches: EngineCaches | null;
  /** The kv router's own active-block bookkeeping (bounded like the caches' walks), else null. */
  private readonly kvActive: ActiveSequences | null;
  /** Per-rank bounds of the current pick (RoutedIds.bounds). */
  private readonly rankBounds: Int32Array;

  constructor(reqs: readonly TraceRequest[], opts: OfflineReplayOptions) {
    const args = checkOfflineReplayOptions(opts);
    this.reqs = reqs;
    this.args = args;
    const perf = opts.perfModel ?? createPolynomialPerfModel();
    const numRanks = opts.numWorkers * opts.dataParallelSize;
    this.numRanks = numRanks;
    const view = opts.kvRouterView ?? 'engines';
    if (view !== 'engines' && view !== 'kv-events') throw new InvalidConfigError('kvRouterView', `must be 'engines' or 'kv-events', got ${String(view)}`);
    this.feedKvEvents = view === 'kv-events' && opts.router === 'kv';
    const activeBlocks = opts.routerActiveBlocks ?? 'chains';
    if (activeBlocks !== 'chains' && activeBlocks !== 'index') throw new InvalidConfigError('routerActiveBlocks', `must be 'chains' or 'index', got ${String(activeBlocks)}`);
    const engines: Engine[] = [];
    // Only the kv router fed by events reads KV events, and only their block hashes: the engines
    // record nothing else (and no token ids). With the prompts' hashes given, they keep only the
    // prompt tokens that generated tokens complete a block with.
    // Pools and prefix tables sized up front (40–60 bytes per block) while that stays modest; huge
    // fleets grow theirs with use instead, as serving ranks do.
    const reserveBlocks = numRanks * args.numGpuBlocks <= RESERVE_MAX_BLOCKS;
    // With aligned block sizes the prompts' hashes come in groups (src/replay/trace-hashes.ts),
    // which the engines' prefix caches then keep one group per entry.
    const traceHashes = new TraceHashes(opts.traceBlockSize, args.blockSize);
    this.traceHashes = traceHashes;
    const engineOptions = { recordEventTokens: false, recordKvEvents: this.feedKvEvents, reserveBlocks, keepPromptTokens: false, keepGeneratedTokens: false, blockHashGroupBits: traceHashes.groupBits };
    for (let r = 0; r < numRanks; r++) engines.push(new Engine({ ...args, seed: (args.seed + r) | 0 }, perf, engineOptions));
    this.engines = engines;
    const load: RankLoadView = {
      numRanks,
      running: (r) => (engines[r] as Engine).numRunning,
      waiting: (r) => (engines[r] as Engine).numWaiting,
      activeBlocks: (r) => (engines[r] as Engine).numActiveBlocks,
      totalBlocks: () => args.numGpuBlocks,
    };
    const engineCaches = this.feedKvEvents ? null : new EngineCaches(engines);
    this.engineCaches = engineCaches;
    this.router = createRouter(opts.router, load, {
      seed: opts.seed,
      blockSize: args.blockSize,
      ...(engineCaches === null ? {} : { cachedBlocks: engineCaches }),
      activeBlocks,
      ...(opts.kvOverlapScoreWeight === undefined ? {} : { kvOverlapScoreWeight: opts.kvOverlapScoreWeight }),
      ...(opts.routerTemperature === undefined ? {} : { routerTemperature: opts.routerTemperature }),
    });
    this.useKv = this.router.policy === 'kv';
    this.kvIndex = this.router instanceof KvRouter ? this.router.index : null;
    this.kvActive = this.router instanceof KvRouter ? this.router.active : null;
    this.itl = opts.keepItlSamples === true ? new F64List() : null;
    this.tbs = opts.traceBlockSize;
    this.arrivalRatio = opts.arrivalSpeedupRatio;
    this.speed = opts.speedupRatio;
    this.decodeSpeed = opts.speedupRatio * opts.decodeSpeedupRatio;

    const n = reqs.length;
    this.arrivalMs = new Float64Array(n).fill(Number.NaN);
    this.firstTokenMs = new Float64Array(n).fill(Number.NaN);
    this.secondTokenMs = new Float64Array(n).fill(Number.NaN);
    this.lastTokenMs = new Float64Array(n).fill(Number.NaN);
    this.outputTokens = new Int32Array(n);
    this.promptTokens = new Int32Array(n);
    this.reusedTokens = new Int32Array(n);
    this.admitted = new Uint8Array(n);
    this.status = new Uint8Array(n);
    this.rankOf = new Int32Array(n).fill(-1);
    this.nextTurn = new Int32Array(n).fill(-1);
    this.nextPassAt = new Float64Array(numRanks).fill(Number.POSITIVE_INFINITY);
    this.passes = new RankHeap(this.nextPassAt);
    this.coast = opts.coastDecodeRuns !== false;
    this.runLen = new Int32Array(numRanks);
    this.runStartMs = new Float64Array(numRanks);
    this.route = {
      numBlocks: 0, seqHashHi: new Uint32Array(4096), seqHashLo: new Uint32Array(4096), promptTokens: 0, firstRank: 0, numCandidateRanks: numRanks, numSeenBlocks: 0,
    };
    this.promptHashes = {
      numBlocks: 0, seqHashHi: this.route.seqHashHi, seqHashLo: this.route.seqHashLo,
      // Tokens hashes only feed Stored events, which the engines record only for the kv router fed by events.
      tokHashHi: this.feedKvEvents ? new Uint32Array(4096) : null, tokHashLo: this.feedKvEvents ? new Uint32Array(4096) : null,
    };
    this.needHashes = this.useKv || args.enablePrefixCaching;
    this.routedIds = this.useKv ? RoutedIds.create(reqs, numRanks) : null;
    this.rankBounds = new Int32Array(numRanks);
    // Refilled by every arrival before its pick: the kv router skips ranks they show cannot win.
    if (this.routedIds !== null) this.route.rankBounds = this.rankBounds;

    // First turns arrive at their normalized timestamps; later turns are released by completions.
    const lastOfSession = new Map<string, number>();
    const isFirst = new Uint8Array(n);
    let t0 = Number.POSITIVE_INFINITY;
    for (let i = 0; i < n; i++) {
      const r = reqs[i] as TraceRequest;
      this.promptTokens[i] = effectiveInputLength(r, this.tbs);
      if (r.sessionId === null) {
        isFirst[i] = 1;
      } else {
        const prev = lastOfSession.get(r.sessionId);
        if (prev === undefined) isFirst[i] = 1;
        else this.nextTurn[prev] = i;
        lastOfSession.set(r.sessionId, i);
      }
      if (isFirst[i] === 1 && r.timestampMs < t0) t0 = r.timestampMs;
    }
    for (let i = 0; i < n; i++) {
      if (isFirst[i] === 1) this.arrivals.push(((reqs[i] as TraceRequest).timestampMs - t0) / this.arrivalRatio, i);
    }
  }

  run(onProgress?: (simulatedMs: number, arrived: number, total: number) => void): void {
    const arrivals = this.arrivals, passes = this.passes;
    let events = 0;
    let arrived = 0;
    for (;;) {
      const tA = arrivals.peekTime();
      const tE = passes.peekTime();
      if (tA === Number.POSITIVE_INFINITY && tE === Number.POSITIVE_INFINITY) return;
      if (tA <= tE) {
        this.arrive(arrivals.pop(), tA);
        arrived++;
      } else this.pass(passes.pop());
      if (onProgress !== undefined && (++events & 0xffff) === 0) onProgress(tA <= tE ? tA : tE, arrived, this.reqs.length);
    }
  }

  /** The second bin of virtual time t (the bins reach it). */
  private markBin(t: number): number {
    const b = Math.floor(t / 1000);
    this.ensureBin(b);
    return b;
  }

  private ensureBin(b: number): void {
    const binOut = this.binOut;
    if (binOut.length > b) return;
    const delta = this.binInFlightDelta;
    while (binOut.length <= b) {
      binOut.push(0);
      delta.push(0);
    }
  }

  /** Output tokens emitted in second bin b. */
  private addBinTokens(b: number, tokens: number): void {
    this.ensureBin(b);
    this.binOut.data[b] = (this.binOut.data[b] as number) + tokens;
  }

  private releaseNextTurn(i: number, t: number): void {
    const nx = this.nextTurn[i] as number;
    if (nx < 0) return;
    const delay = (this.reqs[nx] as TraceRequest).delayMs ?? 0;
    this.arrivals.push(t + delay / this.arrivalRatio, nx);
  }

  private arrive(i: number, t: number): void {
    const req = this.reqs[i] as TraceRequest;
    this.arrivalMs[i] = t;
    const promptLen = this.promptTokens[i] as number;
    if (this.promptBuf.length < promptLen) this.promptBuf = new Uint32Array(Math.max(promptLen, this.promptBuf.length * 2));
    // With the prompt's hashes given, the engines keep (and read) only the tokens after its last
    // full block (EngineOptions.keepPromptTokens false): unless the hashes are of the tokens
    // themselves, only those are synthesized.
    const tail = this.needHashes && !this.traceHashes.readsPrompt;
    synthesizePromptTokensInto(req, this.tbs, this.promptBuf, tail ? Math.floor(promptLen / this.args.blockSize) * this.args.blockSize : 0);
    // The engine copies the prompt and takes its length from the array: pass an exact view.
    const prompt = this.promptBuf.subarray(0, promptLen);
    const route = this.route;
    route.promptTokens = promptLen;
    const hashes = this.promptHashes;
    if (this.needHashes) {
      const nb = Math.floor(promptLen / this.args.blockSize);
      if (nb > route.seqHashHi.length) {
        route.seqHashHi = hashes.seqHashHi = new Uint32Array(nb);
        route.seqHashLo = hashes.seqHashLo = new Uint32Array(nb);
        if (this.feedKvEvents) {
          hashes.tokHashHi = new Uint32Array(nb);
          hashes.tokHashLo = new Uint32Array(nb);
        }
      }
      const tokHi = hashes.tokHashHi, tokLo = hashes.tokHashLo;
      hashes.numBlocks = tokHi === null || tokLo === null
        ? this.traceHashes.hashes(req, prompt, hashes.seqHashHi, hashes.seqHashLo)
        : this.traceHashes.blockHashes(req, prompt, hashes.seqHashHi, hashes.seqHashLo, tokHi, tokLo);
    }
    route.numBlocks = this.useKv ? hashes.numBlocks : 0;
    const routedIds = this.routedIds;
    if (routedIds !== null) {
      route.numSeenBlocks = routedIds.bounds(req.hashIds, route.numBlocks, this.tbs, this.args.blockSize, this.rankBounds);
      if (this.engineCaches !== null) this.engineCaches.boundNextWalks(this.rankBounds);
      if (this.kvActive !== null) this.kvActive.boundNextWalks(this.rankBounds);
    } else route.numSeenBlocks = route.numBlocks;
    const rank = this.router.pick(route);
    this.rankOf[i] = rank;
    const b = this.markBin(t);
    const engine = this.engines[rank] as Engine;
    // A coasting rank first runs the passes of its run that started before now: the request
    // joins the first pass that starts at or after its arrival, as without coasting.
    if ((this.runLen[rank] as number) > 0) this.settle(rank, t);
    const outcome = this.needHashes
      ? engine.addRequestWithHashes(i, prompt, req.outputLength, hashes)
      : engine.addRequest(i, prompt, req.outputLength);
    if (outcome === AddOutcome.rejectedTooLarge) {
      this.status[i] = RequestStatus.rejected;
      this.releaseNextTurn(i, t);
      return;
    }
    this.router.onRouted(i, route, rank);
    if (routedIds !== null) routedIds.noteRouted(rank, req.hashIds);
    this.binInFlightDelta.data[b] = (this.binInFlightDelta.data[b] as number) + 1;
    if ((this.runLen[rank] as number) > 0) {
      // The rest of the run is void (the next pass admits the request): it starts where the
      // settled part ended.
      this.runLen[rank] = 0;
      const next = this.runStartMs[rank] as number;
      this.nextPassAt[rank] = next;
      this.passes.set(rank);
    } else if (this.nextPassAt[rank] === Number.POSITIVE_INFINITY) {
      this.nextPassAt[rank] = t;
      this.passes.set(rank);
    }
  }

  /**
   * Run the passes of the rank's pending decode run that start before tLimit (all of them for
   * Infinity) through Engine.advanceDecode and record their tokens exactly as pass() would.
   * Afterwards runStartMs[rank] is the start of the first pass not run and runLen[rank] counts
   * the passes left.
   */
  private settle(rank: number, tLimit: number): void {
    const engine = this.engines[rank] as Engine;
    const k = this.runLen[rank] as number;
    const ms = this.runMs;
    const decodeSpeed = this.decodeSpeed;
    const start = this.runStartMs[rank] as number;
    let j = k;
    if (tLimit !== Number.POSITIVE_INFINITY) {
      if (!(start < tLimit)) return;
      engine.decodeRunMs(k, ms);
      let st = start;
      j = 0;
      while (j < k && st < tLimit) st += (ms[j++] as number) / decodeSpeed;
    }
    const res = engine.advanceDecode(j, ms);
    const n = res.numTokens;
    const ids = res.tokenRequestIds;
    // Pass 1 of the run: each request's gap since its own last token (the per-pass path).
    let end = start + (ms[0] as number) / decodeSpeed;
    this.tokensEndMs[0] = end;
    this.recordTokens(ids, n);
    // Later passes: every request's previous token came at the previous pass end, so all n
    // gaps of a pass are equal (one sketch entry of weight n, as pass() would add).
    const itl = this.itl;
    const itlSketch = this.sketches.itl;
    // Equal gaps of consecutive passes are one entry (its bins count the same); the entries go to
    // the sketch in one addRun. The tokens of consecutive passes ending in one second bin are
    // added to it at once (the same integer sum, pass by pass or together).
    const gaps = this.itlGaps, weights = this.itlWeights;
    let numGaps = 0;
    let bin = -1, binTokens = 0;
    for (let p = 1; p < j; p++) {
      const prev = end;
      end = prev + (ms[p] as number) / decodeSpeed;
      const gap = end - prev;
      if (numGaps > 0 && gap === gaps[numGaps - 1]) weights[numGaps - 1] = (weights[numGaps - 1] as number) + n;
      else {
        gaps[numGaps] = gap;
        weights[numGaps++] = n;
      }
      if (itl !== null) for (let m = 0; m < n; m++) itl.push(gap);
      const b = Math.floor(end / 1000);
      if (b === bin) binTokens += n;
      else {
        if (binTokens > 0) this.addBinTokens(bin, binTokens);
        bin = b;
        binTokens = n;
      }
    }
    if (binTokens > 0) this.addBinTokens(bin, binTokens);
    if (numGaps > 0) itlSketch.addRun(gaps, weights, numGaps);
    if (j > 1) {
      const counts = this.outputTokens, last = this.lastTokenMs;
      for (let m = 0; m < n; m++) {
        const id = ids[m] as number;
        counts[id] = (counts[id] as number) + (j - 1);
        last[id] = end;
      }
    }
    this.numPasses += j;
    this.numCoastedPasses += j;
    this.runLen[rank] = k - j;
    this.runStartMs[rank] = end;
  }

  /**
   * Stamp the tokens of one pass ending at tokensEndMs[0] (first token, second token, ITL, bins):
   * the end is not passed, as a double argument would be boxed on every pass.
   */
  private recordTokens(ids: Int32Array, numTokens: number): void {
    const end = this.tokensEndMs[0] as number;
    const b = this.markBin(end);
    this.binOut.data[b] = (this.binOut.data[b] as number) + numTokens;
    const counts = this.outputTokens, last = this.lastTokenMs, itl = this.itl, router = this.router;
    const itlSketch = this.sketches.itl;
    // The tokens of a pass share its end, and requests that decoded in the previous pass share
    // its end too: equal gaps come in runs, added to the sketch as one entry with their count.
    const gaps = this.itlGaps, weights = this.itlWeights;
    let numGaps = 0;
    for (let k = 0; k < numTokens; k++) {
      const id = ids[k] as number;
      const cnt = counts[id] as number;
      if (cnt === 0) {
        this.firstTokenMs[id] = end;
        this.sketches.ttft.add(end - (this.arrivalMs[id] as number));
        router.onPrefillDone(id);
      } else {
        if (cnt === 1) this.secondTokenMs[id] = end;
        const gap = end - (last[id] as number);
        if (itl !== null) itl.push(gap);
        if (numGaps > 0 && gap === gaps[numGaps - 1]) weights[numGaps - 1] = (weights[numGaps - 1] as number) + 1;
        else {
          if (numGaps === gaps.length) {
            itlSketch.addRun(gaps, weights, numGaps);
            numGaps = 0;
          }
          gaps[numGaps] = gap;
          weights[numGaps++] = 1;
        }
      }
      last[id] = end;
      counts[id] = cnt + 1;
    }
    if (numGaps > 0) itlSketch.addRun(gaps, weights, numGaps);
  }

  /** Run the rank's scheduled pass (its start time is nextPassAt[rank]; read here rather than
   * passed, so no double is boxed per pass). */
  private pass(rank: number): void {
    const t = this.nextPassAt[rank] as number;
    this.nextPassAt[rank] = Number.POSITIVE_INFINITY;
    if ((this.runLen[rank] as number) > 0) {
      this.settle(rank, Number.POSITIVE_INFINITY);
      if (this.runStartMs[rank] !== t) throw new Error(`replay: rank ${rank} coasted to ${this.runStartMs[rank]} ms, its pass is at ${t} ms`);
    }
    const engine = this.engines[rank] as Engine;
    const res = engine.step(t);
    this.numPasses++;
    this.numEngineSteps++;
    this.numPreemptions += res.numPreemptions;
    const end = t + res.prefillMs / this.speed + res.decodeMs / this.decodeSpeed;

    const log = engine.takeEvents();
    if (this.feedKvEvents && log.count > 0) this.feedEvents(rank, log);

    if (res.numAdmissions > 0) {
      const admitted = this.admitted;
      for (let a = 0; a < res.numAdmissions; a++) {
        const id = res.admissionRequestIds[a] as number;
        if (admitted[id] === 0) {
          admitted[id] = 1;
          this.reusedTokens[id] = res.admissionCachedTokens[a] as number;
        }
      }
    }

    const numTokens = res.numTokens;
    if (numTokens > 0) {
      this.tokensEndMs[0] = end;
      this.recordTokens(res.tokenRequestIds, numTokens);
    }

    if (res.numFinished > 0) {
      const b = this.markBin(end);
      for (let k = 0; k < res.numFinished; k++) {
        const id = res.finishedRequestIds[k] as number;
        if (res.finishedReasons[k] === FinishReason.length) {
          this.status[id] = RequestStatus.completed;
          this.recordCompleted(id);
        } else this.status[id] = RequestStatus.rejected;
        this.router.onRequestFinished(id);
        this.releaseNextTurn(id, end);
      }
      this.binInFlightDelta.data[b] = (this.binInFlightDelta.data[b] as number) - res.numFinished;
    }

    // A pass that changed nothing would repeat forever: such a rank sleeps until its next arrival.
    const progressed = res.numScheduledTokens > 0 || res.numFinished > 0 || numTokens > 0 || end > t;
    if (progressed && engine.hasWork()) {
      let next = end;
      const k = this.coast ? engine.decodeRunLength(MAX_COAST_PASSES) : 0;
      if (k > 0) {
        // Coast: the next k passes only decode, which nothing else observes; run them when an
        // arrival joins this rank or when the pass after them is due (settle()).
        const ms = this.runMs;
        engine.decodeRunMs(k, ms);
        const decodeSpeed = this.decodeSpeed;
        for (let p = 0; p < k; p++) next += (ms[p] as number) / decodeSpeed;
        this.runLen[rank] = k;
        this.runStartMs[rank] = end;
      }
      this.nextPassAt[rank] = next;
      this.passes.set(rank);
    }
  }

  /** Per-request distributions of a completed request (its last token is stamped already). */
  private recordCompleted(id: number): void {
    const s = this.sketches;
    const n = this.outputTokens[id] as number;
    const arrival = this.arrivalMs[id] as number, first = this.firstTokenMs[id] as number, last = this.lastTokenMs[id] as number;
    s.e2e.add(last - arrival);
    if (n >= 2) {
      s.ttst.add((this.secondTokenMs[id] as number) - first);
      const tpot = (last - first) / (n - 1);
      s.tpot.add(tpot);
      if (tpot > 0) s.outputTokPerUser.add(1000 / tpot);
    }
  }

  private feedEvents(rank: number, log: KvEventLog): void {
    const router = this.router;
    const kvIndex = this.kvIndex;
    if (kvIndex !== null && log.count > 1) {
      const last = log.count - 1;
      this.warmSink ^= kvIndex.warm(log.seqHashHi, log.seqHashLo, 0, (log.hashStart[last] as number) + (log.hashCount[last] as number));
    }
    for (let e = 0; e < log.count; e++) {
      const kind = log.kind[e];
      if (kind === KvEventKind.stored) router.onStored(rank, log.hashCount[e] as number, log.seqHashHi, log.seqHashLo, log.hashStart[e] as number);
      else if (kind === KvEventKind.removed) router.onRemoved(rank, log.hashCount[e] as number, log.seqHashHi, log.seqHashLo, log.hashStart[e] as number);
      else router.onCleared(rank);
    }
  }

  result(wallTimeMs: number): OfflineReplayResult {
    return {
      numRanks: this.numRanks,
      engineArgs: this.args,
      numRequests: this.reqs.length,
      arrivalMs: this.arrivalMs,
      firstTokenMs: this.firstTokenMs,
      secondTokenMs: this.secondTokenMs,
      lastTokenMs: this.lastTokenMs,
      outputTokens: this.outputTokens,
      promptTokens: this.promptTokens,
      reusedTokens: this.reusedTokens,
      status: this.status,
      rank: this.rankOf,
      itlMs: this.itl === null ? null : this.itl.view(),
      sketches: this.sketches,
      numPasses: this.numPasses,
      numEngineSteps: this.numEngineSteps,
      numCoastedPasses: this.numCoastedPasses,
      numPreemptions: this.numPreemptions,
      wallTimeMs,
      binOutputTokens: this.binOut.view(),
      binInFlight: prefixSum(this.binInFlightDelta.view()),
    };
  }
}

/** Running sums (requests in flight at each bin's end from the per-bin changes). */
function prefixSum(deltas: Float64Array): Float64Array {
  const out = new Float64Array(deltas.length);
  let acc = 0;
  for (let i = 0; i < deltas.length; i++) {
    acc += deltas[i] as number;
    out[i] = acc;
  }
  return out;
}
