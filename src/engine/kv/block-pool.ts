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
 * Per-block words in `meta`, one row of ROW ints per block, row id + 1 (row 0 is the LRU
 * sentinel): everything an allocation, eviction or release reads of a block sits in one cache
 * line (a pool's blocks reach megabytes, and separate arrays cost a miss each).
 */
export const BlockField = { refCount: 0, state: 1, full: 2, hashHi: 3, hashLo: 4, lruPrev: 5, lruNext: 6 } as const;
const ROW = 8;
const REF = BlockField.refCount, STATE = BlockField.state, FULL = BlockField.full, HI = BlockField.hashHi, LO = BlockField.hashLo;
const PREV = BlockField.lruPrev, NEXT = BlockField.lruNext;

/**
 * Physical KV blocks of one rank (Dynamo `kv_manager/vllm_backend.rs` semantics over vLLM's
 * `BlockPool` data layout).
 *
 * Invariants:
 *  - numFree + numActive + numInactive = numBlocks.
 *  - A partial block (full = 0) is active with refCount 1 and has no identity.
 *  - With prefix caching, every full block (active or inactive) is in `table` under its
 *    sequence hash, and no two resident blocks share a hash. Without prefix caching, full blocks
 *    are anonymous and go straight back to free when released (the mocker's random ids are
 *    never reused, which physical ids already guarantee).
 *  - Inactive blocks form an intrusive doubly-linked LRU list through lruPrev/lruNext, oldest at
 *    the head. Links hold `id + 1`; the sentinel is entry 0. Eviction and revival are O(1).
 *
 *      sentinel ⇄ oldest ⇄ … ⇄ newest ⇄ sentinel
 *
 *  - Free blocks sit on a stack above the never-used ids: the initial order hands out 0, 1, 2, …
 *    and a freed block is the next one reused.
 *
 * Memory follows use: the per-block rows cover only the ids handed out so far (`fresh`) and
 * double when an allocation needs a new id, so an idle rank of 16384 blocks holds a few KiB
 * (36 bytes per block ever used, plus the hash table's 32 bytes per resident full block).
 * Growth never happens inside a read: callers must not cache `meta` across allocate().
 */
export class BlockPool {
  readonly numBlocks: number;
  readonly prefixCaching: boolean;
  /**
   * Row id + 1 holds block id's BlockField words (hashes as int32 bit patterns; LRU links hold
   * row numbers, 0 = the sentinel row). Read through the accessors; tests may corrupt it.
   */
  meta: Int32Array;
  private freeStack: Int32Array;
  /** Freed ids on the stack (handed out before never-used ids). */
  private freeTop: number;
  /** Ids below this were handed out at least once since the last clear(). */
  private fresh: number;
  /** Length of the per-block arrays. */
  private cap: number;
  numFree: number;
  numActive: number;
  numInactive: number;
  /**
   * Hashes ever taken out of the table (evictions; clear() counts as one). While it stays the
   * same, every hash the table held is still there: readers that verified a prefix may reuse it.
   */
  numRemovals: number;
  /** Hashes ever put into the table. With numRemovals unchanged too, the table is unchanged. */
  numInsertions: number;
  readonly table: BlockTable;
  private readonly events: KvEventRecorder;

  /**
   * `reserve`: size everything for numBlocks now (EngineOptions.reserveBlocks). `hashGroupBits`
   * > 0: keep the hashes in a GroupedBlockHashTable with groups that wide (EngineOptions.blockHashGroupBits).
   */
  constructor(numBlocks: number, prefixCaching: boolean, events: KvEventRecorder, reserve = false, hashGroupBits = 0) {
    this.numBlocks = numBlocks;
    this.prefixCaching = prefixCaching;
    this.cap = reserve ? numBlocks : Math.min(numBlocks, INITIAL_BLOCKS);
    this.meta = new Int32Array((this.cap + 1) * ROW);
    this.freeStack = new Int32Array(this.cap);
    this.table = hashGroupBits !== 0 ? new GroupedBlockHashTable(prefixCaching ? numBlocks : 1, reserve, hashGroupBits) : new BlockHashTable(prefixCaching ? numBlocks : 1, reserve);
    this.events = events;
    this.freeTop = 0;
    this.fresh = 0;
    this.numFree = numBlocks;
    this.numActive = 0;
    this.numInactive = 0;
    this.numRemovals = 0;
    this.numInsertions = 0;
  }

  /** Forget every block (no events; the caller emits AllBlocksCleared). Touches only used ids. */
  clear(): void {
    // Rows 1..fresh (the used ids) and the sentinel row 0.
    this.meta.fill(0, 0, (this.fresh + 1) * ROW);
    this.freeTop = 0;
    this.fresh = 0;
    this.numFree = this.numBlocks;
    this.numActive = 0;
    this.numInactive = 0;
    this.numRemovals++;
    this.table.clear();
  }

  /** Bytes held by the pool's arrays and hash table (memory accounting, tests). */
  get allocatedBytes(): number {
    return this.meta.byteLength + this.freeStack.byteLength + this.table.allocatedBytes;
  }

  // Block fields (ids are 0-based; rows are id + 1).
  refCountOf(id: number): number {
    return this.meta[(id + 1) * ROW + REF] as number;
  }
  stateOf(id: number): number {
    return this.meta[(id + 1) * ROW + STATE] as number;
  }
  isFull(id: number): boolean {
    return this.meta[(id + 1) * ROW + FULL] === 1;
  }
  hashHiOf(id: number): number {
    return (this.meta[(id + 1) * ROW + HI] as number) >>> 0;
  }
  hashLoOf(id: number): number {
    return (this.meta[(id + 1) * ROW + LO] as number) >>> 0;
  }

  private grow(): void {
    const n = Math.min(this.numBlocks, this.cap * 2);
    const meta = new Int32Array((n + 1) * ROW);
    meta.set(this.meta);
    this.meta = meta;
    const stack = new Int32Array(n);
    stack.set(this.freeStack);
    this.freeStack = stack;
    this.cap = n;
  }

  /** Resident block with this sequence hash (active or inactive), or -1. */
  find(hi: number, lo: number): number {
    return this.table.find(hi, lo);
  }

  /**
   * Read what evicting the next n inactive blocks will touch (their hashes and hash-table
   * entries) and return a value derived from it. Pure read: issued before a run of allocations so
   * the cache misses of the evictions overlap instead of coming one by one.
   */
  warmEvictions(n: number): number {
    const m = this.meta;
    const table = this.table;
    let acc = 0;
    let e = m[NEXT] as number;
    for (let k = 0; k < n && e !== 0; k++) {
      const row = e * ROW;
      acc ^= table.peek(m[row + HI] as number, m[row + LO] as number);
      e = m[row + NEXT] as number;
    }
    return acc;
  }

  /** Take a reference on a resident full block: active → refCount + 1; inactive → revived. */
  touch(id: number): void {
    const m = this.meta, row = (id + 1) * ROW;
    if (m[row + STATE] === BlockState.inactive) {
      this.unlink(id);
      this.numInactive--;
      this.numActive++;
      m[row + STATE] = BlockState.active;
      m[row + REF] = 1;
    } else {
      m[row + REF] = (m[row + REF] as number) + 1;
    }
  }

  /**
   * A fresh active partial block with refCount 1: a free block if any, else the oldest inactive
   * block is evicted (one Removed event). -1 when nothing is free or evictable.
   */
  allocate(): number {
    let id: number;
    if (this.freeTop > 0) {
      id = this.freeStack[--this.freeTop] as number;
      this.numFree--;
    } else if (this.fresh < this.numBlocks) {
      id = this.fresh++;
      if (id >= this.cap) this.grow();
      this.numFree--;
    } else if (this.numInactive > 0) {
      id = (this.meta[NEXT] as number) - 1;
      this.unlink(id);
      this.numInactive--;
      const hi = this.hashHiOf(id), lo = this.hashLoOf(id);
      this.table.remove(hi, lo);
      this.numRemovals++;
      this.events.active.addRemoved(hi, lo);
    } else {
      return -1;
    }
    this.numActive++;
    const m = this.meta, row = (id + 1) * ROW;
    m[row + STATE] = BlockState.active;
    m[row + REF] = 1;
    m[row + FULL] = 0;
    return id;
  }

  /** Give an active partial block its identity as a full block (the hash must not be resident). */
  makeFull(id: number, hi: number, lo: number): void {
    const m = this.meta, row = (id + 1) * ROW;
    m[row + FULL] = 1;
    m[row + HI] = hi;
    m[row + LO] = lo;
    if (this.prefixCaching) {
      this.table.insert(hi, lo, id);
      this.numInsertions++;
    }
  }

  /** Mark an active partial block full without identity (prefix caching off). */
  makeFullAnonymous(id: number): void {
    this.meta[(id + 1) * ROW + FULL] = 1;
  }

  /**
   * Drop one reference. Partial blocks are destroyed (back to free, never published); full blocks
   * whose count reaches 0 become the newest inactive block, or free without prefix caching.
   */
  release(id: number): void {
    const m = this.meta, e = id + 1, row = e * ROW;
    if (m[row + FULL] === 0) {
      m[row + REF] = 0;
      this.toFree(id);
      return;
    }
    const rc = (m[row + REF] as number) - 1;
    m[row + REF] = rc;
    if (rc > 0) return;
    if (!this.prefixCaching) {
      m[row + FULL] = 0;
      this.toFree(id);
      return;
    }
    this.numActive--;
    this.numInactive++;
    m[row + STATE] = BlockState.inactive;
    const last = m[PREV] as number;
    m[row + PREV] = last;
    m[row + NEXT] = 0;
    m[last * ROW + NEXT] = e;
    m[PREV] = e;
  }

  private toFree(id: number): void {
    this.numActive--;
    this.numFree++;
    this.meta[(id + 1) * ROW + STATE] = BlockState.free;
    this.freeStack[this.freeTop++] = id;
  }

  private unlink(id: number): void {
    const m = this.meta, row = (id + 1) * ROW;
    const p = m[row + PREV] as number;
    const nx = m[row + NEXT] as number;
    m[p * ROW + NEXT] = nx;
    m[nx * ROW + PREV] = p;
  }

  /** Inactive block ids, oldest first (tests and diagnostics). */
  inactiveOrder(): number[] {
    const out: number[] = [];
    const m = this.meta;
    for (let e = m[NEXT] as number; e !== 0; e = m[e * ROW + NEXT] as number) out.push(e - 1);
    return out;
  }

  /** Free block ids in the order they will be handed out (tests and diagnostics). */
  freeOrder(): number[] {
    const out: number[] = [];
    for (let i = this.freeTop - 1; i >= 0; i--) out.push(this.freeStack[i] as number);
    for (let id = this.fresh; id < this.numBlocks; id++) out.push(id);
    return out;
  }

  /** Structural checks of the pool alone; reference counts are checked by the engine. */
  checkInvariants(): void {
    const n = this.numBlocks;
    let free = 0;
    let active = 0;
    let inactive = 0;
    let hashed = 0;
    free += n - this.fresh;
    for (let id = 0; id < this.fresh; id++) {
      const st = this.stateOf(id);
      const rc = this.refCountOf(id);
      if (st === BlockState.free) {
        free++;
        if (rc !== 0) fail(`free block ${id} has refCount ${rc}`);
      } else if (st === BlockState.active) {
        active++;
        if (rc < 1) fail(`active block ${id} has refCount ${rc}`);
      } else {
        inactive++;
        if (rc !== 0) fail(`inactive block ${id} has refCount ${rc}`);
        if (!this.isFull(id)) fail(`inactive block ${id} is not full`);
      }
      if (st !== BlockState.free && this.isFull(id) && this.prefixCaching) {
        hashed++;
        if (this.table.find(this.hashHiOf(id), this.hashLoOf(id)) !== id) {
          fail(`full block ${id} is not found in the hash table under its hash`);
        }
      }
      if (!this.isFull(id) && st === BlockState.active && rc !== 1) fail(`partial block ${id} has refCount ${rc}`);
    }
    if (free !== this.numFree) fail(`numFree ${this.numFree} but ${free} free blocks`);
    if (active !== this.numActive) fail(`numActive ${this.numActive} but ${active} active blocks`);
    if (inactive !== this.numInactive) fail(`numInactive ${this.numInactive} but ${inactive} inactive blocks`);
    if (free + active + inactive !== n) fail('free + active + inactive != total');
    if (this.table.size !== hashed) fail(`hash table holds ${this.table.size} entries, ${hashed} resident full blocks`);
    if (this.freeTop + n - this.fresh !== this.numFree) fail(`free stack ${this.freeTop} + never used ${n - this.fresh} != numFree ${this.numFree}`);
    const seen = new Uint8Array(n);
    for (let i = 0; i < this.freeTop; i++) {
      const id = this.freeStack[i] as number;
      if (this.stateOf(id) !== BlockState.free || seen[id] === 1) fail(`free stack entry ${id} is wrong`);
      seen[id] = 1;
    }
    let count = 0;
    let prev = 0;
    const m = this.meta;
    for (let e = m[NEXT] as number; e !== 0; e = m[e * ROW + NEXT] as number) {
      const id = e - 1;
      if (this.stateOf(id) !== BlockState.inactive) fail(`LRU list holds non-inactive block ${id}`);
      if (m[e * ROW + PREV] !== prev) fail(`LRU list prev link of block ${id} is wrong`);
      prev = e;
      if (++count > n) fail('LRU list has a cycle');
    }
    if (count !== this.numInactive) fail(`LRU list length ${count} != numInactive ${this.numInactive}`);
  }
}

function fail(message: string): never {
  throw new EngineInvariantError(message);
}
