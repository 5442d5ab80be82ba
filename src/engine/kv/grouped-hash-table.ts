/**
 * Block-hash table for keys that come in groups of 2^groupBits (at most 32): keys sharing `hi`
 * and `lo` except for the low groupBits bits of `lo` (the block's index in its group) live in one
 * entry. The offline replayer gives every engine block of a trace block such a key
 * (src/replay/trace-hashes.ts) with groupBits just wide enough for a trace block's engine blocks,
 * so they cost one probe to find, store or evict instead of one probe each into random slots;
 * any other keys work too, one entry per distinct group.
 *
 *   heads (4 int32 per entry): [ mask, hi, lo & ~indexMask, slab row s ]
 *   ids   (2^groupBits int32 per slab row): [ id of index 0, …, id of index 2^groupBits − 1 ]
 *
 * `mask` has bit i set when index i is present (0 = empty entry, so zeroed memory is an empty
 * table). Open addressing over entries with linear probing and backward-shift deletion of an
 * entry whose last index is removed, as in BlockHashTable. Same contract as BlockHashTable.
 *
 * Heads and ids are separate arrays because a prefix walk (`findRun` without ids: the kv
 * router's question to every rank on every pick) and an eviction (`discard`) read only heads:
 * four heads share a cache line, where one whole entry of 8 ids took 48 bytes. A group's ids sit
 * in a slab row that stays put while its head moves (backward shift, growth): moving a head is
 * one 16-byte copy, not also a read and a write of the ids' cache lines. Freed rows are reused
 * last in, first out (the row just freed by an eviction is the one the next new group takes).
 *
 * Implicit ids (`implicitIds`, the block pool's grouped mode): a key's value is not stored but is
 * its place, row × 2^groupBits + index, so a group's blocks get neighbouring ids (their per-block
 * words share cache lines) and the table holds no id slab. `insertKey` stores a key and returns
 * its id; rows for values that are not keys yet (a block still being filled) come from
 * `takeRow` / `freeRow`, out of the same row space. Each group row knows its entry (`rowEntry`,
 * kept through moves), so `discardId` removes a key by its id without hashing or probing.
 *
 * The engine evicts and stores a group's blocks one after another (a trace block's engine blocks
 * are released together, so they sit together in the LRU order, and a prefill stores them in
 * order): `insert`, `discard` and `find` remember the entry they last reached and start there when
 * the next key is of the same group (forgotten whenever an entry moves or goes).
 */
import { canShiftInto } from './hash-table.js';
import type { BlockTable } from './hash-table.js';

/** Widest group: low bits of a key's low half that may index it inside its group (one int32 mask). */
export const MAX_GROUP_BITS = 5;
/** Int32 words per head (mask, hi, lo, padding to 16 bytes). */
const HEAD = 4;
/** Entries the table starts with (a power of two). */
const INITIAL_ENTRIES = 16;
/**
 * A reserved table is sized for this many blocks per group on average (fewer for narrower
 * groups); it grows past that: a busy replay rank of 16,384 blocks holds 2,000–4,000 groups,
 * many of them a prompt's partial last trace block or a generated block alone in its group.
 */
const RESERVE_BLOCKS_PER_GROUP = 8;

