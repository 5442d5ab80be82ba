import { BlockHashTable } from './hash-table.js';
import type { BlockTable } from './hash-table.js';
import { GroupedBlockHashTable } from './grouped-hash-table.js';
import type { KvEventRecorder } from '../events.js';
import { EngineInvariantError } from '../invariant.js';

/** Block states. free: no content; active: refCount ≥ 1; inactive: refCount 0, content cached. */
export const BlockState = { free: 0, active: 1, inactive: 2 } as const;

/** Per-block arrays start this long and double on demand (up to numBlocks). */
const INITIAL_BLOCKS = 64;

/**
 * A block's state word (`BlockPool.state[id]`): the state (bits 0–1), whether the block is full
 * (bit 2), and in bits 3–31 its reference count while it is active or, while it is inactive (its
 * count is 0 then), the position of its entry in the LRU ring (modulo 2^29). A free block's word
 * is 0. Its hash lives apart (`BlockPool.hashes`): a release and a revival read only the word, 16
 * blocks to a cache line, and an eviction only the hash, 8 to a line (a pool's blocks reach
 * megabytes, and a finishing request's blocks are cold).
 */
export const STATE_MASK = 3;
export const FULL_BIT = 4;
/** The reference count or ring stamp is the word shifted right by this. */
export const COUNT_SHIFT = 3;
const ONE_REF = 1 << COUNT_SHIFT;
/** Ring positions are kept modulo 2^29 in the state word; the ring itself is far smaller. */
const STAMP_MASK = (1 << 29) - 1;
/** A ring entry whose block was revived (touch) since its release: no block, skipped. */
const REVIVED = -1;

/** Whether a block with this state word makes its ring entry at position q live: inactive, stamped with q. */
function liveAt(word: number, q: number): boolean {
  return (word & STATE_MASK) === BlockState.inactive && word >>> COUNT_SHIFT === (q & STAMP_MASK);
}

/**
 * Physical KV blocks of one rank (Dynamo `kv_manager/vllm_backend.rs` semantics over vLLM's
 * `BlockPool` data layout).
 *
 * Invariants:
 *  - numFree + numActive + numInactive = numBlocks.
 *  - A partial block (not full) is active with refCount 1 and has no identity.
 *  - With prefix caching, every full block (active or inactive) is in `table` under its
 *    sequence hash, and no two resident blocks share a hash. Without prefix caching, full blocks
 *    are anonymous and go straight back to free when released (the mocker's random ids are
 *    never reused, which physical ids already guarantee).
 *  - Inactive blocks are kept oldest first in a FIFO ring of ids (vLLM's free-block queue order).
 *    A release appends the block and stamps it with its ring position; reviving an inactive block
 *    changes its state and overwrites its entry (found through the stamp) with REVIVED. So every
 *    other entry between head and tail is a live inactive block: eviction skips REVIVED entries
 *    and reads no block's state, only the hash of the one it takes (checkInvariants verifies
 *    every entry against its block's stamp). Eviction, revival and release are O(1)
 *    (amortized: a full ring is compacted, and it holds at least twice the blocks in use, so at
 *    least half of it is stale then); the blocks about to be evicted are read off the ring
 *    without chasing links.
 *
 *      ring: head → [oldest, stale, …, newest] ← tail
 *
 *  - Free blocks sit on a stack above the never-used ids: the initial order hands out 0, 1, 2, …
 *    and a freed block is the next one reused.
 *
 * Grouped ids (`groupedIds`: prefix caching with a GroupedBlockHashTable): a full block's id is
 * its place in the table, row × 2^groupBits + index (GroupedBlockHashTable, implicit ids), so the
 * blocks of one group — a trace block's engine blocks in a replay — have neighbouring ids and
 * their state words share cache lines: a release, revival or eviction of a request's blocks
 * touches a line per group or two, not per block. The hashes are not kept here (`hashes` is
 * empty): an eviction removes its key through its row (discardId) and reads the hash from the
 * table's entry only for a Removed event. Free blocks are only a count (no ids, no stack); a
 * partial block takes a row of its own (takeRow) and moves to its group's place when it becomes
 * full (makeFull returns the new id); an evicted block's id dies with its content.
 *
 * Memory follows use: the per-block arrays cover only the ids handed out so far (`fresh`) and
 * double when an allocation needs a new id, so an idle rank of 16384 blocks holds a few KiB
 * (12 bytes per block ever used, 8 in the ring, 4 in the free stack, plus the hash table).
 * Growth never happens inside a read: callers must not cache `state` or `hashes` across allocate().
 */
