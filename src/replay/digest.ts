/**
 * A fingerprint of an offline replay's per-request results, so that a change which must not
 * alter them (a speed-up, a parallel replay) can be checked against the run before it.
 */
import { createHash } from 'node:crypto';
import type { OfflineReplayResult } from './offline.js';

/**
 * The first 16 hex digits of the SHA-256 of every request's arrival, first, second and last token
 * times, output tokens, reused tokens, status and rank: the raw bytes of those arrays, in that
 * order. Equal digests mean bit-identical per-request results.
 */
export function replayResultsDigest(r: OfflineReplayResult): string {
  const h = createHash('sha256');
  for (const a of [r.arrivalMs, r.firstTokenMs, r.secondTokenMs, r.lastTokenMs, r.outputTokens, r.reusedTokens, r.status, r.rank]) {
    h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  }
  return h.digest('hex').slice(0, 16);
}
