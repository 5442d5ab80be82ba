import type { Engine } from '../engine/engine.js';
import type { PrefixCacheLookup } from '../engine/kv/hash-table.js';
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
  /** Each rank's prefix-cache table (null: prefix caching off, nothing cached). */
  private readonly tables: readonly (PrefixCacheLookup | null)[];
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
  /** Per-rank bounds for the next matchDepths call only (boundNextWalks), else null. */
  private walkBounds: Int32Array | null = null;

  constructor(engines: readonly Engine[]) {
    this.tables = engines.map((e) => e.prefixCacheTable);
    this.verified = new Int32Array(engines.length);
    this.missed = new Uint8Array(engines.length);
    this.removalsSeen = new Float64Array(engines.length).fill(-1);
    this.insertionsSeen = new Float64Array(engines.length).fill(-1);
  }

  /**
   * For the next matchDepths call only: rank r caches none of the chain's blocks from bounds[r]
   * on (RoutedIds.bounds), so its walk stops there. The caller vouches for the bounds, and they
   * must not cut a prefix this view verified before (a bound from routing history never does:
   * what a rank cached came from requests routed to it).
   */
  boundNextWalks(bounds: Int32Array): void {
    this.walkBounds = bounds;
  }

  /**
   * Each rank's table is read directly (Engine.prefixCacheTable), not through its engine: the
   * objects on the way are cold after the passes between two picks, and a read ahead of the
   * walks (tried) costs as much as it saves.
   */
  matchDepths(numBlocks: number, hi: Uint32Array, lo: Uint32Array, firstRank: number, numCandidates: number, depth: Int32Array, numSeenBlocks = numBlocks): void {
    // Walks stop at the first block cached nowhere. The chain kept from the last call is of seen
    // blocks, so `shared` ≤ limit: every walk starts at or before it.
    const limit = numSeenBlocks < numBlocks ? numSeenBlocks : numBlocks;
    const bounds = this.walkBounds;
    this.walkBounds = null;
    const tables = this.tables, verified = this.verified, missed = this.missed;
    const removalsSeen = this.removalsSeen, insertionsSeen = this.insertionsSeen;
    const keptHi = this.keptHi, keptLo = this.keptLo;
    let shared = 0;
    const m = Math.min(numBlocks, this.keptLen);
    while (shared < m && keptHi[shared] === hi[shared] && keptLo[shared] === lo[shared]) shared++;
    const end = firstRank + numCandidates;
    if (numCandidates < tables.length) {
      // Ranks not asked keep what they know only as far as the new chain agrees with the old.
      for (let r = 0; r < tables.length; r++) {
        if ((r < firstRank || r >= end) && (verified[r] as number) >= shared) {
          verified[r] = shared;
          missed[r] = 0;
        }
      }
    }
    let keep = shared;
    for (let r = firstRank; r < end; r++) {
      const t = tables[r] as PrefixCacheLookup | null;
      let d = 0;
      let stop = limit;
      if (bounds !== null && (bounds[r] as number) < stop) stop = bounds[r] as number;
      // With nothing to look up the table stays unread (a cold line per rank), and so do its
      // counts: the seen counts stay those of an earlier lookup, and the depth 0 recorded with a
      // miss holds as long as they match (the cache has not changed since then, so block 0 of
      // this chain, absent now, is absent then too).
      if (t !== null && stop > 0) {
        const v = verified[r] as number;
        const removals = t.removals, insertions = t.insertions;
        if (removalsSeen[r] !== removals) d = t.findRun(hi, lo, 0, stop, null);
        else if (v < shared && missed[r] === 1 && insertionsSeen[r] === insertions) d = v;
        else {
          const from = v < shared ? v : shared;
          d = from < stop ? t.findRun(hi, lo, from, stop, null) : from;
        }
        removalsSeen[r] = removals;
        insertionsSeen[r] = insertions;
      }
      depth[r] = d;
      verified[r] = d;
      missed[r] = d < numBlocks ? 1 : 0;
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
