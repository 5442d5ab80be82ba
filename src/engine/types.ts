/**
 * Public shapes of the pure engine (one simulated GPU rank). Contract shared by the rank worker,
 * the offline replayer and the router. See src/engine/README.md.
 *
 * Conventions: request ids are caller-assigned non-negative int32 values, unique among the live
 * requests of one engine. u64 hashes travel as two u32 halves (hi, lo) inside the engine and
 * become bigint only at the wire boundary.
 */

export type PreemptionMode = 'lifo' | 'fifo';

export interface EngineArgs {
  /** KV blocks per rank. */
  readonly numGpuBlocks: number;
  /** Tokens per KV block. */
  readonly blockSize: number;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly enablePrefixCaching: boolean;
  readonly enableChunkedPrefill: boolean;
  readonly preemptionMode: PreemptionMode;
  /** Seed for generated token ids and for random block ids when prefix caching is off. */
  readonly seed: number;
}

/** Why a request left the engine. Numeric so it fits typed arrays. */
export const FinishReason = {
  /** Generated max_tokens tokens (vLLM finish_reason "length"). */
  length: 1,
  /** Aborted by the caller. Never reported by step(): abortRequest() is synchronous. */
  abort: 2,
  /** Can never fit: prompt larger than the whole KV cache. */
  rejected: 3,
} as const;
export type FinishReasonCode = (typeof FinishReason)[keyof typeof FinishReason];

/** Outcome of addRequest(). */
export const AddOutcome = {
  queued: 0,
  /** The whole known sequence can never fit in the KV cache; nothing was queued. */
  rejectedTooLarge: 1,
} as const;
export type AddOutcomeCode = (typeof AddOutcome)[keyof typeof AddOutcome];

/**
 * Forward-pass metrics snapshot (schema v1, engine-spec §8.1) without identity and wall time,
 * which the caller stamps. Variances are population variances (0 when empty).
 */
export interface FpmSnapshot {
  numPrefillRequests: number;
  sumPrefillTokens: number;
  varPrefillLength: number;
  sumPrefillKvTokens: number;
  numDecodeRequests: number;
  sumDecodeKvTokens: number;
  varDecodeKvTokens: number;
  numQueuedPrefill: number;
  sumQueuedPrefillTokens: number;
  varQueuedPrefillLength: number;
  numQueuedDecode: number;
  sumQueuedDecodeKvTokens: number;
  varQueuedDecodeKvTokens: number;
}

/** A snapshot with every count and variance 0 (an idle pass; the FPM heartbeat). */
export function emptyFpmSnapshot(): FpmSnapshot {
  return {
    numPrefillRequests: 0,
    sumPrefillTokens: 0,
    varPrefillLength: 0,
    sumPrefillKvTokens: 0,
    numDecodeRequests: 0,
    sumDecodeKvTokens: 0,
    varDecodeKvTokens: 0,
    numQueuedPrefill: 0,
    sumQueuedPrefillTokens: 0,
    varQueuedPrefillLength: 0,
    numQueuedDecode: 0,
    sumQueuedDecodeKvTokens: 0,
    varQueuedDecodeKvTokens: 0,
  };
}

/**
 * What one step() did. One engine-owned object, overwritten by the next step(): read it (or copy
 * what you need) before stepping again. Typed arrays may be replaced by larger ones when they
 * grow, so read them through this object each time.
 */
export interface StepResult {
  /** Modeled prefill time of the pass, ms, before any speedup scaling. */
  prefillMs: number;
  /** Modeled decode time of the pass, ms, before any speedup scaling. */
  decodeMs: number;
  /** Tokens scheduled this pass (prompt chunks + decode tokens): vllm:iteration_tokens_total. */
  numScheduledTokens: number;
  /** Preemptions that happened during this pass. */
  numPreemptions: number;
  /** Prompt tokens scheduled this pass (for prompt-token counters). */
  numPromptTokensScheduled: number;

  /** Emitted tokens, one entry per token, in emission order. */
  numTokens: number;
  tokenRequestIds: Int32Array;
  tokenIds: Uint32Array;

  /** Requests that left the engine this pass (completed, or rejected at admission). */
  numFinished: number;
  finishedRequestIds: Int32Array;
  finishedReasons: Uint8Array;

  /** Requests admitted from waiting to running this pass, with their prefix-cache hit tokens. */
  numAdmissions: number;
  admissionRequestIds: Int32Array;
  admissionCachedTokens: Int32Array;
  /** Prompt tokens of each admitted request (for prefix-cache query counters). */
  admissionPromptTokens: Int32Array;

  fpm: FpmSnapshot;
}

/** Kinds of KV cache events (engine-spec §6). */
export const KvEventKind = { stored: 1, removed: 2, cleared: 3 } as const;
export type KvEventKindCode = (typeof KvEventKind)[keyof typeof KvEventKind];

/**
 * KV events since the last takeEvents(), as parallel arrays (no object per event).
 * Event i:
 *  - kind[i]
 *  - event_id = firstEventId + i (per engine, from 0, +1 per event)
 *  - stored: hasParent[i], parentHi[i]/parentLo[i] (sequence hash of the block before the first
 *    stored block); blocks j in [hashStart[i], hashStart[i] + hashCount[i]) with
 *    block_hash = seqHashHi[j]/seqHashLo[j] (sequence hash) and tokens_hash = tokHashHi[j]/tokHashLo[j];
 *    their token ids are tokens[tokenStart[i] .. tokenStart[i] + hashCount[i] * blockSize)
 *  - removed: block hashes seqHash*[j] over the same hash range (tokHash* unused)
 *  - cleared: no payload
 * Owned by the engine and valid until the next takeEvents().
 */
