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

export const InboxKind = { add: 1, abort: 2 } as const;

/** add:   u32 kind | i32 requestId | i32 maxTokens | u32 numTokens | f64 arrivalEpochMs | u32 tokens[numTokens] */
export const INBOX_ADD_HEADER = 24;
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

/** Ring sizes per rank. The inbox must hold one request of max-model-len tokens. */
export function inboxRingBytes(maxModelLen: number): number {
  // One max-length request must fit (record = 4-byte length + payload, padded to 4).
  const need = 4 + INBOX_ADD_HEADER + 4 * maxModelLen + 4;
  return Math.max(1 << 20, 2 ** Math.ceil(Math.log2(need)));
}
export const OUTPUT_RING_BYTES = 1 << 20;
export const EVENT_RING_BYTES = 1 << 20;
