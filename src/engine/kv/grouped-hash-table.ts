/**
 * Block-hash table for keys that come in groups of 2^groupBits (at most 32): keys sharing `hi`
 * and `lo` except for the low groupBits bits of `lo` (the block's index in its group) live in one
 * entry. The offline replayer gives every engine block of a trace block such a key
 * (src/replay/trace-hashes.ts) with groupBits just wide enough for a trace block's engine blocks,
 * so they cost one probe to find, store or evict instead of one probe each into random slots,
 * and an entry is no wider than a trace block needs; any other keys work too, one entry per
 * distinct group.
 *
 *   entry (groupWords int32): [ mask, hi, lo & ~indexMask, -, id of index 0, …, id of index 2^groupBits − 1 ]
 *
 * `mask` has bit i set when index i is present (0 = empty entry, so zeroed memory is an empty
 * table). Open addressing over entries with linear probing and backward-shift deletion of an
 * entry whose last index is removed, as in BlockHashTable. Same contract as BlockHashTable.
 */
import { canShiftInto } from './hash-table.js';
import type { BlockTable } from './hash-table.js';

/** Widest group: low bits of a key's low half that may index it inside its group (one int32 mask). */
export const MAX_GROUP_BITS = 5;
const HEADER_WORDS = 4;
/** Entries the table starts with (a power of two). */
const INITIAL_ENTRIES = 16;
/**
 * A reserved table is sized for this many blocks per group on average (fewer for narrower
 * groups), 2 × (4 + 2^groupBits) / 8 words per block (it grows past that: a busy replay rank of
 * 16,384 blocks holds 2,000–4,000 groups, many of them a prompt's partial last trace block or
 * a generated block alone in its group).
 */
const RESERVE_BLOCKS_PER_GROUP = 8;

export class GroupedBlockHashTable implements BlockTable {
  /** Low bits of a key's low half that index it inside its group. */
  readonly groupBits: number;
  private readonly indexMask: number;
  /** Int32 words per entry. */
  private readonly groupWords: number;
  private cap: number;
  private readonly maxCapacity: number;
  private mask: number;
  private cells: Int32Array;
  /** Keys (blocks) held. */
  private count = 0;
  /** Entries (groups) in use. */
  private groups = 0;

  /**
   * `maxEntries` blocks at most; `reserve`: allocate for maxEntries / 8 groups now; `groupBits`
   * (1–5): keys differing only in these low bits of their low half share an entry.
   */
  constructor(maxEntries: number, reserve = false, groupBits = MAX_GROUP_BITS) {
    if (!Number.isInteger(groupBits) || groupBits < 1 || groupBits > MAX_GROUP_BITS) {
      throw new RangeError(`groupBits must be an integer in 1..${MAX_GROUP_BITS}, got ${groupBits}`);
    }
    this.groupBits = groupBits;
    this.indexMask = (1 << groupBits) - 1;
    this.groupWords = HEADER_WORDS + (1 << groupBits);
    let max = INITIAL_ENTRIES;
    while (max < maxEntries * 2) max *= 2;
    this.maxCapacity = max;
    let cap = INITIAL_ENTRIES;
    const perGroup = Math.min(RESERVE_BLOCKS_PER_GROUP, 1 << groupBits);
    if (reserve) while (cap < (maxEntries * 2) / perGroup && cap < max) cap *= 2;
    this.cap = cap;
    this.mask = cap - 1;
    this.cells = new Int32Array(cap * this.groupWords);
  }

  get size(): number {
    return this.count;
  }

  /** Groups the table has room for now (grows on demand). */
  get capacity(): number {
    return this.cap;
  }

  get allocatedBytes(): number {
    return this.cells.byteLength;
  }

