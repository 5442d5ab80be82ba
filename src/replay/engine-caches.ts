import type { Engine } from '../engine/engine.js';
import type { CacheListener } from '../engine/types.js';
import type { CachedBlocksView } from '../router/types.js';

/** Low bits of a grouped block hash's low half: the block's index in its group (src/replay/trace-hashes.ts). */
const INDEX_MASK = 31;
/** Fleets up to this many ranks keep group-head filters (64 KiB per rank). */
const MAX_HEADS_RANKS = 256;
/** Counters per rank in the group-head filters: one per value of a head's `hi & HEAD_MASK`. */
const HEAD_BITS = 16;
const HEAD_MASK = (1 << HEAD_BITS) - 1;

/**
 * The offline kv router's view of the ranks' caches, read straight from the engines (kvRouterView
 * 'engines'; src/replay/README.md, "Router view").
 *
 * Most requests share a long leading run with the request before them (a system prompt, an
 * earlier turn), and most ranks change little in their cache between two picks. So each rank
 * remembers how many leading blocks of the last chain it was found to cache, whether the block
 * after them was looked up and missed, and its cache's removal and insertion counts then (kept
 * here, in flat arrays, from each engine's CacheListener):
 * - no removal since: the blocks this chain shares with the last one, up to that depth, are still
 *   cached, and the walk starts there;
 * - no change at all, and this chain also shares the block that missed: the depth is the same.
 * Exact: a block enters a cache only by an insertion and leaves it only by a removal.
 *
 * With grouped hashes (`groupedHashes`: the replay's trace-prefix identities, a trace block's
 * engine blocks sharing all but the low 5 bits) two chains part at a group's first block, and
 * that is where nearly every walk starts: at the first block the new chain does not share with
 * the last one, which few ranks hold. So each rank also keeps a counting filter of the group
 * heads (blocks with index 0) it caches, and a rank whose filter rules the block out is not
 * looked up.
 */
export class EngineCaches implements CachedBlocksView {
  private readonly engines: readonly Engine[];
  /** Per rank: leading blocks of the kept chain found cached; 1 when the block after them missed. */
  private readonly verified: Int32Array;
  private readonly missed: Uint8Array;
  /** Per rank: hashes its cache has taken in and dropped so far (a clear counts as a drop). */
  private readonly insertions: Float64Array;
  private readonly removals: Float64Array;
  /** Per rank: those counts at its last lookup (-1: never looked up). */
  private readonly removalsSeen: Float64Array;
  private readonly insertionsSeen: Float64Array;
  /**
   * Per rank (grouped hashes, ≤ MAX_HEADS_RANKS ranks; else null), 2^HEAD_BITS saturating
   * counters of the group heads its cache holds by `hi & HEAD_MASK`: 0 = none with those bits
   * (RankListener keeps them).
   */
  private readonly headCounts: Uint8Array | null;
  /** The leading blocks of the last chain asked about that any rank's `verified` (+ 1) reaches. */
  private keptHi = new Uint32Array(64);
  private keptLo = new Uint32Array(64);
  private keptLen = 0;
  /** Per rank: the block its walk starts at in the current call (-1: depth known, -3: lacks block `shared`). */
  private readonly start: Int32Array;
  /** Keeps the read-ahead observable. */
  warmSink = 0;

  /** The engines must not have cached anything yet: the counts start from their first change. */
  constructor(engines: readonly Engine[], options: { groupedHashes?: boolean } = {}) {
    const n = engines.length;
    this.engines = engines;
    this.verified = new Int32Array(n);
    this.start = new Int32Array(n);
    this.missed = new Uint8Array(n);
    this.insertions = new Float64Array(n);
    this.removals = new Float64Array(n);
    this.removalsSeen = new Float64Array(n).fill(-1);
    this.insertionsSeen = new Float64Array(n).fill(-1);
    this.headCounts = options.groupedHashes === true && n <= MAX_HEADS_RANKS ? new Uint8Array(n << HEAD_BITS) : null;
    for (let r = 0; r < n; r++) {
      const e = engines[r] as Engine;
      if (e.cacheInsertions !== 0) throw new Error(`EngineCaches: rank ${r} has cached blocks already; it must see every change of every cache`);
      e.setCacheListener(new RankListener(this.insertions, this.removals, this.headCounts, r));
    }
  }

