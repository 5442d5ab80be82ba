/**
 * Router-side load bookkeeping for the kv policy, after Dynamo's `ActiveSequences`
 * (`lib/kv-router/src/sequences/` — formerly `lib/llm/src/kv_router/sequence.rs`): the router
 * remembers what it sent where, so its load view is current at the instant of the next pick
 * instead of lagging behind the ranks' reports.
 *
 * Per rank it tracks
 * - **active prefill tokens**: for every routed request whose first token has not come back yet,
 *   the tokens it must prefill there (`prompt − cached overlap × block size`, Dynamo's
 *   `new_tokens`); dropped at the first token (`mark_prefill_completed`) or at the finish;
 * - **active blocks**: the distinct prompt blocks (full blocks, by sequence hash) of the rank's
 *   routed, unfinished requests — a prefix shared by two requests counts once
 *   (`router_assume_kv_reuse: true`); output blocks are not added
 *   (`router_track_output_blocks: false`, Dynamo's defaults).
 *
 * Two ways to keep block membership, with the same results for sequence hashes:
 * - `'index'` (default): a refCounted PrefixIndex (so one walk gives every candidate's depth): a
 *   rank's first reference on a block is its bit there, and only the extra references of blocks a
 *   rank holds more than once (shared prefixes) go to an open-addressing table next to it, so most
 *   blocks cost one probe per add and per finish. Works for any block keys.
 * - `'chains'`: only the requests' hash arrays. A sequence hash fixes the whole prefix before it
 *   (block i of two requests has the same hash exactly when their first i + 1 blocks match), so a
 *   rank's active blocks are the union of its requests' leading runs, and what a request shares
 *   with another is their longest common prefix — found by a galloping binary search over the two
 *   hash arrays in O(log blocks), not one probe per block. A rank's distinct blocks change by
 *   `numBlocks − longest prefix shared with the rank's other requests` at add and finish, and a
 *   request's depth on a rank is its longest prefix shared with any of them. Costs per pick grow
 *   with the requests in flight per rank (small in replays); the offline replayer uses it.
 */
import { PrefixIndex } from './prefix-index.js';

/** Requests a rank may have in flight before the id table grows (it grows on demand). */
const MIN_REQUESTS = 1024;

/** How ActiveSequences keeps block membership (see the file comment). */
export type ActiveBlocksMode = 'index' | 'chains';

interface ActiveRequest {
  rank: number;
  /** 'chains': index in its rank's request list. */
  pos: number;
  /** Prefill tokens still counted on the rank (0 once the first token came back). */
  prefillTokens: number;
  numBlocks: number;
  /** Hash halves: hi at [0, cap), lo at [cap, 2 × cap); cap = hashes.length / 2 is a power of two. */
  hashes: Uint32Array;
}

/** (rank, hi, lo) → extra reference count (count − 1); linear probing with backward-shift deletion. */
class BlockRefCounts {
  /** [hi, lo, rank, count] per slot; count 0 = empty. */
  private table = new Int32Array(4 * MIN_REQUESTS);
  private mask = MIN_REQUESTS - 1;
  private count = 0;

  /** Add `delta` (±1) to the count of (rank, h, l); returns the new count. */
  bump(rank: number, h: number, l: number, delta: number): number {
    let T = this.table;
    let s = this.home(rank, h, l);
    for (;;) {
      const b = s << 2;
      const c = T[b + 3] as number;
      if (c === 0) break;
      if (T[b] === h && T[b + 1] === l && T[b + 2] === rank) {
        const next = c + delta;
        if (next === 0) this.deleteSlot(s);
        else T[b + 3] = next;
        return next;
      }
      s = (s + 1) & this.mask;
    }
    if (delta < 0) throw new RangeError(`block ${h >>> 0}:${l >>> 0} of rank ${rank} has no reference to release`);
    if ((this.count + 1) * 2 > this.mask + 1) {
      this.rehash((this.mask + 1) * 2);
      T = this.table;
      s = this.home(rank, h, l);
      while (T[(s << 2) + 3] !== 0) s = (s + 1) & this.mask;
    }
    const b = s << 2;
    T[b] = h;
    T[b + 1] = l;
    T[b + 2] = rank;
    T[b + 3] = delta;
    this.count++;
    return delta;
  }