export class BlockPool {
  readonly numBlocks: number;
  readonly prefixCaching: boolean;
  /** Block id's state word (see STATE_MASK). Read through the accessors; tests may corrupt it. */
  state: Int32Array;
  /**
   * Block id's sequence hash at [2 id] (hi) and [2 id + 1] (lo), int32 bit patterns, while it is
   * full. Empty with grouped ids: a block's place in the table names its hash (hashHiOf).
   */
  hashes: Int32Array;
  private freeStack: Int32Array;
  /** Freed ids on the stack (handed out before never-used ids). */
  private freeTop: number;
  /** Ids below this were handed out at least once since the last clear(). */
  private fresh: number;
  /** Length of the per-block arrays. */
  private cap: number;
  /** The LRU ring (a power of two ≥ 2 × cap entries) and its positions (head ≤ tail, never wrapped). */
  private ring: Int32Array;
  private ringMask: number;
  private head = 0;
  private tail = 0;
  numFree: number;
  numActive: number;
  numInactive: number;
  readonly table: BlockTable;
  /** The table when ids are grouped (see the class comment), else null. */
  private readonly grouped: GroupedBlockHashTable | null;
  /** With grouped ids the index bits of a row's ids (2^groupBits ids per row), else 0. */
  private readonly groupBits: number;
  private readonly events: KvEventRecorder;
  /** events.enabled: an eviction without events reads no hash. */
  private readonly recordsEvents: boolean;

  /**
   * `reserve`: size everything for numBlocks now (EngineOptions.reserveBlocks). `hashGroupBits`
   * > 0: keep the hashes in a GroupedBlockHashTable with groups that wide (EngineOptions.blockHashGroupBits).
   */
  constructor(numBlocks: number, prefixCaching: boolean, events: KvEventRecorder, reserve = false, hashGroupBits = 0) {
    this.numBlocks = numBlocks;
    this.prefixCaching = prefixCaching;
    const groupedIds = prefixCaching && hashGroupBits !== 0;
    // Grouped ids spread over the rows of groups and partial blocks: room for two per block first.
    this.cap = reserve ? (groupedIds ? 2 * numBlocks : numBlocks) : Math.min(numBlocks, INITIAL_BLOCKS);
    this.state = new Int32Array(this.cap);
    this.hashes = new Int32Array(groupedIds ? 0 : this.cap * 2);
    this.freeStack = new Int32Array(groupedIds ? 0 : this.cap);
    this.ring = new Int32Array(ringSizeFor(prefixCaching ? Math.min(this.cap, numBlocks) : 0));
    this.ringMask = this.ring.length - 1;
    const table = hashGroupBits !== 0 ? new GroupedBlockHashTable(prefixCaching ? numBlocks : 1, reserve, hashGroupBits, groupedIds) : new BlockHashTable(prefixCaching ? numBlocks : 1, reserve);
    this.table = table;
    this.grouped = groupedIds ? table as GroupedBlockHashTable : null;
    this.groupBits = groupedIds ? hashGroupBits : 0;
    this.events = events;
    this.recordsEvents = events.enabled;
    this.freeTop = 0;
    this.fresh = 0;
    this.numFree = numBlocks;
    this.numActive = 0;
    this.numInactive = 0;
  }

  /**
   * Hashes ever taken out of the table (evictions; clear() counts as one). While it stays the
   * same, every hash the table held is still there: readers that verified a prefix may reuse it.
   */
  get numRemovals(): number {
    return this.table.removals;
  }
  /** Hashes ever put into the table. With numRemovals unchanged too, the table is unchanged. */
  get numInsertions(): number {
    return this.table.insertions;
  }

  /** Whether ids are grouped (see the class comment). */
  get groupedIds(): boolean {
    return this.grouped !== null;
  }

  /** Every block id is below this (numBlocks, or with grouped ids the rows handed out so far). */
  get idLimit(): number {
    return this.grouped !== null ? Math.min(this.cap, this.grouped.rowsHandedOut << this.groupBits) : this.numBlocks;
  }

  /** Forget every block (no events; the caller emits AllBlocksCleared). Touches only used ids. */
  clear(): void {
    this.state.fill(0, 0, this.grouped !== null ? this.idLimit : this.fresh);
    this.freeTop = 0;
    this.fresh = 0;
    this.head = this.tail = 0;
    this.numFree = this.numBlocks;
    this.numActive = 0;
    this.numInactive = 0;
    this.table.clear();
  }

