import { InvalidConfigError, InvalidRequestError, PerfModelError } from '../util/errors.js';
import { normalizeEngineArgs } from './args.js';
import { KvEventRecorder } from './events.js';
import { EngineInvariantError } from './invariant.js';
import { hashBlocks, identityBlockHash } from './kv/block-hash.js';
import { BlockPool, BlockState } from './kv/block-pool.js';
import type { PrefixCacheLookup } from './kv/hash-table.js';
import { Rng } from './rng.js';
import { defaultGeneratedVocabulary, generatedTokenId } from './generated-tokens.js';
import { RequestSlotMap } from './request-slots.js';
import { AddOutcome, FinishReason, emptyFpmSnapshot } from './types.js';
import type { AddOutcomeCode, EngineArgs, EngineOptions, FpmSnapshot, KvEventLog, PerfModel, PromptBlockHashes, StepResult } from './types.js';

export { DEFAULT_ENGINE_ARGS, normalizeEngineArgs } from './args.js';
export { computeBlockHashes, computeSequenceHashes } from './kv/block-hash.js';
export { createInterpolatedPerfModel, createPolynomialPerfModel } from './perf-model.js';
export type { PerfProfileArrays } from './perf-model.js';

const SlotStatus = { free: 0, waiting: 1, running: 2 } as const;
const Outcome = { scheduled: 0, blocked: 1, currentPreempted: 2, rejected: 3 } as const;
type OutcomeCode = (typeof Outcome)[keyof typeof Outcome];

/** Emitted token ids are uniform in [TOKEN_ID_MIN, TOKEN_ID_MIN + TOKEN_ID_SPAN) (Dynamo mocker). */
export const TOKEN_ID_MIN = 1000;
export const TOKEN_ID_SPAN = 1000;
/** Upper bound on the evictions of one allocation run whose reads are prefetched. */
const WARM_EVICTIONS = 128;
/** mulberry32's state increment (Rng.nextI32). */
const RNG_STEP = 0x6d2b79f5;

/** Rng.nextSmall(TOKEN_ID_MIN, TOKEN_ID_SPAN) for an already advanced state word, inlined. */
function tokenId(state: number): number {
  return TOKEN_ID_MIN + (((Rng.mix(state) >>> 12) * TOKEN_ID_SPAN) >>> 20);
}

/** Generated tokens reserved up front per request; longer outputs grow the slot buffers by doubling. */
const GENERATED_RESERVE = 1 << 16;

class StepResultBuffer implements StepResult {
  prefillMs = 0;
  decodeMs = 0;
  numScheduledTokens = 0;
  numPreemptions = 0;
  numPromptTokensScheduled = 0;
  numTokens = 0;
  tokenRequestIds: Int32Array;
  tokenIds: Uint32Array;
  numFinished = 0;
  finishedRequestIds: Int32Array;
  finishedReasons: Uint8Array;
  numAdmissions = 0;
  admissionRequestIds: Int32Array;
  admissionCachedTokens: Int32Array;
  admissionPromptTokens: Int32Array;
  fpm: FpmSnapshot;

  constructor(maxNumSeqs: number) {
    this.tokenRequestIds = new Int32Array(maxNumSeqs);
    this.tokenIds = new Uint32Array(maxNumSeqs);
    this.finishedRequestIds = new Int32Array(maxNumSeqs);
    this.finishedReasons = new Uint8Array(maxNumSeqs);
    this.admissionRequestIds = new Int32Array(maxNumSeqs);
    this.admissionCachedTokens = new Int32Array(maxNumSeqs);
    this.admissionPromptTokens = new Int32Array(maxNumSeqs);
    this.fpm = emptyFpmSnapshot();
  }

  /** Room for one more finished entry (rejections can outnumber max-num-seqs). */
  ensureFinished(): void {
    if (this.numFinished < this.finishedRequestIds.length) return;
    const n = this.finishedRequestIds.length * 2;
    const ids = new Int32Array(n);
    ids.set(this.finishedRequestIds);
    const reasons = new Uint8Array(n);
    reasons.set(this.finishedReasons);
    this.finishedRequestIds = ids;
    this.finishedReasons = reasons;
  }
}

/**
 * Population variance (÷ n, 0 when empty) from exact integer sums. Lengths are integers, so the
 * sums stay exact below 2^53 and, unlike Welford's update, a request can be taken out again
 * (preemption within a pass, a waiting request leaving the queue).
 */
function populationVariance(n: number, sum: number, sumSq: number): number {
  if (n === 0) return 0;
  const mean = sum / n;
  const v = sumSq / n - mean * mean;
  return v > 0 ? v : 0;
}

/**
 * One simulated GPU rank: vLLM-v1-style scheduler over a paged, prefix-cached KV pool, with a
 * modeled pass time (Dynamo mocker `scheduler/vllm/core.rs`, engine-spec §4–§8). Pure and
 * single-threaded: time is an input of step(), events and results are data for the caller.
 *
 * Token accounting of one request (block size 4, prompt 10, 2 tokens generated):
 *
 *   tokens   |p p p p|p p p p|p p g g|      seqLen = promptLen + generated tokens = 12
 *   blocks   [ full  ][ full  ][partial]    block b is full iff (b+1)·blockSize ≤ numComputed
 *                                   ^ numComputed = 11: the last generated token is computed
 *                                     by the next pass, which emits the next token
 *
 * Invariants (checkInvariants):
 *  - waiting requests hold no blocks; running requests hold blocks covering numComputed tokens
 *    and at most seqLen tokens, full blocks first, at most one partial block last;
 *  - every active block's refCount equals the number of running requests holding it;
 *  - with prefix caching, a request's sequence hashes are known for all floor(seqLen / blockSize)
 *    full blocks of its known tokens (prompt + generated).
 *
 * Request state lives in a slot table (struct of arrays indexed by slot); the waiting queue is a
 * ring of slot indices, the running queue an array of slot indices in admission order.
 */
export class Engine {
  readonly args: Readonly<EngineArgs>;
  private readonly perf: PerfModel;
  private readonly bs: number;
  private readonly cacheTokens: number;
  private readonly prefixCaching: boolean;
  private readonly lifo: boolean;
  private readonly pool: BlockPool;
  private readonly recorder: KvEventRecorder;
  /** EngineOptions.recordKvEvents. */
  private readonly recordsKvEvents: boolean;
  /** EngineOptions.keepPromptTokens. */
  private readonly keepPromptTokens: boolean;
  /** EngineOptions.keepGeneratedTokens. */
  private readonly keepGeneratedTokens: boolean;
  /** Requests ever enqueued (mod 2^32): the nonce of the next one's generated-block identities. */
  private numEnqueued = 0;
  private readonly rng: Rng;
  private readonly result: StepResultBuffer;
  private readonly slotByRequestId = new RequestSlotMap();

  // Slot table (grown together by growSlots).
  private slotCapacity = 0;
  private slotRequestId: Int32Array = new Int32Array(0);
  private slotStatus: Uint8Array = new Uint8Array(0);
  private slotPromptLen: Int32Array = new Int32Array(0);
  /** Sequence length at which the request completes: prompt + max tokens (capped at int32). */
  private slotEndLen: Int32Array = new Int32Array(0);
  /** Per-request seed of a seeded request (addRequest's `seed`); its tokens come from generatedTokenId. */
  private slotSeed: Int32Array = new Int32Array(0);
  /** Per-request nonce of its generated blocks' identity hashes (EngineOptions.keepGeneratedTokens false). */
  private slotNonce: Int32Array = new Int32Array(0);
  private slotSeeded: Uint8Array = new Uint8Array(0);
  /**
   * Position of slotTokens[slot][0] in the sequence: tokens before it were not kept
   * (EngineOptions.keepPromptTokens false); else 0.
   */
  private slotTokensFrom: Int32Array = new Int32Array(0);
  /** Token ids seeded requests draw from (EngineOptions.generatedVocabulary). */
  private readonly vocabulary: Uint32Array;
  /** Known tokens: prompt + generated. */
  private slotSeqLen: Int32Array = new Int32Array(0);
  private slotNumComputed: Int32Array = new Int32Array(0);
  private slotNumBlocks: Int32Array = new Int32Array(0);
  private slotNumPreemptions: Int32Array = new Int32Array(0);
  private slotPassStamp: Int32Array = new Int32Array(0);
  private slotPassTokens: Int32Array = new Int32Array(0);
  private slotTokens: Uint32Array[] = [];
  private slotBlocks: Int32Array[] = [];
  private slotSeqHi: Uint32Array[] = [];
  private slotSeqLo: Uint32Array[] = [];
  private slotTokHi: Uint32Array[] = [];
  private slotTokLo: Uint32Array[] = [];
  private freeSlots: Int32Array = new Int32Array(0);
  private numFreeSlots = 0;

  // Waiting: ring of slot indices (capacity = power of two ≥ slotCapacity).
  private waitQ: Int32Array = new Int32Array(0);
  private waitMask = 0;
  private waitHead = 0;
  private numWaitingQ = 0;
  // Running: slot indices in admission order.
  private readonly running: Int32Array;
  private numRunningQ = 0;

  // Waiting-queue aggregates for the queued FPM fields (never-run vs preempted).
  private qPrefillN = 0;
  private qPrefillSum = 0;
  private qPrefillSumSq = 0;
  private qDecodeN = 0;
  private qDecodeSum = 0;
  private qDecodeSumSq = 0;

