/**
 * Simulated GPU ranks on one thread (one rank per thread by default). Each rank owns an engine
 * and runs Dynamo's live loop (`scheduler/vllm/live.rs`): drain the inbox, run one pass, publish
 * KV events + FPM (visible at pass start), wait for the modeled deadline, then hand the pass's
 * tokens to the coordinator.
 *
 * The thread loop is synchronous on purpose: it blocks in Atomics.wait (idle or pacing) and never
 * needs this thread's event loop, so a pass costs no timers and no promise turns. An expired
 * deadline (speedup 0, or a pass whose CPU time exceeded its modeled time) costs no wait at all.
 * With several ranks per thread (--ranks-per-thread) one wait serves all of them: the thread
 * sleeps until its earliest deadline and services, in one round, every rank due by then; ranks
 * whose deadlines follow within POLL_MS are met by polling the clock, not by another sleep (a
 * timed wait returns late by the kernel's timer slack plus the VM's wake-up latency, p50 ~0.13 ms
 * here, and costs a wake-up). A wake-up services only the ranks whose
 * time came or that the coordinator marked (inbox record, fault, stop), so an idle rank costs
 * nothing between its heartbeats, and idle heartbeats fall on a per-process grid
 * (HEARTBEAT_GRID_MS) so all idle ranks of a thread send theirs in one wake-up.
 *
 * Doorbells: a rank marks its bit in the output and publisher doorbells after each write, and the
 * thread signals each bell at most once per service round (one wake-up of the main thread or the
 * publisher for all ranks serviced together, not one per pass). Output records nobody waits for
 * yet (tokens of non-streaming requests) are only marked (OUTPUT_LAZY in rank-channel.ts).
 */
import { threadId } from 'node:worker_threads';
import { Engine, createPolynomialPerfModel, createInterpolatedPerfModel } from '../src/engine/engine.js';
import type { EngineArgs, PerfModel, StepResult } from '../src/engine/types.js';
import { FinishReason, KvEventKind, AddOutcome } from '../src/engine/types.js';
import type { PerfProfileArrays as ProfileArrays } from '../src/engine/perf-model.js';
import { SpscRing, Doorbell } from '../src/protocol/ring.js';
import type { RingMemory } from '../src/protocol/ring.js';
import { RankEventWriter } from '../src/protocol/rank-events.js';
import type { PendingSignal } from '../src/protocol/rank-events.js';
import { MsgpackWriter } from '../src/protocol/wire.js';
import { Ctl, FaultKind, INBOX_ADD_HEADER, INBOX_FLAG_SEEDED, INBOX_FLAG_STOP, INBOX_FLAG_URGENT, INBOX_N_MAX, OUTPUT_LAZY_FILL, OUTPUT_LAZY_MAX_MS, OUTPUT_LAZY_MAX_TOKENS, INBOX_N_SHIFT, InboxKind, OUTPUT_HEADER, RankState, takeThreadRanks } from '../src/protocol/rank-channel.js';
import { Scalar, counterLayout, observe } from '../src/protocol/rank-counters.js';
import { currentTid, pinThread } from '../src/util/affinity.js';

export interface RankTask {
  rank: number;
  workerIndex: number;
  dpRank: number;
  /** Decimal string: bigint does not survive piscina's structured clone of every field. */
  workerId: string;
  engineArgs: EngineArgs;
  profile: ProfileArrays | null;
  speedupRatio: number;
  decodeSpeedupRatio: number;
  maxModelLen: number;
  heartbeatMs: number;
  ctl: SharedArrayBuffer;
  inbox: RingMemory;
  output: RingMemory;
  events: RingMemory;
  counters: SharedArrayBuffer;
  outputBell: SharedArrayBuffer;
  publisherBell: SharedArrayBuffer;
  kvEventsFormat: 'dynamo' | 'vllm' | 'both';
  vllmEncoding: 'array' | 'map';
  dynamoWire: 'current' | 'legacy';
  /** vLLM KVEventBatch records for the ZMQ publisher, whatever kvEventsFormat says. */
  vllmBatches: boolean;
  /** Forward stored/removed hashes to the coordinator (kv router). */
  routerFeed: boolean;
  /** A replacement after a crash: announce an empty cache (AllBlocksCleared). */
  restarted: boolean;
  /** Token ids seeded requests generate (the tokenizer's round-tripping subset), shared by every rank; null = engine default. */
  generatedVocabulary: SharedArrayBuffer | null;
}

/** One piscina task: the ranks one thread runs. */
export interface ThreadTask {
  ranks: RankTask[];
  /** Int32 wake word shared by these ranks: the coordinator bumps and notifies it after writing any of their inboxes. */
  wake: SharedArrayBuffer;
  /** The thread's large inbox: add records too big for a rank's own inbox (InboxKind.addLarge). */
  largeInbox: SharedArrayBuffer;
  cpu: number | null;
}