  private home(hi: number, lo: number): number {
    return (Math.imul((lo >>> this.groupBits) ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> 7) & this.mask;
  }

  /** Offset of the key's group entry, or -1. */
  private entryOf(hi: number, lo: number): number {
    const mask = this.mask;
    const cells = this.cells;
    const words = this.groupWords;
    const h = hi | 0;
    const g = (lo & ~this.indexMask) | 0;
    let i = this.home(hi, lo);
    for (;;) {
      const c = i * words;
      if (cells[c] === 0) return -1;
      if (cells[c + 2] === g && cells[c + 1] === h) return c;
      i = (i + 1) & mask;
    }
  }

  find(hi: number, lo: number): number {
    const c = this.entryOf(hi, lo);
    if (c < 0) return -1;
    const index = lo & this.indexMask;
    return ((this.cells[c] as number) & (1 << index)) === 0 ? -1 : this.cells[c + HEADER_WORDS + index] as number;
  }

  findRun(hi: Uint32Array, lo: Uint32Array, from: number, to: number, outIds: Int32Array | null): number {
    const cells = this.cells;
    const indexMask = this.indexMask;
    let b = from;
    while (b < to) {
      // One probe per group: the run's next keys of the same group are bits of the same entry.
      const h = hi[b] as number;
      let l = lo[b] as number;
      const c = this.entryOf(h, l);
      if (c < 0) return b;
      const m = cells[c] as number;
      const g = l & ~indexMask;
      for (;;) {
        const index = l & indexMask;
        if ((m & (1 << index)) === 0) return b;
        if (outIds !== null) outIds[b] = cells[c + HEADER_WORDS + index] as number;
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
    const cells = this.cells;
    const indexMask = this.indexMask, words = this.groupWords;
    let acc = 0;
    let lastHi = 0, lastGroup = -1;
    for (let b = from; b < to; b++) {
      const h = hi[b] as number, l = lo[b] as number;
      const g = l & ~indexMask;
      // Consecutive blocks of one group share the entry: read it once.
      if (g === lastGroup && h === lastHi) continue;
      lastHi = h;
      lastGroup = g;
      acc ^= cells[this.home(h, l) * words] as number;
    }
    return acc;
  }

  peek(hi: number, lo: number): number {
    return this.cells[this.home(hi, lo) * this.groupWords] as number;
  }

  insert(hi: number, lo: number, v: number): void {
    const index = lo & this.indexMask;
    let c = this.entryOf(hi, lo);
    if (c < 0) {
      if ((this.groups + 1) * 2 > this.cap && this.cap < this.maxCapacity) this.grow();
      const mask = this.mask, words = this.groupWords;
      const cells = this.cells;
      let i = this.home(hi, lo);
      while ((cells[i * words] as number) !== 0) i = (i + 1) & mask;
      c = i * words;
      cells[c + 1] = hi | 0;
      cells[c + 2] = (lo & ~this.indexMask) | 0;
      this.groups++;
    }
    const cells = this.cells;
    cells[c] = (cells[c] as number) | (1 << index);
    cells[c + HEADER_WORDS + index] = v;
    this.count++;
  }

  remove(hi: number, lo: number): number {
    const c = this.entryOf(hi, lo);
    if (c < 0) return -1;
    const cells = this.cells;
    const index = lo & this.indexMask;
    const bit = 1 << index;
    const m = cells[c] as number;
    if ((m & bit) === 0) return -1;
    const removed = cells[c + HEADER_WORDS + index] as number;
    this.count--;
    if ((m & ~bit) !== 0) {
      cells[c] = m & ~bit;
      return removed;
    }
    // The group's last key: delete the entry, pulling later entries of the probe run into the hole.
    this.groups--;
    const mask = this.mask, words = this.groupWords;
    let hole = c / words;
    let j = hole;
    for (;;) {
      j = (j + 1) & mask;
      const cj = j * words;
      if (cells[cj] === 0) break;
      if (canShiftInto(hole, j, this.home(cells[cj + 1] as number, cells[cj + 2] as number))) {
        cells.copyWithin(hole * words, cj, cj + words);
        hole = j;
      }
    }
    cells[hole * words] = 0;
    return removed;
  }

  clear(): void {
    if (this.cap !== INITIAL_ENTRIES) {
      this.cap = INITIAL_ENTRIES;
      this.mask = this.cap - 1;
      this.cells = new Int32Array(this.cap * this.groupWords);
    } else if (this.groups > 0) {
      this.cells.fill(0);
    }
    this.count = 0;
    this.groups = 0;
  }

  /** Double the entries and re-insert every group. */
  private grow(): void {
    const old = this.cells;
    this.cap *= 2;
    this.mask = this.cap - 1;
    const words = this.groupWords;
    const cells = new Int32Array(this.cap * words);
    const mask = this.mask;
    for (let c = 0; c < old.length; c += words) {
      if (old[c] === 0) continue;
      let i = this.home(old[c + 1] as number, old[c + 2] as number);
      while ((cells[i * words] as number) !== 0) i = (i + 1) & mask;
      cells.set(old.subarray(c, c + words), i * words);
    }
    this.cells = cells;
  }
}
