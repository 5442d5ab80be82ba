/**
 * Which ranks hold which KV blocks, fed by KV events: one open-addressing (linear probing) table
 * keyed by a block's u64 sequence hash (hi, lo), each slot carrying a bitset of the ranks that
 * hold that block. Lookups and updates allocate nothing; the table only reallocates when it grows
 * or when a rank is cleared.
 *
 * A slot is one run of 3 + W int32 words in a single array — [hi, lo, number of ranks, W bitset
 * words] — so a probe touches one cache line (16 bytes per slot for up to 32 ranks). A slot is in
 * use while its rank count is > 0.
 *
 * With `refCounted` (ActiveSequences) a slot has W more words, the ranks holding the block more
 * than once: acquire()/release() keep reference counts where a count of 1 — most blocks — costs
 * no probe beyond the slot, and only counts ≥ 2 need the caller's side table (see acquire()).
 *
 * Memory: 2 × distinct hashes × (12 + 4 × ceil(numRanks / 32)) bytes at the 0.5 load limit;
 * e.g. 16 ranks × 16384 distinct blocks = 8 MiB, 256 ranks × 16384 distinct blocks with nothing
 * shared = 704 MiB (the worst case; shared prefixes share a slot).
 */
import type { CachedBlocksView } from './types.js';

const MIN_CAPACITY = 1024;
/** Blocks whose home slots matchDepths() reads ahead at a time. */
const MATCH_WARM_STEP = 32;

export class PrefixIndex implements CachedBlocksView {
  readonly numRanks: number;
  /** Bitset words per slot. */
  private readonly words: number;
  /** Int32 words per slot: hi, lo, rank count, bitset[, shared bitset]. */
  private readonly stride: number;
  private capacity = 0;
  private mask = 0;
  private table: Int32Array = new Int32Array(0);
  private count = 0;
  private readonly perRank: Int32Array;
  private readonly alive: Int32Array;
  private readonly refCounted: boolean;
  /** Keeps the read-ahead in matchDepths() observable. */
  private warmSink = 0;

  /** `refCounted`: slots also carry the shared bitset that acquire()/release() use. */
  constructor(numRanks: number, initialCapacity = MIN_CAPACITY, refCounted = false) {
    if (!Number.isInteger(numRanks) || numRanks < 1) throw new RangeError(`numRanks must be a positive integer, got ${numRanks}`);
    this.numRanks = numRanks;
    this.words = (numRanks + 31) >>> 5;
    this.stride = 3 + (refCounted ? 2 : 1) * this.words;
    this.refCounted = refCounted;
    this.perRank = new Int32Array(numRanks);
    this.alive = new Int32Array(this.words);
    let cap = MIN_CAPACITY;
    while (cap < initialCapacity) cap *= 2;
    this.allocate(cap);
  }

  /** Distinct block hashes held by at least one rank. */
  get size(): number {
    return this.count;
  }

  /** Blocks held by one rank. */
  blocksOnRank(rank: number): number {
    return this.perRank[rank] as number;
  }

  has(rank: number, hi: number, lo: number): boolean {
    const slot = this.find(hi | 0, lo | 0);
    if (slot < 0) return false;
    return ((this.table[slot * this.stride + 3 + (rank >>> 5)] as number) & (1 << (rank & 31))) !== 0;
  }

  /** Record that `rank` holds the block; idempotent. */
  add(rank: number, hi: number, lo: number): void {
    this.checkRank(rank);
    this.addUnchecked(rank, hi | 0, lo | 0);
  }

  /** add() for blocks hi/lo[start .. start + n) of one rank (a Stored event). */
  addMany(rank: number, n: number, hi: Uint32Array, lo: Uint32Array, start: number): void {
    this.checkRank(rank);
    for (let i = start, end = start + n; i < end; i++) this.addUnchecked(rank, (hi[i] as number) | 0, (lo[i] as number) | 0);
  }

  /**
   * Read the home slots of blocks hi/lo[start .. end) and return a value derived from them. The
   * loads are independent, so the CPU overlaps their cache misses; updates of the same blocks right
   * after (a batch of KV events) then mostly hit the cache. Pure read. Block i's lo half is
   * lo[i + loOffset].
   */
  warm(hi: Uint32Array, lo: Uint32Array, start: number, end: number, loOffset = 0): number {
    const T = this.table, stride = this.stride;
    let acc = 0;
    for (let i = start; i < end; i++) acc ^= T[this.home((hi[i] as number) | 0, (lo[i + loOffset] as number) | 0) * stride + 2] as number;
    return acc;
  }

  /** remove() for blocks hi/lo[start .. start + n) of one rank (a Removed event). */
  removeMany(rank: number, n: number, hi: Uint32Array, lo: Uint32Array, start: number): void {
    this.checkRank(rank);
    for (let i = start, end = start + n; i < end; i++) this.removeUnchecked(rank, (hi[i] as number) | 0, (lo[i] as number) | 0);
  }

  private addUnchecked(rank: number, h: number, l: number): void {
    this.setBit(this.find(h, l), rank, h, l);
  }