export interface RankTaskResult {
  ranks: number[];
  threadId: number;
}

/**
 * A deadline this close is waited for by polling the clock, not by a timed sleep. Measured with
 * bench:pacing (bench/README.md): against the former 0.2 ms grouping window (one sleep until the
 * last deadline within 0.2 ms of the earliest) it cut lateness p50 from ~0.37 to ~0.15 ms at the
 * same wake-ups and CPU per pass. Waking 0.1 ms early as well cut p50 to ~0.03 ms but cost ~1 µs
 * of CPU per pass (more wake-ups); polling 0.3 ms or more doubled the CPU per pass.
 */
const POLL_MS = 0.1;
/**
 * The output and event rings rewind to their start once this far in and drained (SpscRing): a
 * busy rank's records then cycle through one resident, cached page of each ring instead of
 * faulting in and missing through all of it (256 KiB each by default).
 */
const RING_REWIND_BYTES = 4096;
/** performance.timeOrigin is a getter that validates its receiver on every read. */
const TIME_ORIGIN_MS = performance.timeOrigin;
/** Idle heartbeats (FPM, ActiveLoad) are due on multiples of this (epoch ms), batching a thread's ranks. */
const HEARTBEAT_GRID_MS = 250;

const LOAD_DEBOUNCE_MS = 1;
const LOAD_HEARTBEAT_MS = 5000;

/** The first multiple of HEARTBEAT_GRID_MS at or after t. */
function onGrid(t: number): number {
  return Math.ceil(t / HEARTBEAT_GRID_MS) * HEARTBEAT_GRID_MS;
}

/** Wall clock shared by all threads of the process (performance.now has a per-thread origin). */
function epochMs(): number {
  return TIME_ORIGIN_MS + performance.now();
}

export default function runRanks(task: ThreadTask): RankTaskResult {
  let tid: number | null = null;
  try {
    tid = currentTid();
    if (task.cpu !== null) pinThread(tid, [task.cpu]);
  } finally {
    for (const r of task.ranks) {
      const c = new Float64Array(r.counters);
      c[Scalar.tid] = tid ?? -1;
      c[Scalar.cpu] = task.cpu ?? -1;
    }
  }
  const wake = new Int32Array(task.wake);
  const largeInbox = new SpscRing(task.largeInbox);
  const inboxScratch = new Uint8Array(Math.max(largeInbox.capacity, ...task.ranks.map((r) => new SpscRing(r.inbox).capacity)));
  const out = new Uint8Array(64 * 1024);
  const first = task.ranks[0];
  const shared: ThreadScratch = {
    inboxScratch, out, outView: new DataView(out.buffer), largeInbox, stash: new Map(), encoder: new MsgpackWriter(8192),
    outputDue: { pending: false }, eventsDue: { pending: false },
  };
  // Signal-only instances (no producer bit): the ranks mark their own bits.
  const outputBell = first === undefined ? null : new Doorbell(first.outputBell);
  const publisherBell = first === undefined ? null : new Doorbell(first.publisherBell);
  const signalBells = (): void => {
    if (shared.outputDue.pending) {
      shared.outputDue.pending = false;
      outputBell!.signal();
    }
    if (shared.eventsDue.pending) {
      shared.eventsDue.pending = false;
      publisherBell!.signal();
    }
  };
  const loops = task.ranks.map((r) => createRankLoop(r, shared));
  for (const l of loops) l.begin();
  signalBells();
  const n = loops.length;
  // When each rank next needs the thread (epoch ms; 0 = now, Infinity = stopped).
  const nextAt = new Float64Array(n);
  const marked = new Uint8Array(n);
  let stopped = 0;
  try {
    for (;;) {
      const seen = Atomics.load(wake, 0);
      takeThreadRanks(wake, marked);
      let earliest = Infinity;
      let now = epochMs();
      for (let i = 0; i < n; i++) {
        let t = nextAt[i] as number;
        if (t <= now || marked[i] === 1) {
          const wasMarked = marked[i] === 1;
          marked[i] = 0;
          if (t === Infinity) continue;
          t = (loops[i] as RankLoop).service(now, wasMarked);
          if (t === Infinity) stopped++;
          nextAt[i] = t;
          now = epochMs();
        }
        if (t < earliest) earliest = t;
      }
      signalBells();
      if (stopped === n) break;
      if (earliest <= now) continue;
      if (earliest - now <= POLL_MS) {
        // Poll to the deadline; a coordinator mark (wake word bumped) ends the poll early too.
        while (epochMs() < earliest && Atomics.load(wake, 0) === seen);
        continue;
      }
      Atomics.wait(wake, 0, seen, earliest - now);
    }
  } finally {
    for (const l of loops) l.end();
  }
  return { ranks: task.ranks.map((r) => r.rank), threadId };
}