  /** Bytes held by the pool's arrays and hash table (memory accounting, tests). */
  get allocatedBytes(): number {
    return this.state.byteLength + this.hashes.byteLength + this.freeStack.byteLength + this.ring.byteLength + this.table.allocatedBytes;
  }

  // Block fields.
  refCountOf(id: number): number {
    const w = this.state[id] as number;
    return (w & STATE_MASK) === BlockState.active ? w >>> COUNT_SHIFT : 0;
  }
  stateOf(id: number): number {
    return (this.state[id] as number) & STATE_MASK;
  }
  isFull(id: number): boolean {
    return ((this.state[id] as number) & FULL_BIT) !== 0;
  }
  hashHiOf(id: number): number {
    return (this.grouped !== null ? this.grouped.keyHiOf(id) : this.hashes[2 * id] as number) >>> 0;
  }
  hashLoOf(id: number): number {
    return (this.grouped !== null ? this.grouped.keyLoOf(id) : this.hashes[2 * id + 1] as number) >>> 0;
  }

  /** Double the per-block arrays (with grouped ids, at least past id `minId`). */
  private grow(minId = 0): void {
    let n = Math.min(this.numBlocks, this.cap * 2);
    if (this.grouped !== null) {
      n = Math.max(this.cap * 2, INITIAL_BLOCKS);
      while (n <= minId) n *= 2;
    }
    const state = new Int32Array(n);
    state.set(this.state);
    this.state = state;
    if (this.grouped === null) {
      const hashes = new Int32Array(2 * n);
      hashes.set(this.hashes);
      this.hashes = hashes;
      const stack = new Int32Array(n);
      stack.set(this.freeStack);
      this.freeStack = stack;
    }
    this.cap = n;
    const ringFor = Math.min(n, this.numBlocks);
    if (this.prefixCaching && this.ring.length < ringSizeFor(ringFor)) {
      // Entries keep their positions (blocks' stamps name them): copy each to its new slot.
      const old = this.ring, oldMask = this.ringMask;
      const ring = new Int32Array(ringSizeFor(ringFor));
      const mask = ring.length - 1;
      for (let q = this.head; q < this.tail; q++) ring[q & mask] = old[q & oldMask] as number;
      this.ring = ring;
      this.ringMask = mask;
    }
  }

  /** Resident block with this sequence hash (active or inactive), or -1. */
  find(hi: number, lo: number): number {
    return this.table.find(hi, lo);
  }

  /**
   * Read what evicting the next n inactive blocks will touch (their hashes and hash-table
   * entries; nothing with grouped ids) and return a value derived from it. Pure read: issued
   * before a run of allocations so the cache misses of the evictions overlap instead of coming
   * one by one (the ring lists the blocks, so the reads do not depend on each other; REVIVED
   * entries are skipped, and count towards n).
   */
  warmEvictions(n: number): number {
    // With grouped ids an eviction reads only its group's entry and state line, mostly those of
    // the eviction before it: the hour-6 slice ran in 0.88× the time without reading them ahead.
    if (this.grouped !== null) return 0;
    const hashes = this.hashes, ring = this.ring, mask = this.ringMask;
    const table = this.table;
    let acc = 0;
    const end = this.tail < this.head + n ? this.tail : this.head + n;
    for (let q = this.head; q < end; q++) {
      const id = ring[q & mask] as number;
      if (id === REVIVED) continue;
      acc ^= table.peek(hashes[2 * id] as number, hashes[2 * id + 1] as number);
    }
    return acc;
  }

  /** Take a reference on a resident full block: active → refCount + 1; inactive → revived. */
  touch(id: number): void {
    const st = this.state;
    const w = st[id] as number;
    if ((w & STATE_MASK) === BlockState.inactive) {
      // Its ring entry goes dead (REVIVED): eviction and the read-ahead skip it without reading
      // this block again. A replay revives about two blocks for every three it evicts.
      this.ring[(w >>> COUNT_SHIFT) & this.ringMask] = REVIVED;
      this.numInactive--;
      this.numActive++;
      st[id] = ONE_REF | FULL_BIT | BlockState.active;
    } else {
      st[id] = w + ONE_REF;
    }
  }

