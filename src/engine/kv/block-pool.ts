import { BlockHashTable } from './hash-table.js';
import type { KvEventRecorder } from '../events.js';
import { EngineInvariantError } from '../invariant.js';

/** Block states. free: no content; active: refCount ≥ 1; inactive: refCount 0, content cached. */
export const BlockState = { free: 0, active: 1, inactive: 2 } as const;

/** Per-block arrays start this long and double on demand (up to numBlocks). */
const INITIAL_BLOCKS = 64;

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
 * Memory follows use: the per-block arrays cover only the ids handed out so far (`fresh`) and
 * double when an allocation needs a new id, so an idle rank of 16384 blocks holds a few KiB
 * (26 bytes per block ever used, plus the hash table's 32 bytes per resident full block).
 * Growth never happens inside a read: callers must not cache these arrays across allocate().
 */
export class BlockPool {
  readonly numBlocks: number;
  readonly prefixCaching: boolean;
  refCount: Int32Array;
  state: Uint8Array;
  full: Uint8Array;
  hashHi: Uint32Array;
  hashLo: Uint32Array;
  /** LRU links by id + 1 (entry 0 = sentinel). */
  private lruPrev: Int32Array;
  private lruNext: Int32Array;
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
  readonly table: BlockHashTable;
  private readonly events: KvEventRecorder;

  /** `reserve`: size everything for numBlocks now (EngineOptions.reserveBlocks). */
  constructor(numBlocks: number, prefixCaching: boolean, events: KvEventRecorder, reserve = false) {
    this.numBlocks = numBlocks;
    this.prefixCaching = prefixCaching;
    this.cap = reserve ? numBlocks : Math.min(numBlocks, INITIAL_BLOCKS);
    this.refCount = new Int32Array(this.cap);
    this.state = new Uint8Array(this.cap);
    this.full = new Uint8Array(this.cap);
    this.hashHi = new Uint32Array(this.cap);
    this.hashLo = new Uint32Array(this.cap);
    this.lruPrev = new Int32Array(this.cap + 1);
    this.lruNext = new Int32Array(this.cap + 1);
    this.freeStack = new Int32Array(this.cap);
    this.table = new BlockHashTable(prefixCaching ? numBlocks : 1, reserve);
    this.events = events;
    this.freeTop = 0;
    this.fresh = 0;
    this.numFree = numBlocks;
    this.numActive = 0;
    this.numInactive = 0;
  }

  /** Forget every block (no events; the caller emits AllBlocksCleared). Touches only used ids. */
  clear(): void {
    const used = this.fresh;
    this.refCount.fill(0, 0, used);
    this.state.fill(BlockState.free, 0, used);
    this.full.fill(0, 0, used);
    this.freeTop = 0;
    this.fresh = 0;
    this.numFree = this.numBlocks;
    this.numActive = 0;
    this.numInactive = 0;
    this.lruPrev[0] = 0;
    this.lruNext[0] = 0;
    this.table.clear();
  }

  /** Bytes held by the pool's arrays and hash table (memory accounting, tests). */
  get allocatedBytes(): number {
    return this.cap * (4 + 1 + 1 + 4 + 4 + 4) + (this.cap + 1) * 8 + this.table.allocatedBytes;
  }

  private grow(): void {
    const n = Math.min(this.numBlocks, this.cap * 2);
    const i32 = (a: Int32Array, len: number): Int32Array => {
      const b = new Int32Array(len);
      b.set(a);
      return b;
    };
    const u32 = (a: Uint32Array): Uint32Array => {
      const b = new Uint32Array(n);
      b.set(a);
      return b;
    };
    const u8 = (a: Uint8Array): Uint8Array => {
      const b = new Uint8Array(n);
      b.set(a);
      return b;
    };
    this.refCount = i32(this.refCount, n);
    this.state = u8(this.state);
    this.full = u8(this.full);
    this.hashHi = u32(this.hashHi);
    this.hashLo = u32(this.hashLo);
    this.lruPrev = i32(this.lruPrev, n + 1);
    this.lruNext = i32(this.lruNext, n + 1);
    this.freeStack = i32(this.freeStack, n);
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
    const next = this.lruNext;
    const hashHi = this.hashHi;
    const hashLo = this.hashLo;
    const table = this.table;
    let acc = 0;
    let e = next[0] as number;
    for (let k = 0; k < n && e !== 0; k++) {
      acc ^= table.peek(hashHi[e - 1] as number, hashLo[e - 1] as number);
      e = next[e] as number;
    }
    return acc;
  }

  /** Take a reference on a resident full block: active → refCount + 1; inactive → revived. */
  touch(id: number): void {
    if (this.state[id] === BlockState.inactive) {
      this.unlink(id);
      this.numInactive--;
      this.numActive++;
      this.state[id] = BlockState.active;
      this.refCount[id] = 1;
    } else {
      this.refCount[id] = (this.refCount[id] as number) + 1;
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
      id = (this.lruNext[0] as number) - 1;
      this.unlink(id);
      this.numInactive--;
      this.table.remove(this.hashHi[id] as number, this.hashLo[id] as number);
      this.events.active.addRemoved(this.hashHi[id] as number, this.hashLo[id] as number);
    } else {
      return -1;
    }
    this.numActive++;
    this.state[id] = BlockState.active;
    this.refCount[id] = 1;
    this.full[id] = 0;
    return id;
  }

  /** Give an active partial block its identity as a full block (the hash must not be resident). */
  makeFull(id: number, hi: number, lo: number): void {
    this.full[id] = 1;
    this.hashHi[id] = hi;
    this.hashLo[id] = lo;
    if (this.prefixCaching) this.table.insert(hi, lo, id);
  }

  /** Mark an active partial block full without identity (prefix caching off). */
  makeFullAnonymous(id: number): void {
    this.full[id] = 1;
  }

  /**
   * Drop one reference. Partial blocks are destroyed (back to free, never published); full blocks
   * whose count reaches 0 become the newest inactive block, or free without prefix caching.
   */
  release(id: number): void {
    if (this.full[id] === 0) {
      this.refCount[id] = 0;
      this.toFree(id);
      return;
    }
    const rc = (this.refCount[id] as number) - 1;
    this.refCount[id] = rc;
    if (rc > 0) return;
    if (!this.prefixCaching) {
      this.full[id] = 0;
      this.toFree(id);
      return;
    }
    this.numActive--;
    this.numInactive++;
    this.state[id] = BlockState.inactive;
    const e = id + 1;
    const last = this.lruPrev[0] as number;
    this.lruPrev[e] = last;
    this.lruNext[e] = 0;
    this.lruNext[last] = e;
    this.lruPrev[0] = e;
  }

  private toFree(id: number): void {
    this.numActive--;
    this.numFree++;
    this.state[id] = BlockState.free;
    this.freeStack[this.freeTop++] = id;
  }

  private unlink(id: number): void {
    const e = id + 1;
    const p = this.lruPrev[e] as number;
    const nx = this.lruNext[e] as number;
    this.lruNext[p] = nx;
    this.lruPrev[nx] = p;
  }

  /** Inactive block ids, oldest first (tests and diagnostics). */
  inactiveOrder(): number[] {
    const out: number[] = [];
    for (let e = this.lruNext[0] as number; e !== 0; e = this.lruNext[e] as number) out.push(e - 1);
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
      const st = this.state[id];
      const rc = this.refCount[id] as number;
      if (st === BlockState.free) {
        free++;
        if (rc !== 0) fail(`free block ${id} has refCount ${rc}`);
      } else if (st === BlockState.active) {
        active++;
        if (rc < 1) fail(`active block ${id} has refCount ${rc}`);
      } else {
        inactive++;
        if (rc !== 0) fail(`inactive block ${id} has refCount ${rc}`);
        if (this.full[id] !== 1) fail(`inactive block ${id} is not full`);
      }
      if (st !== BlockState.free && this.full[id] === 1 && this.prefixCaching) {
        hashed++;
        if (this.table.find(this.hashHi[id] as number, this.hashLo[id] as number) !== id) {
          fail(`full block ${id} is not found in the hash table under its hash`);
        }
      }
      if (this.full[id] === 0 && st === BlockState.active && rc !== 1) fail(`partial block ${id} has refCount ${rc}`);
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
      if (this.state[id] !== BlockState.free || seen[id] === 1) fail(`free stack entry ${id} is wrong`);
      seen[id] = 1;
    }
    let count = 0;
    let prev = 0;
    for (let e = this.lruNext[0] as number; e !== 0; e = this.lruNext[e] as number) {
      const id = e - 1;
      if (this.state[id] !== BlockState.inactive) fail(`LRU list holds non-inactive block ${id}`);
      if (this.lruPrev[e] !== prev) fail(`LRU list prev link of block ${id} is wrong`);
      prev = e;
      if (++count > n) fail('LRU list has a cycle');
    }
    if (count !== this.numInactive) fail(`LRU list length ${count} != numInactive ${this.numInactive}`);
  }
}

function fail(message: string): never {
  throw new EngineInvariantError(message);
}