  private home(rank: number, h: number, l: number): number {
    const x = Math.imul(l ^ Math.imul(h ^ Math.imul(rank, 0x27d4eb2f), 0x85ebca6b), 0x9e3779b1);
    return (x ^ (x >>> 15)) & this.mask;
  }

  private deleteSlot(slot: number): void {
    const T = this.table, mask = this.mask;
    let hole = slot;
    let j = slot;
    for (;;) {
      j = (j + 1) & mask;
      const jb = j << 2;
      if (T[jb + 3] === 0) break;
      const k = this.home(T[jb + 2] as number, T[jb] as number, T[jb + 1] as number);
      const inRange = hole <= j ? k > hole && k <= j : k > hole || k <= j;
      if (inRange) continue;
      T.copyWithin(hole << 2, jb, jb + 4);
      hole = j;
    }
    T.fill(0, hole << 2, (hole << 2) + 4);
    this.count--;
  }

  private rehash(cap: number): void {
    const old = this.table;
    this.table = new Int32Array(4 * cap);
    this.mask = cap - 1;
    const T = this.table;
    for (let b = 0; b < old.length; b += 4) {
      if (old[b + 3] === 0) continue;
      let s = this.home(old[b + 2] as number, old[b] as number, old[b + 1] as number);
      while (T[(s << 2) + 3] !== 0) s = (s + 1) & this.mask;
      T.set(old.subarray(b, b + 4), s << 2);
    }
  }
}

/**
 * Longest common prefix, in blocks, of the chain (hi[i], lo[loOffset + i]), i < numBlocks, and a
 * request's hashes (hi at [0, cap), lo at [cap, 2 × cap), numBlocks q). Block i matches only if
 * all before it do, so it gallops (1, 2, 4, … blocks) and then bisects.
 */
function commonPrefix(hi: Uint32Array, lo: Uint32Array, loOffset: number, numBlocks: number, q: ActiveRequest): number {
  const m = numBlocks < q.numBlocks ? numBlocks : q.numBlocks;
  const h = q.hashes, cap = h.length >>> 1;
  if (m === 0 || h[0] !== hi[0] || h[cap] !== lo[loOffset]) return 0;
  let good = 0, bad = m, step = 1;
  while (good + step < m) {
    const i = good + step;
    if (h[i] === hi[i] && h[cap + i] === lo[loOffset + i]) {
      good = i;
      step *= 2;
    } else {
      bad = i;
      break;
    }
  }
  while (bad - good > 1) {
    const mid = (good + bad) >>> 1;
    if (h[mid] === hi[mid] && h[cap + mid] === lo[loOffset + mid]) good = mid;
    else bad = mid;
  }
  return good + 1;
}

export class ActiveSequences {
  readonly numRanks: number;
  readonly mode: ActiveBlocksMode;
  /** 'index': which ranks' active requests hold each prompt block; null with 'chains'. */
  readonly blocks: PrefixIndex | null;
  private readonly refs = new BlockRefCounts();
  /** 'chains': each rank's requests in flight, and its distinct prompt blocks. */
  private readonly onRank: ActiveRequest[][];
  private readonly distinctBlocks: Int32Array;
  private readonly prefillTokens: Float64Array;
  private readonly requestsOnRank: Int32Array;
  private readonly requests = new Map<number, ActiveRequest>();
  /**
   * Hash buffers of finished requests by size class (2^k blocks), reused by later ones: no
   * allocation per request once the classes in use are stocked (at most the peak in flight).
   */
  private readonly spare: Uint32Array[][] = [];
  /** Keeps the warm-up reads observable (see PrefixIndex.warm). */
  warmSink = 0;
  /** Per-rank bounds for the next matchDepths call (boundNextWalks), else null. */
  private walkBounds: Int32Array | null = null;
  /** The bounds of the pick answered rank by rank (beginWalks), else null. */
  private pickBounds: Int32Array | null = null;