/** Buffers the ranks of one thread share (they run one at a time). */
interface ThreadScratch {
  readonly inboxScratch: Uint8Array;
  /** Output record being built; grown by whichever rank needs more. */
  out: Uint8Array;
  outView: DataView;
  /** Large add records in arrival order (any of the thread's ranks), and those read ahead of their marker, by request id. */
  readonly largeInbox: SpscRing;
  readonly stash: Map<number, Uint8Array>;
  /** msgpack encoder of the ranks' event writers. */
  readonly encoder: MsgpackWriter;
  /** A rank marked the output / publisher doorbell and wants it signalled at the end of this service round. */
  readonly outputDue: PendingSignal;
  readonly eventsDue: PendingSignal;
}

function createRankLoop(task: RankTask, shared: ThreadScratch): RankLoop {
  const ctl = new Int32Array(task.ctl);
  const counters = new Float64Array(task.counters);
  const layout = counterLayout(task.maxModelLen);
  const perf: PerfModel = task.profile === null ? createPolynomialPerfModel() : createInterpolatedPerfModel(task.profile);
  const engine = new Engine(task.engineArgs, perf,
    task.generatedVocabulary === null ? {} : { generatedVocabulary: new Uint32Array(task.generatedVocabulary) });
  const inbox = new SpscRing(task.inbox);
  const output = new SpscRing(task.output, { rewindAtBytes: RING_REWIND_BYTES });
  const eventRing = new SpscRing(task.events, { rewindAtBytes: RING_REWIND_BYTES });
  const publisherBell = new Doorbell(task.publisherBell, task.rank);
  const writer = new RankEventWriter(eventRing, {
    workerId: BigInt(task.workerId),
    dpRank: task.dpRank,
    kvEventsFormat: task.kvEventsFormat,
    vllmEncoding: task.vllmEncoding,
    dynamoWire: task.dynamoWire,
    vllmBatches: task.vllmBatches,
    // In the coordinator's counters SAB: ids continue where a crashed thread stopped.
    idStore: { cells: counters, nextEventIdSlot: Scalar.nextKvEventId, counterIdSlot: Scalar.fpmCounterId },
    // Marked per write call (a drain visits only rings that rang), signalled once per service round.
    doorbell: publisherBell,
    deferredSignal: shared.eventsDue,
    encoder: shared.encoder,
  });
  return new RankLoop(task, ctl, counters, layout, engine, inbox, output, new Doorbell(task.outputBell, task.rank), writer, eventRing, shared);
}

/** Per-request timing kept by the rank for vLLM's latency histograms. */
class RequestTimes {
  readonly slotById = new Map<number, number>();
  private freeSlots: number[] = [];
  // Small at first (an idle rank), doubled on demand.
  arrivalMs = new Float64Array(8);
  scheduledMs = new Float64Array(8);
  firstTokenMs = new Float64Array(8);
  lastTokenMs = new Float64Array(8);
  numGenerated = new Int32Array(8);
  promptLen = new Int32Array(8);
  maxTokens = new Int32Array(8);
  /** `n` of the request (0: not observed, a later choice of a parallel-sampling group). */
  paramsN = new Int32Array(8);
  /** Prompt tokens served from the prefix cache at first admission (-1: not admitted yet). */
  cachedTokens = new Int32Array(8);
  /** 1: the request ends with finish_reason "stop" (INBOX_FLAG_STOP). */
  stopAtEnd = new Uint8Array(8);
  /** 1: its client reads tokens as they come (INBOX_FLAG_URGENT): a pass with its tokens signals the coordinator. */
  urgent = new Uint8Array(8);
  private next = 0;

  add(id: number, arrivalMs: number, promptLen: number, maxTokens: number, paramsN: number, stopAtEnd: boolean, urgent: boolean): void {
    let slot = this.freeSlots.pop();
    if (slot === undefined) {
      slot = this.next++;
      if (slot >= this.arrivalMs.length) this.grow();
    }
    this.slotById.set(id, slot);
    this.arrivalMs[slot] = arrivalMs;
    this.scheduledMs[slot] = -1;
    this.firstTokenMs[slot] = -1;
    this.lastTokenMs[slot] = -1;
    this.numGenerated[slot] = 0;
    this.promptLen[slot] = promptLen;
    this.maxTokens[slot] = maxTokens;
    this.paramsN[slot] = paramsN;
    this.cachedTokens[slot] = -1;
    this.stopAtEnd[slot] = stopAtEnd ? 1 : 0;
    this.urgent[slot] = urgent ? 1 : 0;
  }

  release(id: number): void {
    const slot = this.slotById.get(id);
    if (slot === undefined) return;
    this.slotById.delete(id);
    this.freeSlots.push(slot);
  }