  /**
   * A fresh active partial block with refCount 1: a free block if any, else the oldest inactive
   * block is evicted (one Removed event). -1 when nothing is free or evictable.
   */
  allocate(): number {
    let id: number;
    if (this.grouped !== null) {
      if (!this.makeRoom()) return -1;
      id = this.grouped.takeRow() << this.groupBits;
      if (id >= this.cap) this.grow(id);
    } else {
      id = this.takeBlock();
      if (id < 0) return -1;
    }
    this.state[id] = ONE_REF | BlockState.active;
    return id;
  }

  /** Grouped ids: count one more block active, a free one or else the oldest inactive one evicted; false if none. */
  private makeRoom(): boolean {
    if (this.numFree > 0) this.numFree--;
    else if (this.numInactive > 0) this.evictOldest();
    else return false;
    this.numActive++;
    return true;
  }

  /** A block to reuse, counted active: a free one, else the oldest inactive one evicted; -1 if none. */
  private takeBlock(): number {
    let id: number;
    if (this.freeTop > 0) {
      id = this.freeStack[--this.freeTop] as number;
      this.numFree--;
    } else if (this.fresh < this.numBlocks) {
      id = this.fresh++;
      if (id >= this.cap) this.grow();
      this.numFree--;
    } else if (this.numInactive > 0) {
      id = this.evictOldest();
    } else {
      return -1;
    }
    this.numActive++;
    return id;
  }

  /**
   * Full blocks for a request's blocks from..to-1 with these sequence hashes (as stored: int32
   * bit patterns or uint32, the table reads the bits), found or stored one by one as
   * find() + touch() or allocate() + makeFull() would, with the same effects in the same order,
   * ids to out[from..]. Stops at the first block found resident (not taken: the caller takes it
   * and may emit what was stored before it) and returns its index; returns `to` when all were
   * stored; returns ~b (< 0) when block b found nothing free or evictable. `fromMissing`: the
   * caller knows block `from` is not resident (its lookup is skipped). The engine's prefill path:
   * one call per run of new blocks instead of three per block.
   */
  storeRun(hi: Uint32Array, lo: Uint32Array, from: number, to: number, fromMissing: boolean, out: Int32Array): number {
    if (this.grouped !== null) return this.storeRunGrouped(hi, lo, from, to, fromMissing, out);
    const table = this.table;
    for (let b = from; b < to; b++) {
      const h = (hi[b] as number) | 0, l = (lo[b] as number) | 0;
      if ((b !== from || !fromMissing) && table.find(h, l) >= 0) return b;
      const id = this.takeBlock();
      if (id < 0) return ~b;
      this.state[id] = ONE_REF | BlockState.active;
      this.makeFull(id, h, l);
      out[b] = id;
    }
    return to;
  }

  /** storeRun with grouped ids: a stored block's id is its place in the table. */
  private storeRunGrouped(hi: Uint32Array, lo: Uint32Array, from: number, to: number, fromMissing: boolean, out: Int32Array): number {
    const table = this.grouped as GroupedBlockHashTable;
    for (let b = from; b < to; b++) {
      const h = (hi[b] as number) | 0, l = (lo[b] as number) | 0;
      if ((b !== from || !fromMissing) && table.find(h, l) >= 0) return b;
      if (!this.makeRoom()) return ~b;
      const id = table.insertKey(h, l);
      if (id >= this.cap) this.grow(id);
      this.state[id] = ONE_REF | FULL_BIT | BlockState.active;
      out[b] = id;
    }
    return to;
  }

  /**
   * Evict the oldest inactive block (numInactive > 0): off the ring and the table, one Removed
   * event. Returns its id, free (state 0) now; with grouped ids it is not reused.
   */
  private evictOldest(): number {
    const id = this.popOldest();
    this.state[id] = 0;
    this.numInactive--;
    const grouped = this.grouped;
    if (grouped !== null) {
      if (this.recordsEvents) this.events.active.addRemoved(grouped.keyHiOf(id), grouped.keyLoOf(id));
      grouped.discardId(id);
      return id;
    }
    // The hashes go on as int32 bit patterns, as stored (the table and the event log read the
    // bits): passed to a call that is not inlined, a number outside the small-integer range
    // (±2^30) is boxed, one allocation each, which a uint32 (hashHiOf) is three times in four.
    const hi = this.hashes[2 * id] as number, lo = this.hashes[2 * id + 1] as number;
    this.table.discard(hi, lo);
    this.events.active.addRemoved(hi, lo);
    return id;
  }