  constructor(numRanks: number, mode: ActiveBlocksMode = 'index') {
    if (mode !== 'index' && mode !== 'chains') throw new RangeError(`active blocks mode must be 'index' or 'chains', got ${String(mode)}`);
    this.numRanks = numRanks;
    this.mode = mode;
    this.blocks = mode === 'index' ? new PrefixIndex(numRanks, MIN_REQUESTS, true) : null;
    this.onRank = mode === 'chains' ? Array.from({ length: numRanks }, () => []) : [];
    this.distinctBlocks = new Int32Array(mode === 'chains' ? numRanks : 0);
    this.prefillTokens = new Float64Array(numRanks);
    this.requestsOnRank = new Int32Array(numRanks);
  }

  /** Tokens queued or in prefill on the rank, as routed (Dynamo `active_tokens`). */
  activePrefillTokens(rank: number): number {
    return this.prefillTokens[rank] as number;
  }

  /** Distinct prompt blocks of the rank's routed, unfinished requests (Dynamo `active_blocks`). */
  activeBlocks(rank: number): number {
    return this.blocks === null ? this.distinctBlocks[rank] as number : this.blocks.blocksOnRank(rank);
  }

  /**
   * For each rank r in [firstRank, firstRank + numCandidates): the leading blocks of hi/lo[0 ..
   * numBlocks) that r's active requests hold, written to depth[r] (CachedBlocksView's contract).
   */
  matchDepths(numBlocks: number, hi: Uint32Array, lo: Uint32Array, firstRank: number, numCandidates: number, depth: Int32Array): void {
    const bounds = this.walkBounds;
    this.walkBounds = null;
    if (this.blocks !== null) {
      this.blocks.matchDepths(numBlocks, hi, lo, firstRank, numCandidates, depth);
      return;
    }
    for (let r = firstRank, end = firstRank + numCandidates; r < end; r++) {
      const stop = bounds !== null && (bounds[r] as number) < numBlocks ? bounds[r] as number : numBlocks;
      depth[r] = stop > 0 ? this.longestOnRank(r, hi, lo, 0, stop) : 0;
    }
  }

  /** 'chains': start a pick answered rank by rank (depthOf); it takes the bounds of boundNextWalks. */
  beginWalks(): void {
    if (this.blocks !== null) throw new RangeError("active blocks mode 'index' answers whole picks only (matchDepths)");
    this.pickBounds = this.walkBounds;
    this.walkBounds = null;
  }

  /** 'chains', after beginWalks: matchDepths' answer for one rank. */
  depthOf(rank: number, numBlocks: number, hi: Uint32Array, lo: Uint32Array): number {
    const bounds = this.pickBounds;
    const stop = bounds !== null && (bounds[rank] as number) < numBlocks ? bounds[rank] as number : numBlocks;
    return stop > 0 ? this.longestOnRank(rank, hi, lo, 0, stop) : 0;
  }

  /**
   * For the next matchDepths call only: no active request on rank r holds the chain's blocks from
   * bounds[r] on, so the comparisons stop there ('chains'; the offline replay knows this from the
   * ids routed to each rank, src/replay/routed-ids.ts). The caller vouches for the bounds.
   */
  boundNextWalks(bounds: Int32Array): void {
    this.walkBounds = bounds;
  }

  /** 'chains': the longest prefix of the chain (hi[i], lo[loOffset + i]), i < numBlocks, that a request listed on the rank holds. */
  private longestOnRank(rank: number, hi: Uint32Array, lo: Uint32Array, loOffset: number, numBlocks: number): number {
    const list = this.onRank[rank] as ActiveRequest[];
    let d = 0;
    for (let k = 0; k < list.length && d < numBlocks; k++) {
      const c = commonPrefix(hi, lo, loOffset, numBlocks, list[k] as ActiveRequest);
      if (c > d) d = c;
    }
    return d;
  }

  /** 'chains': the longest prefix of the request's blocks that the requests listed on its rank (not it) hold. */
  private sharedOnRank(req: ActiveRequest): number {
    const h = req.hashes;
    return this.longestOnRank(req.rank, h, h, h.length >>> 1, req.numBlocks);
  }