export class GroupedBlockHashTable implements BlockTable {
  /** Low bits of a key's low half that index it inside its group. */
  readonly groupBits: number;
  private readonly indexMask: number;
  /** Ids per entry (2^groupBits). */
  private readonly width: number;
  private cap: number;
  private readonly maxCapacity: number;
  private mask: number;
  private heads: Int32Array;
  /**
   * Slab rows of ids, cap / 2 of them (the most groups the table holds at its load limit); empty
   * with implicit ids.
   */
  private ids: Int32Array;
  /** Values are row × width + index, not stored (see the class comment). */
  readonly implicitIds: boolean;
  /** Implicit ids: the entry of each group's row (rows that are no group's hold stale values). */
  private rowEntry: Int32Array;
  /** Freed slab rows (reused first) and the first never-used row. */
  private freeRows: Int32Array;
  private numFreeRows = 0;
  private freshRow = 0;
  /**
   * The entries the last insert / find (store memo) and the last discard / remove (drop memo)
   * reached, and their groups' keys (entry −1: none). Two, because a prefill that evicts
   * alternates between them: evict a block of one group, store one of another. Kept right when
   * a deletion moves or removes their entries.
   */
  private storeMemoEntry = -1;
  private storeMemoHi = 0;
  private storeMemoGroup = 0;
  private dropMemoEntry = -1;
  private dropMemoHi = 0;
  private dropMemoGroup = 0;
  /** Keys (blocks) held. */
  private count = 0;
  /** Entries (groups) in use. */
  private groups = 0;
  insertions = 0;
  removals = 0;

  /**
   * `maxEntries` blocks at most; `reserve`: allocate for maxEntries / min(8, 2^groupBits) groups
   * now; `groupBits` (1–5): keys differing only in these low bits of their low half share an entry;
   * `implicitIds`: values are the keys' places (insertKey), not stored.
   */
  constructor(maxEntries: number, reserve = false, groupBits = MAX_GROUP_BITS, implicitIds = false) {
    if (!Number.isInteger(groupBits) || groupBits < 1 || groupBits > MAX_GROUP_BITS) {
      throw new RangeError(`groupBits must be an integer in 1..${MAX_GROUP_BITS}, got ${groupBits}`);
    }
    this.groupBits = groupBits;
    this.indexMask = (1 << groupBits) - 1;
    this.width = 1 << groupBits;
    let max = INITIAL_ENTRIES;
    while (max < maxEntries * 2) max *= 2;
    this.maxCapacity = max;
    let cap = INITIAL_ENTRIES;
    const perGroup = Math.min(RESERVE_BLOCKS_PER_GROUP, this.width);
    if (reserve) while (cap < (maxEntries * 2) / perGroup && cap < max) cap *= 2;
    this.cap = cap;
    this.mask = cap - 1;
    this.implicitIds = implicitIds;
    this.rowEntry = new Int32Array(implicitIds ? cap >>> 1 : 0);
    this.heads = new Int32Array(cap * HEAD);
    this.ids = new Int32Array(implicitIds ? 0 : (cap >>> 1) * this.width);
    this.freeRows = new Int32Array(cap >>> 1);
  }

  /** Rows handed out since the last clear(): implicit ids are below rowsHandedOut × 2^groupBits. */
  get rowsHandedOut(): number {
    return this.freshRow;
  }

  get size(): number {
    return this.count;
  }

  /** Groups the table has room for now (grows on demand). */
  get capacity(): number {
    return this.cap;
  }

  get allocatedBytes(): number {
    return this.heads.byteLength + this.ids.byteLength + this.freeRows.byteLength;
  }

