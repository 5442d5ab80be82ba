import { BlockHashTable } from './hash-table.js';
import type { KvEventRecorder } from '../events.js';
import { EngineInvariantError } from '../invariant.js';

/** Block states. free: no content; active: refCount ≥ 1; inactive: refCount 0, content cached. */
export const BlockState = { free: 0, active: 1, inactive: 2 } as const;

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
 *  - Inactive blocks form an intrusive doubly-linked LRU list through prev/next, oldest at the
 *    head; sentinel index = numBlocks. Eviction and revival are O(1).
 *
 *      sentinel ⇄ oldest ⇄ … ⇄ newest ⇄ sentinel
 *
 *  - Free blocks sit on a stack; the initial order hands out 0, 1, 2, … and a freed block is
 *    the next one reused.
 */
export class BlockPool {
  readonly numBlocks: number;
  readonly prefixCaching: boolean;
  readonly refCount: Int32Array;
  readonly state: Uint8Array;
  readonly full: Uint8Array;
  readonly hashHi: Uint32Array;
  readonly hashLo: Uint32Array;
  readonly prev: Int32Array;
  readonly next: Int32Array;
  private readonly freeStack: Int32Array;
  numFree: number;
  numActive: number;
  numInactive: number;
  readonly table: BlockHashTable;
  private readonly events: KvEventRecorder;

  constructor(numBlocks: number, prefixCaching: boolean, events: KvEventRecorder) {
    this.numBlocks = numBlocks;
    this.prefixCaching = prefixCaching;
    this.refCount = new Int32Array(numBlocks);
    this.state = new Uint8Array(numBlocks);
    this.full = new Uint8Array(numBlocks);
    this.hashHi = new Uint32Array(numBlocks);
    this.hashLo = new Uint32Array(numBlocks);
    this.prev = new Int32Array(numBlocks + 1);
    this.next = new Int32Array(numBlocks + 1);
    this.freeStack = new Int32Array(numBlocks);
    this.table = new BlockHashTable(prefixCaching ? numBlocks : 1);
    this.events = events;
    this.numFree = 0;
    this.numActive = 0;
    this.numInactive = 0;
    this.clear();
  }

  /** Forget every block (no events; the caller emits AllBlocksCleared). */
  clear(): void {
    const n = this.numBlocks;
    this.refCount.fill(0);
    this.state.fill(BlockState.free);
    this.full.fill(0);
    for (let i = 0; i < n; i++) this.freeStack[i] = n - 1 - i;
    this.numFree = n;
    this.numActive = 0;
    this.numInactive = 0;
    this.prev[n] = n;
    this.next[n] = n;
    this.table.clear();
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
    const s = this.numBlocks;
    const next = this.next;
    const hashHi = this.hashHi;
    const hashLo = this.hashLo;
    const table = this.table;
    let acc = 0;
    let id = next[s] as number;
    for (let k = 0; k < n && id !== s; k++) {
      acc ^= table.peek(hashHi[id] as number, hashLo[id] as number);
      id = next[id] as number;
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
    if (this.numFree > 0) {
      id = this.freeStack[--this.numFree] as number;
    } else if (this.numInactive > 0) {
      id = this.next[this.numBlocks] as number;
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
    const s = this.numBlocks;
    const last = this.prev[s] as number;
    this.prev[id] = last;
    this.next[id] = s;
    this.next[last] = id;
    this.prev[s] = id;
  }

  private toFree(id: number): void {
    this.numActive--;
    this.numFree++;
    this.state[id] = BlockState.free;
    this.freeStack[this.numFree - 1] = id;
  }

  private unlink(id: number): void {
    const p = this.prev[id] as number;
    const nx = this.next[id] as number;
    this.next[p] = nx;
    this.prev[nx] = p;
  }

  /** Inactive block ids, oldest first (tests and diagnostics). */
  inactiveOrder(): number[] {
    const out: number[] = [];
    const s = this.numBlocks;
    for (let id = this.next[s] as number; id !== s; id = this.next[id] as number) out.push(id);
    return out;
  }

  /** Free block ids in the order they will be handed out (tests and diagnostics). */
  freeOrder(): number[] {
    const out: number[] = [];
    for (let i = this.numFree - 1; i >= 0; i--) out.push(this.freeStack[i] as number);
    return out;
  }

  /** Structural checks of the pool alone; reference counts are checked by the engine. */
  checkInvariants(): void {
    const n = this.numBlocks;
    let free = 0;
    let active = 0;
    let inactive = 0;
    let hashed = 0;
    for (let id = 0; id < n; id++) {
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
    const seen = new Uint8Array(n);
    for (let i = 0; i < this.numFree; i++) {
      const id = this.freeStack[i] as number;
      if (this.state[id] !== BlockState.free || seen[id] === 1) fail(`free stack entry ${id} is wrong`);
      seen[id] = 1;
    }
    let count = 0;
    const s = n;
    let prev = s;
    for (let id = this.next[s] as number; id !== s; id = this.next[id] as number) {
      if (this.state[id] !== BlockState.inactive) fail(`LRU list holds non-inactive block ${id}`);
      if (this.prev[id] !== prev) fail(`LRU list prev link of block ${id} is wrong`);
      prev = id;
      if (++count > n) fail('LRU list has a cycle');
    }
    if (count !== this.numInactive) fail(`LRU list length ${count} != numInactive ${this.numInactive}`);
  }
}

function fail(message: string): never {
  throw new EngineInvariantError(message);
}
