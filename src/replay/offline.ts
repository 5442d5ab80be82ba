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
import type { EngineArgs, PerfModel } from '../engine/types.js';
import { Engine, createPolynomialPerfModel, normalizeEngineArgs } from '../engine/engine.js';
import { createRouter } from '../router/index.js';
import type { RankLoadView, RouteRequest, Router, RouterPolicy } from '../router/types.js';
import { effectiveInputLength, synthesizePromptTokensInto } from '../trace/mooncake.js';
import type { TraceRequest } from '../trace/mooncake.js';
import { InvalidConfigError } from '../util/errors.js';
import { TraceHashMemo } from './trace-hashes.js';

export interface OfflineReplayOptions {
  numWorkers: number;
  dataParallelSize: number;
  router: RouterPolicy;
  kvOverlapScoreWeight?: number;
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
  /** Every consecutive token gap of every request. */
  itlMs: Float64Array;
  numPasses: number;
  numPreemptions: number;
  wallTimeMs: number;
  /** One-second virtual-time bins: output tokens emitted, requests in flight at the bin's last event. */
  binOutputTokens: Float64Array;
  binInFlight: Float64Array;
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
  const args = checkOfflineReplayOptions(opts);
  const perf = opts.perfModel ?? createPolynomialPerfModel();
  const numRanks = opts.numWorkers * opts.dataParallelSize;
  const engines: Engine[] = [];
  for (let r = 0; r < numRanks; r++) engines.push(new Engine({ ...args, seed: (args.seed + r) | 0 }, perf));
  const load: RankLoadView = {
    numRanks,
    running: (r) => (engines[r] as Engine).numRunning,
    waiting: (r) => (engines[r] as Engine).numWaiting,
    activeBlocks: (r) => (engines[r] as Engine).numActiveBlocks,
    totalBlocks: () => args.numGpuBlocks,
  };
  const router: Router = createRouter(opts.router, load, {
    seed: opts.seed,
    blockSize: args.blockSize,
    ...(opts.kvOverlapScoreWeight === undefined ? {} : { kvOverlapScoreWeight: opts.kvOverlapScoreWeight }),
  });
  const useKv = router.policy === 'kv';

  const n = reqs.length;
  const tbs = opts.traceBlockSize;
  const arrivalMs = new Float64Array(n).fill(Number.NaN);
  const firstTokenMs = new Float64Array(n).fill(Number.NaN);
  const secondTokenMs = new Float64Array(n).fill(Number.NaN);
  const lastTokenMs = new Float64Array(n).fill(Number.NaN);
  const outputTokens = new Int32Array(n);
  const promptTokens = new Int32Array(n);
  const reusedTokens = new Int32Array(n);
  const admitted = new Uint8Array(n);
  const status = new Uint8Array(n);
  const rankOf = new Int32Array(n).fill(-1);
  const itl = new F64List();
  const binOut = new F64List();
  const binInFlight = new F64List();
  let inFlight = 0;

  const markBin = (t: number): number => {
    const b = Math.floor(t / 1000);
    while (binOut.length <= b) {
      binOut.push(0);
      binInFlight.push(binInFlight.length === 0 ? 0 : (binInFlight.data[binInFlight.length - 1] as number));
    }
    return b;
  };

