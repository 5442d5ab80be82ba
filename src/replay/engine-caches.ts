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
    this.askedIn = new Uint32Array(engines.length);
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
    this.beginWalks(numBlocks, hi, lo, numSeenBlocks);
    for (let r = firstRank, end = firstRank + numCandidates; r < end; r++) depth[r] = this.depthOf(r);
    this.endWalks();
  }

  // The walks of one pick, rank by rank (IncrementalCachedBlocksView): what matchDepths does, for
  // a caller that decides per rank whether to ask (the kv router skips ranks that cannot win).
  private pickHi: Uint32Array = new Uint32Array(0);
  private pickLo: Uint32Array = new Uint32Array(0);
  private pickNumBlocks = 0;
  private pickLimit = 0;
  private pickShared = 0;
  private pickKeep = 0;
  private pickBounds: Int32Array | null = null;
  /** Per rank: the pick number that last asked about it (ranks not asked are clipped at the end). */
  private readonly askedIn: Uint32Array;
  private pickNo = 0;

  /** Start a pick's walks over the chain hi/lo[0..numBlocks) (blocks from numSeenBlocks on are cached nowhere). */
  beginWalks(numBlocks: number, hi: Uint32Array, lo: Uint32Array, numSeenBlocks = numBlocks): void {
    // Walks stop at the first block cached nowhere. The chain kept from the last call is of seen
    // blocks, so `shared` ≤ limit: every walk starts at or before it.
    this.pickLimit = numSeenBlocks < numBlocks ? numSeenBlocks : numBlocks;
    this.pickBounds = this.walkBounds;
    this.walkBounds = null;
    this.pickHi = hi;
    this.pickLo = lo;
    this.pickNumBlocks = numBlocks;
    const keptHi = this.keptHi, keptLo = this.keptLo;
    let shared = 0;
    const m = Math.min(numBlocks, this.keptLen);
    while (shared < m && keptHi[shared] === hi[shared] && keptLo[shared] === lo[shared]) shared++;
    this.pickShared = shared;
    this.pickKeep = shared;
    this.pickNo = (this.pickNo + 1) >>> 0 || 1;
  }

  /** Leading blocks of the pick's chain that rank r caches (each rank at most once per pick). */
  depthOf(r: number): number {
    const t = this.tables[r] as PrefixCacheLookup | null;
    const verified = this.verified, missed = this.missed;
    const hi = this.pickHi, lo = this.pickLo, numBlocks = this.pickNumBlocks, shared = this.pickShared;
    const bounds = this.pickBounds;
    this.askedIn[r] = this.pickNo;
    let d = 0;
    let stop = this.pickLimit;
    if (bounds !== null && (bounds[r] as number) < stop) stop = bounds[r] as number;
    // With nothing to look up the table stays unread (a cold line per rank), and so do its
    // counts: the seen counts stay those of an earlier lookup, and the depth 0 recorded with a
    // miss holds as long as they match (the cache has not changed since then, so block 0 of
    // this chain, absent now, is absent then too).
    if (t !== null && stop > 0) {
      const v = verified[r] as number;
      const removals = t.removals, insertions = t.insertions;
      if (this.removalsSeen[r] !== removals) d = t.findRun(hi, lo, 0, stop, null);
      else if (v < shared && missed[r] === 1 && this.insertionsSeen[r] === insertions) d = v;
      else {
        const from = v < shared ? v : shared;
        d = from < stop ? t.findRun(hi, lo, from, stop, null) : from;
      }
      this.removalsSeen[r] = removals;
      this.insertionsSeen[r] = insertions;
    }
    verified[r] = d;
    missed[r] = d < numBlocks ? 1 : 0;
    if (d + 1 > this.pickKeep) this.pickKeep = Math.min(d + 1, numBlocks);
    return d;
  }

  /** End the pick: ranks not asked keep what they know only as far as the new chain agrees with the old. */
  endWalks(): void {
    const verified = this.verified, missed = this.missed, askedIn = this.askedIn, pickNo = this.pickNo;
    const shared = this.pickShared;
    for (let r = 0; r < verified.length; r++) {
      if (askedIn[r] !== pickNo && (verified[r] as number) >= shared) {
        verified[r] = shared;
        missed[r] = 0;
      }
    }
    const keep = this.pickKeep, hi = this.pickHi, lo = this.pickLo;
    if (keep > this.keptHi.length) {
      let n = this.keptHi.length;
      while (n < keep) n *= 2;
      const nh = new Uint32Array(n), nl = new Uint32Array(n);
      nh.set(this.keptHi.subarray(0, shared));
      nl.set(this.keptLo.subarray(0, shared));
      this.keptHi = nh;
      this.keptLo = nl;
    }
    const kh = this.keptHi, kl = this.keptLo;
    for (let i = shared; i < keep; i++) {
      kh[i] = hi[i] as number;
      kl[i] = lo[i] as number;
    }
    this.keptLen = keep;
    this.pickBounds = null;
  }
}