  /** Set the rank's bit in `slot` (the block's slot, or -1 when it has none yet). */
  private setBit(found: number, rank: number, h: number, l: number): void {
    let slot = found;
    const T = this.table;
    if (slot < 0) {
      if ((this.count + 1) * 2 > this.capacity) {
        this.rehash(this.capacity * 2);
        this.addUnchecked(rank, h, l);
        return;
      }
      slot = this.home(h, l);
      while (T[slot * this.stride + 2] !== 0) slot = (slot + 1) & this.mask;
      T[slot * this.stride] = h;
      T[slot * this.stride + 1] = l;
      this.count++;
    }
    const base = slot * this.stride;
    const w = base + 3 + (rank >>> 5);
    const bit = 1 << (rank & 31);
    const cur = T[w] as number;
    if ((cur & bit) === 0) {
      T[w] = cur | bit;
      T[base + 2] = (T[base + 2] as number) + 1;
      this.perRank[rank]!++;
    }
  }

  /** Record that `rank` no longer holds the block; unknown blocks are ignored. */
  remove(rank: number, hi: number, lo: number): void {
    this.checkRank(rank);
    this.removeUnchecked(rank, hi | 0, lo | 0);
  }

  private removeUnchecked(rank: number, h: number, l: number): void {
    const slot = this.find(h, l);
    if (slot >= 0) this.clearBit(slot, rank);
  }

  /** Clear the rank's bit (and shared bit) in `slot`; the slot is deleted when no rank is left. */
  private clearBit(slot: number, rank: number): void {
    const T = this.table;
    const base = slot * this.stride;
    const w = base + 3 + (rank >>> 5);
    const bit = 1 << (rank & 31);
    const cur = T[w] as number;
    if ((cur & bit) === 0) return;
    T[w] = cur & ~bit;
    if (this.refCounted) T[w + this.words] = (T[w + this.words] as number) & ~bit;
    this.perRank[rank]!--;
    const left = (T[base + 2] as number) - 1;
    T[base + 2] = left;
    if (left === 0) this.deleteSlot(slot);
  }

  /**
   * Take one reference of `rank` on the block (refCounted indexes). Returns true when this is the
   * rank's first reference: the block is added as by add(). Otherwise the rank's shared bit is set
   * and the caller counts the extra reference (count − 1) in its own table.
   */
  acquire(rank: number, hi: number, lo: number): boolean {
    if (!this.refCounted) throw new TypeError('acquire() needs a refCounted PrefixIndex');
    const h = hi | 0, l = lo | 0;
    const slot = this.find(h, l);
    if (slot >= 0) {
      const T = this.table;
      const w = slot * this.stride + 3 + (rank >>> 5);
      const bit = 1 << (rank & 31);
      if (((T[w] as number) & bit) !== 0) {
        const sw = w + this.words;
        T[sw] = (T[sw] as number) | bit;
        return false;
      }
    }
    this.setBit(slot, rank, h, l);
    return true;
  }

  /**
   * Drop one reference of `rank` on the block (refCounted indexes). Returns -1 when the rank held
   * its only reference (the block is removed as by remove()), or, when the rank's shared bit is
   * set, the slot: the caller decrements its extra count and, when that reaches 0, calls
   * unshareAt(slot, rank) before any other change to the index. Throws RangeError when the rank
   * holds no reference.
   */
  release(rank: number, hi: number, lo: number): number {
    if (!this.refCounted) throw new TypeError('release() needs a refCounted PrefixIndex');
    const h = hi | 0, l = lo | 0;
    const slot = this.find(h, l);
    const T = this.table;
    const w = slot * this.stride + 3 + (rank >>> 5);
    const bit = 1 << (rank & 31);
    if (slot < 0 || ((T[w] as number) & bit) === 0) {
      throw new RangeError(`block ${h >>> 0}:${l >>> 0} of rank ${rank} has no reference to release`);
    }
    if (((T[w + this.words] as number) & bit) !== 0) return slot;
    this.clearBit(slot, rank);
    return -1;
  }

  /** The rank is down to one reference on the block in `slot` (see release()). */
  unshareAt(slot: number, rank: number): void {
    const sw = slot * this.stride + 3 + this.words + (rank >>> 5);
    this.table[sw] = (this.table[sw] as number) & ~(1 << (rank & 31));
  }

  /** Whether the rank holds more than one reference on the block (tests). */
  isShared(rank: number, hi: number, lo: number): boolean {
    const slot = this.find(hi | 0, lo | 0);
    if (slot < 0 || !this.refCounted) return false;
    return ((this.table[slot * this.stride + 3 + this.words + (rank >>> 5)] as number) & (1 << (rank & 31))) !== 0;
  }