  // Sessions: index of each request's next turn (-1 = none); first turns are scheduled up front.
  const nextTurn = new Int32Array(n).fill(-1);
  const arrivals = new EventHeap();
  {
    const lastOfSession = new Map<string, number>();
    let t0 = Number.POSITIVE_INFINITY;
    const isFirst = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const r = reqs[i] as TraceRequest;
      promptTokens[i] = effectiveInputLength(r, tbs);
      if (r.sessionId === null) {
        isFirst[i] = 1;
      } else {
        const prev = lastOfSession.get(r.sessionId);
        if (prev === undefined) isFirst[i] = 1;
        else nextTurn[prev] = i;
        lastOfSession.set(r.sessionId, i);
      }
      if (isFirst[i] === 1 && r.timestampMs < t0) t0 = r.timestampMs;
    }
    for (let i = 0; i < n; i++) {
      if (isFirst[i] === 1) arrivals.push(((reqs[i] as TraceRequest).timestampMs - t0) / opts.arrivalSpeedupRatio, i);
    }
  }

  // Engines' next pass start (Infinity = idle or stalled) and a heap of the scheduled ones.
  const passes = new EventHeap();
  const nextPassAt = new Float64Array(numRanks).fill(Number.POSITIVE_INFINITY);

  const memo = new TraceHashMemo(tbs, args.blockSize);
  let promptBuf = new Uint32Array(1 << 16);
  const hashHi = new Uint32Array(4096);
  const hashLo = new Uint32Array(4096);
  const route: { -readonly [K in keyof RouteRequest]: RouteRequest[K] } = {
    numBlocks: 0, seqHashHi: hashHi, seqHashLo: hashLo, promptTokens: 0, firstRank: 0, numCandidateRanks: numRanks,
  };

  const releaseNextTurn = (i: number, t: number): void => {
    const nx = nextTurn[i] as number;
    if (nx < 0) return;
    const delay = (reqs[nx] as TraceRequest).delayMs ?? 0;
    arrivals.push(t + delay / opts.arrivalSpeedupRatio, nx);
  };

  const speed = opts.speedupRatio;
  const decodeSpeed = opts.speedupRatio * opts.decodeSpeedupRatio;
  let numPasses = 0;
  let numPreemptions = 0;

  for (;;) {
    const tA = arrivals.peekTime();
    const tE = passes.peekTime();
    if (tA === Number.POSITIVE_INFINITY && tE === Number.POSITIVE_INFINITY) break;

    if (tA <= tE) {
      // ---- arrival
      const i = arrivals.pop();
      const req = reqs[i] as TraceRequest;
      arrivalMs[i] = tA;
      const promptLen = promptTokens[i] as number;
      if (promptBuf.length < promptLen) promptBuf = new Uint32Array(Math.max(promptLen, promptBuf.length * 2));
      synthesizePromptTokensInto(req, tbs, promptBuf);
      // The engine copies the prompt and takes its length from the array: pass an exact view.
      const prompt = promptBuf.subarray(0, promptLen);
      route.promptTokens = prompt.length;
      if (useKv) {
        const nb = Math.floor(prompt.length / args.blockSize);
        if (nb > route.seqHashHi.length) {
          route.seqHashHi = new Uint32Array(nb);
          route.seqHashLo = new Uint32Array(nb);
        }
        route.numBlocks = memo.hashes(req, prompt, route.seqHashHi, route.seqHashLo);
      } else {
        route.numBlocks = 0;
      }
      const rank = router.pick(route);
      rankOf[i] = rank;
      const engine = engines[rank] as Engine;
      const b = markBin(tA);
      if (engine.addRequest(i, prompt, req.outputLength) === AddOutcome.rejectedTooLarge) {
        status[i] = RequestStatus.rejected;
        releaseNextTurn(i, tA);
        continue;
      }
      inFlight++;
      binInFlight.data[b] = inFlight;
      if (nextPassAt[rank] === Number.POSITIVE_INFINITY) {
        nextPassAt[rank] = tA;
        passes.push(tA, rank);
      }
      continue;
    }

    // ---- engine pass
    const rank = passes.pop();
    const t = tE;
    nextPassAt[rank] = Number.POSITIVE_INFINITY;
    const engine = engines[rank] as Engine;
    const res = engine.step(t);
    numPasses++;
    numPreemptions += res.numPreemptions;
    const end = t + res.prefillMs / speed + res.decodeMs / decodeSpeed;

    const log = engine.takeEvents();
    if (useKv) {
      for (let e = 0; e < log.count; e++) {
        const kind = log.kind[e];
        if (kind === KvEventKind.stored) router.onStored(rank, log.hashCount[e] as number, log.seqHashHi, log.seqHashLo, log.hashStart[e] as number);
        else if (kind === KvEventKind.removed) router.onRemoved(rank, log.hashCount[e] as number, log.seqHashHi, log.seqHashLo, log.hashStart[e] as number);
        else router.onCleared(rank);
      }
    }

    for (let a = 0; a < res.numAdmissions; a++) {
      const id = res.admissionRequestIds[a] as number;
      if (admitted[id] === 0) {
        admitted[id] = 1;
        reusedTokens[id] = res.admissionCachedTokens[a] as number;
      }
    }

    if (res.numTokens > 0) {
      const b = markBin(end);
      binOut.data[b] = (binOut.data[b] as number) + res.numTokens;
      const ids = res.tokenRequestIds;
      for (let k = 0; k < res.numTokens; k++) {
        const id = ids[k] as number;
        const cnt = outputTokens[id] as number;
        if (cnt === 0) firstTokenMs[id] = end;
        else {
          if (cnt === 1) secondTokenMs[id] = end;
          itl.push(end - (lastTokenMs[id] as number));
        }
        lastTokenMs[id] = end;
        outputTokens[id] = cnt + 1;
      }
    }

    if (res.numFinished > 0) {
      const b = markBin(end);
      for (let k = 0; k < res.numFinished; k++) {
        const id = res.finishedRequestIds[k] as number;
        status[id] = res.finishedReasons[k] === FinishReason.length ? RequestStatus.completed : RequestStatus.rejected;
        inFlight--;
        releaseNextTurn(id, end);
      }
      binInFlight.data[b] = inFlight;
    }

    // A pass that changed nothing would repeat forever: such a rank sleeps until its next arrival.
    const progressed = res.numScheduledTokens > 0 || res.numFinished > 0 || res.numTokens > 0 || end > t;
    if (engine.hasWork() && progressed) {
      nextPassAt[rank] = end;
      passes.push(end, rank);
    }
  }

  return {
    numRanks,
    engineArgs: args,
    numRequests: n,
    arrivalMs,
    firstTokenMs,
    secondTokenMs,
    lastTokenMs,
    outputTokens,
    promptTokens,
    reusedTokens,
    status,
    rank: rankOf,
    itlMs: itl.view(),
    numPasses,
    numPreemptions,
    wallTimeMs: performance.now() - wallStart,
    binOutputTokens: binOut.view(),
    binInFlight: binInFlight.view(),
  };
}