export interface KvEventLog {
  count: number;
  firstEventId: number;
  blockSize: number;
  kind: Uint8Array;
  hasParent: Uint8Array;
  parentHi: Uint32Array;
  parentLo: Uint32Array;
  hashStart: Int32Array;
  hashCount: Int32Array;
  tokenStart: Int32Array;
  seqHashHi: Uint32Array;
  seqHashLo: Uint32Array;
  tokHashHi: Uint32Array;
  tokHashLo: Uint32Array;
  tokens: Uint32Array;
}

/**
 * Modeled GPU time. All results in ms, unscaled. Implementations throw PerfModelError when they
 * cannot predict; they never return NaN or silently 0 for a non-empty batch.
 */
export interface PerfModel {
  /** count prefill chunks this pass; totalIsl = Σ(prefix + chunk prompt tokens); totalPrefix = Σ prefix. */
  prefillMs(count: number, totalIsl: number, totalPrefix: number): number;
  /** activeKvTokens = active blocks × block size; meanContextLength of the ready (decoding) requests. */
  decodeMs(activeKvTokens: number, totalKvTokens: number, meanContextLength: number): number;
  /**
   * true when decodeMs never reads meanContextLength: the passes of a plain decode run (same
   * active blocks, growing contexts) then all take the same time, and Engine.decodeRunMs asks once.
   */
  readonly decodeIgnoresContext?: boolean;
}

/**
 * Block hashes of a prompt computed by the caller (Engine.addRequestWithHashes): for each of the
 * numBlocks = floor(promptLength / blockSize) full prompt blocks, its sequence hash
 * (seqHashHi/seqHashLo) and tokens hash (tokHashHi/tokHashLo), exactly as computeBlockHashes gives
 * them. Read during the call only. The tokens hashes only go into Stored events: an engine that
 * records no KV events (EngineOptions.recordKvEvents false) takes null for them.
 */
export interface PromptBlockHashes {
  readonly numBlocks: number;
  readonly seqHashHi: Uint32Array;
  readonly seqHashLo: Uint32Array;
  readonly tokHashHi: Uint32Array | null;
  readonly tokHashLo: Uint32Array | null;
}

/** Options of one Engine that are not vLLM engine arguments. */
export interface EngineOptions {
  /**
   * Copy each stored block's token ids into KvEventLog.tokens (default true). A consumer that only
   * reads hashes (the offline replayer's router) turns it off: tokens stays empty and tokenStart is
   * 0 for every event.
   */
  readonly recordEventTokens?: boolean;
  /**
   * Record KV events at all (default true). The offline replayer turns it off when nothing reads
   * them (its kv router reads the prefix caches directly): takeEvents() then returns empty logs.
   */
  readonly recordKvEvents?: boolean;
  /**
   * Token ids that requests added with a `seed` generate (generated-tokens.ts): the serving
   * tokenizer's round-tripping subset. Default: [1000, 2000).
   */
  readonly generatedVocabulary?: Uint32Array;
  /**
   * Size the block pool and its prefix-cache table for every GPU block up front (default false:
   * they grow with use, so an idle serving rank stays small). The offline replayer sets it: its
   * ranks fill their pools anyway, and growing means copying and rehashing on the way.
   */
  readonly reserveBlocks?: boolean;
  /**
   * Keep every prompt token of a request added with its block hashes (default true). false stores
   * only the tokens from the prompt's last full block on (its token buffer starts there): nothing
   * else reads them once the hashes are given, except Stored events' token ids (so it needs
   * recordEventTokens false), requestTokens() (which then throws for such a request) and
   * checkInvariants() (which then checks the prompt blocks' hashes no further than given). The
   * offline replayer sets it: storing 12 k-token prompts was ~9 % of a replay.
   */
  readonly keepPromptTokens?: boolean;
  /**
   * Keep the tokens a request generates (default true). false draws them (the RNG advances as
   * before, StepResult.tokenIds reports them) but stores none, and gives a block holding generated
   * tokens an identity hash instead of the hash of its tokens: its block hash is XXH3 of
   * (request nonce, block index) — the nonce counts the engine's requests — chained to its parent
   * as every sequence hash is. Unseeded generated tokens make every such block's content unique,
   * so the identity is equal to another hash exactly when the token hash would be (never), and
   * the engine behaves the same, without writing every token and hashing every generated block.
   * Seeded requests (whose tokens repeat with their seed) are refused, Stored events' token ids
   * need recordEventTokens false, and requestTokens() throws. The offline replayer sets it.
   */
  readonly keepGeneratedTokens?: boolean;
  /**
   * Keep the prefix cache in a GroupedBlockHashTable whose entries group the hashes that differ
   * only in these low bits of their low half (1–5; default 0: a BlockHashTable, one entry per
   * hash). The offline replayer sets it, as its block hashes come in such groups (one per trace
   * block, src/replay/trace-hashes.ts); real prompts' hashes would take one entry each.
   */
  readonly blockHashGroupBits?: number;
}