  private grow(): void {
    const n = this.arrivalMs.length * 2;
    const f = (a: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => {
      const b = new Float64Array(n);
      b.set(a);
      return b;
    };
    const i = (a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> => {
      const b = new Int32Array(n);
      b.set(a);
      return b;
    };
    this.arrivalMs = f(this.arrivalMs);
    this.scheduledMs = f(this.scheduledMs);
    this.firstTokenMs = f(this.firstTokenMs);
    this.lastTokenMs = f(this.lastTokenMs);
    this.numGenerated = i(this.numGenerated);
    this.promptLen = i(this.promptLen);
    this.maxTokens = i(this.maxTokens);
    this.paramsN = i(this.paramsN);
    this.cachedTokens = i(this.cachedTokens);
    const stop = new Uint8Array(n);
    stop.set(this.stopAtEnd);
    this.stopAtEnd = stop;
    const urgent = new Uint8Array(n);
    urgent.set(this.urgent);
    this.urgent = urgent;
  }
}

class RankLoop {
  private readonly times = new RequestTimes();
  private inboxScratch: Uint8Array;
  private inboxView: DataView;
  /** Rejections seen while draining the inbox, sent with the next output record. */
  private rejectedIds: number[] = [];
  /**
   * Tokens of passes nobody waits for yet (OUTPUT_LAZY): (request id, token id) pairs, oldest
   * first, written ahead of the next record's own tokens. Grown on demand up to OUTPUT_LAZY_MAX_TOKENS.
   */
  private lazyTokens = new Int32Array(0);
  private lazyCount = 0;
  private lazySinceMs = 0;
  private lastLoadMs = 0;
  private lastLoadKey = -1;
  private readonly startMs = epochMs();
  private lastResult: StepResult | null = null;

  constructor(
    private readonly task: RankTask,
    private readonly ctl: Int32Array,
    private readonly c: Float64Array,
    private readonly layout: ReturnType<typeof counterLayout>,
    private readonly engine: Engine,
    private readonly inbox: SpscRing,
    private readonly output: SpscRing,
    private readonly outputBell: Doorbell,
    private readonly writer: RankEventWriter,
    private readonly eventRing: SpscRing,
    private readonly shared: ThreadScratch,
  ) {
    this.inboxScratch = shared.inboxScratch;
    this.inboxView = new DataView(this.inboxScratch.buffer, this.inboxScratch.byteOffset, this.inboxScratch.byteLength);
  }

  /** Pass in flight: its tokens are handed over at `deadline` (epoch ms). */
  private sleeping = false;
  private deadline = 0;
  /** The pass had to wait for its deadline (only such passes count in the lateness histogram). */
  private waited = false;

  begin(): void {
    const { engine, task } = this;
    this.nextHeartbeatMs = onGrid(epochMs() + task.heartbeatMs);
    if (task.restarted) {
      engine.clearAll();
      this.publishEvents(epochMs());
    }
    Atomics.store(this.ctl, Ctl.state, RankState.running);
  }

  end(): void {
    Atomics.store(this.ctl, Ctl.state, RankState.stopped);
  }

  stopRequested(): boolean {
    return Atomics.load(this.ctl, Ctl.stop) !== 0;
  }

  /**
   * The coordinator marked this rank (inbox record, stop, fault) and it has not looked yet. Only
   * then are the control words and the inbox read: a pass touches no line the coordinator writes.
   */
  private attention = true;

  /**
   * Advance this rank as far as it can without waiting. Returns the epoch ms at which it next
   * needs the thread: a pass deadline, the idle heartbeat, or a time <= now for "call again".
   * `marked`: the coordinator marked the rank in the thread's wake word since the last call.
   */
  service(now: number, marked: boolean): number {
    const { engine, task } = this;
    if (marked) this.attention = true;
    if (this.sleeping) {
      if (now < this.deadline) return this.deadline;
      this.finishPass(now);
    }
    if (this.attention) {
      this.attention = false;
      if (this.stopRequested()) return Infinity;
      this.maybeFault();
      this.drainInbox();
    }
    if (this.rejectedIds.length > 0) this.writeOutput(0, now, true);
    if (engine.hasWork()) {
      this.startPass();
      return this.deadline;
    }
    // Idle with lazy tokens left (their requests were aborted): hand them over, nothing follows.
    if (this.lazyCount > 0) this.writeOutput(0, now, false);
    this.updateGauges();
    this.maybePublishLoad(now);
    if (now >= this.nextHeartbeatMs) {
      this.writer.writeHeartbeat();
      this.c[Scalar.eventDrops] = this.writer.droppedRecords;
      this.c[Scalar.heartbeats] = (this.c[Scalar.heartbeats] as number) + 1;
      // Sent on a grid point (or just after): the next one is exactly one period later.
      this.nextHeartbeatMs = onGrid(now + task.heartbeatMs - HEARTBEAT_GRID_MS / 2);
    }
    return this.nextHeartbeatMs;
  }

  /** When the next idle FPM heartbeat is due: heartbeatMs after the last FPM, rounded up to the grid. */
  private nextHeartbeatMs = 0;

  private startPass(): void {
    const { engine, task } = this;
    const passStart = epochMs();
    const res = engine.step(passStart - this.startMs);
    this.lastResult = res;
    const speedup = task.speedupRatio;
    const modeledMs = speedup > 0 ? res.prefillMs / speedup + res.decodeMs / (speedup * task.decodeSpeedupRatio) : 0;
    // Visibility point of the vLLM flavour: KV events and FPM go out at pass start, before the wait.
    this.publishEvents(passStart);
    this.writer.writeFpm(res.fpm, modeledMs / 1000);
    // Every kind of record can be dropped (FPM, heartbeats and loads too, not only KV events).
    this.c[Scalar.eventDrops] = this.writer.droppedRecords;
    this.nextHeartbeatMs = onGrid(passStart + task.heartbeatMs);
    this.passStart = passStart;
    this.deadline = passStart + modeledMs;
    this.waited = this.deadline > epochMs();
    this.sleeping = true;
  }

  private passStart = 0;

  private finishPass(now: number): void {
    const { c, layout } = this;
    const res = this.lastResult as StepResult;
    this.sleeping = false;
    if (this.waited) observe(c, 0, layout.lateness, Math.max(0, now - this.deadline) / 1000);
    c[Scalar.passes] = (c[Scalar.passes] as number) + 1;
    if (res.numScheduledTokens > 0) observe(c, 0, layout.iterationTokens, res.numScheduledTokens);
    const urgent = this.recordPass(res, this.passStart, now) || res.numFinished > 0 || res.numAdmissions > 0;
    if (urgent || this.hasRouterFeed()) this.writeOutput(res.numTokens + res.numFinished + res.numAdmissions, now, urgent);
    else if (!this.keepLazy(res, now)) this.writeOutput(res.numTokens, now, false);
    this.updateGauges();
    this.maybePublishLoad(now);
  }

  /**
   * Latency histograms and token counters, vLLM definitions (loggers.py / stats.py). Returns
   * whether a token of the pass is awaited now: an urgent request's, or a request's first.
   */
  private recordPass(res: StepResult, passStart: number, tokenMs: number): boolean {
    const { c, layout, times } = this;
    let awaited = false;
    for (let i = 0; i < res.numAdmissions; i++) {
      const slot = times.slotById.get(res.admissionRequestIds[i] as number);
      if (slot === undefined) continue;
      c[Scalar.prefixQueries] = (c[Scalar.prefixQueries] as number) + (res.admissionPromptTokens[i] as number);
      c[Scalar.prefixHits] = (c[Scalar.prefixHits] as number) + (res.admissionCachedTokens[i] as number);
      if ((times.scheduledMs[slot] as number) < 0) {
        // vLLM's PromptTokenStats: a fully cached prompt still recomputes its last token.
        const prompt = res.admissionPromptTokens[i] as number;
        const cached = res.admissionCachedTokens[i] as number;
        const recomputed = cached >= prompt ? 1 : 0;
        times.cachedTokens[slot] = cached - recomputed;
        c[Scalar.promptTokensLocalCacheHit] = (c[Scalar.promptTokensLocalCacheHit] as number) + cached - recomputed;
        c[Scalar.promptTokensLocalCompute] = (c[Scalar.promptTokensLocalCompute] as number) + prompt - cached + recomputed;
        c[Scalar.promptTokensCached] = (c[Scalar.promptTokensCached] as number) + cached - recomputed;
        c[Scalar.promptTokensRecomputed] = (c[Scalar.promptTokensRecomputed] as number) + recomputed;
        times.scheduledMs[slot] = passStart;
        observe(c, 0, layout.queue, Math.max(0, passStart - (times.arrivalMs[slot] as number)) / 1000);
      }
    }
    for (let i = 0; i < res.numTokens; i++) {
      const slot = times.slotById.get(res.tokenRequestIds[i] as number);
      if (slot === undefined) continue;
      const n = times.numGenerated[slot] as number;
      if (n === 0 || times.urgent[slot] === 1) awaited = true;
      if (n === 0) {
        times.firstTokenMs[slot] = tokenMs;
        observe(c, 0, layout.ttft, Math.max(0, tokenMs - (times.arrivalMs[slot] as number)) / 1000);
        observe(c, 0, layout.requestMaxNumGenerationTokens, times.maxTokens[slot] as number);
        const paramsN = times.paramsN[slot] as number;
        if (paramsN > 0) observe(c, 0, layout.requestParamsN, paramsN);
        c[Scalar.promptTokens] = (c[Scalar.promptTokens] as number) + (times.promptLen[slot] as number);
      } else {
        observe(c, 0, layout.itl, Math.max(0, tokenMs - (times.lastTokenMs[slot] as number)) / 1000);
      }
      times.lastTokenMs[slot] = tokenMs;
      times.numGenerated[slot] = n + 1;
    }
    c[Scalar.generationTokens] = (c[Scalar.generationTokens] as number) + res.numTokens;
    for (let i = 0; i < res.numFinished; i++) {
      const id = res.finishedRequestIds[i] as number;
      const slot = times.slotById.get(id);
      if (slot === undefined) continue;
      if (res.finishedReasons[i] === FinishReason.length) {
        // A request the frontend ended at a stop string / stop token / EOS finishes with "stop".
        if (times.stopAtEnd[slot] === 1) c[Scalar.successStop] = (c[Scalar.successStop] as number) + 1;
        else c[Scalar.successLength] = (c[Scalar.successLength] as number) + 1;
        const arrival = times.arrivalMs[slot] as number;
        const scheduled = times.scheduledMs[slot] as number;
        const first = times.firstTokenMs[slot] as number;
        const last = times.lastTokenMs[slot] as number;
        observe(c, 0, layout.e2e, Math.max(0, tokenMs - arrival) / 1000);
        observe(c, 0, layout.prefill, Math.max(0, first - scheduled) / 1000);
        observe(c, 0, layout.decode, Math.max(0, last - first) / 1000);
        observe(c, 0, layout.inference, Math.max(0, last - scheduled) / 1000);
        observe(c, 0, layout.requestPromptTokens, times.promptLen[slot] as number);
        observe(c, 0, layout.requestGenerationTokens, times.numGenerated[slot] as number);
        observe(c, 0, layout.requestMaxTokens, times.maxTokens[slot] as number);
        // vLLM's mean_time_per_output_token: decode time over the tokens after the first.
        const generated = times.numGenerated[slot] as number;
        observe(c, 0, layout.tpot, generated > 1 ? Math.max(0, last - first) / 1000 / (generated - 1) : 0);
        observe(c, 0, layout.requestPrefillKvComputed, (times.promptLen[slot] as number) - Math.max(0, times.cachedTokens[slot] as number));
      } else {
        c[Scalar.successError] = (c[Scalar.successError] as number) + 1;
      }
      times.release(id);
    }
    return awaited;
  }

  private drainInbox(): void {
    const { inbox, inboxScratch: buf, inboxView: view, engine, times, c } = this;
    for (;;) {
      const len = inbox.read(buf);
      if (len < 0) break;
      let kind = view.getUint32(0, true);
      const id = view.getInt32(4, true);
      if (kind === InboxKind.addLarge) {
        this.takeLarge(id);
        kind = InboxKind.add;
      }
      if (kind === InboxKind.add) {
        const maxTokens = view.getInt32(8, true);
        const numTokens = view.getUint32(12, true);
        const arrivalMs = view.getFloat64(16, true);
        const flags = view.getUint32(28, true);
        const seeded = (flags & INBOX_FLAG_SEEDED) !== 0;
        // The engine keeps the prompt: give it its own copy, the scratch is reused.
        const prompt = new Uint32Array(numTokens);
        prompt.set(new Uint32Array(buf.buffer, buf.byteOffset + INBOX_ADD_HEADER, numTokens));
        const outcome = engine.addRequest(id, prompt, maxTokens, seeded ? view.getInt32(24, true) : undefined);
        if (outcome === AddOutcome.rejectedTooLarge) {
          this.rejectedIds.push(id);
          c[Scalar.successError] = (c[Scalar.successError] as number) + 1;
        } else {
          times.add(id, arrivalMs, numTokens, maxTokens, (flags >>> INBOX_N_SHIFT) & INBOX_N_MAX, (flags & INBOX_FLAG_STOP) !== 0, (flags & INBOX_FLAG_URGENT) !== 0);
        }
      } else if (kind === InboxKind.abort) {
        if (engine.abortRequest(id)) c[Scalar.successAbort] = (c[Scalar.successAbort] as number) + 1;
        times.release(id);
      }
    }
    const hw = inbox.highWaterBytes();
    if (hw > (c[Scalar.inboxRingHighWater] as number)) c[Scalar.inboxRingHighWater] = hw;
  }

  /**
   * Put the large add record of request `id` in the inbox scratch: from the stash, or reading the
   * thread's large inbox in order (stashing records of other ranks met on the way).
   */
  private takeLarge(id: number): void {
    const { stash, largeInbox } = this.shared;
    const buf = this.inboxScratch;
    const kept = stash.get(id);
    if (kept !== undefined) {
      stash.delete(id);
      buf.set(kept);
      return;
    }
    for (;;) {
      const len = largeInbox.read(buf);
      if (len < 0) throw new Error(`rank ${this.task.rank}: marker for request ${id} but no record in the large inbox`);
      const got = this.inboxView.getInt32(4, true);
      if (got === id) return;
      stash.set(got, buf.slice(0, len));
    }
  }

  private publishEvents(nowMs: number): void {
    const log = this.engine.takeEvents();
    if (log.count === 0) return;
    this.writer.writeKvEvents(log, nowMs);
    this.c[Scalar.eventDrops] = this.writer.droppedRecords;
    const hw = this.eventRing.highWaterBytes();
    if (hw > (this.c[Scalar.eventRingHighWater] as number)) this.c[Scalar.eventRingHighWater] = hw;
    if (this.task.routerFeed) this.collectRouterFeed(log);
  }

  private feedStoredHi: number[] = [];
  private feedStoredLo: number[] = [];
  private feedRemovedHi: number[] = [];
  private feedRemovedLo: number[] = [];
  private feedCleared = false;

  private collectRouterFeed(log: ReturnType<Engine['takeEvents']>): void {
    for (let e = 0; e < log.count; e++) {
      const kind = log.kind[e];
      const start = log.hashStart[e] as number;
      const n = log.hashCount[e] as number;
      if (kind === KvEventKind.cleared) {
        this.feedCleared = true;
        this.feedStoredHi.length = 0;
        this.feedStoredLo.length = 0;
        this.feedRemovedHi.length = 0;
        this.feedRemovedLo.length = 0;
        continue;
      }
      const hi = kind === KvEventKind.stored ? this.feedStoredHi : this.feedRemovedHi;
      const lo = kind === KvEventKind.stored ? this.feedStoredLo : this.feedRemovedLo;
      for (let j = start; j < start + n; j++) {
        hi.push(log.seqHashHi[j] as number);
        lo.push(log.seqHashLo[j] as number);
      }
    }
  }

  private hasRouterFeed(): boolean {
    return this.feedStoredHi.length + this.feedRemovedHi.length > 0 || this.feedCleared;
  }

  /**
   * A pass whose tokens nobody waits for yet: keep them for a later record (true), unless the
   * oldest kept token is OUTPUT_LAZY_MAX_MS old or OUTPUT_LAZY_MAX_TOKENS would be exceeded.
   */
  private keepLazy(res: StepResult, now: number): boolean {
    const n = res.numTokens;
    if (n === 0) return true;
    const count = this.lazyCount;
    if (count + n > OUTPUT_LAZY_MAX_TOKENS || (count > 0 && now - this.lazySinceMs >= OUTPUT_LAZY_MAX_MS)) return false;
    if (2 * (count + n) > this.lazyTokens.length) {
      let size = Math.max(64, this.lazyTokens.length);
      while (size < 2 * (count + n)) size *= 2;
      const grown = new Int32Array(size);
      grown.set(this.lazyTokens.subarray(0, 2 * count));
      this.lazyTokens = grown;
    }
    const t = this.lazyTokens;
    for (let i = 0; i < n; i++) {
      t[2 * (count + i)] = res.tokenRequestIds[i] as number;
      t[2 * (count + i) + 1] = res.tokenIds[i] as number;
    }
    if (count === 0) this.lazySinceMs = now;
    this.lazyCount = count + n;
    return true;
  }

  private ensureOut(bytes: number): void {
    const sh = this.shared;
    if (bytes <= sh.out.length) return;
    let n = sh.out.length;
    while (n < bytes) n *= 2;
    sh.out = new Uint8Array(n);
    sh.outView = new DataView(sh.out.buffer);
  }

  /**
   * One output record: the pass's tokens, finishes, admissions, router feed, inbox rejections.
   * `urgent`: someone waits for it now (OUTPUT_LAZY in rank-channel.ts).
   */
  private writeOutput(items: number, tokenMs: number, urgent: boolean): void {
    const res = items === 0 ? null : this.lastResult;
    const rejected = this.rejectedIds;
    const lazy = this.lazyCount;
    const numTokens = lazy + (res === null ? 0 : res.numTokens);
    // A lazy record (urgent false, items = its tokens) carries no finishes or admissions: there were none.
    const engineFinished = res === null ? 0 : res.numFinished;
    const numFinished = engineFinished + rejected.length;
    const numAdmissions = res === null ? 0 : res.numAdmissions;
    const nStored = this.feedStoredHi.length;
    const nRemoved = this.feedRemovedHi.length;
    const cleared = this.feedCleared;
    if (numTokens + numFinished + numAdmissions + nStored + nRemoved === 0 && !cleared) return;
    const bytes = OUTPUT_HEADER + 8 * (numTokens + numFinished + numAdmissions + nStored + nRemoved);
    this.ensureOut(bytes);
    const out = this.shared.out;
    const v = this.shared.outView;
    v.setUint32(0, numTokens, true);
    v.setUint32(4, numFinished, true);
    v.setUint32(8, numAdmissions, true);
    v.setUint32(12, nStored, true);
    v.setUint32(16, nRemoved, true);
    v.setUint32(20, cleared ? 1 : 0, true);
        v.setFloat64(24, tokenMs, true);
    let o = OUTPUT_HEADER;
    const lt = this.lazyTokens;
    for (let i = 0; i < lazy; i++, o += 8) {
      v.setInt32(o, lt[2 * i] as number, true);
      v.setUint32(o + 4, lt[2 * i + 1] as number, true);
    }
    this.lazyCount = 0;
    if (res !== null) {
      for (let i = 0; i < res.numTokens; i++, o += 8) {
        v.setInt32(o, res.tokenRequestIds[i] as number, true);
        v.setUint32(o + 4, res.tokenIds[i] as number, true);
      }
      for (let i = 0; i < engineFinished; i++, o += 8) {
        v.setInt32(o, res.finishedRequestIds[i] as number, true);
        v.setUint32(o + 4, res.finishedReasons[i] as number, true);
      }
    }
    for (let i = 0; i < rejected.length; i++, o += 8) {
      v.setInt32(o, rejected[i] as number, true);
      v.setUint32(o + 4, FinishReason.rejected, true);
    }
    for (let i = 0; i < numAdmissions && res !== null; i++, o += 8) {
      v.setInt32(o, res.admissionRequestIds[i] as number, true);
      v.setInt32(o + 4, res.admissionCachedTokens[i] as number, true);
    }
    for (let i = 0; i < nStored; i++, o += 8) {
      v.setUint32(o, this.feedStoredHi[i] as number, true);
      v.setUint32(o + 4, this.feedStoredLo[i] as number, true);
    }
    for (let i = 0; i < nRemoved; i++, o += 8) {
      v.setUint32(o, this.feedRemovedHi[i] as number, true);
      v.setUint32(o + 4, this.feedRemovedLo[i] as number, true);
    }
    rejected.length = 0;
    this.feedStoredHi.length = 0;
    this.feedStoredLo.length = 0;
    this.feedRemovedHi.length = 0;
    this.feedRemovedLo.length = 0;
    this.feedCleared = false;
    const output = this.output;
    if (!output.tryWrite(out, 0, o)) {
      // Tokens are never dropped: wake the coordinator and wait for it to make room.
      this.outputBell.ring();
      while (!output.writeBlocking(out, 0, o, 50)) {
        if (Atomics.load(this.ctl, Ctl.stop) !== 0) return;
        this.outputBell.ring();
      }
    }
    this.outputBell.mark();
    // KV-router hashes steer routing: never lazy.
    if (urgent || nStored + nRemoved > 0 || cleared || output.usedAbove(output.capacity * OUTPUT_LAZY_FILL)) this.shared.outputDue.pending = true;
    const hw = this.output.highWaterBytes();
    if (hw > (this.c[Scalar.outputRingHighWater] as number)) this.c[Scalar.outputRingHighWater] = hw;
  }

  private updateGauges(): void {
    const { c, engine } = this;
    c[Scalar.running] = engine.numRunning;
    c[Scalar.waiting] = engine.numWaiting;
    c[Scalar.kvUsage] = engine.kvUsage;
    c[Scalar.activeBlocks] = engine.numActiveBlocks;
    c[Scalar.inactiveBlocks] = engine.numInactiveBlocks;
    c[Scalar.preemptions] = engine.numPreemptionsTotal;
    c[Scalar.lastPassEpochMs] = epochMs();
  }

  /** ActiveLoad on kv_metrics: changes after a 1 ms debounce, everything every 5 s. */
  private maybePublishLoad(now: number): void {
    const e = this.engine;
    const key = e.numActiveBlocks * 65536 + e.numWaiting;
    const due = now - this.lastLoadMs >= LOAD_HEARTBEAT_MS;
    if (!due && (key === this.lastLoadKey || now - this.lastLoadMs < LOAD_DEBOUNCE_MS)) return;
    this.lastLoadKey = key;
    this.lastLoadMs = now;
    this.writer.writeLoad(e.numActiveBlocks, e.numActiveBlocks);
    this.c[Scalar.eventDrops] = this.writer.droppedRecords;
  }

  private maybeFault(): void {
    const fault = Atomics.exchange(this.ctl, Ctl.fault, FaultKind.none);
    if (fault === FaultKind.none) return;
    if (fault === FaultKind.throw) throw new Error(`injected fault: rank ${this.task.rank} threw`);
    if (fault === FaultKind.exit) process.exit(7);
    if (fault === FaultKind.oom) {
      const hog: unknown[] = [];
      for (;;) hog.push(new Array(1 << 20).fill(hog.length));
    }
  }
}