  /**
   * Take the oldest inactive block off the ring (numInactive > 0: a live entry lies ahead). Every
   * entry that is not REVIVED is live (a revival marks its entry, an eviction consumes it,
   * compaction and clear() keep no other; checkInvariants checks it), so no block is read.
   */
  private popOldest(): number {
    const ring = this.ring, mask = this.ringMask;
    let q = this.head;
    while ((ring[q & mask] as number) === REVIVED) q++;
    this.head = q + 1;
    return ring[q & mask] as number;
  }

  /**
   * Give an active partial block its identity as a full block (the hash must not be resident).
   * Returns the block's id from now on: `id`, or with grouped ids its place in its group.
   */
  makeFull(id: number, hi: number, lo: number): number {
    const grouped = this.grouped;
    if (grouped !== null) {
      const full = grouped.insertKey(hi | 0, lo | 0);
      if (full >= this.cap) this.grow(full);
      this.state[full] = (this.state[id] as number) | FULL_BIT;
      this.state[id] = 0;
      grouped.freeRow(id >>> this.groupBits);
      return full;
    }
    this.state[id] = (this.state[id] as number) | FULL_BIT;
    this.hashes[2 * id] = hi;
    this.hashes[2 * id + 1] = lo;
    if (this.prefixCaching) {
      this.table.insert(hi, lo, id);
    }
    return id;
  }

  /** Mark an active partial block full without identity (prefix caching off). */
  makeFullAnonymous(id: number): void {
    this.state[id] = (this.state[id] as number) | FULL_BIT;
  }

  /**
   * Drop one reference. Partial blocks are destroyed (back to free, never published); full blocks
   * whose count reaches 0 become the newest inactive block, or free without prefix caching.
   */
  release(id: number): void {
    const st = this.state;
    const w = st[id] as number;
    if ((w & FULL_BIT) === 0) {
      this.toFree(id);
      return;
    }
    if (w >>> COUNT_SHIFT > 1) {
      st[id] = w - ONE_REF;
      return;
    }
    if (!this.prefixCaching) {
      this.toFree(id);
      return;
    }
    this.numActive--;
    this.numInactive++;
    if (this.tail - this.head === this.ring.length) this.compactRing();
    const q = this.tail;
    this.ring[q & this.ringMask] = id;
    this.tail = q + 1;
    st[id] = ((q & STAMP_MASK) << COUNT_SHIFT) | FULL_BIT | BlockState.inactive;
  }

  /** Drop the ring's stale entries, keeping the live ones in order from the head (restamped). */
  private compactRing(): void {
    const st = this.state, ring = this.ring, mask = this.ringMask;
    let w = this.head;
    for (let q = this.head; q < this.tail; q++) {
      const id = ring[q & mask] as number;
      if (id === REVIVED) continue;
      const f = st[id] as number;
      if (!liveAt(f, q)) continue;
      ring[w & mask] = id;
      st[id] = ((w & STAMP_MASK) << COUNT_SHIFT) | (f & (ONE_REF - 1));
      w++;
    }
    this.tail = w;
  }

  private toFree(id: number): void {
    this.numActive--;
    this.numFree++;
    this.state[id] = 0;
    // With grouped ids only a partial block gets here: its row goes back.
    if (this.grouped !== null) this.grouped.freeRow(id >>> this.groupBits);
    else this.freeStack[this.freeTop++] = id;
  }

  /** Whether the ring entry at position q is live (its block is inactive and stamped with q). */
  private isLive(q: number): boolean {
    const id = this.ring[q & this.ringMask] as number;
    return id !== REVIVED && liveAt(this.state[id] as number, q);
  }

  /** Inactive block ids, oldest first (tests and diagnostics). */
  inactiveOrder(): number[] {
    const out: number[] = [];
    for (let q = this.head; q < this.tail; q++) if (this.isLive(q)) out.push(this.ring[q & this.ringMask] as number);
    return out;
  }

  /**
   * Free block ids in the order they will be handed out (tests and diagnostics). With grouped ids
   * free blocks have none (a block gets its id from its content): empty.
   */
  freeOrder(): number[] {
    const out: number[] = [];
    if (this.grouped !== null) return out;
    for (let i = this.freeTop - 1; i >= 0; i--) out.push(this.freeStack[i] as number);
    for (let id = this.fresh; id < this.numBlocks; id++) out.push(id);
    return out;
  }