  // Per-pass scratch.
  private passNo = 0;
  /**
   * Bumped by everything that changes the requests or their blocks (enqueue, abort, clearAll,
   * step, advanceDecode): a decode run verified at one version holds until the next.
   */
  private version = 0;
  /**
   * The plain decode run last verified (decodeRunLength): at `runPlanVersion`, the next
   * `runPlanPasses` passes are plain decode passes, exactly that many when `runPlanExact`
   * (else at least), and `runPlanMs` is their modeled decode time when the perf model ignores the
   * context lengths (NaN until computed). Callers ask about the same run several times (is there
   * one, its pass times, then running part of it); only the first asks walk the running requests.
   */
  private runPlanVersion = -1;
  private runPlanPasses = 0;
  private runPlanExact = false;
  private runPlanMs = Number.NaN;
  private budget = 0;
  private runIdx = 0;
  private inSchedulePhase = false;
  /** Tokens the last admitted waiting request scheduled. */
  private lastDesired = 0;
  /**
   * Block ids of the resident prefix that scheduleWaiting() just looked up (hitIds[0..numKnownHits)),
   * and whether the block after them is known to be absent, for the ensureBlocks() call that admits
   * the request: nothing changes the pool in between, so the lookups need not be repeated.
   */
  private hitIds: Int32Array;
  private numKnownHits = 0;
  private knownMiss = false;
  /** Keeps the hash-table warm-up reads observable (see BlockHashTable.warm). */
  private warmSink = 0;
  // Aggregates of the requests scheduled this pass (see contribute()).
  private aTokens = 0;
  private aPrompt = 0;
  private aPrefillN = 0;
  private aPrefillTokens = 0;
  private aPrefillKv = 0;
  private aPrefillLenSum = 0;
  private aPrefillLenSq = 0;
  private aDecodeN = 0;
  private aDecodeKv = 0;
  private aDecodeSq = 0;
  private aReadyN = 0;
  private aReadyCtx = 0;

  /** Preemptions since construction (vllm:num_preemptions). */
  numPreemptionsTotal = 0;
  /** Prompt tokens of admitted requests (prefix-cache queries) and the cached part of them. */
  prefixQueryTokensTotal = 0;
  prefixHitTokensTotal = 0;

  constructor(args: Readonly<EngineArgs>, perfModel: PerfModel, options: EngineOptions = {}) {
    this.args = normalizeEngineArgs(args);
    this.perf = perfModel;
    this.bs = this.args.blockSize;
    this.cacheTokens = this.args.numGpuBlocks * this.bs;
    this.prefixCaching = this.args.enablePrefixCaching;
    this.lifo = this.args.preemptionMode === 'lifo';
    this.recordsKvEvents = options.recordKvEvents !== false;
    this.keepPromptTokens = options.keepPromptTokens !== false;
    if (!this.keepPromptTokens && options.recordEventTokens !== false) {
      throw new InvalidConfigError('keepPromptTokens', 'false needs recordEventTokens false: Stored events carry the prompt blocks\' token ids');
    }
    this.keepGeneratedTokens = options.keepGeneratedTokens !== false;
    if (!this.keepGeneratedTokens && options.recordEventTokens !== false) {
      throw new InvalidConfigError('keepGeneratedTokens', 'false needs recordEventTokens false: Stored events carry the generated blocks\' token ids');
    }
    this.recorder = new KvEventRecorder(this.bs, options.recordEventTokens !== false, this.recordsKvEvents);
    this.vocabulary = options.generatedVocabulary !== undefined && options.generatedVocabulary.length > 0
      ? options.generatedVocabulary
      : defaultGeneratedVocabulary(TOKEN_ID_MIN, TOKEN_ID_SPAN);
    this.pool = new BlockPool(this.args.numGpuBlocks, this.prefixCaching, this.recorder, options.reserveBlocks === true, options.blockHashGroupBits ?? 0);
    this.rng = new Rng(this.args.seed);
    this.result = new StepResultBuffer(this.args.maxNumSeqs);
    this.running = new Int32Array(this.args.maxNumSeqs);
    this.hitIds = new Int32Array(this.prefixCaching ? 64 : 0);
    // Grown ×2 on demand (addRequest): an idle rank keeps a few slots.
    this.growSlots(16);
  }

  // ---------------------------------------------------------------- queries

  get numRunning(): number {
    return this.numRunningQ;
  }
  get numWaiting(): number {
    return this.numWaitingQ;
  }
  get numActiveBlocks(): number {
    return this.pool.numActive;
  }
  get numInactiveBlocks(): number {
    return this.pool.numInactive;
  }
  get numFreeBlocks(): number {
    return this.pool.numFree;
  }
  /** Active blocks / total blocks (gpu_cache_usage_perc as a fraction). */
  get kvUsage(): number {
    return this.pool.numActive / this.args.numGpuBlocks;
  }
  hasWork(): boolean {
    return this.numRunningQ + this.numWaitingQ > 0;
  }

  /**
   * How many leading blocks of the sequence hashes (hi[i], lo[i]), i < numBlocks, the prefix cache
   * holds now: exactly the blocks its Stored events announced and no Removed event took back (both
   * change only inside step() and clearAll()). 0 with prefix caching off. `from`: blocks before it
   * are known to be cached (see cacheRemovals) and are not looked up.
   */
  cachedPrefixBlocks(numBlocks: number, hi: Uint32Array, lo: Uint32Array, from = 0): number {
    if (!this.prefixCaching) return 0;
    return from < numBlocks ? this.pool.table.findRun(hi, lo, from, numBlocks, null) : from;
  }

  /**
   * The prefix cache's hash table, read only, for a reader that walks many ranks' caches at once
   * (the offline kv router, src/replay/engine-caches.ts): it reaches each table in one load
   * instead of through the engine. Its counts are cacheInsertions and cacheRemovals. null with
   * prefix caching off (nothing is cached).
   */
  get prefixCacheTable(): PrefixCacheLookup | null {
    return this.prefixCaching ? this.pool.table : null;
  }

  /**
   * Hashes the prefix cache has ever dropped (evictions; clearAll() counts too). A block found
   * cached stays cached while this count is unchanged, so a caller may skip looking it up again.
   */
  get cacheRemovals(): number {
    return this.pool.numRemovals;
  }
  /** Hashes the prefix cache has ever taken in. With cacheRemovals, unchanged counts mean an unchanged cache. */
  get cacheInsertions(): number {
    return this.pool.numInsertions;
  }

