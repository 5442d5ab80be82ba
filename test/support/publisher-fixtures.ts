/** Shared inputs for the publisher tests and benchmark. */
import type { FpmSnapshot, KvEventLog } from '../../src/engine/types.js';
import { KvEventKind } from '../../src/engine/types.js';

export const FPM: FpmSnapshot = {
  numPrefillRequests: 1,
  sumPrefillTokens: 128,
  varPrefillLength: 0,
  sumPrefillKvTokens: 0,
  numDecodeRequests: 3,
  sumDecodeKvTokens: 900,
  varDecodeKvTokens: 4.5,
  numQueuedPrefill: 0,
  sumQueuedPrefillTokens: 0,
  varQueuedPrefillLength: 0,
  numQueuedDecode: 0,
  sumQueuedDecodeKvTokens: 0,
  varQueuedDecodeKvTokens: 0,
};

/** Two events: store one block (hash 0xffff_ffff_0000_0001, no parent), then remove it. */
export function twoEventLog(firstEventId: number): KvEventLog {
  return {
    count: 2,
    firstEventId,
    blockSize: 2,
    kind: Uint8Array.of(KvEventKind.stored, KvEventKind.removed),
    hasParent: Uint8Array.of(0, 0),
    parentHi: new Uint32Array(2),
    parentLo: new Uint32Array(2),
    hashStart: Int32Array.of(0, 1),
    hashCount: Int32Array.of(1, 1),
    tokenStart: Int32Array.of(0, 0),
    seqHashHi: Uint32Array.of(0xffffffff, 0xffffffff),
    seqHashLo: Uint32Array.of(1, 1),
    tokHashHi: Uint32Array.of(0, 0),
    tokHashLo: Uint32Array.of(77, 0),
    tokens: Uint32Array.of(5, 6),
  };
}

/** Polls a condition; the timeout is only a hang guard. */
export async function waitFor(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

