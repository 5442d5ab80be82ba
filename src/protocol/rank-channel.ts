/**
 * Coordinator <-> rank thread channel: a control word array plus two byte rings.
 *
 *   main --inbox ring-->  rank      add / abort records (per request)
 *   main <--output ring-- rank      one record per pass: tokens, finishes, admissions, KV hashes
 *
 * Control (Int32Array over its own SharedArrayBuffer, one per rank):
 *   STOP       main sets 1 to ask the rank to stop (its thread returns once all its ranks stopped)
 *   STATE      rank: 0 starting, 1 running, 2 stopped
 *   FAULT      main sets a FaultKind to make the rank fail on purpose (--enable-fault-injection)
 * After changing any of these or writing an inbox, main marks the rank in the wake word of the
 * thread that runs it (ThreadTask.wake) and bumps and notifies that word; the thread's only wait
 * is on it, and a wake-up services the marked ranks plus those whose deadline came.
 *
 * Thread wake word (Int32Array): [counter, unused, bitmap of the thread's ranks by local index].
 */

export const Ctl = { stop: 0, state: 3, fault: 4 } as const;
export const CTL_WORDS = 8;

/** Bytes of a thread's wake word for this many ranks. */
export function threadWakeBytes(ranksPerThread: number): number {
  return 4 * (2 + Math.ceil(ranksPerThread / 32));
}

/** Main: mark the thread's local rank for service, then bump and notify the thread's wake word. */
export function markThreadRank(wake: Int32Array, local: number): void {
  Atomics.or(wake, 2 + (local >>> 5), 1 << (local & 31));
  Atomics.add(wake, 0, 1);
  Atomics.notify(wake, 0);
}

/** Rank thread: set marked[i] = 1 for every rank marked since the last call, clearing the marks. */
export function takeThreadRanks(wake: Int32Array, marked: Uint8Array): void {
  for (let w = 2; w < wake.length; w++) {
    if (wake[w] === 0) continue;
    let bits = Atomics.exchange(wake, w, 0);
    while (bits !== 0) {
      const low = bits & -bits;
      marked[((w - 2) << 5) + 31 - Math.clz32(low)] = 1;
      bits ^= low;
    }
  }
}

export const RankState = { starting: 0, running: 1, stopped: 2 } as const;

export const FaultKind = { none: 0, throw: 1, exit: 2, oom: 3 } as const;
export type FaultName = 'throw' | 'exit' | 'oom';

/**
 * addLarge: u32 kind | i32 requestId — the add record of that id waits in the thread's large
 * inbox (a request too big for the rank's own compact inbox; see largeInboxRingBytes).
 */
export const InboxKind = { add: 1, abort: 2, addLarge: 3 } as const;
export const INBOX_MARKER_BYTES = 8;

/**
 * add:   u32 kind | i32 requestId | i32 maxTokens | u32 numTokens | f64 arrivalEpochMs
 *        | i32 seed | u32 flags | u32 tokens[numTokens]
 * flags bit 0 (INBOX_FLAG_SEEDED): the request's tokens come from its seed (generated-tokens.ts);
 * bit 1 (INBOX_FLAG_STOP): the frontend ends the request at a stop (string, token id, EOS): it
 * finishes with finish_reason "stop" in vllm:request_success;
 * bit 2 (INBOX_FLAG_URGENT): a client reads its tokens as they come (streaming): every pass that
 * gives it a token wakes the coordinator. Without it the tokens ride along lazily (see OUTPUT_LAZY below);
 * bits 8-23: the request's `n` (vllm:request_params_n), 0 for the 2nd.. choice of a parallel-sampling group.
 */
export const INBOX_ADD_HEADER = 32;
export const INBOX_FLAG_SEEDED = 1;
export const INBOX_FLAG_STOP = 2;
export const INBOX_FLAG_URGENT = 4;
export const INBOX_N_SHIFT = 8;
export const INBOX_N_MAX = 0xffff;
/** abort: u32 kind | i32 requestId */
export const INBOX_ABORT_BYTES = 8;

/**
 * Output record, one per pass (or per batch of inbox rejections):
 *   u32 numTokens | u32 numFinished | u32 numAdmissions | u32 numStored | u32 numRemoved | u32 cleared
 *   f64 passEndEpochMs
 *   tokens:     numTokens     x (i32 requestId, u32 tokenId)
 *   finished:   numFinished   x (i32 requestId, u32 FinishReason)
 *   admissions: numAdmissions x (i32 requestId, i32 cachedTokens)
 *   stored:     numStored     x (u32 hashHi, u32 hashLo)      sequence hashes, for the KV router
 *   removed:    numRemoved    x (u32 hashHi, u32 hashLo)
 */
export const OUTPUT_HEADER = 32;

/**
 * OUTPUT_LAZY: a rank marks its bit in the output doorbell after every record, but signals (wakes
 * the main thread) only for records someone waits for now: tokens of urgent (streaming) requests,
 * a request's first token, finishes, rejections, admissions, KV-router hashes, or an output ring
 * more than OUTPUT_LAZY_FILL full. Other records (tokens of non-streaming requests, needed only at
 * their finish) are drained on the main thread's next wake-up: any signal, or its wait timeout
 * (OUTPUT_LAZY_MAX_MS). The ring is FIFO, so a finish always follows its request's tokens.
 */
export const OUTPUT_LAZY_FILL = 1 / 4;
export const OUTPUT_LAZY_MAX_MS = 50;
/**
 * A rank also coalesces such passes: their tokens wait in the rank and go out in one record with
 * the next awaited one, or once the oldest is OUTPUT_LAZY_MAX_MS old or OUTPUT_LAZY_MAX_TOKENS
 * are kept. A record's passEndEpochMs is then its last pass's.
 */
export const OUTPUT_LAZY_MAX_TOKENS = 1024;

/**
 * Ring sizes. Each rank has a compact inbox (64 KiB: requests up to ~16 K prompt tokens, aborts);
 * each thread has one large inbox that holds one request of max-model-len tokens, shared by its
 * ranks: a bigger request goes there and its rank gets an addLarge marker in its own inbox. So a
 * rank costs 64 KiB of inbox instead of 4 MiB at the default max-model-len (the whole KV cache).
 */
export const INBOX_RING_BYTES = 1 << 16;
export function largeInboxRingBytes(maxModelLen: number): number {
  // One max-length request must fit (record = 4-byte length + payload, padded to 4).
  const need = 4 + INBOX_ADD_HEADER + 4 * maxModelLen + 4;
  return Math.max(1 << 16, 2 ** Math.ceil(Math.log2(need)));
}
/** A pass's output record is ~8 B per token/finish/admission/router hash: 256 KiB holds dozens of passes. */
export const OUTPUT_RING_BYTES = 1 << 18;
/**
 * A pass's KV events are at most ~6 B per scheduled token (token ids in vLLM's layout) plus
 * ~40 B per block; four full passes must fit so the publisher's ~1 ms drain never blocks a rank.
 */
export function eventRingBytes(maxNumBatchedTokens: number): number {
  return Math.max(1 << 16, 2 ** Math.ceil(Math.log2(4 * 8 * maxNumBatchedTokens)));
}
