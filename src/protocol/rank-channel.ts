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
 * After changing any of these or writing an inbox, main bumps and notifies the wake word of the
 * thread that runs the rank (ThreadTask.wake); that thread's only wait is on that word.
 */

export const Ctl = { stop: 0, state: 3, fault: 4 } as const;
export const CTL_WORDS = 8;

export const RankState = { starting: 0, running: 1, stopped: 2 } as const;

export const FaultKind = { none: 0, throw: 1, exit: 2, oom: 3 } as const;
export type FaultName = 'throw' | 'exit' | 'oom';

export const InboxKind = { add: 1, abort: 2 } as const;

/**
 * add:   u32 kind | i32 requestId | i32 maxTokens | u32 numTokens | f64 arrivalEpochMs
 *        | i32 seed | u32 flags | u32 tokens[numTokens]
 * flags bit 0 (INBOX_FLAG_SEEDED): the request's tokens come from its seed (generated-tokens.ts);
 * bit 1 (INBOX_FLAG_STOP): the frontend ends the request at a stop (string, token id, EOS): it
 * finishes with finish_reason "stop" in vllm:request_success;
 * bits 8-23: the request's `n` (vllm:request_params_n), 0 for the 2nd.. choice of a parallel-sampling group.
 */
export const INBOX_ADD_HEADER = 32;
export const INBOX_FLAG_SEEDED = 1;
export const INBOX_FLAG_STOP = 2;
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

/** Ring sizes per rank. The inbox must hold one request of max-model-len tokens. */
export function inboxRingBytes(maxModelLen: number): number {
  // One max-length request must fit (record = 4-byte length + payload, padded to 4).
  const need = 4 + INBOX_ADD_HEADER + 4 * maxModelLen + 4;
  return Math.max(1 << 20, 2 ** Math.ceil(Math.log2(need)));
}
export const OUTPUT_RING_BYTES = 1 << 20;
export const EVENT_RING_BYTES = 1 << 20;