  /** Routed requests not finished yet on the rank. */
  activeRequests(rank: number): number {
    return this.requestsOnRank[rank] as number;
  }

  get size(): number {
    return this.requests.size;
  }

  has(requestId: number): boolean {
    return this.requests.has(requestId);
  }

  /**
   * Book a request on `rank`: `prefillTokens` new tokens to prefill and prompt blocks
   * hi/lo[0 .. numBlocks). The hashes are copied. A duplicate id throws.
   */
  add(requestId: number, rank: number, prefillTokens: number, numBlocks: number, hi: Uint32Array, lo: Uint32Array): void {
    if (this.requests.has(requestId)) throw new RangeError(`request ${requestId} is already routed`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.numRanks) throw new RangeError(`rank ${rank} is outside 0..${this.numRanks - 1}`);
    const cls = numBlocks <= 1 ? 0 : 32 - Math.clz32(numBlocks - 1);
    const cap = 1 << cls;
    const hashes = this.spare[cls]?.pop() ?? new Uint32Array(2 * cap);
    hashes.set(hi.subarray(0, numBlocks), 0);
    hashes.set(lo.subarray(0, numBlocks), cap);
    const req: ActiveRequest = { rank, pos: -1, prefillTokens, numBlocks, hashes };
    this.requests.set(requestId, req);
    this.prefillTokens[rank] = (this.prefillTokens[rank] as number) + prefillTokens;
    this.requestsOnRank[rank]!++;
    const idx = this.blocks;
    if (idx === null) {
      this.distinctBlocks[rank] = (this.distinctBlocks[rank] as number) + numBlocks - this.sharedOnRank(req);
      const list = this.onRank[rank] as ActiveRequest[];
      req.pos = list.length;
      list.push(req);
      return;
    }
    const refs = this.refs;
    // Independent reads of every block's home slot first: their cache misses overlap.
    this.warmSink ^= idx.warm(hi, lo, 0, numBlocks);
    for (let i = 0; i < numBlocks; i++) {
      const h = (hi[i] as number) | 0, l = (lo[i] as number) | 0;
      if (!idx.acquire(rank, h, l)) refs.bump(rank, h, l, 1);
    }
  }

  /** The request's first token came back: its prefill no longer loads the rank. Unknown ids are ignored. */
  prefillDone(requestId: number): void {
    const req = this.requests.get(requestId);
    if (req === undefined || req.prefillTokens === 0) return;
    this.prefillTokens[req.rank] = (this.prefillTokens[req.rank] as number) - req.prefillTokens;
    req.prefillTokens = 0;
  }

  /** The request finished (or failed, or was aborted): release everything it held. Unknown ids are ignored. */
  finish(requestId: number): void {
    const req = this.requests.get(requestId);
    if (req === undefined) return;
    this.prefillDone(requestId);
    this.requests.delete(requestId);
    const rank = req.rank;
    this.requestsOnRank[rank]!--;
    const refs = this.refs, idx = this.blocks, hashes = req.hashes;
    const cap = hashes.length >>> 1;
    if (idx === null) {
      const list = this.onRank[rank] as ActiveRequest[];
      const last = list.pop() as ActiveRequest;
      if (last !== req) {
        list[req.pos] = last;
        last.pos = req.pos;
      }
      this.distinctBlocks[rank] = (this.distinctBlocks[rank] as number) - req.numBlocks + this.sharedOnRank(req);
      this.recycle(hashes);
      return;
    }
    this.warmSink ^= idx.warm(hashes, hashes, 0, req.numBlocks, cap);
    for (let i = 0; i < req.numBlocks; i++) {
      const h = (hashes[i] as number) | 0, l = (hashes[cap + i] as number) | 0;
      const shared = idx.release(rank, h, l);
      if (shared >= 0 && refs.bump(rank, h, l, -1) === 0) idx.unshareAt(shared, rank);
    }
    this.recycle(hashes);
  }

  /** Keep a finished request's hash buffer for a later request of its size class. */
  private recycle(hashes: Uint32Array): void {
    (this.spare[31 - Math.clz32(hashes.length >>> 1)] ??= []).push(hashes);
  }
}