  /** Structural checks of the pool alone; reference counts are checked by the engine. */
  checkInvariants(): void {
    const n = this.numBlocks;
    const grouped = this.grouped !== null;
    // Ids in use lie below `fresh`, or with grouped ids below idLimit (free blocks have none).
    const idEnd = grouped ? this.idLimit : this.fresh;
    let free = 0;
    let active = 0;
    let inactive = 0;
    let hashed = 0;
    for (let id = 0; id < idEnd; id++) {
      const st = this.stateOf(id);
      const rc = this.refCountOf(id);
      if (st === BlockState.free) {
        free++;
        if (this.state[id] !== 0) fail(`free block ${id} has state word ${this.state[id]}, not 0`);
      } else if (st === BlockState.active) {
        active++;
        if (rc < 1) fail(`active block ${id} has refCount ${rc}`);
      } else if (st === BlockState.inactive) {
        inactive++;
        if (!this.isFull(id)) fail(`inactive block ${id} is not full`);
      } else fail(`block ${id} has state ${st}`);
      if (st !== BlockState.free && this.isFull(id) && this.prefixCaching) {
        hashed++;
        if (this.table.find(this.hashHiOf(id), this.hashLoOf(id)) !== id) {
          fail(`full block ${id} is not found in the hash table under its hash`);
        }
      }
      if (!this.isFull(id) && st === BlockState.active && rc !== 1) fail(`partial block ${id} has refCount ${rc}`);
      if (grouped && !this.isFull(id) && st === BlockState.active && (id & ((1 << this.groupBits) - 1)) !== 0) fail(`partial block ${id} is not at the start of its row`);
    }
    if (grouped) {
      // Free blocks have no ids: ids below idEnd with word 0 are unused places, not blocks.
      free = n - active - inactive;
      if (free < 0) fail(`${active} active + ${inactive} inactive blocks exceed the pool's ${n}`);
      for (let id = idEnd; id < this.cap; id++) if (this.state[id] !== 0) fail(`block ${id} beyond the rows handed out has state word ${this.state[id]}`);
    } else {
      free += n - this.fresh;
    }
    if (free !== this.numFree) fail(`numFree ${this.numFree} but ${free} free blocks`);
    if (active !== this.numActive) fail(`numActive ${this.numActive} but ${active} active blocks`);
    if (inactive !== this.numInactive) fail(`numInactive ${this.numInactive} but ${inactive} inactive blocks`);
    if (free + active + inactive !== n) fail('free + active + inactive != total');
    if (this.table.size !== hashed) fail(`hash table holds ${this.table.size} entries, ${hashed} resident full blocks`);
    if (!grouped) {
      if (this.freeTop + n - this.fresh !== this.numFree) fail(`free stack ${this.freeTop} + never used ${n - this.fresh} != numFree ${this.numFree}`);
      const seen = new Uint8Array(n);
      for (let i = 0; i < this.freeTop; i++) {
        const id = this.freeStack[i] as number;
        if (this.stateOf(id) !== BlockState.free || seen[id] === 1) fail(`free stack entry ${id} is wrong`);
        seen[id] = 1;
      }
    }
    if (this.prefixCaching) {
      if (this.tail - this.head > this.ring.length || this.head > this.tail) fail(`LRU ring spans ${this.tail - this.head} > ${this.ring.length} entries`);
      const ringFor = Math.min(this.cap, n);
      if (this.ring.length < 2 * ringFor) fail(`LRU ring of ${this.ring.length} entries for ${ringFor} blocks`);
      // Every inactive block has exactly one live entry: live entries are inactive blocks by
      // definition, so counting them without duplicates suffices.
      const listed = new Uint8Array(this.cap);
      let count = 0;
      for (let q = this.head; q < this.tail; q++) {
        const entry = this.ring[q & this.ringMask] as number;
        if (entry !== REVIVED && !this.isLive(q)) fail(`LRU ring entry ${q} names block ${entry}, which is not inactive with that stamp`);
        if (!this.isLive(q)) continue;
        const id = this.ring[q & this.ringMask] as number;
        if (listed[id] === 1) fail(`LRU ring lists block ${id} twice`);
        listed[id] = 1;
        count++;
      }
      if (count !== this.numInactive) fail(`LRU ring holds ${count} live entries != numInactive ${this.numInactive}`);
    } else if (this.numInactive !== 0) fail(`${this.numInactive} inactive blocks without prefix caching`);
  }
}

/** LRU ring entries for `blocks` block ids: a power of two ≥ 2 × blocks (see BlockPool). */
function ringSizeFor(blocks: number): number {
  let size = 1;
  while (size < 2 * blocks) size *= 2;
  return size;
}

function fail(message: string): never {
  throw new EngineInvariantError(message);
}
