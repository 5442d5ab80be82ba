import type { Engine } from '../engine/engine.js';
import type { CachedBlocksView } from '../router/types.js';

/**
 * The offline kv router's view of the ranks' caches, read straight from the engines (kvRouterView
 * 'engines'; src/replay/README.md, "Router view").
 *
 * Most requests share a long leading run with the request before them (a system prompt, an
 * earlier turn), and most ranks change little in their cache between two picks. So each rank
 * remembers how many leading blocks of the last chain it was found to cache, whether the block
 * after them was looked up and missed, and its cache's removal and insertion counts then
 * (`Engine.cacheRemovals`, `cacheInsertions`):
 * - no removal since: the blocks this chain shares with the last one, up to that depth, are still
 *   cached, and the walk starts there;
 * - no change at all, and this chain also shares the block that missed: the depth is the same.
 * Exact: a block enters a cache only by an insertion and leaves it only by a removal.
 */
export class EngineCaches implements CachedBlocksView {
  private readonly engines: readonly Engine[];
  /** Per rank: leading blocks of the kept chain found cached; 1 when the block after them missed. */
  private readonly verified: Int32Array;
  private readonly missed: Uint8Array;
  /** Per rank: its cache's removal and insertion counts at that lookup (-1: never looked up). */
  private readonly removalsSeen: Float64Array;
  private readonly insertionsSeen: Float64Array;
  /** The leading blocks of the last chain asked about that any rank's `verified` (+ 1) reaches. */
  private keptHi = new Uint32Array(64);
  private keptLo = new Uint32Array(64);
  private keptLen = 0;
  /** Per rank: the block its walk starts at in the current call (-1: none needed). */
  private readonly start: Int32Array;
  /** Keeps the read-ahead observable. */
  warmSink = 0;

  constructor(engines: readonly Engine[]) {
    this.engines = engines;
    this.verified = new Int32Array(engines.length);
    this.start = new Int32Array(engines.length);
    this.missed = new Uint8Array(engines.length);
    this.removalsSeen = new Float64Array(engines.length).fill(-1);
    this.insertionsSeen = new Float64Array(engines.length).fill(-1);
  }

  matchDepths(numBlocks: number, hi: Uint32Array, lo: Uint32Array, firstRank: number, numCandidates: number, depth: Int32Array): void {
    const engines = this.engines, verified = this.verified, missed = this.missed;
    const removalsSeen = this.removalsSeen, insertionsSeen = this.insertionsSeen;
    const keptHi = this.keptHi, keptLo = this.keptLo;
    let shared = 0;
    const m = Math.min(numBlocks, this.keptLen);
    while (shared < m && keptHi[shared] === hi[shared] && keptLo[shared] === lo[shared]) shared++;
    const end = firstRank + numCandidates;
    if (numCandidates < engines.length) {
      // Ranks not asked keep what they know only as far as the new chain agrees with the old.
      for (let r = 0; r < engines.length; r++) {
        if ((r < firstRank || r >= end) && (verified[r] as number) >= shared) {
          verified[r] = shared;
          missed[r] = 0;
        }
      }
    }
    // First pass: where each rank's walk starts (-1: its depth is known), and a read of that
    // block's slot in its cache — independent loads across ranks, so their misses overlap.
    const start = this.start;
    let sink = 0;
    for (let r = firstRank; r < end; r++) {
      const e = engines[r] as Engine;
      const v = verified[r] as number;
      let from: number;
      if (removalsSeen[r] !== e.cacheRemovals) from = 0;
      else if (v < shared && missed[r] === 1 && insertionsSeen[r] === e.cacheInsertions) from = -1;
      else from = Math.min(shared, v);
      start[r] = from;
      if (from >= 0 && from < numBlocks) sink ^= e.peekCachedBlock(hi[from] as number, lo[from] as number);
    }
    this.warmSink ^= sink;
    let keep = shared;
    for (let r = firstRank; r < end; r++) {
      const e = engines[r] as Engine;
      const from = start[r] as number;
      const d = from < 0 ? verified[r] as number : e.cachedPrefixBlocks(numBlocks, hi, lo, from);
      depth[r] = d;
      verified[r] = d;
      missed[r] = d < numBlocks ? 1 : 0;
      removalsSeen[r] = e.cacheRemovals;
      insertionsSeen[r] = e.cacheInsertions;
      if (d + 1 > keep) keep = Math.min(d + 1, numBlocks);
    }
    if (keep > keptHi.length) {
      let n = keptHi.length;
      while (n < keep) n *= 2;
      const nh = new Uint32Array(n), nl = new Uint32Array(n);
      nh.set(keptHi.subarray(0, shared));
      nl.set(keptLo.subarray(0, shared));
      this.keptHi = nh;
      this.keptLo = nl;
    }
    const kh = this.keptHi, kl = this.keptLo;
    for (let i = shared; i < keep; i++) {
      kh[i] = hi[i] as number;
      kl[i] = lo[i] as number;
    }
    this.keptLen = keep;
  }
}