  private home(hi: number, lo: number): number {
    return (Math.imul((lo >>> this.groupBits) ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> 7) & this.mask;
  }

  /** Entry number of the key's group, or -1. */
  private entryOf(hi: number, lo: number): number {
    const mask = this.mask;
    const heads = this.heads;
    const h = hi | 0;
    const g = (lo & ~this.indexMask) | 0;
    let i = this.home(hi, lo);
    for (;;) {
      const c = i * HEAD;
      if (heads[c] === 0) return -1;
      if (heads[c + 2] === g && heads[c + 1] === h) return i;
      i = (i + 1) & mask;
    }
  }

  /** entryOf through the store memo (insert, find: a group's keys come one after another). */
  private entryOfStoreMemo(hi: number, lo: number): number {
    const h = hi | 0;
    const g = (lo & ~this.indexMask) | 0;
    if (this.storeMemoEntry >= 0 && this.storeMemoGroup === g && this.storeMemoHi === h) return this.storeMemoEntry;
    const i = this.entryOf(h, g);
    if (i >= 0) {
      this.storeMemoEntry = i;
      this.storeMemoHi = h;
      this.storeMemoGroup = g;
    }
    return i;
  }

  /** Entry number holding the key itself through the drop memo (discard, remove), or -1. */
  private entryHoldingForDrop(hi: number, lo: number): number {
    const h = hi | 0;
    const g = (lo & ~this.indexMask) | 0;
    let i: number;
    if (this.dropMemoEntry >= 0 && this.dropMemoGroup === g && this.dropMemoHi === h) i = this.dropMemoEntry;
    else {
      i = this.entryOf(h, g);
      if (i < 0) return -1;
      this.dropMemoEntry = i;
      this.dropMemoHi = h;
      this.dropMemoGroup = g;
    }
    return ((this.heads[i * HEAD] as number) & (1 << (lo & this.indexMask))) !== 0 ? i : -1;
  }

  /** Entry number holding the key itself (its group's entry with its index bit set), or -1. */
  private entryHolding(hi: number, lo: number): number {
    const i = this.entryOfStoreMemo(hi, lo);
    return i >= 0 && ((this.heads[i * HEAD] as number) & (1 << (lo & this.indexMask))) !== 0 ? i : -1;
  }

  find(hi: number, lo: number): number {
    const i = this.entryHolding(hi, lo);
    return i < 0 ? -1 : this.valueAt(i, lo & this.indexMask);
  }

  /** The value of present index `index` of entry i. */
  private valueAt(i: number, index: number): number {
    const slot = (this.heads[i * HEAD + 3] as number) * this.width + index;
    return this.implicitIds ? slot : this.ids[slot] as number;
  }

  findRun(hi: Uint32Array, lo: Uint32Array, from: number, to: number, outIds: Int32Array | null): number {
    const heads = this.heads, ids = this.ids;
    const indexMask = this.indexMask, width = this.width;
    const implicit = this.implicitIds;
    let b = from;
    while (b < to) {
      // One probe per group: the run's next keys of the same group are bits of the same entry.
      const h = hi[b] as number;
      let l = lo[b] as number;
      const i = this.entryOf(h, l);
      if (i < 0) return b;
      const m = heads[i * HEAD] as number;
      const g = l & ~indexMask;
      for (;;) {
        const index = l & indexMask;
        if ((m & (1 << index)) === 0) return b;
        if (outIds !== null) {
          const slot = (heads[i * HEAD + 3] as number) * width + index;
          outIds[b] = implicit ? slot : ids[slot] as number;
        }
        b++;
        if (b >= to) return b;
        const nl = lo[b] as number;
        if (hi[b] !== h || (nl & ~indexMask) !== g) break;
        l = nl;
      }
    }
    return b;
  }

  warm(hi: Uint32Array, lo: Uint32Array, from: number, to: number): number {
    const heads = this.heads;
    const indexMask = this.indexMask;
    let acc = 0;
    let lastHi = 0, lastGroup = -1;
    for (let b = from; b < to; b++) {
      const h = hi[b] as number, l = lo[b] as number;
      const g = l & ~indexMask;
      // Consecutive blocks of one group share the entry: read it once.
      if (g === lastGroup && h === lastHi) continue;
      lastHi = h;
      lastGroup = g;
      acc ^= heads[this.home(h, l) * HEAD] as number;
    }
    return acc;
  }

  peek(hi: number, lo: number): number {
    return this.heads[this.home(hi, lo) * HEAD] as number;
  }

  insert(hi: number, lo: number, v: number): void {
    if (this.implicitIds) throw new RangeError('a table with implicit ids chooses them: insert keys with insertKey');
    // The row first: insertAt may grow (replace) the slab.
    const row = this.insertAt(hi, lo);
    this.ids[row * this.width + (lo & this.indexMask)] = v;
  }

  /** Insert a key that is not present into a table with implicit ids; returns its id (row × width + index). */
  insertKey(hi: number, lo: number): number {
    if (!this.implicitIds) throw new RangeError('insertKey needs a table with implicit ids');
    return this.insertAt(hi, lo) * this.width + (lo & this.indexMask);
  }

  /** Set the key's index bit in its group's entry (created, with a row, when absent); returns the row. */
  private insertAt(hi: number, lo: number): number {
    const index = lo & this.indexMask;
    let i = this.entryOfStoreMemo(hi, lo);
    if (i < 0) {
      if ((this.groups + 1) * 2 > this.cap && this.cap < this.maxCapacity) this.grow();
      const mask = this.mask;
      const heads = this.heads;
      i = this.home(hi, lo);
      while ((heads[i * HEAD] as number) !== 0) i = (i + 1) & mask;
      heads[i * HEAD + 1] = hi | 0;
      heads[i * HEAD + 2] = (lo & ~this.indexMask) | 0;
      const row = this.nextRow();
      heads[i * HEAD + 3] = row;
      if (this.implicitIds) this.rowEntry[row] = i;
      this.groups++;
      // Placing a head moves no other: the drop memo stays right.
      this.storeMemoEntry = i;
      this.storeMemoHi = hi | 0;
      this.storeMemoGroup = (lo & ~this.indexMask) | 0;
    }
    const heads = this.heads;
    const c = i * HEAD;
    heads[c] = (heads[c] as number) | (1 << index);
    this.count++;
    this.insertions++;
    return heads[c + 3] as number;
  }

  /**
   * A row no group uses (the last freed, else a new one). With implicit ids, the values
   * row × width + 0 … width − 1 then belong to the caller until it gives the row back (freeRow).
   */
  takeRow(): number {
    if (!this.implicitIds) throw new RangeError('takeRow needs a table with implicit ids');
    return this.nextRow();
  }

  /** Give back a row from takeRow (implicit ids). */
  freeRow(row: number): void {
    if (!this.implicitIds) throw new RangeError('freeRow needs a table with implicit ids');
    this.returnRow(row);
  }

  private nextRow(): number {
    if (this.numFreeRows > 0) return this.freeRows[--this.numFreeRows] as number;
    if (this.freshRow === this.rowEntry.length && this.implicitIds) {
      const next = new Int32Array(Math.max(16, this.rowEntry.length * 2));
      next.set(this.rowEntry);
      this.rowEntry = next;
    }
    return this.freshRow++;
  }

  /** A group's row comes back when its last key goes (clearKey), a taken row by freeRow. */
  private returnRow(row: number): void {
    if (this.numFreeRows === this.freeRows.length) {
      const next = new Int32Array(this.freeRows.length * 2);
      next.set(this.freeRows);
      this.freeRows = next;
    }
    this.freeRows[this.numFreeRows++] = row;
  }

  remove(hi: number, lo: number): number {
    const i = this.entryHoldingForDrop(hi, lo);
    if (i < 0) return -1;
    const index = lo & this.indexMask;
    const removed = this.valueAt(i, index);
    this.clearKey(i, index);
    return removed;
  }

  /**
   * Remove the key whose implicit id is `id` (it must be present: the caller owns the id, as the
   * block pool does a resident block's). No hashing, no probe: the row knows its entry.
   */
  discardId(id: number): void {
    const i = this.rowEntry[id >>> this.groupBits] as number;
    const index = id & this.indexMask;
    if (!this.implicitIds || ((this.heads[i * HEAD] as number) & (1 << index)) === 0 || (this.heads[i * HEAD + 3] as number) !== id >>> this.groupBits) {
      throw new RangeError(`discardId: no key has id ${id}`);
    }
    this.clearKey(i, index);
  }

  /** High half of the key whose implicit id is `id` (present), read from its entry. */
  keyHiOf(id: number): number {
    return this.heads[(this.rowEntry[id >>> this.groupBits] as number) * HEAD + 1] as number;
  }

  /** Low half of the key whose implicit id is `id` (present): its group's bits and its index. */
  keyLoOf(id: number): number {
    return (this.heads[(this.rowEntry[id >>> this.groupBits] as number) * HEAD + 2] as number) | (id & this.indexMask);
  }

  discard(hi: number, lo: number): boolean {
    const i = this.entryHoldingForDrop(hi, lo);
    if (i >= 0) this.clearKey(i, lo & this.indexMask);
    return i >= 0;
  }

  /** Take present index `index` out of entry i (deleting the entry with its last index). */
  private clearKey(i: number, index: number): void {
    const heads = this.heads;
    const m = (heads[i * HEAD] as number) & ~(1 << index);
    this.count--;
    this.removals++;
    if (m !== 0) {
      heads[i * HEAD] = m;
      return;
    }
    // The group's last key: delete the entry, pulling later entries of the probe run into the hole.
    this.groups--;
    this.returnRow(heads[i * HEAD + 3] as number);
    if (this.dropMemoEntry === i) this.dropMemoEntry = -1;
    if (this.storeMemoEntry === i) this.storeMemoEntry = -1;
    const mask = this.mask;
    let hole = i;
    let j = hole;
    for (;;) {
      j = (j + 1) & mask;
      const cj = j * HEAD;
      if (heads[cj] === 0) break;
      if (canShiftInto(hole, j, this.home(heads[cj + 1] as number, heads[cj + 2] as number))) {
        this.moveHead(heads, j, heads, hole);
        if (this.storeMemoEntry === j) this.storeMemoEntry = hole;
        if (this.dropMemoEntry === j) this.dropMemoEntry = hole;
        hole = j;
      }
    }
    heads[hole * HEAD] = 0;
  }

  /** Copy entry `from` of `src` to entry `to` of `dst`; with implicit ids its row's entry follows. */
  private moveHead(src: Int32Array, from: number, dst: Int32Array, to: number): void {
    const c = from * HEAD, d = to * HEAD;
    dst[d] = src[c] as number;
    dst[d + 1] = src[c + 1] as number;
    dst[d + 2] = src[c + 2] as number;
    dst[d + 3] = src[c + 3] as number;
    if (this.implicitIds) this.rowEntry[src[c + 3] as number] = to;
  }

  clear(): void {
    if (this.cap !== INITIAL_ENTRIES) {
      this.cap = INITIAL_ENTRIES;
      this.mask = this.cap - 1;
      this.heads = new Int32Array(this.cap * HEAD);
      this.ids = new Int32Array(this.implicitIds ? 0 : (this.cap >>> 1) * this.width);
      this.freeRows = new Int32Array(this.cap >>> 1);
    } else if (this.groups > 0) {
      this.heads.fill(0);
    }
    this.numFreeRows = 0;
    this.freshRow = 0;
    this.storeMemoEntry = this.dropMemoEntry = -1;
    this.count = 0;
    this.groups = 0;
    this.removals++;
  }

  /** Double the entries and re-insert every head (the slab rows keep their places). */
  private grow(): void {
    const oldHeads = this.heads;
    const oldCap = this.cap;
    this.cap *= 2;
    this.mask = this.cap - 1;
    const heads = new Int32Array(this.cap * HEAD);
    const mask = this.mask;
    for (let e = 0; e < oldCap; e++) {
      const c = e * HEAD;
      if (oldHeads[c] === 0) continue;
      let i = this.home(oldHeads[c + 1] as number, oldHeads[c + 2] as number);
      while ((heads[i * HEAD] as number) !== 0) i = (i + 1) & mask;
      this.moveHead(oldHeads, e, heads, i);
    }
    this.heads = heads;
    if (!this.implicitIds) {
      const ids = new Int32Array((this.cap >>> 1) * this.width);
      ids.set(this.ids);
      this.ids = ids;
    }
    if (this.freeRows.length < this.cap >>> 1) {
      const freeRows = new Int32Array(this.cap >>> 1);
      freeRows.set(this.freeRows);
      this.freeRows = freeRows;
    }
    this.storeMemoEntry = this.dropMemoEntry = -1;
  }
}