  /** Block ids held by a live request, first to last (tests and diagnostics). */
  requestBlockIds(requestId: number): number[] {
    const slot = this.slotByRequestId.get(requestId);
    if (slot < 0) return [];
    return Array.from((this.slotBlocks[slot] as Int32Array).subarray(0, this.slotNumBlocks[slot] as number));
  }
  /** Tokens (prompt + generated) of a live request (tests and diagnostics). */
  requestTokens(requestId: number): Uint32Array {
    const slot = this.slotByRequestId.get(requestId);
    if (slot < 0) return new Uint32Array(0);
    if ((this.slotTokensFrom[slot] as number) > 0) throw new Error(`request ${requestId}: its prompt tokens were not kept (EngineOptions.keepPromptTokens false)`);
    if (!this.keepGeneratedTokens) throw new Error(`request ${requestId}: its generated tokens were not kept (EngineOptions.keepGeneratedTokens false)`);
    const n = this.slotSeqLen[slot] as number;
    return (this.slotTokens[slot] as Uint32Array).slice(0, n);
  }
  /** Inactive (cached, evictable) block ids, next to be evicted first. */
  inactiveBlockOrder(): number[] {
    return this.pool.inactiveOrder();
  }
  /** Free block ids in the order they will be handed out. */
  freeBlockOrder(): number[] {
    return this.pool.freeOrder();
  }
  /** Sequence hashes of all resident full blocks (active or inactive), as u64 bigints, sorted. */
  residentBlockHashes(): bigint[] {
    const out: bigint[] = [];
    const pool = this.pool;
    for (let id = 0; id < pool.idLimit; id++) {
      if (pool.stateOf(id) !== BlockState.free && pool.isFull(id) && this.prefixCaching) {
        out.push((BigInt(pool.hashHiOf(id)) << 32n) | BigInt(pool.hashLoOf(id)));
      }
    }
    return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }
  /** Request ids of the running queue, oldest first. */
  runningRequestIds(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.numRunningQ; i++) out.push(this.slotRequestId[this.running[i] as number] as number);
    return out;
  }
  /** Request ids of the waiting queue, head first. */
  waitingRequestIds(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.numWaitingQ; i++) {
      out.push(this.slotRequestId[this.waitQ[(this.waitHead + i) & this.waitMask] as number] as number);
    }
    return out;
  }

  // ---------------------------------------------------------------- requests

  /**
   * Queue a request. The prompt is copied. Returns AddOutcome.rejectedTooLarge (nothing queued)
   * when the prompt can never be scheduled: prompt + first output token need more blocks than the
   * whole pool (Dynamo PR #10439 rejects oversize prompts), or, with chunked
   * prefill off, more tokens than max-num-batched-tokens (Dynamo would leave such a request
   * blocked forever; vLLM refuses the configuration).
   */
  addRequest(requestId: number, promptTokens: Uint32Array, maxTokens: number, seed?: number): AddOutcomeCode {
    return this.enqueue(requestId, promptTokens, maxTokens, null, seed);
  }

  /**
   * addRequest() with the prompt's block hashes computed by the caller (e.g. memoized per shared
   * prefix), so the engine does not hash the prompt. The hashes must be those of the prompt
   * (computeBlockHashes); they are copied, not verified (checkInvariants() rehashes). Throws
   * InvalidRequestError when hashes.numBlocks is not floor(prompt length / block size) or the
   * arrays are shorter. Ignored with prefix caching off.
   */
  addRequestWithHashes(requestId: number, promptTokens: Uint32Array, maxTokens: number, hashes: PromptBlockHashes): AddOutcomeCode {
    const n = hashes.numBlocks;
    if (n !== Math.floor(promptTokens.length / this.bs)) {
      throw new InvalidRequestError(`prompt hashes cover ${n} blocks, the prompt has ${Math.floor(promptTokens.length / this.bs)} full blocks`, 'prompt');
    }
    const th = hashes.tokHashHi, tl = hashes.tokHashLo;
    if ((th === null || tl === null) && this.recordsKvEvents) {
      throw new InvalidRequestError('prompt tokens hashes are required: this engine records KV events', 'prompt');
    }
    if (hashes.seqHashHi.length < n || hashes.seqHashLo.length < n || (th !== null && th.length < n) || (tl !== null && tl.length < n)) {
      throw new InvalidRequestError(`prompt hash arrays hold fewer than ${n} hashes`, 'prompt');
    }
    return this.enqueue(requestId, promptTokens, maxTokens, hashes);
  }

  private enqueue(requestId: number, promptTokens: Uint32Array, maxTokens: number, hashes: PromptBlockHashes | null, seed?: number): AddOutcomeCode {
    if (!Number.isInteger(requestId) || requestId < 0 || requestId > 0x7fffffff) {
      throw new InvalidRequestError(`request id must be a non-negative int32, got ${requestId}`, 'request_id');
    }
    if (this.slotByRequestId.has(requestId)) {
      throw new InvalidRequestError(`request id ${requestId} is already in the engine`, 'request_id');
    }
    if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > 0x7fffffff) {
      throw new InvalidRequestError(`max_tokens must be an integer ≥ 1, got ${maxTokens}`, 'max_tokens');
    }
    if (seed !== undefined && !this.keepGeneratedTokens) {
      throw new InvalidRequestError('seeded requests need the generated tokens kept (EngineOptions.keepGeneratedTokens): their tokens, and so their blocks, repeat with the seed', 'seed');
    }
    const promptLen = promptTokens.length;
    if (promptLen === 0) throw new InvalidRequestError('prompt must contain at least one token', 'prompt');
    // The prompt plus its first output token must fit, or the request could never make progress.
    if (Math.ceil((promptLen + 1) / this.bs) > this.args.numGpuBlocks) return AddOutcome.rejectedTooLarge;
    if (!this.args.enableChunkedPrefill && promptLen > this.args.maxNumBatchedTokens) return AddOutcome.rejectedTooLarge;

    if (this.numFreeSlots === 0) this.growSlots(this.slotCapacity * 2);
    const slot = this.freeSlots[--this.numFreeSlots] as number;
    // Given the hashes, only the tokens after the last full prompt block are read again (the
    // block that generated tokens complete): the others are neither stored nor copied.
    const tokensFrom = hashes !== null && !this.keepPromptTokens ? Math.floor(promptLen / this.bs) * this.bs : 0;
    this.slotTokensFrom[slot] = tokensFrom;
    this.ensureSlotBuffers(slot, Math.min(promptLen + Math.min(maxTokens, GENERATED_RESERVE), this.cacheTokens));
    const tokens = this.slotTokens[slot] as Uint32Array;
    tokens.set(tokensFrom === 0 ? promptTokens : promptTokens.subarray(tokensFrom), 0);
    this.slotRequestId[slot] = requestId;
    this.slotStatus[slot] = SlotStatus.waiting;
    this.slotPromptLen[slot] = promptLen;
    this.slotEndLen[slot] = Math.min(promptLen + maxTokens, 0x7fffffff);
    this.slotSeeded[slot] = seed === undefined ? 0 : 1;
    this.slotSeed[slot] = seed ?? 0;
    this.slotNonce[slot] = this.numEnqueued;
    this.numEnqueued = (this.numEnqueued + 1) | 0;
    this.slotSeqLen[slot] = promptLen;
    this.slotNumComputed[slot] = 0;
    this.slotNumBlocks[slot] = 0;
    this.slotNumPreemptions[slot] = 0;
    this.slotPassStamp[slot] = 0;
    if (this.prefixCaching) {
      const numFull = Math.floor(promptLen / this.bs);
      const seqHi = this.slotSeqHi[slot] as Uint32Array;
      const seqLo = this.slotSeqLo[slot] as Uint32Array;
      const tokHi = this.slotTokHi[slot] as Uint32Array;
      const tokLo = this.slotTokLo[slot] as Uint32Array;
      if (hashes === null) {
        hashBlocks(tokens, this.bs, 0, numFull, seqHi, seqLo, tokHi, tokLo);
      } else {
        const sh = hashes.seqHashHi, sl = hashes.seqHashLo, th = hashes.tokHashHi, tl = hashes.tokHashLo;
        // Native copies (a replay's prompts run to ~750 blocks): two small views per array.
        seqHi.set(sh.length === numFull ? sh : sh.subarray(0, numFull));
        seqLo.set(sl.length === numFull ? sl : sl.subarray(0, numFull));
        // Without KV events nothing reads a prompt block's tokens hash (see PromptBlockHashes).
        if (th !== null && tl !== null) {
          tokHi.set(th.length === numFull ? th : th.subarray(0, numFull));
          tokLo.set(tl.length === numFull ? tl : tl.subarray(0, numFull));
        }
      }
    }
    this.slotByRequestId.set(requestId, slot);
    this.pushWaitingBack(slot);
    this.version++;
    return AddOutcome.queued;
  }

  /** Remove a request now, wherever it is; its blocks are released leaf first. False if unknown. */
  abortRequest(requestId: number): boolean {
    const slot = this.slotByRequestId.get(requestId);
    if (slot < 0) return false;
    this.version++;
    if (this.slotStatus[slot] === SlotStatus.running) {
      let i = 0;
      while (this.running[i] !== slot) i++;
      this.running.copyWithin(i, i + 1, this.numRunningQ);
      this.numRunningQ--;
      this.releaseBlocks(slot);
    } else {
      this.removeWaiting(slot);
    }
    this.freeSlot(slot);
    return true;
  }

  /**
   * Drop every request and every cached block (rank restart or sleep). Requests vanish without a
   * finish entry; one AllBlocksCleared event is recorded (even with prefix caching off).
   */
  clearAll(): void {
    this.version++;
    for (let s = 0; s < this.slotCapacity; s++) {
      if (this.slotStatus[s] !== SlotStatus.free) this.freeSlot(s);
    }
    this.numRunningQ = 0;
    this.numWaitingQ = 0;
    this.waitHead = 0;
    this.qPrefillN = this.qPrefillSum = this.qPrefillSumSq = 0;
    this.qDecodeN = this.qDecodeSum = this.qDecodeSumSq = 0;
    this.pool.clear();
    this.recorder.active.addCleared();
  }

  /** KV events since the previous call. Valid until the next takeEvents(). */
  takeEvents(): KvEventLog {
    return this.recorder.take();
  }

  // ---------------------------------------------------------------- one pass

  /**
   * Run one engine pass at virtual time nowMs (Dynamo `execute_pass`): schedule running then
   * waiting requests under the token budget, model the pass time, emit one token per ready
   * request, retire completed requests. Returns the engine-owned result object, overwritten by
   * the next call.
   */
  step(_nowMs: number): StepResult {
    const r = this.result;
    r.prefillMs = 0;
    r.decodeMs = 0;
    r.numScheduledTokens = 0;
    r.numPreemptions = 0;
    r.numPromptTokensScheduled = 0;
    r.numTokens = 0;
    r.numFinished = 0;
    r.numAdmissions = 0;
    this.passNo++;
    this.version++;
    this.aTokens = this.aPrompt = this.aPrefillN = this.aPrefillTokens = this.aPrefillKv = 0;
    this.aPrefillLenSum = this.aPrefillLenSq = 0;
    this.aDecodeN = this.aDecodeKv = this.aDecodeSq = this.aReadyN = this.aReadyCtx = 0;
    this.inSchedulePhase = true;

    // Running phase: Blocked stops; a preempted current request leaves its index to the next one.
    // Plain decode steps (one token, no block to promote) take the inline path; their aggregates
    // stay in locals (fast*) and are merged below.
    const bs = this.bs;
    const running = this.running;
    const numComputed = this.slotNumComputed;
    const promptLens = this.slotPromptLen;
    const seqLens = this.slotSeqLen;
    const numBlocks = this.slotNumBlocks;
    const blocksBySlot = this.slotBlocks;
    // Re-read per use: the pool's arrays grow when the slow path below allocates a new block id.
    const pool = this.pool;
    let budget = this.args.maxNumBatchedTokens;
    let fastN = 0;
    let fastKv = 0;
    let fastSq = 0;
    let i = 0;
    while (i < this.numRunningQ && budget > 0) {
      const slot = running[i] as number;
      const seqLen = seqLens[slot] as number;
      const before = numComputed[slot] as number;
      if (before === seqLen - 1 && before >= (promptLens[slot] as number)) {
        const nb = numBlocks[slot] as number;
        const cap = nb * bs;
        if (seqLen < cap || (seqLen === cap && pool.isFull((blocksBySlot[slot] as Int32Array)[nb - 1] as number))) {
          // Not stamped: preemptAt() recognises inline-scheduled victims by their index.
          numComputed[slot] = seqLen;
          budget--;
          fastN++;
          fastKv += seqLen;
          fastSq += seqLen * seqLen;
          i++;
          continue;
        }
      }
      this.budget = budget;
      this.runIdx = i;
      const outcome = this.scheduleRunning(slot);
      budget = this.budget;
      i = this.runIdx;
      if (outcome === Outcome.blocked) break;
      if (outcome === Outcome.scheduled) i++;
    }
    this.budget = budget;

    // Waiting phase, skipped once anything was preempted this pass.
    if (r.numPreemptions === 0) {
      const maxSeqs = this.args.maxNumSeqs;
      while (this.numRunningQ < maxSeqs && this.numWaitingQ > 0) {
        const outcome = this.scheduleWaiting();
        if (outcome === Outcome.blocked || outcome === Outcome.currentPreempted) break;
        // Dynamo stops after a request that used no tokens once the budget is gone; any other
        // request would be Blocked by the empty budget anyway.
        if (outcome === Outcome.scheduled && this.budget === 0 && this.lastDesired === 0) break;
      }
    }
    this.inSchedulePhase = false;

    this.measurePass(fastN, fastKv, fastSq);
    this.emitTokens(this.aReadyN + fastN);
    this.fillQueuedFpm();
    return r;
  }

  /** schedule_request for a running request (engine-spec §4.2). */
  private scheduleRunning(slot: number): OutcomeCode {
    const promptLen = this.slotPromptLen[slot] as number;
    const seqLen = this.slotSeqLen[slot] as number;
    const before = this.slotNumComputed[slot] as number;
    const remaining = seqLen - before;
    const budget = this.budget;
    if (!this.args.enableChunkedPrefill && promptLen - before > budget) return Outcome.blocked;
    const desired = remaining < budget ? remaining : budget;
    if (desired <= 0 && remaining > 0) return Outcome.blocked;
    const target = before + desired;
    while (!this.ensureBlocks(slot, target)) {
      const vi = this.lifo ? this.numRunningQ - 1 : 0;
      const victim = this.running[vi] as number;
      this.preemptAt(vi);
      if (victim === slot) return Outcome.currentPreempted;
      if (vi < this.runIdx) this.runIdx--;
    }
    this.account(slot, before, desired, seqLen);
    return Outcome.scheduled;
  }

  /** schedule_request(from_waiting) for the head of the waiting queue, with the PR #10439 gate. */
  private scheduleWaiting(): OutcomeCode {
    const slot = this.waitQ[this.waitHead] as number;
    const bs = this.bs;
    const promptLen = this.slotPromptLen[slot] as number;
    const seqLen = this.slotSeqLen[slot] as number;
    const needBlocks = Math.ceil(seqLen / bs);
    const pool = this.pool;
    if (Math.ceil((seqLen + 1) / bs) > pool.numBlocks) {
      // Only a preempted request can get here: its prompt fit, but its grown sequence plus the
      // next token never will.
      this.popWaitingFront();
      this.finish(slot, FinishReason.rejected);
      this.freeSlot(slot);
      return Outcome.rejected;
    }
    let hits = 0;
    let activeHits = 0;
    let missAfterHits = false;
    if (this.prefixCaching) {
      const seqHi = this.slotSeqHi[slot] as Uint32Array;
      const seqLo = this.slotSeqLo[slot] as Uint32Array;
      const numFull = Math.floor(seqLen / bs);
      // Sized to the longest prompt seen, not to the cache: an idle rank keeps it small.
      if (this.hitIds.length < numFull + 1) this.hitIds = new Int32Array(Math.min(this.args.numGpuBlocks + 1, Math.max(numFull + 1, this.hitIds.length * 2)));
      const hitIds = this.hitIds;
      hits = pool.table.findRun(seqHi, seqLo, 0, numFull, hitIds);
      // Only the admission gate below reads activeHits, and only when the free and evictable
      // blocks alone fall short: count them then (a read of every hit block's row).
      if (needBlocks > pool.numFree + pool.numInactive) {
        for (let b = 0; b < hits; b++) if (pool.stateOf(hitIds[b] as number) === BlockState.active) activeHits++;
      }
      missAfterHits = hits < numFull;
    }
    const prefix = hits * bs < promptLen ? hits * bs : promptLen;
    const remaining = seqLen - prefix;
    const budget = this.budget;
    if (!this.args.enableChunkedPrefill && promptLen - prefix > budget) return Outcome.blocked;
    const desired = remaining < budget ? remaining : budget;
    if (desired <= 0 && remaining > 0) return Outcome.blocked;
    // Admit only if the whole known sequence fits in what is free or evictable; cached blocks
    // that are already active cost nothing. Never preempt for a waiting request.
    if (needBlocks - activeHits > pool.numFree + pool.numInactive) return Outcome.blocked;
    this.numKnownHits = hits;
    this.knownMiss = missAfterHits;
    const ok = this.ensureBlocks(slot, prefix + desired);
    this.numKnownHits = 0;
    this.knownMiss = false;
    if (!ok) throw new EngineInvariantError('admission gate passed but block allocation failed');
    this.popWaitingFront();
    this.slotStatus[slot] = SlotStatus.running;
    this.running[this.numRunningQ++] = slot;
    this.account(slot, prefix, desired, seqLen);
    this.lastDesired = desired;
    const r = this.result;
    const a = r.numAdmissions++;
    r.admissionRequestIds[a] = this.slotRequestId[slot] as number;
    r.admissionCachedTokens[a] = prefix;
    r.admissionPromptTokens[a] = promptLen;
    this.prefixQueryTokensTotal += promptLen;
    this.prefixHitTokensTotal += prefix;
    return Outcome.scheduled;
  }

  /** Record what a request computes this pass (Dynamo ScheduledWork) and charge the budget. */
  private account(slot: number, before: number, desired: number, seqLen: number): void {
    this.slotNumComputed[slot] = before + desired;
    this.budget -= desired;
    this.slotPassStamp[slot] = this.passNo;
    this.slotPassTokens[slot] = desired;
    this.contribute(slot, before, before + desired, seqLen, 1);
  }

  /**
   * Add (sign 1) or take back (sign -1, preemption later in the same pass) one scheduled
   * request's share of the pass aggregates: prefill batch, FPM scheduled fields, ready set.
   */
  private contribute(slot: number, before: number, after: number, seqLen: number, sign: number): void {
    const promptLen = this.slotPromptLen[slot] as number;
    const promptBefore = before < promptLen ? before : promptLen;
    const prompt = (after < promptLen ? after : promptLen) - promptBefore;
    const tokens = after - before;
    this.aTokens += sign * tokens;
    if (prompt > 0) {
      this.aPrefillN += sign;
      this.aPrefillTokens += sign * tokens;
      this.aPrefillKv += sign * promptBefore;
      this.aPrompt += sign * prompt;
      this.aPrefillLenSum += sign * promptLen;
      this.aPrefillLenSq += sign * promptLen * promptLen;
    } else {
      this.aDecodeN += sign;
      this.aDecodeKv += sign * seqLen;
      this.aDecodeSq += sign * seqLen * seqLen;
    }
    if (after >= seqLen) {
      this.aReadyN += sign;
      this.aReadyCtx += sign * seqLen;
    }
  }

  /**
   * Make the request's blocks cover `target` computed tokens: promote a partial block that became
   * fully computed, then add blocks (full ones by hash lookup, reusing resident copies; at most one
   * partial last). Newly stored full blocks are published as one Stored event per consecutive run.
   * Returns false when the pool is exhausted; blocks allocated so far are kept.
   */
  private ensureBlocks(slot: number, target: number): boolean {
    const bs = this.bs;
    const pool = this.pool;
    const nb = this.slotNumBlocks[slot] as number;
    const blocks = this.slotBlocks[slot] as Int32Array;
    const cap = nb * bs;
    if (target < cap) return true;
    if (nb > 0 && !pool.isFull(blocks[nb - 1] as number)) this.promote(slot, nb - 1);
    if (target === cap) return true;
    const need = Math.ceil(target / bs);
    if (!this.prefixCaching) {
      for (let b = nb; b < need; b++) {
        const id = pool.allocate();
        if (id < 0) return false;
        if ((b + 1) * bs <= target) pool.makeFullAnonymous(id);
        blocks[b] = id;
        this.slotNumBlocks[slot] = b + 1;
      }
      return true;
    }
    const seqHi = this.slotSeqHi[slot] as Uint32Array;
    const seqLo = this.slotSeqLo[slot] as Uint32Array;
    const fullEnd = Math.floor(target / bs);
    const known = this.numKnownHits;
    const from = nb > known ? nb : known;
    if (fullEnd - from > 1) this.warmSink ^= pool.table.warm(seqHi, seqLo, from, fullEnd);
    // Allocations beyond the free blocks evict the oldest inactive ones.
    const evictions = (need - from < WARM_EVICTIONS ? need - from : WARM_EVICTIONS) - pool.numFree;
    if (evictions > 1) this.warmSink ^= pool.warmEvictions(evictions);
    let b = nb;
    // A waiting request starts at block 0: its known hits come first and are touched before
    // anything is allocated (so none of them can be evicted meanwhile).
    if (b < known) {
      const hitIds = this.hitIds;
      const end = known < fullEnd ? known : fullEnd;
      for (; b < end; b++) {
        const id = hitIds[b] as number;
        pool.touch(id);
        blocks[b] = id;
      }
      this.slotNumBlocks[slot] = b;
    }
    // [runFrom, runEnd): consecutive newly stored full blocks, published as one Stored event once
    // the run ends (after any Removed events of the evictions that made room for it).
    let runFrom = -1;
    let runEnd = -1;
    let fromMissing = b === known && this.knownMiss;
    while (b < fullEnd) {
      // New blocks are stored until one is found resident (or nothing is left to evict).
      const stop = pool.storeRun(seqHi, seqLo, b, fullEnd, fromMissing, blocks);
      fromMissing = false;
      const end = stop < 0 ? ~stop : stop;
      if (end > b) {
        if (runFrom < 0) runFrom = b;
        runEnd = end;
      }
      b = end;
      this.slotNumBlocks[slot] = b;
      if (stop < 0) {
        if (runFrom >= 0) this.emitStored(slot, runFrom, runEnd);
        return false;
      }
      if (b < fullEnd) {
        // int32 bit patterns: half as often boxed on the way into the pool (BlockPool.allocate).
        const id = pool.find((seqHi[b] as number) | 0, (seqLo[b] as number) | 0);
        pool.touch(id);
        if (runFrom >= 0) {
          this.emitStored(slot, runFrom, runEnd);
          runFrom = -1;
        }
        blocks[b++] = id;
        this.slotNumBlocks[slot] = b;
      }
    }
    if (need > fullEnd) {
      // The partial last block.
      const id = pool.allocate();
      if (id < 0) {
        if (runFrom >= 0) this.emitStored(slot, runFrom, runEnd);
        return false;
      }
      blocks[b] = id;
      this.slotNumBlocks[slot] = b + 1;
    }
    if (runFrom >= 0) this.emitStored(slot, runFrom, runEnd);
    return true;
  }

  /** Promote the request's partial block b, now fully computed, to a full block. */
  private promote(slot: number, b: number): void {
    const pool = this.pool;
    const blocks = this.slotBlocks[slot] as Int32Array;
    const id = blocks[b] as number;
    if (!this.prefixCaching) {
      pool.makeFullAnonymous(id);
      return;
    }
    const hi = ((this.slotSeqHi[slot] as Uint32Array)[b] as number) | 0;
    const lo = ((this.slotSeqLo[slot] as Uint32Array)[b] as number) | 0;
    const existing = pool.find(hi, lo);
    if (existing >= 0) {
      // Another request stored the same content meanwhile: share it, drop the private copy.
      pool.release(id);
      pool.touch(existing);
      blocks[b] = existing;
    } else {
      // With grouped ids the block moves to its group's place (BlockPool.makeFull).
      blocks[b] = pool.makeFull(id, hi, lo);
      this.emitStored(slot, b, b + 1);
    }
  }

  private emitStored(slot: number, from: number, to: number): void {
    this.recorder.active.addStored(
      this.slotSeqHi[slot] as Uint32Array,
      this.slotSeqLo[slot] as Uint32Array,
      this.slotTokHi[slot] as Uint32Array,
      this.slotTokLo[slot] as Uint32Array,
      this.slotTokens[slot] as Uint32Array,
      from,
      to - from,
    );
  }

  /**
   * Preempt running[vi]: release its blocks leaf first, reset it to recompute from scratch (its
   * generated tokens are kept) and put it at the front of the waiting queue. During scheduling,
   * the budget and aggregates it took this pass are given back.
   */
  private preemptAt(vi: number): void {
    const slot = this.running[vi] as number;
    this.running.copyWithin(vi, vi + 1, this.numRunningQ);
    this.numRunningQ--;
    // During scheduling, a victim was scheduled this pass if it is stamped (scheduleRunning /
    // scheduleWaiting) or sits before the current index (the inline decode path: 1 token).
    const stamped = this.slotPassStamp[slot] === this.passNo;
    if (this.inSchedulePhase && (stamped || vi < this.runIdx)) {
      const after = this.slotNumComputed[slot] as number;
      const tokens = stamped ? (this.slotPassTokens[slot] as number) : 1;
      this.contribute(slot, after - tokens, after, this.slotSeqLen[slot] as number, -1);
      this.budget += tokens;
    }
    this.slotPassStamp[slot] = 0;
    this.releaseBlocks(slot);
    this.slotNumComputed[slot] = 0;
    this.slotNumPreemptions[slot] = (this.slotNumPreemptions[slot] as number) + 1;
    this.slotStatus[slot] = SlotStatus.waiting;
    this.pushWaitingFront(slot);
    this.numPreemptionsTotal++;
    this.result.numPreemptions++;
  }

  /** Release a request's blocks last to first, so leaves become evictable before their parents. */
  private releaseBlocks(slot: number): void {
    const blocks = this.slotBlocks[slot] as Int32Array;
    const pool = this.pool;
    for (let b = (this.slotNumBlocks[slot] as number) - 1; b >= 0; b--) pool.release(blocks[b] as number);
    this.slotNumBlocks[slot] = 0;
  }

  /** FPM scheduled fields and modeled time from the pass aggregates (+ the inline decode steps). */
  private measurePass(fastN: number, fastKv: number, fastSq: number): void {
    const r = this.result;
    const fpm = r.fpm;
    const prefillN = this.aPrefillN;
    const decodeN = this.aDecodeN + fastN;
    const decodeKv = this.aDecodeKv + fastKv;
    const readyN = this.aReadyN + fastN;
    r.numScheduledTokens = this.aTokens + fastN;
    r.numPromptTokensScheduled = this.aPrompt;
    fpm.numPrefillRequests = prefillN;
    fpm.sumPrefillTokens = this.aPrefillTokens;
    fpm.varPrefillLength = populationVariance(prefillN, this.aPrefillLenSum, this.aPrefillLenSq);
    fpm.sumPrefillKvTokens = this.aPrefillKv;
    fpm.numDecodeRequests = decodeN;
    fpm.sumDecodeKvTokens = decodeKv;
    fpm.varDecodeKvTokens = populationVariance(decodeN, decodeKv, this.aDecodeSq + fastSq);
    if (prefillN > 0) {
      const ms = this.perf.prefillMs(prefillN, this.aPrefillKv + this.aPrompt, this.aPrefillKv);
      if (!(ms >= 0 && ms < Infinity)) throw new PerfModelError(`perf model returned ${ms} ms for a prefill pass`);
      r.prefillMs = ms;
    }
    if (readyN > 0) {
      const ms = this.perf.decodeMs(this.pool.numActive * this.bs, this.cacheTokens, (this.aReadyCtx + fastKv) / readyN);
      if (!(ms >= 0 && ms < Infinity)) throw new PerfModelError(`perf model returned ${ms} ms for a decode pass`);
      r.decodeMs = ms;
    }
  }

  /**
   * emit_ready_tokens: one token for every running request whose known tokens are all computed.
   * A token that starts a new block needs a fresh partial block; if the pool is exhausted the
   * token is not emitted, a victim is preempted and allocation retried (Dynamo §4.4).
   *
   * Token k of the pass is drawn from RNG state s0 + (k + 1) × step whichever request gets it, so
   * the ids of the `expected` ready requests are drawn first in a tight loop (independent
   * iterations pipeline well) straight into tokenIds; the emission loop only consumes them.
   */
  private emitTokens(expected: number): void {
    const r = this.result;
    const bs = this.bs;
    const pool = this.pool;
    const rng = this.rng;
    const prefixCaching = this.prefixCaching;
    const running = this.running;
    const status = this.slotStatus;
    const seqLens = this.slotSeqLen;
    const numComputed = this.slotNumComputed;
    const numBlocks = this.slotNumBlocks;
    const endLens = this.slotEndLen;
    const requestIds = this.slotRequestId;
    const tokensBySlot = this.slotTokens;
    const tokensFrom = this.slotTokensFrom;
    const tokenRequestIds = r.tokenRequestIds;
    const tokenIds = r.tokenIds;
    const seededBySlot = this.slotSeeded;
    const seeds = this.slotSeed;
    const promptLens = this.slotPromptLen;
    const vocabulary = this.vocabulary;
    const keepGenerated = this.keepGeneratedTokens;
    let numTokens = 0;
    let retired = 0;
    // Nothing below draws from the RNG except through these precomputed ids.
    const s0 = rng.state;
    let drawn = expected < tokenIds.length ? expected : tokenIds.length;
    for (let k = 0; k < drawn; k++) tokenIds[k] = tokenId((s0 + Math.imul(k + 1, RNG_STEP)) | 0);
    let i = 0;
    while (i < this.numRunningQ) {
      const slot = running[i] as number;
      const seqLen = seqLens[slot] as number;
      // Not ready: still prefilling, preempted (computed 0) or retired this pass (its last token
      // made seqLen exceed numComputed).
      if ((numComputed[slot] as number) < seqLen) {
        i++;
        continue;
      }
      let tokens = tokensBySlot[slot] as Uint32Array;
      const base = tokensFrom[slot] as number;
      if (keepGenerated && seqLen - base === tokens.length) tokens = this.growSlotBuffers(slot, seqLen + 1);
      let nb = numBlocks[slot] as number;
      if (seqLen === nb * bs) {
        // Without kept tokens only the block ids and hashes need room: the new block, and its hash once full.
        if (!keepGenerated && !this.hasBlockRoom(slot, seqLen + bs)) this.growBlockBuffers(slot, seqLen + bs);
        let id = pool.allocate();
        let selfPreempted = false;
        while (id < 0) {
          const vi = this.pickLiveVictim();
          const victim = running[vi] as number;
          this.preemptAt(vi);
          if (victim === slot) {
            selfPreempted = true;
            break;
          }
          if (vi < i) i--;
          id = pool.allocate();
        }
        if (selfPreempted) continue;
        (this.slotBlocks[slot] as Int32Array)[nb] = id;
        numBlocks[slot] = ++nb;
      }
      if (numTokens === drawn) {
        // More ready requests than counted by the scheduler (not expected): draw on demand.
        tokenIds[numTokens] = tokenId((s0 + Math.imul(numTokens + 1, RNG_STEP)) | 0);
        drawn++;
      }
      // A seeded request's token depends only on its seed and position (same output on any rank).
      const tok = seededBySlot[slot] === 1
        ? generatedTokenId(vocabulary, seeds[slot] as number, seqLen - (promptLens[slot] as number))
        : tokenIds[numTokens] as number;
      tokenIds[numTokens] = tok;
      if (keepGenerated) tokens[seqLen - base] = tok;
      seqLens[slot] = seqLen + 1;
      const requestId = requestIds[slot] as number;
      tokenRequestIds[numTokens] = requestId;
      numTokens++;
      if (seqLen + 1 >= (endLens[slot] as number)) {
        this.releaseBlocks(slot);
        this.finish(slot, FinishReason.length);
        this.freeSlot(slot);
        retired++;
      } else if (prefixCaching && seqLen + 1 === nb * bs) {
        // The token completed its block's content: hash it now so promotion and prefix lookups
        // (after a preemption) find the sequence hash ready.
        this.hashCompletedBlock(slot, nb - 1, tokens, base);
      }
      i++;
    }
    rng.state = (s0 + Math.imul(numTokens, RNG_STEP)) | 0;
    r.numTokens = numTokens;
    if (retired > 0) {
      let w = 0;
      const n = this.numRunningQ;
      for (let k = 0; k < n; k++) {
        const s = running[k] as number;
        if (status[s] === SlotStatus.running) running[w++] = s;
      }
      this.numRunningQ = w;
    }
  }

  /** Preemption victim among running requests not retired this pass: newest (lifo) or oldest (fifo). */
  private pickLiveVictim(): number {
    if (this.lifo) {
      let vi = this.numRunningQ - 1;
      while (this.slotStatus[this.running[vi] as number] !== SlotStatus.running) vi--;
      return vi;
    }
    let vi = 0;
    while (this.slotStatus[this.running[vi] as number] !== SlotStatus.running) vi++;
    return vi;
  }

  private finish(slot: number, reason: number): void {
    const r = this.result;
    r.ensureFinished();
    const f = r.numFinished++;
    r.finishedRequestIds[f] = this.slotRequestId[slot] as number;
    r.finishedReasons[f] = reason;
  }

  private fillQueuedFpm(): void {
    const fpm = this.result.fpm;
    fpm.numQueuedPrefill = this.qPrefillN;
    fpm.sumQueuedPrefillTokens = this.qPrefillSum;
    fpm.varQueuedPrefillLength = populationVariance(this.qPrefillN, this.qPrefillSum, this.qPrefillSumSq);
    fpm.numQueuedDecode = this.qDecodeN;
    fpm.sumQueuedDecodeKvTokens = this.qDecodeSum;
    fpm.varQueuedDecodeKvTokens = populationVariance(this.qDecodeN, this.qDecodeSum, this.qDecodeSumSq);
  }

  // ---------------------------------------------------------------- decode runs (fast-forward)
  //
  // A "plain decode pass" is a step() in which nothing but decoding happens: no waiting request,
  // every running request takes step()'s inline path (its last token is the only uncomputed one,
  // its prompt is computed, its blocks cover the token) and emits one token without allocating a
  // block, promoting one (KV event) or finishing. Such a pass changes only slot-internal state
  // (tokens, counters, the RNG, a block's content hash when the token fills it); queue lengths,
  // active blocks and KV events are untouched. decodeRunLength() bounds how many of the next
  // passes are plain; advanceDecode() applies them in bulk, bit-identically to as many step()s.

  /**
   * How many of the next passes (at most maxPasses) are guaranteed plain decode passes if no
   * request is added or aborted meanwhile; 0 when the next pass may do anything else. Per running
   * request with s known tokens, e = end length and blocks covering c = numBlocks × blockSize
   * tokens, pass p (0-based) emits token s + p: it allocates a block when s + p = c (and the pass
   * after a block fills promotes it), and finishes the request when s + p + 1 ≥ e, so the run is
   * min(c − s, e − s − 1) over the running requests.
   */
  decodeRunLength(maxPasses: number): number {
    if (maxPasses >= 1 && this.runPlanVersion === this.version && (maxPasses <= this.runPlanPasses || this.runPlanExact)) {
      return maxPasses < this.runPlanPasses ? maxPasses : this.runPlanPasses;
    }
    const k = this.walkDecodeRun(maxPasses);
    this.runPlanVersion = this.version;
    this.runPlanPasses = k;
    this.runPlanExact = k < maxPasses;
    this.runPlanMs = Number.NaN;
    return k;
  }

  /** decodeRunLength from the running requests themselves. */
  private walkDecodeRun(maxPasses: number): number {
    const n = this.numRunningQ;
    if (n === 0 || this.numWaitingQ !== 0 || n > this.args.maxNumBatchedTokens) return 0;
    const bs = this.bs;
    const running = this.running;
    const seqLens = this.slotSeqLen;
    const numComputed = this.slotNumComputed;
    const promptLens = this.slotPromptLen;
    const numBlocks = this.slotNumBlocks;
    const endLens = this.slotEndLen;
    let k = maxPasses;
    for (let i = 0; i < n; i++) {
      const slot = running[i] as number;
      const s = seqLens[slot] as number;
      const before = numComputed[slot] as number;
      if (before !== s - 1 || before < (promptLens[slot] as number)) return 0;
      const toBoundary = (numBlocks[slot] as number) * bs - s;
      if (toBoundary < k) k = toBoundary;
      const toFinish = (endLens[slot] as number) - s - 1;
      if (toFinish < k) k = toFinish;
      if (k <= 0) return 0;
    }
    return k;
  }

  /**
   * The modeled decode time (unscaled ms) of each of the next k plain decode passes into
   * decodeMsOut[0..k), computed exactly as step() would (same perf-model call and arguments, same
   * PerfModelError check), without changing anything. Requires k ≤ decodeRunLength(k).
   */
  decodeRunMs(k: number, decodeMsOut: Float64Array): void {
    this.checkDecodeRun(k, decodeMsOut);
    // checkDecodeRun verified the run at this version: its constant pass time, if known, holds.
    const planMs = this.runPlanMs;
    if (planMs === planMs) {
      decodeMsOut.fill(planMs, 0, k);
      return;
    }
    const n = this.numRunningQ;
    const running = this.running;
    const seqLens = this.slotSeqLen;
    // step() sums the batch's context lengths in integers, exact below 2^53, so Σ + n·p is the
    // very same number it would reach on pass p.
    let sumKv = 0;
    for (let i = 0; i < n; i++) sumKv += seqLens[running[i] as number] as number;
    const perf = this.perf;
    const activeKv = this.pool.numActive * this.bs;
    const totalKv = this.cacheTokens;
    if (perf.decodeIgnoresContext === true) {
      // Only the context lengths change from pass to pass, and the model does not read them.
      const ms = perf.decodeMs(activeKv, totalKv, sumKv / n);
      if (!(ms >= 0 && ms < Infinity)) throw new PerfModelError(`perf model returned ${ms} ms for a decode pass`);
      this.runPlanMs = ms;
      decodeMsOut.fill(ms, 0, k);
      return;
    }
    for (let p = 0; p < k; p++) {
      const ms = perf.decodeMs(activeKv, totalKv, (sumKv + n * p) / n);
      if (!(ms >= 0 && ms < Infinity)) throw new PerfModelError(`perf model returned ${ms} ms for a decode pass`);
      decodeMsOut[p] = ms;
    }
  }

  /**
   * Apply the next k plain decode passes, with the same effect as k step() calls: token ids
   * (the RNG's draws, seeded requests' own ids), tokens written to the slots, a block's hashes
   * when a token fills it, sequence and computed lengths, the pass counter. Each pass's modeled
   * decode time goes to decodeMsOut[0..k). The step result afterwards describes the last of the
   * k passes, as after the k-th step() (its tokenRequestIds list the running requests in
   * emission order); it is returned. Throws EngineInvariantError when k exceeds
   * decodeRunLength(k). Allocates nothing (unless a slot's token buffer must grow, as in step()).
   */
  advanceDecode(k: number, decodeMsOut: Float64Array): StepResult {
    this.decodeRunMs(k, decodeMsOut);
    const n = this.numRunningQ;
    const bs = this.bs;
    const running = this.running;
    const seqLens = this.slotSeqLen;
    const numComputed = this.slotNumComputed;
    const numBlocks = this.slotNumBlocks;
    const promptLens = this.slotPromptLen;
    const seeded = this.slotSeeded;
    const seeds = this.slotSeed;
    const vocabulary = this.vocabulary;
    const r = this.result;
    const tokenRequestIds = r.tokenRequestIds;
    const tokenIds = r.tokenIds;
    // Pass p draws n ids from s0 + (p·n + m + 1) × step for its m-th ready request (emitTokens).
    const s0 = this.rng.state;
    let sumKv = 0;
    let sumSq = 0;
    const keepGenerated = this.keepGeneratedTokens;
    for (let m = 0; m < n; m++) {
      const slot = running[m] as number;
      const s = seqLens[slot] as number;
      let tokens = this.slotTokens[slot] as Uint32Array;
      const base = this.slotTokensFrom[slot] as number;
      let tok = 0;
      if (keepGenerated) {
        while (base + tokens.length < s + k) tokens = this.growSlotBuffers(slot, base + tokens.length + 1);
        const at = s - base;
        if (seeded[slot] === 1) {
          const seed = seeds[slot] as number;
          const gen0 = s - (promptLens[slot] as number);
          for (let p = 0; p < k; p++) {
            tok = generatedTokenId(vocabulary, seed, gen0 + p);
            tokens[at + p] = tok;
          }
        } else {
          for (let p = 0; p < k; p++) {
            tok = tokenId((s0 + Math.imul(p * n + m + 1, RNG_STEP)) | 0);
            tokens[at + p] = tok;
          }
        }
      } else {
        // Only the last pass's token is reported (seeded requests need kept tokens, see enqueue).
        tok = tokenId((s0 + Math.imul((k - 1) * n + m + 1, RNG_STEP)) | 0);
      }
      const last = s + k - 1;
      seqLens[slot] = s + k;
      numComputed[slot] = last;
      const nb = numBlocks[slot] as number;
      // The last token filled the block (see emitTokens): hash it now.
      if (this.prefixCaching && s + k === nb * bs) this.hashCompletedBlock(slot, nb - 1, tokens, base);
      tokenRequestIds[m] = this.slotRequestId[slot] as number;
      tokenIds[m] = tok;
      sumKv += last;
      sumSq += last * last;
    }
    this.rng.state = (s0 + Math.imul(k * n, RNG_STEP)) | 0;
    this.passNo += k;
    this.version++;
    // The step result of the last pass (measurePass + emitTokens + fillQueuedFpm).
    r.prefillMs = 0;
    r.decodeMs = decodeMsOut[k - 1] as number;
    r.numScheduledTokens = n;
    r.numPreemptions = 0;
    r.numPromptTokensScheduled = 0;
    r.numTokens = n;
    r.numFinished = 0;
    r.numAdmissions = 0;
    const fpm = r.fpm;
    fpm.numPrefillRequests = 0;
    fpm.sumPrefillTokens = 0;
    fpm.varPrefillLength = 0;
    fpm.sumPrefillKvTokens = 0;
    fpm.numDecodeRequests = n;
    fpm.sumDecodeKvTokens = sumKv;
    fpm.varDecodeKvTokens = populationVariance(n, sumKv, sumSq);
    this.fillQueuedFpm();
    return r;
  }

  private checkDecodeRun(k: number, decodeMsOut: Float64Array): void {
    if (!Number.isInteger(k) || k < 1 || this.decodeRunLength(k) !== k) {
      throw new EngineInvariantError(`${k} passes requested, but only ${this.decodeRunLength(Math.max(1, k | 0))} plain decode passes are ahead`);
    }
    if (decodeMsOut.length < k) throw new EngineInvariantError(`decode time buffer holds ${decodeMsOut.length} < ${k} passes`);
  }

  // ---------------------------------------------------------------- queues and slots

  /** Add (sign 1) or remove (sign -1) a waiting request from the queued FPM aggregates. */
  private queuedStats(slot: number, sign: number): void {
    const len = this.slotSeqLen[slot] as number;
    if ((this.slotNumPreemptions[slot] as number) === 0) {
      this.qPrefillN += sign;
      this.qPrefillSum += sign * len;
      this.qPrefillSumSq += sign * len * len;
    } else {
      this.qDecodeN += sign;
      this.qDecodeSum += sign * len;
      this.qDecodeSumSq += sign * len * len;
    }
  }

  private pushWaitingBack(slot: number): void {
    this.waitQ[(this.waitHead + this.numWaitingQ) & this.waitMask] = slot;
    this.numWaitingQ++;
    this.queuedStats(slot, 1);
  }

  private pushWaitingFront(slot: number): void {
    this.waitHead = (this.waitHead - 1) & this.waitMask;
    this.waitQ[this.waitHead] = slot;
    this.numWaitingQ++;
    this.queuedStats(slot, 1);
  }

  private popWaitingFront(): void {
    const slot = this.waitQ[this.waitHead] as number;
    this.waitHead = (this.waitHead + 1) & this.waitMask;
    this.numWaitingQ--;
    this.queuedStats(slot, -1);
  }

  private removeWaiting(slot: number): void {
    const mask = this.waitMask;
    let k = 0;
    while (this.waitQ[(this.waitHead + k) & mask] !== slot) k++;
    for (; k < this.numWaitingQ - 1; k++) {
      this.waitQ[(this.waitHead + k) & mask] = this.waitQ[(this.waitHead + k + 1) & mask] as number;
    }
    this.numWaitingQ--;
    this.queuedStats(slot, -1);
  }

  private freeSlot(slot: number): void {
    this.slotByRequestId.delete(this.slotRequestId[slot] as number);
    this.slotStatus[slot] = SlotStatus.free;
    this.slotNumBlocks[slot] = 0;
    this.freeSlots[this.numFreeSlots++] = slot;
  }

  private growSlots(capacity: number): void {
    const old = this.slotCapacity;
    const i32 = (a: Int32Array): Int32Array => {
      const b = new Int32Array(capacity);
      b.set(a);
      return b;
    };
    this.slotRequestId = i32(this.slotRequestId);
    const st = new Uint8Array(capacity);
    st.set(this.slotStatus);
    this.slotStatus = st;
    this.slotPromptLen = i32(this.slotPromptLen);
    this.slotEndLen = i32(this.slotEndLen);
    this.slotSeed = i32(this.slotSeed);
    this.slotNonce = i32(this.slotNonce);
    const seeded = new Uint8Array(capacity);
    seeded.set(this.slotSeeded);
    this.slotSeeded = seeded;
    this.slotTokensFrom = i32(this.slotTokensFrom);
    this.slotSeqLen = i32(this.slotSeqLen);
    this.slotNumComputed = i32(this.slotNumComputed);
    this.slotNumBlocks = i32(this.slotNumBlocks);
    this.slotNumPreemptions = i32(this.slotNumPreemptions);
    this.slotPassStamp = i32(this.slotPassStamp);
    this.slotPassTokens = i32(this.slotPassTokens);
    const empty32 = new Uint32Array(0);
    const emptyI = new Int32Array(0);
    for (let s = old; s < capacity; s++) {
      this.slotTokens.push(empty32);
      this.slotBlocks.push(emptyI);
      this.slotSeqHi.push(empty32);
      this.slotSeqLo.push(empty32);
      this.slotTokHi.push(empty32);
      this.slotTokLo.push(empty32);
    }
    // Free slots are handed out lowest index first.
    const free = new Int32Array(capacity);
    let n = 0;
    for (let s = capacity - 1; s >= old; s--) free[n++] = s;
    for (let k = 0; k < this.numFreeSlots; k++) free[n++] = this.freeSlots[k] as number;
    this.freeSlots = free;
    this.numFreeSlots = n;
    // Ring capacity: a power of two that holds every slot.
    let ringCap = Math.max(16, this.waitQ.length);
    while (ringCap < capacity) ringCap *= 2;
    if (ringCap !== this.waitQ.length) {
      const q = new Int32Array(ringCap);
      for (let k = 0; k < this.numWaitingQ; k++) q[k] = this.waitQ[(this.waitHead + k) & this.waitMask] as number;
      this.waitQ = q;
      this.waitMask = ringCap - 1;
      this.waitHead = 0;
    }
    this.slotCapacity = capacity;
  }

  /**
   * Room for a sequence of `tokens` in a slot about to take a new request (its slotTokensFrom set):
   * what the buffers held is dead, not copied. The token buffer holds positions from
   * slotTokensFrom on, the per-block buffers every block. Buffers are kept across reuse and grow at
   * least 2× (capped at the cache size), so a slot reused by ever longer prompts reallocates only
   * a few times.
   */
  private ensureSlotBuffers(slot: number, tokens: number): void {
    const base = this.slotTokensFrom[slot] as number;
    const cur = (this.slotTokens[slot] as Uint32Array).length;
    if (cur < tokens - base) this.slotTokens[slot] = new Uint32Array(Math.max(tokens - base, Math.min(cur * 2, this.cacheTokens - base)));
    if (!this.hasBlockRoom(slot, tokens)) {
      const blocks = (this.slotBlocks[slot] as Int32Array).length * this.bs;
      this.resizeBlockBuffers(slot, Math.max(tokens, Math.min(blocks * 2, this.cacheTokens)), false);
    }
  }

  /** Whether the slot's block ids and hashes cover a sequence of `tokens`. */
  private hasBlockRoom(slot: number, tokens: number): boolean {
    return (this.slotBlocks[slot] as Int32Array).length >= Math.ceil(tokens / this.bs)
      && (this.slotSeqHi[slot] as Uint32Array).length >= Math.floor(tokens / this.bs);
  }

  /** Room for a sequence of at least `minTokens`, keeping what the buffers hold; returns the token buffer. */
  private growSlotBuffers(slot: number, minTokens: number): Uint32Array {
    const base = this.slotTokensFrom[slot] as number;
    const old = this.slotTokens[slot] as Uint32Array;
    let n = (base + old.length) * 2;
    if (n < minTokens) n = minTokens;
    if (n > this.cacheTokens) n = this.cacheTokens;
    const t = new Uint32Array(n - base);
    t.set(old);
    this.slotTokens[slot] = t;
    if (!this.hasBlockRoom(slot, n)) this.resizeBlockBuffers(slot, n, true);
    return t;
  }

  /** Room in the block ids and hashes (not the tokens) for a sequence of at least `minTokens`. */
  private growBlockBuffers(slot: number, minTokens: number): void {
    const blocks = (this.slotBlocks[slot] as Int32Array).length * this.bs;
    this.resizeBlockBuffers(slot, Math.max(minTokens, Math.min(blocks * 2, this.cacheTokens)), true);
  }

  /**
   * Hashes of the request's block b, which its latest generated token filled: of its tokens, or
   * its identity when generated tokens are not kept (EngineOptions.keepGeneratedTokens).
   */
  private hashCompletedBlock(slot: number, b: number, tokens: Uint32Array, tokensFrom: number): void {
    const seqHi = this.slotSeqHi[slot] as Uint32Array, seqLo = this.slotSeqLo[slot] as Uint32Array;
    const tokHi = this.slotTokHi[slot] as Uint32Array, tokLo = this.slotTokLo[slot] as Uint32Array;
    if (this.keepGeneratedTokens) hashBlocks(tokens, this.bs, b, b + 1, seqHi, seqLo, tokHi, tokLo, tokensFrom);
    else identityBlockHash(this.slotNonce[slot] as number, b, seqHi, seqLo, tokHi, tokLo);
  }

  /** Block ids and hashes for a sequence of `tokens`. */
  private resizeBlockBuffers(slot: number, tokens: number, keep: boolean): void {
    const bs = this.bs;
    const nb = Math.ceil(tokens / bs);
    const b = new Int32Array(nb);
    if (keep) b.set(this.slotBlocks[slot] as Int32Array);
    this.slotBlocks[slot] = b;
    const nh = Math.floor(tokens / bs);
    const grow = (a: Uint32Array): Uint32Array => {
      const c = new Uint32Array(nh);
      if (keep) c.set(a.length <= nh ? a : a.subarray(0, nh));
      return c;
    };
    this.slotSeqHi[slot] = grow(this.slotSeqHi[slot] as Uint32Array);
    this.slotSeqLo[slot] = grow(this.slotSeqLo[slot] as Uint32Array);
    this.slotTokHi[slot] = grow(this.slotTokHi[slot] as Uint32Array);
    this.slotTokLo[slot] = grow(this.slotTokLo[slot] as Uint32Array);
  }

  // ---------------------------------------------------------------- invariants

  /** Throw EngineInvariantError if any engine invariant is broken (tests run it after every step). */
  checkInvariants(): void {
    const pool = this.pool;
    pool.checkInvariants();
    const bs = this.bs;
    const n = pool.idLimit;
    const refs = new Int32Array(n);
    let live = 0;
    let qpN = 0;
    let qpS = 0;
    let qdN = 0;
    let qdS = 0;
    const hashHi = new Uint32Array(Math.ceil(this.cacheTokens / bs) + 1);
    const hashLo = new Uint32Array(hashHi.length);
    const tokHi = new Uint32Array(hashHi.length);
    const tokLo = new Uint32Array(hashHi.length);
    if (this.numRunningQ > this.args.maxNumSeqs) fail(`${this.numRunningQ} running > max-num-seqs`);
    for (let i = 0; i < this.numRunningQ; i++) {
      const s = this.running[i] as number;
      if (this.slotStatus[s] !== SlotStatus.running) fail(`running queue entry ${i} (slot ${s}) is not running`);
    }
    for (let k = 0; k < this.numWaitingQ; k++) {
      const s = this.waitQ[(this.waitHead + k) & this.waitMask] as number;
      if (this.slotStatus[s] !== SlotStatus.waiting) fail(`waiting queue entry ${k} (slot ${s}) is not waiting`);
    }
    for (let s = 0; s < this.slotCapacity; s++) {
      const st = this.slotStatus[s];
      if (st === SlotStatus.free) continue;
      live++;
      const id = this.slotRequestId[s] as number;
      if (this.slotByRequestId.get(id) !== s) fail(`request ${id} is not mapped to its slot ${s}`);
      const promptLen = this.slotPromptLen[s] as number;
      const seqLen = this.slotSeqLen[s] as number;
      const computed = this.slotNumComputed[s] as number;
      const nb = this.slotNumBlocks[s] as number;
      if (seqLen < promptLen) fail(`request ${id} has ${seqLen} tokens, fewer than its prompt`);
      if (seqLen >= (this.slotEndLen[s] as number)) fail(`request ${id} is live after max tokens`);
      if (this.prefixCaching) {
        const numFull = Math.floor(seqLen / bs);
        const sh = this.slotSeqHi[s] as Uint32Array;
        const sl = this.slotSeqLo[s] as Uint32Array;
        // Blocks before the kept tokens are checked no further than their given hashes.
        const kept = Math.min(numFull, (this.slotTokensFrom[s] as number) / bs);
        for (let b = 0; b < kept; b++) {
          hashHi[b] = sh[b] as number;
          hashLo[b] = sl[b] as number;
        }
        for (let b = kept; b < numFull; b++) {
          if (!this.keepGeneratedTokens && (b + 1) * bs > promptLen) identityBlockHash(this.slotNonce[s] as number, b, hashHi, hashLo, tokHi, tokLo);
          else hashBlocks(this.slotTokens[s] as Uint32Array, bs, b, b + 1, hashHi, hashLo, tokHi, tokLo, this.slotTokensFrom[s] as number);
        }
        for (let b = 0; b < numFull; b++) {
          if (sh[b] !== hashHi[b] || sl[b] !== hashLo[b]) fail(`request ${id} block ${b} has a stale sequence hash`);
        }
      }
      if (st === SlotStatus.waiting) {
        if (nb !== 0 || computed !== 0) fail(`waiting request ${id} holds ${nb} blocks / ${computed} computed tokens`);
        if ((this.slotNumPreemptions[s] as number) === 0) {
          qpN++;
          qpS += seqLen;
        } else {
          qdN++;
          qdS += seqLen;
        }
        continue;
      }
      if (computed > seqLen) fail(`request ${id} computed ${computed} > ${seqLen} tokens`);
      if (nb < Math.ceil(computed / bs) || nb > Math.ceil(seqLen / bs)) {
        fail(`request ${id} holds ${nb} blocks for ${computed} computed / ${seqLen} known tokens`);
      }
      const blocks = this.slotBlocks[s] as Int32Array;
      for (let b = 0; b < nb; b++) {
        const blk = blocks[b] as number;
        refs[blk] = (refs[blk] as number) + 1;
        if (pool.stateOf(blk) !== BlockState.active) fail(`request ${id} holds non-active block ${blk}`);
        const shouldBeFull = (b + 1) * bs <= computed;
        if (pool.isFull(blk) !== shouldBeFull) fail(`request ${id} block ${b} (id ${blk}) full=${pool.isFull(blk)}, computed ${computed}`);
        if (shouldBeFull && this.prefixCaching) {
          if (pool.hashHiOf(blk) !== hashHi[b] || pool.hashLoOf(blk) !== hashLo[b]) fail(`request ${id} block ${b} (id ${blk}) has the wrong hash`);
        }
      }
    }
    if (live !== this.slotByRequestId.size) fail(`${live} live slots but ${this.slotByRequestId.size} mapped request ids`);
    if (live !== this.numRunningQ + this.numWaitingQ) fail(`${live} live slots != running + waiting`);
    for (let b = 0; b < n; b++) {
      const expected = refs[b] as number;
      if (pool.stateOf(b) === BlockState.active) {
        if (pool.refCountOf(b) !== expected) fail(`block ${b} refCount ${pool.refCountOf(b)} but ${expected} holders`);
      } else if (expected !== 0) {
        fail(`block ${b} is held by ${expected} requests but not active`);
      }
    }
    if (qpN !== this.qPrefillN || qpS !== this.qPrefillSum) fail('queued prefill aggregates are stale');
    if (qdN !== this.qDecodeN || qdS !== this.qDecodeSum) fail('queued decode aggregates are stale');
  }
}

function fail(message: string): never {
  throw new EngineInvariantError(message);
}