  matchDepths(numBlocks: number, hi: Uint32Array, lo: Uint32Array, firstRank: number, numCandidates: number, depth: Int32Array): void {
    const engines = this.engines, verified = this.verified, missed = this.missed;
    const insertions = this.insertions, removals = this.removals;
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
    // A walk from a group's first block needs no lookup on a rank whose filter rules it out.
    const headCounts = this.headCounts;
    const headAt = headCounts !== null && shared < numBlocks && ((lo[shared] as number) & INDEX_MASK) === 0 ? (hi[shared] as number) & HEAD_MASK : -1;
    // First pass: where each rank's walk starts, and a read of that block's slot in its cache —
    // independent loads across ranks, so their misses overlap.
    const start = this.start;
    let sink = 0;
    for (let r = firstRank; r < end; r++) {
      const v = verified[r] as number;
      let from: number;
      if (removalsSeen[r] !== removals[r]) from = 0;
      else if (v < shared && missed[r] === 1 && insertionsSeen[r] === insertions[r]) from = -1;
      else from = Math.min(shared, v);
      if (from === shared && headAt >= 0 && (headCounts as Uint8Array)[(r << HEAD_BITS) | headAt] === 0) from = -3;
      start[r] = from;
      if (from >= 0 && from < numBlocks) sink ^= (engines[r] as Engine).peekCachedBlock(hi[from] as number, lo[from] as number);
    }
    this.warmSink ^= sink;
    let keep = shared;
    for (let r = firstRank; r < end; r++) {
      const from = start[r] as number;
      let d: number;
      if (from === -1) d = verified[r] as number;
      else if (from === -3) d = shared;
      else d = (engines[r] as Engine).cachedPrefixBlocks(numBlocks, hi, lo, from);
      depth[r] = d;
      verified[r] = d;
      missed[r] = d < numBlocks ? 1 : 0;
      removalsSeen[r] = removals[r] as number;
      insertionsSeen[r] = insertions[r] as number;
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

/**
 * One rank's CacheListener: counts its cache's insertions and removals, and its group heads in
 * saturating byte counters (a counter that reaches 255 stays there until the cache is cleared, so
 * it stays an upper bound: 0 always means "none").
 */
class RankListener implements CacheListener {
  private readonly insertions: Float64Array;
  private readonly removals: Float64Array;
  private readonly headCounts: Uint8Array | null;
  private readonly rank: number;
  private readonly base: number;
  constructor(insertions: Float64Array, removals: Float64Array, headCounts: Uint8Array | null, rank: number) {
    this.insertions = insertions;
    this.removals = removals;
    this.headCounts = headCounts;
    this.rank = rank;
    this.base = rank << HEAD_BITS;
  }
  blockStored(hashHi: number, hashLo: number): void {
    this.insertions[this.rank] = (this.insertions[this.rank] as number) + 1;
    const counts = this.headCounts;
    if (counts === null || (hashLo & INDEX_MASK) !== 0) return;
    const i = this.base | (hashHi & HEAD_MASK);
    const c = counts[i] as number;
    if (c < 255) counts[i] = c + 1;
  }
  blockRemoved(hashHi: number, hashLo: number): void {
    this.removals[this.rank] = (this.removals[this.rank] as number) + 1;
    const counts = this.headCounts;
    if (counts === null || (hashLo & INDEX_MASK) !== 0) return;
    const i = this.base | (hashHi & HEAD_MASK);
    const c = counts[i] as number;
    // The head was counted when stored; a saturated counter no longer counts down.
    if (c < 255) counts[i] = c - 1;
  }
  cacheCleared(): void {
    this.removals[this.rank] = (this.removals[this.rank] as number) + 1;
    if (this.headCounts !== null) this.headCounts.fill(0, this.base, this.base + (1 << HEAD_BITS));
  }
}