  /** Forget every block of one rank. */
  clearRank(rank: number): void {
    this.checkRank(rank);
    if (this.perRank[rank] === 0) return;
    const T = this.table, stride = this.stride;
    const word = 3 + (rank >>> 5);
    const bit = 1 << (rank & 31);
    for (let s = 0; s < this.capacity; s++) {
      const base = s * stride;
      if (T[base + 2] === 0) continue;
      const cur = T[base + word] as number;
      if ((cur & bit) !== 0) {
        T[base + word] = cur & ~bit;
        if (this.refCounted) T[base + word + this.words] = (T[base + word + this.words] as number) & ~bit;
        T[base + 2] = (T[base + 2] as number) - 1;
      }
    }
    this.perRank[rank] = 0;
    // Rebuilding drops the slots no rank holds any more (rare: AllBlocksCleared / restarts).
    this.rehash(this.capacity);
  }

  /**
   * For each rank r in [firstRank, firstRank + numCandidates): the number of leading blocks of
   * (hi[i], lo[i]), i < numBlocks, that r holds, written to depth[r]; no lookups from
   * numSeenBlocks on (CachedBlocksView).
   */
  matchDepths(numBlocks: number, hi: Uint32Array, lo: Uint32Array, firstRank: number, numCandidates: number, depth: Int32Array, numSeenBlocks = numBlocks): void {
    if (numSeenBlocks < numBlocks) numBlocks = numSeenBlocks;
    const alive = this.alive;
    const W = this.words;
    alive.fill(0);
    const end = firstRank + numCandidates;
    for (let r = firstRank; r < end; r++) {
      alive[r >>> 5] = (alive[r >>> 5] as number) | (1 << (r & 31));
      depth[r] = 0;
    }
    const T = this.table;
    let i = 0;
    let warmed = 0;
    for (; i < numBlocks; i++) {
      if (i === warmed) {
        // Read the next few home slots together (overlapping misses); a step past the end of the
        // match wastes little.
        warmed = numBlocks - i > MATCH_WARM_STEP ? i + MATCH_WARM_STEP : numBlocks;
        this.warmSink ^= this.warm(hi, lo, i, warmed);
      }
      const slot = this.find((hi[i] as number) | 0, (lo[i] as number) | 0);
      if (slot < 0) break;
      const base = slot * this.stride + 3;
      let any = 0;
      for (let w = 0; w < W; w++) {
        const a = alive[w] as number;
        if (a === 0) continue;
        const held = T[base + w] as number;
        let dropped = a & ~held;
        while (dropped !== 0) {
          const low = dropped & -dropped;
          depth[(w << 5) + (31 - Math.clz32(low))] = i;
          dropped ^= low;
        }
        const next = a & held;
        alive[w] = next;
        any |= next;
      }
      if (any === 0) return;
    }
    for (let w = 0; w < W; w++) {
      let a = alive[w] as number;
      while (a !== 0) {
        const low = a & -a;
        depth[(w << 5) + (31 - Math.clz32(low))] = i;
        a ^= low;
      }
    }
  }

  // ------------------------------------------------------------------ table internals

  private checkRank(rank: number): void {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.numRanks) {
      throw new RangeError(`rank ${rank} is outside 0..${this.numRanks - 1}`);
    }
  }

  private home(h: number, l: number): number {
    const x = Math.imul(l ^ Math.imul(h, 0x85ebca6b), 0x9e3779b1);
    return (x ^ (x >>> 15)) & this.mask;
  }

  private find(h: number, l: number): number {
    const T = this.table, mask = this.mask, stride = this.stride;
    let s = this.home(h, l);
    for (;;) {
      const base = s * stride;
      if (T[base + 2] === 0) return -1;
      if (T[base + 1] === l && T[base] === h) return s;
      s = (s + 1) & mask;
    }
  }

  /** Backward-shift deletion: keeps probe chains intact without tombstones. */
  private deleteSlot(slot: number): void {
    const stride = this.stride, mask = this.mask, T = this.table;
    let hole = slot;
    let j = slot;
    for (;;) {
      j = (j + 1) & mask;
      const jb = j * stride;
      if (T[jb + 2] === 0) break;
      const k = this.home(T[jb] as number, T[jb + 1] as number);
      // Entry j may fill the hole only if its home is not cyclically within (hole, j].
      const inRange = hole <= j ? k > hole && k <= j : k > hole || k <= j;
      if (inRange) continue;
      T.copyWithin(hole * stride, jb, jb + stride);
      hole = j;
    }
    T.fill(0, hole * stride, hole * stride + stride);
    this.count--;
  }

  private allocate(cap: number): void {
    this.capacity = cap;
    this.mask = cap - 1;
    this.table = new Int32Array(cap * this.stride);
    this.count = 0;
  }

  private rehash(cap: number): void {
    const oldCap = this.capacity, old = this.table, stride = this.stride;
    this.allocate(cap);
    const T = this.table;
    for (let s = 0; s < oldCap; s++) {
      const ob = s * stride;
      if (old[ob + 2] === 0) continue;
      const h = old[ob] as number, l = old[ob + 1] as number;
      let d = this.home(h, l);
      while (T[d * stride + 2] !== 0) d = (d + 1) & this.mask;
      for (let w = 0; w < stride; w++) T[d * stride + w] = old[ob + w] as number;
      this.count++;
    }
  }
}
